//! What each change does to the database: one function per operation of [`Op`], run by
//! [`apply`] inside the writer's open transaction. Names and rooms have their steps in
//! [`super::names`] and [`super::rooms`]; quotas in [`super::quota`].
//!
//! Every function answers `sqlx::Result<Result<Done, WriteError>>`: the outer `Err` is a
//! database failure (the writer rolls the group back), the inner one a refusal, committed with
//! the rest of the group.

use sqlx::AnyConnection;

use super::change::{
    Delete, Done, Heartbeat, InsertKeyless, Membership, Op, Purge, Update, UpsertKeyed,
    UsedSignature, Vouch, WriteError,
};
use super::clock::Now;
use super::peers::RecordRow;
use super::quota::{self, NewRow, Origin, Quotas};
use super::{mailbox, names, rooms};
use crate::naming::Name;

/// What applying one change gives.
type Outcome = sqlx::Result<Result<Done, WriteError>>;

/// Applies `op` in the open transaction `tx` at the time `now`: a signed change first spends
/// its signature (a replay goes no further), then the operation's own function runs.
pub(super) async fn apply(tx: &mut AnyConnection, op: &Op, now: &Now, quotas: &Quotas) -> Outcome {
    if let Some(signature) = op.signature()
        && !spend(tx, signature).await?
    {
        return Ok(Err(WriteError::Replay));
    }
    match op {
        Op::InsertKeyless(op) => insert_keyless(tx, op, now, quotas).await,
        Op::UpsertKeyed(op) => upsert_keyed(tx, op, now, quotas).await,
        Op::Update(op) => update(tx, op, now, quotas).await,
        Op::Heartbeat(op) => heartbeat(tx, op, now).await,
        Op::Delete(op) => delete(tx, op, now).await,
        Op::Membership(op) => membership(tx, op, now).await,
        Op::Purge(op) => purge(tx, op, now).await,
        Op::Deposit(op) => mailbox::deposit(tx, op, now, &quotas.mailbox).await,
        Op::Vouch(op) => vouch(tx, op, now).await,
        Op::Take(op) => mailbox::take(tx, op, now).await,
        Op::Block(op) => mailbox::block(tx, op, now).await,
        Op::PurgeMail(limit) => Ok(Ok(Done::Purged(mailbox::purge(tx, *limit, now).await?))),
    }
}

