//! Start-up repairs of what SQL migrations cannot compute: the origin (`ip`, `subnet`) of
//! rows stored before quotas existed, and the name keys ([`crate::naming`]) of named rows
//! stored before keys existed (or written by another tool).
//!
//! Runs once after the migrations, before the writer starts, in one transaction.

use std::net::SocketAddr;

use sqlx::{AnyConnection, AnyPool};

use super::backend::Backend;

use super::quota::Origin;
use crate::naming;

/// SQLite: the origin of every row from before quotas with an IPv4 address, in one statement.
const ORIGINS_IPV4: &str = "UPDATE peers SET ip = substr(addr, 1, instr(addr, ':') - 1),
        subnet = rtrim(substr(addr, 1, instr(addr, ':') - 1), '0123456789') || '0/24'
    WHERE subnet IS NULL AND ip IS NULL AND addr NOT LIKE '[%' AND addr LIKE '%.%.%.%:%'";
/// The rows still without an origin.
const WITHOUT_ORIGIN: &str = "SELECT uuid, addr FROM peers WHERE subnet IS NULL AND ip IS NULL";
/// The named rows without a name key.
const WITHOUT_KEY: &str =
    "SELECT uuid, name, last_seen FROM peers WHERE name IS NOT NULL AND name_key IS NULL";
/// Every query [`run`] reads the table with, for tests that check each one reads an index.
pub const QUERIES: [&str; 3] = [ORIGINS_IPV4, WITHOUT_ORIGIN, WITHOUT_KEY];

/// What [`run`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backfilled {
    /// Rows that got their `ip` and `subnet`.
    pub origins: u64,
    /// Named rows that got their key.
    pub keys: u64,
    /// Named rows that lost their name: not acceptable any more, or a look-alike of a name a
    /// more recently seen record holds.
    pub dropped_names: u64,
}

/// Fills in missing origins and name keys. Both are found through indexes (`peers_origin`
/// leads with `subnet`; `peers_unkeyed_names` holds only named rows without a key), so when
/// there is nothing to fill in, this takes the same time whatever the number of records.
pub async fn run(pool: &AnyPool, backend: Backend) -> sqlx::Result<Backfilled> {
    let mut connection = pool.acquire().await?;
    backend.begin_write(&mut connection).await?;
    let done = fill_in(&mut connection, backend).await;
    match done {
        Ok(done) => {
            sqlx::query("COMMIT").execute(&mut *connection).await?;
            Ok(done)
        }
        Err(error) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
            Err(error)
        }
    }
}

async fn fill_in(tx: &mut AnyConnection, backend: Backend) -> sqlx::Result<Backfilled> {
    let mut done = Backfilled::default();
    // IPv4 addresses (`a.b.c.d:port`, as the index writes them) in one statement, so a
    // SQLite database of a million rows from before quotas is not updated row by row.
    // PostgreSQL databases were created with origins (the rows below are the rest).
    if backend == Backend::Sqlite {
        done.origins += sqlx::query(ORIGINS_IPV4)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    let rows: Vec<(String, String)> = sqlx::query_as(WITHOUT_ORIGIN).fetch_all(&mut *tx).await?;
    for (uuid, addr) in rows {
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            tracing::warn!(peer = %uuid, %addr, "stored address is not ip:port; quotas will not count it");
            continue;
        };
        let origin = Origin::of(addr.ip());
        sqlx::query("UPDATE peers SET ip = $2, subnet = $3 WHERE uuid = $1")
            .bind(&uuid)
            .bind(&origin.ip)
            .bind(&origin.subnet)
            .execute(&mut *tx)
            .await?;
        done.origins += 1;
    }
    // The most recently seen holder of a name keeps it, as when names became unique. Sorted
    // here, not by the query: with `ORDER BY last_seen` SQLite walks every row in `last_seen`
    // order instead of reading the (usually empty) partial index.
    let mut rows: Vec<(String, String, String)> =
        sqlx::query_as(WITHOUT_KEY).fetch_all(&mut *tx).await?;
    rows.sort_by(|a, b| (&b.2, &b.0).cmp(&(&a.2, &a.0)));
    for (uuid, name, _) in rows {
        let key = match naming::check(&name) {
            Ok(checked) => Some(checked.key),
            Err(error) => {
                tracing::warn!(peer = %uuid, ?name, %error, "dropping a name the index no longer accepts");
                None
            }
        };
        let taken = match &key {
            Some(key) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT CAST(EXISTS (SELECT 1 FROM peers WHERE name_key = $1) AS INTEGER)",
                )
                .bind(key)
                .fetch_one(&mut *tx)
                .await?
                    != 0
            }
            None => false,
        };
        if key.is_some() && !taken {
            sqlx::query("UPDATE peers SET name_key = $2 WHERE uuid = $1")
                .bind(&uuid)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            done.keys += 1;
        } else {
            if taken {
                tracing::warn!(peer = %uuid, ?name, "dropping a name that looks like one a more recent record holds");
            }
            sqlx::query("UPDATE peers SET name = NULL WHERE uuid = $1")
                .bind(&uuid)
                .execute(&mut *tx)
                .await?;
            done.dropped_names += 1;
        }
    }
    Ok(done)
}
