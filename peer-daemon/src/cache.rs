//! What the daemon learned from the index, kept as long as the index said it may be cached
//! (moka, with a per-entry expiry).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;
use uuid::Uuid;

/// Used when the index gives no lifetime.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
struct Entry {
    addr: SocketAddr,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<Uuid, Entry> for PerEntry {
    fn expire_after_create(&self, _: &Uuid, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
    fn expire_after_update(
        &self,
        _: &Uuid,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Peer addresses from lookups, each with its own lifetime.
#[derive(Clone)]
pub struct LookupCache {
    inner: Cache<Uuid, Entry>,
}

impl Default for LookupCache {
    fn default() -> Self {
        LookupCache {
            inner: Cache::builder()
                .max_capacity(100_000)
                .expire_after(PerEntry)
                .build(),
        }
    }
}

impl LookupCache {
    /// Remembers `addr` for `ttl` (a zero TTL is not cached at all).
    pub fn insert(&self, peer: Uuid, addr: SocketAddr, ttl: Duration) {
        if !ttl.is_zero() {
            self.inner.insert(peer, Entry { addr, ttl });
        }
    }

    /// The cached address, if still fresh.
    pub fn get(&self, peer: &Uuid) -> Option<SocketAddr> {
        self.inner.get(peer).map(|e| e.addr)
    }

    /// Every fresh entry.
    pub fn entries(&self) -> Vec<(Uuid, SocketAddr)> {
        self.inner.iter().map(|(k, v)| (*k, v.addr)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_own_ttl() {
        let cache = LookupCache::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        cache.insert(Uuid::from_u128(1), addr, Duration::from_secs(1));
        cache.insert(Uuid::from_u128(2), addr, Duration::from_secs(60));
        cache.insert(Uuid::from_u128(3), addr, Duration::ZERO);
        assert_eq!(cache.get(&Uuid::from_u128(1)), Some(addr));
        assert_eq!(cache.get(&Uuid::from_u128(3)), None);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(cache.get(&Uuid::from_u128(1)), None, "expired");
        assert_eq!(cache.get(&Uuid::from_u128(2)), Some(addr));
    }
}
