//! The paths to one peer: which of its addresses we send to, and how we find better ones.
//!
//! A peer may be reachable at several addresses at once: its interface addresses (host
//! candidates, reachable on a shared LAN), what its NAT made of its socket (server-reflexive,
//! or peer-reflexive when it is first seen in a packet), and a TURN relay. The addresses come
//! only from authenticated sources: the index (which checked the peer's signature over them),
//! the peer itself inside a session, and the source of datagrams that decrypted in a session.
//!
//! - A path is *alive* while authenticated datagrams arrive from it (answers to our probes,
//!   acknowledgements, data). Receiving from an address means the way back is open too: the
//!   NATs on it keep state for that exact pair of addresses. An address first seen as the
//!   source of a datagram (peer-reflexive) only counts once it answered one of our probes:
//!   whoever copies a peer's datagram and races it in from elsewhere must not move the
//!   conversation there.
//! - The current path is the best alive one: host over direct over relay. Until one is alive,
//!   the relay (when both sides have one), else the address the application sends to (the
//!   index's observed address), else the newest address learned. "Relay first": nothing waits
//!   for hole punching.
//! - Probing: a round sends at most [`PROBES_PER_ROUND`] probes to each address that is not
//!   alive, spaced out over ~1.5 s so both sides' probes cross; rounds start when addresses
//!   are learned, when a path fails, and every [`ROUND_EVERY`] while the conversation is
//!   active and not yet direct. An address that never answered in [`MAX_SILENT_ROUNDS`]
//!   rounds is not probed again until it is learned anew (a fresh record from the index, new
//!   candidates from the peer) or heard from. Nothing is ever sent to an address that did not
//!   come from an authenticated source.
//! - Failure: when nothing comes back on the current path for [`FAILOVER_AFTER`] (at least
//!   three round trips) after we sent something that expects an answer, the path is marked
//!   failed, the next best takes over and a round starts. The peer's data arriving on another
//!   path than ours counts as something that expects an answer on ours (a probe goes out): it
//!   may have failed over already, and our acks must follow. Meanwhile a direct path chosen among
//!   several is probed three more times, spread over that time, so that one lost datagram
//!   (a keep-alive or its answer) does not move the conversation.
//! - Keep-alive: while the conversation is active (traffic within [`ACTIVE_FOR`]) a probe
//!   goes over a direct current path every [`KEEPALIVE_EVERY`], keeping the NAT mappings open.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::CandidateKind;

/// Probes per address in one round.
pub const PROBES_PER_ROUND: u8 = 5;
/// Rounds an address may stay silent before it is no longer probed.
pub const MAX_SILENT_ROUNDS: u8 = 3;
/// Gaps between the probes of a round.
const PROBE_GAPS: [Duration; PROBES_PER_ROUND as usize - 1] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];
/// Interval of new rounds while a conversation is active and not direct.
pub const ROUND_EVERY: Duration = Duration::from_secs(15);
/// Minimum silence on the current path, after sending something that expects an answer,
/// before it counts as failed.
pub const FAILOVER_AFTER: Duration = Duration::from_secs(1);
/// Probes of a silent current path before it is declared failed.
const RECHECKS: u32 = 3;
/// Keep-alive interval of a direct path (NAT mappings commonly last 30 s or more).
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);
/// A conversation is active this long after its last message either way.
pub const ACTIVE_FOR: Duration = Duration::from_secs(300);
/// A path is alive this long after the last datagram from it.
pub const ALIVE_FOR: Duration = Duration::from_secs(40);
/// Addresses kept per peer.
pub const MAX_ADDRS: usize = 16;

/// How a path reaches the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// Through a TURN relay.
    Relay,
    /// Directly, through NATs if any (server- or peer-reflexive, or a public address).
    Direct,
    /// Directly to one of the peer's interface addresses (the same LAN, no NAT in between).
    Host,
}

impl PathKind {
    /// `"direct"` or `"relay"`, as the daemon's events and prompt say it.
    pub fn via(self) -> &'static str {
        match self {
            PathKind::Relay => "relay",
            PathKind::Direct | PathKind::Host => "direct",
        }
    }
}

