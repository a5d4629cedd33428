//! peerlink's index service: peers register their UDP address and look each other up.
//! It is only a phone book; no chat message passes through it.

pub mod candidates;
pub mod config;
pub mod db;
pub mod http;
pub mod ice;
pub mod maintenance;
pub mod metrics;
pub mod naming;
pub mod serve;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use http::{app, openapi};

use crate::db::cache::LookupCache;
use crate::db::coherence::{self, Replica};
use crate::db::health::DbFile;
use crate::db::writer::WriterParts;
use crate::db::{Backend, Clock, Liveness, Now, Writer};
use crate::http::ratelimit::RateLimits;
use crate::metrics::Metrics;

/// Everything a request handler needs; one pointer, so cloning it for every middleware and
/// handler of every request costs one atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    /// The database's pool, for reads.
    pub pool: AnyPool,
    /// Recently used records in memory, for lookups by UUID.
    pub cache: Arc<LookupCache>,
    /// The single writer every change goes through.
    pub writer: Writer,
    /// The configuration the service started with.
    pub config: Arc<Config>,
    /// This instance's metrics.
    pub metrics: Arc<Metrics>,
    /// Per-client rate limits.
    pub limits: Arc<RateLimits>,
    /// The clock and TTL that decide which records are live.
    pub liveness: Liveness,
    /// The STUN and TURN servers owner answers carry (none unless `--turn-url` is given).
    pub ice: ice::IceServers,
}

impl Shared {
    /// The index's clock read now, as the read queries take it.
    pub fn now(&self) -> Now {
        self.liveness.now()
    }
}

/// A running index minus the HTTP listener: the database, the writer and the background
/// purge. Tests build routers from it with [`Service::app`]; [`run`] serves it.
///
/// Its tasks stop through one cancellation token: [`Service::shutdown`] cancels the purge's
/// child token first (a purge under way still needs the writer), then the token itself, which
/// the writer watches; dropping the service cancels it too.
pub struct Service {
    state: AppState,
    stop: DropGuard,
    stop_purge: CancellationToken,
    purge: JoinHandle<()>,
    tasks: TaskTracker,
}

impl Service {
    /// Checks `config` ([`Config::validate`]), opens the database (creating and migrating it
    /// if needed), proves it takes writes, and starts the writer and the background purge.
    /// A configuration or database the index cannot work with is refused with one sentence.
    pub async fn open(config: Config) -> anyhow::Result<Service> {
        Service::open_with_clock(config, Clock::System).await
    }

    /// [`Service::open`] with every liveness decision (expiry, purge, remaining TTL) read
    /// from `clock`: tests pass a [`db::ManualClock`] to move time on instead of sleeping.
    pub async fn open_with_clock(config: Config, clock: Clock) -> anyhow::Result<Service> {
        config.validate().map_err(anyhow::Error::msg)?;
        if config.turn_secret.as_ref().is_some_and(|s| !s.is_empty())
            && config.ice_urls().next().is_none()
        {
            tracing::warn!("--turn-secret is set but no --turn-url: peers get no ICE servers");
        }
        let largest_deposit = proto::mailbox::MAX_SEALED.div_ceil(3) * 4 + 128;
        if config.max_body_bytes < largest_deposit {
            tracing::warn!(
                max_body_bytes = config.max_body_bytes,
                "--max-body-bytes is below {largest_deposit}: the largest sealed letters will be \
                 refused with 413"
            );
        }
        let url = config.database_url.clone();
        let backend =
            Backend::of(&url).context("--database-url is neither sqlite: nor postgres:")?;
        let shown = config.database_shown();
        let unwritable = |error: sqlx::Error| match backend {
            Backend::Sqlite => anyhow::anyhow!(
                "cannot write the database {shown} ({error}): check that the file and its \
                 directory are writable and that its file system is not full or mounted read-only"
            ),
            Backend::Postgres => anyhow::anyhow!(
                "cannot write the database {shown} ({error}): check that the server runs and \
                 takes connections, the user, password and database name, and that the user may \
                 write"
            ),
        };
        // The writer's own connection, outside the pool, so writes never wait for a pooled
        // connection and lookups never wait for the writer.
        let options = backend.options(&url, true)?;
        let mut connection = backend.connect(&options).await.map_err(unwritable)?;
        db::check_writable(&mut connection, backend)
            .await
            .map_err(unwritable)?;
        let file =
            match backend {
                Backend::Sqlite => {
                    let path = config::sqlite_path(&url);
                    Some(DbFile::identify(&path).with_context(|| {
                        format!("looking at the database file {}", path.display())
                    })?)
                }
                Backend::Postgres => None,
            };
        let pool = db::connect(backend, &url, config.database_connections)
            .await
            .with_context(|| format!("opening the database {shown}"))?;
        let liveness = Liveness {
            clock,
            ttl: config.peer_ttl,
        };
        let replicated = backend == Backend::Postgres;
        let cache = Arc::new(LookupCache::new(
            liveness.clone(),
            config.cache_entries,
            replicated,
        ));
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let replica = replicated.then(Replica::random);
        if let Some(replica) = &replica {
            coherence::spawn(
                url.clone(),
                options.clone(),
                cache.clone(),
                replica.clone(),
                stop.child_token(),
                &tasks,
            );
        }
        let parts = WriterParts {
            connection,
            options: backend.options(&url, false)?,
            backend,
            file,
            replica,
            liveness: liveness.clone(),
            quotas: db::quota::Quotas::from_config(&config),
            cache: cache.clone(),
            metrics: metrics.clone(),
        };
        let writer = Writer::spawn(parts, stop.child_token(), &tasks);
        let state = AppState(Arc::new(Shared {
            pool,
            cache,
            writer,
            limits: Arc::new(RateLimits::new(&config)),
            ice: config.ice_servers(),
            config: Arc::new(config),
            metrics,
            liveness,
        }));
        let stop_purge = stop.child_token();
        let purge = maintenance::spawn(state.clone(), stop_purge.clone(), &tasks);
        Ok(Service {
            state,
            stop: stop.drop_guard(),
            stop_purge,
            purge,
            tasks,
        })
    }

    /// The shared state handlers see.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The HTTP API over this service.
    pub fn app(&self) -> Router {
        app(self.state.clone())
    }

    /// Stops the background purge, lets the writer finish every queued change, and closes the
    /// database. Call it once no request can arrive any more.
    pub async fn shutdown(self) {
        let Service {
            state,
            stop,
            stop_purge,
            purge,
            tasks,
        } = self;
        stop_purge.cancel();
        if let Err(error) = purge.await {
            tracing::warn!(%error, "purge task failed");
        }
        stop.disarm().cancel();
        tasks.close();
        tasks.wait().await;
        state.pool.close().await;
    }
}

/// Opens the database, then serves HTTP on `listener` until `shutdown` completes; in-flight
/// requests finish, then the purge task stops, the writer drains and the pool is closed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = Service::open(config).await?;
    let limits = serve::Limits::from_config(&service.state.config);
    tracing::info!(
        addr = %listener.local_addr()?,
        ttl = ?service.state.config.peer_ttl,
        ice_servers = service.state.config.ice_urls().count(),
        "index listening"
    );
    serve::serve(
        listener,
        limits,
        &service.state.metrics,
        service.app(),
        shutdown,
    )
    .await
    .context("serving HTTP")?;
    service.shutdown().await;
    tracing::info!("index stopped");
    Ok(())
}

/// Completes on SIGINT (ctrl-c) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
