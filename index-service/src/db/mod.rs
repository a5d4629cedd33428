//! The store, on SQLite or PostgreSQL ([`backend`]: connection settings that make acknowledged
//! writes durable, the embedded migrations), the start-up [`backfill`] of what migrations
//! cannot compute, the records and their read queries ([`peers`]), and the writer that commits
//! changes in groups.
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
pub mod backend;
pub mod backfill;
mod batch;
pub mod cache;
mod change;
pub mod clock;
pub mod coherence;
mod commit;
pub mod health;
pub mod mailbox;
pub mod names;
mod peers;
pub mod quota;
pub mod rooms;
pub mod writer;

use sqlx::AnyPool;

pub use backend::Backend;
pub use change::{UsedSignature, WriteError};
pub use clock::{Clock, Liveness, ManualClock, Now};
pub use health::check_writable;
pub use peers::{Owner, StoredPeer, count_live, find_peer};
pub use writer::Writer;

/// Opens a pool of `size` connections to `url` (creating a SQLite file if missing), brings the
/// schema up to date and fills in what migrations cannot compute.
pub async fn connect(backend: Backend, url: &str, size: u32) -> anyhow::Result<AnyPool> {
    let pool = backend.pool(url, size).await?;
    backend.migrate(&pool).await?;
    let backfilled = backfill::run(&pool, backend).await?;
    if backfilled != backfill::Backfilled::default() {
        tracing::info!(?backfilled, "filled in record origins and name keys");
    }
    Ok(pool)
}
