//! End-to-end tests of [`proto::Endpoint`] through the deterministic harness
//! [`proto::sim`] (modelled on quinn-proto's `Pair`): two endpoints, A and B (fixed UUIDs and
//! incarnations), a virtual clock and one seeded lossy, duplicating, reordering link per
//! direction, so every run of a test sees exactly the same traffic.

use std::net::SocketAddr;
use std::time::Duration;

use proto::sim::{
    CLEAN, DEAD, HARSH, HARSH_MAX_RTT, Impair, MS, Net, Node, Peer as _, SEC, impair,
};
use proto::wire::{self, Packet};
use proto::{Config, Endpoint, Event, MsgId, SendError};
use uuid::Uuid;

const A: usize = 0;
const B: usize = 1;
const IDS: [u128; 2] = [0xA11CE, 0xB0B];
const INCS: [u64; 2] = [1_000, 2_000];

/// Two plain endpoints; `links[A]` carries A → B, `links[B]` carries B → A.
type Pair = Net<Endpoint>;

/// What the tests do with a [`Pair`], in terms of "the other endpoint".
trait PairExt {
    fn new(config: Config, links: [Impair; 2], seed: u64) -> Self;
    fn send(&mut self, from: usize, data: Vec<u8>) -> MsgId;
    fn messages(&self, i: usize) -> Vec<Vec<u8>>;
    fn delivered(&self, i: usize) -> Vec<MsgId>;
}

impl PairExt for Pair {
    fn new(config: Config, links: [Impair; 2], seed: u64) -> Pair {
        let node = |i: usize| {
            let id = Uuid::from_u128(IDS[i]);
            Node::new(i, Endpoint::new(id, INCS[i], config.clone()), id)
        };
        Net::with_nodes(vec![node(A), node(B)], links.to_vec(), seed)
    }

    /// Sends `data` to the other endpoint.
    fn send(&mut self, from: usize, data: Vec<u8>) -> MsgId {
        self.send_to(from, 1 - from, data)
    }

    /// Messages endpoint `i` received from the other one, in order.
    fn messages(&self, i: usize) -> Vec<Vec<u8>> {
        self.messages_from(i, 1 - i)
    }

    /// Ids endpoint `i` was told were delivered to the other one, sorted.
    fn delivered(&self, i: usize) -> Vec<MsgId> {
        self.delivered_to(i, 1 - i)
    }
}

fn with(f: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    f(&mut config);
    config
}

/// Message `i` tagged `tag`: unique, of varied length, every 97th spanning several fragments.
fn payload(tag: u8, i: usize) -> Vec<u8> {
    let len = [8 + i * 37 % 300, 3 * wire::MAX_FRAGMENT + 17][usize::from(i.is_multiple_of(97))];
    let mut v = vec![tag];
    v.extend_from_slice(&(i as u32).to_be_bytes());
    v.extend((0..len).map(|j| (i.wrapping_mul(131) + j) as u8));
    v
}

/// Sends `n` messages from `from` in batches of 50 every 20 ms, returning payloads and ids.
fn send_batches(p: &mut Pair, from: usize, tag: u8, n: usize) -> (Vec<Vec<u8>>, Vec<MsgId>) {
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| payload(tag, i)).collect();
    let mut ids = Vec::new();
    for chunk in payloads.chunks(50) {
        ids.extend(chunk.iter().map(|d| p.send(from, d.clone())));
        p.run_for(20 * MS);
    }
    (payloads, ids)
}

#[test]
fn thousand_messages_arrive_once_in_order_over_a_harsh_link() {
    let mut p = Pair::new(Config::default(), [HARSH, HARSH], 1);
    let (payloads, ids) = send_batches(&mut p, A, b'a', 1000);
    p.run_to_idle();
    assert!(p.messages(B) == payloads, "B's messages differ");
    assert_eq!(p.delivered(A), ids, "one Delivered per message");
    assert_eq!(p.failed(A), vec![]);
    // The link really was harsh.
    assert!(p.nodes[A].ep.stats().retransmits > 100);
    assert!(p.nodes[B].ep.stats().duplicates > 10);
    assert!(p.links[A].reordered > 100);
}

#[test]
fn both_directions_at_once() {
    let mut p = Pair::new(Config::default(), [HARSH, HARSH], 2);
    let (mut sent, mut ids) = ([vec![], vec![]], [vec![], vec![]]);
    for round in 0..10 {
        for i in [A, B] {
            for k in 0..50 {
                let data = payload(b'A' + i as u8, round * 50 + k);
                ids[i].push(p.send(i, data.clone()));
                sent[i].push(data);
            }
        }
        p.run_for(15 * MS);
    }
    p.run_to_idle();
    for i in [A, B] {
        assert!(p.messages(1 - i) == sent[i], "messages from {i} differ");
        assert_eq!(p.delivered(i), ids[i], "Delivered at {i}");
        assert_eq!(p.failed(i), vec![], "Failed at {i}");
    }
}

