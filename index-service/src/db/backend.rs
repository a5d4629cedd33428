//! The two databases the index runs on: SQLite (the embedded default, one index process per
//! file) and PostgreSQL (any number of index processes, "replicas", on one database).
//!
//! Every query is written once, for sqlx's `Any` driver: `$N` parameters (SQLite reads them
//! too), `IS NOT DISTINCT FROM` rather than SQLite's `IS`, `CAST(EXISTS (…) AS INTEGER)` for
//! answers read as booleans, times as RFC 3339 text compared as text (PostgreSQL's columns are
//! `COLLATE "C"`, so text order is byte order as in SQLite), and no date functions: times are
//! computed in Rust from the index's clock. What differs is here: how a connection is set up,
//! how a write transaction starts, the migrations, and how other replicas learn of a change.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Executor};

/// SQLite's schema, one migration per change since the first release.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations");
/// PostgreSQL's schema: the same tables, indexes and rules as SQLite's after all its
/// migrations, written for PostgreSQL.
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL channel on which a replica tells the others which records it changed.
pub const CHANGES_CHANNEL: &str = "peerlink_records";

/// Every replica's writer holds this advisory lock for the length of its transaction, so writes
/// from all replicas are applied one transaction at a time, as SQLite's single writer applies
/// them: quotas and caps count exactly, a name is claimed by whoever commits first, and the
/// loser of a race sees the winner's row (409), never a half-written state.
const WRITE_LOCK: i64 = 0x7065_6572_6c69_6e6b; // "peerlink"

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`: one file, one index process.
    Sqlite,
    /// `postgres://…` or `postgresql://…`: a server any number of index processes share.
    Postgres,
}

impl Backend {
    /// The backend of `url`, if it is one of the two.
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// How to connect to `url`. A SQLite file is created if missing only when `create` is set
    /// (the writer reopening its connection must never create a new, empty file).
    pub fn options(self, url: &str, create: bool) -> anyhow::Result<AnyConnectOptions> {
        sqlx::any::install_default_drivers();
        let url = match self {
            Backend::Sqlite => sqlite_mode(url, create),
            Backend::Postgres => url.to_owned(),
        };
        Ok(AnyConnectOptions::from_str(&url)?)
    }

    /// A pool of connections for reads, each set up by [`Backend::prepare`].
    pub async fn pool(self, url: &str, size: u32) -> anyhow::Result<AnyPool> {
        let options = self.options(url, true)?;
        Ok(AnyPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |connection, _| Box::pin(self.prepare(connection)))
            .connect_with(options)
            .await?)
    }

    /// Opens one connection (the writer's), set up by [`Backend::prepare`].
    pub async fn connect(self, options: &AnyConnectOptions) -> sqlx::Result<AnyConnection> {
        let mut connection = options.connect().await?;
        self.prepare(&mut connection).await?;
        Ok(connection)
    }

    /// Sets up a new connection. SQLite: WAL and `synchronous = FULL` (every commit is fsynced
    /// before `COMMIT` returns, so a 2xx is only sent for a change that survives a crash or a
    /// power cut), a 5 s busy timeout, foreign keys, in-memory scratch space and a larger
    /// checkpoint interval (speed only). PostgreSQL's defaults (`synchronous_commit = on`,
    /// `fsync = on`) already make a commit durable before it returns; a statement or lock wait
    /// longer than the request timeout is cut short rather than holding a connection.
    async fn prepare(self, connection: &mut AnyConnection) -> sqlx::Result<()> {
        let setup = match self {
            Backend::Sqlite => {
                // Statement journals and RETURNING's scratch tables are per-statement scratch
                // space, not data: keeping them in memory spares the writer a temp file per
                // commit. A checkpoint every ~40 MB of WAL rather than every ~4 MB: the
                // committing writer pays for it. Durability is unaffected either way.
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                 PRAGMA temp_store = memory; PRAGMA wal_autocheckpoint = 10000"
            }
            Backend::Postgres => {
                "SET synchronous_commit = on; SET lock_timeout = '10s'; \
                 SET idle_in_transaction_session_timeout = '60s'"
            }
        };
        connection.execute(setup).await.map(drop)
    }

    /// Brings the schema up to date.
    pub async fn migrate(self, pool: &AnyPool) -> anyhow::Result<()> {
        match self {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Opens a write transaction on `connection`. SQLite: `BEGIN IMMEDIATE` takes the write
    /// lock up front, so a concurrent writer (another program) makes us wait in the busy
    /// timeout instead of failing the upgrade mid-way. PostgreSQL: the replicas' write lock
    /// ([`WRITE_LOCK`]), released by the commit or rollback.
    pub async fn begin_write(self, connection: &mut AnyConnection) -> sqlx::Result<()> {
        match self {
            Backend::Sqlite => {
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut *connection)
                    .await?;
            }
            Backend::Postgres => {
                sqlx::query("BEGIN").execute(&mut *connection).await?;
                sqlx::query("SELECT count(*) FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
                    .bind(WRITE_LOCK)
                    .execute(&mut *connection)
                    .await?;
            }
        }
        Ok(())
    }
}

/// `url` with the SQLite open mode the caller needs (`rwc` creates the file, `rw` does not),
/// unless the URL sets one itself.
fn sqlite_mode(url: &str, create: bool) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("mode="))
        .collect();
    let user_mode = query.split('&').find(|pair| pair.starts_with("mode="));
    let mode = match user_mode {
        Some(mode) if create => mode,
        _ if create => "mode=rwc",
        _ => "mode=rw",
    };
    pairs.push(mode);
    format!("{base}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of("sqlite://index.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("postgresql://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("mysql://u@h/db"), None);
    }

    #[test]
    fn the_writer_never_creates_a_sqlite_file() {
        assert_eq!(sqlite_mode("sqlite://a.db", true), "sqlite://a.db?mode=rwc");
        assert_eq!(sqlite_mode("sqlite://a.db", false), "sqlite://a.db?mode=rw");
        assert_eq!(
            sqlite_mode("sqlite://a.db?mode=rw&cache=private", true),
            "sqlite://a.db?cache=private&mode=rw"
        );
        assert_eq!(
            sqlite_mode("sqlite://a.db?mode=rwc", false),
            "sqlite://a.db?mode=rw"
        );
    }
}
