//! Who is called what, free of I/O. A name is a fact only when the index vouches for it: the
//! index keeps names unique and binds each record to its key's UUID, so a name from a record
//! the index gave us (a lookup, a room's member list) is the name of that UUID. What a peer
//! says about itself in its `hello` is only a claim: kept apart, shown marked unverified, and
//! never used to resolve `/msg <name>` or to complete a name.
//!
//! The binding of a name to a UUID is trusted for resolving only while fresh ([`FRESH`] at
//! most, or less when the index said so): after that `/msg <name>` asks the index again, so
//! when another peer now holds the name, the name follows the index rather than the peer that
//! held it before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Longest time a name the index vouched for is used to resolve `/msg <name>` without asking
/// the index again.
pub const FRESH: Duration = Duration::from_secs(60);
/// How long after checking a peer's claim with the index we do not check it again.
pub const RECHECK: Duration = Duration::from_secs(60);
/// How long after checking a claim we do not check a *different* claim of the same peer (a
/// peer that renamed itself with `/nick`): short, but a peer changing its claim in a loop
/// cannot make us ask the index more often than this.
pub const RECHECK_CHANGED: Duration = Duration::from_secs(1);
/// Longest claim kept, in characters; the rest is cut (a claim is only ever shown).
pub const MAX_CLAIM_CHARS: usize = 64;

#[derive(Debug)]
struct Vouched {
    name: String,
    until: Instant,
}

/// Names vouched for by the index, and names peers claim for themselves.
#[derive(Debug, Default)]
pub struct NameBook {
    vouched: HashMap<Uuid, Vouched>,
    claims: HashMap<Uuid, String>,
    /// When each peer's claim was last checked, and what it claimed then.
    checked: HashMap<Uuid, (Instant, String)>,
    /// Changed claims that came too soon after the last check: checked when due.
    deferred: HashMap<Uuid, Instant>,
}

fn same_name(a: &str, b: &str) -> bool {
    // The index compares names without regard to ASCII case; so do we.
    a.eq_ignore_ascii_case(b)
}

