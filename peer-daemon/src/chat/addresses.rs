//! Where the index said peers are, each for as long as the index said it holds. Time is the
//! core's `now`, so expiry is tested in virtual time (a cache with its own clock, such as moka,
//! cannot be).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::api::Candidate;
use uuid::Uuid;

/// Used when the index gives no lifetime.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Most addresses kept; past it, expired ones go, then the ones expiring soonest.
pub const CAPACITY: usize = 100_000;

/// Peer addresses from the index, each with its own lifetime.
#[derive(Debug, Default)]
pub struct Addresses {
    entries: HashMap<Uuid, (SocketAddr, Instant)>,
    /// The candidates of the same records (only those that listed some).
    candidates: HashMap<Uuid, Vec<Candidate>>,
}

impl Addresses {
    /// Remembers `addr` for `ttl` from `now` (a zero TTL is not kept at all).
    pub fn insert(&mut self, peer: Uuid, addr: SocketAddr, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() >= CAPACITY && !self.entries.contains_key(&peer) {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= CAPACITY
                && let Some(soonest) = self.entries.iter().min_by_key(|(_, (_, until))| *until)
            {
                let soonest = *soonest.0;
                self.entries.remove(&soonest);
            }
            let entries = &self.entries;
            self.candidates.retain(|peer, _| entries.contains_key(peer));
        }
        self.entries.insert(peer, (addr, now + ttl));
    }

    /// Remembers the candidates of `peer`'s record (kept while its address is).
    pub fn set_candidates(&mut self, peer: Uuid, candidates: &[Candidate]) {
        if candidates.is_empty() {
            self.candidates.remove(&peer);
        } else if self.entries.contains_key(&peer) {
            self.candidates.insert(peer, candidates.to_vec());
        }
    }

    /// The candidates of `peer`'s record, while its address holds.
    pub fn candidates(&self, peer: &Uuid, now: Instant) -> &[Candidate] {
        match self.get(peer, now) {
            Some(_) => self.candidates.get(peer).map_or(&[], Vec::as_slice),
            None => &[],
        }
    }

    /// The address, while it holds.
    pub fn get(&self, peer: &Uuid, now: Instant) -> Option<SocketAddr> {
        self.entries
            .get(peer)
            .filter(|(_, until)| *until > now)
            .map(|(addr, _)| *addr)
    }

    /// Every peer whose address still holds.
    pub fn peers(&self, now: Instant) -> impl Iterator<Item = Uuid> + '_ {
        self.entries
            .iter()
            .filter(move |(_, (_, until))| *until > now)
            .map(|(peer, _)| *peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_own_ttl() {
        let now = Instant::now();
        let mut book = Addresses::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        book.insert(a, addr, Duration::from_secs(1), now);
        book.insert(b, addr, Duration::from_secs(60), now);
        book.insert(c, addr, Duration::ZERO, now);
        assert_eq!(book.get(&a, now), Some(addr));
        assert_eq!(book.get(&c, now), None, "a zero TTL is not kept");
        let later = now + Duration::from_millis(1500);
        assert_eq!(book.get(&a, later), None, "expired");
        assert_eq!(book.get(&b, later), Some(addr));
        assert_eq!(book.peers(later).collect::<Vec<_>>(), [b]);
    }

    #[test]
    fn a_full_book_drops_what_expires_first() {
        let now = Instant::now();
        let mut book = Addresses::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for n in 0..CAPACITY as u128 {
            let ttl = Duration::from_secs(if n == 0 { 5 } else { 10 + (n as u64 % 1000) });
            book.insert(Uuid::from_u128(n), addr, ttl, now);
        }
        book.insert(
            Uuid::from_u128(u128::MAX),
            addr,
            Duration::from_secs(60),
            now,
        );
        assert_eq!(book.entries.len(), CAPACITY);
        assert_eq!(book.get(&Uuid::from_u128(u128::MAX), now), Some(addr));
        assert_eq!(
            book.get(&Uuid::from_u128(0), now),
            None,
            "the soonest to expire went"
        );
    }
}
