//! The writer task: owns the store's only connection and serves the queue in order. Changes
//! that queued up together are applied in one transaction (one commit, however many messages
//! arrived meanwhile); a read or a flush first commits what queued before it.
//!
//! Transactions are plain `BEGIN IMMEDIATE` / `COMMIT` / `ROLLBACK` statements, as in the
//! index's writer: SQLite may roll a transaction back by itself (a full disk), and sqlx's own
//! bookkeeping would then refuse every later transaction. When a group fails it is rolled back
//! and retried one change per transaction, so one bad change does not cost the others; if even
//! `ROLLBACK` fails the connection is dropped and reopened for the next request.

use std::collections::HashSet;
use std::mem::Discriminant;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::mpsc;

use super::group::coalesce;
use super::{Request, Retention, read};
use crate::history::{Change, Delivery, Line, SavedSessions, SessionKind};

/// Longest time a change waits for others to share its commit (what a crash of the daemon
/// may lose of its history; a quit flushes).
pub(super) const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// The most changes applied in one transaction: a bound on how long one commit holds the
/// queue up, not a limit on what is written.
const MAX_GROUP: usize = 10_000;

/// Why a change could not be written.
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("a number too large for the store ({0})")]
    OutOfRange(&'static str),
}

/// What makes two write errors "the same" for logging: a full disk is logged once, not once
/// per message.
#[derive(Debug, Hash, PartialEq, Eq)]
enum ErrorKind {
    Sql(Discriminant<sqlx::Error>, Option<String>),
    OutOfRange(&'static str),
}

impl WriteError {
    fn kind(&self) -> ErrorKind {
        match self {
            WriteError::Sql(error) => ErrorKind::Sql(
                std::mem::discriminant(error),
                error
                    .as_database_error()
                    .and_then(|e| e.code())
                    .map(|code| code.into_owned()),
            ),
            WriteError::OutOfRange(what) => ErrorKind::OutOfRange(what),
        }
    }
}

/// The writer task's state.
pub(super) struct Writer {
    /// `None` after a failure left it unusable; reopened on the next request.
    connection: Option<SqliteConnection>,
    /// How to reopen it (never creating the file: a deleted store is not silently replaced).
    options: SqliteConnectOptions,
    retention: Retention,
    /// Lines stored since the last retention check.
    inserted: u64,
    write_errors: Arc<AtomicU64>,
    /// The kinds of error already logged.
    logged: HashSet<ErrorKind>,
}

impl Writer {
    pub(super) fn new(
        connection: SqliteConnection,
        options: SqliteConnectOptions,
        retention: Retention,
        write_errors: Arc<AtomicU64>,
    ) -> Writer {
        Writer {
            connection: Some(connection),
            options,
            retention,
            inserted: 0,
            write_errors,
            logged: HashSet::new(),
        }
    }

    /// Serves `requests` until every [`super::Store`] is dropped, then commits what is left.
    /// Changes wait up to [`LINGER`] for others to share their commit: a chat sends or receives
    /// messages in bursts, and one commit per message would cost the chat's thread more than
    /// the message itself (docs/benchmarks.md). A read or a flush commits at once what waits.
    pub(super) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let mut changes = Vec::new();
        while let Some(first) = requests.recv().await {
            let deadline = tokio::time::Instant::now() + LINGER;
            let mut next = Some(first);
            loop {
                while let Some(request) = next.take() {
                    match request {
                        Request::Change(change) => changes.push(change),
                        other => {
                            self.write(&mut changes).await;
                            self.serve(other).await;
                        }
                    }
                    if changes.len() < MAX_GROUP {
                        next = requests.try_recv().ok();
                    }
                }
                if changes.is_empty() || changes.len() >= MAX_GROUP {
                    break;
                }
                match tokio::time::timeout_at(deadline, requests.recv()).await {
                    Ok(Some(request)) => next = Some(request),
                    // The time is up, or every `Store` is gone: commit.
                    Ok(None) | Err(_) => break,
                }
            }
            self.write(&mut changes).await;
        }
    }

