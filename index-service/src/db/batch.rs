//! Many plain keyless registrations in one statement.
//!
//! Each statement the writer runs is a round trip to the connection's worker thread, and on a
//! busy machine every round trip waits for the scheduler; a group of 64 registrations as 64
//! `INSERT`s pays that 64 times. A run of keyless registrations (which never carry a name)
//! that [`super::quota::batch_fits`] lets through whole is therefore written as one multi-row
//! `INSERT … RETURNING`. Runs
//! are cut into chunks of [`CHUNKS`] rows so only a few statement shapes are ever prepared.

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::change::{Done, InsertKeyless, Op};
use super::clock::Now;
use super::peers::RecordRow;

/// Chunk sizes, largest first; runs shorter than the smallest go one by one.
const CHUNKS: [usize; 3] = [64, 16, 4];

/// The keyless registrations at the head of `ops`, as many as the largest chunk they fill;
/// empty when they fill none.
pub(super) fn leading_chunk<'a>(ops: impl Iterator<Item = &'a Op>) -> Vec<&'a InsertKeyless> {
    let mut run: Vec<&InsertKeyless> = ops
        .map_while(|op| match op {
            Op::InsertKeyless(op) => Some(op),
            _ => None,
        })
        .take(CHUNKS[0])
        .collect();
    let size = CHUNKS.into_iter().find(|&size| size <= run.len());
    run.truncate(size.unwrap_or(0));
    run
}

/// Inserts `ops` (a [`leading_chunk`]) and returns their records in the same order.
pub(super) async fn insert_keyless(
    tx: &mut AnyConnection,
    ops: &[&InsertKeyless],
    now: &Now,
) -> sqlx::Result<Vec<Done>> {
    // Numbered parameters (`$1`, `$2`, …), which both databases read; `?` is SQLite's only.
    const COLUMNS: usize = 7;
    let mut sql = String::from(
        "INSERT INTO peers (uuid, addr, registered_at, last_seen, token_hash, ip, subnet) VALUES ",
    );
    for row in 0..ops.len() {
        let first = row * COLUMNS + 1;
        let params: Vec<String> = (first..first + COLUMNS).map(|n| format!("${n}")).collect();
        let separator = if row == 0 { "" } else { ", " };
        sql.push_str(&format!("{separator}({})", params.join(", ")));
    }
    sql.push_str(" RETURNING uuid, addr, name, public_key, registered_at, last_seen, candidates");
    let mut insert = sqlx::query_as::<_, RecordRow>(sqlx::AssertSqlSafe(sql));
    for op in ops {
        insert = insert
            .bind(op.uuid.to_string())
            .bind(op.addr.as_str())
            .bind(now.text.as_str())
            .bind(now.text.as_str())
            .bind(op.token_hash.as_str())
            .bind(op.origin.ip.as_str())
            .bind(op.origin.subnet.as_str());
    }
    // RETURNING promises no order: match the rows to the operations by UUID.
    let mut records: HashMap<_, _> = insert
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.uuid, row))
        .collect();
    ops.iter()
        .map(|op| {
            records
                .remove(&op.uuid)
                .map(|row| Done::Record(row.into()))
                .ok_or_else(|| sqlx::Error::Protocol(format!("no row returned for {}", op.uuid)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::change::Purge;
    use crate::db::quota::Origin;

    fn keyless(n: u128) -> Op {
        Op::InsertKeyless(InsertKeyless {
            uuid: uuid::Uuid::from_u128(n),
            addr: "192.0.2.1:4000".into(),
            origin: Origin::of("192.0.2.1".parse().unwrap()),
            token_hash: String::new(),
        })
    }

    #[test]
    fn a_chunk_is_the_largest_that_the_leading_keyless_registrations_fill() {
        for (leading, chunk) in [
            (0, 0),
            (3, 0),
            (4, 4),
            (15, 4),
            (16, 16),
            (63, 16),
            (100, 64),
        ] {
            let mut ops: Vec<Op> = (0..leading).map(keyless).collect();
            ops.push(Op::Purge(Purge { limit: 1 }));
            ops.extend((0..10).map(keyless));
            assert_eq!(leading_chunk(ops.iter()).len(), chunk, "{leading}");
        }
    }
}
