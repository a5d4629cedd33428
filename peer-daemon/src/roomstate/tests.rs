//! Room state on its own: convergence, signatures, shapes, limits, storage.

use std::collections::BTreeMap;
use std::time::Instant;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT};
use proto::identity::Identity;

use super::*;

fn member(seed: u8) -> (Identity, RoomStates) {
    let identity = Identity::from_secret([seed; 32]);
    (
        identity.clone(),
        RoomStates::new(identity, Limits::default()),
    )
}

/// Runs sync rounds between `a` and `b` about `room` until neither has anything to say;
/// returns the messages exchanged.
fn exchange(a: (&mut RoomStates, Uuid), b: (&mut RoomStates, Uuid), room: &str) -> usize {
    let now = Instant::now();
    let (a, a_id) = a;
    let (b, b_id) = b;
    let mut messages = 0;
    for _ in 0..50 {
        let mut quiet = true;
        if let Some((data, sigs)) = a.generate(room, b_id, now) {
            b.receive(room, a_id, now, &data, &sigs).expect("accepted");
            messages += 1;
            quiet = false;
        }
        if let Some((data, sigs)) = b.generate(room, a_id, now) {
            a.receive(room, b_id, now, &data, &sigs).expect("accepted");
            messages += 1;
            quiet = false;
        }
        if quiet {
            return messages;
        }
    }
    panic!("sync did not settle");
}

fn values(states: &RoomStates, room: &str) -> Vec<(String, String)> {
    states
        .entries(room)
        .into_iter()
        .map(|(k, e)| (k, e.value))
        .collect()
}

#[test]
fn concurrent_writes_converge_and_authors_are_the_signers() {
    let (alice_id, mut alice) = member(1);
    let (bob_id, mut bob) = member(2);
    let (a, b) = (alice_id.uuid(), bob_id.uuid());
    alice.put("rust", "topic", Some("from alice")).unwrap();
    alice.put("rust", "only-alice", Some("1")).unwrap();
    bob.put("rust", "topic", Some("from bob")).unwrap();
    bob.put("rust", "only-bob", Some("2")).unwrap();
    exchange((&mut alice, a), (&mut bob, b), "rust");
    assert_eq!(values(&alice, "rust"), values(&bob, "rust"));
    assert_eq!(
        values(&alice, "rust").len(),
        3,
        "{:?}",
        values(&alice, "rust")
    );
    assert_eq!(alice.get("rust", "only-bob").unwrap().author, b);
    assert_eq!(bob.get("rust", "only-alice").unwrap().author, a);
    let topic = alice.get("rust", "topic").unwrap().clone();
    assert_eq!(
        topic.author,
        if topic.value == "from alice" { a } else { b }
    );
    // An unset spreads too.
    let update = bob.put("rust", "only-alice", None).unwrap().unwrap();
    assert_eq!((update.entry, update.author), (None, b));
    exchange((&mut alice, a), (&mut bob, b), "rust");
    assert!(alice.get("rust", "only-alice").is_none());
    assert_eq!(alice.counters().rejected.len(), 0);
}

#[test]
fn changes_travel_on_through_a_third_member_with_their_signatures() {
    let (alice_id, mut alice) = member(1);
    let (bob_id, mut bob) = member(2);
    let (carol_id, mut carol) = member(3);
    let (a, b, c) = (alice_id.uuid(), bob_id.uuid(), carol_id.uuid());
    for i in 0..20 {
        alice
            .put("r", &format!("k{i}"), Some(&format!("v{i}")))
            .unwrap();
    }
    exchange((&mut alice, a), (&mut bob, b), "r");
    // Carol never talks to alice: bob forwards alice's signed changes.
    exchange((&mut bob, b), (&mut carol, c), "r");
    assert_eq!(values(&carol, "r").len(), 20);
    assert!(carol.entries("r").iter().all(|(_, e)| e.author == a));
}

