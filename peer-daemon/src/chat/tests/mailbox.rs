//! Offline delivery in virtual time: a message for a peer that quit goes to its mailbox
//! (`queued`), letters come out of a mailbox once each in their sender's order, receipts go
//! back directly or through the sender's own mailbox, and blocked peers are not heard.

use proto::mailbox::{Content, Letter, Opened, Stamp};

use super::*;
use crate::history::{Change, MailChange, SavedMail};

/// The mailboxes of the test: what the nodes deposited, as the recipients would open it.
#[derive(Default)]
struct Post {
    boxes: std::collections::BTreeMap<Uuid, Vec<Opened>>,
    next_at: u64,
}

impl Post {
    /// Takes node `i`'s deposits: each is answered `Deposited` and put in its recipient's box.
    fn collect(&mut self, net: &mut ChatNet, i: usize) {
        let from = net.id(i);
        for outgoing in std::mem::take(&mut net.nodes[i].deposits) {
            self.next_at += 1;
            let at = self.next_at;
            let receipt = matches!(outgoing.content, Content::Receipt { .. });
            self.boxes.entry(outgoing.to).or_default().push(Opened {
                sender_key: identity(i).public_key(),
                from,
                letter: Letter {
                    to: outgoing.to,
                    stamp: Stamp {
                        id: outgoing.id,
                        at,
                    },
                    content: outgoing.content,
                },
            });
            let reply = IndexReply::Deposited {
                to: outgoing.to,
                id: outgoing.id,
                at,
                receipt,
                answer: Ok(()),
            };
            net.reply(i, reply);
        }
    }

    /// Hands node `j` its mailbox, as the mailman would.
    fn deliver(&mut self, net: &mut ChatNet, j: usize) {
        let letters = self.boxes.remove(&net.id(j)).unwrap_or_default();
        net.reply(
            j,
            IndexReply::Mail {
                letters,
                through: 7,
            },
        );
    }
}

