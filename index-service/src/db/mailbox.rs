//! The offline mailbox: sealed letters waiting for their recipients, and the senders each
//! recipient refuses.
//!
//! The index never reads a letter: it stores the sealed bytes as deposited, with the recipient,
//! the sender (proven by its signature), the size and two times. A letter is waiting while its
//! `expires_at` is later than the index's clock ([`Now`]); expired letters are never answered
//! and the purge deletes them.
//!
//! The caps ([`MailboxCaps`]) are checked by the writer inside its transaction, like the
//! record quotas, so deposits racing for the last slot of a mailbox cannot both get it. The
//! writer applies `deposit`, `take`, `block` and `purge`; handlers read with
//! [`letters`] and [`is_blocked`], and the metrics with [`totals`].

use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::AnyPool;

use super::change::{Block, Deposit, Done, Take, WriteError};
use super::clock::{Now, duration_ms, format_ms};
use super::rooms::owned_live;
use crate::Config;

/// Most senders one recipient may block.
pub const MAX_BLOCKS: u32 = 1000;
/// Expired letters deleted at most when the global byte cap is reached, before refusing.
const RECLAIM: u32 = 256;

/// The mailbox's limits; 0 turns a cap off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxCaps {
    /// How long a letter waits before it is deleted.
    pub ttl: Duration,
    /// Letters waiting in one mailbox.
    pub max_letters: u32,
    /// Sealed bytes waiting in one mailbox.
    pub max_bytes: u64,
    /// Letters one sender has waiting in all mailboxes.
    pub max_per_sender: u32,
    /// Sealed bytes in all mailboxes.
    pub max_total_bytes: u64,
}

impl MailboxCaps {
    /// The limits `config` sets.
    pub fn from_config(config: &Config) -> MailboxCaps {
        MailboxCaps {
            ttl: config.mailbox_ttl,
            max_letters: config.mailbox_max_letters,
            max_bytes: config.mailbox_max_bytes,
            max_per_sender: config.mailbox_max_per_sender,
            max_total_bytes: config.mailbox_max_total_bytes,
        }
    }
}

/// Why the mailbox refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailRefusal {
    /// The recipient blocked the sender.
    #[error("the recipient does not accept mail from you")]
    Blocked,
    /// The sender has as many letters waiting as it may.
    #[error(
        "you already have {0} letters waiting in mailboxes, the most the index keeps per \
         sender: wait until recipients take them or they expire"
    )]
    SenderCap(u32),
    /// The recipient's mailbox holds as many letters or bytes as it may.
    #[error(
        "the recipient's mailbox is full ({0}): the letter can be deposited once the recipient \
         takes its mail or letters expire"
    )]
    MailboxFull(String),
    /// All mailboxes together hold as many bytes as the index keeps.
    #[error(
        "the index's mailboxes hold {0} bytes, as much as it is configured to keep: try again \
         once letters have been taken or expired"
    )]
    TotalFull(u64),
    /// The recipient blocks as many senders as it may.
    #[error(
        "you already block {0} senders, the most the index allows: unblock some \
         (DELETE /peers/{{uuid}}/blocked/{{sender}}) first"
    )]
    TooManyBlocks(u32),
}

/// A waiting letter as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredLetter {
    /// Its number, increasing in deposit order.
    pub id: i64,
    /// The sender's UUID, lowercase hyphenated.
    pub sender: String,
    /// Bytes of `sealed`.
    pub size: i64,
    /// When it was deposited, as stored.
    pub deposited_at: String,
    /// When it expires, as stored.
    pub expires_at: String,
    /// The sealed bytes as deposited.
    pub sealed: Vec<u8>,
}

/// What a deposit gives.
type Outcome = sqlx::Result<Result<Done, WriteError>>;

/// Stores a letter, unless the sender is not (any more) a live record of its key, the
/// recipient blocks it, or a cap would be passed; checked in this order.
pub(super) async fn deposit(
    tx: &mut AnyConnection,
    op: &Deposit,
    now: &Now,
    caps: &MailboxCaps,
) -> Outcome {
    let sender = op.sender.to_string();
    let recipient = op.recipient.to_string();
    let standing = standing(tx, op, &sender, &recipient, caps, now).await?;
    if standing.sender_live == 0 {
        return Ok(Err(WriteError::Gone));
    }
    if standing.blocked != 0 {
        return Ok(Err(WriteError::Mail(MailRefusal::Blocked)));
    }
    if let Some(refused) = over_cap(tx, caps, &standing, op.sealed.len(), now).await? {
        return Ok(Err(WriteError::Mail(refused)));
    }
    let expires_at = format_ms(now.ms.saturating_add(duration_ms(caps.ttl)));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO mailbox (recipient, sender, size, deposited_at, expires_at, sealed)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&recipient)
    .bind(&sender)
    .bind(op.sealed.len() as i64)
    .bind(&now.text)
    .bind(&expires_at)
    .bind(&op.sealed)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Ok(Done::Deposited { id, expires_at }))
}

