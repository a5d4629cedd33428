//! The single writer: every change to the database goes through one task that owns one
//! connection and commits in groups.
//!
//! With `synchronous = FULL` a commit costs an fsync, and SQLite allows one writer at a time, so
//! one commit per request would cap registrations at the disk's fsync rate. Instead the writer
//! takes every change that queued up while the previous commit was syncing, applies them in one
//! `BEGIN IMMEDIATE … COMMIT` and only then answers each of them: one fsync acknowledges the
//! whole group, and no request is answered before its change is on disk. A change that fails
//! (as opposed to being refused, like a replayed signature) rolls the group back; the group is
//! then retried one change per transaction so a single bad change cannot fail the others.

use std::sync::Arc;
use std::time::Duration;

use proto::api::PeerRecord;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::metrics::Metrics;

use super::batch;
use super::cache::LookupCache;
use super::ops::{Done, Op, apply};
use super::quota::{self, Exceeded, Origin, Quotas};
use super::{Owner, names, ttl_modifier};
use crate::naming::Name;

/// Most changes committed in one transaction.
const MAX_GROUP: usize = 512;
/// Changes that may wait for the writer before senders wait too.
const QUEUE: usize = 4096;

/// A signature the index accepted, remembered until its timestamp could no longer pass the
/// clock-skew check, so the same signed request cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedSignature {
    /// Hex SHA-256 of the signature bytes (not of its hex text, which has two cases).
    pub hash: String,
    /// Unix seconds after which the signature is refused anyway.
    pub expires_at: i64,
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The signature was used before.
    #[error("this signed request was already used")]
    Replay,
    /// No live record with that UUID and owner (it expired, was deleted, or changed hands).
    #[error("no live record with that owner")]
    Gone,
    /// Another live record holds the name, or one that looks the same.
    #[error("the name is taken")]
    NameTaken,
    /// The write would pass a per-address quota or the global cap on records.
    #[error("{0}")]
    Quota(Exceeded),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The writer task has stopped (the service is shutting down).
    #[error("the index is shutting down")]
    Stopped,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Done, WriteError>>,
}

/// Sends changes to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

/// The running writer task.
pub struct WriterTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl WriterTask {
    /// Refuses new changes ([`WriteError::Stopped`]), commits every change already queued,
    /// closes the connection and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "writer task failed");
        }
    }
}

impl Writer {
    /// Starts the writer task on `connection`; records older than `ttl` count as expired,
    /// and registrations are held to `quotas`. Every committed change is applied to `cache`
    /// before it is acknowledged.
    pub fn spawn(
        connection: SqliteConnection,
        ttl: Duration,
        quotas: Quotas,
        cache: Arc<LookupCache>,
        metrics: Arc<Metrics>,
    ) -> (Writer, WriterTask) {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(
            connection,
            queue,
            stopped,
            ttl_modifier(ttl),
            quotas,
            cache,
            metrics,
        ));
        (Writer { jobs }, WriterTask { stop, task })
    }

    async fn submit(&self, op: Op) -> Result<Done, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    async fn record(&self, op: Op) -> Result<PeerRecord, WriteError> {
        match self.submit(op).await? {
            Done::Record(record) => Ok(record),
            _ => unreachable!("record operations answer with a record"),
        }
    }

    /// Stores a new keyless record owned by the token whose hash is `token_hash`.
    pub async fn insert_keyless(
        &self,
        uuid: Uuid,
        addr: String,
        origin: Origin,
        token_hash: String,
    ) -> Result<PeerRecord, WriteError> {
        self.record(Op::InsertKeyless {
            uuid,
            addr,
            origin,
            token_hash,
        })
        .await
    }

    /// Creates or refreshes the record of `public_key` (whose UUID is `uuid`); an expired
    /// record comes back as new (fresh `registered_at`).
    pub async fn upsert_keyed(
        &self,
        uuid: Uuid,
        addr: String,
        origin: Origin,
        name: Option<Name>,
        public_key: String,
        signature: UsedSignature,
    ) -> Result<PeerRecord, WriteError> {
        self.record(Op::UpsertKeyed {
            uuid,
            addr,
            origin,
            name,
            public_key,
            signature,
        })
        .await
    }

    /// Sets a live record's address and name and refreshes it, if `owner` still owns it.
    pub async fn update(
        &self,
        uuid: Uuid,
        owner: Owner,
        addr: String,
        origin: Origin,
        name: Option<Name>,
        signature: Option<UsedSignature>,
    ) -> Result<PeerRecord, WriteError> {
        self.record(Op::Update {
            uuid,
            owner,
            addr,
            origin,
            name,
            signature,
        })
        .await
    }

    /// Refreshes a live record's `last_seen`, if `owner` still owns it.
    pub async fn heartbeat(
        &self,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    ) -> Result<PeerRecord, WriteError> {
        self.record(Op::Heartbeat {
            uuid,
            owner,
            signature,
        })
        .await
    }

    /// Deletes a live record, if `owner` still owns it.
    pub async fn delete(
        &self,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    ) -> Result<(), WriteError> {
        self.submit(Op::Delete {
            uuid,
            owner,
            signature,
        })
        .await
        .map(|_| ())
    }

    /// Adds the live record `uuid` to `room` (`join`) or removes it, if `owner` owns it.
    pub async fn membership(
        &self,
        room: String,
        join: bool,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    ) -> Result<(), WriteError> {
        self.submit(Op::Membership {
            room,
            join,
            uuid,
            owner,
            signature,
        })
        .await
        .map(|_| ())
    }

    /// Deletes up to `limit` expired records (and forgets signatures that expired); returns how
    /// many records went.
    pub async fn purge(&self, limit: u32) -> Result<u64, WriteError> {
        match self.submit(Op::Purge { limit }).await? {
            Done::Purged(n) => Ok(n),
            _ => unreachable!("purge answers with a count"),
        }
    }
}

