//! One peer's side of the protocol, as a sans-IO state machine: it never touches a socket, a
//! clock or a random source.
//!
//! # Driving it
//! 1. Feed inputs: [`Endpoint::handle_packet`] for each frame received (the secure layer hands
//!    over what it decrypted), [`Endpoint::send`] for each message the user sends,
//!    [`Endpoint::handle_timeout`] when the instant from [`Endpoint::poll_timeout`] has passed.
//! 2. After any input, drain [`Endpoint::poll_transmit`] (put each on the wire) until `None`,
//!    then [`Endpoint::poll_event`] until `None`, then re-read [`Endpoint::poll_timeout`].
//!
//! Draining transmits after a batch of datagrams rather than after each one lets one ack
//! cover the whole batch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::api::Candidate;
use crate::path::{PathKind, Paths};
use crate::recv::{Arrival, RecvStream};
use crate::send::{MsgId, Outcome, SendStream, Timing};
use crate::wire::{self, Ack, Data, Packet, Probe, ProbeReply};

mod paths;
mod types;

pub use types::{Config, Event, SendError, Stats, Transmit};

/// Relay addresses remembered at most (they come from peers' candidates and from datagrams
/// our relay delivered).
const MAX_RELAY_ADDRS: usize = 4096;
/// Probes awaiting their reply, per peer, for measuring a path's round trip.
const MAX_PROBES_OUT: usize = 32;

#[derive(Debug)]
struct Peer {
    paths: Paths,
    /// Replies owed to the peer's probes: (where the probe came from, its nonce).
    replies: VecDeque<(SocketAddr, u64)>,
    /// Our probes not yet answered: (where, nonce, when sent).
    probes_out: VecDeque<(SocketAddr, u64, Instant)>,
    /// The peer's incarnation, 0 until we hear from it.
    inc: u64,
    tx: SendStream,
    rx: Option<RecvStream>,
    /// Tell a peer that addressed our previous run which incarnation we are now.
    nudge: Option<(u64, u32)>,
}

impl Peer {
    fn new() -> Self {
        Peer {
            paths: Paths::default(),
            replies: VecDeque::new(),
            probes_out: VecDeque::new(),
            inc: 0,
            tx: SendStream::default(),
            rx: None,
            nudge: None,
        }
    }
}

/// The state for `id`, created if needed; `None` when the table is full.
///
/// Only a peer with nothing to send and no receive state may be forgotten: forgetting where
/// a peer's stream had got to would leave its later fragments waiting for ones long delivered.
fn peer_entry(peers: &mut HashMap<Uuid, Peer>, id: Uuid, max: usize) -> Option<&mut Peer> {
    if !peers.contains_key(&id) && peers.len() >= max {
        let idle = peers
            .iter()
            .find(|(_, p)| p.tx.is_idle() && p.rx.is_none())
            .map(|(id, _)| *id);
        peers.remove(&idle?);
    }
    Some(peers.entry(id).or_insert_with(Peer::new))
}

/// This peer's protocol state towards every other peer.
#[derive(Debug)]
pub struct Endpoint {
    me: Uuid,
    inc: u64,
    config: Config,
    timing: Timing,
    peers: HashMap<Uuid, Peer>,
    events: VecDeque<Event>,
    next_id: MsgId,
    stats: Stats,
    /// Addresses that are relays: the peers' relay candidates and the sources of datagrams our
    /// relay delivered. The driver sends to them through its relay allocation.
    relay_addrs: HashSet<SocketAddr>,
    /// Whether we have a relay allocation of our own.
    own_relay: bool,
}

impl Endpoint {
    /// `incarnation` must be non-zero and larger on every later run of the same identity
    /// (the daemon uses the start time in microseconds), so peers can tell old from new.
    pub fn new(me: Uuid, incarnation: u64, config: Config) -> Self {
        assert!(
            incarnation != 0,
            "incarnation 0 means 'unknown' on the wire"
        );
        let timing = Timing {
            initial_rto: config.initial_rto,
            min_rto: config.min_rto,
            max_rto: config.max_rto,
        };
        Endpoint {
            me,
            inc: incarnation,
            config,
            timing,
            peers: HashMap::new(),
            events: VecDeque::new(),
            next_id: 0,
            stats: Stats::default(),
            relay_addrs: HashSet::new(),
            own_relay: false,
        }
    }

    /// Our UUID.
    pub fn id(&self) -> Uuid {
        self.me
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.retransmits = self.peers.values().map(|p| p.tx.retransmits).sum();
        stats
    }

    /// The address of the path to a peer now in use.
    pub fn peer_addr(&self, peer: &Uuid) -> Option<SocketAddr> {
        self.path(peer).map(|(addr, _)| addr)
    }