impl NameBook {
    /// The index says `peer` is called `name` (or has no name), as of `now`, for `ttl`.
    /// Any other peer we thought held that name no longer does. Returns whether any peer's
    /// name changed.
    pub fn vouch(&mut self, peer: Uuid, name: Option<&str>, now: Instant, ttl: Duration) -> bool {
        let claim = self.claims.get(&peer).cloned().unwrap_or_default();
        self.checked.insert(peer, (now, claim));
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return self.vouched.remove(&peer).is_some();
        };
        let before = self.vouched.len();
        self.vouched
            .retain(|id, v| *id == peer || !same_name(&v.name, name));
        let moved = self.vouched.len() != before;
        let previous = self.vouched.insert(
            peer,
            Vouched {
                name: name.to_owned(),
                until: now + ttl.min(FRESH),
            },
        );
        moved || previous.is_none_or(|p| p.name != name)
    }

    /// `peer` calls itself `name` (its `hello`). Returns whether the claim should be checked
    /// with the index now: it is not vouched for and was not checked lately.
    pub fn claim(&mut self, peer: Uuid, name: Option<&str>, now: Instant) -> bool {
        match name.filter(|n| !n.is_empty()) {
            Some(name) => {
                let cut: String = name.chars().take(MAX_CLAIM_CHARS).collect();
                self.claims.insert(peer, cut);
            }
            None => {
                self.claims.remove(&peer);
            }
        }
        let vouched = self
            .vouched
            .get(&peer)
            .zip(self.claims.get(&peer))
            .is_some_and(|(v, c)| same_name(&v.name, c) && v.until > now);
        let Some(claim) = self.claims.get(&peer).cloned() else {
            return false;
        };
        let last = self.checked.get(&peer).cloned();
        let recent = last.as_ref().is_some_and(|(at, before)| {
            let since = now.saturating_duration_since(*at);
            since < RECHECK_CHANGED || (since < RECHECK && same_name(before, &claim))
        });
        if !vouched && !recent {
            self.checked.insert(peer, (now, claim));
            self.deferred.remove(&peer);
            return true;
        }
        // A new claim (a peer that renamed itself) too soon after the last check: checked
        // once the pause is over, not forgotten.
        if let Some((at, before)) = last
            && !vouched
            && !same_name(&before, &claim)
        {
            self.deferred.insert(peer, at + RECHECK_CHANGED);
        }
        false
    }

    /// Peers whose deferred check is due at `now` (each taken once), marked checked.
    pub fn due_checks(&mut self, now: Instant) -> Vec<Uuid> {
        let due: Vec<Uuid> = self
            .deferred
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &due {
            self.deferred.remove(peer);
            let claim = self.claims.get(peer).cloned().unwrap_or_default();
            self.checked.insert(*peer, (now, claim));
        }
        due
    }

    /// When the next deferred check is due.
    pub fn next_check(&self) -> Option<Instant> {
        self.deferred.values().min().copied()
    }

    /// The name the index vouched for, when it did (the last one, even if no longer fresh:
    /// it is only shown, not used to resolve).
    pub fn name(&self, peer: &Uuid) -> Option<String> {
        self.vouched.get(peer).map(|v| v.name.clone())
    }

    /// What `peer` claims to be called, when that is not the name the index vouched for.
    pub fn claimed(&self, peer: &Uuid) -> Option<String> {
        let claim = self.claims.get(peer)?;
        match self.vouched.get(peer) {
            Some(v) if same_name(&v.name, claim) => None,
            _ => Some(claim.clone()),
        }
    }

    /// The peer the index vouched, recently, is called `name`.
    pub fn resolve(&self, name: &str, now: Instant) -> Option<Uuid> {
        self.vouched
            .iter()
            .find(|(_, v)| v.until > now && same_name(&v.name, name))
            .map(|(id, _)| *id)
    }

    /// Every peer with a name the index vouched for.
    pub fn vouched(&self) -> impl Iterator<Item = (Uuid, String)> + '_ {
        self.vouched.iter().map(|(id, v)| (*id, v.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_never_resolve_and_the_index_moves_names() {
        let (alice, impostor, carol) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let now = Instant::now();
        let ttl = Duration::from_secs(300);
        let mut book = NameBook::default();
        assert!(book.claim(impostor, Some("alice"), now), "check the claim");
        assert!(
            !book.claim(impostor, Some("alice"), now),
            "not again so soon"
        );
        assert_eq!(book.resolve("alice", now), None, "a claim resolves nothing");
        assert_eq!(book.name(&impostor), None);
        assert_eq!(book.claimed(&impostor).as_deref(), Some("alice"));

        book.vouch(alice, Some("alice"), now, ttl);
        assert!(
            !book.claim(alice, Some("alice"), now),
            "already vouched for"
        );
        assert_eq!(book.resolve("ALICE", now), Some(alice));
        assert_eq!(book.claimed(&alice), None, "the claim matches the index");

        // The index now says carol holds the name: alice's binding goes.
        book.vouch(carol, Some("Alice"), now, ttl);
        assert_eq!(book.resolve("alice", now), Some(carol));
        assert_eq!(book.name(&alice), None);
        assert_eq!(book.claimed(&alice).as_deref(), Some("alice"));

        // Bindings go stale for resolving (the index is asked again), not for showing.
        let later = now + FRESH + Duration::from_secs(1);
        assert_eq!(book.resolve("alice", later), None);
        assert_eq!(book.name(&carol).as_deref(), Some("Alice"));
        assert!(
            book.claim(impostor, Some("alice"), later),
            "checked again later"
        );

        let long = "x".repeat(1000);
        book.claim(impostor, Some(&long), later);
        assert_eq!(book.claimed(&impostor).unwrap().len(), MAX_CLAIM_CHARS);
    }

    #[test]
    fn a_changed_claim_too_soon_is_checked_later_not_forgotten() {
        let peer = Uuid::from_u128(7);
        let now = Instant::now();
        let mut book = NameBook::default();
        assert!(book.claim(peer, Some("bob"), now), "first claim: checked");
        book.vouch(peer, Some("bob"), now, FRESH);
        // Renamed at once: too soon to ask again, but due later.
        assert!(!book.claim(peer, Some("robert"), now + Duration::from_millis(100)));
        assert_eq!(book.next_check(), Some(now + RECHECK_CHANGED));
        assert!(book.due_checks(now + Duration::from_millis(500)).is_empty());
        assert_eq!(book.due_checks(now + RECHECK_CHANGED), vec![peer]);
        assert_eq!(book.next_check(), None, "taken once");
        // The same claim again does not schedule anything.
        assert!(!book.claim(peer, Some("bob"), now + RECHECK_CHANGED));
        assert_eq!(book.next_check(), None);
    }
}
