//! Display names are unique among live records by their key (`name_key`, see
//! [`crate::naming`]): `alice`, `ALICE`, `аlice` with a Cyrillic `а` and `ａｌｉｃｅ` are one
//! name. The `peers_name_key` unique index holds the keys.
//!
//! The writer claims a name inside its transaction with [`free_for`] before storing it; the
//! unique index is the backstop, and a write it refuses is a conflict too
//! ([`is_name_conflict`]), never a server error.

use sqlx::AnyConnection;
use sqlx::AnyPool;

use super::clock::Now;
use super::peers::{StoredPeer, StoredRow};

/// Looks up the live record whose name has the key `key`.
pub async fn find_peer_by_name(
    pool: &AnyPool,
    key: &str,
    now: &Now,
) -> sqlx::Result<Option<StoredPeer>> {
    let row = sqlx::query_as::<_, StoredRow>(
        "SELECT uuid, addr, name, public_key, registered_at, last_seen, candidates, token_hash
         FROM peers WHERE name_key = $1 AND last_seen >= $2",
    )
    .bind(key)
    .bind(&now.live_since)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| row.into_peer(now)))
}

/// Whether record `uuid` may take the name whose key is `key`: no other live record holds it.
/// Expired records holding it lose it first, so a name is free again as soon as its holder's TTL ran out,
/// before the purge removes the record.
pub(crate) async fn free_for(
    tx: &mut AnyConnection,
    key: &str,
    uuid: &str,
    now: &Now,
) -> sqlx::Result<bool> {
    sqlx::query(
        "UPDATE peers SET name = NULL, name_key = NULL
         WHERE name_key = $1 AND uuid <> $2 AND last_seen < $3",
    )
    .bind(key)
    .bind(uuid)
    .bind(&now.live_since)
    .execute(&mut *tx)
    .await?;
    let taken: i64 = sqlx::query_scalar(
        "SELECT CAST(EXISTS (SELECT 1 FROM peers WHERE name_key = $1 AND uuid <> $2) AS INTEGER)",
    )
    .bind(key)
    .bind(uuid)
    .fetch_one(&mut *tx)
    .await?;
    Ok(taken == 0)
}

/// Whether `error` is the unique name index refusing a write.
pub fn is_name_conflict(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        // SQLite names the column, PostgreSQL the index.
        e.is_unique_violation()
            && (e.message().contains("peers.name_key") || e.message().contains("peers_name_key"))
    })
}
