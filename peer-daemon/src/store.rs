//! The daemon's local message store: every message sent and received with its delivery state,
//! and the sessions as the chat core last saved them, in an SQLite file in the state directory
//! ([`STORE_FILE`], mode 0600; schema and retention in `docs/daemon-store.md`).
//!
//! Writing never holds up the chat: [`Store::record`] queues a [`Change`] on an unbounded
//! channel to one writer task ([`writer`]) that owns the only connection and applies whatever
//! queued up meanwhile in one transaction. A failed write is logged once per kind of error and
//! counted ([`Store::write_errors`]); the chat goes on without it. Reads travel through the
//! same queue, so they see every change recorded before them.
//!
//! The file is ours, but a person may edit it (it is readable with `sqlite3`): everything read
//! back is checked ([`read`]), rows that do not make sense are skipped, and text is capped.

mod group;
mod mail;
mod read;
mod roomstate;
mod writer;

#[cfg(test)]
mod tests;

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

use crate::history::{Change, HistoryQuery, Line, SavedSessions, SessionKind};

pub use read::{SHORT_CAP, TEXT_CAP};

/// The store's file name in the state directory.
pub const STORE_FILE: &str = "messages.db";

/// Lines kept: beyond this many the oldest are deleted (at start-up and every
/// [`RETENTION_CHECK_EVERY`] stored lines). 200 000 lines of chat are tens of megabytes, and
/// years of it for a person.
pub const MAX_LINES: u64 = 200_000;

/// How many stored lines between two retention checks while running.
pub const RETENTION_CHECK_EVERY: u64 = 1000;

/// The most lines one read returns, whatever it asks for.
pub const MAX_READ: usize = 1000;

/// The reason given to our messages that were still waiting for an acknowledgement when an
/// earlier run stopped: they may have arrived, but nobody will ever say so.
pub const STOPPED_REASON: &str = "the daemon stopped before it was acknowledged";

/// The store's schema, embedded and applied at open.
static MIGRATOR: Migrator = sqlx::migrate!();

/// Saved state at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// The sessions as last saved; `None` on a first start (or when what was saved makes no
    /// sense). `active` may name a session that is not listed: the chat core decides.
    pub sessions: Option<SavedSessions>,
    /// 1 + the largest [`Line::id`] stored, 0 when there is none: where the driver's ids go on,
    /// so lines of this run never collide with earlier ones.
    pub next_id: u64,
    /// What it remembered about mailbox letters.
    pub mail: crate::history::SavedMail,
    /// The rooms' shared state, as appended pieces.
    pub states: roomstate::SavedStates,
}

/// How many lines to keep, and how often to check while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    /// Lines kept (at least 1).
    pub max_lines: u64,
    /// Stored lines between two checks.
    pub check_every: u64,
}

impl Retention {
    /// What the daemon uses: [`MAX_LINES`], checked every [`RETENTION_CHECK_EVERY`] lines.
    pub const DEFAULT: Retention = Retention {
        max_lines: MAX_LINES,
        check_every: RETENTION_CHECK_EVERY,
    };
}

/// A request to the writer task, served in the order they were queued.
enum Request {
    Change(Change),
    Flush(oneshot::Sender<()>),
    Load(oneshot::Sender<anyhow::Result<Saved>>),
    History(HistoryQuery, oneshot::Sender<anyhow::Result<Vec<Line>>>),
    Since {
        session: SessionKind,
        after: u64,
        limit: usize,
        reply: oneshot::Sender<anyhow::Result<Vec<Line>>>,
    },
}

/// The handle to the message store; cheap to clone. The writer task ends (after applying
/// everything queued) when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    /// `None` for a daemon that keeps no history ([`Store::off`]).
    queue: Option<mpsc::UnboundedSender<Request>>,
    write_errors: Arc<AtomicU64>,
}

/// What reading the history answers when the daemon keeps none.
pub const OFF: &str = "this daemon keeps no message history (it runs with --no-history)";

impl Store {
    /// Opens `<state_dir>/messages.db` (created with mode 0600 before SQLite sees it, so the
    /// messages are never readable by others, not even briefly; the directory must exist),
    /// brings its schema up to date, marks the lines an earlier run left `Queued` as failed
    /// ([`STOPPED_REASON`]), applies retention and spawns the writer task (on the current tokio
    /// runtime).
    pub async fn open(state_dir: &Path) -> anyhow::Result<Store> {
        Store::open_with(state_dir, Retention::DEFAULT).await
    }

