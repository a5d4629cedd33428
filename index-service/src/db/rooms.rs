//! Room membership: which live records are in which room.
//!
//! A membership belongs to its peer record: `ON DELETE CASCADE` removes it with the record
//! (deleted by its owner or purged after expiring), and reads only count members whose record
//! is live, so a member vanishes from its rooms the moment its TTL runs out. The writer applies
//! [`join`] and [`leave`]; handlers read with [`members`] and [`list`].

use proto::api::RoomSummary;
use sqlx::AnyConnection;
use sqlx::AnyPool;

use super::clock::Now;
use super::peers::{Owner, StoredPeer, StoredRow};

/// Whether `uuid` is a live record owned by `owner`.
pub(super) async fn owned_live(
    tx: &mut AnyConnection,
    uuid: &str,
    owner: &Owner,
    now: &Now,
) -> sqlx::Result<bool> {
    let (key, token) = owner.columns();
    let live: i64 = sqlx::query_scalar(
        "SELECT CAST(EXISTS (SELECT 1 FROM peers
         WHERE uuid = $1 AND public_key IS NOT DISTINCT FROM $2
           AND token_hash IS NOT DISTINCT FROM $3 AND last_seen >= $4) AS INTEGER)",
    )
    .bind(uuid)
    .bind(key)
    .bind(token)
    .bind(&now.live_since)
    .fetch_one(&mut *tx)
    .await?;
    Ok(live != 0)
}

/// Adds `uuid` to `room` (a second join changes nothing); `false` when `uuid` is not a live
/// record of `owner` any more.
pub(crate) async fn join(
    tx: &mut AnyConnection,
    room: &str,
    uuid: &str,
    owner: &Owner,
    now: &Now,
) -> sqlx::Result<bool> {
    if !owned_live(tx, uuid, owner, now).await? {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO room_members (room, uuid, joined_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(room)
    .bind(uuid)
    .bind(&now.text)
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

/// Removes `uuid` from `room` (leaving a room one is not in changes nothing); `false` when
/// `uuid` is not a live record of `owner` any more.
pub(crate) async fn leave(
    tx: &mut AnyConnection,
    room: &str,
    uuid: &str,
    owner: &Owner,
    now: &Now,
) -> sqlx::Result<bool> {
    if !owned_live(tx, uuid, owner, now).await? {
        return Ok(false);
    }
    sqlx::query("DELETE FROM room_members WHERE room = $1 AND uuid = $2")
        .bind(room)
        .bind(uuid)
        .execute(&mut *tx)
        .await?;
    Ok(true)
}

/// Drops the memberships of `uuid` if its record expired and is not purged yet: a keyed record
/// registering again after expiring comes back as a new record, in no room.
pub(crate) async fn forget_if_expired(
    tx: &mut AnyConnection,
    uuid: &str,
    now: &Now,
) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM room_members WHERE uuid = $1 AND EXISTS
            (SELECT 1 FROM peers WHERE uuid = $1 AND last_seen < $2)",
    )
    .bind(uuid)
    .bind(&now.live_since)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The live members of `room`, in the order they joined.
pub async fn members(pool: &AnyPool, room: &str, now: &Now) -> sqlx::Result<Vec<StoredPeer>> {
    let rows = sqlx::query_as::<_, StoredRow>(
        "SELECT uuid, addr, name, public_key, registered_at, last_seen, candidates, token_hash
         FROM room_members JOIN peers USING (uuid)
         WHERE room = $1 AND last_seen >= $2 ORDER BY joined_at, uuid",
    )
    .bind(room)
    .bind(&now.live_since)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|row| row.into_peer(now)).collect())
}

/// Every room with at least one live member, by name, with its number of live members.
pub async fn list(pool: &AnyPool, now: &Now) -> sqlx::Result<Vec<RoomSummary>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT room, count(*) FROM room_members JOIN peers USING (uuid)
         WHERE last_seen >= $1 GROUP BY room ORDER BY room",
    )
    .bind(&now.live_since)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(room, members)| RoomSummary {
            room,
            members: usize::try_from(members).unwrap_or(0),
        })
        .collect())
}