fn queued(net: &ChatNet, i: usize) -> Vec<u64> {
    net.shown(i)
        .filter_map(|e| match e {
            UiEvent::Queued { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn delivered_by_mail(net: &ChatNet, i: usize) -> Vec<u64> {
    net.shown(i)
        .filter_map(|e| match e {
            UiEvent::Delivered {
                id,
                via: Some("mailbox"),
                ..
            } => Some(*id),
            _ => None,
        })
        .collect()
}

/// Alice and bob talked; then bob quit (his goodbye reached alice, his record is gone).
fn bob_quit() -> ChatNet {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let bob = net.id(1);
    net.type_line(0, &format!("/msg {bob} hello"));
    net.run_for(2 * SEC);
    assert_eq!(net.texts(1).len(), 1);
    net.type_line(1, "/quit");
    net.run_for(2 * SEC);
    net.index.records.remove(&bob);
    net.clear(0);
    net
}

#[test]
fn a_message_for_a_peer_that_quit_waits_in_its_mailbox_and_is_delivered_from_it() {
    let mut net = bob_quit();
    let (alice, bob) = (net.id(0), net.id(1));
    for n in 0..3 {
        net.type_line(0, &format!("/msg {bob} later {n}"));
    }
    net.run_for(SEC);
    let deposits = &net.nodes[0].deposits;
    assert_eq!(deposits.len(), 3, "{:?}", net.nodes[0].shown);
    for (n, outgoing) in deposits.iter().enumerate() {
        assert_eq!(outgoing.to, bob);
        assert_eq!(
            outgoing.key,
            Some(identity(1).public_key()),
            "the key bob proved"
        );
        assert_eq!(
            outgoing.content,
            Content::Text {
                text: format!("later {n}"),
                action: false
            }
        );
    }
    let mut post = Post::default();
    post.collect(&mut net, 0);
    assert_eq!(queued(&net, 0).len(), 3);
    assert!(
        !net.shown(0).any(|e| matches!(e, UiEvent::Failed { .. })),
        "nothing failed: {:?}",
        net.nodes[0].shown
    );
    let waiting = net.nodes[0]
        .stored
        .iter()
        .filter(|c| matches!(c, Change::Mail(MailChange::Waiting { .. })))
        .count();
    assert_eq!(waiting, 3, "the store keeps what waits");

    // Bob is back: he takes the letters (shown once, in order) and says so directly.
    let mut post_for_bob = std::mem::take(&mut post);
    net.index
        .records
        .insert(bob, index::record(bob, net.nodes[1].addr, Some("bob")));
    let config = SecureConfig {
        endpoint: proto::Config {
            deadline: DEADLINE,
            ..proto::Config::default()
        },
        seed: [201; 32],
    };
    // A new run: a new incarnation.
    let endpoint = SecureEndpoint::new(identity(1), 2, config);
    net.nodes[1].core = ChatCore::new(endpoint, Some("bob".into()), net.instant());
    net.register(1);
    post_for_bob.deliver(&mut net, 1);
    net.run_for(3 * SEC);
    let texts: Vec<String> = net.texts(1).into_iter().skip(1).map(|(_, t)| t).collect();
    assert_eq!(texts, ["later 0", "later 1", "later 2"]);
    assert_eq!(net.nodes[1].taken, [7], "the batch is taken once handled");
    assert!(net.shown(1).any(
        |e| matches!(e, UiEvent::Message { via: Some("mailbox"), from, .. } if *from == alice)
    ));
    let mut ids = delivered_by_mail(&net, 0);
    ids.sort_unstable();
    let mut want = queued(&net, 0);
    want.sort_unstable();
    assert_eq!(ids, want, "every queued message is delivered once");
}

#[test]
fn letters_are_shown_once_in_their_senders_order_and_receipts_name_them() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let (alice, bob) = (net.id(0), net.id(1));
    let letter = |id: u64, at: u64| Opened {
        sender_key: identity(0).public_key(),
        from: alice,
        letter: Letter {
            to: bob,
            stamp: Stamp { id, at },
            content: Content::Text {
                text: format!("letter {id}"),
                action: false,
            },
        },
    };
    // The index hands them out of order, one twice.
    let letters = vec![letter(2, 30), letter(0, 10), letter(1, 20), letter(0, 10)];
    // Alice's core knows these three wait in bob's mailbox; a fourth, unknown stamp is not hers.
    net.nodes[0].core.restore_mail(SavedMail {
        waiting: vec![(0, bob, 10), (1, bob, 20), (2, bob, 99)],
        ..SavedMail::default()
    });
    net.reply(
        1,
        IndexReply::Mail {
            letters,
            through: 4,
        },
    );
    net.run_for(3 * SEC);
    let texts: Vec<String> = net.texts(1).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["letter 0", "letter 1", "letter 2"]);
    assert_eq!(net.nodes[1].taken, [4]);
    // Receipts arrived directly: 0 and 1 match what alice sealed; 2's time does not.
    let mut ids = delivered_by_mail(&net, 0);
    ids.sort_unstable();
    assert_eq!(ids, [0, 1]);

    // The same letters again (a crash before they were deleted): nothing is shown twice.
    net.clear(1);
    let again = vec![letter(0, 10), letter(1, 20)];
    net.reply(
        1,
        IndexReply::Mail {
            letters: again,
            through: 4,
        },
    );
    net.run_for(3 * SEC);
    assert!(net.texts(1).is_empty());
    let counters = net.nodes[1].core.mail_counters();
    assert_eq!(counters[0], ("mailbox.duplicates", 3));
}

#[test]
fn a_receipt_for_a_sender_that_is_away_goes_to_its_mailbox() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let alice = net.id(0);
    net.type_line(0, "/quit");
    net.run_for(2 * SEC);
    net.index.records.remove(&alice);
    let opened = Opened {
        sender_key: identity(0).public_key(),
        from: alice,
        letter: Letter {
            to: net.id(1),
            stamp: Stamp { id: 5, at: 50 },
            content: Content::Text {
                text: "bye for now".into(),
                action: false,
            },
        },
    };
    net.reply(
        1,
        IndexReply::Mail {
            letters: vec![opened],
            through: 1,
        },
    );
    net.run_for(10 * SEC);
    let receipt = net.nodes[1]
        .deposits
        .iter()
        .find(|o| o.to == alice)
        .expect("the receipt goes to alice's mailbox");
    assert_eq!(
        receipt.content,
        Content::Receipt {
            letters: vec![Stamp { id: 5, at: 50 }]
        }
    );
    assert_eq!(receipt.key, Some(identity(0).public_key()));
}

#[test]
fn a_blocked_peer_is_not_heard_directly_nor_by_mail() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let (alice, bob) = (net.id(0), net.id(1));
    net.type_line(1, &format!("/block {alice}"));
    assert_eq!(net.nodes[1].blocks, [(alice, true)]);
    net.type_line(0, &format!("/msg {bob} can you hear me"));
    net.run_for(3 * SEC);
    assert!(net.texts(1).is_empty(), "dropped: {:?}", net.nodes[1].shown);
    let letter = Opened {
        sender_key: identity(0).public_key(),
        from: alice,
        letter: Letter {
            to: bob,
            stamp: Stamp { id: 1, at: 1 },
            content: Content::Text {
                text: "by mail then".into(),
                action: false,
            },
        },
    };
    net.reply(
        1,
        IndexReply::Mail {
            letters: vec![letter],
            through: 1,
        },
    );
    assert!(net.texts(1).is_empty());
    assert_eq!(
        net.nodes[1].taken,
        [1],
        "taken (and so deleted) all the same"
    );
    assert_eq!(
        net.nodes[1].core.mail_counters()[1],
        ("mailbox.from_blocked", 2)
    );

    net.type_line(1, &format!("/unblock {alice}"));
    net.type_line(0, &format!("/msg {bob} and now?"));
    net.run_for(3 * SEC);
    assert_eq!(net.texts(1), [(alice, "and now?".to_owned())]);
}