    /// [`Store::open`] with another retention (tests use a small one).
    pub(crate) async fn open_with(state_dir: &Path, retention: Retention) -> anyhow::Result<Store> {
        anyhow::ensure!(
            retention.max_lines >= 1,
            "the store must keep at least one line"
        );
        let path = state_dir.join(STORE_FILE);
        create_private(&path)
            .with_context(|| format!("creating the message store {}", path.display()))?;
        // Durable enough for a chat log: with WAL, NORMAL loses at most the last commits on a
        // power cut (never corrupts), and spares an fsync per group.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let mut connection = options
            .connect()
            .await
            .with_context(|| format!("opening the message store {}", path.display()))?;
        MIGRATOR.run(&mut connection).await.with_context(|| {
            format!(
                "bringing the message store {} up to date (was it written by a newer peerlink?)",
                path.display()
            )
        })?;
        let stopped = sqlx::query(
            "UPDATE lines SET state = 'failed', reason = ?1, rtt_ms = NULL, delivered = NULL, \
             total = NULL WHERE state = 'queued'",
        )
        .bind(STOPPED_REASON)
        .execute(&mut connection)
        .await
        .context("marking the messages an earlier run left unacknowledged")?
        .rows_affected();
        if stopped > 0 {
            tracing::info!(
                stopped,
                "messages left unacknowledged by an earlier run marked failed"
            );
        }
        let trimmed = writer::trim(&mut connection, retention.max_lines)
            .await
            .context("deleting the oldest messages beyond the store's limit")?;
        if trimmed > 0 {
            tracing::info!(
                trimmed,
                max = retention.max_lines,
                "oldest messages deleted"
            );
        }
        let write_errors = Arc::new(AtomicU64::new(0));
        let (queue, requests) = mpsc::unbounded_channel();
        let writer = writer::Writer::new(connection, options, retention, write_errors.clone());
        tokio::spawn(writer.run(requests));
        Ok(Store {
            queue: Some(queue),
            write_errors,
        })
    }

    /// A store that keeps nothing (`--no-history`): no file, changes dropped, nothing saved
    /// across restarts, and reads answer [`OFF`].
    pub fn off() -> Store {
        Store {
            queue: None,
            write_errors: Arc::default(),
        }
    }

    /// Whether this store keeps anything.
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// The sessions as last saved and where line ids go on.
    pub async fn load(&self) -> anyhow::Result<Saved> {
        if !self.is_on() {
            return Ok(Saved {
                sessions: None,
                next_id: 0,
                mail: Default::default(),
                states: Vec::new(),
            });
        }
        self.ask(Request::Load).await?
    }

    /// Queues `change` for the writer task. Never blocks and never fails: a write that fails
    /// later is logged (once per kind of error) and counted in [`Store::write_errors`].
    pub fn record(&self, change: Change) {
        let Some(queue) = &self.queue else {
            return;
        };
        if queue.send(Request::Change(change)).is_err() {
            // The writer task is gone (only if it panicked): nothing will be written.
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The lines `query` asks for, oldest first: the newest `query.limit` (at most
    /// [`MAX_READ`]) with an id below `query.before`. Sees every change recorded before the
    /// call.
    pub async fn history(&self, query: HistoryQuery) -> anyhow::Result<Vec<Line>> {
        self.ask(|reply| Request::History(query, reply)).await?
    }

    /// The lines of `session` with an id above `after`, oldest first, at most `limit` (at most
    /// [`MAX_READ`]): what arrived since a person last looked. Sees every change recorded
    /// before the call.
    pub async fn since(
        &self,
        session: SessionKind,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<Line>> {
        self.ask(|reply| Request::Since {
            session,
            after,
            limit,
            reply,
        })
        .await?
    }

    /// Waits until every change recorded so far is committed (or has failed), so quitting
    /// loses nothing.
    pub async fn flush(&self) {
        if !self.is_on() {
            return;
        }
        // An error means the writer task is gone: there is nothing left to wait for.
        let _ = self.ask(Request::Flush).await;
    }

    /// How many changes could not be written so far.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(|| anyhow::anyhow!(OFF))?;
        queue
            .send(request(reply))
            .map_err(|_| anyhow::anyhow!("the message store's writer stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the message store's writer stopped"))
    }
}

/// Creates `path` with mode 0600 unless it exists, and makes sure an existing one is 0600 too.
fn create_private(path: &Path) -> std::io::Result<()> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
