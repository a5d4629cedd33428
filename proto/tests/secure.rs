//! End-to-end tests of [`proto::SecureEndpoint`] through the deterministic harness in
//! [`proto::sim`]: fixed identities and seeds, a virtual clock, seeded lossy, duplicating and
//! reordering links, so every run sees exactly the same traffic.
//!
//! Where an attacker needs more than the public API offers (a session that speaks for someone
//! else, a handshake that claims someone else's key), a [`Rogue`] speaks the secure wire
//! protocol by hand with `snow`: the same Noise pattern, prologue and payloads as the real
//! thing, but under the test's control. Each rogue test first shows that an honest use of the
//! rogue is accepted, so a refusal is the property at work and not a broken rogue.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::secure::*;
use proto::sim::{CLEAN, DEAD, MS, SEC, impair};
use proto::wire::{self, Ack, Data, Packet, Sealed};
use proto::{Event, MsgId};

/// 200 messages each way over 20% loss, 10% duplication and reordering arrive exactly once, in
/// order; no datagram carries message bytes, a UUID or an identity key in the clear; link
/// duplicates are caught as replays.
#[test]
fn messages_arrive_once_in_order_and_never_in_the_clear() {
    let lossy = impair(0.2, 0.1, 30);
    let mut p = net(&[lossy, lossy], 1);
    let (mut sent, mut ids) = ([vec![], vec![]], [vec![], vec![]]);
    for round in 0..8 {
        for (i, tag) in [(A, 'a'), (B, 'b')] {
            for k in 0..25 {
                let data = marked(tag, round * 25 + k);
                ids[i].push(p.send_to(i, 1 - i, data.clone()));
                sent[i].push(data);
            }
        }
        p.run_for(20 * MS);
    }
    p.run_to_idle();
    for i in [A, B] {
        assert!(
            p.messages_from(1 - i, i) == sent[i],
            "messages from {i} differ"
        );
        assert_eq!(p.delivered_to(i, 1 - i), ids[i], "Delivered at {i}");
        assert_eq!(p.failed(i), vec![], "Failed at {i}");
    }

    // Nothing on the wire in the clear: no message bytes, no UUID, no identity key.
    let mut secrets: Vec<(&str, Vec<u8>)> = vec![("message bytes", b"PLAINTEXT".to_vec())];
    for i in [A, B] {
        secrets.push(("a UUID", identity(i).uuid().as_bytes().to_vec()));
        secrets.push(("a public key", identity(i).public_key().to_vec()));
    }
    let mut datagrams = 0;
    for node in &p.nodes {
        for s in &node.sent {
            datagrams += 1;
            assert!(
                wire::decode_sealed(&s.bytes).is_ok(),
                "not a sealed datagram"
            );
            for (what, secret) in &secrets {
                assert!(
                    !contains(&s.bytes, secret),
                    "{what} in the clear: {:?}",
                    s.bytes
                );
            }
        }
    }
    assert!(datagrams > 800, "only {datagrams} datagrams");

    // The link really was lossy, duplicating and reordering, and nothing was forged.
    for i in [A, B] {
        let (stats, secure) = (p.nodes[i].ep.stats(), p.secure(i));
        assert!(stats.retransmits > 20, "{i}: {stats:?}");
        assert!(
            secure.replays > 5,
            "link duplicates are replays: {secure:?}"
        );
        assert!(secure.handshakes >= 1, "{secure:?}");
        let forged = (secure.decrypt_failures, secure.spoofed, secure.malformed);
        assert_eq!(forged, (0, 0, 0), "{secure:?}");
        assert!(p.links[i].reordered > 20);
    }
}