/// A document written by `actor_key`'s actor, its first change signed by `signer` for
/// `room`: the sync message that carries it to an empty member and its signature records.
fn forged(
    actor_key: [u8; 32],
    signer: &Identity,
    room: &str,
    build: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
) -> (Vec<u8>, Vec<u8>) {
    let mut doc = Automerge::new().with_actor(ActorId::from(&actor_key[..]));
    let mut tx = doc.transaction();
    build(&mut tx);
    let (hash, _) = tx.commit();
    let hash = hash.unwrap();
    let mut sigs = hash.0.to_vec();
    sigs.extend_from_slice(&signer.sign(&signed_message(room, &hash.0)));
    // What an empty member says first, then the answer that carries the change.
    let mut theirs = sync::State::new();
    let empty = Automerge::new();
    let mut hello = empty.generate_sync_message(&mut theirs).unwrap();
    // As our members speak: the first version, without flags.
    hello.flags = None;
    let mut ours = sync::State::new();
    doc.receive_sync_message(&mut ours, hello).unwrap();
    let mut message = doc.generate_sync_message(&mut ours).unwrap();
    message.flags = None;
    (message.encode(), sigs)
}

#[test]
fn forged_moved_and_odd_changes_are_refused_whole() {
    let (alice_id, _) = member(1);
    let (mallory_id, _) = member(6);
    let (bob_id, mut bob) = member(2);
    bob.put("r", "kept", Some("yes")).unwrap();
    let now = Instant::now();
    let m = mallory_id.uuid();
    let cases = [
        (
            "alice's actor, mallory's signature",
            forged(alice_id.public_key(), &mallory_id, "r", |tx| {
                tx.put(ROOT, "topic", "alice said so").unwrap();
            }),
            Reject::Signature,
        ),
        (
            "mallory's own change, signed for another room",
            forged(mallory_id.public_key(), &mallory_id, "other", |tx| {
                tx.put(ROOT, "topic", "moved").unwrap();
            }),
            Reject::Signature,
        ),
        (
            "a nested map",
            forged(mallory_id.public_key(), &mallory_id, "r", |tx| {
                tx.put_object(ROOT, "topic", ObjType::Map).unwrap();
            }),
            Reject::Shape,
        ),
        (
            "a counter",
            forged(mallory_id.public_key(), &mallory_id, "r", |tx| {
                tx.put(ROOT, "n", automerge::ScalarValue::counter(1))
                    .unwrap();
            }),
            Reject::Shape,
        ),
        (
            "a key with a space",
            forged(mallory_id.public_key(), &mallory_id, "r", |tx| {
                tx.put(ROOT, "two words", "x").unwrap();
            }),
            Reject::Shape,
        ),
        (
            "a value past the limit",
            forged(mallory_id.public_key(), &mallory_id, "r", |tx| {
                tx.put(ROOT, "big", "x".repeat(2000)).unwrap();
            }),
            Reject::Shape,
        ),
    ];
    // Each case a while after the one before: a member whose message was refused is not
    // listened to for a while.
    let turns = std::cell::Cell::new(0u32);
    let turn = || {
        turns.set(turns.get() + 1);
        now + QUIET_AFTER_REJECT * turns.get()
    };
    for (what, (data, sigs), reason) in cases {
        let before = bob.entries("r");
        assert_eq!(
            bob.receive("r", m, turn(), &data, &sigs),
            Err(reason),
            "{what}"
        );
        assert_eq!(bob.entries("r"), before, "{what}: nothing kept");
        // And nothing of it is stored or sent on.
        bob.restart("r", m);
    }
    // Unsigned: no signature records at all.
    let (data, _) = forged(mallory_id.public_key(), &mallory_id, "r", |tx| {
        tx.put(ROOT, "topic", "unsigned").unwrap();
    });
    assert_eq!(
        bob.receive("r", m, turn(), &data, &[]),
        Err(Reject::Signature)
    );
    for junk in [&b"junk"[..], &[0x42][..], &[]] {
        assert_eq!(
            bob.receive("r", m, turn(), junk, &[]),
            Err(Reject::Malformed)
        );
    }
    assert_eq!(
        bob.receive("r", m, turn(), &data, &[0; 95]),
        Err(Reject::Malformed),
        "signature records come in 96 bytes"
    );
    // Whole documents, compressed changes, trailing chunks and the second version are refused
    // before Automerge inflates anything.
    let (data, sigs) = forged(mallory_id.public_key(), &mallory_id, "r", |tx| {
        tx.put(ROOT, "topic", "mallory's own").unwrap();
    });
    let plain = sync::Message::decode(&data).unwrap();
    let chunk = plain.changes.iter().next().unwrap().to_vec();
    let mut doc = Automerge::new();
    doc.load_incremental(&chunk).unwrap();
    let mut compressed = chunk.clone();
    compressed[8] = 2;
    let mut trailing = chunk.clone();
    trailing.extend_from_slice(&doc.save());
    for (what, changes) in [
        ("a whole document", doc.save()),
        ("a compressed change", compressed),
        ("a change with a document after it", trailing),
        ("a cut change", chunk[..chunk.len() - 1].to_vec()),
    ] {
        let mut message = plain.clone();
        message.changes = vec![changes].into();
        assert_eq!(
            bob.receive("r", m, turn(), &message.encode(), &sigs),
            Err(Reject::Malformed),
            "{what}"
        );
    }
    let mut v2 = plain.clone();
    v2.version = sync::MessageVersion::V2;
    assert_eq!(
        bob.receive("r", m, turn(), &v2.encode(), &sigs),
        Err(Reject::Malformed)
    );
    let mut flagged = plain.clone();
    flagged.flags = Some(sync::MessageFlags::new());
    assert_eq!(
        bob.receive("r", m, turn(), &flagged.encode(), &sigs),
        Err(Reject::Malformed)
    );
    let mallory_honest = forged(mallory_id.public_key(), &mallory_id, "r", |tx| {
        tx.put(ROOT, "topic", "mallory's own").unwrap();
    });
    // The member that sent something refused is not synced with for a while, nor listened to.
    let last = now + QUIET_AFTER_REJECT * turns.get();
    assert!(bob.generate("r", m, last).is_none());
    assert_eq!(
        bob.receive("r", m, last, &mallory_honest.0, &mallory_honest.1),
        Err(Reject::Quiet)
    );
    let later = last + QUIET_AFTER_REJECT;
    let updates = bob
        .receive("r", m, later, &mallory_honest.0, &mallory_honest.1)
        .expect("an honest change of mallory's own is a member's write");
    assert_eq!(updates.len(), 1);
    assert_eq!(bob.get("r", "topic").unwrap().author, m);
    assert_eq!(bob.get("r", "kept").unwrap().author, bob_id.uuid());
    assert!(bob.counters().rejected.values().sum::<u64>() >= 9);
}

