//! Peers that moved (restarted elsewhere, changed networks) stop answering where we send: a
//! peer unanswered for [`RELOOK_AFTER`] is looked up again, at most every [`RELOOK_EVERY`], and
//! the answer moves its path ([`ChatCore::learn_record`]).

use std::time::Instant;

use uuid::Uuid;

use super::{ChatCore, IndexRequest, RELOOK_AFTER, RELOOK_EVERY};

impl ChatCore {
    /// Peers that have not answered for [`RELOOK_AFTER`] are looked up again (at most every
    /// [`RELOOK_EVERY`]): the answer moves their path when they are elsewhere now.
    pub(super) fn relook(&mut self, now: Instant) {
        let due: Vec<Uuid> = self
            .unanswered
            .iter()
            .filter(|(peer, since)| self.relook_at(peer, **since).is_some_and(|at| at <= now))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            self.relooked.insert(peer, now);
            self.ask(IndexRequest::Lookup(peer));
        }
        let stale = now.checked_sub(RELOOK_EVERY);
        self.relooked
            .retain(|_, at| stale.is_none_or(|stale| *at > stale));
    }

    /// When `peer`, unanswered since `since`, is due to be looked up again: never while a
    /// lookup of it is under way (its answer comes anyway).
    fn relook_at(&self, peer: &Uuid, since: Instant) -> Option<Instant> {
        if self.waiting.contains_key(peer) {
            return None;
        }
        let after = since + RELOOK_AFTER;
        Some(
            self.relooked
                .get(peer)
                .map_or(after, |at| after.max(*at + RELOOK_EVERY)),
        )
    }

    /// When the next look-up-again is due.
    pub(super) fn next_relook(&self) -> Option<Instant> {
        self.unanswered
            .iter()
            .filter_map(|(peer, since)| self.relook_at(peer, *since))
            .min()
    }
}
