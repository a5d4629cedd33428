//! The writer task's loop: group commit, and recovery when the database fails.
//!
//! Transactions are opened with plain statements ([`Backend::begin_write`], `COMMIT`,
//! `ROLLBACK`) rather than sqlx's `Transaction`, so their state is ours: after SQLite rolls a
//! transaction back by itself (it may, on a full disk or an I/O error) sqlx's own bookkeeping would still
//! count it as open and refuse every later `begin_with` until a restart. After any failure the
//! task sends `ROLLBACK` (an error saying no transaction is active is fine); if even that
//! fails, it drops the connection and opens a new one for the next group, but only on the very
//! file opened at start-up (never creating one).
//!
//! Before each `COMMIT` on SQLite the task checks that the database's path still names the file
//! it opened ([`DbFile`]): a change committed to a deleted or replaced file would be
//! acknowledged and then lost at the next restart, so such a group is rolled back and refused.
//! On PostgreSQL the transaction also announces the records it changed to the other replicas
//! ([`super::coherence`]); the announcement is delivered only if the transaction commits.
//!
//! While writes fail, the task publishes [`WriteHealth::Failing`] (for `/readyz`) and, every
//! [`PROBE_EVERY`] without a successful write, tries a one-page write of its own, so the index
//! becomes ready again once the cause is gone even if no client writes meanwhile.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::apply::apply;
use super::backend::Backend;
use super::batch;
use super::cache::LookupCache;
use super::change::{Delete, Done, Op, WriteError};
use super::clock::Liveness;
use super::coherence::{self, Replica};
use super::health::{self, DbFile, Fault, WriteHealth};
use super::names;
use super::quota::{self, Quotas};
use crate::metrics::Metrics;

/// Most changes committed in one transaction.
const MAX_GROUP: usize = 512;
/// How long after a failed write the task tries a write of its own.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Why a transaction did not commit.
enum Failed {
    /// Nothing can be written now; the detail is for the log.
    Environment(Fault, String),
    /// This change cannot be written (a constraint it breaks, a decoding bug).
    Change(sqlx::Error),
}

impl From<sqlx::Error> for Failed {
    fn from(error: sqlx::Error) -> Self {
        match Fault::of(&error) {
            Some(fault) => Failed::Environment(fault, error.to_string()),
            None => Failed::Change(error),
        }
    }
}

/// A change and where its answer goes.
pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Done, WriteError>>,
}

/// What the task owns.
pub(super) struct Committer {
    /// `None` after a failure left the connection unusable; reopened for the next write.
    pub(super) connection: Option<AnyConnection>,
    /// How to reopen it (never creating a SQLite file).
    pub(super) options: AnyConnectOptions,
    pub(super) backend: Backend,
    /// SQLite's file as opened at start-up.
    pub(super) file: Option<Arc<DbFile>>,
    /// PostgreSQL: this replica, which announces the records it changes.
    pub(super) replica: Option<Replica>,
    /// What is live: read once per change, as SQLite read its own `'now'` once per statement.
    pub(super) liveness: Liveness,
    /// Per-address quotas and the global cap, checked inside each transaction.
    pub(super) quotas: Quotas,
    pub(super) cache: Arc<LookupCache>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: watch::Sender<WriteHealth>,
}

/// Runs until `stop` is cancelled and the queue is drained (or every sender is gone).
pub(super) async fn run(
    mut committer: Committer,
    mut queue: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut stopping = false;
    let mut next_probe = Instant::now();
    loop {
        let failing = *committer.health.borrow() != WriteHealth::Writable;
        tokio::select! {
            received = queue.recv_many(&mut group, MAX_GROUP) => {
                if received == 0 {
                    break;
                }
            }
            () = stop.cancelled(), if !stopping => {
                // Closing refuses new sends but keeps what is queued, which the loop drains.
                queue.close();
                stopping = true;
                continue;
            }
            () = tokio::time::sleep_until(next_probe), if failing && !stopping => {
                committer.probe().await;
                next_probe = Instant::now() + PROBE_EVERY;
                continue;
            }
        }
        if committer.commit(&mut group).await {
            next_probe = Instant::now() + PROBE_EVERY;
        }
    }
    if let Some(connection) = committer.connection.take()
        && let Err(error) = connection.close().await
    {
        tracing::warn!(%error, "closing the writer's connection");
    }
    tracing::debug!("writer stopped");
}

