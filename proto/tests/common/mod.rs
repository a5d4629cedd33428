//! A deterministic network harness for end-to-end tests of peerlink's sans-IO endpoints,
//! modelled on quinn-proto's `Pair`.
//!
//! A [`Net`] holds a few endpoints (anything implementing [`Peer`]: the plain
//! [`proto::Endpoint`] or the [`proto::SecureEndpoint`]), a virtual clock (an `Instant`
//! captured once plus a `Duration` offset that only the harness advances) and one in-memory
//! [`Link`] per sending node: `links[i]` carries everything node `i` sends. A link drops a
//! datagram with probability `loss`, sends it twice with probability `dup`, and delays each copy
//! by `latency` plus a uniform random `jitter`; a jitter larger than the latency reorders
//! datagrams. A link's `tap` sees every datagram before the impairments and may drop or alter
//! it. All randomness comes from a seeded splitmix64 [`Rng`], so every run of a test sees
//! exactly the same traffic.
//!
//! A datagram reaches the node whose address it was sent to, unless [`Net::redirect`] routes
//! that address elsewhere (a hijacked route); routes are resolved on arrival. The receiver sees
//! the sender's own address as the source. Datagrams for an address in [`Net::void`] vanish
//! (nobody listens there); any other unknown address fails the test.
//!
//! One driver step follows the polling order documented on `Endpoint`: deliver every datagram
//! due at the current virtual time, drain `poll_transmit` of every endpoint into the links,
//! drain `poll_event`, then jump the clock to the earliest of the next arrival and any
//! endpoint's `poll_timeout`, calling `handle_timeout` on the endpoints that are due. Steps
//! and datagrams per drain are capped, so a livelock fails a test instead of hanging it.

// Each test crate uses a different part of the harness.
#![allow(dead_code)]

pub mod secure;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::{Endpoint, Event, MsgId, SecureEndpoint, SendError, Transmit};
use uuid::Uuid;

pub const MS: Duration = Duration::from_millis(1);
pub const SEC: Duration = Duration::from_secs(1);
/// Clock jumps one test may take before it is declared stuck.
pub const STEP_CAP: usize = 200_000;
/// Datagrams one endpoint may emit in one drain before it is declared stuck.
pub const FLUSH_CAP: usize = 10_000;

/// splitmix64: tiny, seedable, good enough for link impairments.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    pub fn below(&mut self, d: Duration) -> Duration {
        Duration::from_nanos(self.next() % (d.as_nanos() as u64).max(1))
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Impair {
    pub loss: f64,
    pub dup: f64,
    pub latency: Duration,
    pub jitter: Duration,
}

/// `loss` and `dup` probabilities, 10 ms latency plus up to `jitter_ms` of jitter.
pub const fn impair(loss: f64, dup: f64, jitter_ms: u64) -> Impair {
    let (latency, jitter) = (Duration::from_millis(10), Duration::from_millis(jitter_ms));
    Impair {
        loss,
        dup,
        latency,
        jitter,
    }
}
pub const CLEAN: Impair = impair(0.0, 0.0, 0);
pub const DEAD: Impair = impair(1.0, 0.0, 0);
/// 30% loss, 10% duplication, jitter (40 ms) well above the base latency (10 ms).
pub const HARSH: Impair = impair(0.3, 0.1, 40);
/// The longest round trip a datagram and its acknowledgement can take over [`HARSH`].
pub const HARSH_MAX_RTT: Duration = Duration::from_millis(2 * (10 + 40));

/// Sees each datagram a link is given; returns false to drop it, and may alter it.
pub type Tap = Box<dyn FnMut(&mut Vec<u8>) -> bool>;

/// A datagram on its way.
pub struct InFlight {
    pub arrival: Duration,
    /// Order of sending on this link.
    pub order: u64,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// Everything one node sends.
#[derive(Default)]
pub struct Link {
    pub impair: Impair,
    pub tap: Option<Tap>,
    pub queue: Vec<InFlight>,
    pushed: u64,
    /// Latest-sent datagram delivered so far, and how many deliveries overtook it.
    newest: u64,
    pub reordered: u64,
}

impl Link {
    /// Drops every datagram `drop` returns true for, on top of the random loss.
    pub fn drop_if(&mut self, mut drop: impl FnMut(&[u8]) -> bool + 'static) {
        self.tap = Some(Box::new(move |bytes| !drop(bytes)));
    }

