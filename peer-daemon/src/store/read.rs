//! Reading the store back. The file may have been edited by hand, so nothing read is trusted:
//! a row with an unknown kind or state, a malformed UUID, an invalid room name or a value of
//! the wrong type is skipped (and counted in the debug log), never a panic; text is capped at
//! [`TEXT_CAP`] bytes, names and reasons at [`SHORT_CAP`], and invalid UTF-8 is replaced.

use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use uuid::Uuid;

use super::{MAX_READ, Saved};
use crate::history::{Delivery, HistoryQuery, Line, SavedSession, SavedSessions, SessionKind};

/// The `session_kind` of a room's lines.
pub(super) const ROOM: &str = "room";
/// The `session_kind` of a private conversation's lines.
pub(super) const PRIVATE: &str = "private";
/// The `state` of a received line.
pub(super) const RECEIVED: &str = "received";
/// The `state` of our line not acknowledged yet.
pub(super) const QUEUED: &str = "queued";
/// The `state` of our acknowledged line.
pub(super) const DELIVERED: &str = "delivered";
/// The `state` of our line waiting in the recipient's mailbox.
pub(super) const MAILBOX: &str = "mailbox";
/// The `state` of our line given up.
pub(super) const FAILED: &str = "failed";

/// The most bytes of a line's text read back (the SQL below says 65536 too).
pub const TEXT_CAP: usize = 64 * 1024;
/// The most bytes of a name or a failure reason read back (the SQL below says 256 too).
pub const SHORT_CAP: usize = 256;
/// The most sessions read back.
const MAX_SESSIONS: i64 = 10_000;

/// `SELECT` of a line's columns, each text capped (in bytes) before it leaves SQLite; a macro
/// so that each query is one `concat!`ed static string.
macro_rules! select_lines {
    () => {
        "SELECT id, at_ms, session_kind, substr(CAST(session AS BLOB), 1, 256) AS session, \
         sender, substr(CAST(name AS BLOB), 1, 256) AS name, \
         substr(CAST(text AS BLOB), 1, 65536) AS text, action, state, rtt_ms, delivered, total, \
         substr(CAST(reason AS BLOB), 1, 256) AS reason FROM lines"
    };
}

/// The saved sessions and the next line id.
pub(super) async fn load(connection: &mut SqliteConnection) -> anyhow::Result<Saved> {
    let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM lines")
        .fetch_one(&mut *connection)
        .await?;
    let next_id = max
        .and_then(|id| u64::try_from(id).ok())
        .map_or(0, |id| id + 1);
    let meta = sqlx::query("SELECT active, next_n FROM meta LIMIT 1")
        .fetch_optional(&mut *connection)
        .await?;
    let Some(meta) = meta else {
        return Ok(Saved {
            sessions: None,
            next_id,
            mail: Default::default(),
            states: Vec::new(),
        });
    };
    let (Some(active), Some(next_n)) = (number(&meta, "active"), number(&meta, "next_n")) else {
        tracing::warn!("the message store's saved sessions make no sense; starting afresh");
        return Ok(Saved {
            sessions: None,
            next_id,
            mail: Default::default(),
            states: Vec::new(),
        });
    };
    let rows = sqlx::query(
        "SELECT n, kind, substr(CAST(session AS BLOB), 1, 256) AS session, unread \
         FROM sessions ORDER BY n LIMIT ?1",
    )
    .bind(MAX_SESSIONS)
    .fetch_all(&mut *connection)
    .await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind = row
            .try_get::<String, _>("kind")
            .ok()
            .and_then(|kind| session_kind(&kind, row));
        match (number(row, "n"), kind) {
            (Some(n), Some(kind)) => sessions.push(SavedSession {
                n,
                kind,
                unread: number(row, "unread").unwrap_or(0),
            }),
            _ => tracing::debug!("skipped a saved session that makes no sense"),
        }
    }
    // A new session must not take the number of a saved one.
    let next_n = sessions
        .last()
        .map_or(next_n, |last| next_n.max(last.n + 1));
    Ok(Saved {
        sessions: Some(SavedSessions {
            sessions,
            active,
            next_n,
        }),
        next_id,
        mail: Default::default(),
        states: Vec::new(),
    })
}