    async fn serve(&mut self, request: Request) {
        match request {
            Request::Change(_) => unreachable!("changes are written, not served"),
            Request::Flush(reply) => {
                let _ = reply.send(());
            }
            Request::Load(reply) => {
                let saved = match self.connection().await {
                    Ok(connection) => match read::load(connection).await {
                        Ok(mut saved) => match super::mail::load(connection).await {
                            Ok(mail) => {
                                saved.mail = mail;
                                super::roomstate::load(connection).await.map(|states| {
                                    saved.states = states;
                                    saved
                                })
                            }
                            Err(error) => Err(error),
                        },
                        Err(error) => Err(error),
                    },
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(saved);
            }
            Request::History(query, reply) => {
                let lines = match self.connection().await {
                    Ok(connection) => read::history(connection, &query).await,
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(lines);
            }
            Request::Since {
                session,
                after,
                limit,
                reply,
            } => {
                let lines = match self.connection().await {
                    Ok(connection) => read::since(connection, &session, after, limit).await,
                    Err(error) => Err(error.into()),
                };
                let _ = reply.send(lines);
            }
        }
    }

    /// The connection, reopened if a failure dropped it.
    async fn connection(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        if self.connection.is_none() {
            let connection = self.options.connect().await?;
            tracing::info!("reopened the message store");
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("just opened"))
    }

    /// Applies `changes` (then empties it): in one transaction, or one by one if that fails.
    async fn write(&mut self, changes: &mut Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        match self.transaction(changes).await {
            Ok(inserted) => self.inserted += inserted,
            Err(error) if changes.len() == 1 => self.failed(1, &error),
            Err(_) => {
                for change in changes.iter() {
                    match self.transaction(std::slice::from_ref(change)).await {
                        Ok(inserted) => self.inserted += inserted,
                        Err(error) => self.failed(1, &error),
                    }
                }
            }
        }
        changes.clear();
        if self.inserted >= self.retention.check_every {
            self.inserted = 0;
            let max_lines = self.retention.max_lines;
            let trimmed = match self.connection().await {
                Ok(connection) => trim(connection, max_lines).await,
                Err(error) => Err(error),
            };
            match trimmed {
                Ok(0) => {}
                Ok(trimmed) => tracing::debug!(trimmed, "oldest messages deleted"),
                Err(error) => self.failed(0, &error.into()),
            }
        }
    }

    /// Applies `changes` in one transaction; the number of lines inserted. Rolled back on
    /// failure.
    async fn transaction(&mut self, changes: &[Change]) -> Result<u64, WriteError> {
        let connection = self.connection().await?;
        let result = apply_all(connection, changes).await;
        if result.is_err() {
            // "No transaction is active" (SQLite already rolled back) is fine; anything else
            // leaves the connection in a state we cannot trust.
            if let Err(error) = sqlx::query("ROLLBACK").execute(&mut *connection).await
                && !error.to_string().contains("no transaction is active")
            {
                tracing::debug!(%error, "rolling back failed; reopening the message store");
                self.connection = None;
            }
        }
        result
    }

    /// Counts `changes` lost to `error`, logging the first error of each kind.
    fn failed(&mut self, changes: u64, error: &WriteError) {
        self.write_errors.fetch_add(changes, Ordering::Relaxed);
        if self.logged.insert(error.kind()) {
            tracing::warn!(
                %error,
                "could not save to the message store; the chat goes on (further errors of \
                 this kind are only counted)"
            );
        } else {
            tracing::debug!(%error, "could not save to the message store");
        }
    }
}

async fn apply_all(
    connection: &mut SqliteConnection,
    changes: &[Change],
) -> Result<u64, WriteError> {
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *connection)
        .await?;
    let mut inserted = 0;
    if changes.len() == 1 {
        inserted += apply(connection, &changes[0]).await?;
    } else {
        let (lines, rest) = coalesce(changes);
        // One cached statement per line: a multi-row INSERT is a new statement for every
        // group size, prepared afresh each time, and measured slower (docs/benchmarks.md).
        for line in &lines {
            inserted += insert_line(connection, line).await?;
        }
        for change in &rest {
            inserted += apply(connection, change).await?;
        }
    }
    sqlx::query("COMMIT").execute(&mut *connection).await?;
    Ok(inserted)
}

/// Applies one change; the number of lines it inserted.
async fn apply(connection: &mut SqliteConnection, change: &Change) -> Result<u64, WriteError> {
    match change {
        Change::Line(line) => insert_line(connection, line).await,
        Change::Outcome { id, delivery } => {
            // An id the store cannot hold cannot be stored either: nothing to update.
            let Ok(id) = i64::try_from(*id) else {
                return Ok(0);
            };
            let state = State::of(delivery)?;
            sqlx::query(
                "UPDATE lines SET state = ?1, rtt_ms = ?2, delivered = ?3, total = ?4, \
                 reason = ?5 WHERE id = ?6",
            )
            .bind(state.state)
            .bind(state.rtt_ms)
            .bind(state.delivered)
            .bind(state.total)
            .bind(state.reason)
            .bind(id)
            .execute(&mut *connection)
            .await?;
            Ok(0)
        }
        Change::Sessions(sessions) => {
            save_sessions(connection, sessions).await?;
            Ok(0)
        }
        Change::Mail(change) => {
            super::mail::apply(connection, change).await?;
            Ok(0)
        }
        Change::RoomState(saved) => {
            super::roomstate::apply(connection, saved).await?;
            Ok(0)
        }
    }
}

async fn insert_line(connection: &mut SqliteConnection, line: &Line) -> Result<u64, WriteError> {
    let id = i64::try_from(line.id).map_err(|_| WriteError::OutOfRange("line id"))?;
    let (kind, session) = session_columns(&line.session);
    let state = State::of(&line.delivery)?;
    let done = sqlx::query(
        "INSERT OR IGNORE INTO lines (id, at_ms, session_kind, session, sender, name, text, \
         action, state, rtt_ms, delivered, total, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .bind(id)
    .bind(line.at_ms)
    .bind(kind)
    .bind(session)
    .bind(line.from.map(|uuid| uuid.to_string()))
    .bind(line.name.as_deref())
    .bind(line.text.as_str())
    .bind(i64::from(line.action))
    .bind(state.state)
    .bind(state.rtt_ms)
    .bind(state.delivered)
    .bind(state.total)
    .bind(state.reason)
    .execute(&mut *connection)
    .await?;
    Ok(done.rows_affected())
}

/// Replaces the saved sessions (the caller's transaction makes it all or nothing).
async fn save_sessions(
    connection: &mut SqliteConnection,
    saved: &SavedSessions,
) -> Result<(), WriteError> {
    let number = |n: usize| i64::try_from(n).map_err(|_| WriteError::OutOfRange("session number"));
    sqlx::query("DELETE FROM sessions")
        .execute(&mut *connection)
        .await?;
    for session in &saved.sessions {
        let (kind, name) = session_columns(&session.kind);
        sqlx::query(
            "INSERT OR REPLACE INTO sessions (n, kind, session, unread) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(number(session.n)?)
        .bind(kind)
        .bind(name)
        .bind(i64::try_from(session.unread).unwrap_or(i64::MAX))
        .execute(&mut *connection)
        .await?;
    }
    sqlx::query("DELETE FROM meta")
        .execute(&mut *connection)
        .await?;
    sqlx::query("INSERT INTO meta (active, next_n) VALUES (?1, ?2)")
        .bind(number(saved.active)?)
        .bind(number(saved.next_n)?)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// The `(session_kind, session)` columns of a session.
fn session_columns(session: &SessionKind) -> (&'static str, String) {
    match session {
        SessionKind::Room(room) => (read::ROOM, room.clone()),
        SessionKind::Private(peer) => (read::PRIVATE, peer.hyphenated().to_string()),
    }
}

/// The delivery columns of a line.
struct State<'a> {
    state: &'static str,
    rtt_ms: Option<f64>,
    delivered: Option<i64>,
    total: Option<i64>,
    reason: Option<&'a str>,
}

impl<'a> State<'a> {
    fn of(delivery: &'a Delivery) -> Result<State<'a>, WriteError> {
        let count = |n: Option<usize>| {
            n.map(i64::try_from)
                .transpose()
                .map_err(|_| WriteError::OutOfRange("member count"))
        };
        let none = State {
            state: "",
            rtt_ms: None,
            delivered: None,
            total: None,
            reason: None,
        };
        Ok(match delivery {
            Delivery::Received => State {
                state: read::RECEIVED,
                ..none
            },
            Delivery::Queued => State {
                state: read::QUEUED,
                ..none
            },
            Delivery::Mailbox => State {
                state: read::MAILBOX,
                ..none
            },
            Delivery::Delivered {
                rtt_ms,
                delivered,
                total,
            } => State {
                state: read::DELIVERED,
                rtt_ms: Some(*rtt_ms),
                delivered: count(*delivered)?,
                total: count(*total)?,
                reason: None,
            },
            Delivery::Failed { reason } => State {
                state: read::FAILED,
                reason: Some(reason),
                ..none
            },
        })
    }
}

/// Deletes the oldest lines beyond the newest `max_lines` (by id: ids grow across runs); how
/// many it deleted.
pub(super) async fn trim(
    connection: &mut SqliteConnection,
    max_lines: u64,
) -> Result<u64, sqlx::Error> {
    let offset = i64::try_from(max_lines.saturating_sub(1)).unwrap_or(i64::MAX);
    // With fewer lines than that the subquery is NULL and nothing matches.
    let done = sqlx::query(
        "DELETE FROM lines WHERE id < (SELECT id FROM lines ORDER BY id DESC LIMIT 1 OFFSET ?1)",
    )
    .bind(offset)
    .execute(&mut *connection)
    .await?;
    Ok(done.rows_affected())
}