    /// Peers we have an address for, with their smoothed RTT once measured.
    pub fn known_peers(&self) -> impl Iterator<Item = (Uuid, SocketAddr, Option<Duration>)> + '_ {
        self.peers
            .iter()
            .filter_map(|(id, p)| p.paths.current().map(|(addr, _)| (*id, addr, p.tx.srtt())))
    }

    /// Queues `data` for reliable, ordered delivery to `to` at `addr`.
    pub fn send(
        &mut self,
        now: Instant,
        to: Uuid,
        addr: SocketAddr,
        data: Vec<u8>,
    ) -> Result<MsgId, SendError> {
        if data.len() > self.config.max_message {
            return Err(SendError::TooLarge {
                size: data.len(),
                limit: self.config.max_message,
            });
        }
        if to == self.me {
            return Err(SendError::ToSelf);
        }
        let (limit, own_relay) = (self.config.max_peers, self.own_relay);
        let kind = self.kind_of(addr);
        let peer = peer_entry(&mut self.peers, to, limit).ok_or(SendError::TooManyPeers(limit))?;
        peer.paths.set_own_relay(now, own_relay);
        peer.paths.learn_primary(now, addr, kind);
        peer.paths.touch(now);
        let id = self.next_id;
        self.next_id += 1;
        peer.tx.push(id, data, now + self.config.deadline);
        self.note_path(to);
        Ok(id)
    }

    /// A directory (the index, the LAN, the DHT) says `peer` is now at `addr`: it becomes the
    /// address sent to while no path is alive (a peer that restarted elsewhere leaves the old
    /// path silent, which fails it). Nothing happens for a peer we never sent to.
    pub fn relocate(&mut self, now: Instant, peer: Uuid, addr: SocketAddr) {
        let kind = self.kind_of(addr);
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        entry.paths.learn_primary(now, addr, kind);
        self.note_path(peer);
    }

    /// Takes one plaintext datagram. Anything malformed or unexpected is counted and dropped.
    ///
    /// Only for the `sim` harness: on the network frames never travel in the clear, so
    /// production feeds [`Endpoint::handle_packet`] from the secure layer instead.
    #[cfg(feature = "sim")]
    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match wire::decode(bytes) {
            Err(_) => {
                self.stats.datagrams += 1;
                self.stats.malformed += 1;
            }
            Ok(packet) => self.handle_packet(now, from, packet),
        }
    }

    /// Takes one decoded packet (the secure layer hands over what it decrypted).
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, packet: Packet) {
        self.stats.datagrams += 1;
        match packet {
            Packet::Data(data) => self.on_data(now, from, data),
            Packet::Ack(ack) => self.on_ack(now, from, ack),
            Packet::Probe(probe) => self.on_probe(now, from, probe),
            Packet::ProbeReply(reply) => self.on_probe_reply(now, from, reply),
        }
    }

    fn on_data(&mut self, now: Instant, addr: SocketAddr, data: Data) {
        if data.to != self.me || data.from == self.me {
            self.stats.misaddressed += 1;
            return;
        }
        let (own_relay, kind) = (self.own_relay, self.kind_of(addr));
        let Some(peer) = peer_entry(&mut self.peers, data.from, self.config.max_peers) else {
            self.stats.peer_limit += 1;
            return;
        };
        // A peer first heard from (not learned nor sent to) must know it too.
        peer.paths.set_own_relay(now, own_relay);
        if data.from_inc < peer.inc {
            self.stats.stale += 1;
            return;
        }
        peer.paths.heard(now, addr, kind);
        if peer
            .paths
            .current()
            .is_some_and(|(current, _)| current != addr)
        {
            peer.paths.check_current(now);
        }
        peer.paths.touch(now);
        let from = data.from;
        self.on_stream_data(from, data);
        self.note_path(from);
    }

    fn on_stream_data(&mut self, from: Uuid, data: Data) {
        let (my_inc, window, max_message) =
            (self.inc, self.config.recv_window, self.config.max_message);
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        if data.to_inc != 0 && data.to_inc != my_inc {
            // Meant for an earlier run of ours: say who we are now so the sender starts over.
            peer.nudge = Some((data.from_inc, data.stream));
            self.stats.stale += 1;
            return;
        }
        if peer.inc != 0 && data.from_inc > peer.inc {
            // The peer restarted and lost what it knew of our stream to it.
            peer.tx.restart();
        }
        peer.inc = data.from_inc;
        let key = (data.from_inc, data.stream);
        let rx = match &mut peer.rx {
            Some(rx) if rx.key == key => rx,
            Some(rx) if rx.key > key => {
                self.stats.stale += 1;
                return;
            }
            slot => slot.insert(RecvStream::new(key)),
        };
        match rx.on_fragment(data.seq, data.last, data.payload, window, max_message) {
            Arrival::Accepted => {}
            Arrival::Duplicate => self.stats.duplicates += 1,
            Arrival::OutOfWindow => self.stats.out_of_window += 1,
        }
        self.stats.oversized += std::mem::take(&mut rx.oversized);
        while let Some(message) = rx.take_message() {
            self.events.push_back(Event::Message {
                from: data.from,
                data: message,
            });
        }
    }

    fn on_ack(&mut self, now: Instant, addr: SocketAddr, ack: Ack) {
        if ack.to != self.me || ack.from == self.me {
            self.stats.misaddressed += 1;
            return;
        }
        let kind = self.kind_of(addr);
        let Some(peer) = self.peers.get_mut(&ack.from) else {
            self.stats.stale += 1;
            return;
        };
        if ack.to_inc != self.inc || ack.from_inc < peer.inc {
            self.stats.stale += 1;
            return;
        }
        peer.paths.heard(now, addr, kind);
        let from = ack.from;
        self.on_stream_ack(now, ack);
        self.note_path(from);
    }

    fn on_stream_ack(&mut self, now: Instant, ack: Ack) {
        let Some(peer) = self.peers.get_mut(&ack.from) else {
            return;
        };
        if peer.inc != 0 && ack.from_inc > peer.inc {
            peer.inc = ack.from_inc;
            peer.tx.restart();
            return;
        }
        peer.inc = ack.from_inc;
        if ack.stream != peer.tx.stream {
            self.stats.stale += 1;
            return;
        }
        let mut outcomes = Vec::new();
        peer.tx
            .on_ack(now, ack.cumulative, &ack.ranges, &mut outcomes);
        self.report(ack.from, outcomes);
    }

    fn report(&mut self, peer: Uuid, outcomes: Vec<Outcome>) {
        let deadline = self.config.deadline;
        self.events.extend(outcomes.into_iter().map(|o| match o {
            Outcome::Delivered(id, rtt) => Event::Delivered { to: peer, id, rtt },
            Outcome::Expired(id) => Event::Failed {
                to: peer,
                id,
                reason: format!("no acknowledgement within {} s", deadline.as_secs_f32()),
            },
        }));
    }

    /// Runs retransmission, deadline and path timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut outcomes = Vec::new();
        let ids: Vec<Uuid> = self.peers.keys().copied().collect();
        for id in ids {
            let peer = self.peers.get_mut(&id).expect("listed above");
            if peer.paths.poll_timeout().is_some_and(|t| t <= now) {
                peer.paths.handle_timeout(now);
            }
            if peer.tx.next_timeout(&self.timing).is_some_and(|t| t <= now) {
                peer.tx.on_timeout(now, &self.timing, &mut outcomes);
                self.report(id, std::mem::take(&mut outcomes));
            }
            self.note_path(id);
        }
    }

    /// The next instant [`Endpoint::handle_timeout`] has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| [p.tx.next_timeout(&self.timing), p.paths.poll_timeout()])
            .flatten()
            .min()
    }

    /// The next datagram to send: acknowledgements first, then retransmissions and new data.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let me = self.me;
        let my_inc = self.inc;
        let window = self.config.max_in_flight;
        for (&id, peer) in self.peers.iter_mut() {
            if let Some((to, nonce)) = peer.replies.pop_front() {
                self.stats.probes_out += 1;
                let reply = Packet::ProbeReply(ProbeReply {
                    from: me,
                    to: id,
                    nonce,
                    observed: to,
                });
                return Some(Transmit {
                    peer: id,
                    to,
                    bytes: wire::encode(&reply),
                });
            }
            if let Some(probe) = peer.paths.pop_due() {
                if peer.probes_out.len() == MAX_PROBES_OUT {
                    peer.probes_out.pop_front();
                }
                peer.probes_out.push_back((probe.addr, probe.nonce, now));
                self.stats.probes_out += 1;
                let packet = Packet::Probe(Probe {
                    from: me,
                    to: id,
                    nonce: probe.nonce,
                });
                return Some(Transmit {
                    peer: id,
                    to: probe.addr,
                    bytes: wire::encode(&packet),
                });
            }
            let Some((addr, _)) = peer.paths.current() else {
                continue;
            };
            let ack = |to_inc, stream, cumulative, ranges| {
                Packet::Ack(Ack {
                    from: me,
                    to: id,
                    from_inc: my_inc,
                    to_inc,
                    stream,
                    cumulative,
                    ranges,
                })
            };
            if let Some((to_inc, stream)) = peer.nudge.take() {
                return Some(Transmit {
                    peer: id,
                    to: addr,
                    bytes: wire::encode(&ack(to_inc, stream, 0, vec![])),
                });
            }
            if let Some(rx) = peer.rx.as_mut().filter(|rx| rx.ack_pending) {
                rx.ack_pending = false;
                let (cumulative, ranges) = rx.ack_state();
                let packet = ack(rx.key.0, rx.key.1, cumulative, ranges);
                return Some(Transmit {
                    peer: id,
                    to: addr,
                    bytes: wire::encode(&packet),
                });
            }
            let stream = peer.tx.stream;
            if let Some(fragment) = peer.tx.next_fragment(now, window) {
                peer.paths.expecting(now);
                let packet = Packet::Data(Data {
                    from: me,
                    to: id,
                    from_inc: my_inc,
                    to_inc: peer.inc,
                    stream,
                    seq: fragment.seq,
                    last: fragment.last,
                    payload: fragment.payload.to_vec(),
                });
                return Some(Transmit {
                    peer: id,
                    to: addr,
                    bytes: wire::encode(&packet),
                });
            }
        }
        None
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
