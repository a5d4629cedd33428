//! End-to-end tests of [`proto::SecureEndpoint`] through the deterministic harness in
//! `common/mod.rs`: fixed identities and seeds, a virtual clock, seeded lossy, duplicating and
//! reordering links, so every run sees exactly the same traffic.
//!
//! Where an attacker needs more than the public API offers (a session that speaks for someone
//! else, a handshake that claims someone else's key), a [`Rogue`] speaks the secure wire
//! protocol by hand with `snow`: the same Noise pattern, prologue and payloads as the real
//! thing, but under the test's control. Each rogue test first shows that an honest use of the
//! rogue is accepted, so a refusal is the property at work and not a broken rogue.

mod common;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use common::{CLEAN, DEAD, HARSH, Impair, MS, Net, Node, SEC, impair};
use proto::identity::Identity;
use proto::wire::{self, Ack, Data, MAX_DATAGRAM, Packet, Sealed};
use proto::{Config, Endpoint, Event, MsgId, SecureConfig, SecureEndpoint, SecureStats};
use snow::{HandshakeState, StatelessTransportState};

const A: usize = 0;
const B: usize = 1;
/// Mallory, when she runs a real endpoint.
const M: usize = 2;
const SECRETS: [[u8; 32]; 3] = [[0xA1; 32], [0xB2; 32], [0x3C; 32]];
const INCS: [u64; 3] = [1_000, 2_000, 3_000];
/// Where a [`Rogue`] sends from; nobody listens there.
const ROGUE_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66)),
    7000,
);
/// Offset of the ciphertext in a transport datagram: version, type, receiver, counter.
const CIPHERTEXT_AT: usize = 2 + 4 + 8;

// What the secure layer puts on the wire, restated independently of proto/src/secure.rs.
const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"peerlink wire v1";
const INIT_PADDING: usize = 160;

fn identity(i: usize) -> Identity {
    Identity::from_secret(SECRETS[i])
}

fn endpoint(i: usize, incarnation: u64, seed: u8) -> SecureEndpoint {
    let config = SecureConfig {
        endpoint: Config::default(),
        seed: [seed; 32],
    };
    SecureEndpoint::new(identity(i), incarnation, config)
}

type SecureNet = Net<SecureEndpoint>;

/// `links.len()` secure endpoints: A, B and, with three links, Mallory.
fn net(links: &[Impair], seed: u64) -> SecureNet {
    let nodes = (0..links.len())
        .map(|i| Node::new(i, endpoint(i, INCS[i], 10 + i as u8), identity(i).uuid()))
        .collect();
    let mut p = Net::with_nodes(nodes, links.to_vec(), seed);
    p.void.insert(ROGUE_ADDR);
    p
}

impl Net<SecureEndpoint> {
    fn secure(&self, i: usize) -> SecureStats {
        self.nodes[i].ep.secure_stats()
    }

    /// Hands `bytes` straight to node `to` as if from `from`, then drains every endpoint.
    fn hand(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now();
        self.nodes[to].ep.handle_datagram(now, from, bytes);
        self.flush();
    }

    /// What node `i` sent from its `mark`-th datagram on, decoded.
    fn sealed_sent(&self, i: usize, mark: usize) -> Vec<Sealed> {
        let sent = &self.nodes[i].sent[mark..];
        let decoded = sent.iter().map(|s| wire::decode_sealed(&s.bytes));
        decoded
            .map(|d| d.expect("an endpoint sent garbage"))
            .collect()
    }

    fn all_events(&self, i: usize) -> Vec<Event> {
        self.events(i, |_, e| Some(e.clone()))
    }
}

fn is_transport(bytes: &[u8]) -> bool {
    matches!(wire::decode_sealed(bytes), Ok(Sealed::Transport { .. }))
}

/// A peer that speaks the secure protocol by hand, initiator side.
struct Rogue {
    index: u32,
    state: Option<HandshakeState>,
    /// The responder's index and the session keys.
    session: Option<(u32, StatelessTransportState)>,
    counter: u64,
}

