//! The event schema: what the daemon reports, as the `--json` lines and the control API's
//! event stream carry it. Field names and meanings are a public contract (README, openapi.yaml):
//! fields and events may be added, never changed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::command::HELP;

/// One thing to report. New fields and events may be added; existing ones keep their meaning.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum UiEvent {
    /// Registered with the index.
    Registered {
        /// Our UUID.
        uuid: Uuid,
        /// Our address as the index sees it.
        addr: String,
    },
    /// A message arrived.
    Message {
        /// Its id in the local history (`/history`, `GET /history`).
        id: u64,
        /// Sender.
        from: Uuid,
        /// Sender's name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A name the peer claims for itself that the index did not vouch for: unverified,
        /// never a reason to trust it. Absent when it matches `name` or there is none.
        #[serde(skip_serializing_if = "Option::is_none")]
        claimed_name: Option<String>,
        /// The text (bytes that are not UTF-8 are replaced by U+FFFD).
        text: String,
        /// An action (`/me waves`): shown as `* bob waves`.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        action: bool,
        /// The room it was said in; absent for private messages.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// For private messages: the private session (the sender's UUID).
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<Uuid>,
        /// `"mailbox"` when it waited in our mailbox on the index while we were offline;
        /// absent for messages that came directly.
        #[serde(skip_serializing_if = "Option::is_none")]
        via: Option<&'static str>,
        /// For mailbox messages: when the sender wrote it (Unix milliseconds, its clock).
        #[serde(skip_serializing_if = "Option::is_none")]
        sent_at_ms: Option<u64>,
    },
    /// The recipient is offline: the message waits, sealed, in its mailbox on the index;
    /// `delivered` (with `"via":"mailbox"`) follows when it takes it.
    Queued {
        /// The recipient.
        to: Uuid,
        /// The recipient's name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Id from the `sent` event.
        id: u64,
        /// Why direct delivery did not work.
        reason: String,
    },
    /// A message was handed to the network.
    Sent {
        /// Recipient of a private message.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Uuid>,
        /// Room of a room message.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Id that the matching `delivered`/`failed` carries.
        id: u64,
    },
    /// A message was acknowledged (for a room: by how many of its members).
    Delivered {
        /// Recipient of a private message.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Uuid>,
        /// The recipient's name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Room of a room message.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Id from the `sent` event.
        id: u64,
        /// Round-trip time in milliseconds (for a room: the slowest member's).
        rtt_ms: f64,
        /// Room messages: members that acknowledged.
        #[serde(skip_serializing_if = "Option::is_none")]
        delivered: Option<usize>,
        /// Room messages: members it was sent to.
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<usize>,
        /// Private messages: `"direct"` or `"relay"`, the path the acknowledgement came by, or
        /// `"mailbox"` when the recipient took it from its mailbox (then `rtt_ms` is 0).
        #[serde(skip_serializing_if = "Option::is_none")]
        via: Option<&'static str>,
    },
    /// The path to a peer changed: its datagrams now go `via` `addr`.
    Path {
        /// The peer.
        peer: Uuid,
        /// Its name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// `"direct"` (straight to the peer, through NATs if any) or `"relay"` (through a TURN
        /// server).
        via: &'static str,
        /// Where the datagrams go: the peer's address, or its relay address.
        addr: SocketAddr,
    },
    /// A message could not be delivered.
    Failed {
        /// Recipient.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Uuid>,
        /// The recipient's name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Room of a room message nobody acknowledged.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Id from the `sent` event, when the message got that far.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Why.
        reason: String,
    },
    /// Someone (or we, when `peer` is absent) joined a room.
    Joined {
        /// The room.
        room: String,
        /// Who joined; absent when it is us.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<Uuid>,
        /// Their name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A name the peer claims for itself that the index did not vouch for: unverified,
        /// never a reason to trust it. Absent when it matches `name` or there is none.
        #[serde(skip_serializing_if = "Option::is_none")]
        claimed_name: Option<String>,
        /// For our own joins: other members known now.
        #[serde(skip_serializing_if = "Option::is_none")]
        members: Option<usize>,
    },
    /// Someone (or we, when `peer` is absent) left a room.
    Left {
        /// The room.
        room: String,
        /// Who left; absent when it is us.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<Uuid>,
        /// Their name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// A name the peer claims for itself that the index did not vouch for: unverified,
        /// never a reason to trust it. Absent when it matches `name` or there is none.
        #[serde(skip_serializing_if = "Option::is_none")]
        claimed_name: Option<String>,
    },
    /// A peer said it is going offline (it quit).
    PeerOffline {
        /// The peer.
        peer: Uuid,
        /// Its name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A name changed: ours after `/nick` (`peer` absent), or a peer's as the index now vouches.
    Renamed {
        /// Whose; absent when it is ours.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<Uuid>,
        /// The name before, when there was one.
        #[serde(skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        /// The name now.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// The index became reachable or unreachable (reported on each change, not on each retry).
    Index {
        /// `"online"`: registered and heartbeating; `"offline"`: unreachable, retrying in the
        /// background while the chat goes on with the peers already known.
        status: &'static str,
        /// Why it is offline, in one sentence.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Messages from the local history: the tail of the active session after a restart,
    /// the unread ones when switching to a session, or a page of `/history`.
    History {
        /// The room, for a room's history.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// The other peer, for a private session's history.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<Uuid>,
        /// The other peer's name as the index vouches (or vouched) for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// `"restored"`, `"unread"` or `"requested"`.
        reason: &'static str,
        /// Oldest first.
        lines: Vec<crate::history::Line>,
    },
    /// Who this daemon is (`/whoami`).
    Whoami {
        /// Our UUID.
        uuid: Uuid,
        /// Our name, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Our address as the index observed it, once registered.
        #[serde(skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
        /// The local UDP address.
        listen: SocketAddr,
        /// Where peers may reach us (host, reflexive, relayed).
        candidates: Vec<proto::api::Candidate>,
        /// The index's URL.
        index: String,
        /// `"online"`, `"offline"`, `"connecting"` (no answer yet) or `"none"` (`--index none`).
        index_status: &'static str,
        /// Why the index is offline, when it is.
        #[serde(skip_serializing_if = "Option::is_none")]
        index_error: Option<String>,
        /// The state directory (identity key, history).
        state_dir: PathBuf,
        /// Whether we announce ourselves and look for peers on the LAN (mDNS).
        mdns: bool,
        /// Whether we publish in and look contacts up from the DHT.
        dht: bool,
        /// Peers heard on the LAN.
        lan_peers: usize,
        /// Peers kept in the contacts file.
        contacts: usize,
    },
    /// The sessions, as `/sessions` lists them.
    Sessions {
        /// In order; numbers start at 0 (the lobby).
        sessions: Vec<SessionLine>,
    },
    /// The peers this daemon knows (`/peers`, `/users`).
    Peers {
        /// Each with its address and smoothed RTT when measured.
        peers: Vec<PeerLine>,
    },
    /// Rooms (`/rooms`).
    Rooms {
        /// Each room with its member count.
        rooms: Vec<RoomLine>,
    },
    /// A key of a room's shared state: it changed (`reason` `"changed"`), was asked for
    /// (`/get`, `/topic`: `"get"`), or is the topic of a room just joined (`"joined"`).
    State {
        /// The room.
        room: String,
        /// The key.
        key: String,
        /// What it holds; `null` when it is not set.
        value: Option<String>,
        /// Who wrote it (for an unset: who removed it), proven by the change's signature;
        /// absent for a key never set.
        #[serde(skip_serializing_if = "Option::is_none")]
        author: Option<Uuid>,
        /// The author's name as the index vouches for it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        author_name: Option<String>,
        /// Why it is reported.
        reason: &'static str,
    },
    /// A room's whole shared state (`/state`).
    StateList {
        /// The room.
        room: String,
        /// Its keys, in order.
        entries: Vec<StateLine>,
    },
    /// Members of a room (`/who`).
    Who {
        /// The room.
        room: String,
        /// Its members.
        members: Vec<PeerLine>,
    },
    /// The daemon's counters (`/stats`), by name; see docs/protocol.md for each.
    Stats {
        /// `layer.counter` → value.
        counters: std::collections::BTreeMap<String, u64>,
    },
    /// The command list.
    Help {
        /// `[usage, description]` pairs.
        commands: Vec<[String; 2]>,
    },
    /// Feedback on a command (e.g. the active session changed).
    Info {
        /// For people.
        message: String,
    },
    /// Something went wrong that the user should know.
    Error {
        /// What, and what to do.
        message: String,
    },
    /// The local control API is listening (only with `--control`).
    Control {
        /// Where, e.g. `127.0.0.1:7878` (the real port when `--control` asked for port 0).
        addr: SocketAddr,
        /// The file holding the bearer token every request needs.
        token_file: PathBuf,
    },
}

/// One entry of `/peers`, `/users` or `/who`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerLine {
    /// The peer.
    pub uuid: Uuid,
    /// Name as the index vouches for it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A name the peer claims that the index did not vouch for (unverified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_name: Option<String>,
    /// Where we reach it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// `"direct"` or `"relay"`: the path in use, once there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    /// Smoothed round-trip time, once measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Whether it acknowledged anything recently.
    pub reachable: bool,
    /// This daemon itself (in a room's member list).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub you: bool,
}

/// One entry of `/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionLine {
    /// Number for `/switch`.
    pub n: usize,
    /// `#room` or `@peer`.
    pub label: String,
    /// The active one.
    pub active: bool,
    /// Messages received while not active.
    pub unread: usize,
}