#[test]
fn local_writes_respect_the_limits() {
    let identity = Identity::from_secret([1; 32]);
    let limits = Limits {
        keys: 3,
        changes: 6,
        ..Limits::default()
    };
    let mut states = RoomStates::new(identity, limits);
    assert!(matches!(
        states.put("r", "a b", Some("x")),
        Err(StateError::BadKey(_))
    ));
    assert!(matches!(
        states.put("r", &"k".repeat(65), Some("x")),
        Err(StateError::BadKey(_))
    ));
    assert!(matches!(
        states.put("r", "k", Some(&"v".repeat(1025))),
        Err(StateError::ValueTooLong {
            len: 1025,
            max: 1024
        })
    ));
    for key in ["a", "b", "c"] {
        assert!(states.put("r", key, Some("1")).unwrap().is_some());
    }
    assert!(
        states.put("r", "a", Some("1")).unwrap().is_none(),
        "the same value again changes nothing"
    );
    assert!(matches!(
        states.put("r", "d", Some("1")),
        Err(StateError::TooManyKeys { max: 3, .. })
    ));
    states.put("r", "a", Some("2")).unwrap();
    states.put("r", "a", None).unwrap();
    states.put("r", "d", Some("1")).unwrap();
    let full = states.put("r", "d", Some("2")).unwrap_err();
    assert!(
        matches!(full, StateError::HistoryFull { changes: 6, .. }),
        "{full}"
    );
    assert!(full.to_string().contains("full"), "{full}");
}

