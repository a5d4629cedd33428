//! Shared room state: a replicated key-value store per room, free of I/O.
//!
//! Each room's state is an [Automerge](automerge) document whose root map holds the keys
//! (text values, last writer wins by Automerge's rules, so concurrent writes converge to the
//! same value on every member). Members keep it in step with Automerge's sync protocol, peer to
//! peer over the encrypted channel ([`proto::chat::ChatMessage::State`]); see docs/protocol.md,
//! "Room state".
//!
//! Peers are hostile, members included, so a change is only applied when
//! - it is signed: the Automerge actor of every change is its author's Ed25519 public key, and
//!   the author signs `"peerlink-room-state-v1" || room || 0 || change hash`
//!   ([`signed_message`]). A member cannot forge another member's change, move a change into
//!   another room, or reuse an author's sequence numbers (which would split the document);
//! - it has the one shape we write: puts of text and deletes on keys of the root map;
//! - the room stays within the [`Limits`] afterwards.
//!
//! A sync message with any change that fails is undone as a whole ([`Reject`]) and counted.
//! The author shown for a value is the signer of the change that wrote it, never a claim.

mod check;
mod doc;
mod save;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proto::identity::Identity;
use uuid::Uuid;

pub use doc::RoomDoc;

/// How long after a sync message to a member was given up (it was unreachable) a fresh round
/// starts.
pub const STALL_AFTER: Duration = Duration::from_secs(3);
/// How often a room's state starts a fresh sync round with one member (the next in turn)
/// even when all seems in step (anti-entropy: it repairs whatever was lost however it was
/// lost).
pub const ROUND_EVERY: Duration = Duration::from_secs(10);
/// How long a member that sent something we refused is not synced with.
pub const QUIET_AFTER_REJECT: Duration = Duration::from_secs(10);

/// The limits every member applies, to its own writes and to what it receives, so that they
/// all refuse the same changes. They are chosen so that a whole room's state, signatures
/// included, fits one message (the endpoint's 1 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes.
    pub key: usize,
    /// Longest value, in bytes.
    pub value: usize,
    /// Most keys set at once.
    pub keys: usize,
    /// Most changes a room's history holds (every `/set` and `/unset` is one).
    pub changes: usize,
    /// Most bytes the history's changes take.
    pub history: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key: 64,
            value: 1024,
            keys: 1024,
            changes: 3000,
            history: 384 * 1024,
        }
    }
}

/// A key's value and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: String,
    /// The member whose signed change wrote it.
    pub author: Uuid,
}

/// A key that changed: what the user (and scripts) hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The room.
    pub room: String,
    /// The key.
    pub key: String,
    /// What it holds now (`None`: unset).
    pub entry: Option<Entry>,
    /// Who changed it: the writer, or for an unset the member whose change removed it.
    pub author: Uuid,
}

/// Why a write of ours was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The key is empty, too long, or has spaces or control characters.
    #[error(
        "`{0}` is not a key: use 1 to {max} bytes with no spaces or control characters",
        max = Limits::default().key
    )]
    BadKey(String),
    /// The value is too long.
    #[error("the value is {len} bytes; a room's values hold at most {max}")]
    ValueTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The room has as many keys as it may.
    #[error("#{room} holds {max} keys already; /unset one first")]
    TooManyKeys {
        /// The room.
        room: String,
        /// The limit.
        max: usize,
    },
    /// The room's history is full.
    #[error(
        "#{room}'s state is full ({changes} changes, {bytes} bytes of history; the limits are {max_changes} and {max_bytes}): it keeps every change, so it takes no more"
    )]
    HistoryFull {
        /// The room.
        room: String,
        /// Changes held.
        changes: usize,
        /// Bytes held.
        bytes: usize,
        /// The change limit.
        max_changes: usize,
        /// The byte limit.
        max_bytes: usize,
    },
}