#[test]
fn without_an_index_an_undeliverable_message_fails_as_before() {
    let mut net = bob_quit();
    let bob = net.id(1);
    net.reply(0, IndexReply::NoIndex);
    net.type_line(0, &format!("/msg {bob} anyone?"));
    net.run_for(DEADLINE + 2 * SEC);
    assert!(net.nodes[0].deposits.is_empty());
    assert!(net.shown(0).any(|e| matches!(e, UiEvent::Failed { .. })));
}

#[test]
fn a_message_a_silent_peer_never_acknowledges_goes_to_its_mailbox_after_the_deadline() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let bob = net.id(1);
    net.type_line(0, &format!("/msg {bob} first"));
    net.run_for(2 * SEC);
    // Bob's machine dies without a goodbye: his record stays, he just stops answering.
    net.impair(1, proto::sim::DEAD);
    net.links[0].impair = proto::sim::DEAD;
    net.type_line(0, &format!("/msg {bob} are you still there?"));
    net.run_for(DEADLINE - SEC);
    assert!(net.nodes[0].deposits.is_empty(), "not before the deadline");
    net.run_for(3 * SEC);
    let deposit = net.nodes[0]
        .deposits
        .first()
        .expect("in the mailbox after the deadline");
    assert_eq!(
        deposit.content,
        Content::Text {
            text: "are you still there?".into(),
            action: false
        }
    );
    let mut post = Post::default();
    post.collect(&mut net, 0);
    let reason = net
        .shown(0)
        .find_map(|e| match e {
            UiEvent::Queued { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("queued");
    assert!(
        !reason.is_empty(),
        "the queued event says why direct delivery failed"
    );
}

#[test]
fn with_the_mailbox_off_an_undeliverable_message_fails_as_before() {
    let mut net = bob_quit();
    let bob = net.id(1);
    net.nodes[0].core.set_mailbox(false);
    net.type_line(0, &format!("/msg {bob} anyone?"));
    net.run_for(2 * SEC);
    assert!(net.nodes[0].deposits.is_empty());
    let failed = net.shown(0).any(|e| {
        matches!(e, UiEvent::Failed { reason, .. } if reason == "no such peer is registered at the index")
    });
    assert!(failed, "{:?}", net.nodes[0].shown);
}