    pub fn push(&mut self, rng: &mut Rng, now: Duration, to: SocketAddr, mut bytes: Vec<u8>) {
        if self.tap.as_mut().is_some_and(|tap| !tap(&mut bytes)) || rng.chance(self.impair.loss) {
            return;
        }
        for _ in 0..if rng.chance(self.impair.dup) { 2 } else { 1 } {
            let arrival = now + self.impair.latency + rng.below(self.impair.jitter);
            self.pushed += 1;
            let order = self.pushed;
            let bytes = bytes.clone();
            self.queue.push(InFlight {
                arrival,
                order,
                to,
                bytes,
            });
        }
    }

    fn take_due(&mut self, now: Duration) -> Vec<InFlight> {
        let (mut due, rest): (Vec<_>, Vec<_>) =
            self.queue.drain(..).partition(|d| d.arrival <= now);
        self.queue = rest;
        due.sort_by_key(|d| (d.arrival, d.order));
        for d in &due {
            self.reordered += u64::from(d.order < self.newest);
            self.newest = self.newest.max(d.order);
        }
        due
    }
}

/// What the harness needs of an endpoint.
pub trait Peer {
    fn send(
        &mut self,
        now: Instant,
        to: Uuid,
        addr: SocketAddr,
        data: Vec<u8>,
    ) -> Result<MsgId, SendError>;
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;
    fn poll_event(&mut self) -> Option<Event>;
    fn poll_timeout(&self) -> Option<Instant>;
    /// The largest smoothed RTT towards any peer, once measured.
    fn max_srtt(&self) -> Option<Duration>;
}

macro_rules! impl_peer {
    ($t:ty) => {
        impl Peer for $t {
            fn send(
                &mut self,
                now: Instant,
                to: Uuid,
                addr: SocketAddr,
                data: Vec<u8>,
            ) -> Result<MsgId, SendError> {
                <$t>::send(self, now, to, addr, data)
            }
            fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
                <$t>::handle_datagram(self, now, from, bytes)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
                <$t>::poll_transmit(self, now)
            }
            fn poll_event(&mut self) -> Option<Event> {
                <$t>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn max_srtt(&self) -> Option<Duration> {
                self.known_peers().filter_map(|(.., srtt)| srtt).max()
            }
        }
    };
}
impl_peer!(Endpoint);
impl_peer!(SecureEndpoint);

/// A datagram a node put on the wire.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Virtual time of sending.
    pub at: Duration,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

pub struct Node<E> {
    pub ep: E,
    pub id: Uuid,
    pub addr: SocketAddr,
    /// Everything `poll_event` returned, with the virtual time it was drained.
    pub events: Vec<(Duration, Event)>,
    /// Everything `poll_transmit` returned, before the link saw it.
    pub sent: Vec<Sent>,
}

impl<E> Node<E> {
    /// Node number `i` of a test network, at `10.0.0.<i+1>:7000`.
    pub fn new(i: usize, ep: E, id: Uuid) -> Self {
        Node {
            ep,
            id,
            addr: SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000)),
            events: Vec::new(),
            sent: Vec::new(),
        }
    }
}

pub struct Net<E> {
    pub t0: Instant,
    pub time: Duration,
    pub rng: Rng,
    pub nodes: Vec<Node<E>>,
    /// `links[i]` carries everything node `i` sends.
    pub links: Vec<Link>,
    /// Datagrams for an address in here go to that node instead.
    pub redirect: HashMap<SocketAddr, usize>,
    /// Addresses nobody listens on: datagrams for them are recorded as sent, then vanish.
    pub void: HashSet<SocketAddr>,
    pub steps: usize,
    /// Largest smoothed RTT any endpoint reported after any step.
    pub max_srtt: Duration,
}

impl<E: Peer> Net<E> {
    /// A network of `nodes`, node `i` sending over a link with `impairs[i]`.
    pub fn with_nodes(nodes: Vec<Node<E>>, impairs: Vec<Impair>, seed: u64) -> Self {
        assert_eq!(nodes.len(), impairs.len(), "one link per node");
        Net {
            t0: Instant::now(),
            time: Duration::ZERO,
            rng: Rng(seed),
            nodes,
            links: impairs
                .into_iter()
                .map(|impair| Link {
                    impair,
                    ..Default::default()
                })
                .collect(),
            redirect: HashMap::new(),
            void: HashSet::new(),
            steps: 0,
            max_srtt: Duration::ZERO,
        }
    }

    pub fn now(&self) -> Instant {
        self.t0 + self.time
    }

    /// The node a datagram for `addr` reaches.
    pub fn route(&self, addr: SocketAddr) -> Option<usize> {
        let owner = || self.nodes.iter().position(|n| n.addr == addr);
        self.redirect.get(&addr).copied().or_else(owner)
    }