/// A session authenticated as Mallory cannot deliver DATA or ACK frames in A's name (even with
/// A's address as the source), and a handshake claiming A's key without A's static key fails.
#[test]
fn a_session_cannot_speak_for_another_identity() {
    let mut p = net(&[CLEAN, CLEAN], 2);
    let mallory = identity(M);
    let (a, b) = (identity(A).uuid(), identity(B).uuid());
    let a_addr = p.nodes[A].addr;

    // Mallory completes an honest handshake with B, under her own identity.
    let key = mallory.noise_private_key();
    let (mut rogue, proved) = Rogue::handshake(&mut p, B, key, mallory.public_key());
    assert_eq!(proved, identity(B).public_key(), "B proved its own key");
    assert_eq!(p.secure(B).handshakes, 1);

    // Control: a frame in Mallory's own name is accepted, so the rogue seals correctly.
    let honest = Packet::Data(Data {
        from: mallory.uuid(),
        to: b,
        from_inc: INCS[M],
        to_inc: 0,
        stream: 0,
        seq: 0,
        last: true,
        payload: b"Mallory here".to_vec(),
    });
    p.hand(B, ROGUE_ADDR, &rogue.seal(&honest));
    let from_mallory = Event::Message {
        from: mallory.uuid(),
        data: b"Mallory here".to_vec(),
    };
    assert_eq!(p.all_events(B), std::slice::from_ref(&from_mallory));

    // The same session claiming A's UUID, on a fresh stream B would accept from A: once from
    // Mallory's address, once with A's address forged as the source.
    p.hand(B, ROGUE_ADDR, &rogue.seal(&data(A, B, 0, b"forged 1")));
    p.hand(B, a_addr, &rogue.seal(&data(A, B, 0, b"forged 2")));
    assert_eq!(
        p.all_events(B),
        std::slice::from_ref(&from_mallory),
        "B believed a forgery"
    );
    assert_eq!(p.secure(B).spoofed, 2);

    // A forged acknowledgement in A's name for a message B has in flight to A.
    p.links[B].impair = DEAD;
    let id = p.send_to(B, A, b"for A's eyes".to_vec());
    p.run_for(100 * MS);
    let ack = Packet::Ack(Ack {
        from: a,
        to: b,
        from_inc: INCS[A],
        to_inc: INCS[B],
        stream: 0,
        cumulative: 1,
        ranges: vec![],
    });
    p.hand(B, a_addr, &rogue.seal(&ack));
    assert_eq!(
        p.all_events(B),
        std::slice::from_ref(&from_mallory),
        "B believed a forged ack"
    );
    assert_eq!(p.secure(B).spoofed, 3);

    // A handshake in which Mallory claims A's public key (but can only prove her own static
    // key) is refused, and its session keys get her nowhere.
    let claimed = identity(A).public_key();
    let (mut liar, _) = Rogue::handshake(&mut p, B, key, claimed);
    let secure = p.secure(B);
    assert_eq!((secure.handshakes, secure.handshake_failures), (1, 1));
    let unknown = secure.unknown_session;
    p.hand(B, a_addr, &liar.seal(&data(A, B, 0, b"forged 3")));
    assert_eq!(p.secure(B).unknown_session, unknown + 1);

    // None of it disturbed the real conversation.
    p.links[B].impair = CLEAN;
    let real = p.send_to(A, B, b"really from A".to_vec());
    p.run_to_idle();
    assert_eq!(p.messages_from(B, A), [b"really from A"]);
    assert_eq!(p.messages_from(A, B), [b"for A's eyes"]);
    assert_eq!(
        (p.delivered_to(A, B), p.delivered_to(B, A)),
        (vec![real], vec![id])
    );
    assert_eq!(p.all_events(B).len(), 3, "{:?}", p.all_events(B));
}