impl Committer {
    /// Commits `group` and answers each of its changes; true when the database failed.
    async fn commit(&mut self, group: &mut Vec<Job>) -> bool {
        let failed = match self.transaction(group).await {
            Ok(results) => {
                self.metrics.commit_group(group.len());
                if results.iter().any(proves_writable) {
                    self.set_health(WriteHealth::Writable);
                }
                for (job, result) in group.drain(..).zip(results) {
                    self.cache.observe(&job.op, &result);
                    let _ = job.reply.send(result);
                }
                return false;
            }
            Err(failed) => failed,
        };
        match failed {
            Failed::Environment(fault, detail) => {
                self.failed(fault, &detail, group.len());
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(WriteError::Unavailable(fault)));
                }
                true
            }
            Failed::Change(error) if group.len() == 1 => {
                let job = group.pop().expect("one job");
                let _ = job.reply.send(Err(refusal(error)));
                false
            }
            Failed::Change(error) => {
                tracing::warn!(%error, changes = group.len(), "group commit failed; retrying one by one");
                let mut environment = false;
                for job in group.drain(..) {
                    let result = match self.transaction(std::slice::from_ref(&job)).await {
                        Ok(mut results) => results.pop().expect("one result"),
                        Err(Failed::Change(error)) => Err(refusal(error)),
                        Err(Failed::Environment(fault, detail)) => {
                            self.failed(fault, &detail, 1);
                            environment = true;
                            Err(WriteError::Unavailable(fault))
                        }
                    };
                    self.cache.observe(&job.op, &result);
                    let _ = job.reply.send(result);
                }
                environment
            }
        }
    }

    /// Applies `jobs` in one transaction; `Err` means nothing was committed and the connection
    /// is ready for the next transaction.
    async fn transaction(&mut self, jobs: &[Job]) -> Result<Vec<Result<Done, WriteError>>, Failed> {
        let connection = open(
            &mut self.connection,
            &self.options,
            self.backend,
            &self.file,
        )
        .await?;
        let place = Place {
            backend: self.backend,
            file: self.file.as_deref(),
            replica: self.replica.as_ref(),
        };
        let result = apply_all(connection, place, jobs, &self.liveness, &self.quotas).await;
        if result.is_err() {
            self.roll_back().await;
        }
        result
    }

    /// A one-page write ([`health::check_writable`]): whether the database takes writes again.
    async fn probe(&mut self) {
        let result = async {
            let connection = open(
                &mut self.connection,
                &self.options,
                self.backend,
                &self.file,
            )
            .await?;
            if let Some(file) = self.file.as_deref()
                && !file.unchanged()
            {
                return Err(replaced(file));
            }
            health::check_writable(connection, self.backend).await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!("the database takes writes again");
                self.set_health(WriteHealth::Writable);
            }
            Err(failed) => {
                self.roll_back().await;
                let (fault, detail) = match failed {
                    Failed::Environment(fault, detail) => (fault, detail),
                    Failed::Change(error) => (Fault::Other, error.to_string()),
                };
                tracing::debug!(fault = fault.label(), detail, "write probe failed");
                self.set_health(WriteHealth::Failing(fault));
            }
        }
    }

    /// Ends whatever transaction a failure left open; drops a connection that cannot even
    /// do that.
    async fn roll_back(&mut self) {
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        match sqlx::query("ROLLBACK").execute(&mut *connection).await {
            Ok(_) => {}
            // SQLite already rolled it back (it does after some I/O and disk-full errors).
            // (PostgreSQL only warns when no transaction is open.)
            Err(error) if error.to_string().contains("no transaction is active") => {}
            Err(error) => {
                tracing::warn!(%error, "rollback failed; the writer will reopen its connection");
                if let Some(connection) = self.connection.take() {
                    let _ = connection.close_hard().await;
                }
            }
        }
    }

    fn failed(&mut self, fault: Fault, detail: &str, changes: usize) {
        self.metrics.write_failed(fault.label(), changes);
        if *self.health.borrow() == WriteHealth::Failing(fault) {
            tracing::debug!(fault = fault.label(), detail, changes, "write failed");
        } else {
            tracing::error!(
                fault = fault.label(),
                detail,
                changes,
                "the database refuses writes"
            );
        }
        self.set_health(WriteHealth::Failing(fault));
    }

    fn set_health(&self, health: WriteHealth) {
        if *self.health.borrow() == health {
            return;
        }
        self.metrics.db_writable(health == WriteHealth::Writable);
        self.health.send_replace(health);
    }
}