/// Why a sync message from a member was refused (nothing of it is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// Not a sync message, or signatures that are not a list of them.
    Malformed,
    /// A change without a valid signature by its actor.
    Signature,
    /// A change of a shape we never write (nested objects, counters, lists, marks…).
    Shape,
    /// It would take the room past its [`Limits`].
    Full,
    /// The member sent something refused less than [`QUIET_AFTER_REJECT`] ago: what it sends
    /// meanwhile is dropped unread (so refusals cannot be made to cost us at its pace).
    Quiet,
}

impl Reject {
    /// The name the counters use.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Signature => "signature",
            Reject::Shape => "shape",
            Reject::Full => "full",
            Reject::Quiet => "quiet",
        }
    }
}

/// What a room's state asks to have stored: changes to append, or (after loading many
/// appended pieces) the whole state to keep instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The room.
    pub room: String,
    /// Automerge chunks (changes, or a whole document).
    pub data: Vec<u8>,
    /// Their signatures: 32-byte change hash then 64-byte signature, repeated.
    pub sigs: Vec<u8>,
    /// Whether this replaces everything stored for the room so far.
    pub replace: bool,
}

/// A room's state as stored: pieces of Automerge data, each with its signature records.
pub type Pieces = Vec<(Vec<u8>, Vec<u8>)>;

/// Counters for `/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sync messages sent.
    pub sent: u64,
    /// Their bytes (sync message and signatures).
    pub sent_bytes: u64,
    /// Sync messages received from members.
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// Changes of other members applied.
    pub applied: u64,
    /// Sync messages refused, by reason.
    pub rejected: BTreeMap<Reject, u64>,
    /// Sync messages from peers that are not members of the room (or for a room we are not in).
    pub not_member: u64,
}

impl Counters {
    /// The counters as `/stats` names them.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let rejected = |reason: Reject| self.rejected.get(&reason).copied().unwrap_or(0);
        vec![
            ("state.sent", self.sent),
            ("state.sent_bytes", self.sent_bytes),
            ("state.received", self.received),
            ("state.received_bytes", self.received_bytes),
            ("state.applied", self.applied),
            ("state.not_member", self.not_member),
            ("state.rejected_malformed", rejected(Reject::Malformed)),
            ("state.rejected_signature", rejected(Reject::Signature)),
            ("state.rejected_shape", rejected(Reject::Shape)),
            ("state.rejected_full", rejected(Reject::Full)),
            ("state.rejected_quiet", rejected(Reject::Quiet)),
        ]
    }
}

/// Every room's state, signed with our identity.
pub struct RoomStates {
    identity: Identity,
    limits: Limits,
    rooms: BTreeMap<String, RoomDoc>,
    counters: Counters,
}

