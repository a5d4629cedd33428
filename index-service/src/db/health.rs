//! Whether the database can be written: the one-page write that proves it
//! ([`check_writable`]), why a write failed ([`Fault`]), which file the index opened at
//! start-up ([`DbFile`]), and the writer's last outcome ([`WriteHealth`]), which `/readyz`
//! reports.
//!
//! A database failure is either the change's own (a constraint it breaks: the writer retries
//! the rest of its group without it) or the environment's (a full disk, an I/O error, a lock
//! held by another program, a read-only or vanished file): then no change can be written, every
//! change of the group is refused with 507 or 503, and the index says it is not ready until a
//! write goes through again.

use std::io;
use std::path::{Path, PathBuf};

use sqlx::AnyConnection;
use sqlx::postgres::PgDatabaseError;

use super::backend::Backend;

/// Proves the database takes writes with one real one: a read-only file, directory or file
/// system, a full disk or a read-only server is found at start-up rather than by the first
/// client; while writes fail, the writer probes with it. SQLite: the header's `user_version`,
/// rewritten unchanged (one page). PostgreSQL: the mailbox totals' row, rewritten unchanged,
/// under the replicas' write lock (before the schema exists: nothing).
pub async fn check_writable(connection: &mut AnyConnection, backend: Backend) -> sqlx::Result<()> {
    backend.begin_write(connection).await?;
    let written = async {
        match backend {
            Backend::Sqlite => rewrite_header(connection).await?,
            Backend::Postgres => rewrite_totals(connection).await?,
        }
        sqlx::query("COMMIT").execute(&mut *connection).await
    }
    .await;
    if written.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
    }
    written.map(drop)
}

/// Rewrites the database header's `user_version` unchanged, in the open transaction: the
/// smallest real write (one page), for probing whether writes work.
async fn rewrite_header(connection: &mut AnyConnection) -> sqlx::Result<()> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *connection)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA user_version = {version}"
    )))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Rewrites the mailbox totals' row unchanged, if the schema exists yet.
async fn rewrite_totals(connection: &mut AnyConnection) -> sqlx::Result<()> {
    let exists: i64 =
        sqlx::query_scalar("SELECT CAST(to_regclass('mailbox_total') IS NOT NULL AS INTEGER)")
            .fetch_one(&mut *connection)
            .await?;
    if exists != 0 {
        sqlx::query("UPDATE mailbox_total SET letters = letters WHERE id = 0")
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// Why the database cannot be written at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The disk (or file system) is full: `SQLITE_FULL`.
    Full,
    /// The disk failed, or the database is corrupt or cannot be opened.
    Io,
    /// Another program holds the database's write lock longer than the busy timeout.
    Busy,
    /// The file, its directory or its file system is read-only.
    ReadOnly,
    /// The file at the database's path is no longer the one the index opened at start-up
    /// (deleted, or replaced): a change written now would be lost at the next restart.
    Replaced,
    /// Any other failure of the database rather than of the change (PostgreSQL: the server
    /// cannot be reached, shuts down, or refuses for want of resources).
    Other,
}

impl Fault {
    /// The environmental fault behind `error`, or `None` when the change itself failed (a
    /// constraint it breaks, a value that cannot be decoded: retrying it cannot help).
    pub fn of(error: &sqlx::Error) -> Option<Fault> {
        let code = match error {
            sqlx::Error::Database(error) => match error.try_downcast_ref::<PgDatabaseError>() {
                Some(error) => return postgres_fault(error.code()),
                None => error.code().and_then(|c| c.parse::<i32>().ok()),
            },
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
                return Some(Fault::Io);
            }
            sqlx::Error::WorkerCrashed | sqlx::Error::PoolClosed | sqlx::Error::PoolTimedOut => {
                return Some(Fault::Other);
            }
            _ => return None,
        };
        // Extended result codes carry the primary code in their low byte.
        Some(match code.map(|c| c & 0xff) {
            Some(13) => Fault::Full,                   // SQLITE_FULL
            Some(10 | 11 | 14 | 15 | 26) => Fault::Io, // IOERR, CORRUPT, CANTOPEN, PROTOCOL, NOTADB
            Some(5 | 6) => Fault::Busy,                // BUSY, LOCKED
            Some(3 | 8 | 23) => Fault::ReadOnly,       // PERM, READONLY, AUTH
            Some(18 | 19 | 20 | 25) => return None,    // TOOBIG, CONSTRAINT, MISMATCH, RANGE
            _ => Fault::Other,
        })
    }

    /// The metric label: `full`, `io`, `busy`, `read_only`, `replaced` or `other`.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Full => "full",
            Fault::Io => "io",
            Fault::Busy => "busy",
            Fault::ReadOnly => "read_only",
            Fault::Replaced => "replaced",
            Fault::Other => "other",
        }
    }

    /// What a client (or an operator reading `/readyz`) is told; no internals.
    pub fn problem(self) -> &'static str {
        match self {
            Fault::Full => "the index's disk is full",
            Fault::Io => "the index's database failed (I/O error)",
            Fault::Busy => "the index's database is locked by another program",
            Fault::ReadOnly => "the index's database is read-only",
            Fault::Replaced => {
                "the index's database file was deleted or replaced while it ran; the index must be restarted"
            }
            Fault::Other => "the index's database cannot be written",
        }
    }

    /// Seconds a client should wait before retrying.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Fault::Full => 30,
            Fault::Replaced => 60,
            _ => 5,
        }
    }
}

/// The fault behind a PostgreSQL error (`SQLSTATE` code), or `None` when the change itself
/// failed: a constraint it breaks, a value the server refuses, an error raised by a rule.
fn postgres_fault(code: &str) -> Option<Fault> {
    Some(match code {
        "53100" => Fault::Full,                               // disk_full
        "25006" | "42501" => Fault::ReadOnly, // read-only transaction (a standby), no privilege
        "55P03" | "57014" | "40001" | "40P01" => Fault::Busy, // lock or statement timeout, conflicts
        _ if code.starts_with("58") || code.starts_with("XX") => Fault::Io, // system, internal
        _ if ["22", "23", "42", "P0"]
            .iter()
            .any(|class| code.starts_with(class)) =>
        {
            return None;
        }
        _ => Fault::Other, // connection lost, server shutting down, out of resources, …
    })
}

/// The writer's last outcome, published to `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteHealth {
    /// The last write (or probe) committed.
    Writable,
    /// The last write (or probe) failed; cleared by the next one that commits.
    Failing(Fault),
}

/// The database file as opened at start-up: its path and its identity (device and inode), so a
/// file deleted or swapped for another while the index runs is noticed.
#[derive(Debug, Clone)]
pub struct DbFile {
    path: PathBuf,
    identity: Identity,
}

type Identity = (u64, u64);

impl DbFile {
    /// Remembers what `path` is now.
    pub fn identify(path: &Path) -> io::Result<DbFile> {
        Ok(DbFile {
            path: path.to_owned(),
            identity: identity(path)?,
        })
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still names the file opened at start-up (one `stat`).
    pub fn unchanged(&self) -> bool {
        identity(&self.path).is_ok_and(|now| now == self.identity)
    }
}

#[cfg(unix)]
fn identity(path: &Path) -> io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> io::Result<Identity> {
    // No inode numbers to compare: only a deleted file is noticed.
    std::fs::metadata(path).map(|_| (0, 0))
}
