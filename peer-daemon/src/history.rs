//! What the daemon remembers between runs, as plain data the chat core produces and the store
//! ([`crate::store`]) keeps: every message sent and received with its delivery state, and the
//! sessions (with their stable numbers, unread counts and the active one). No I/O here: the
//! core hands out [`Change`]s, the driver stamps the wall-clock time and gives them to the store.

use serde::Serialize;
use uuid::Uuid;

/// What a session is about: a room we are in, or a private conversation with one peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "with", rename_all = "snake_case")]
pub enum SessionKind {
    /// A room (its name, without `#`).
    Room(String),
    /// A private conversation (the other peer).
    Private(Uuid),
}

/// How a message fared.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Delivery {
    /// Someone else's message, received.
    Received,
    /// Ours, handed to the network and not acknowledged yet.
    Queued,
    /// Ours, acknowledged (for a room: by `delivered` of `total` members).
    Delivered {
        /// Round-trip time in milliseconds (for a room: the slowest member's).
        rtt_ms: f64,
        /// Room messages: members that acknowledged.
        #[serde(skip_serializing_if = "Option::is_none")]
        delivered: Option<usize>,
        /// Room messages: members it was sent to.
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<usize>,
    },
    /// Ours, sealed in the recipient's mailbox on the index (it was offline); delivered
    /// once it takes it.
    Mailbox,
    /// Ours, given up.
    Failed {
        /// Why, for a person.
        reason: String,
    },
}

/// One message of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// Unique across runs: for our own messages the id of their `sent`/`delivered` events.
    pub id: u64,
    /// When it was sent or received: Unix milliseconds (stamped by the driver).
    pub at_ms: i64,
    /// The session it belongs to.
    pub session: SessionKind,
    /// The sender; `None` for our own messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Uuid>,
    /// The sender's name as the index vouched for it at the time, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The text, as typed.
    pub text: String,
    /// A `/me` action rather than something said.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub action: bool,
    /// How it fared.
    #[serde(flatten)]
    pub delivery: Delivery,
}

/// One session as it is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    /// Its number: stable, never reused while the daemon keeps its state.
    pub n: usize,
    /// What it is about.
    pub kind: SessionKind,
    /// Messages received while it was not active.
    pub unread: usize,
}

/// The sessions as they were when the daemon last saved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSessions {
    /// Every open session, by number.
    pub sessions: Vec<SavedSession>,
    /// The number of the active one.
    pub active: usize,
    /// The number the next new session gets.
    pub next_n: usize,
}

/// Something to remember.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A message was sent or received.
    Line(Line),
    /// One of our messages was acknowledged or given up.
    Outcome {
        /// Its [`Line::id`].
        id: u64,
        /// [`Delivery::Delivered`] or [`Delivery::Failed`].
        delivery: Delivery,
    },
    /// The session list changed (opened, closed, switched, unread counts).
    Sessions(SavedSessions),
    /// Something about mailbox letters.
    Mail(MailChange),
    /// A room's shared state took changes (appended), or is stored whole anew.
    RoomState(crate::roomstate::Saved),
}

/// What the store remembers about mailbox letters ([`crate::chat`] decides, the store keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailChange {
    /// Our message `id` waits in `peer`'s mailbox, sealed at `at` (Unix milliseconds).
    Waiting {
        /// The message's line id.
        id: u64,
        /// The recipient.
        peer: Uuid,
        /// The letter's stamp.
        at: u64,
    },
    /// The receipt for our message `id` came: it waits no more.
    Receipted {
        /// The message's line id.
        id: u64,
    },
    /// We took this letter from `from` (so it is never shown twice).
    Seen {
        /// The sender.
        from: Uuid,
        /// The letter's stamp.
        stamp: proto::mailbox::Stamp,
    },
    /// We block (`true`) or unblock `peer`.
    Blocked {
        /// The peer.
        peer: Uuid,
        /// Blocked now?
        blocked: bool,
    },
}

/// What the store remembered about mailbox letters at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedMail {
    /// Our letters still waiting: (message id, recipient, stamp time).
    pub waiting: Vec<(u64, Uuid, u64)>,
    /// Letters taken in the last days, oldest first.
    pub seen: Vec<(Uuid, proto::mailbox::Stamp)>,
    /// Peers we block.
    pub blocked: Vec<Uuid>,
}

/// Which lines to read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// One session's lines; every session's when `None`.
    pub session: Option<SessionKind>,
    /// Only lines with a smaller id (paging back); the newest when `None`.
    pub before: Option<u64>,
    /// At most this many: the newest ones before `before`.
    pub limit: usize,
}
