//! Many plain keyless registrations in one statement.
//!
//! Each statement the writer runs is a round trip to the connection's worker thread, and on a
//! busy machine every round trip waits for the scheduler; a group of 64 registrations as 64
//! `INSERT`s pays that 64 times. A run of keyless registrations (which never carry a name)
//! that [`super::quota::batch_fits`] lets through whole is therefore written as one multi-row
//! `INSERT … RETURNING`. Runs
//! are cut into chunks of [`CHUNKS`] rows so only a few statement shapes are ever prepared.

use std::collections::HashMap;

use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::ops::{Done, Op};
use super::{Now, record_columns, record_from_row};

/// Chunk sizes, largest first; runs shorter than the smallest go one by one.
pub(super) const CHUNKS: [usize; 3] = [64, 16, 4];

/// Whether `op` can go into a multi-row insert.
pub(super) fn batchable(op: &Op) -> bool {
    matches!(op, Op::InsertKeyless { .. })
}

/// Inserts `ops` (all [`batchable`], `ops.len()` one of [`CHUNKS`]) and returns their
/// records in the same order.
pub(super) async fn insert_keyless(
    tx: &mut SqliteConnection,
    ops: &[&Op],
    now: &Now,
) -> sqlx::Result<Vec<Done>> {
    let row = "(?, ?, ?, ?, ?, ?, ?)";
    let sql = format!(
        "INSERT INTO peers (uuid, addr, registered_at, last_seen, token_hash, ip, subnet) \
         VALUES {} \
         RETURNING uuid, {}",
        vec![row; ops.len()].join(", "),
        record_columns!()
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for op in ops {
        let Op::InsertKeyless {
            uuid,
            addr,
            origin,
            token_hash,
        } = op
        else {
            unreachable!("only batchable operations are batched");
        };
        query = query
            .bind(uuid.to_string())
            .bind(addr)
            .bind(&now.text)
            .bind(&now.text)
            .bind(token_hash)
            .bind(&origin.ip)
            .bind(&origin.subnet);
    }
    let mut records = HashMap::with_capacity(ops.len());
    for row in query.fetch_all(&mut *tx).await? {
        let raw: String = row.try_get("uuid")?;
        let uuid = Uuid::parse_str(&raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        records.insert(uuid, record_from_row(uuid, &row)?);
    }
    ops.iter()
        .map(|op| {
            let Op::InsertKeyless { uuid, .. } = op else {
                unreachable!("only batchable operations are batched");
            };
            records
                .remove(uuid)
                .map(Done::Record)
                .ok_or_else(|| sqlx::Error::Protocol(format!("no row returned for {uuid}")))
        })
        .collect()
}
