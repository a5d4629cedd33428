//! The lookup cache: recently looked-up and recently written records in memory, so
//! `GET /peers/{uuid}` — the index's hot path — usually never waits for the database.
//!
//! It is bounded (`--cache-entries`, least recently and least frequently used entries go
//! first: moka's TinyLFU) and filled on demand: nothing is loaded at start-up, so start-up takes
//! the same time whatever the number of records, and memory does not grow with them.
//!
//! What it serves is never older than the database allows:
//! - the [`super::Writer`] applies each committed change before acknowledging it, so a client
//!   that got its 2xx sees its own change, and a lookup never sees a change that could still
//!   be lost;
//! - a lookup that misses reads the database and fills the entry only if no change to that
//!   record was applied or announced meanwhile (a [`Ticket`] taken before the read), so an old
//!   row read just before a change cannot overwrite the change;
//! - on PostgreSQL, other replicas change records too: [`super::coherence`] removes each entry
//!   another replica announces as changed, and the cache only answers while it has heard its own
//!   announcements come back within [`COHERENCE_WINDOW`] (proof that nothing announced before
//!   is still unread). When the announcements stop (the listening connection broke, the server
//!   is slow), every lookup reads the database until they flow again, and the cache is emptied
//!   first: a change made through any replica is served by every replica within a second.
//!
//! A change another program makes to a cached row directly in the database is not seen until
//! the entry is evicted, changed through the index, or the index restarts.
//!
//! Entries are compact (binary address, key and times; text is rebuilt on each hit). They hold
//! what lookups show (candidates included), not who owns the record: ownership checks read the
//! database. ICE servers are never cached: they belong to the owner's own answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use proto::api::{Candidate, PeerRecord};
use uuid::Uuid;

use super::change::{Delete, Done, Op, WriteError};
use super::clock::{Liveness, duration_ms, format_ms, parse_ms};

/// How long after the last of its own announcements came back a replica's cache still answers.
pub const COHERENCE_WINDOW: Duration = Duration::from_millis(800);

/// Slots of change counters; a record's slot is picked by its UUID.
const SLOTS: usize = 256;

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

/// Whether the cache may answer: always on SQLite (one process writes), only while
/// announcements flow on PostgreSQL.
#[derive(Debug)]
enum Coherence {
    Always,
    /// Milliseconds (since `epoch`) until which the cache may answer.
    Until {
        epoch: Instant,
        until_ms: AtomicI64,
    },
}

/// Recently used live records by UUID.
#[derive(Debug)]
pub struct LookupCache {
    entries: Cache<Uuid, Arc<Entry>>,
    /// Changes applied or announced per slot: a fill is only kept if its slot's count did not
    /// move while it read the database. Also held while an entry is inserted or removed, so a
    /// fill and a change of the same slot never interleave.
    changes: Box<[Mutex<u64>]>,
    coherence: Coherence,
    liveness: Liveness,
    ttl_ms: i64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Taken before a lookup reads the database; [`LookupCache::fill`] keeps what it read only if
/// no change to the record's slot came in meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    slot: usize,
    changes: u64,
}

