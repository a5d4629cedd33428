//! What goes in and out of the chat core besides datagrams: the questions it asks (for the
//! directory: the LAN, the index, the DHT) and their answers, what it wants done, and what it
//! knows about the index.

use std::time::Duration;

use proto::api::{PeerRecord, RoomSummary};
use uuid::Uuid;

use crate::history::{Change, HistoryQuery};
use crate::output::{SessionLine, UiEvent};

/// An answer from the index, or the reason there is none (for a person).
pub type Answer<T> = Result<T, String>;

/// A successful lookup and how long it may be cached.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The record.
    pub record: PeerRecord,
    /// From `Cache-Control: max-age` (or the body's `ttl_secs`).
    pub max_age: Option<Duration>,
    /// Where the record came from, which decides what its name is worth.
    pub source: Source,
}

impl Lookup {
    /// A record the index gave.
    pub fn index(record: PeerRecord, max_age: Option<Duration>) -> Self {
        Lookup {
            record,
            max_age,
            source: Source::Index,
        }
    }
}

/// Where a peer's record came from. Every source is checked against the UUID ↔ key binding
/// before it gets here, and the handshake proves the key again; what differs is the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The index: it vouches for the name.
    Index,
    /// A signed announcement on the LAN (mDNS): its name is the peer's own choice, used only
    /// while no index answers.
    Lan,
    /// The peer's signed record in the DHT: addresses only; the name is the one the index
    /// vouched for when the peer became a contact.
    Dht,
}

/// A question for the index. The driver answers each with one [`IndexReply`] of the same name
/// (a request that fails or times out is answered with its error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexRequest {
    /// Where is this peer? (Messages for it wait for the answer.)
    Lookup(Uuid),
    /// Who is this peer? (It told us a name; the index says whether that is its name.)
    Verify(Uuid),
    /// Who goes by this name?
    Name(String),
    /// Add us to a room; answered with its members.
    Join(String),
    /// Take us out of a room.
    Leave(String),
    /// A room's members (`/who`).
    Who(String),
    /// Every room (`/rooms`).
    Rooms,
}

/// What the index answered, or what the registration kept up beside the chat reports.
#[derive(Debug)]
pub enum IndexReply {
    /// Answers [`IndexRequest::Lookup`].
    Lookup(Uuid, Answer<Option<Lookup>>),
    /// Answers [`IndexRequest::Verify`].
    Verify(Uuid, Answer<Option<Lookup>>),
    /// Answers [`IndexRequest::Name`].
    Name(String, Answer<Option<Lookup>>),
    /// Answers [`IndexRequest::Join`].
    Joined(String, Answer<Vec<PeerRecord>>),
    /// Answers [`IndexRequest::Leave`].
    Left(String, Answer<()>),
    /// Answers [`IndexRequest::Who`].
    Who(String, Answer<Vec<PeerRecord>>),
    /// Answers [`IndexRequest::Rooms`].
    Rooms(Answer<Vec<RoomSummary>>),
    /// We are (again) registered; the record as the index stored it. Not asked for: the
    /// registration runs on its own.
    Registered(PeerRecord),
    /// The registration is in trouble (and keeps trying); the user should know.
    Trouble(String),
    /// A heartbeat's answer carried the ICE servers with fresh credentials (for the driver's
    /// NAT traversal; the chat has no use for them).
    IceServers(Vec<proto::api::IceServer>),
    /// The index answers again (a heartbeat went through after trouble).
    Online,
    /// The first registration failed in a way no retry can fix (a taken name, a refused
    /// request): the daemon stops with this advice.
    Fatal(String),
    /// Answers [`Action::Rename`]: the name now registered, or why it was not.
    Renamed(Answer<String>),
    /// The daemon runs without an index (`--index none`): rooms and names come from the LAN.
    NoIndex,
    /// A peer announced itself on the LAN as a member of these rooms (its signed
    /// announcement, checked against its key): it joins the ones we are in.
    Met(Box<PeerRecord>, Vec<String>),
    /// Answers [`Action::Deposit`]: the letter is in the recipient's mailbox (sealed at `at`,
    /// Unix milliseconds), or why not.
    Deposited {
        /// The recipient.
        to: Uuid,
        /// The letter's id (for a text, the message's).
        id: u64,
        /// When it was sealed, as its stamp says.
        at: u64,
        /// Whether it was a receipt rather than a text.
        receipt: bool,
        /// The index's answer.
        answer: Answer<()>,
    },
    /// Letters taken from our mailbox, opened and checked (seal, sender key, UUID), in the
    /// order they were deposited; answer with [`Action::MailTaken`] once handled.
    Mail {
        /// The letters.
        letters: Vec<proto::mailbox::Opened>,
        /// The mailbox id of the last letter fetched (opened or not).
        through: i64,
    },
}