impl RoomStates {
    /// No state yet; our changes are signed by `identity`.
    pub fn new(identity: Identity, limits: Limits) -> Self {
        RoomStates {
            identity,
            limits,
            rooms: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Takes back a room's state as stored (appended pieces in order, each with its
    /// signatures). Pieces that do not load are skipped (and logged). When there were many
    /// pieces, the whole state comes back as one [`Saved`] to replace them.
    pub fn restore(&mut self, room: &str, pieces: Pieces) -> Option<Saved> {
        let count = pieces.len();
        let doc = RoomDoc::load(room, &self.identity, self.limits, pieces);
        let compact = (count > 16).then(|| doc.save_all());
        self.rooms.insert(room.to_owned(), doc);
        compact
    }

    /// A room's state, made empty when there is none yet.
    fn doc(&mut self, room: &str) -> &mut RoomDoc {
        self.rooms
            .entry(room.to_owned())
            .or_insert_with(|| RoomDoc::new(room, &self.identity, self.limits))
    }

    /// What `key` holds in `room`.
    pub fn get(&self, room: &str, key: &str) -> Option<&Entry> {
        self.rooms.get(room)?.get(key)
    }

    /// Every key of `room`, in order.
    pub fn entries(&self, room: &str) -> Vec<(String, Entry)> {
        self.rooms
            .get(room)
            .map(|doc| doc.entries())
            .unwrap_or_default()
    }

    /// Sets (`Some`) or unsets (`None`) `key` in `room`: the update to report, or `None` when
    /// nothing changed.
    pub fn put(
        &mut self,
        room: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<Update>, StateError> {
        let identity = self.identity.clone();
        self.doc(room).put(&identity, key, value)
    }

    /// A sync message for `peer` about `room`, if there is anything to say: the Automerge
    /// message and the signatures of the changes it carries.
    pub fn generate(&mut self, room: &str, peer: Uuid, now: Instant) -> Option<(Vec<u8>, Vec<u8>)> {
        let message = self.doc(room).generate(peer, now)?;
        self.counters.sent += 1;
        self.counters.sent_bytes += (message.0.len() + message.1.len()) as u64;
        Some(message)
    }

    /// Starts a fresh sync round with `peer` about `room` (it joined, came back, or went
    /// quiet); returns whether we have anything to start it with (an empty state waits for
    /// members that have some).
    pub fn restart(&mut self, room: &str, peer: Uuid) -> bool {
        let doc = self.doc(room);
        doc.restart(peer);
        !doc.is_empty()
    }

    /// A sync message to `peer` was given up: every room's sync with it starts afresh soon.
    pub fn failed(&mut self, peer: Uuid, now: Instant) {
        for doc in self.rooms.values_mut() {
            doc.failed(peer, now);
        }
    }

    /// Forgets the sync with `peer` about `room` (it left).
    pub fn forget(&mut self, room: &str, peer: &Uuid) {
        if let Some(doc) = self.rooms.get_mut(room) {
            doc.forget(peer);
        }
    }

    /// Members whose sync about `room` needs a fresh round at `now` (quiet too long, or due
    /// for anti-entropy).
    pub fn due(&mut self, room: &str, members: &[Uuid], now: Instant) -> Vec<Uuid> {
        match self.rooms.get_mut(room) {
            Some(doc) => doc.due(members, now),
            None => Vec::new(),
        }
    }

    /// The rooms that have a state here.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// When [`RoomStates::due`] may next name someone.
    pub fn next_due(&self) -> Option<Instant> {
        self.rooms.values().filter_map(RoomDoc::next_due).min()
    }

    /// A sync message from `peer` (a member) about `room`: the keys that changed.
    pub fn receive(
        &mut self,
        room: &str,
        peer: Uuid,
        now: Instant,
        sync: &[u8],
        sigs: &[u8],
    ) -> Result<Vec<Update>, Reject> {
        self.counters.received += 1;
        self.counters.received_bytes += (sync.len() + sigs.len()) as u64;
        let result = self.doc(room).receive(peer, now, sync, sigs);
        match &result {
            Ok(updates) => {
                self.counters.applied += updates.len() as u64;
            }
            Err(reason) => {
                *self.counters.rejected.entry(*reason).or_default() += 1;
            }
        }
        result
    }

    /// A sync message from someone who may not send one (not a member, or a room we are not
    /// in): counted and dropped.
    pub fn refuse_stranger(&mut self) {
        self.counters.not_member += 1;
    }

    /// What to store since the last call: the changes each room took (ours and others').
    pub fn take_saves(&mut self) -> Vec<Saved> {
        self.rooms
            .values_mut()
            .filter_map(RoomDoc::take_save)
            .collect()
    }
}

/// What an author signs for a change of `room`'s state with hash `hash`.
pub fn signed_message(room: &str, hash: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(24 + room.len() + 1 + 32);
    message.extend_from_slice(b"peerlink-room-state-v1");
    message.extend_from_slice(room.as_bytes());
    message.push(0);
    message.extend_from_slice(hash);
    message
}

/// Whether `key` may name a value: 1 to `max` bytes, no whitespace or control characters.
pub fn valid_key(key: &str, max: usize) -> bool {
    (1..=max).contains(&key.len()) && !key.chars().any(|c| c.is_whitespace() || c.is_control())
}
