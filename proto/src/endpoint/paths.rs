//! The endpoint's side of the paths to its peers (see `crate::path`): the relay addresses it
//! knows, candidates learned from authenticated sources, probes and their replies, and the
//! `Path` events when a peer's current path changes.

use super::*;

impl Endpoint {
    pub(super) fn remember_relay(&mut self, addr: SocketAddr) {
        if self.relay_addrs.len() >= MAX_RELAY_ADDRS && !self.relay_addrs.contains(&addr) {
            // Keep those some peer still uses; forget the rest.
            let used: HashSet<SocketAddr> = self
                .peers
                .values()
                .flat_map(|p| p.paths.addrs_of_kind(PathKind::Relay))
                .collect();
            self.relay_addrs.retain(|a| used.contains(a));
            if self.relay_addrs.len() >= MAX_RELAY_ADDRS {
                return;
            }
        }
        self.relay_addrs.insert(addr);
    }

    pub(super) fn kind_of(&self, addr: SocketAddr) -> PathKind {
        if self.relay_addrs.contains(&addr) {
            PathKind::Relay
        } else {
            PathKind::Direct
        }
    }

    /// Whether `addr` is a relay address: datagrams to it go through our relay allocation.
    pub fn is_relay_addr(&self, addr: &SocketAddr) -> bool {
        self.relay_addrs.contains(addr)
    }

    /// The next datagram from `from` came through our relay (a TURN Data indication).
    pub fn relayed_from(&mut self, from: SocketAddr) {
        self.remember_relay(from);
    }

    /// We gained (`true`) or lost a relay allocation of our own; without one, the peers' relay
    /// addresses cannot be reached.
    pub fn set_own_relay(&mut self, now: Instant, have: bool) {
        self.own_relay = have;
        let ids: Vec<Uuid> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.paths.set_own_relay(now, have);
            }
            self.note_path(id);
        }
    }

    /// Learns where `peer` may be reached, from an authenticated source: the index's record
    /// (which the peer signed) or the peer itself, in its session. Probing starts at once.
    pub fn learn_candidates(&mut self, now: Instant, peer: Uuid, candidates: &[Candidate]) {
        if peer == self.me {
            return;
        }
        for candidate in candidates {
            if candidate.kind == crate::api::CandidateKind::Relay {
                self.remember_relay(candidate.addr);
            }
        }
        let (limit, own_relay) = (self.config.max_peers, self.own_relay);
        let Some(entry) = peer_entry(&mut self.peers, peer, limit) else {
            self.stats.peer_limit += 1;
            return;
        };
        entry.paths.set_own_relay(now, own_relay);
        for candidate in candidates.iter().take(crate::api::MAX_CANDIDATES) {
            entry
                .paths
                .learn(now, candidate.addr, candidate.kind.into());
        }
        self.note_path(peer);
    }

    /// The path to `peer` now in use.
    pub fn path(&self, peer: &Uuid) -> Option<(SocketAddr, PathKind)> {
        self.peers.get(peer).and_then(|p| p.paths.current())
    }

    /// Every address known for `peer`: (address, kind, alive).
    pub fn path_addrs(&self, now: Instant, peer: &Uuid) -> Vec<(SocketAddr, PathKind, bool)> {
        self.peers
            .get(peer)
            .map(|p| p.paths.addrs(now).collect())
            .unwrap_or_default()
    }

    /// Reports a change of `id`'s current path, and resends what is in flight on the new one.
    pub(super) fn note_path(&mut self, id: Uuid) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !peer.paths.take_change() {
            return;
        }
        let Some((addr, kind)) = peer.paths.current() else {
            return;
        };
        peer.tx.path_changed();
        self.stats.path_changes += 1;
        self.events.push_back(Event::Path {
            peer: id,
            addr,
            kind,
        });
    }

    pub(super) fn on_probe(&mut self, now: Instant, from: SocketAddr, probe: Probe) {
        if probe.to != self.me || probe.from == self.me {
            self.stats.misaddressed += 1;
            return;
        }
        let (kind, own_relay) = (self.kind_of(from), self.own_relay);
        let Some(peer) = peer_entry(&mut self.peers, probe.from, self.config.max_peers) else {
            self.stats.peer_limit += 1;
            return;
        };
        peer.paths.set_own_relay(now, own_relay);
        self.stats.probes_in += 1;
        if peer.replies.len() < MAX_PROBES_OUT {
            peer.replies.push_back((from, probe.nonce));
        }
        peer.paths.heard(now, from, kind);
        self.note_path(probe.from);
    }

    pub(super) fn on_probe_reply(&mut self, now: Instant, from: SocketAddr, reply: ProbeReply) {
        if reply.to != self.me || reply.from == self.me {
            self.stats.misaddressed += 1;
            return;
        }
        let kind = self.kind_of(from);
        let Some(peer) = self.peers.get_mut(&reply.from) else {
            self.stats.stale += 1;
            return;
        };
        let Some(i) = peer
            .probes_out
            .iter()
            .position(|&(addr, nonce, _)| nonce == reply.nonce && addr == from)
        else {
            // Not an answer to a probe of ours (or a late one): still proof of the path.
            peer.paths.heard(now, from, kind);
            self.note_path(reply.from);
            return;
        };
        let (_, _, sent) = peer.probes_out.remove(i).expect("found above");
        peer.paths.answered(now, from, kind);
        peer.paths
            .rtt_sample(from, now.saturating_duration_since(sent));
        self.stats.probe_replies_in += 1;
        self.note_path(reply.from);
    }
}
