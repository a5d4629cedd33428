//! The lookup cache: every live record in memory, so `GET /peers/{uuid}` — the index's hot
//! path — never waits for SQLite (nor for a group commit holding its lock).
//!
//! It is loaded from the database at start-up and afterwards changed only by the
//! [`super::Writer`], after the transaction holding a change committed and before the change is
//! acknowledged: a lookup never sees a change that could still be lost, and a client that got
//! its 2xx sees its own change. A UUID the cache does not hold is looked up in SQLite, so a row
//! written by another program (e.g. `sqlite3`) is still found; such rows are not cached, and
//! a change another program makes to a cached row is not seen until the row's next change
//! through the index or a restart.
//!
//! Entries are compact (binary address, key and times; text is rebuilt on each hit) because the
//! cache holds every live record: see docs/index.md for the memory per record. They hold what
//! lookups show (candidates included), not who owns the record: ownership checks read SQLite.
//! ICE servers are never cached: they belong to the owner's own answers, not to lookups.

use std::net::SocketAddr;

use dashmap::DashMap;
use futures_util::TryStreamExt;
use proto::api::{Candidate, PeerRecord};
use sqlx::{FromRow, SqlitePool};
use uuid::Uuid;

use super::change::{Delete, Done, Op, WriteError};
use super::clock::{Liveness, duration_ms, format_ms, parse_ms};
use super::peers::RecordRow;

#[derive(Debug, Clone)]
struct Entry {
    /// As stored (`ip:port`), so a hit copies it instead of formatting it.
    addr: Box<str>,
    name: Option<Box<str>>,
    public_key: Option<[u8; 32]>,
    registered_ms: i64,
    last_seen_ms: i64,
    /// Usually empty (an empty box allocates nothing); at most `MAX_CANDIDATES`.
    candidates: Box<[Candidate]>,
}

impl Entry {
    /// The compact form of `record`; `None` if a field does not read back exactly.
    fn new(record: &PeerRecord) -> Option<Entry> {
        let entry = Entry {
            addr: record.addr.parse::<SocketAddr>().ok()?.to_string().into(),
            name: record.name.as_deref().map(Box::from),
            public_key: match &record.public_key {
                Some(key) => Some(decode32(key)?),
                None => None,
            },
            registered_ms: parse_ms(&record.registered_at)?,
            last_seen_ms: parse_ms(record.last_seen.as_deref()?)?,
            candidates: record.candidates.as_slice().into(),
        };
        // Serve from memory only what is byte-for-byte what SQLite would answer.
        (entry.record(record.uuid) == *record).then_some(entry)
    }

    fn record(&self, uuid: Uuid) -> PeerRecord {
        PeerRecord {
            uuid,
            addr: self.addr.to_string(),
            name: self.name.as_deref().map(str::to_owned),
            public_key: self.public_key.map(hex::encode),
            registered_at: format_ms(self.registered_ms),
            last_seen: Some(format_ms(self.last_seen_ms)),
            ttl_secs: None,
            record_ttl_secs: None,
            cache_ttl_secs: None,
            token: None,
            candidates: self.candidates.to_vec(),
            ice_servers: Vec::new(),
        }
    }
}

/// Every live record by UUID.
#[derive(Debug)]
pub struct LookupCache {
    entries: DashMap<Uuid, Entry>,
    liveness: Liveness,
    ttl_ms: i64,
}

impl LookupCache {
    /// An empty cache for records that are live by `liveness`.
    pub fn new(liveness: Liveness) -> LookupCache {
        LookupCache {
            entries: DashMap::new(),
            ttl_ms: duration_ms(liveness.ttl),
            liveness,
        }
    }

    /// Loads every live record from the database; returns how many.
    pub async fn load(&self, pool: &SqlitePool) -> anyhow::Result<usize> {
        let mut rows = sqlx::query(
            "SELECT uuid, addr, name, public_key, registered_at, last_seen, candidates
             FROM peers WHERE last_seen >= ?1",
        )
        .bind(self.liveness.now().live_since)
        .fetch(pool);
        while let Some(row) = rows.try_next().await? {
            // A row that does not decode (written by another program) is left to SQLite.
            let Ok(row) = RecordRow::from_row(&row) else {
                continue;
            };
            let record = PeerRecord::from(row);
            if let Some(entry) = Entry::new(&record) {
                self.entries.insert(record.uuid, entry);
            }
        }
        Ok(self.entries.len())
    }

