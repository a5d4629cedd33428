//! The single writer: every change to the database goes through one task that owns one
//! connection and commits in groups.
//!
//! With `synchronous = FULL` a commit costs an fsync, and SQLite allows one writer at a time, so
//! one commit per request would cap registrations at the disk's fsync rate. Instead the writer
//! takes every change that queued up while the previous commit was syncing, applies them in one
//! `BEGIN IMMEDIATE … COMMIT` and only then answers each of them: one fsync acknowledges the
//! whole group, and no request is answered before its change is on disk. A change that fails
//! (as opposed to being refused, like a replayed signature) rolls the group back; the group is
//! then retried one change per transaction so a single bad change cannot fail the others. When
//! the database itself fails (a full disk, an I/O error) every change of the group is refused
//! with the [`Fault`], and the task recovers by itself once the cause is gone ([`super::commit`]).

use std::sync::Arc;

use proto::api::{Candidate, PeerRecord};
use sqlx::AnyConnection;
use sqlx::any::AnyConnectOptions;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::metrics::Metrics;

use super::backend::Backend;
use super::cache::LookupCache;
use super::change::{
    Block, Delete, Deposit, Done, Heartbeat, InsertKeyless, Membership, Op, Purge, Take, Update,
    UpsertKeyed, UsedSignature, Vouch, WriteError,
};
use super::clock::Liveness;
use super::coherence::Replica;
use super::commit::{self, Committer, Job};
use super::health::{DbFile, WriteHealth};
use super::peers::Owner;
use super::quota::{Origin, Quotas};
use crate::naming::Name;

/// Changes that may wait for the writer before senders wait too.
const QUEUE: usize = 4096;

/// Sends changes to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    health: watch::Receiver<WriteHealth>,
    file: Option<Arc<DbFile>>,
}

/// What the writer task works on and with.
pub struct WriterParts {
    /// The writer's own connection, outside the pool.
    pub connection: AnyConnection,
    /// How to reopen the connection if a failure leaves it unusable (never creating the file).
    pub options: AnyConnectOptions,
    /// Which database it is.
    pub backend: Backend,
    /// SQLite's database file as opened at start-up.
    pub file: Option<DbFile>,
    /// PostgreSQL: this replica, which announces the records it changes to the others.
    pub replica: Option<Replica>,
    /// Which records are live (and which expired).
    pub liveness: Liveness,
    /// The quotas registrations are held to.
    pub quotas: Quotas,
    /// The lookup cache, to which every committed change is applied before it is acknowledged.
    pub cache: Arc<LookupCache>,
    /// Where commits and write failures are counted.
    pub metrics: Arc<Metrics>,
}