/// A datagram route hijacked to Mallory: whether she answers with her own key or claims B's,
/// A refuses the handshake, encrypts nothing for her, and delivers to B once the route is fixed.
#[test]
fn a_stranger_answering_for_a_uuid_gets_nothing() {
    let mut p = net(&[CLEAN, CLEAN, CLEAN], 3);
    let (b_addr, a_addr) = (p.nodes[B].addr, p.nodes[A].addr);
    // Everything A sends to B's address reaches Mallory, who answers with her own key.
    p.redirect.insert(b_addr, M);
    let id = p.send_to(A, B, b"for B only".to_vec());
    p.run_for(3 * SEC);
    let failures = p.secure(A).handshake_failures;
    assert!(failures >= 2, "A should have tried again: {failures}");
    assert_eq!(p.secure(A).handshakes, 0);
    assert_eq!(p.secure(M).handshakes, 0);
    let hs_resp = |s: &Sealed| matches!(s, Sealed::HsResp { .. });
    assert!(
        p.sealed_sent(M, 0).iter().any(hs_resp),
        "Mallory did answer"
    );

    // A smarter Mallory claims B's Ed25519 key in her answer; she cannot prove its static key.
    p.links[A].drop_if(|_| true);
    p.run_for(2 * SEC);
    let init = p.nodes[A]
        .sent
        .iter()
        .rev()
        .find(|s| matches!(wire::decode_sealed(&s.bytes), Ok(Sealed::HsInit { .. })));
    let init = init.expect("A keeps trying").bytes.clone();
    let (key, claimed) = (identity(M).noise_private_key(), identity(B).public_key());
    let mark = p.nodes[A].sent.len();
    p.hand(A, b_addr, &rogue_response(key, claimed, &init));
    assert_eq!(p.secure(A).handshake_failures, failures + 1);
    assert_eq!(p.secure(A).handshakes, 0);
    assert!(
        p.nodes[A].sent.len() == mark,
        "A answered a false handshake"
    );

    // A never encrypted a thing for Mallory, and Mallory learnt nothing.
    assert!(!p.nodes[A].sent.iter().any(|s| is_transport(&s.bytes)));
    assert_eq!(p.nodes[M].events, vec![]);
    assert_eq!(p.nodes[B].events, vec![]);

    // Once the route is fixed, the message reaches the real B.
    p.links[A].tap = None;
    p.redirect.clear();
    p.run_to_idle();
    assert_eq!(p.messages_from(B, A), [b"for B only"]);
    assert_eq!((p.delivered_to(A, B), p.failed(A)), (vec![id], vec![]));
    assert_eq!(p.nodes[M].events, vec![]);
    assert_eq!(p.nodes[B].ep.peer_addr(&p.nodes[A].id), Some(a_addr));
}

/// A captured transport datagram replayed later (twice, the second time after the window moved
/// on) is counted as a replay, never reaches the reliable layer and draws no answer.
#[test]
fn a_replayed_datagram_is_dropped_before_the_reliable_layer() {
    let mut p = net(&[CLEAN, CLEAN], 4);
    let b_addr = p.nodes[B].addr;
    p.send_to(A, B, b"warm-up".to_vec());
    p.run_to_idle();
    let mark = p.nodes[A].sent.len();
    p.send_to(A, B, b"pay Bob 100".to_vec());
    p.run_to_idle();
    assert_eq!(p.messages_from(B, A), [&b"warm-up"[..], b"pay Bob 100"]);
    // On a clean link and a settled session, the message took exactly one datagram.
    let carried: Vec<Vec<u8>> = p.nodes[A].sent[mark..]
        .iter()
        .map(|s| s.bytes.clone())
        .collect();
    assert!(
        carried.len() == 1 && is_transport(&carried[0]),
        "{carried:?}"
    );
    let captured = carried[0].clone();

    for (round, later) in [(1, SEC), (2, 5 * SEC)] {
        let (inner, b_sent) = (p.nodes[B].ep.stats().datagrams, p.nodes[B].sent.len());
        let received = p.messages_from(B, A).len();
        p.run_for(later);
        p.inject(A, b_addr, captured.clone());
        p.run_to_idle();
        assert_eq!(
            p.messages_from(B, A).len(),
            received,
            "replayed message delivered"
        );
        assert_eq!(p.secure(B).replays, round);
        assert_eq!(
            p.nodes[B].ep.stats().datagrams,
            inner,
            "replay reached the inner layer"
        );
        assert_eq!(p.nodes[B].sent.len(), b_sent, "B answered a replay");
        // More traffic moves the window on; the old datagram must stay dead.
        for k in 0..20 {
            p.send_to(A, B, format!("more {round}.{k}").into_bytes());
        }
        p.run_to_idle();
    }
    assert_eq!(p.messages_from(B, A).len(), 42);
    assert_eq!(p.secure(B).decrypt_failures, 0);
}

