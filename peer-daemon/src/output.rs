//! What the daemon tells its user: readable lines, or with `--json` one JSON object per line.
//! Every event also goes to subscribers (the local control API's event stream).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

mod human;
pub use human::{claim_label, clean, peer_label};

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
        /// The room it was said in; absent for private messages.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// For private messages: the private session (the sender's UUID).
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<Uuid>,
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
    },
    /// A message could not be delivered.
    Failed {
        /// Recipient.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Uuid>,
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
    /// Members of a room (`/who`).
    Who {
        /// The room.
        room: String,
        /// Its members.
        members: Vec<PeerLine>,
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
    /// Smoothed round-trip time, once measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Whether it acknowledged anything recently.
    pub reachable: bool,
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

/// One entry of `/rooms`.
#[derive(Debug, Clone, Serialize)]
pub struct RoomLine {
    /// The room.
    pub room: String,
    /// Members on the index.
    pub members: usize,
    /// Whether we are in it.
    pub joined: bool,
}

/// Milliseconds with microsecond precision, for people and for JSON.
pub fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// Where a rendered line goes.
pub trait Sink: Send {
    /// Writes one line (without its newline); it may wait in a buffer until [`Sink::flush`].
    fn line(&mut self, line: &str) -> std::io::Result<()>;
    /// Puts buffered lines out.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plain writer (stdout, a file, a buffer); lines are put out on [`Sink::flush`], so a
/// burst of events costs one write.
pub struct WriteSink<W>(pub W);

impl<W: Write + Send> Sink for WriteSink<W> {
    fn line(&mut self, line: &str) -> std::io::Result<()> {
        writeln!(self.0, "{line}")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Where events go: a renderer (stdout, or the terminal's printer) and any subscribers.
#[derive(Clone)]
pub struct Output {
    json: bool,
    sink: Arc<Mutex<dyn Sink>>,
    subscribers: broadcast::Sender<UiEvent>,
    /// The current session list, for the terminal's prompt and the control API.
    sessions: watch::Sender<Vec<SessionLine>>,
}

impl Output {
    /// Writes to stdout.
    pub fn stdout(json: bool) -> Self {
        Self::new(
            json,
            WriteSink(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
        )
    }

    /// Writes to `sink`.
    pub fn new(json: bool, sink: impl Sink + 'static) -> Self {
        let (subscribers, _) = broadcast::channel(1024);
        let (sessions, _) = watch::channel(Vec::new());
        Output {
            json,
            sink: Arc::new(Mutex::new(sink)),
            subscribers,
            sessions,
        }
    }

    /// A stream of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<UiEvent> {
        self.subscribers.subscribe()
    }

    /// The session list as the driver last published it (empty before the driver starts).
    pub fn sessions(&self) -> watch::Receiver<Vec<SessionLine>> {
        self.sessions.subscribe()
    }

    /// Publishes the session list; watchers wake only when it changed.
    pub fn publish_sessions(&self, lines: Vec<SessionLine>) {
        self.sessions.send_if_modified(|current| {
            let changed = *current != lines;
            if changed {
                *current = lines;
            }
            changed
        });
    }

    /// Puts out every line emitted so far. The driver calls it once per turn of its loop,
    /// after the turn's datagrams went out; anyone else emitting calls it right after.
    pub fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = sink.flush() {
            tracing::debug!(%error, "could not write output");
        }
    }

    /// Reports one event (put out at the next [`Output::flush`]); a closed stdout is not a
    /// reason to stop chatting, so write errors are only logged.
    pub fn emit(&self, event: UiEvent) {
        let line = if self.json {
            // JSON escapes every C0 control (ESC, BEL, CR, LF) as `\u00XX`; what it leaves
            // raw (bidi controls, U+2028) is data for a program, not for a terminal.
            Some(serde_json::to_string(&event).expect("events serialise"))
        } else {
            // Every field from outside is cleaned where it is rendered; this catches anything
            // missed there, line by line.
            event
                .human()
                .map(|text| proto::display::sanitize_lines(&text))
        };
        if let Some(line) = line {
            let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(error) = sink.line(&line) {
                tracing::debug!(%error, "could not write output");
            }
        }
        let _ = self.subscribers.send(event);
    }
}

#[cfg(test)]
mod tests;
