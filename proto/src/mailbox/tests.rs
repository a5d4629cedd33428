use proptest::prelude::*;

use super::*;

fn alice() -> Identity {
    Identity::from_secret([1; 32])
}
fn bob() -> Identity {
    Identity::from_secret([2; 32])
}
fn mallory() -> Identity {
    Identity::from_secret([3; 32])
}

fn text(text: &str) -> Letter {
    Letter {
        to: Uuid::nil(),
        stamp: Stamp {
            id: 7,
            at: 1_700_000_000_000,
        },
        content: Content::Text {
            text: text.into(),
            action: false,
        },
    }
}

#[test]
fn a_letter_opens_for_its_recipient_only_and_names_its_sender() {
    let sealed = seal(&alice(), &bob().public_key(), &text("hi bob"), [9; 32]).unwrap();
    let opened = open(&bob(), alice().uuid(), &sealed).unwrap();
    assert_eq!(opened.from, alice().uuid());
    assert_eq!(opened.sender_key, alice().public_key());
    assert_eq!(opened.letter.to, bob().uuid());
    assert_eq!(
        opened.letter.stamp,
        Stamp {
            id: 7,
            at: 1_700_000_000_000
        }
    );
    assert_eq!(
        opened.letter.content,
        Content::Text {
            text: "hi bob".into(),
            action: false
        }
    );
    // Nobody else opens it, not even the sender.
    assert_eq!(
        open(&mallory(), alice().uuid(), &sealed),
        Err(MailboxError::Tampered)
    );
    assert_eq!(
        open(&alice(), alice().uuid(), &sealed),
        Err(MailboxError::Tampered)
    );
}

#[test]
fn the_plaintext_is_not_in_the_seal_and_two_seals_differ() {
    let one = seal(
        &alice(),
        &bob().public_key(),
        &text("secret words"),
        [9; 32],
    )
    .unwrap();
    let two = seal(
        &alice(),
        &bob().public_key(),
        &text("secret words"),
        [8; 32],
    )
    .unwrap();
    assert_ne!(one, two);
    assert!(!one.windows(6).any(|w| w == b"secret"));
    assert!(!one.windows(32).any(|w| w == alice().public_key()));
}

#[test]
fn every_changed_byte_is_caught() {
    let sealed = seal(&alice(), &bob().public_key(), &text("hi"), [9; 32]).unwrap();
    for i in 1..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            open(&bob(), alice().uuid(), &bad),
            Err(MailboxError::Tampered),
            "byte {i}"
        );
    }
    let mut bad = sealed.clone();
    bad[0] = 2;
    assert_eq!(
        open(&bob(), alice().uuid(), &bad),
        Err(MailboxError::Version)
    );
    assert_eq!(
        open(&bob(), alice().uuid(), &[]),
        Err(MailboxError::Version)
    );
    for cut in [1, 40, sealed.len() - 1] {
        assert!(open(&bob(), alice().uuid(), &sealed[..cut]).is_err());
    }
}

#[test]
fn a_letter_deposited_under_another_sender_does_not_open() {
    // Mallory re-deposits alice's letter as her own: the prologue names alice.
    let sealed = seal(&alice(), &bob().public_key(), &text("hi"), [9; 32]).unwrap();
    assert_eq!(
        open(&bob(), mallory().uuid(), &sealed),
        Err(MailboxError::Tampered)
    );
}

#[test]
fn a_sender_key_that_the_seal_does_not_prove_is_refused() {
    // Mallory seals with her own static key but puts alice's Ed25519 key in the payload and
    // claims to be alice (the index would only take it signed by alice, but the recipient does
    // not trust the index either).
    let to = bob().uuid();
    let remote = noise_public_key(&bob().public_key()).unwrap();
    let mut payload = alice().public_key().to_vec();
    payload.extend_from_slice(
        &serde_json::to_vec(&Letter {
            to,
            ..text("it's me, alice")
        })
        .unwrap(),
    );
    let private = mallory().noise_private_key();
    let prologue = prologue(alice().uuid(), to);
    let mut state = builder([5; 32])
        .local_private_key(&private)
        .unwrap()
        .remote_public_key(&remote)
        .unwrap()
        .prologue(&prologue)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut out = vec![0u8; MAX_SEALED];
    let len = state.write_message(&payload, &mut out).unwrap();
    let mut sealed = vec![VERSION];
    sealed.extend_from_slice(&out[..len]);
    assert_eq!(
        open(&bob(), alice().uuid(), &sealed),
        Err(MailboxError::ForgedSender)
    );
}

#[test]
fn size_limits_hold_both_ways() {
    let big = "x".repeat(MAX_SEALED);
    assert_eq!(
        seal(&alice(), &bob().public_key(), &text(&big), [9; 32]),
        Err(MailboxError::TooLarge)
    );
    assert_eq!(
        open(&bob(), alice().uuid(), &vec![1; MAX_SEALED + 1]),
        Err(MailboxError::TooLarge)
    );
    let receipts = Letter {
        to: Uuid::nil(),
        stamp: Stamp { id: 1, at: 1 },
        content: Content::Receipt {
            letters: vec![Stamp { id: 1, at: 1 }; MAX_RECEIPTS + 1],
        },
    };
    let sealed = seal(&alice(), &bob().public_key(), &receipts, [9; 32]).unwrap();
    assert_eq!(
        open(&bob(), alice().uuid(), &sealed),
        Err(MailboxError::Malformed)
    );
}

proptest! {
    #[test]
    fn any_text_comes_back_exactly(text_in in "\\PC{0,300}", id: u64, at: u64, action: bool, seed: [u8; 32]) {
        let letter = Letter {
            to: Uuid::nil(),
            stamp: Stamp { id, at },
            content: Content::Text { text: text_in.clone(), action },
        };
        let sealed = seal(&alice(), &bob().public_key(), &letter, seed).unwrap();
        prop_assert!(sealed.len() <= MAX_SEALED);
        let opened = open(&bob(), alice().uuid(), &sealed).unwrap();
        prop_assert_eq!(opened.letter, Letter { to: bob().uuid(), ..letter });
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = open(&bob(), alice().uuid(), &bytes);
    }
}
