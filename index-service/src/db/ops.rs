//! What each change does to the database: the operations the [`super::Writer`] queues and the
//! SQL that [`apply`] runs for one of them inside the writer's transaction. Names and rooms
//! have their steps in [`super::names`] and [`super::rooms`].

use proto::api::PeerRecord;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::quota::{self, NewRow, Origin, Quotas};
use super::writer::{UsedSignature, WriteError};
use super::{Now, Owner, RecordRow, names, rooms};
use crate::naming::Name;

/// One change.
pub(super) enum Op {
    /// Keyless records have no name: a name needs a key.
    InsertKeyless {
        uuid: Uuid,
        addr: String,
        origin: Origin,
        token_hash: String,
    },
    UpsertKeyed {
        uuid: Uuid,
        addr: String,
        origin: Origin,
        name: Option<Name>,
        public_key: String,
        signature: UsedSignature,
    },
    Update {
        uuid: Uuid,
        owner: Owner,
        addr: String,
        origin: Origin,
        name: Option<Name>,
        signature: Option<UsedSignature>,
    },
    Heartbeat {
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    },
    Delete {
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    },
    /// Join (`true`) or leave `room`.
    Membership {
        room: String,
        join: bool,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    },
    Purge {
        limit: u32,
    },
}

/// What a change that went through answers.
pub(super) enum Done {
    Record(PeerRecord),
    Changed,
    Purged(u64),
}

