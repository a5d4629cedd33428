//! The mailbox's rows in the store: our letters waiting for a receipt, the letters we took
//! (so that none is shown twice, even after a crash between taking and deleting them), and the
//! peers we block. Read back like everything else here: rows that make no sense are skipped.

use proto::mailbox::Stamp;
use sqlx::Row;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::writer::WriteError;
use crate::history::{MailChange, SavedMail};

/// How long a taken letter is remembered: longer than the index keeps letters by default
/// (7 days), so a letter it hands out again is still recognised.
const SEEN_FOR_MS: i64 = 8 * 24 * 3600 * 1000;
/// Most rows of each kind read back.
const MAX_ROWS: i64 = 100_000;

fn int(n: u64, what: &'static str) -> Result<i64, WriteError> {
    i64::try_from(n).map_err(|_| WriteError::OutOfRange(what))
}

/// Applies one change.
pub(super) async fn apply(
    connection: &mut SqliteConnection,
    change: &MailChange,
) -> Result<(), WriteError> {
    match change {
        MailChange::Waiting { id, peer, at } => {
            sqlx::query(
                "INSERT OR REPLACE INTO mail_waiting (id, peer, at_ms) VALUES (?1, ?2, ?3)",
            )
            .bind(int(*id, "line id")?)
            .bind(peer.hyphenated().to_string())
            .bind(int(*at, "letter time")?)
            .execute(&mut *connection)
            .await?;
        }
        MailChange::Receipted { id } => {
            sqlx::query("DELETE FROM mail_waiting WHERE id = ?1")
                .bind(int(*id, "line id")?)
                .execute(&mut *connection)
                .await?;
        }
        MailChange::Seen { from, stamp } => {
            let now = crate::driver::unix_millis();
            sqlx::query(
                "INSERT OR IGNORE INTO mail_seen (sender, id, at_ms, taken_ms) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(from.hyphenated().to_string())
            .bind(int(stamp.id, "letter id")?)
            .bind(int(stamp.at, "letter time")?)
            .bind(now)
            .execute(&mut *connection)
            .await?;
        }
        MailChange::Blocked { peer, blocked } => {
            let sql = if *blocked {
                "INSERT OR IGNORE INTO blocked (peer) VALUES (?1)"
            } else {
                "DELETE FROM blocked WHERE peer = ?1"
            };
            sqlx::query(sql)
                .bind(peer.hyphenated().to_string())
                .execute(&mut *connection)
                .await?;
        }
    }
    Ok(())
}

fn uuid(row: &sqlx::sqlite::SqliteRow, column: &str) -> Option<Uuid> {
    Uuid::parse_str(&row.try_get::<String, _>(column).ok()?).ok()
}

fn number(row: &sqlx::sqlite::SqliteRow, column: &str) -> Option<u64> {
    u64::try_from(row.try_get::<i64, _>(column).ok()?).ok()
}

/// Why a letter that was never receipted stops waiting.
pub const EXPIRED_REASON: &str =
    "it waited in the recipient's mailbox for 8 days without being taken (letters expire)";

/// What the store remembers about mail. Our letters that waited longer than the index keeps
/// them are given up first (their lines become `failed`).
pub(super) async fn load(connection: &mut SqliteConnection) -> anyhow::Result<SavedMail> {
    let cutoff = crate::driver::unix_millis() - SEEN_FOR_MS;
    sqlx::query(
        "UPDATE lines SET state = 'failed', reason = ?1 \
         WHERE state = 'mailbox' AND id IN (SELECT id FROM mail_waiting WHERE at_ms < ?2)",
    )
    .bind(EXPIRED_REASON)
    .bind(cutoff)
    .execute(&mut *connection)
    .await?;
    sqlx::query("DELETE FROM mail_waiting WHERE at_ms < ?1")
        .bind(cutoff)
        .execute(&mut *connection)
        .await?;
    // Taken letters are forgotten here, once per start, not at every letter taken.
    sqlx::query("DELETE FROM mail_seen WHERE taken_ms < ?1")
        .bind(cutoff)
        .execute(&mut *connection)
        .await?;
    let waiting = sqlx::query("SELECT id, peer, at_ms FROM mail_waiting ORDER BY id LIMIT ?1")
        .bind(MAX_ROWS)
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .filter_map(|row| {
            Some((
                number(row, "id")?,
                uuid(row, "peer")?,
                number(row, "at_ms")?,
            ))
        })
        .collect();
    // The newest ones when there are more than are read back, oldest first.
    let mut seen: Vec<(Uuid, Stamp)> = sqlx::query(
        "SELECT sender, id, at_ms FROM mail_seen WHERE taken_ms >= ?1 \
         ORDER BY taken_ms DESC LIMIT ?2",
    )
    .bind(cutoff)
    .bind(MAX_ROWS)
    .fetch_all(&mut *connection)
    .await?
    .iter()
    .filter_map(|row| {
        let stamp = Stamp {
            id: number(row, "id")?,
            at: number(row, "at_ms")?,
        };
        Some((uuid(row, "sender")?, stamp))
    })
    .collect();
    seen.reverse();
    let blocked = sqlx::query("SELECT peer FROM blocked LIMIT ?1")
        .bind(MAX_ROWS)
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .filter_map(|row| uuid(row, "peer"))
        .collect();
    Ok(SavedMail {
        waiting,
        seen,
        blocked,
    })
}

#[cfg(test)]
mod tests;