#[test]
fn a_mebibyte_arrives_intact_and_one_byte_more_is_refused() {
    let lossy = impair(0.1, 0.0, 5);
    let mut p = Pair::new(Config::default(), [lossy, lossy], 3);
    let (now, to, addr) = (p.now(), p.nodes[B].id, p.nodes[B].addr);
    let (size, limit) = ((1 << 20) + 1, 1 << 20);
    let err = p.nodes[A].ep.send(now, to, addr, vec![0; size]);
    assert_eq!(err, Err(SendError::TooLarge { size, limit }));
    p.flush();
    assert!(p.nodes[A].sent.is_empty() && p.nodes[A].events.is_empty());
    assert_eq!(p.nodes[A].ep.poll_timeout(), None);

    let big: Vec<u8> = (0..limit)
        .map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8)
        .collect();
    let id = p.send(A, big.clone());
    p.run_to_idle();
    let got = p.messages(B);
    assert!(got.len() == 1 && got[0] == big, "1 MiB lost or corrupted");
    assert_eq!(p.delivered(A), vec![id]);
    assert!(p.nodes[A].ep.stats().retransmits > 0, "no loss?");
}

#[test]
fn dead_peer_fails_at_the_deadline_and_nothing_else() {
    let config = Config::default();
    let (deadline, max_rto) = (config.deadline, config.max_rto);
    let mut p = Pair::new(config, [DEAD, DEAD], 4);
    let id = p.send(A, b"anyone there?".to_vec());
    p.run_to_idle();
    let (to, events) = (p.nodes[B].id, &p.nodes[A].events);
    let failed =
        |e: &Event| matches!(e, Event::Failed { to: t, id: i, .. } if *t == to && *i == id);
    assert!(events.len() == 1 && failed(&events[0].1), "{events:?}");
    let at = events[0].0;
    assert!(at >= deadline && at <= deadline + max_rto, "at {at:?}");
    assert!(p.nodes[B].events.is_empty());
    assert!(p.nodes[A].sent.len() > 3, "A should have retried");
}

#[test]
fn retransmission_timeout_doubles_up_to_max_rto() {
    let config = with(|c| (c.initial_rto, c.max_rto) = (100 * MS, 2 * SEC));
    let (initial, max_rto) = (config.initial_rto, config.max_rto);
    let mut p = Pair::new(config, [DEAD, DEAD], 5);
    p.send(A, b"hello?".to_vec());
    p.run_to_idle();
    let sent = &p.nodes[A].sent;
    assert!(
        sent.iter().all(|s| s.bytes == sent[0].bytes),
        "one fragment"
    );
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps.len() > 8, "too few retransmissions: {gaps:?}");
    let close = |a: Duration, b: Duration| a.abs_diff(b) <= MS;
    assert!(close(gaps[0], initial), "{gaps:?}");
    for w in gaps.windows(2) {
        assert!(close(w[1], (w[0] * 2).min(max_rto)), "{gaps:?}");
    }
    assert!(close(gaps[gaps.len() - 1], max_rto), "{gaps:?}");
}

#[test]
fn window_bounds_unacknowledged_fragments() {
    let config = with(|c| c.max_in_flight = 8);
    // B receives everything but its acknowledgements never reach A.
    let mut p = Pair::new(config, [CLEAN, DEAD], 6);
    let payloads: Vec<Vec<u8>> = (0..100).map(|i| format!("w{i}").into_bytes()).collect();
    for d in &payloads {
        p.send(A, d.clone());
    }
    p.run_to_idle();
    let data: Vec<wire::Data> = p.nodes[A]
        .sent
        .iter()
        .filter_map(|s| match wire::decode(&s.bytes) {
            Ok(Packet::Data(d)) => Some(d),
            _ => None,
        })
        .collect();
    let mut distinct: Vec<(u32, u64)> = data.iter().map(|d| (d.stream, d.seq)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "unacknowledged: {distinct:?}");
    assert!(data.len() > 8, "the window should have been resent");
    assert_eq!(p.messages(B), payloads[..8]);
    assert_eq!(p.failed(A).len(), 100, "all fail at the deadline");
}

