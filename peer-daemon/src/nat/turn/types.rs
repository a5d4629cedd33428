//! The gatherer's public types: its configuration, what it reports and what it returns.

use std::net::SocketAddr;
use std::time::Duration;

/// One STUN or TURN server, as the index hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the server listens (UDP).
    pub addr: SocketAddr,
    /// Credentials for a TURN allocation; `None` uses the server for STUN Binding only.
    pub turn: Option<TurnCredentials>,
}

/// Long-term TURN credentials (with coturn's `use-auth-secret`, time-limited ones made by the
/// index: username `<expiry>:<id>`, password base64(HMAC-SHA1(secret, username))).
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// The USERNAME sent to the server.
    pub username: String,
    /// The password; only its MD5 key (with the realm) is ever used on the wire.
    pub password: String,
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What changed, for the daemon to re-publish its candidates or tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherEvent {
    /// The server-reflexive address changed (`None`: none known any more).
    Reflexive(Option<SocketAddr>),
    /// The relayed address changed (`None`: the allocation is gone; a new one is on its way).
    Relayed(Option<SocketAddr>),
    /// A server does not work (did not answer, refused the credentials, ...); the gatherer
    /// retries on its own with backoff. Said once per distinct trouble.
    Trouble(String),
}

/// Counters for the daemon's stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatherStats {
    /// Datagrams from the server that did not parse, were too large, or failed their
    /// MESSAGE-INTEGRITY.
    pub malformed: u64,
    /// Well-formed datagrams that answer nothing we asked (unknown transaction id, wrong
    /// method or server, unknown channel, an indication we do not handle).
    pub unexpected: u64,
    /// Request datagrams sent, retransmissions included.
    pub requests: u64,
    /// Transactions given up after their last retransmission.
    pub timeouts: u64,
    /// Error responses received (not counting the 401 challenge to an unsigned Allocate).
    pub errors: u64,
    /// Allocations made.
    pub allocations: u64,
    /// Peers' datagrams received through the relay.
    pub relayed_in: u64,
    /// Datagrams sent to peers through the relay.
    pub relayed_out: u64,
}

/// Timings and limits; [`GatherConfig::default`] is what the daemon uses, tests shorten it.
#[derive(Debug, Clone)]
pub struct GatherConfig {
    /// The first retransmission timeout of a request; it doubles with each retransmission.
    pub rto: Duration,
    /// Transmissions of one request before it is given up.
    pub max_sends: u32,
    /// Interval of the Binding keepalive that keeps the NAT mapping to the server open and
    /// notices a changed reflexive address.
    pub keepalive: Duration,
    /// The first wait before trying the servers again after they all failed; it doubles.
    pub min_backoff: Duration,
    /// The longest wait between two rounds of tries.
    pub max_backoff: Duration,
    /// How often permissions and channels are renewed (they last 5 and 10 minutes).
    pub permission_refresh: Duration,
    /// Most peer IPs given a permission (and peers given a channel).
    pub max_permissions: usize,
}

impl Default for GatherConfig {
    fn default() -> Self {
        GatherConfig {
            rto: Duration::from_millis(250),
            max_sends: 6,
            keepalive: Duration::from_secs(15),
            min_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            permission_refresh: Duration::from_secs(240),
            max_permissions: 64,
        }
    }
}

/// What a datagram handed to [`Gatherer::handle_datagram`] was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message from our server for the gatherer (counted in the stats when it was bad).
    Consumed,
    /// A peer's datagram that came through our allocation.
    Relayed {
        /// The peer's address as the relay saw it (for a peer on the same TURN server, its
        /// relayed address).
        peer: SocketAddr,
        /// The peer's datagram.
        data: Vec<u8>,
    },
    /// Not from a server we use: the caller treats it as a peer's datagram.
    NotOurs,
}
