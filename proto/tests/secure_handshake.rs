//! Handshake and hygiene tests of [`proto::SecureEndpoint`] on the deterministic harness
//! [`proto::sim`]: malformed input, idleness, lost handshake messages, no amplification, and
//! forged session notices. Delivery and impersonation tests are in `tests/secure.rs`.

mod common;

use common::secure::*;
use proto::sim::{CLEAN, HARSH, Peer as _, SEC};
use proto::wire::{self, MAX_DATAGRAM, Sealed};
use proto::{Config, Endpoint, Event};

/// Random bytes, plaintext DATA and ACK frames with the right UUIDs and incarnations, and a
/// well-sealed non-frame are counted as malformed, raise no event, never reach the reliable
/// layer, and leave the real session working.
#[test]
fn malformed_datagrams_are_counted_and_ignored() {
    let mut p = net(&[CLEAN, CLEAN], 7);
    let (a_addr, b_addr) = (p.nodes[A].addr, p.nodes[B].addr);
    let (a, b) = (p.nodes[A].id, p.nodes[B].id);
    p.send_to(A, B, b"hello".to_vec());
    p.run_to_idle();
    let (a_inner, b_inner) = (p.nodes[A].ep.stats(), p.nodes[B].ep.stats());
    let (a_before, b_before) = (p.secure(A), p.secure(B));

    // Random bytes of every length up to beyond the largest datagram.
    let mut garbage: Vec<Vec<u8>> = (0..400).map(|i| p.rng.bytes(i * 13 % 1300)).collect();
    // Random bytes behind a valid version byte: unknown types, truncated headers.
    garbage.extend((0..100).map(|i| [&[wire::VERSION][..], &p.rng.bytes(i % 40)].concat()));
    let malformed = garbage
        .iter()
        .filter(|g| wire::decode_sealed(g).is_err())
        .count() as u64;
    assert!(
        malformed >= 490,
        "only {malformed} of the garbage is malformed"
    );

    // Plaintext frames with the right UUIDs and incarnations, from a plain Endpoint posing as
    // A (DATA, several fragments) and one posing as B (the ACKs it answers with).
    let now = p.now();
    let mut plain_a = Endpoint::new(a, INCS[A], Config::default());
    let mut plain_b = Endpoint::new(b, INCS[B], Config::default());
    plain_a
        .send(now, b, b_addr, b"in the clear".to_vec())
        .unwrap();
    plain_a
        .send(now, b, b_addr, vec![7; 3 * wire::MAX_FRAGMENT])
        .unwrap();
    let mut to_b = Vec::new();
    while let Some(t) = plain_a.poll_transmit(now) {
        plain_b.handle_datagram(now, a_addr, &t.bytes);
        to_b.push(t.bytes);
    }
    assert!(plain_b.poll_event().is_some(), "the plain frames are valid");
    let mut to_a = Vec::new();
    while let Some(t) = plain_b.poll_transmit(now) {
        to_a.push(t.bytes);
    }
    assert!(to_b.len() >= 4 && !to_a.is_empty());

    for g in &garbage {
        p.hand(B, a_addr, g);
    }
    for bytes in &to_b {
        p.hand(B, a_addr, bytes);
    }
    for bytes in &to_a {
        p.hand(A, b_addr, bytes);
    }
    let secure = p.secure(B);
    assert_eq!(
        secure.malformed - b_before.malformed,
        malformed + to_b.len() as u64
    );
    assert_eq!(
        p.secure(A).malformed - a_before.malformed,
        to_a.len() as u64
    );
    // A well-sealed frame whose plaintext is not a frame is malformed too.
    let mallory = identity(M);
    let key = mallory.noise_private_key();
    let (mut rogue, _) = Rogue::handshake(&mut p, B, key, mallory.public_key());
    p.hand(B, ROGUE_ADDR, &rogue.seal_frame(b"\x01\x01 not a frame"));
    assert_eq!(p.secure(B).malformed, secure.malformed + 1);

    // No events, nothing reached either reliable layer.
    p.run_to_idle();
    assert_eq!(
        p.all_events(B),
        [Event::Message {
            from: a,
            data: b"hello".to_vec()
        }]
    );
    assert_eq!(p.nodes[B].ep.stats(), b_inner);
    assert_eq!(p.nodes[A].ep.stats(), a_inner);
    assert_eq!(
        p.secure(A).decrypt_failures + p.secure(B).decrypt_failures,
        0
    );

    // The real session survived it all.
    p.send_to(A, B, b"still here".to_vec());
    p.run_to_idle();
    assert_eq!(p.messages_from(B, A), [&b"hello"[..], b"still here"]);
}

