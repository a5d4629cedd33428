//! What the driver reports about the daemon itself: every counter (`/stats`) and who and where
//! it is (`/whoami`), gathered from the core, NAT traversal, the store and the surroundings.

use crate::chat::IndexStatus;
use crate::output::UiEvent;

use super::Driver;

impl Driver {
    /// Every counter, for `/stats`.
    pub(super) fn stats(&self) -> UiEvent {
        let endpoint = self.core.endpoint();
        let (r, s, n) = (endpoint.stats(), endpoint.secure_stats(), self.nat.stats());
        let g = n.gatherer;
        let counters = [
            ("reliable.datagrams", r.datagrams),
            ("reliable.misaddressed", r.misaddressed),
            ("reliable.stale", r.stale),
            ("reliable.duplicates", r.duplicates),
            ("reliable.out_of_window", r.out_of_window),
            ("reliable.peer_limit", r.peer_limit),
            ("reliable.oversized", r.oversized),
            ("reliable.retransmits", r.retransmits),
            ("path.probes_in", r.probes_in),
            ("path.probes_out", r.probes_out),
            ("path.probe_replies_in", r.probe_replies_in),
            ("path.changes", r.path_changes),
            ("path.probes_without_session", s.probes_without_session),
            ("secure.malformed", s.malformed),
            ("secure.handshakes", s.handshakes),
            ("secure.handshake_failures", s.handshake_failures),
            ("secure.unknown_session", s.unknown_session),
            ("secure.decrypt_failures", s.decrypt_failures),
            ("secure.replays", s.replays),
            ("secure.spoofed", s.spoofed),
            ("secure.cookie_replies", s.cookie_replies),
            ("secure.bad_cookies", s.bad_cookies),
            ("secure.rate_limited", s.rate_limited),
            ("secure.half_open_evicted", s.half_open_evicted),
            ("nat.malformed", g.malformed),
            ("nat.unexpected", g.unexpected),
            ("nat.requests", g.requests),
            ("nat.timeouts", g.timeouts),
            ("nat.errors", g.errors),
            ("nat.allocations", g.allocations),
            ("nat.relayed_in", g.relayed_in),
            ("nat.relayed_out", g.relayed_out),
            ("nat.relay_unavailable", n.relay_unavailable),
            ("nat.refused_servers", n.refused_servers),
            ("store.write_errors", self.store.write_errors()),
        ];
        UiEvent::Stats {
            counters: counters
                .into_iter()
                .chain(self.directory.stats().counters())
                .chain(self.mail_stats.counters())
                .chain(self.core.mail_counters())
                .chain(self.core.state_counters().named())
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        }
    }

    /// `/whoami`.
    pub(super) fn whoami(&self) -> UiEvent {
        let status = self.core.index_status();
        let discovery = self.directory.status();
        UiEvent::Whoami {
            uuid: self.core.id(),
            name: self.core.own_name(),
            addr: self.core.registered_addr().map(str::to_owned),
            listen: self.facts.listen,
            candidates: self.core.candidates().to_vec(),
            index: self.facts.index_url.clone(),
            index_status: status.word(),
            index_error: match status {
                IndexStatus::Offline(reason) => Some(reason.clone()),
                _ => None,
            },
            state_dir: self.facts.state_dir.clone(),
            mdns: discovery.mdns,
            dht: discovery.dht,
            lan_peers: discovery.lan_peers,
            contacts: discovery.contacts,
        }
    }
}