async fn run(
    mut connection: SqliteConnection,
    mut queue: mpsc::Receiver<Job>,
    mut stopped: oneshot::Receiver<()>,
    ttl_mod: String,
    quotas: Quotas,
    cache: Arc<LookupCache>,
    metrics: Arc<Metrics>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut stopping = false;
    loop {
        tokio::select! {
            received = queue.recv_many(&mut group, MAX_GROUP) => {
                if received == 0 {
                    break;
                }
            }
            _ = &mut stopped, if !stopping => {
                // Closing refuses new sends but keeps what is queued, which the loop drains.
                queue.close();
                stopping = true;
                continue;
            }
        }
        match apply_group(&mut connection, &group, &ttl_mod, &quotas).await {
            Ok(results) => {
                metrics.commit_group(group.len());
                for (job, result) in group.drain(..).zip(results) {
                    cache.observe(&job.op, &result);
                    let _ = job.reply.send(result);
                }
            }
            Err(error) if group.len() == 1 => {
                let job = group.pop().expect("one job");
                let _ = job.reply.send(Err(refusal(error)));
            }
            Err(error) => {
                tracing::warn!(%error, changes = group.len(), "group commit failed; retrying one by one");
                for job in group.drain(..) {
                    let result = match apply_group(
                        &mut connection,
                        std::slice::from_ref(&job),
                        &ttl_mod,
                        &quotas,
                    )
                    .await
                    {
                        Ok(mut results) => results.pop().expect("one result"),
                        Err(error) => Err(refusal(error)),
                    };
                    cache.observe(&job.op, &result);
                    let _ = job.reply.send(result);
                }
            }
        }
    }
    if let Err(error) = connection.close().await {
        tracing::warn!(%error, "closing the writer's connection");
    }
    tracing::debug!("writer stopped");
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

/// Applies `jobs` in one transaction; `Err` means nothing was committed.
async fn apply_group(
    connection: &mut SqliteConnection,
    jobs: &[Job],
    ttl_mod: &str,
    quotas: &Quotas,
) -> sqlx::Result<Vec<Result<Done, WriteError>>> {
    // IMMEDIATE takes the write lock up front, so a concurrent writer (another process, the
    // sqlite3 shell) makes us wait in busy_timeout instead of failing the upgrade mid-way.
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(jobs.len());
    let mut rest = jobs;
    while let Some(job) = rest.first() {
        let run = rest
            .iter()
            .take_while(|job| batch::batchable(&job.op))
            .count();
        let chunk = batch::CHUNKS.iter().copied().find(|&size| size <= run);
        let ops: Vec<&Op> = rest[..chunk.unwrap_or(0)]
            .iter()
            .map(|job| &job.op)
            .collect();
        if let Some(chunk) = chunk
            && quota::batch_fits(&mut tx, quotas, &ops, ttl_mod).await?
        {
            results.extend(
                batch::insert_keyless(&mut tx, &ops)
                    .await?
                    .into_iter()
                    .map(Ok),
            );
            rest = &rest[chunk..];
        } else {
            results.push(apply(&mut tx, &job.op, ttl_mod, quotas).await?);
            rest = &rest[1..];
        }
    }
    tx.commit().await?;
    Ok(results)
}