#[test]
fn a_remote_change_past_the_limits_is_refused() {
    let (alice_id, mut alice) = member(1);
    let bob_id = Identity::from_secret([2; 32]);
    let mut bob = RoomStates::new(
        bob_id.clone(),
        Limits {
            keys: 2,
            ..Limits::default()
        },
    );
    for key in ["a", "b", "c"] {
        alice.put("r", key, Some("1")).unwrap();
    }
    let now = Instant::now();
    let (a, b) = (alice_id.uuid(), bob_id.uuid());
    let mut refused = false;
    for _ in 0..5 {
        if let Some((data, sigs)) = bob.generate("r", a, now) {
            alice.receive("r", b, now, &data, &sigs).unwrap();
        }
        if let Some((data, sigs)) = alice.generate("r", b, now) {
            refused |= bob.receive("r", a, now, &data, &sigs) == Err(Reject::Full);
        }
    }
    assert!(refused);
    assert!(bob.entries("r").is_empty());
}

#[test]
fn stored_state_loads_back_and_syncs_on() {
    let (alice_id, mut alice) = member(1);
    let (bob_id, mut bob) = member(2);
    let (a, b) = (alice_id.uuid(), bob_id.uuid());
    let mut pieces = Vec::new();
    for i in 0..30 {
        alice.put("r", &format!("k{i}"), Some("v")).unwrap();
        for saved in alice.take_saves() {
            assert!(!saved.replace);
            pieces.push((saved.data, saved.sigs));
        }
    }
    assert!(alice.take_saves().is_empty(), "nothing new to store");
    let mut again = RoomStates::new(alice_id.clone(), Limits::default());
    let compact = again.restore("r", pieces).expect("30 pieces are compacted");
    assert!(compact.replace);
    assert_eq!(values(&again, "r"), values(&alice, "r"));
    let mut third = RoomStates::new(alice_id, Limits::default());
    assert!(
        third
            .restore("r", vec![(compact.data, compact.sigs)])
            .is_none()
    );
    assert_eq!(values(&third, "r"), values(&alice, "r"));
    // What was loaded goes on to others with its signatures.
    exchange((&mut third, a), (&mut bob, b), "r");
    assert_eq!(values(&bob, "r").len(), 30);
}

/// Fills `room` with `value_len`-byte values under 64-byte keys, then overwrites one key until
/// the history takes no more.
fn fill(states: &mut RoomStates, room: &str, value_len: usize) {
    let mut i = 0;
    while states
        .put(room, &format!("{i:0>64}"), Some(&"v".repeat(value_len)))
        .is_ok()
    {
        i += 1;
    }
    while states.put(room, "x", Some(&i.to_string())).is_ok() {
        i += 1;
    }
}

#[test]
fn a_full_room_fits_one_message() {
    for value_len in [1, 100, Limits::default().value] {
        let (full_id, mut full) = member(1);
        fill(&mut full, "r", value_len);
        let (bob_id, mut bob) = member(2);
        let now = Instant::now();
        let (a, b) = (full_id.uuid(), bob_id.uuid());
        // An empty member says what it has; the answer carries everything.
        let (hello, hello_sigs) = bob.generate("r", a, now).unwrap();
        full.receive("r", b, now, &hello, &hello_sigs).unwrap();
        let (data, sigs) = full.generate("r", b, now).expect("everything");
        let wire = proto::chat::ChatMessage::State {
            room: "r".into(),
            sync: data.clone(),
            sigs: sigs.clone(),
        }
        .encode();
        assert!(
            wire.len() < proto::Config::default().max_message,
            "{} bytes on the wire for values of {value_len} bytes",
            wire.len()
        );
        bob.receive("r", a, now, &data, &sigs).unwrap();
        assert_eq!(values(&bob, "r"), values(&full, "r"));
    }
}

mod rounds;