    /// The public record of `uuid` (TTL fields and `token` unset) and the seconds it stays
    /// live, if cached and live: what a lookup needs, without the owner.
    pub fn lookup(&self, uuid: Uuid) -> Option<(PeerRecord, f64)> {
        let now = self.liveness.clock.now_ms();
        let entry = self.entries.get(&uuid)?;
        let remaining_ms = entry.last_seen_ms + self.ttl_ms - now;
        (remaining_ms > 0).then(|| (entry.record(uuid), remaining_ms as f64 / 1000.0))
    }

    /// Applies a committed change; the writer calls this before acknowledging it.
    pub(super) fn observe(&self, op: &Op, result: &Result<Done, WriteError>) {
        match (op, result) {
            (_, Ok(Done::Record(record))) => match Entry::new(record) {
                Some(entry) => {
                    self.entries.insert(record.uuid, entry);
                }
                // Never serve an outdated copy: without an entry the lookup asks SQLite.
                None => {
                    self.entries.remove(&record.uuid);
                }
            },
            (Op::Delete(Delete { uuid, .. }), Ok(Done::Changed)) => {
                self.entries.remove(uuid);
            }
            (Op::Purge(_), Ok(Done::Purged(_))) => {
                let cutoff = self.liveness.clock.now_ms() - self.ttl_ms;
                self.entries.retain(|_, entry| entry.last_seen_ms > cutoff);
            }
            _ => {}
        }
    }
}

fn decode32(hex_text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::db::ManualClock;

    fn record(addr: &str, registered_at: &str) -> PeerRecord {
        PeerRecord {
            uuid: Uuid::from_u128(7),
            addr: addr.into(),
            name: Some("ann".into()),
            public_key: Some("ab".repeat(32)),
            registered_at: registered_at.into(),
            last_seen: Some("2026-11-24T12:00:00.250Z".into()),
            ttl_secs: None,
            record_ttl_secs: None,
            cache_ttl_secs: None,
            token: None,
            candidates: Vec::new(),
            ice_servers: Vec::new(),
        }
    }

    #[test]
    fn only_exact_copies_are_kept() {
        let exact = record("[2001:db8::1]:4000", "2026-11-24T11:00:00.000Z");
        assert_eq!(Entry::new(&exact).unwrap().record(exact.uuid), exact);
        let mut reachable = exact.clone();
        reachable.candidates = vec![
            Candidate {
                kind: proto::api::CandidateKind::Host,
                addr: "192.0.2.10:4000".parse().unwrap(),
            },
            Candidate {
                kind: proto::api::CandidateKind::Relay,
                addr: "[2001:db8::5]:49152".parse().unwrap(),
            },
        ];
        assert_eq!(
            Entry::new(&reachable).unwrap().record(reachable.uuid),
            reachable
        );
        // An owner's answer (with its ICE servers) is never what a lookup may show.
        let mut owners = exact.clone();
        owners.ice_servers = vec![proto::api::IceServer {
            urls: vec!["stun:192.0.2.1:3478".into()],
            username: None,
            credential: None,
        }];
        assert!(Entry::new(&owners).is_none());
        // Text that would not come back byte for byte is left to SQLite.
        for odd in [
            record("[2001:DB8::1]:4000", "2026-11-24T11:00:00.000Z"),
            record("192.0.2.1:4000", "2026-11-24T11:00:00Z"),
            record("not an address", "2026-11-24T11:00:00.000Z"),
        ] {
            assert!(Entry::new(&odd).is_none(), "{odd:?}");
        }
    }

    #[test]
    fn lookups_end_with_the_ttl() {
        let clock = ManualClock::starting_now();
        let cache = LookupCache::new(Liveness {
            clock: clock.clone().into(),
            ttl: Duration::from_secs(60),
        });
        let mut fresh = record("192.0.2.1:4000", "2026-11-24T11:00:00.000Z");
        fresh.last_seen = Some(format_ms(clock.now_ms() - 1_000));
        cache
            .entries
            .insert(fresh.uuid, Entry::new(&fresh).unwrap());
        let (found, remaining) = cache.lookup(fresh.uuid).unwrap();
        assert_eq!(found, fresh);
        assert_eq!(remaining, 59.0);
        clock.advance(Duration::from_millis(58_750));
        assert_eq!(cache.lookup(fresh.uuid).unwrap().1, 0.25);
        clock.advance(Duration::from_millis(250));
        assert!(cache.lookup(fresh.uuid).is_none(), "expired");
    }
}