/// After traffic in both directions settles, no timer, datagram or event remains, and settling
/// takes bounded time.
#[test]
fn idle_means_idle() {
    let mut p = net(&[HARSH, HARSH], 8);
    for i in 0..50 {
        p.send_to(A, B, marked('x', i));
        p.send_to(B, A, marked('y', i));
    }
    p.run_to_idle();
    assert_eq!(
        (p.messages_from(A, B).len(), p.messages_from(B, A).len()),
        (50, 50)
    );
    assert_eq!(
        (p.delivered_to(A, B).len(), p.delivered_to(B, A).len()),
        (50, 50)
    );
    assert!(p.links.iter().all(|l| l.queue.is_empty()));
    // Settling took bounded time after the last event: no timer kept re-arming itself.
    let last_event = p
        .nodes
        .iter()
        .flat_map(|n| n.events.iter().map(|e| e.0))
        .max();
    let settle = p.time - last_event.unwrap();
    assert!(
        settle <= 15 * SEC,
        "idle only {settle:?} after the last event"
    );
    // Nothing but the odd late answer went out after the last event.
    let late = p
        .nodes
        .iter()
        .flat_map(|n| n.sent.iter().filter(|s| s.at > last_event.unwrap()));
    assert!(late.count() < 20);
    let (now, later) = (p.now(), p.now() + 3600 * SEC);
    for node in &mut p.nodes {
        assert_eq!(node.ep.poll_timeout(), None);
        assert_eq!(node.ep.poll_transmit(now), None);
        node.ep.handle_timeout(later);
        assert_eq!(node.ep.poll_transmit(later), None);
        assert_eq!(node.ep.poll_event(), None);
        assert_eq!(node.ep.poll_timeout(), None);
    }
}

// Beyond the brief: properties the design documents, probed directly.

/// The first HsInit, HsResp and HsFinal are each lost once; the message still arrives.
#[test]
fn every_lost_handshake_message_is_recovered() {
    let mut p = net(&[CLEAN, CLEAN], 9);
    // The first HsInit, HsResp and HsFinal each vanish once.
    fn once(kind: fn(&Sealed) -> bool) -> impl FnMut(&[u8]) -> bool {
        let mut dropped = false;
        move |bytes| {
            let hit = !dropped && wire::decode_sealed(bytes).is_ok_and(|s| kind(&s));
            dropped |= hit;
            hit
        }
    }
    let (mut init, mut fin) = (
        once(|s| matches!(s, Sealed::HsInit { .. })),
        once(|s| matches!(s, Sealed::HsFinal { .. })),
    );
    p.links[A].drop_if(move |b| init(b) || fin(b));
    p.links[B].drop_if(once(|s| matches!(s, Sealed::HsResp { .. })));
    let id = p.send_to(A, B, b"eventually".to_vec());
    p.run_to_idle();
    assert_eq!(p.messages_from(B, A), [b"eventually"]);
    assert_eq!((p.delivered_to(A, B), p.failed(A)), (vec![id], vec![]));
    let at = p.events(B, |at, _| Some(at))[0];
    assert!(at < Config::default().deadline / 2, "took {at:?}");
}

#[test]
/// The same for the smallest initiation Noise allows (ephemeral key only).
fn answering_a_handshake_never_amplifies() {
    let mut p = net(&[CLEAN, CLEAN], 10);
    // A spoofed-source HsInit with nothing but the ephemeral key: the smallest valid one.
    let mut state = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
        .local_private_key(&identity(M).noise_private_key())
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&[0x42; 32])
        .prologue(PROLOGUE)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut noise = vec![0; MAX_DATAGRAM];
    let len = state.write_message(&[], &mut noise).unwrap();
    noise.truncate(len);
    let init = wire::encode_sealed(&Sealed::HsInit { sender: 1, noise });
    let mark = p.nodes[B].sent.len();
    p.hand(B, ROGUE_ADDR, &init);
    let answered: usize = p.nodes[B].sent[mark..].iter().map(|s| s.bytes.len()).sum();
    assert!(
        answered <= init.len(),
        "{} bytes in, {answered} bytes out",
        init.len()
    );
}

/// An initiation as the real initiator pads it is answered with no more bytes than it had.
#[test]
fn a_padded_handshake_is_answered_without_amplification() {
    let mut p = net(&[CLEAN, CLEAN], 11);
    let (_, init) = Rogue::initiate(identity(M).noise_private_key(), 1, [0x42; 32]);
    let mark = p.nodes[B].sent.len();
    p.hand(B, ROGUE_ADDR, &init);
    let answered: Vec<usize> = p.nodes[B].sent[mark..]
        .iter()
        .map(|s| s.bytes.len())
        .collect();
    assert_eq!(answered.len(), 1);
    assert!(
        answered[0] <= init.len(),
        "{} bytes in, {answered:?} out",
        init.len()
    );
}

/// An unauthenticated UnknownSession notice for a live session, from a stranger's address,
/// costs at most one handshake and loses or duplicates nothing.
#[test]
fn a_forged_session_notice_costs_at_most_a_handshake() {
    let mut p = net(&[CLEAN, CLEAN], 12);
    let first = p.send_to(A, B, b"one".to_vec());
    p.run_to_idle();
    let handshakes = p.secure(A).handshakes;
    // An on-path observer reads B's session index off A's transport datagrams and tells A,
    // from her own address, that B has no such session. The notice is unauthenticated.
    let index = p.sealed_sent(A, 0).into_iter().find_map(|s| match s {
        Sealed::Transport { receiver, .. } => Some(receiver),
        _ => None,
    });
    let notice = Sealed::UnknownSession {
        index: index.unwrap(),
    };
    p.hand(A, ROGUE_ADDR, &wire::encode_sealed(&notice));
    let second = p.send_to(A, B, b"two".to_vec());
    p.run_to_idle();
    assert_eq!(p.messages_from(B, A), [b"one", b"two"]);
    assert_eq!(
        (p.delivered_to(A, B), p.failed(A)),
        (vec![first, second], vec![])
    );
    assert!(p.secure(A).handshakes <= handshakes + 1);
}