impl LookupCache {
    /// An empty cache of at most `capacity` records that are live by `liveness`; `replicated`
    /// when other processes write the same database (PostgreSQL), so the cache only answers
    /// while [`LookupCache::heard`] keeps it coherent.
    pub fn new(liveness: Liveness, capacity: u64, replicated: bool) -> LookupCache {
        LookupCache {
            entries: Cache::new(capacity),
            changes: (0..SLOTS).map(|_| Mutex::new(0)).collect(),
            coherence: if replicated {
                Coherence::Until {
                    epoch: Instant::now(),
                    until_ms: AtomicI64::new(0),
                }
            } else {
                Coherence::Always
            },
            ttl_ms: duration_ms(liveness.ttl),
            liveness,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The public record of `uuid` (TTL fields and `token` unset) and the seconds it stays
    /// live, if cached, live, and the cache is coherent: what a lookup needs, without the owner.
    pub fn lookup(&self, uuid: Uuid) -> Option<(PeerRecord, f64)> {
        let found = self.answer(uuid);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn answer(&self, uuid: Uuid) -> Option<(PeerRecord, f64)> {
        if !self.coherent() {
            return None;
        }
        let entry = self.entries.get(&uuid)?;
        let now = self.liveness.clock.now_ms();
        let remaining_ms = entry.last_seen_ms + self.ttl_ms - now;
        (remaining_ms > 0).then(|| (entry.record(uuid), remaining_ms as f64 / 1000.0))
    }

    /// Lookups answered from the cache, and lookups that were not, since start-up.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Take before reading `uuid` from the database, for [`LookupCache::fill`].
    pub fn ticket(&self, uuid: Uuid) -> Ticket {
        let slot = slot(uuid);
        Ticket {
            slot,
            changes: *lock(&self.changes[slot]),
        }
    }

    /// Keeps `record`, read from the database after `ticket` was taken, unless a change to its
    /// slot came in meanwhile or the cache is not coherent.
    pub fn fill(&self, ticket: Ticket, record: &PeerRecord) {
        let Some(entry) = Entry::new(record) else {
            return;
        };
        let changes = lock(&self.changes[ticket.slot]);
        if *changes == ticket.changes && self.coherent() {
            self.entries.insert(record.uuid, Arc::new(entry));
        }
    }

    /// Applies a committed change; the writer calls this before acknowledging it.
    pub(super) fn observe(&self, op: &Op, result: &Result<Done, WriteError>) {
        match (op, result) {
            (_, Ok(Done::Record(record))) => {
                let mut changes = lock(&self.changes[slot(record.uuid)]);
                *changes += 1;
                match Entry::new(record) {
                    Some(entry) => self.entries.insert(record.uuid, Arc::new(entry)),
                    // Never serve an outdated copy: without an entry the lookup asks the database.
                    None => self.entries.invalidate(&record.uuid),
                }
            }
            (Op::Delete(Delete { uuid, .. }), Ok(Done::Changed)) => self.forget(*uuid),
            _ => {}
        }
    }

    /// Drops `uuid`'s entry: another replica changed or deleted the record.
    pub fn forget(&self, uuid: Uuid) {
        let mut changes = lock(&self.changes[slot(uuid)]);
        *changes += 1;
        self.entries.invalidate(&uuid);
    }

    /// Drops every entry (announcements may have been missed).
    pub fn clear(&self) {
        let mut slots: Vec<_> = self.changes.iter().map(lock).collect();
        for changes in &mut slots {
            **changes += 1;
        }
        self.entries.invalidate_all();
    }

    /// Records that every change announced before `sent` has been applied: the cache may
    /// answer until [`COHERENCE_WINDOW`] after `sent`.
    pub fn heard(&self, sent: Instant) {
        if let Coherence::Until { epoch, until_ms } = &self.coherence {
            let until = sent.saturating_duration_since(*epoch) + COHERENCE_WINDOW;
            until_ms.fetch_max(duration_ms(until), Ordering::SeqCst);
        }
    }

    /// Whether the cache may answer now.
    pub fn coherent(&self) -> bool {
        match &self.coherence {
            Coherence::Always => true,
            Coherence::Until { epoch, until_ms } => {
                duration_ms(epoch.elapsed()) < until_ms.load(Ordering::SeqCst)
            }
        }
    }

    /// Records held now (approximately: evictions are applied lazily).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A slot's counter; a panic elsewhere while holding it leaves a count that is still right.
fn lock(slot: &Mutex<u64>) -> MutexGuard<'_, u64> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn slot(uuid: Uuid) -> usize {
    (uuid.as_u128() % SLOTS as u128) as usize
}

fn decode32(hex_text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
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
        let cache = LookupCache::new(
            Liveness {
                clock: clock.clone().into(),
                ttl: Duration::from_secs(60),
            },
            16,
            false,
        );
        let mut fresh = record("192.0.2.1:4000", "2026-11-24T11:00:00.000Z");
        fresh.last_seen = Some(format_ms(clock.now_ms() - 1_000));
        cache.fill(cache.ticket(fresh.uuid), &fresh);
        let (found, remaining) = cache.lookup(fresh.uuid).unwrap();
        assert_eq!(found, fresh);
        assert_eq!(remaining, 59.0);
        clock.advance(Duration::from_millis(58_750));
        assert_eq!(cache.lookup(fresh.uuid).unwrap().1, 0.25);
        clock.advance(Duration::from_millis(250));
        assert!(cache.lookup(fresh.uuid).is_none(), "expired");
    }

    fn cache(replicated: bool) -> LookupCache {
        let liveness = Liveness {
            clock: ManualClock::starting_now().into(),
            ttl: Duration::from_secs(60),
        };
        LookupCache::new(liveness, 16, replicated)
    }

    fn live(n: u128) -> PeerRecord {
        let mut fresh = record("192.0.2.1:4000", "2026-11-24T11:00:00.000Z");
        fresh.uuid = Uuid::from_u128(n);
        fresh.last_seen = Some(format_ms(crate::db::Clock::System.now_ms()));
        fresh
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let cache = cache(false);
        let old = live(1);
        let ticket = cache.ticket(old.uuid);
        // A change to the record is applied while the lookup read the old row…
        cache.forget(old.uuid);
        cache.fill(ticket, &old);
        assert!(cache.lookup(old.uuid).is_none(), "the old row was kept");
        // …while a read with no change meanwhile is.
        cache.fill(cache.ticket(old.uuid), &old);
        assert_eq!(cache.lookup(old.uuid).unwrap().0, old);
        cache.clear();
        assert!(cache.lookup(old.uuid).is_none(), "cleared");
    }

    #[test]
    fn a_replica_answers_only_while_it_hears_its_announcements() {
        let cache = cache(true);
        let fresh = live(2);
        cache.fill(cache.ticket(fresh.uuid), &fresh);
        assert!(
            cache.lookup(fresh.uuid).is_none(),
            "not coherent: neither kept nor served"
        );
        cache.heard(Instant::now());
        cache.fill(cache.ticket(fresh.uuid), &fresh);
        assert_eq!(cache.lookup(fresh.uuid).unwrap().0, fresh);
        // Announcements stop: the cache stops answering once the window has passed.
        std::thread::sleep(COHERENCE_WINDOW);
        assert!(!cache.coherent(), "the window passed without a word");
        assert!(cache.lookup(fresh.uuid).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = cache(false);
        for n in 0..1000 {
            let record = live(n);
            cache.fill(cache.ticket(record.uuid), &record);
        }
        cache.entries.run_pending_tasks();
        assert!(cache.len() <= 16, "{} entries", cache.len());
    }
}