/// Whether the index answers, as far as the registration knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexStatus {
    /// No answer yet.
    Connecting,
    /// Registered, heartbeats go through.
    Online,
    /// Unreachable or refusing; the reason, in one sentence.
    Offline(String),
    /// Not used at all (`--index none`).
    Disabled,
}

impl IndexStatus {
    /// `"connecting"`, `"online"` or `"offline"`.
    pub fn word(&self) -> &'static str {
        match self {
            IndexStatus::Connecting => "connecting",
            IndexStatus::Online => "online",
            IndexStatus::Offline(_) => "offline",
            IndexStatus::Disabled => "none",
        }
    }

    /// Whether requests about rooms go out now: the index answers, or there is none (the
    /// directory answers from the LAN).
    pub fn answers(&self) -> bool {
        matches!(self, IndexStatus::Online | IndexStatus::Disabled)
    }
}

/// Something the core wants done.
#[derive(Debug)]
pub enum Action {
    /// Ask the index; hand the answer to [`ChatCore::handle_index_reply`].
    Ask(IndexRequest),
    /// Tell the user.
    Show(UiEvent),
    /// The session list changed (for the prompt and the control API's `GET /sessions`).
    Sessions(Vec<SessionLine>),
    /// The user asked to leave. The goodbyes to peers are among the datagrams to send; the
    /// driver takes our record offline at the index (when it answers) and stops.
    Quit,
    /// Stop at once with this error: something no retry can fix (the driver exits non-zero).
    Exit(String),
    /// Remember this (the local message store).
    Store(Change),
    /// Read these lines back from the store and show them as a `history` event (`reason`);
    /// then tell [`ChatCore::history_shown`] the oldest id shown.
    History {
        /// Which lines.
        query: HistoryQuery,
        /// `"restored"`, `"unread"` or `"requested"`.
        reason: &'static str,
    },
    /// Register this name instead (`/nick`); answer with [`IndexReply::Renamed`].
    Rename(String),
    /// A request to the index failed: check now whether it is away (its return then brings
    /// [`IndexReply::Online`], and with it the rooms reconciled).
    CheckIndex,
    /// A peer proved this key in a handshake and talks to us (or its vouched name changed):
    /// remember it as a contact, to find it in the DHT when the index cannot answer.
    Contact(Contact),
    /// Seal this letter and deposit it in the recipient's mailbox on the index; answer with
    /// [`IndexReply::Deposited`].
    Deposit(Outgoing),
    /// The letters of an [`IndexReply::Mail`] are handled (and their changes queued for the
    /// store before this): delete them from the mailbox, through `through`.
    MailTaken {
        /// The mailbox id of the last letter of the batch.
        through: i64,
        /// How many of them were news (not seen before): an index that hands out the same
        /// letters again gets looked at less often, not more.
        fresh: usize,
    },
    /// Tell the index to refuse (`blocked`) or accept again mail from `peer`.
    Block {
        /// The peer.
        peer: Uuid,
        /// Refuse (true) or accept again.
        blocked: bool,
    },
}

/// A letter for a peer's mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The recipient.
    pub to: Uuid,
    /// Its key, when the core knows it (from a record or a handshake); the driver falls
    /// back to the contacts.
    pub key: Option<[u8; 32]>,
    /// Our id for it (a text's message id).
    pub id: u64,
    /// What it says.
    pub content: proto::mailbox::Content,
}

/// A peer we talked to, as the contacts file keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Its UUID (derived from the key).
    pub uuid: Uuid,
    /// Its Ed25519 public key, as proven in a handshake.
    pub public_key: [u8; 32],
    /// The name the index (or, without one, the LAN) vouched for, if any.
    pub name: Option<String>,
}
