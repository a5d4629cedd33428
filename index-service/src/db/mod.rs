//! The SQLite store: connection settings that make acknowledged writes durable, the embedded
//! migrations (and the start-up [`backfill`] of what they cannot compute), the read queries,
//! and the single writer that commits changes in groups ([`writer`], applying the operations
//! of [`ops`] in [`commit`]'s transactions, and reporting whether the database can be written
//! through [`health`]); names ([`names`]), quotas ([`quota`]) and room membership ([`rooms`])
//! have their own modules.
//!
//! Liveness is computed, not stored: a record is live while `last_seen` is younger than the
//! TTL by the index's [`Clock`] ([`clock`]), so an expired record disappears from lookups at
//! once, before the purge removes it. Queries never read SQLite's own `'now'`: the time is a
//! bound parameter ([`Now`]), so one clock decides everywhere and tests can set it.

pub mod backfill;
mod batch;
pub mod cache;
pub mod clock;
mod commit;
pub mod health;
pub mod names;
mod ops;
pub mod quota;
pub mod rooms;
pub mod writer;

use std::str::FromStr;
use std::time::Duration;

use proto::api::PeerRecord;
use sqlx::SqlitePool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

pub use clock::{Clock, Liveness, ManualClock, Now};
pub use writer::{UsedSignature, WriteError, Writer};

/// The connection settings shared by the pool and the writer.
///
/// WAL lets lookups proceed while a registration commits; `synchronous = FULL` makes every
/// commit reach the disk (fsync of the WAL) before the transaction returns, so a 2xx is only
/// sent for a change that survives a crash or power loss.
pub fn connect_options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        // Statement journals and RETURNING's scratch tables are per-statement scratch space,
        // not data: keeping them in memory spares the writer a temp file per commit.
        .pragma("temp_store", "memory")
        // Checkpoint (copy the WAL into the database file, and fsync it) every ~40 MB of WAL
        // rather than every ~4 MB: the committing writer pays for it, and under a stream of
        // registrations the default made it checkpoint several times a second. Durability is
        // unaffected: a commit is durable once its WAL frames are synced.
        .pragma("wal_autocheckpoint", "10000"))
}

/// Opens (creating if missing) the database and brings its schema up to date.
pub async fn connect(url: &str) -> anyhow::Result<SqlitePool> {
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(connect_options(url)?)
        .await?;
    sqlx::migrate!("../migrations").run(&pool).await?;
    let backfilled = backfill::run(&pool).await?;
    if backfilled != backfill::Backfilled::default() {
        tracing::info!(?backfilled, "filled in record origins and name keys");
    }
    Ok(pool)
}

/// Proves the database takes writes with one real one (the header's `user_version`, rewritten
/// unchanged, one page): a read-only file, directory or file system, or a full disk, is found
/// at start-up rather than by the first client; while writes fail, the writer probes with it.
pub async fn check_writable(connection: &mut SqliteConnection) -> sqlx::Result<()> {
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *connection)
        .await?;
    let written = async {
        rewrite_header(connection).await?;
        sqlx::query("COMMIT").execute(&mut *connection).await
    }
    .await;
    if written.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
    }
    written.map(drop)
}

/// Rewrites the database header's `user_version` unchanged, in the open transaction: the
/// smallest real write (one page), for probing whether writes work.
async fn rewrite_header(connection: &mut SqliteConnection) -> sqlx::Result<()> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *connection)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA user_version = {version}"
    )))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

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
    /// The public record (`ttl_secs` and `token` unset).
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
/// registered_at, last_seen`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RecordRow {
    #[sqlx(try_from = "String")]
    pub(crate) uuid: Uuid,
    addr: String,
    name: Option<String>,
    public_key: Option<String>,
    registered_at: String,
    last_seen: String,
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
            token: None,
        }
    }
}

/// A whole record as the handlers need it: [`RecordRow`]'s columns, `token_hash`, and `age`
/// (seconds since `last_seen`, computed by the query).
#[derive(Debug, sqlx::FromRow)]
struct StoredRow {
    #[sqlx(flatten)]
    record: RecordRow,
    token_hash: Option<String>,
    age: f64,
}

impl From<StoredRow> for StoredPeer {
    fn from(row: StoredRow) -> StoredPeer {
        let record = PeerRecord::from(row.record);
        let owner = match (&record.public_key, row.token_hash) {
            (Some(key), _) => Owner::Key(key.clone()),
            (None, Some(hash)) => Owner::Token(hash),
            (None, None) => Owner::Nobody,
        };
        StoredPeer {
            record,
            owner,
            age_secs: row.age.max(0.0),
        }
    }
}

/// Looks a live peer up by UUID; an expired record is `None` even before it is purged.
pub async fn find_peer(
    pool: &SqlitePool,
    uuid: Uuid,
    now: &Now,
) -> sqlx::Result<Option<StoredPeer>> {
    let row = sqlx::query_as::<_, StoredRow>(
        "SELECT uuid, addr, name, public_key, registered_at, last_seen, token_hash,
                (julianday(?3) - julianday(last_seen)) * 86400.0 AS age
         FROM peers WHERE uuid = ?1 AND last_seen >= ?2",
    )
    .bind(uuid.to_string())
    .bind(&now.live_since)
    .bind(&now.text)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(StoredPeer::from))
}

/// How many records are live.
pub async fn count_live(pool: &SqlitePool, now: &Now) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM peers WHERE last_seen >= ?1")
        .bind(&now.live_since)
        .fetch_one(pool)
        .await
}