#[test]
fn restarted_peer_gets_later_messages_once_and_not_old_datagrams() {
    let link = impair(0.1, 0.1, 20);
    let mut p = Pair::new(Config::default(), [link, link], 7);
    // B speaks first, so every DATA datagram A sends names B's incarnation.
    p.send(B, b"hi".to_vec());
    p.run_to_idle();
    let old: Vec<Vec<u8>> = (0..20).map(|i| payload(b'o', i)).collect();
    let mut ids: Vec<MsgId> = old.iter().map(|d| p.send(A, d.clone())).collect();
    p.run_to_idle();
    assert!(p.messages(B) == old);

    // More messages go on the link, then B restarts before any of them arrives.
    let mid: Vec<Vec<u8>> = (0..10).map(|i| payload(b'm', i)).collect();
    ids.extend(mid.iter().map(|d| p.send(A, d.clone())));
    p.flush();
    let b = &mut p.nodes[B];
    b.ep = Endpoint::new(b.id, INCS[B] + 1, Config::default());
    b.events.clear();
    // Copies of everything A ever sent the old B are still wandering the network.
    for sent in p.nodes[A].sent.clone() {
        p.inject(A, sent.to, sent.bytes);
    }

    let new: Vec<Vec<u8>> = (0..20).map(|i| payload(b'n', i)).collect();
    ids.extend(new[..10].iter().map(|d| p.send(A, d.clone())));
    p.run_for(100 * MS);
    ids.extend(new[10..].iter().map(|d| p.send(A, d.clone())));
    p.run_to_idle();

    assert!(p.messages(B) == [mid, new].concat(), "new B's messages");
    assert!(p.nodes[B].ep.stats().stale > 0, "old datagrams are stale");
    ids.sort_unstable();
    assert_eq!(p.delivered(A), ids);
    assert_eq!(p.failed(A), vec![]);
}

#[test]
fn idle_means_idle() {
    let mut p = Pair::new(Config::default(), [HARSH, HARSH], 8);
    for i in 0..50 {
        p.send(A, payload(b'x', i));
        p.send(B, payload(b'y', i));
    }
    p.run_to_idle();
    assert_eq!((p.messages(A).len(), p.messages(B).len()), (50, 50));
    assert_eq!((p.delivered(A).len(), p.delivered(B).len()), (50, 50));
    assert!(p.links.iter().all(|l| l.queue.is_empty()));
    let (now, later) = (p.now(), p.now() + 3600 * SEC);
    for node in &mut p.nodes {
        assert_eq!(node.ep.poll_timeout(), None);
        assert_eq!(node.ep.poll_transmit(now), None);
        node.ep.handle_timeout(later);
        assert_eq!(node.ep.poll_transmit(later), None);
        assert_eq!(node.ep.poll_event(), None);
    }
}

// The tests below pin down bugs found while writing the ones above.

#[test]
fn smoothed_rtt_stays_within_the_links_round_trip() {
    let mut p = Pair::new(Config::default(), [HARSH, HARSH], 10);
    send_batches(&mut p, A, b'r', 1000);
    p.run_to_idle();
    // No round trip exceeds HARSH_MAX_RTT, so neither should their smoothed average.
    assert!(p.max_srtt <= HARSH_MAX_RTT, "SRTT {:?}", p.max_srtt);
}

#[test]
fn a_failed_message_does_not_take_later_ones_with_it() {
    let mut p = Pair::new(with(|c| c.deadline = 2 * SEC), [CLEAN, CLEAN], 11);
    // "0" never gets through; "1" and "2", sent later, arrive and wait behind it at B.
    fn zero(bytes: &[u8]) -> bool {
        matches!(wire::decode(bytes), Ok(Packet::Data(d)) if d.payload == b"0")
    }
    p.links[A].drop_if(zero);
    let first = p.send(A, b"0".to_vec());
    p.run_for(500 * MS);
    let later = [p.send(A, b"1".to_vec()), p.send(A, b"2".to_vec())];
    p.run_to_idle();
    assert_eq!(p.failed(A).iter().map(|f| f.1).collect::<Vec<_>>(), [first]);
    assert_eq!(p.delivered(A), later);
    assert_eq!(p.messages(B), [b"1", b"2"]);
}

#[test]
fn a_third_peer_does_not_make_b_forget_where_a_stream_was() {
    let mut p = Pair::new(with(|c| c.max_peers = 1), [CLEAN, CLEAN], 12);
    p.send(A, b"1".to_vec());
    p.run_to_idle();
    // B's table is full (A), and a third peer C says hello.
    let (now, b) = (p.now(), &mut p.nodes[B]);
    let mut c = Endpoint::new(Uuid::from_u128(0xC), 5, Config::default());
    let c_addr = SocketAddr::from(([10, 0, 0, 3], 7000));
    c.send(now, b.id, b.addr, b"hello".to_vec()).unwrap();
    b.ep.handle_datagram(now, c_addr, &c.poll_transmit(now).unwrap().bytes);
    while b.ep.poll_transmit(now).is_some() {} // To C, into the void.
    let start = p.time;
    p.send(A, b"2".to_vec());
    p.run_to_idle();
    assert_eq!(p.messages(B), [b"1", b"2"]);
    assert_eq!((p.delivered(A), p.failed(A)), (vec![0, 1], vec![]));
    assert!(p.time - start < SEC, "took {:?}", p.time - start);
}
