//! Many plain keyless registrations in one statement.
//!
//! Each statement the writer runs is a round trip to the connection's worker thread, and on a
//! busy machine every round trip waits for the scheduler; a group of 64 registrations as 64
//! `INSERT`s pays that 64 times. A run of keyless registrations (which never carry a name)
//! that [`super::quota::batch_fits`] lets through whole is therefore written as one multi-row
//! `INSERT … RETURNING`. Runs
//! are cut into chunks of [`CHUNKS`] rows so only a few statement shapes are ever prepared.

use std::collections::HashMap;

use sqlx::QueryBuilder;
use sqlx::sqlite::{Sqlite, SqliteConnection};

use super::ops::{Done, Op};
use super::{Now, RecordRow};

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
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO peers (uuid, addr, registered_at, last_seen, token_hash, ip, subnet) ",
    );
    insert.push_values(ops, |mut row, op| {
        let Op::InsertKeyless {
            uuid,
            addr,
            origin,
            token_hash,
        } = op
        else {
            unreachable!("only batchable operations are batched");
        };
        row.push_bind(uuid.to_string())
            .push_bind(addr.as_str())
            .push_bind(now.text.as_str())
            .push_bind(now.text.as_str())
            .push_bind(token_hash.as_str())
            .push_bind(origin.ip.as_str())
            .push_bind(origin.subnet.as_str());
    });
    insert.push(" RETURNING uuid, addr, name, public_key, registered_at, last_seen");
    // RETURNING promises no order: match the rows to the operations by UUID.
    let mut records: HashMap<_, _> = insert
        .build_query_as::<RecordRow>()
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.uuid, row))
        .collect();
    ops.iter()
        .map(|op| {
            let Op::InsertKeyless { uuid, .. } = op else {
                unreachable!("only batchable operations are batched");
            };
            records
                .remove(uuid)
                .map(|row| Done::Record(row.into()))
                .ok_or_else(|| sqlx::Error::Protocol(format!("no row returned for {uuid}")))
        })
        .collect()
}
