//! A few endpoints on [`Link`]s under one virtual clock.
//!
//! A datagram reaches the node whose address it was sent to, unless [`Net::redirect`] routes
//! that address elsewhere (a hijacked route); routes are resolved on arrival. The receiver sees
//! the sender's own address as the source. Datagrams for an address in [`Net::void`] vanish
//! (nobody listens there); any other unknown address fails the test.
//!
//! One step follows the polling order documented on [`crate::Endpoint`]: deliver every datagram
//! due at the current virtual time, drain `poll_transmit` of every endpoint into the links,
//! drain `poll_event`, then jump the clock to the earliest of the next arrival and any
//! endpoint's `poll_timeout`, calling `handle_timeout` on the endpoints that are due. Steps and
//! datagrams per drain are capped, so a livelock fails a test instead of hanging it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{FLUSH_CAP, Impair, Link, Rng, STEP_CAP};
use crate::{Endpoint, Event, MsgId, SecureEndpoint, SendError, Transmit};

/// What [`Net`] needs of an endpoint: the sans-IO surface both endpoint types share.
pub trait Peer {
    /// Queues `data` for `to` at `addr`.
    fn send(
        &mut self,
        now: Instant,
        to: Uuid,
        addr: SocketAddr,
        data: Vec<u8>,
    ) -> Result<MsgId, SendError>;
    /// Takes one received datagram. For the plain [`Endpoint`] this is a plaintext frame, and
    /// this trait is its only way in from outside the crate: production feeds it decrypted
    /// frames through [`SecureEndpoint`].
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]);
    /// Runs the timers that are due.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send.
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;
    /// The next event for the application.
    fn poll_event(&mut self) -> Option<Event>;
    /// When [`Peer::handle_timeout`] next has work.
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
    /// Destination.
    pub to: SocketAddr,
    /// Contents, before the link's tap and impairments.
    pub bytes: Vec<u8>,
}

/// An endpoint on the network, with everything it said, for tests to inspect.
pub struct Node<E> {
    /// The endpoint under test.
    pub ep: E,
    /// Its UUID, which others send to.
    pub id: Uuid,
    /// Its address, which datagrams for it are sent to and its own come from.
    pub addr: SocketAddr,
    /// Everything `poll_event` returned but path changes, with the virtual time it was
    /// drained.
    pub events: Vec<(Duration, Event)>,
    /// The [`Event::Path`] changes `poll_event` returned, with their virtual time.
    pub paths: Vec<(Duration, Event)>,
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
            paths: Vec::new(),
            sent: Vec::new(),
        }
    }
}

/// Endpoints, their links and the virtual clock.
pub struct Net<E> {
    /// The real instant virtual time zero stands for; endpoints see `t0 + time`.
    pub t0: Instant,
    /// Virtual time; only the harness advances it.
    pub time: Duration,
    /// The source of every impairment.
    pub rng: Rng,
    /// The endpoints.
    pub nodes: Vec<Node<E>>,
    /// `links[i]` carries everything node `i` sends.
    pub links: Vec<Link>,
    /// Datagrams for an address in here go to that node instead.
    pub redirect: HashMap<SocketAddr, usize>,
    /// Addresses nobody listens on: datagrams for them are recorded as sent, then vanish.
    pub void: HashSet<SocketAddr>,
    /// Clock jumps taken so far.
    pub steps: usize,
    /// Largest smoothed RTT any endpoint reported after any step.
    pub max_srtt: Duration,
}

impl<E: Peer> Net<E> {
    /// A network of `nodes`, node `i` sending over a link with `impairs[i]`; `seed` fixes all
    /// of the links' randomness.
    pub fn with_nodes(nodes: Vec<Node<E>>, impairs: Vec<Impair>, seed: u64) -> Self {
        assert_eq!(nodes.len(), impairs.len(), "one link per node");
        Net {
            t0: Instant::now(),
            time: Duration::ZERO,
            rng: Rng(seed),
            nodes,
            links: impairs.into_iter().map(Link::new).collect(),
            redirect: HashMap::new(),
            void: HashSet::new(),
            steps: 0,
            max_srtt: Duration::ZERO,
        }
    }

    /// The current virtual time, as the endpoints see it.
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

    /// Hands `bytes` straight to node `to` as if from `from`, bypassing every link, then
    /// drains every endpoint: for datagrams a test writes by hand.
    pub fn hand(&mut self, to: usize, from: SocketAddr, bytes: &[u8]) {
        let now = self.now();
        self.nodes[to].ep.handle_datagram(now, from, bytes);
        self.flush();
    }

    /// Hands every datagram due now to the node it is routed to.
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

    /// Drains every endpoint's transmits into its link and its events into its node.
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
                match e {
                    Event::Path { .. } => node.paths.push((self.time, e)),
                    e => node.events.push((self.time, e)),
                }
            }
            self.max_srtt = self.max_srtt.max(node.ep.max_srtt().unwrap_or_default());
        }
    }

    /// The virtual time of the next arrival or timer, whichever comes first.
    pub fn next_event(&self) -> Option<Duration> {
        let timers = self.nodes.iter().filter_map(|n| n.ep.poll_timeout());
        let timers = timers.map(|t| t.saturating_duration_since(self.t0));
        let arrivals = self.links.iter().filter_map(Link::next_arrival);
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

    /// Steps for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.time + d);
    }

    /// Steps until nothing is in flight and no timer is set.
    pub fn run_to_idle(&mut self) {
        self.run_until(Duration::MAX);
    }

    /// What `f` picks out of node `i`'s events, with the time each was drained.
    pub fn events<T>(&self, i: usize, f: impl Fn(Duration, &Event) -> Option<T>) -> Vec<T> {
        let events = self.nodes[i].events.iter();
        events.filter_map(|(at, e)| f(*at, e)).collect()
    }

    /// Every event of node `i`, in order.
    pub fn all_events(&self, i: usize) -> Vec<Event> {
        self.events(i, |_, e| Some(e.clone()))
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