/// What a deposit is checked against, read in one statement (each statement is a round trip
/// to the connection's thread, which is what deposits spend their time on): the sender's
/// record, the recipient's blocks, and the counts the caps that are on need.
#[derive(Debug, sqlx::FromRow)]
struct Standing {
    /// The sender is a live record of the key that signed (1) or not (0).
    sender_live: i64,
    /// The recipient blocks the sender (1) or not (0).
    blocked: i64,
    /// The sender's letters waiting in all mailboxes (0 when that cap is off).
    sender_waiting: i64,
    /// The recipient's waiting letters and their bytes (0 when those caps are off).
    letters: i64,
    bytes: i64,
    /// Sealed bytes in all mailboxes.
    total: i64,
}

async fn standing(
    tx: &mut AnyConnection,
    op: &Deposit,
    sender: &str,
    recipient: &str,
    caps: &MailboxCaps,
    now: &Now,
) -> sqlx::Result<Standing> {
    sqlx::query_as(
        "SELECT
            CAST(EXISTS (SELECT 1 FROM peers
                         WHERE uuid = $1 AND public_key IS NOT DISTINCT FROM $2
                           AND last_seen >= $3) AS INTEGER) AS sender_live,
            CAST(EXISTS (SELECT 1 FROM mailbox_blocks
                         WHERE recipient = $4 AND sender = $1) AS INTEGER) AS blocked,
            s.waiting AS sender_waiting, r.letters AS letters, r.bytes AS bytes,
            (SELECT bytes FROM mailbox_total WHERE id = 0) AS total
         FROM (SELECT count(*) AS waiting FROM mailbox
               WHERE $6 AND sender = $1 AND expires_at > $5) AS s,
              (SELECT count(*) AS letters, CAST(coalesce(sum(size), 0) AS BIGINT) AS bytes FROM mailbox
               WHERE $7 AND recipient = $4 AND expires_at > $5) AS r",
    )
    .bind(sender)
    .bind(&op.sender_key)
    .bind(&now.live_since)
    .bind(recipient)
    .bind(&now.text)
    .bind(caps.max_per_sender > 0)
    .bind(caps.max_letters > 0 || caps.max_bytes > 0)
    .fetch_one(&mut *tx)
    .await
}

/// The cap a letter of `size` bytes would pass, given the deposit's [`Standing`], if any.
async fn over_cap(
    tx: &mut AnyConnection,
    caps: &MailboxCaps,
    standing: &Standing,
    size: usize,
    now: &Now,
) -> sqlx::Result<Option<MailRefusal>> {
    let size = size as u64;
    if caps.max_per_sender > 0 && standing.sender_waiting >= i64::from(caps.max_per_sender) {
        return Ok(Some(MailRefusal::SenderCap(caps.max_per_sender)));
    }
    if caps.max_letters > 0 && standing.letters >= i64::from(caps.max_letters) {
        return Ok(Some(MailRefusal::MailboxFull(format!(
            "{} letters",
            caps.max_letters
        ))));
    }
    let bytes = standing.bytes.max(0) as u64;
    if caps.max_bytes > 0 && bytes.saturating_add(size) > caps.max_bytes {
        return Ok(Some(MailRefusal::MailboxFull(format!(
            "at most {} bytes",
            caps.max_bytes
        ))));
    }
    let max = caps.max_total_bytes;
    let total = standing.total.max(0) as u64;
    if max > 0 && total.saturating_add(size) > max {
        // Expired letters the purge has not reached yet make room first.
        purge(tx, RECLAIM, now).await?;
        if !total_fits(tx, size, max).await? {
            return Ok(Some(MailRefusal::TotalFull(max)));
        }
    }
    Ok(None)
}

/// Whether `size` more bytes keep all mailboxes within `max`.
async fn total_fits(tx: &mut AnyConnection, size: u64, max: u64) -> sqlx::Result<bool> {
    let bytes: i64 = sqlx::query_scalar("SELECT bytes FROM mailbox_total WHERE id = 0")
        .fetch_one(&mut *tx)
        .await?;
    Ok((bytes.max(0) as u64).saturating_add(size) <= max)
}

