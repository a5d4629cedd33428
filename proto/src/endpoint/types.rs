//! What goes in and out of an [`Endpoint`] besides bytes: its configuration, the events and
//! datagrams it produces, why it refuses a message, and its counters.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use uuid::Uuid;

#[cfg(doc)] // Only the docs link to it.
use super::Endpoint;
use crate::send::MsgId;

/// Tunables; the defaults suit chat over the internet.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest message [`Endpoint::send`] accepts (and a receiver reassembles).
    pub max_message: usize,
    /// Fragments in flight per peer before the sender waits for acks.
    pub max_in_flight: usize,
    /// How far past the first missing fragment a receiver buffers.
    pub recv_window: u64,
    /// Retransmission timeout before the first RTT sample.
    pub initial_rto: Duration,
    /// Floor of the retransmission timeout.
    pub min_rto: Duration,
    /// Ceiling of the retransmission timeout, backoff included.
    pub max_rto: Duration,
    /// A message not acknowledged this long after [`Endpoint::send`] fails.
    pub deadline: Duration,
    /// Peers tracked at once; datagrams from further unknown peers are dropped.
    pub max_peers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message: 1 << 20,
            max_in_flight: 256,
            recv_window: 1024,
            initial_rto: Duration::from_millis(300),
            min_rto: Duration::from_millis(20),
            max_rto: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
            max_peers: 16_384,
        }
    }
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete message, in the order its sender sent it, exactly once.
    Message {
        /// Sender.
        from: Uuid,
        /// The bytes as sent.
        data: Vec<u8>,
    },
    /// Every fragment of a message was acknowledged.
    Delivered {
        /// Recipient.
        to: Uuid,
        /// What [`Endpoint::send`] returned.
        id: MsgId,
        /// From first transmission to the final acknowledgement.
        rtt: Duration,
    },
    /// The path to a peer changed (see `docs/protocol.md`, "Paths").
    Path {
        /// The peer.
        peer: Uuid,
        /// Where its datagrams go now.
        addr: SocketAddr,
        /// How that address reaches it.
        kind: crate::path::PathKind,
    },
    /// A message was given up.
    Failed {
        /// Recipient.
        to: Uuid,
        /// What [`Endpoint::send`] returned.
        id: MsgId,
        /// Why, for a person.
        reason: String,
    },
}

/// A datagram to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer it is for.
    pub peer: Uuid,
    /// Destination.
    pub to: SocketAddr,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// Why [`Endpoint::send`] refused a message; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// Larger than [`Config::max_message`].
    #[error("message is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Size of the refused message.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Sending to ourselves.
    #[error("that is this peer's own UUID")]
    ToSelf,
    /// Too many peers tracked already.
    #[error("too many peers ({0}) tracked at once")]
    TooManyPeers(usize),
}

/// Counters of everything unusual that arrived; all of it was dropped, none of it fatal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to [`Endpoint::handle_packet`].
    pub datagrams: u64,
    /// Plaintext datagrams that did not decode; only the `sim` harness feeds an `Endpoint`
    /// plaintext (behind the secure layer, see [`crate::SecureStats::malformed`]).
    pub malformed: u64,
    /// Addressed to another UUID, or claiming to come from ourselves.
    pub misaddressed: u64,
    /// From a previous run of the peer or of ourselves, or from an abandoned stream.
    pub stale: u64,
    /// Fragments received more than once.
    pub duplicates: u64,
    /// Fragments too far ahead to buffer.
    pub out_of_window: u64,
    /// Datagrams from new peers beyond [`Config::max_peers`].
    pub peer_limit: u64,
    /// Received messages dropped for exceeding [`Config::max_message`].
    pub oversized: u64,
    /// Fragments sent again.
    pub retransmits: u64,
    /// Probes received (each was answered).
    pub probes_in: u64,
    /// Probes and probe replies sent.
    pub probes_out: u64,
    /// Replies to our own probes received.
    pub probe_replies_in: u64,
    /// Changes of the path to a peer.
    pub path_changes: u64,
}
