//! The vocabulary of changes: what the writer is asked to do ([`Op`], one struct per
//! operation), what a change that went through answers ([`Done`]) and why one was not made
//! ([`WriteError`]).
//!
//! It depends on no other part of the write path, so the queue ([`super::writer`]), the
//! transaction loop ([`super::commit`]), the SQL ([`super::apply`], [`super::batch`]) and the
//! lookup cache ([`super::cache`]) all depend on it rather than on each other.

use proto::api::{Candidate, PeerRecord};
use uuid::Uuid;

use super::health::Fault;
use super::mailbox::MailRefusal;
use super::peers::Owner;
use super::quota::{Exceeded, Origin};
use crate::naming::Name;

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
    /// The mailbox refuses the change (a blocked sender, a cap).
    #[error("{0}")]
    Mail(MailRefusal),
    /// The change itself failed in the database (a constraint it breaks, a bug).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database cannot be written at the moment (full disk, I/O error, …); nothing of the
    /// change was stored.
    #[error("{}", .0.problem())]
    Unavailable(Fault),
    /// The writer task has stopped (the service is shutting down).
    #[error("the index is shutting down")]
    Stopped,
}

/// A new keyless record. It has no name: a name needs a key.
pub(super) struct InsertKeyless {
    pub(super) uuid: Uuid,
    pub(super) addr: String,
    pub(super) origin: Origin,
    pub(super) token_hash: String,
}

/// A keyed record created, refreshed, or (after it expired) created anew.
pub(super) struct UpsertKeyed {
    pub(super) uuid: Uuid,
    pub(super) addr: String,
    pub(super) origin: Origin,
    pub(super) name: Option<Name>,
    pub(super) public_key: String,
    pub(super) signature: UsedSignature,
    /// The signed candidate list, replacing the stored one (checked by the caller).
    pub(super) candidates: Vec<Candidate>,
}

/// A live record's new address and name, by its owner.
pub(super) struct Update {
    pub(super) uuid: Uuid,
    pub(super) owner: Owner,
    pub(super) addr: String,
    pub(super) origin: Origin,
    pub(super) name: Option<Name>,
    pub(super) signature: Option<UsedSignature>,
}

/// A live record refreshed by its owner.
pub(super) struct Heartbeat {
    pub(super) uuid: Uuid,
    pub(super) owner: Owner,
    pub(super) signature: Option<UsedSignature>,
}

/// A live record deleted by its owner.
pub(super) struct Delete {
    pub(super) uuid: Uuid,
    pub(super) owner: Owner,
    pub(super) signature: Option<UsedSignature>,
}

/// A live record joining (`join`) or leaving `room`, by its owner.
pub(super) struct Membership {
    pub(super) room: String,
    pub(super) join: bool,
    pub(super) uuid: Uuid,
    pub(super) owner: Owner,
    pub(super) signature: Option<UsedSignature>,
}

/// Up to `limit` expired records deleted (and expired signatures forgotten).
pub(super) struct Purge {
    pub(super) limit: u32,
}

/// A sealed letter for `recipient`, deposited by the live keyed record `sender` whose key
/// (64 lowercase hex digits) signed the request.
pub(super) struct Deposit {
    pub(super) recipient: Uuid,
    pub(super) sender: Uuid,
    pub(super) sender_key: String,
    pub(super) sealed: Vec<u8>,
    pub(super) signature: UsedSignature,
}

/// A live record's owner proving itself (spending its signature) before a read.
pub(super) struct Vouch {
    pub(super) uuid: Uuid,
    pub(super) owner: Owner,
    pub(super) signature: Option<UsedSignature>,
}

/// The owner of `uuid` deleting its waiting letters numbered up to `through`.
pub(super) struct Take {
    pub(super) uuid: Uuid,
    pub(super) owner: Owner,
    pub(super) signature: Option<UsedSignature>,
    pub(super) through: i64,
}

/// The owner of `uuid` refusing mail from `sender` (`block`), or accepting it again.
pub(super) struct Block {
    pub(super) uuid: Uuid,
    pub(super) owner: Owner,
    pub(super) signature: Option<UsedSignature>,
    pub(super) sender: Uuid,
    pub(super) block: bool,
}

/// One change.
pub(super) enum Op {
    InsertKeyless(InsertKeyless),
    UpsertKeyed(UpsertKeyed),
    Update(Update),
    Heartbeat(Heartbeat),
    Delete(Delete),
    Membership(Membership),
    Purge(Purge),
    Deposit(Deposit),
    Vouch(Vouch),
    Take(Take),
    Block(Block),
    /// Up to this many expired letters deleted.
    PurgeMail(u32),
}

impl Op {
    /// The signature this change spends, if it is signed.
    pub(super) fn signature(&self) -> Option<&UsedSignature> {
        match self {
            Op::UpsertKeyed(op) => Some(&op.signature),
            Op::Update(Update { signature, .. })
            | Op::Heartbeat(Heartbeat { signature, .. })
            | Op::Delete(Delete { signature, .. })
            | Op::Membership(Membership { signature, .. })
            | Op::Vouch(Vouch { signature, .. })
            | Op::Take(Take { signature, .. })
            | Op::Block(Block { signature, .. }) => signature.as_ref(),
            Op::Deposit(op) => Some(&op.signature),
            Op::InsertKeyless(_) | Op::Purge(_) | Op::PurgeMail(_) => None,
        }
    }
}

/// What a change that went through answers.
// Each answer is moved once, through a oneshot channel: boxing the record would add an
// allocation per write and save nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Done {
    /// The record as stored now.
    Record(PeerRecord),
    /// A deletion or membership change was made.
    Changed,
    /// How many expired records (or letters) the purge deleted.
    Purged(u64),
    /// A letter was stored.
    Deposited {
        /// Its number.
        id: i64,
        /// When it expires, as stored.
        expires_at: String,
    },
    /// How many letters an owner's change deleted.
    Deleted(u64),
}