/// Single bit flips anywhere in the ciphertext (tag included) fail decryption and are counted;
/// retransmission still delivers the message once.
#[test]
fn a_tampered_datagram_is_dropped_and_the_message_still_arrives() {
    let mut p = net(&[CLEAN, CLEAN], 5);
    p.send_to(A, B, b"warm-up".to_vec());
    p.run_to_idle();
    // The next three transport datagrams from A each get one ciphertext bit flipped: in the
    // first byte, the middle, and the authentication tag.
    let flips = Rc::new(Cell::new(0usize));
    let counted = flips.clone();
    p.links[A].tap = Some(Box::new(move |bytes| {
        let n = counted.get();
        if n < 3 && is_transport(bytes) {
            let len = bytes.len() - CIPHERTEXT_AT;
            let at = CIPHERTEXT_AT + [0, len / 2, len - 1][n];
            bytes[at] ^= 1 << (n + 2);
            counted.set(n + 1);
            assert!(is_transport(bytes), "the header is intact");
        }
        true
    }));
    let id = p.send_to(A, B, b"tamper-proof".to_vec());
    p.run_to_idle();
    assert_eq!(flips.get(), 3);
    assert_eq!(p.secure(B).decrypt_failures, 3);
    assert_eq!(p.messages_from(B, A), [&b"warm-up"[..], b"tamper-proof"]);
    assert_eq!(p.delivered_to(A, B), [0, id]);
    assert!(p.nodes[A].ep.stats().retransmits >= 3);
}

/// B restarts (same identity, later incarnation): it answers A's stale session with a notice, A
/// handshakes again, and new B gets exactly the messages not delivered to old B, despite
/// copies of every old datagram arriving late.
#[test]
fn a_restarted_peer_gets_later_messages_once_and_no_old_ones() {
    let link = impair(0.1, 0.1, 20);
    let mut p = net(&[link, link], 6);
    // B speaks first, so every frame A sends names B's incarnation.
    p.send_to(B, A, b"hi".to_vec());
    p.run_to_idle();
    let old: Vec<Vec<u8>> = (0..20).map(|i| marked('o', i)).collect();
    let mut ids: Vec<MsgId> = old.iter().map(|d| p.send_to(A, B, d.clone())).collect();
    p.run_to_idle();
    assert!(p.messages_from(B, A) == old);
    let handshakes = p.secure(A).handshakes;

    // More messages go on the link, then B restarts (same identity, later incarnation, fresh
    // randomness) before any of them arrives.
    let mid: Vec<Vec<u8>> = (0..10).map(|i| marked('m', i)).collect();
    ids.extend(mid.iter().map(|d| p.send_to(A, B, d.clone())));
    p.flush();
    p.nodes[B].ep = endpoint(B, INCS[B] + 1, 99);
    p.nodes[B].events.clear();
    let b_mark = p.nodes[B].sent.len();
    // Copies of everything A ever sent the old B are still wandering the network.
    for sent in p.nodes[A].sent.clone() {
        p.inject(A, sent.to, sent.bytes);
    }

    let new: Vec<Vec<u8>> = (0..20).map(|i| marked('n', i)).collect();
    ids.extend(new[..10].iter().map(|d| p.send_to(A, B, d.clone())));
    p.run_for(100 * MS);
    ids.extend(new[10..].iter().map(|d| p.send_to(A, B, d.clone())));
    p.run_to_idle();

    assert!(
        p.messages_from(B, A) == [mid, new].concat(),
        "new B's messages"
    );
    assert_eq!(p.nodes[B].events.len(), 30, "new B got something else");
    ids.sort_unstable();
    assert_eq!(p.delivered_to(A, B), ids);
    assert_eq!(p.failed(A), vec![]);
    // A was told its session was gone, and made a new one.
    assert!(p.secure(B).unknown_session > 0);
    let notices = p.sealed_sent(B, b_mark);
    let notices = notices
        .iter()
        .filter(|s| matches!(s, Sealed::UnknownSession { .. }));
    assert!(notices.count() > 0);
    assert!(p.secure(A).handshakes > handshakes);
    assert_eq!(p.secure(B).decrypt_failures, 0);
}
