//! Peer records as the handlers see them: who owns one ([`Owner`]), a live record with its
//! owner and age ([`StoredPeer`]), the rows queries return ([`RecordRow`], [`StoredRow`]),
//! and the reads by UUID ([`find_peer`]) and of the live count ([`count_live`]).

use std::time::Duration;

use proto::api::PeerRecord;
use sqlx::AnyPool;
use uuid::Uuid;

use super::clock::{Now, parse_ms};

/// Who may change a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A keyed record: whoever signs with this Ed25519 key (64 lowercase hex digits).
    Key(String),
    /// A keyless record: whoever presents the token with this SHA-256 (64 hex digits).
    Token(String),
    /// Registered before owners existed: nobody; the record can only expire.
    Nobody,
}

impl Owner {
    /// The `public_key` and `token_hash` columns for this owner.
    pub fn columns(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Owner::Key(key) => (Some(key), None),
            Owner::Token(hash) => (None, Some(hash)),
            Owner::Nobody => (None, None),
        }
    }
}

/// A live record with what the handlers need beyond the public fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPeer {
    /// The public record (TTL fields and `token` unset).
    pub record: PeerRecord,
    /// Who may change it.
    pub owner: Owner,
    /// Seconds since `last_seen`, at the time the record was read.
    pub age_secs: f64,
}

impl StoredPeer {
    /// Seconds the record stays live, given the TTL.
    pub fn remaining_secs(&self, ttl: Duration) -> f64 {
        (ttl.as_secs_f64() - self.age_secs).max(0.0)
    }
}

/// A record's public columns as queries return them (`uuid, addr, name, public_key,
/// registered_at, last_seen, candidates`).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RecordRow {
    #[sqlx(try_from = "String")]
    pub(super) uuid: Uuid,
    addr: String,
    name: Option<String>,
    public_key: Option<String>,
    registered_at: String,
    last_seen: String,
    candidates: Option<String>,
}

impl From<RecordRow> for PeerRecord {
    fn from(row: RecordRow) -> PeerRecord {
        PeerRecord {
            uuid: row.uuid,
            addr: row.addr,
            name: row.name,
            public_key: row.public_key,
            registered_at: row.registered_at,
            last_seen: Some(row.last_seen),
            ttl_secs: None,
            record_ttl_secs: None,
            cache_ttl_secs: None,
            token: None,
            candidates: crate::candidates::decode(row.candidates.as_deref()),
            ice_servers: Vec::new(),
        }
    }
}

/// A whole record as the handlers need it: [`RecordRow`]'s columns and `token_hash`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct StoredRow {
    #[sqlx(flatten)]
    record: RecordRow,
    token_hash: Option<String>,
}

impl StoredRow {
    /// The record with its owner, and its age at `now` (a `last_seen` that is not a stored
    /// time, written by another program, counts as expiring now).
    pub(super) fn into_peer(self, now: &Now) -> StoredPeer {
        let age_ms = parse_ms(&self.record.last_seen).map(|seen| now.ms.saturating_sub(seen));
        let record = PeerRecord::from(self.record);
        let owner = match (&record.public_key, self.token_hash) {
            (Some(key), _) => Owner::Key(key.clone()),
            (None, Some(hash)) => Owner::Token(hash),
            (None, None) => Owner::Nobody,
        };
        StoredPeer {
            record,
            owner,
            age_secs: age_ms.map_or(f64::INFINITY, |ms| ms.max(0) as f64 / 1000.0),
        }
    }
}

/// Looks a live peer up by UUID; an expired record is `None` even before it is purged.
pub async fn find_peer(pool: &AnyPool, uuid: Uuid, now: &Now) -> sqlx::Result<Option<StoredPeer>> {
    let row = sqlx::query_as::<_, StoredRow>(
        "SELECT uuid, addr, name, public_key, registered_at, last_seen, candidates, token_hash
         FROM peers WHERE uuid = $1 AND last_seen >= $2",
    )
    .bind(uuid.to_string())
    .bind(&now.live_since)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| row.into_peer(now)))
}

/// How many records are live.
pub async fn count_live(pool: &AnyPool, now: &Now) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM peers WHERE last_seen >= $1")
        .bind(&now.live_since)
        .fetch_one(pool)
        .await
}
