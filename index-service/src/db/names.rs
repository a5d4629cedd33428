//! Display names are unique among live records, ignoring ASCII case (SQLite's `NOCASE`, the
//! collation of the `peers_name` unique index): `alice` and `Alice` are one name.
//!
//! The writer claims a name inside its transaction with [`free_for`] before storing it; the
//! unique index is the backstop, and a write it refuses is a conflict too
//! ([`is_name_conflict`]), never a server error.

use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;

use super::{StoredPeer, sql_cutoff, stored_columns, stored_from_row, ttl_modifier};

/// Looks up the live record called `name` (any case).
pub async fn find_peer_by_name(
    pool: &SqlitePool,
    name: &str,
    ttl: Duration,
) -> sqlx::Result<Option<StoredPeer>> {
    sqlx::query(concat!(
        "SELECT ",
        stored_columns!(),
        " FROM peers WHERE name = ?1 COLLATE NOCASE AND last_seen >= ",
        sql_cutoff!("?2")
    ))
    .bind(name)
    .bind(ttl_modifier(ttl))
    .fetch_optional(pool)
    .await?
    .map(|row| stored_from_row(&row))
    .transpose()
}

/// Whether record `uuid` may take `name`: no other live record holds it. Expired records
/// holding it lose it first, so a name is free again as soon as its holder's TTL ran out,
/// before the purge removes the record. `ttl_mod` is [`ttl_modifier`]'s text.
pub(crate) async fn free_for(
    tx: &mut SqliteConnection,
    name: &str,
    uuid: &str,
    ttl_mod: &str,
) -> sqlx::Result<bool> {
    sqlx::query(concat!(
        "UPDATE peers SET name = NULL
         WHERE name = ?1 COLLATE NOCASE AND uuid <> ?2 AND last_seen < ",
        sql_cutoff!("?3")
    ))
    .bind(name)
    .bind(uuid)
    .bind(ttl_mod)
    .execute(&mut *tx)
    .await?;
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM peers WHERE name = ?1 COLLATE NOCASE AND uuid <> ?2)",
    )
    .bind(name)
    .bind(uuid)
    .fetch_one(&mut *tx)
    .await?;
    Ok(!taken)
}

/// Whether `error` is the unique name index refusing a write.
pub fn is_name_conflict(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation() && e.message().contains("peers.name"))
}