/// Records `signature` as used; false if it was used before.
async fn spend(tx: &mut AnyConnection, signature: &UsedSignature) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO used_signatures (signature_hash, expires_at) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(&signature.hash)
    .bind(signature.expires_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Why a registration of record `uuid` from `origin` (carrying `name`) may not be written: a
/// quota it would pass, or a name another live record holds. `None` lets it through.
async fn refusal(
    tx: &mut AnyConnection,
    quotas: &Quotas,
    now: &Now,
    uuid: &str,
    origin: &Origin,
    name: Option<&Name>,
    new_row: NewRow,
) -> sqlx::Result<Option<WriteError>> {
    let fits = quota::check(tx, quotas, origin, uuid, name.is_some(), new_row, now).await?;
    if let Err(exceeded) = fits {
        return Ok(Some(WriteError::Quota(exceeded)));
    }
    if let Some(name) = name
        && !names::free_for(tx, &name.key, uuid, now).await?
    {
        return Ok(Some(WriteError::NameTaken));
    }
    Ok(None)
}

/// The answer of a change that returns the record: [`WriteError::Gone`] when no row matched.
fn record(row: Option<RecordRow>) -> Result<Done, WriteError> {
    row.map(|row| Done::Record(row.into()))
        .ok_or(WriteError::Gone)
}

/// The answer of a change that returns nothing: [`WriteError::Gone`] when it found no record.
fn changed(done: bool) -> Result<Done, WriteError> {
    if done {
        Ok(Done::Changed)
    } else {
        Err(WriteError::Gone)
    }
}

async fn insert_keyless(
    tx: &mut AnyConnection,
    op: &InsertKeyless,
    now: &Now,
    quotas: &Quotas,
) -> Outcome {
    let uuid = op.uuid.to_string();
    if let Some(refused) = refusal(tx, quotas, now, &uuid, &op.origin, None, NewRow::Yes).await? {
        return Ok(Err(refused));
    }
    let row = sqlx::query_as::<_, RecordRow>(
        "INSERT INTO peers (uuid, addr, registered_at, last_seen, token_hash, ip, subnet)
         VALUES ($1, $2, $6, $6, $3, $4, $5)
         RETURNING uuid, addr, name, public_key, registered_at, last_seen, candidates",
    )
    .bind(uuid)
    .bind(&op.addr)
    .bind(&op.token_hash)
    .bind(&op.origin.ip)
    .bind(&op.origin.subnet)
    .bind(&now.text)
    .fetch_one(&mut *tx)
    .await?;
    Ok(record(Some(row)))
}

/// Creates the record of `op.public_key`, or refreshes it; one that had expired (but was not
/// purged yet) comes back as new: a fresh `registered_at`, and in no room.
async fn upsert_keyed(
    tx: &mut AnyConnection,
    op: &UpsertKeyed,
    now: &Now,
    quotas: &Quotas,
) -> Outcome {
    let uuid = op.uuid.to_string();
    let name = op.name.as_ref();
    let new_row = NewRow::UnlessStored;
    if let Some(refused) = refusal(tx, quotas, now, &uuid, &op.origin, name, new_row).await? {
        return Ok(Err(refused));
    }
    rooms::forget_if_expired(tx, &uuid, now).await?;
    let row = sqlx::query_as::<_, RecordRow>(
        "INSERT INTO peers
            (uuid, addr, name, registered_at, last_seen, public_key, name_key, ip, subnet,
             candidates)
         VALUES ($1, $2, $3, $9, $9, $4, $6, $7, $8, $10)
         ON CONFLICT (uuid) DO UPDATE SET
            addr = excluded.addr,
            name = excluded.name,
            candidates = excluded.candidates,
            name_key = excluded.name_key,
            ip = excluded.ip,
            subnet = excluded.subnet,
            last_seen = excluded.last_seen,
            registered_at = CASE WHEN peers.last_seen < $5
                THEN excluded.registered_at ELSE peers.registered_at END
         WHERE peers.public_key IS NOT DISTINCT FROM excluded.public_key
         RETURNING uuid, addr, name, public_key, registered_at, last_seen, candidates",
    )
    .bind(uuid)
    .bind(&op.addr)
    .bind(name.map(|n| &n.display))
    .bind(&op.public_key)
    .bind(&now.live_since)
    .bind(name.map(|n| &n.key))
    .bind(&op.origin.ip)
    .bind(&op.origin.subnet)
    .bind(&now.text)
    .bind(crate::candidates::encode(&op.candidates))
    .fetch_optional(&mut *tx)
    .await?;
    Ok(record(row))
}

async fn update(tx: &mut AnyConnection, op: &Update, now: &Now, quotas: &Quotas) -> Outcome {
    let uuid = op.uuid.to_string();
    let name = op.name.as_ref();
    if let Some(refused) = refusal(tx, quotas, now, &uuid, &op.origin, name, NewRow::No).await? {
        return Ok(Err(refused));
    }
    let (key, token) = op.owner.columns();
    let row = sqlx::query_as::<_, RecordRow>(
        "UPDATE peers SET addr = $2, name = $3, name_key = $7, ip = $8, subnet = $9,
                          last_seen = $10
         WHERE uuid = $1 AND public_key IS NOT DISTINCT FROM $4 AND token_hash IS NOT DISTINCT FROM $5 AND last_seen >= $6
         RETURNING uuid, addr, name, public_key, registered_at, last_seen, candidates",
    )
    .bind(uuid)
    .bind(&op.addr)
    .bind(name.map(|n| &n.display))
    .bind(key)
    .bind(token)
    .bind(&now.live_since)
    .bind(name.map(|n| &n.key))
    .bind(&op.origin.ip)
    .bind(&op.origin.subnet)
    .bind(&now.text)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(record(row))
}

async fn heartbeat(tx: &mut AnyConnection, op: &Heartbeat, now: &Now) -> Outcome {
    let (key, token) = op.owner.columns();
    let row = sqlx::query_as::<_, RecordRow>(
        "UPDATE peers SET last_seen = $5
         WHERE uuid = $1 AND public_key IS NOT DISTINCT FROM $2 AND token_hash IS NOT DISTINCT FROM $3 AND last_seen >= $4
         RETURNING uuid, addr, name, public_key, registered_at, last_seen, candidates",
    )
    .bind(op.uuid.to_string())
    .bind(key)
    .bind(token)
    .bind(&now.live_since)
    .bind(&now.text)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(record(row))
}

async fn delete(tx: &mut AnyConnection, op: &Delete, now: &Now) -> Outcome {
    let (key, token) = op.owner.columns();
    let deleted = sqlx::query(
        "DELETE FROM peers
         WHERE uuid = $1 AND public_key IS NOT DISTINCT FROM $2 AND token_hash IS NOT DISTINCT FROM $3 AND last_seen >= $4",
    )
    .bind(op.uuid.to_string())
    .bind(key)
    .bind(token)
    .bind(&now.live_since)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(changed(deleted == 1))
}

async fn membership(tx: &mut AnyConnection, op: &Membership, now: &Now) -> Outcome {
    let uuid = op.uuid.to_string();
    let done = if op.join {
        rooms::join(tx, &op.room, &uuid, &op.owner, now).await?
    } else {
        rooms::leave(tx, &op.room, &uuid, &op.owner, now).await?
    };
    Ok(changed(done))
}

/// Nothing but the owner's signature, spent above, and the proof that the record is live.
async fn vouch(tx: &mut AnyConnection, op: &Vouch, now: &Now) -> Outcome {
    let live = rooms::owned_live(tx, &op.uuid.to_string(), &op.owner, now).await?;
    Ok(changed(live))
}

async fn purge(tx: &mut AnyConnection, op: &Purge, now: &Now) -> Outcome {
    let purged = sqlx::query(
        "DELETE FROM peers WHERE uuid IN
            (SELECT uuid FROM peers WHERE last_seen < $1 LIMIT $2)",
    )
    .bind(&now.live_since)
    .bind(i64::from(op.limit))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM used_signatures WHERE expires_at < $1")
        .bind(now.unix_secs())
        .execute(&mut *tx)
        .await?;
    Ok(Ok(Done::Purged(purged)))
}