impl From<CandidateKind> for PathKind {
    fn from(kind: CandidateKind) -> Self {
        match kind {
            CandidateKind::Host => PathKind::Host,
            CandidateKind::Srflx => PathKind::Direct,
            CandidateKind::Relay => PathKind::Relay,
        }
    }
}

#[derive(Debug, Clone)]
struct Addr {
    addr: SocketAddr,
    kind: PathKind,
    /// When an authenticated datagram last came from it.
    heard: Option<Instant>,
    /// When it was (re)learned, for choosing among untested addresses.
    learned: Instant,
    /// Marked failed and not heard from since.
    failed: bool,
    /// Vouched for: learned from an authenticated source, or answered a probe of ours. An
    /// address first seen as the source of a datagram (peer-reflexive) is not, until it
    /// answers: a copy of the peer's datagram raced from elsewhere must not move the
    /// conversation there.
    proven: bool,
    probes_left: u8,
    next_probe: Option<Instant>,
    /// Rounds in a row without hearing from it.
    silent_rounds: u8,
    /// The address the application sends to (the index's observed address): the first guess
    /// while nothing is proven and there is no relay.
    primary: bool,
}

/// A probe to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTo {
    /// Where.
    pub addr: SocketAddr,
    /// Its nonce.
    pub nonce: u64,
}

/// Path state towards one peer.
#[derive(Debug, Default)]
pub struct Paths {
    addrs: Vec<Addr>,
    current: Option<SocketAddr>,
    /// The first datagram expecting an answer that went out on the current path since we last
    /// heard from it.
    awaiting: Option<Instant>,
    /// Probes of the current path sent since `awaiting` was set.
    rechecks: u32,
    /// Last message sent or received (not probes, not acks).
    active: Option<Instant>,
    next_keepalive: Option<Instant>,
    next_round: Option<Instant>,
    next_nonce: u64,
    /// Whether we have a relay allocation of our own: the peer's relay addresses are
    /// reachable (relay to relay).
    own_relay: bool,
    /// Set when the current path changed; taken by [`Paths::take_change`].
    changed: bool,
    /// Probes due, for the endpoint to send.
    due: VecDeque<ProbeTo>,
    /// Round-trip time of the current path, once measured.
    rtt: Option<Duration>,
}

impl Paths {
    /// The current path, if any.
    pub fn current(&self) -> Option<(SocketAddr, PathKind)> {
        let addr = self.current?;
        Some((addr, self.kind_of(addr)))
    }