impl Rogue {
    /// Starts a handshake with `key` (an X25519 private key); returns the HsInit datagram.
    fn initiate(key: [u8; 32], index: u32, ephemeral: [u8; 32]) -> (Rogue, Vec<u8>) {
        let mut state = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .local_private_key(&key)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&ephemeral)
            .prologue(PROLOGUE)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut noise = vec![0; MAX_DATAGRAM];
        let len = state.write_message(&[0; INIT_PADDING], &mut noise).unwrap();
        noise.truncate(len);
        let rogue = Rogue {
            index,
            state: Some(state),
            session: None,
            counter: 0,
        };
        (
            rogue,
            wire::encode_sealed(&Sealed::HsInit {
                sender: index,
                noise,
            }),
        )
    }

    /// Completes the handshake with node `to` of `p`, telling it that our Ed25519 key is
    /// `claimed`; returns the Ed25519 key the responder proved.
    fn handshake(
        p: &mut SecureNet,
        to: usize,
        key: [u8; 32],
        claimed: [u8; 32],
    ) -> (Rogue, [u8; 32]) {
        let (mut rogue, init) = Rogue::initiate(key, 0x6060_0000 + to as u32, [0x77; 32]);
        let mark = p.nodes[to].sent.len();
        p.hand(to, ROGUE_ADDR, &init);
        let resp = p.sealed_sent(to, mark).into_iter().find_map(|s| match s {
            Sealed::HsResp {
                sender,
                receiver,
                noise,
            } if receiver == rogue.index => Some((sender, noise)),
            _ => None,
        });
        let (responder, noise) = resp.expect("no handshake response");
        let mut state = rogue.state.take().unwrap();
        let mut payload = vec![0; MAX_DATAGRAM];
        let len = state.read_message(&noise, &mut payload).unwrap();
        let proved: [u8; 32] = payload[..len].try_into().unwrap();
        let mut noise = vec![0; MAX_DATAGRAM];
        let len = state.write_message(&claimed, &mut noise).unwrap();
        noise.truncate(len);
        let final_ = Sealed::HsFinal {
            sender: rogue.index,
            receiver: responder,
            noise,
        };
        p.hand(to, ROGUE_ADDR, &wire::encode_sealed(&final_));
        rogue.session = Some((responder, state.into_stateless_transport_mode().unwrap()));
        (rogue, proved)
    }

    /// A transport datagram carrying `frame`, sealed in our session.
    fn seal_frame(&mut self, frame: &[u8]) -> Vec<u8> {
        let (receiver, transport) = self.session.as_ref().expect("no session");
        let mut ciphertext = vec![0; frame.len() + 16];
        let len = transport
            .write_message(self.counter, frame, &mut ciphertext)
            .unwrap();
        ciphertext.truncate(len);
        let counter = self.counter;
        self.counter += 1;
        wire::encode_sealed(&Sealed::Transport {
            receiver: *receiver,
            counter,
            ciphertext,
        })
    }

    fn seal(&mut self, packet: &Packet) -> Vec<u8> {
        self.seal_frame(&wire::encode(packet))
    }
}

/// The answer to a captured HsInit from a responder holding `key` (X25519) that claims the
/// Ed25519 key `claimed`.
fn rogue_response(key: [u8; 32], claimed: [u8; 32], init: &[u8]) -> Vec<u8> {
    let Ok(Sealed::HsInit { sender, noise }) = wire::decode_sealed(init) else {
        panic!("not a handshake initiation");
    };
    let mut state = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
        .local_private_key(&key)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&[0x55; 32])
        .prologue(PROLOGUE)
        .unwrap()
        .build_responder()
        .unwrap();
    let mut payload = vec![0; MAX_DATAGRAM];
    state.read_message(&noise, &mut payload).unwrap();
    let mut reply = vec![0; MAX_DATAGRAM];
    let len = state.write_message(&claimed, &mut reply).unwrap();
    reply.truncate(len);
    wire::encode_sealed(&Sealed::HsResp {
        sender: 0x5151,
        receiver: sender,
        noise: reply,
    })
}

fn data(from: usize, to: usize, seq: u64, payload: &[u8]) -> Packet {
    Packet::Data(Data {
        from: identity(from).uuid(),
        to: identity(to).uuid(),
        from_inc: INCS[from],
        to_inc: INCS[to],
        stream: 0,
        seq,
        last: true,
        payload: payload.to_vec(),
    })
}

/// Message `i` tagged `tag`: the text `PLAINTEXT:<tag><i>;` repeated, every 50th spanning
/// several fragments, so every datagram that carries message bytes in the clear carries
/// `PLAINTEXT` whole.
fn marked(tag: char, i: usize) -> Vec<u8> {
    let unit = format!("PLAINTEXT:{tag}{i:03};");
    let repeat = if i % 50 == 7 {
        3 * wire::MAX_FRAGMENT / unit.len() + 1
    } else {
        1 + i % 5
    };
    unit.repeat(repeat).into_bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

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