#[cfg(test)]
impl SessionLine {
    /// Session `n` with nothing unread, for tests of what shows session lists.
    pub(crate) fn test(n: usize, label: &str, active: bool) -> Self {
        SessionLine {
            n,
            label: label.into(),
            active,
            unread: 0,
        }
    }
}

/// One entry of `/rooms`.
#[derive(Debug, Clone, Serialize)]
pub struct RoomLine {
    /// The room.
    pub room: String,
    /// Members on the index.
    pub members: usize,
    /// Whether we are in it.
    pub joined: bool,
    /// Its topic (the shared state's key `topic`), for rooms we are in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// One key of a room's shared state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateLine {
    /// The key.
    pub key: String,
    /// What it holds; `null` when it is not set.
    pub value: Option<String>,
    /// Who wrote it, proven by the change's signature.
    pub author: Option<Uuid>,
    /// The author's name as the index vouches for it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
}

/// Milliseconds with microsecond precision, for people and for JSON.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

impl UiEvent {
    /// The help event: the command list, from the one table the parser and completion share.
    pub fn help() -> Self {
        UiEvent::Help {
            commands: HELP
                .iter()
                .map(|(u, d)| [u.to_string(), d.to_string()])
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_controls_and_keeps_lines_whole() {
        let event = UiEvent::Message {
            id: 0,
            action: false,
            from: Uuid::from_u128(1),
            name: None,
            claimed_name: Some("\u{1b}]0;x\u{7}".into()),
            text: "a\u{2028}b\u{2029}c\u{202e}\r\n\u{1b}[2J".into(),
            room: None,
            session: None,
            via: None,
            sent_at_ms: None,
        };
        let line = serde_json::to_string(&event).unwrap();
        assert!(
            !line.bytes().any(|b| b < 0x20),
            "every C0 control (ESC, BEL, CR, LF) is escaped: {line}"
        );
        // U+2028/2029 stay raw, which JSON allows; a reader splitting on '\n' and parsing each
        // line gets the text back exactly.
        let back: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        assert_eq!(back["text"], "a\u{2028}b\u{2029}c\u{202e}\r\n\u{1b}[2J");
    }
}