    /// Node `from` sends `data` to node `to`, at `to`'s address.
    pub fn send_to(&mut self, from: usize, to: usize, data: Vec<u8>) -> MsgId {
        let (now, id, addr) = (self.now(), self.nodes[to].id, self.nodes[to].addr);
        let ep = &mut self.nodes[from].ep;
        ep.send(now, id, addr, data).expect("send refused")
    }

    /// Puts `bytes` on node `from`'s link towards `to` (impairments and tap apply), as if
    /// `from` had sent it now: for replays and injected datagrams.
    pub fn inject(&mut self, from: usize, to: SocketAddr, bytes: Vec<u8>) {
        self.links[from].push(&mut self.rng, self.time, to, bytes);
    }

    pub fn deliver(&mut self) {
        let now = self.now();
        for i in 0..self.nodes.len() {
            for d in self.links[i].take_due(self.time) {
                let from = self.nodes[i].addr;
                let Some(to) = self.route(d.to) else {
                    assert!(self.void.contains(&d.to), "unknown address {}", d.to);
                    continue;
                };
                self.nodes[to].ep.handle_datagram(now, from, &d.bytes);
            }
        }
    }

    pub fn flush(&mut self) {
        let now = self.now();
        for i in 0..self.nodes.len() {
            let mut n = 0;
            while let Some(t) = self.nodes[i].ep.poll_transmit(now) {
                n += 1;
                assert!(n < FLUSH_CAP, "endpoint {i} never stops sending");
                let known = self.route(t.to).is_some() || self.void.contains(&t.to);
                assert!(known, "endpoint {i} sent to unknown address {}", t.to);
                let (at, to) = (self.time, t.to);
                let sent = Sent {
                    at,
                    to,
                    bytes: t.bytes.clone(),
                };
                self.nodes[i].sent.push(sent);
                self.links[i].push(&mut self.rng, at, to, t.bytes);
            }
        }
        for node in &mut self.nodes {
            while let Some(e) = node.ep.poll_event() {
                node.events.push((self.time, e));
            }
            self.max_srtt = self.max_srtt.max(node.ep.max_srtt().unwrap_or_default());
        }
    }

    pub fn next_event(&self) -> Option<Duration> {
        let timers = self.nodes.iter().filter_map(|n| n.ep.poll_timeout());
        let timers = timers.map(|t| t.saturating_duration_since(self.t0));
        let arrivals = self
            .links
            .iter()
            .flat_map(|l| l.queue.iter().map(|d| d.arrival));
        timers.chain(arrivals).min()
    }

    /// Steps until nothing is scheduled or the clock would pass `end`.
    pub fn run_until(&mut self, end: Duration) {
        loop {
            self.deliver();
            self.flush();
            let next = match self.next_event() {
                Some(next) if next <= end => next,
                Some(_) => return self.time = end,
                None => return,
            };
            self.steps += 1;
            assert!(self.steps < STEP_CAP, "still busy after {STEP_CAP} steps");
            self.time = self.time.max(next);
            let now = self.now();
            for node in &mut self.nodes {
                if node.ep.poll_timeout().is_some_and(|t| t <= now) {
                    node.ep.handle_timeout(now);
                }
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.time + d);
    }

    pub fn run_to_idle(&mut self) {
        self.run_until(Duration::MAX);
    }

    pub fn events<T>(&self, i: usize, f: impl Fn(Duration, &Event) -> Option<T>) -> Vec<T> {
        let events = self.nodes[i].events.iter();
        events.filter_map(|(at, e)| f(*at, e)).collect()
    }

    /// Messages node `i` received from node `from`, in order.
    pub fn messages_from(&self, i: usize, from: usize) -> Vec<Vec<u8>> {
        let peer = self.nodes[from].id;
        self.events(i, |_, e| match e {
            Event::Message { from, data } if *from == peer => Some(data.clone()),
            _ => None,
        })
    }

    /// Ids node `i` was told were delivered to node `to`, sorted.
    pub fn delivered_to(&self, i: usize, to: usize) -> Vec<MsgId> {
        let peer = self.nodes[to].id;
        let mut ids = self.events(i, |_, e| match e {
            Event::Delivered { to, id, .. } if *to == peer => Some(*id),
            _ => None,
        });
        ids.sort_unstable();
        ids
    }

    /// `(when, id)` of every message node `i` gave up.
    pub fn failed(&self, i: usize) -> Vec<(Duration, MsgId)> {
        self.events(i, |at, e| match e {
            Event::Failed { id, .. } => Some((at, *id)),
            _ => None,
        })
    }
}
