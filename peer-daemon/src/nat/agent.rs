//! The daemon's side of NAT traversal around the [`Gatherer`]: which servers it uses (the
//! index's or the user's), which candidates we publish (to the index through the
//! registration, to peers through the chat core), and the wrapping of datagrams for relay
//! addresses into TURN indications. Free of I/O like the gatherer; the driver moves the bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use proto::Transmit;
use proto::api::{Candidate, CandidateKind, IceServer, MAX_CANDIDATES};
use tokio::sync::watch;
use uuid::Uuid;

use super::servers::{self, IceUrl};
use super::turn::{GatherEvent, GatherStats, Gatherer, Incoming, ServerConfig};

/// What changed, for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatChange {
    /// Our candidates changed: tell the chat core (and so the peers) and the index.
    Candidates {
        /// The new list.
        candidates: Vec<Candidate>,
        /// Whether we have a relay allocation.
        relay: bool,
    },
    /// Something the user should know (a server that does not answer, a bad server list).
    Trouble(String),
}

/// Counters of the daemon's NAT traversal, beside the gatherer's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatStats {
    /// The gatherer's counters.
    pub gatherer: GatherStats,
    /// Datagrams for a relay address dropped because we had no allocation.
    pub relay_unavailable: u64,
    /// ICE servers from the index refused (bad URL, bad credentials, unresolvable).
    pub refused_servers: u64,
}

/// NAT traversal state of one daemon.
pub struct Nat {
    gatherer: Gatherer,
    host: Vec<SocketAddr>,
    /// The user's servers (`--ice-server`); `Some(empty)` turns NAT traversal off.
    preset: Option<Vec<IceUrl>>,
    /// The index's list as last seen, to resolve it again only when it changes.
    from_index: Vec<IceServer>,
    published: Vec<Candidate>,
    announce: watch::Sender<Vec<Candidate>>,
    changes: VecDeque<NatChange>,
    stats: NatStats,
}

impl Nat {
    /// Gathers for a socket whose host candidates are `host`, from the `preset` servers or
    /// else the index's, announcing the candidates on `announce`.
    pub fn new(
        now: Instant,
        seed: [u8; 32],
        host: Vec<SocketAddr>,
        preset: Option<Vec<IceUrl>>,
        announce: watch::Sender<Vec<Candidate>>,
    ) -> Self {
        // Off: no candidates at all, so peers know only the address the index observed.
        let host = if preset.as_ref().is_some_and(Vec::is_empty) {
            Vec::new()
        } else {
            host
        };
        let mut nat = Nat {
            gatherer: Gatherer::new(now, seed),
            host,
            preset,
            from_index: Vec::new(),
            published: Vec::new(),
            announce,
            changes: VecDeque::new(),
            stats: NatStats::default(),
        };
        nat.republish();
        nat
    }

    /// Whether STUN/TURN servers may be used at all.
    pub fn enabled(&self) -> bool {
        self.preset.as_ref().is_none_or(|p| !p.is_empty())
    }

    /// The user's servers, to resolve at start-up.
    pub fn preset(&self) -> Option<Vec<IceUrl>> {
        self.preset.clone().filter(|p| !p.is_empty())
    }

    /// The index handed out `servers` (with a registration): the URLs to resolve when they
    /// changed and are to be used.
    pub fn index_servers(&mut self, servers: &[IceServer]) -> Option<Vec<IceUrl>> {
        if self.preset.is_some() || servers == self.from_index.as_slice() {
            return None;
        }
        self.from_index = servers.to_vec();
        let (urls, refused) = servers::from_index(servers);
        for reason in refused {
            self.refused(format!("the index handed out a bad ICE server: {reason}"));
        }
        Some(urls)
    }

    /// Servers resolved (and the reasons for those that did not): gather from them.
    pub fn set_servers(&mut self, now: Instant, servers: Vec<ServerConfig>, failed: Vec<String>) {
        for reason in failed {
            self.refused(reason);
        }
        self.gatherer.set_servers(now, servers);
    }

    fn refused(&mut self, reason: String) {
        self.stats.refused_servers += 1;
        self.changes.push_back(NatChange::Trouble(reason));
    }

    /// A datagram from the socket: the gatherer's, a peer's through our relay, or neither.
    pub fn incoming(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Incoming {
        let incoming = self.gatherer.handle_datagram(now, from, bytes);
        self.take_events();
        incoming
    }

    /// A datagram of the chat for the wire: one for a relay address goes through our
    /// allocation (`None` when there is none, counted).
    pub fn outgoing(&mut self, now: Instant, transmit: Transmit, relay: bool) -> Option<Transmit> {
        if !relay {
            return Some(transmit);
        }
        match self.gatherer.wrap(now, transmit.to, &transmit.bytes) {
            Some((to, bytes)) => Some(Transmit {
                peer: transmit.peer,
                to,
                bytes,
            }),
            None => {
                self.stats.relay_unavailable += 1;
                None
            }
        }
    }

    /// The gatherer's own next datagram (requests to its servers).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let (to, bytes) = self.gatherer.poll_transmit()?;
        Some(Transmit {
            peer: Uuid::nil(),
            to,
            bytes,
        })
    }

    /// When [`Nat::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.gatherer.poll_timeout()
    }

    /// Runs the gatherer's due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.gatherer.poll_timeout().is_some_and(|t| t <= now) {
            self.gatherer.handle_timeout(now);
            self.take_events();
        }
    }

    /// The next change for the driver.
    pub fn poll_change(&mut self) -> Option<NatChange> {
        self.changes.pop_front()
    }

    /// The counters.
    pub fn stats(&self) -> NatStats {
        NatStats {
            gatherer: self.gatherer.stats(),
            ..self.stats
        }
    }

    fn take_events(&mut self) {
        let mut changed = false;
        while let Some(event) = self.gatherer.poll_event() {
            match event {
                GatherEvent::Reflexive(_) | GatherEvent::Relayed(_) => changed = true,
                GatherEvent::Trouble(message) => {
                    self.changes.push_back(NatChange::Trouble(message))
                }
            }
        }
        if changed {
            self.republish();
        }
    }

    /// Our candidates: host addresses, then the reflexive one (unless it is a host address:
    /// no NAT), then the relayed one.
    fn republish(&mut self) {
        // Room for the reflexive and the relayed one: the relay is the one that always works.
        let mut candidates: Vec<Candidate> = self
            .host
            .iter()
            .take(MAX_CANDIDATES - 2)
            .map(|&addr| Candidate {
                kind: CandidateKind::Host,
                addr,
            })
            .collect();
        if let Some(addr) = self.gatherer.reflexive()
            && !self.host.contains(&addr)
        {
            candidates.push(Candidate {
                kind: CandidateKind::Srflx,
                addr,
            });
        }
        let relay = self.gatherer.relayed();
        if let Some(addr) = relay {
            candidates.push(Candidate {
                kind: CandidateKind::Relay,
                addr,
            });
        }
        if candidates == self.published && !candidates.is_empty() {
            return;
        }
        self.published = candidates.clone();
        self.announce.send_replace(candidates.clone());
        self.changes.push_back(NatChange::Candidates {
            candidates,
            relay: relay.is_some(),
        });
    }
}