/// Applies `op` in the open transaction `tx`. The outer `Err` is a database failure (the
/// writer rolls the group back); the inner one a refusal, committed with the rest of the group.
pub(super) async fn apply(
    tx: &mut SqliteConnection,
    op: &Op,
    now: &Now,
    quotas: &Quotas,
) -> sqlx::Result<Result<Done, WriteError>> {
    let signature = match op {
        Op::UpsertKeyed { signature, .. } => Some(signature),
        Op::Update { signature, .. }
        | Op::Heartbeat { signature, .. }
        | Op::Delete { signature, .. }
        | Op::Membership { signature, .. } => signature.as_ref(),
        _ => None,
    };
    if let Some(signature) = signature {
        let fresh = sqlx::query(
            "INSERT INTO used_signatures (signature_hash, expires_at) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
        )
        .bind(&signature.hash)
        .bind(signature.expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(Err(WriteError::Replay));
        }
    }
    let quota = match op {
        Op::InsertKeyless { uuid, origin, .. } => Some((uuid, origin, false, NewRow::Yes)),
        Op::UpsertKeyed {
            uuid, origin, name, ..
        } => Some((uuid, origin, name.is_some(), NewRow::UnlessStored)),
        Op::Update {
            uuid, origin, name, ..
        } => Some((uuid, origin, name.is_some(), NewRow::No)),
        _ => None,
    };
    if let Some((uuid, origin, named, new_row)) = quota
        && let Err(exceeded) =
            quota::check(tx, quotas, origin, &uuid.to_string(), named, new_row, now).await?
    {
        return Ok(Err(WriteError::Quota(exceeded)));
    }
    if let Op::UpsertKeyed {
        uuid,
        name: Some(name),
        ..
    }
    | Op::Update {
        uuid,
        name: Some(name),
        ..
    } = op
        && !names::free_for(tx, &name.key, &uuid.to_string(), now).await?
    {
        return Ok(Err(WriteError::NameTaken));
    }
    let row: Option<RecordRow> = match op {
        Op::InsertKeyless {
            uuid,
            addr,
            origin,
            token_hash,
        } => {
            let row = sqlx::query_as::<_, RecordRow>(
                "INSERT INTO peers (uuid, addr, registered_at, last_seen, token_hash, ip, subnet)
                 VALUES (?1, ?2, ?6, ?6, ?3, ?4, ?5)
                 RETURNING uuid, addr, name, public_key, registered_at, last_seen",
            )
            .bind(uuid.to_string())
            .bind(addr)
            .bind(token_hash)
            .bind(&origin.ip)
            .bind(&origin.subnet)
            .bind(&now.text)
            .fetch_one(&mut *tx)
            .await?;
            Some(row)
        }
        Op::UpsertKeyed {
            uuid,
            addr,
            origin,
            name,
            public_key,
            ..
        } => {
            rooms::forget_if_expired(tx, &uuid.to_string(), now).await?;
            sqlx::query_as::<_, RecordRow>(
                "INSERT INTO peers
                    (uuid, addr, name, registered_at, last_seen, public_key, name_key, ip, subnet)
             VALUES (?1, ?2, ?3, ?9, ?9, ?4, ?6, ?7, ?8)
             ON CONFLICT (uuid) DO UPDATE SET
                addr = excluded.addr,
                name = excluded.name,
                name_key = excluded.name_key,
                ip = excluded.ip,
                subnet = excluded.subnet,
                last_seen = excluded.last_seen,
                registered_at = CASE WHEN peers.last_seen < ?5
                    THEN excluded.registered_at ELSE peers.registered_at END
             WHERE peers.public_key IS excluded.public_key
             RETURNING uuid, addr, name, public_key, registered_at, last_seen",
            )
            .bind(uuid.to_string())
            .bind(addr)
            .bind(name.as_ref().map(|n| &n.display))
            .bind(public_key)
            .bind(&now.live_since)
            .bind(name.as_ref().map(|n| &n.key))
            .bind(&origin.ip)
            .bind(&origin.subnet)
            .bind(&now.text)
            .fetch_optional(&mut *tx)
            .await?
        }
        Op::Update {
            uuid,
            owner,
            addr,
            origin,
            name,
            ..
        } => {
            let (key, token) = owner.columns();
            sqlx::query_as::<_, RecordRow>(
                "UPDATE peers SET addr = ?2, name = ?3, name_key = ?7, ip = ?8, subnet = ?9,
                 last_seen = ?10
                 WHERE uuid = ?1 AND public_key IS ?4 AND token_hash IS ?5 AND last_seen >= ?6
                 RETURNING uuid, addr, name, public_key, registered_at, last_seen",
            )
            .bind(uuid.to_string())
            .bind(addr)
            .bind(name.as_ref().map(|n| &n.display))
            .bind(key)
            .bind(token)
            .bind(&now.live_since)
            .bind(name.as_ref().map(|n| &n.key))
            .bind(&origin.ip)
            .bind(&origin.subnet)
            .bind(&now.text)
            .fetch_optional(&mut *tx)
            .await?
        }
        Op::Heartbeat { uuid, owner, .. } => {
            let (key, token) = owner.columns();
            sqlx::query_as::<_, RecordRow>(
                "UPDATE peers SET last_seen = ?5
                 WHERE uuid = ?1 AND public_key IS ?2 AND token_hash IS ?3 AND last_seen >= ?4
                 RETURNING uuid, addr, name, public_key, registered_at, last_seen",
            )
            .bind(uuid.to_string())
            .bind(key)
            .bind(token)
            .bind(&now.live_since)
            .bind(&now.text)
            .fetch_optional(&mut *tx)
            .await?
        }
        Op::Delete { uuid, owner, .. } => {
            let (key, token) = owner.columns();
            let deleted = sqlx::query(
                "DELETE FROM peers
                 WHERE uuid = ?1 AND public_key IS ?2 AND token_hash IS ?3 AND last_seen >= ?4",
            )
            .bind(uuid.to_string())
            .bind(key)
            .bind(token)
            .bind(&now.live_since)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            return Ok(if deleted == 1 {
                Ok(Done::Changed)
            } else {
                Err(WriteError::Gone)
            });
        }
        Op::Membership {
            room,
            join,
            uuid,
            owner,
            ..
        } => {
            let uuid = uuid.to_string();
            let done = if *join {
                rooms::join(tx, room, &uuid, owner, now).await?
            } else {
                rooms::leave(tx, room, &uuid, owner, now).await?
            };
            return Ok(if done {
                Ok(Done::Changed)
            } else {
                Err(WriteError::Gone)
            });
        }
        Op::Purge { limit } => {
            let purged = sqlx::query(
                "DELETE FROM peers WHERE uuid IN
                    (SELECT uuid FROM peers WHERE last_seen < ?1 LIMIT ?2)",
            )
            .bind(&now.live_since)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM used_signatures WHERE expires_at < ?1")
                .bind(now.unix_secs())
                .execute(&mut *tx)
                .await?;
            return Ok(Ok(Done::Purged(purged)));
        }
    };
    Ok(match row {
        Some(row) => Ok(Done::Record(row.into())),
        None => Err(WriteError::Gone),
    })
}
