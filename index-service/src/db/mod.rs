//! The SQLite store: connection settings that make acknowledged writes durable, the embedded
//! migrations (and the start-up [`backfill`] of what they cannot compute), the records and
//! their read queries ([`peers`]), and the single writer that commits changes in groups.
//!
//! The write path, each module depending only on those listed before it: the changes
//! themselves and their errors (`change`); the SQL of each operation (`apply`, and `batch` for
//! runs of keyless registrations); the in-memory copy the writer keeps current ([`cache`]); the
//! transaction loop (`commit`); and the queue handlers submit to ([`writer`]). Whether the
//! database can be written is [`health`]'s; names ([`names`]), quotas ([`quota`]), room
//! membership ([`rooms`]) and the offline mailbox ([`mailbox`]) have their own modules.
//!
//! Liveness is computed, not stored: a record is live while `last_seen` is younger than the
//! TTL by the index's [`Clock`] ([`clock`]), so an expired record disappears from lookups at
//! once, before the purge removes it. Queries never read SQLite's own `'now'`: the time is a
//! bound parameter ([`Now`]), so one clock decides everywhere and tests can set it.

mod apply;
pub mod backfill;
mod batch;
pub mod cache;
mod change;
pub mod clock;
mod commit;
pub mod health;
pub mod mailbox;
pub mod names;
mod peers;
pub mod quota;
pub mod rooms;
pub mod writer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use change::{UsedSignature, WriteError};
pub use clock::{Clock, Liveness, ManualClock, Now};
pub use health::check_writable;
pub use peers::{Owner, StoredPeer, count_live, find_peer};
pub use writer::Writer;

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