/// The newest `query.limit` lines before `query.before`, oldest first.
pub(super) async fn history(
    connection: &mut SqliteConnection,
    query: &HistoryQuery,
) -> anyhow::Result<Vec<Line>> {
    let limit = query.limit.min(MAX_READ);
    // `id <= upto`: ids above i64::MAX are none of ours, so "before" such an id is all of them.
    let upto = match query.before {
        Some(0) => return Ok(Vec::new()),
        Some(before) => i64::try_from(before - 1).unwrap_or(i64::MAX),
        None => i64::MAX,
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = limit as i64;
    let rows = match &query.session {
        Some(session) => {
            let (kind, name) = session_key(session);
            sqlx::query(concat!(
                select_lines!(),
                " WHERE session_kind = ?1 AND session = ?2 AND id <= ?3 ORDER BY id DESC LIMIT ?4"
            ))
            .bind(kind)
            .bind(name)
            .bind(upto)
            .bind(limit)
            .fetch_all(&mut *connection)
            .await?
        }
        None => {
            sqlx::query(concat!(
                select_lines!(),
                " WHERE id <= ?1 ORDER BY id DESC LIMIT ?2"
            ))
            .bind(upto)
            .bind(limit)
            .fetch_all(&mut *connection)
            .await?
        }
    };
    let mut lines = lines(&rows);
    lines.reverse();
    Ok(lines)
}

/// The lines of `session` after id `after`, oldest first, at most `limit`.
pub(super) async fn since(
    connection: &mut SqliteConnection,
    session: &SessionKind,
    after: u64,
    limit: usize,
) -> anyhow::Result<Vec<Line>> {
    let (Ok(after), limit) = (i64::try_from(after), limit.min(MAX_READ)) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let (kind, name) = session_key(session);
    let rows = sqlx::query(concat!(
        select_lines!(),
        " WHERE session_kind = ?1 AND session = ?2 AND id > ?3 ORDER BY id LIMIT ?4"
    ))
    .bind(kind)
    .bind(name)
    .bind(after)
    .bind(limit as i64)
    .fetch_all(&mut *connection)
    .await?;
    Ok(lines(&rows))
}

fn session_key(session: &SessionKind) -> (&'static str, String) {
    match session {
        SessionKind::Room(room) => (ROOM, room.clone()),
        SessionKind::Private(peer) => (PRIVATE, peer.hyphenated().to_string()),
    }
}

/// The rows that make sense, as lines.
fn lines(rows: &[SqliteRow]) -> Vec<Line> {
    let lines: Vec<Line> = rows.iter().filter_map(line).collect();
    if lines.len() < rows.len() {
        tracing::debug!(
            skipped = rows.len() - lines.len(),
            "skipped stored lines that make no sense"
        );
    }
    lines
}

fn line(row: &SqliteRow) -> Option<Line> {
    let id = u64::try_from(row.try_get::<i64, _>("id").ok()?).ok()?;
    let kind: String = row.try_get("session_kind").ok()?;
    let session = session_kind(&kind, row)?;
    let from = match row.try_get::<Option<String>, _>("sender").ok()? {
        Some(sender) => Some(Uuid::parse_str(&sender).ok()?),
        None => None,
    };
    let delivery = match row.try_get::<String, _>("state").ok()?.as_str() {
        RECEIVED => Delivery::Received,
        QUEUED => Delivery::Queued,
        MAILBOX => Delivery::Mailbox,
        DELIVERED => Delivery::Delivered {
            // SQLite stores a NaN as NULL: the line is still worth showing.
            rtt_ms: row.try_get::<Option<f64>, _>("rtt_ms").ok()?.unwrap_or(0.0),
            delivered: count(row, "delivered")?,
            total: count(row, "total")?,
        },
        FAILED => Delivery::Failed {
            reason: text(row, "reason")?.unwrap_or_default(),
        },
        _ => return None,
    };
    // Someone else's message is received; ours never is.
    if from.is_some() != matches!(delivery, Delivery::Received) {
        return None;
    }
    Some(Line {
        id,
        at_ms: row.try_get("at_ms").ok()?,
        session,
        from,
        name: text(row, "name")?,
        text: text(row, "text")??,
        action: row.try_get::<i64, _>("action").ok()? != 0,
        delivery,
    })
}

/// The session a row's `session` column names, given its kind.
fn session_kind(kind: &str, row: &SqliteRow) -> Option<SessionKind> {
    let session = text(row, "session")??;
    match kind {
        ROOM if proto::chat::valid_room(&session) => Some(SessionKind::Room(session)),
        PRIVATE => Uuid::parse_str(&session).ok().map(SessionKind::Private),
        _ => None,
    }
}

/// A non-negative integer column (`None` if it is not one).
fn number(row: &SqliteRow, column: &str) -> Option<usize> {
    usize::try_from(row.try_get::<i64, _>(column).ok()?).ok()
}

/// A nullable count column: `Some(None)` when NULL, `None` when it is not a count.
fn count(row: &SqliteRow, column: &str) -> Option<Option<usize>> {
    match row.try_get::<Option<i64>, _>(column).ok()? {
        Some(n) => usize::try_from(n).ok().map(Some),
        None => Some(None),
    }
}

/// A nullable text column read as (capped) bytes: `Some(None)` when NULL, `None` when it is not
/// text. Invalid UTF-8 is replaced; a character the cap cut in two is dropped.
fn text(row: &SqliteRow, column: &str) -> Option<Option<String>> {
    let Some(bytes) = row.try_get::<Option<Vec<u8>>, _>(column).ok()? else {
        return Some(None);
    };
    Some(Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let utf8 = error.utf8_error();
            let mut bytes = error.into_bytes();
            if utf8.error_len().is_none() {
                bytes.truncate(utf8.valid_up_to());
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }))
}