/// Whether `recipient` blocks `sender`.
async fn blocked(tx: &mut AnyConnection, recipient: &str, sender: &str) -> sqlx::Result<bool> {
    let blocked: i64 = sqlx::query_scalar(
        "SELECT CAST(EXISTS (SELECT 1 FROM mailbox_blocks WHERE recipient = $1 AND sender = $2)
                AS INTEGER)",
    )
    .bind(recipient)
    .bind(sender)
    .fetch_one(&mut *tx)
    .await?;
    Ok(blocked != 0)
}

/// Deletes the owner's waiting letters numbered up to `op.through`; answers how many went.
pub(super) async fn take(tx: &mut AnyConnection, op: &Take, now: &Now) -> Outcome {
    let uuid = op.uuid.to_string();
    if !owned_live(tx, &uuid, &op.owner, now).await? {
        return Ok(Err(WriteError::Gone));
    }
    let deleted =
        sqlx::query("DELETE FROM mailbox WHERE recipient = $1 AND id <= $2 AND expires_at > $3")
            .bind(&uuid)
            .bind(op.through)
            .bind(&now.text)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    Ok(Ok(Done::Deleted(deleted)))
}

/// Blocks (deleting the sender's waiting letters, whose number it answers) or unblocks a
/// sender for the owner's mailbox.
pub(super) async fn block(tx: &mut AnyConnection, op: &Block, now: &Now) -> Outcome {
    let recipient = op.uuid.to_string();
    let sender = op.sender.to_string();
    if !owned_live(tx, &recipient, &op.owner, now).await? {
        return Ok(Err(WriteError::Gone));
    }
    if !op.block {
        sqlx::query("DELETE FROM mailbox_blocks WHERE recipient = $1 AND sender = $2")
            .bind(&recipient)
            .bind(&sender)
            .execute(&mut *tx)
            .await?;
        return Ok(Ok(Done::Deleted(0)));
    }
    if !blocked(&mut *tx, &recipient, &sender).await? {
        let blocks: i64 =
            sqlx::query_scalar("SELECT count(*) FROM mailbox_blocks WHERE recipient = $1")
                .bind(&recipient)
                .fetch_one(&mut *tx)
                .await?;
        if blocks >= i64::from(MAX_BLOCKS) {
            return Ok(Err(WriteError::Mail(MailRefusal::TooManyBlocks(
                MAX_BLOCKS,
            ))));
        }
        sqlx::query("INSERT INTO mailbox_blocks (recipient, sender) VALUES ($1, $2)")
            .bind(&recipient)
            .bind(&sender)
            .execute(&mut *tx)
            .await?;
    }
    let deleted = sqlx::query("DELETE FROM mailbox WHERE recipient = $1 AND sender = $2")
        .bind(&recipient)
        .bind(&sender)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(Ok(Done::Deleted(deleted)))
}

/// Deletes up to `limit` expired letters; answers how many went.
pub(super) async fn purge(tx: &mut AnyConnection, limit: u32, now: &Now) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM mailbox WHERE id IN
            (SELECT id FROM mailbox WHERE expires_at <= $1 LIMIT $2)",
    )
    .bind(&now.text)
    .bind(i64::from(limit))
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

/// Up to `limit` of `recipient`'s waiting letters, oldest first, and whether more wait.
pub async fn letters(
    pool: &AnyPool,
    recipient: uuid::Uuid,
    limit: u32,
    now: &Now,
) -> sqlx::Result<(Vec<StoredLetter>, bool)> {
    let mut rows = sqlx::query_as::<_, StoredLetter>(
        "SELECT id, sender, size, deposited_at, expires_at, sealed FROM mailbox
         WHERE recipient = $1 AND expires_at > $2 ORDER BY id LIMIT $3",
    )
    .bind(recipient.to_string())
    .bind(&now.text)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok((rows, more))
}

/// Whether `recipient` blocks `sender` (a read before the writer, which checks again).
pub async fn is_blocked(
    pool: &AnyPool,
    recipient: uuid::Uuid,
    sender: uuid::Uuid,
) -> sqlx::Result<bool> {
    let mut connection = pool.acquire().await?;
    blocked(&mut connection, &recipient.to_string(), &sender.to_string()).await
}

/// Letters and sealed bytes stored in all mailboxes (expired ones until the purge takes
/// them): one row kept by triggers.
pub async fn totals(pool: &AnyPool) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as("SELECT letters, bytes FROM mailbox_total WHERE id = 0")
        .fetch_one(pool)
        .await
}