    /// Every known address with its kind and whether it is alive.
    pub fn addrs(&self, now: Instant) -> impl Iterator<Item = (SocketAddr, PathKind, bool)> + '_ {
        self.addrs
            .iter()
            .map(move |a| (a.addr, a.kind, self.alive(a, now)))
    }

    fn kind_of(&self, addr: SocketAddr) -> PathKind {
        self.addrs
            .iter()
            .find(|a| a.addr == addr)
            .map_or(PathKind::Direct, |a| a.kind)
    }

    fn alive(&self, a: &Addr, now: Instant) -> bool {
        a.proven
            && !a.failed
            && a.heard
                .is_some_and(|h| now.saturating_duration_since(h) < ALIVE_FOR)
    }

    /// Whether the conversation is active.
    pub fn is_active(&self, now: Instant) -> bool {
        self.active
            .is_some_and(|t| now.saturating_duration_since(t) < ACTIVE_FOR)
    }

    /// We gained or lost a relay allocation of our own.
    pub fn set_own_relay(&mut self, now: Instant, have: bool) {
        self.own_relay = have;
        self.reselect(now);
    }

    /// Learns an address from an authenticated source (the index's vouched record, the peer in
    /// its session); probes it unless it is a relay.
    pub fn learn(&mut self, now: Instant, addr: SocketAddr, kind: PathKind) {
        self.add(now, addr, kind, true);
    }

    /// The caller sends to `addr` (the peer's record): it vouches for it, but only a new
    /// address is learned, since learning one anew restarts its probing and the caller
    /// passes the same address with every message.
    pub fn sending_to(&mut self, now: Instant, addr: SocketAddr, kind: PathKind) {
        match self.addrs.iter_mut().find(|a| a.addr == addr) {
            Some(a) => a.proven = true,
            None => self.learn(now, addr, kind),
        }
    }

    fn add(&mut self, now: Instant, addr: SocketAddr, kind: PathKind, proven: bool) {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return;
        }
        match self.addrs.iter_mut().find(|a| a.addr == addr) {
            Some(a) => {
                // Learned anew (a fresh record, the peer's new candidates): one more chance.
                // Sending does not come here for a known address (see `sending_to`).
                a.kind = a.kind.max(kind);
                a.learned = now;
                a.silent_rounds = 0;
                a.proven |= proven;
            }
            None => {
                if self.addrs.len() >= MAX_ADDRS {
                    // Forget the stalest address that is not the current path, unproven first.
                    let current = self.current;
                    let Some(victim) = self
                        .addrs
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| Some(a.addr) != current)
                        .min_by_key(|(_, a)| (a.proven, a.heard.unwrap_or(a.learned)))
                        .map(|(i, _)| i)
                    else {
                        return;
                    };
                    self.addrs.swap_remove(victim);
                }
                self.addrs.push(Addr {
                    addr,
                    kind,
                    heard: None,
                    learned: now,
                    failed: false,
                    proven,
                    probes_left: 0,
                    next_probe: None,
                    silent_rounds: 0,
                    primary: false,
                });
            }
        }
        self.reselect(now);
        // Data on the current path tests it anyway.
        if kind != PathKind::Relay && self.current != Some(addr) {
            self.start_round_for(now, addr);
        }
    }

    /// The reply to a probe of ours came back from `addr`, where the probe went: the address
    /// is proven, and alive.
    pub fn answered(&mut self, now: Instant, addr: SocketAddr, kind: PathKind) {
        if let Some(a) = self.addrs.iter_mut().find(|a| a.addr == addr) {
            a.proven = true;
        }
        self.heard(now, addr, kind);
    }

    /// The application sends to `addr` (the index's observed address): see
    /// [`Paths::sending_to`]; while nothing is alive and there is no relay, it is also the
    /// first guess.
    pub fn learn_primary(&mut self, now: Instant, addr: SocketAddr, kind: PathKind) {
        self.sending_to(now, addr, kind);
        for a in self.addrs.iter_mut() {
            a.primary = a.addr == addr;
        }
        self.reselect(now);
    }

    /// An authenticated datagram came from `addr` (a probe's reply, an ack, data…), through
    /// our relay when `kind` is [`PathKind::Relay`].
    pub fn heard(&mut self, now: Instant, addr: SocketAddr, kind: PathKind) {
        if !self.addrs.iter().any(|a| a.addr == addr) {
            // Peer-reflexive: the peer's NAT mapping towards us, seen for the first time; it
            // is probed, and counts once it answers. What our own relay delivers is vouched
            // for by the relay (only addresses we gave permission to reach us through it).
            self.add(now, addr, kind, kind == PathKind::Relay);
        }
        let Some(a) = self.addrs.iter_mut().find(|a| a.addr == addr) else {
            return; // An address nothing can be sent to (port 0, unspecified).
        };
        if !a.proven {
            return;
        }
        a.heard = Some(now);
        a.failed = false;
        a.silent_rounds = 0;
        a.probes_left = 0;
        a.next_probe = None;
        if self.current == Some(addr) {
            self.awaiting = None;
        }
        self.reselect(now);
    }

    /// The peer sent data on another path than our current one: it may have given ours up
    /// as dead, and what we send on it (acks) would be lost. A probe checks it; if nothing
    /// comes back within the failover time, it fails like any silent path.
    pub fn check_current(&mut self, now: Instant) {
        if self.awaiting.is_some() {
            return; // Already waiting to hear from it.
        }
        if let Some((addr, kind)) = self.current()
            && kind != PathKind::Relay
        {
            let nonce = self.nonce();
            self.due.push_back(ProbeTo { addr, nonce });
            self.expecting(now);
        }
    }

    /// A round-trip time measured on `addr` by a probe.
    pub fn rtt_sample(&mut self, addr: SocketAddr, rtt: Duration) {
        if self.current == Some(addr) {
            self.rtt = Some(rtt);
        }
    }

    /// A message went out or came in: the conversation is active.
    pub fn touch(&mut self, now: Instant) {
        if !self.is_active(now) {
            self.next_round = Some(now);
        }
        self.active = Some(now);
    }

    /// Something that expects an answer went out on the current path.
    pub fn expecting(&mut self, now: Instant) {
        if self.awaiting.is_none() {
            self.awaiting = Some(now);
            self.rechecks = 0;
        }
    }

    fn failover_after(&self) -> Duration {
        FAILOVER_AFTER.max(self.rtt.map_or(Duration::ZERO, |r| r * 3))
    }

    fn start_round_for(&mut self, now: Instant, addr: SocketAddr) {
        let alive_for = |a: &Addr| {
            a.heard
                .is_some_and(|h| now.saturating_duration_since(h) < ALIVE_FOR)
        };
        if let Some(a) = self.addrs.iter_mut().find(|a| a.addr == addr)
            && a.kind != PathKind::Relay
            && (a.failed || !alive_for(a))
            && a.silent_rounds < MAX_SILENT_ROUNDS
            && a.probes_left == 0
        {
            a.probes_left = PROBES_PER_ROUND;
            a.next_probe = Some(now);
            a.silent_rounds += 1;
        }
    }

    /// Starts a probing round towards every address that is not alive, except the current
    /// path: what goes out on it anyway (data, retransmissions) tests it already.
    fn start_round(&mut self, now: Instant) {
        let current = self.current;
        let addrs: Vec<SocketAddr> = self
            .addrs
            .iter()
            .map(|a| a.addr)
            .filter(|a| Some(*a) != current)
            .collect();
        for addr in addrs {
            self.start_round_for(now, addr);
        }
        self.next_round = Some(now + ROUND_EVERY);
    }

    /// Picks the best path; returns whether it changed.
    fn reselect(&mut self, now: Instant) {
        let rank = |a: &Addr| a.kind;
        // A peer's relay address is reachable only through a relay of our own.
        let reachable = |a: &Addr| a.kind != PathKind::Relay || self.own_relay;
        let alive = self
            .addrs
            .iter()
            .filter(|a| self.alive(a, now) && reachable(a))
            .max_by_key(|a| (rank(a), Some(a.addr) == self.current, a.heard));
        let relay = self
            .addrs
            .iter()
            .filter(|a| a.kind == PathKind::Relay && self.own_relay)
            .max_by_key(|a| a.learned);
        let best = match (alive, relay) {
            (Some(a), _) if a.kind != PathKind::Relay => Some(a.addr),
            (_, Some(r)) => Some(r.addr),
            (Some(a), None) => Some(a.addr),
            (None, None) => {
                // Nothing alive: the application's address unless it failed, else the current
                // path unless it failed, else the newest address not yet failed (proven
                // first), else the current path all the same.
                let usable = |addr: &SocketAddr| {
                    self.addrs
                        .iter()
                        .any(|a| a.addr == *addr && !a.failed && reachable(a))
                };
                let primary = self
                    .addrs
                    .iter()
                    .find(|a| a.primary && !a.failed && reachable(a))
                    .map(|a| a.addr);
                let newest = self
                    .addrs
                    .iter()
                    .filter(|a| !a.failed && reachable(a))
                    .max_by_key(|a| (a.proven, a.learned))
                    .map(|a| a.addr);
                primary
                    .or(self.current.filter(usable))
                    .or(newest)
                    .or(self.current)
            }
        };
        if best != self.current && best.is_some() {
            // The address we leave was not probed while it was current: probe it now.
            if let Some(old) = self.current {
                self.start_round_for(now, old);
            }
            self.current = best;
            self.awaiting = None;
            self.rtt = None;
            self.changed = true;
            self.next_keepalive = Some(now + KEEPALIVE_EVERY);
        }
    }

    /// Whether the current path changed since the last call.
    pub fn take_change(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The next probe that is due, with a fresh nonce.
    pub fn pop_due(&mut self) -> Option<ProbeTo> {
        self.due.pop_front()
    }

    /// Addresses of `kind`.
    pub fn addrs_of_kind(&self, kind: PathKind) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addrs
            .iter()
            .filter(move |a| a.kind == kind)
            .map(|a| a.addr)
    }

    /// The next instant [`Paths::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probes = self.addrs.iter().filter_map(|a| a.next_probe);
        let failover = self.awaiting.map(|t| t + self.failover_after());
        // Timers that only run while the conversation is active.
        let active_until = self.active.map(|t| t + ACTIVE_FOR);
        let while_active = |t: &Instant| active_until.is_some_and(|end| *t < end);
        let keepalive = self
            .next_keepalive
            .filter(|_| self.keeps_alive())
            .filter(while_active);
        let round = self
            .next_round
            .filter(|_| self.wants_rounds())
            .filter(while_active);
        probes
            .chain(failover)
            .chain(self.next_recheck())
            .chain(keepalive)
            .chain(round)
            .min()
    }

    /// When the silent current path gets its next probe before failing.
    fn next_recheck(&self) -> Option<Instant> {
        let since = self.awaiting?;
        let step = self.failover_after() / (RECHECKS + 1);
        (self.keeps_alive() && self.rechecks < RECHECKS).then(|| since + step * (self.rechecks + 1))
    }

    /// Whether the current path gets keep-alives: a direct path chosen among several (one
    /// found by hole punching, whose NAT mappings would otherwise expire). A peer known by one
    /// address only, as without NAT traversal, is kept alive by its traffic alone.
    fn keeps_alive(&self) -> bool {
        self.addrs.len() > 1 && self.current().is_some_and(|(_, k)| k != PathKind::Relay)
    }

    /// Whether a better path than the current one may exist.
    fn wants_rounds(&self) -> bool {
        let current = self.current().map(|(_, k)| k);
        self.addrs
            .iter()
            .any(|a| a.kind != PathKind::Relay && Some(a.kind) > current)
    }

    fn nonce(&mut self) -> u64 {
        self.next_nonce += 1;
        self.next_nonce
    }

    /// Runs due timers: probes, failover, keep-alive and rounds.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(since) = self.awaiting
            && since + self.failover_after() <= now
        {
            self.awaiting = None;
            // The relay is the path of last resort: it is never given up, only left for better.
            if let Some(current) = self.current
                && let Some(a) = self.addrs.iter_mut().find(|a| a.addr == current)
                && a.kind != PathKind::Relay
            {
                a.failed = true;
            }
            self.reselect(now);
            self.start_round(now);
        }
        if let Some((addr, _)) = self.current()
            && self.next_recheck().is_some_and(|t| t <= now)
        {
            self.rechecks += 1;
            let nonce = self.nonce();
            self.due.push_back(ProbeTo { addr, nonce });
        }
        let active = self.is_active(now);
        if active && self.wants_rounds() && self.next_round.is_some_and(|t| t <= now) {
            self.start_round(now);
        }
        if let Some((addr, _)) = self.current()
            && self.keeps_alive()
            && active
            && self.next_keepalive.is_some_and(|t| t <= now)
        {
            let nonce = self.nonce();
            self.due.push_back(ProbeTo { addr, nonce });
            self.expecting(now);
            self.next_keepalive = Some(now + KEEPALIVE_EVERY);
        }
        let mut due = Vec::new();
        for a in self.addrs.iter_mut() {
            if a.next_probe.is_some_and(|t| t <= now) {
                due.push(a.addr);
                a.probes_left = a.probes_left.saturating_sub(1);
                let sent = PROBES_PER_ROUND - a.probes_left;
                a.next_probe = PROBE_GAPS
                    .get(usize::from(sent) - 1)
                    .filter(|_| a.probes_left > 0)
                    .map(|gap| now + *gap);
            }
        }
        for addr in due {
            let nonce = self.nonce();
            self.due.push_back(ProbeTo { addr, nonce });
        }
    }
}

#[cfg(test)]
mod tests;