/// Whether a committed result shows that something was written (a purge that found nothing
/// to delete, or a refusal, commits without writing).
fn proves_writable(result: &Result<Done, WriteError>) -> bool {
    match result {
        Ok(Done::Record(_) | Done::Changed | Done::Deposited { .. } | Done::Deleted(_)) => true,
        Ok(Done::Purged(n)) => *n > 0,
        Err(_) => false,
    }
}

/// A failed change as its sender sees it: the unique name index refusing a write is a taken
/// name (the writer checks first, so this only happens if something else wrote the name).
fn refusal(error: sqlx::Error) -> WriteError {
    if names::is_name_conflict(&error) {
        WriteError::NameTaken
    } else {
        error.into()
    }
}

/// The connection in `slot`, reopened if a failure dropped it.
async fn open<'a>(
    slot: &'a mut Option<AnyConnection>,
    options: &AnyConnectOptions,
    backend: Backend,
    file: &Option<Arc<DbFile>>,
) -> Result<&'a mut AnyConnection, Failed> {
    if slot.is_none() {
        if file.as_ref().is_some_and(|file| !file.unchanged()) {
            return Err(Failed::Environment(
                Fault::Replaced,
                "not reopening a file that is not the one opened at start-up".into(),
            ));
        }
        let connection = backend.connect(options).await?;
        tracing::info!("reopened the writer's connection");
        *slot = Some(connection);
    }
    Ok(slot.as_mut().expect("just opened"))
}

/// Where a transaction is committed.
#[derive(Clone, Copy)]
struct Place<'a> {
    backend: Backend,
    /// SQLite's file, checked before the commit.
    file: Option<&'a DbFile>,
    /// PostgreSQL's replica, which announces what it changed.
    replica: Option<&'a Replica>,
}

/// Applies `jobs` in one transaction and commits it.
async fn apply_all(
    connection: &mut AnyConnection,
    place: Place<'_>,
    jobs: &[Job],
    liveness: &Liveness,
    quotas: &Quotas,
) -> Result<Vec<Result<Done, WriteError>>, Failed> {
    place.backend.begin_write(connection).await?;
    let mut results = Vec::with_capacity(jobs.len());
    let mut rest = jobs;
    while let Some(job) = rest.first() {
        let now = liveness.now();
        let chunk = batch::leading_chunk(rest.iter().map(|job| &job.op));
        let origins: Vec<_> = chunk.iter().map(|op| &op.origin).collect();
        // A run of keyless registrations is one multi-row INSERT only when all of it fits the
        // quotas; otherwise each is checked on its own, so the limits stay exact.
        if !chunk.is_empty() && quota::batch_fits(&mut *connection, quotas, &origins, &now).await? {
            let done = batch::insert_keyless(&mut *connection, &chunk, &now).await?;
            results.extend(done.into_iter().map(Ok));
            rest = &rest[chunk.len()..];
        } else {
            results.push(apply(&mut *connection, &job.op, &now, quotas).await?);
            rest = &rest[1..];
        }
    }
    if let Some(replica) = place.replica {
        for payload in replica.announcements(&changed_records(jobs, &results)) {
            coherence::announce(&mut *connection, &payload).await?;
        }
    }
    commit(connection, place.file).await?;
    Ok(results)
}

/// The records a group changed or deleted, for the other replicas' caches.
fn changed_records(jobs: &[Job], results: &[Result<Done, WriteError>]) -> Vec<Uuid> {
    jobs.iter()
        .zip(results)
        .filter_map(|(job, result)| match (&job.op, result) {
            (_, Ok(Done::Record(record))) => Some(record.uuid),
            (Op::Delete(Delete { uuid, .. }), Ok(Done::Changed)) => Some(*uuid),
            _ => None,
        })
        .collect()
}

/// Commits the open transaction, unless SQLite's database file is no longer the one opened at
/// start-up (one `stat`).
async fn commit(connection: &mut AnyConnection, file: Option<&DbFile>) -> Result<(), Failed> {
    if let Some(file) = file
        && !file.unchanged()
    {
        return Err(replaced(file));
    }
    sqlx::query("COMMIT").execute(&mut *connection).await?;
    Ok(())
}

/// The failure of writing to a database file that is no longer the one opened at start-up.
fn replaced(file: &DbFile) -> Failed {
    Failed::Environment(
        Fault::Replaced,
        format!(
            "{} is not the file opened at start-up",
            file.path().display()
        ),
    )
}