impl Writer {
    /// Starts the writer task on `tasks`. Once `stop` is cancelled it refuses new changes
    /// ([`WriteError::Stopped`]), commits every change already queued, closes its connection
    /// and ends.
    pub fn spawn(parts: WriterParts, stop: CancellationToken, tasks: &TaskTracker) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (health, health_rx) = watch::channel(WriteHealth::Writable);
        let file = parts.file.map(Arc::new);
        parts.metrics.db_writable(true);
        let committer = Committer {
            connection: Some(parts.connection),
            options: parts.options,
            backend: parts.backend,
            file: file.clone(),
            replica: parts.replica,
            liveness: parts.liveness,
            quotas: parts.quotas,
            cache: parts.cache,
            metrics: parts.metrics,
            health,
        };
        tasks.spawn(commit::run(committer, queue, stop));
        Writer {
            jobs,
            health: health_rx,
            file,
        }
    }

    /// The outcome of the last write: [`WriteHealth::Failing`] from a failed write until one
    /// commits again.
    pub fn health(&self) -> WriteHealth {
        *self.health.borrow()
    }

    /// The SQLite database file the writer writes, as opened at start-up.
    pub fn file(&self) -> Option<&DbFile> {
        self.file.as_deref()
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
        self.record(Op::InsertKeyless(InsertKeyless {
            uuid,
            addr,
            origin,
            token_hash,
        }))
        .await
    }

    /// Creates or refreshes the record of `public_key` (whose UUID is `uuid`), replacing its
    /// candidates with `candidates` (already checked, see [`crate::candidates::check`]); an
    /// expired record comes back as new (fresh `registered_at`).
    // One argument per column of the keyed row; a struct would only restate them.
    #[allow(clippy::too_many_arguments)]
    pub async fn upsert_keyed(
        &self,
        uuid: Uuid,
        addr: String,
        origin: Origin,
        name: Option<Name>,
        public_key: String,
        signature: UsedSignature,
        candidates: Vec<Candidate>,
    ) -> Result<PeerRecord, WriteError> {
        self.record(Op::UpsertKeyed(UpsertKeyed {
            uuid,
            addr,
            origin,
            name,
            public_key,
            signature,
            candidates,
        }))
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
        self.record(Op::Update(Update {
            uuid,
            owner,
            addr,
            origin,
            name,
            signature,
        }))
        .await
    }

    /// Refreshes a live record's `last_seen`, if `owner` still owns it.
    pub async fn heartbeat(
        &self,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    ) -> Result<PeerRecord, WriteError> {
        self.record(Op::Heartbeat(Heartbeat {
            uuid,
            owner,
            signature,
        }))
        .await
    }

    /// Deletes a live record, if `owner` still owns it.
    pub async fn delete(
        &self,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    ) -> Result<(), WriteError> {
        self.submit(Op::Delete(Delete {
            uuid,
            owner,
            signature,
        }))
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
        self.submit(Op::Membership(Membership {
            room,
            join,
            uuid,
            owner,
            signature,
        }))
        .await
        .map(|_| ())
    }

    /// Deletes up to `limit` expired records (and forgets signatures that expired); returns how
    /// many records went.
    pub async fn purge(&self, limit: u32) -> Result<u64, WriteError> {
        match self.submit(Op::Purge(Purge { limit })).await? {
            Done::Purged(n) => Ok(n),
            _ => unreachable!("purge answers with a count"),
        }
    }

    /// Stores a sealed letter for `recipient` from the live keyed record `sender` (whose key,
    /// `sender_key`, signed the request), unless the recipient blocks it or a mailbox cap
    /// would be passed; returns its number and when it expires.
    pub async fn deposit(
        &self,
        recipient: Uuid,
        sender: Uuid,
        sender_key: String,
        sealed: Vec<u8>,
        signature: UsedSignature,
    ) -> Result<(i64, String), WriteError> {
        let op = Op::Deposit(Deposit {
            recipient,
            sender,
            sender_key,
            sealed,
            signature,
        });
        match self.submit(op).await? {
            Done::Deposited { id, expires_at } => Ok((id, expires_at)),
            _ => unreachable!("deposits answer with the letter's number"),
        }
    }

    /// Spends an owner's signature (so the request cannot be replayed) and checks that
    /// `owner` still owns the live record `uuid`, before a read on its behalf.
    pub async fn vouch(
        &self,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
    ) -> Result<(), WriteError> {
        self.submit(Op::Vouch(Vouch {
            uuid,
            owner,
            signature,
        }))
        .await
        .map(|_| ())
    }

    /// Deletes the waiting letters of `uuid`'s mailbox numbered up to `through`, if `owner`
    /// owns the live record; returns how many went.
    pub async fn take(
        &self,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
        through: i64,
    ) -> Result<u64, WriteError> {
        self.deleted(Op::Take(Take {
            uuid,
            owner,
            signature,
            through,
        }))
        .await
    }

    /// Makes `uuid`'s mailbox refuse mail from `sender` (`block`, deleting its waiting
    /// letters, whose number it returns) or accept it again.
    pub async fn block(
        &self,
        uuid: Uuid,
        owner: Owner,
        signature: Option<UsedSignature>,
        sender: Uuid,
        block: bool,
    ) -> Result<u64, WriteError> {
        self.deleted(Op::Block(Block {
            uuid,
            owner,
            signature,
            sender,
            block,
        }))
        .await
    }

    async fn deleted(&self, op: Op) -> Result<u64, WriteError> {
        match self.submit(op).await? {
            Done::Deleted(n) => Ok(n),
            _ => unreachable!("mailbox changes answer with a count"),
        }
    }

    /// Deletes up to `limit` expired letters; returns how many went.
    pub async fn purge_mailbox(&self, limit: u32) -> Result<u64, WriteError> {
        match self.submit(Op::PurgeMail(limit)).await? {
            Done::Purged(n) => Ok(n),
            _ => unreachable!("purge answers with a count"),
        }
    }
}
