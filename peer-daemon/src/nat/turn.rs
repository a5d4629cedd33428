//! A sans-IO STUN/TURN client, the [`Gatherer`]: from the daemon's one UDP chat socket it
//! learns the server-reflexive address (STUN Binding, RFC 8489) and keeps a relayed address
//! (a TURN allocation over UDP, RFC 8656), and it wraps and unwraps the datagrams that go
//! through that allocation.
//!
//! No sockets, clocks or randomness inside: the driver passes `now`, feeds datagrams from the
//! servers with [`Gatherer::handle_datagram`] and sends what [`Gatherer::poll_transmit`]
//! returns; transaction ids come from a ChaCha20 generator seeded by the caller.
//!
//! Everything a server sends is hostile: only datagrams from the server in use are looked at,
//! they are size-capped, must parse, must answer a request we sent (by transaction id, method
//! and server), and an answer to a signed request must carry a valid MESSAGE-INTEGRITY (but
//! for the 401 and 438 that cannot). Anything else is counted ([`GatherStats`]) and dropped.
//! Data indications and ChannelData cannot be authenticated (TURN has no way to): they are
//! only taken from the server in use, while we hold an allocation. Every request
//! is retransmitted a bounded number of times and every failure backs off, so neither a dead
//! server nor a refusing one makes the gatherer spin.

mod answers;
mod msg;
#[cfg(test)]
mod tests;
mod types;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use stun_codec::MessageClass;
use stun_codec::rfc5389::attributes::{Nonce, Realm, Username};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5766::attributes::{
    ChannelNumber, Data, Lifetime, RequestedTransport, XorPeerAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};

use self::msg::{Attribute, Auth};
pub use self::types::{
    GatherConfig, GatherEvent, GatherStats, Incoming, ServerConfig, TurnCredentials,
};

/// The largest datagram from a server the gatherer looks at.
pub const MAX_DATAGRAM: usize = 1500;
/// At most this many servers are kept from a [`Gatherer::set_servers`] list.
pub const MAX_SERVERS: usize = 8;
/// Longest username or password accepted from the configuration.
const MAX_CREDENTIAL: usize = 256;
/// Consecutive 438 (stale nonce) answers accepted before the server counts as failing.
const MAX_STALE_NONCES: u32 = 3;
/// Consecutive unanswered Refreshes after which the allocation counts as lost.
const MAX_LOST_REFRESHES: u32 = 3;

/// What a request was for.
#[derive(Debug, Clone)]
enum Kind {
    Binding,
    Allocate,
    Refresh,
    /// Refresh with LIFETIME 0 after a 437 on Allocate: frees the allocation the server still
    /// holds for our address, so the next Allocate can succeed.
    Delete,
    CreatePermission(Vec<IpAddr>),
    ChannelBind(u16),
}

/// A request waiting for its answer.
struct Transaction {
    id: [u8; 12],
    kind: Kind,
    server: SocketAddr,
    bytes: Vec<u8>,
    sends: u32,
    rto: Duration,
    next: Instant,
    /// The credentials the request was signed with: its answer must verify with them.
    auth: Option<Auth>,
}

/// The gatherer's timers, one table.
#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Next Binding keepalive.
    Keepalive,
    /// Next allocation Refresh.
    Refresh,
    /// Next permission renewal.
    Permissions,
    /// Next round of tries after all servers failed.
    Retry,
}
const TIMERS: usize = 4;

/// Where the gatherer stands with the current server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No servers.
    Idle,
    /// Waiting for the server's first answer (Binding or Allocate).
    Trying,
    /// The server answers; with TURN, an allocation is held.
    Working,
    /// All servers failed; the Retry timer starts the next round.
    BackingOff,
}

/// A peer given a channel number.
struct Channel {
    peer: SocketAddr,
    number: u16,
    state: ChannelState,
}

/// Where a channel binding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelState {
    /// ChannelBind sent, no answer yet: Send indications meanwhile.
    Binding,
    /// Bound: ChannelData.
    Bound,
    /// Refused or unanswered: Send indications until the next allocation, no new tries.
    Failed,
}

/// The STUN/TURN client state machine.
///
/// Polling order, after every `handle_*` call, `set_servers`, `permit` and `wrap`: drain
/// [`poll_transmit`](Self::poll_transmit) (send each datagram from the chat socket), then
/// [`poll_event`](Self::poll_event); then sleep until [`poll_timeout`](Self::poll_timeout)
/// and call [`handle_timeout`](Self::handle_timeout).
pub struct Gatherer {
    config: GatherConfig,
    rng: ChaCha20Rng,
    servers: Vec<ServerConfig>,
    current: usize,
    phase: Phase,
    /// REALM and NONCE the current server gave us.
    realm: Option<(Realm, Nonce)>,
    /// The credentials the allocation (held, or lost but perhaps still on the server) was
    /// made with.
    session: Option<TurnCredentials>,
    stale_nonces: u32,
    lost_refreshes: u32,
    deleted_once: bool,
    transactions: Vec<Transaction>,
    timers: [Option<Instant>; TIMERS],
    backoff: Duration,
    lifetime: Duration,
    reflexive: Option<SocketAddr>,
    relayed: Option<SocketAddr>,
    permissions: Vec<IpAddr>,
    channels: Vec<Channel>,
    next_channel: u16,
    last_trouble: Option<String>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<GatherEvent>,
    stats: GatherStats,
}

impl std::fmt::Debug for Gatherer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatherer")
            .field("server", &self.server())
            .field("phase", &self.phase)
            .field("reflexive", &self.reflexive)
            .field("relayed", &self.relayed)
            .field("pending", &self.transactions.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Gatherer {
    /// An idle gatherer (no servers yet) with the default timings.
    pub fn new(now: Instant, seed: [u8; 32]) -> Self {
        Self::with_config(now, seed, GatherConfig::default())
    }

    /// An idle gatherer with the given timings.
    pub fn with_config(_now: Instant, seed: [u8; 32], config: GatherConfig) -> Self {
        Gatherer {
            backoff: config.min_backoff,
            config,
            rng: ChaCha20Rng::from_seed(seed),
            servers: Vec::new(),
            current: 0,
            phase: Phase::Idle,
            realm: None,
            session: None,
            stale_nonces: 0,
            lost_refreshes: 0,
            deleted_once: false,
            transactions: Vec::new(),
            timers: [None; TIMERS],
            lifetime: Duration::ZERO,
            reflexive: None,
            relayed: None,
            permissions: Vec::new(),
            channels: Vec::new(),
            next_channel: msg::CHANNEL_MIN,
            last_trouble: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: GatherStats::default(),
        }
    }

    /// Replaces the server list (at most [`MAX_SERVERS`]; entries with port 0, an unspecified
    /// address or over-long credentials are dropped). The server in use stays in use when it
    /// is still listed: an allocation is kept and new credentials are used from the next
    /// request on (at once when it was backing off): the next allocation is made with them,
    /// while the one held keeps being refreshed with the credentials it was made with (the
    /// server binds an allocation to its USERNAME; coturn checks a TURN REST username's
    /// expiry only when the allocation is made). Otherwise the gatherer starts over with
    /// the first server.
    pub fn set_servers(&mut self, now: Instant, servers: Vec<ServerConfig>) {
        let mut kept: Vec<ServerConfig> = Vec::new();
        for server in servers {
            let usable = server.addr.port() != 0
                && !server.addr.ip().is_unspecified()
                && server.turn.as_ref().is_none_or(|t| {
                    !t.username.is_empty()
                        && t.username.len() <= MAX_CREDENTIAL
                        && t.password.len() <= MAX_CREDENTIAL
                });
            if usable && kept.len() < MAX_SERVERS && !kept.iter().any(|s| s.addr == server.addr) {
                kept.push(server);
            }
        }
        if kept == self.servers {
            return;
        }
        let same = self.current_server().and_then(|old| {
            kept.iter()
                .position(|s| s.addr == old.addr && s.turn.is_some() == old.turn.is_some())
        });
        match (self.phase, same) {
            (Phase::Trying | Phase::Working, Some(index)) => {
                let renewed = kept[index].turn != self.servers[self.current].turn;
                self.servers = kept;
                self.current = index;
                if renewed && self.phase == Phase::Trying {
                    // An Allocate signed with the old credentials may be refused: start over.
                    self.transactions.clear();
                    self.start(now);
                }
            }
            _ => {
                self.servers = kept;
                self.reset(now);
                self.backoff = self.config.min_backoff;
                self.current = 0;
                if self.servers.is_empty() {
                    self.phase = Phase::Idle;
                } else {
                    self.start(now);
                }
            }
        }
    }

    /// Whether `from` is one of the configured servers (its datagrams are not a peer's).
    pub fn is_server(&self, from: SocketAddr) -> bool {
        self.servers.iter().any(|s| s.addr == from)
    }

    /// Lets peers at `ip` send to us through the relay (a TURN permission, renewed with the
    /// others). Returns false when the cap ([`GatherConfig::max_permissions`]) is reached.
    pub fn permit(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.permissions.contains(&ip) {
            return true;
        }
        if self.permissions.len() >= self.config.max_permissions {
            return false;
        }
        self.permissions.push(ip);
        if self.relayed.is_some() {
            self.request(now, Kind::CreatePermission(vec![ip]));
        }
        true
    }

    /// Takes a datagram that arrived on the chat socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Incoming {
        if !self.is_server(from) {
            return Incoming::NotOurs;
        }
        if self.current_server().is_none_or(|s| s.addr != from) {
            self.stats.unexpected += 1;
            return Incoming::Consumed;
        }
        if bytes.len() > MAX_DATAGRAM {
            self.stats.malformed += 1;
            return Incoming::Consumed;
        }
        if !msg::is_stun(bytes) {
            return self.handle_channel_data(bytes);
        }
        let Some(message) = msg::decode(bytes) else {
            self.stats.malformed += 1;
            return Incoming::Consumed;
        };
        match message.class() {
            MessageClass::Indication => self.handle_indication(&message),
            MessageClass::SuccessResponse | MessageClass::ErrorResponse => {
                self.handle_response(now, from, &message);
                Incoming::Consumed
            }
            MessageClass::Request => {
                self.stats.unexpected += 1;
                Incoming::Consumed
            }
        }
    }

    /// Wraps `data` for `peer` to go through our allocation: ChannelData once a channel is
    /// bound to the peer, a Send indication until then (and a ChannelBind is started).
    /// Gives `(server, datagram)` to send, or `None` without an allocation.
    pub fn wrap(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        data: &[u8],
    ) -> Option<(SocketAddr, Vec<u8>)> {
        self.relayed?;
        let server = self.current_server()?.addr;
        match self.channels.iter().find(|c| c.peer == peer) {
            Some(channel) if channel.state == ChannelState::Bound => {
                let bytes = msg::channel_data(channel.number, data)?;
                self.stats.relayed_out += 1;
                return Some((server, bytes));
            }
            Some(_) => {}
            None => {
                // A channel binding installs the permission too; without one, ask for it.
                if !self.bind_channel(now, peer) {
                    self.permit(now, peer.ip());
                }
            }
        }
        let id = self.transaction_id();
        let attributes = vec![
            XorPeerAddress::new(peer).into(),
            Data::new(data.to_vec()).ok()?.into(),
        ];
        let bytes =
            msg::encode(MessageClass::Indication, SEND, id, attributes, None, false).ok()?;
        self.stats.relayed_out += 1;
        Some((server, bytes))
    }

    /// The next datagram to send: `(destination, bytes)`.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers
            .iter()
            .flatten()
            .chain(self.transactions.iter().map(|t| &t.next))
            .min()
            .copied()
    }

    /// Retransmits, gives up, refreshes and retries what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.transactions.len() {
            let transaction = &mut self.transactions[index];
            if transaction.next > now {
                index += 1;
            } else if transaction.sends < self.config.max_sends {
                transaction.sends += 1;
                transaction.rto = transaction.rto.saturating_mul(2);
                transaction.next = now + transaction.rto;
                self.transmits
                    .push_back((transaction.server, transaction.bytes.clone()));
                self.stats.requests += 1;
                index += 1;
            } else {
                let transaction = self.transactions.swap_remove(index);
                self.stats.timeouts += 1;
                self.on_timeout(now, transaction.kind);
            }
        }
        for timer in [
            Timer::Retry,
            Timer::Keepalive,
            Timer::Refresh,
            Timer::Permissions,
        ] {
            if self.timers[timer as usize].is_some_and(|at| at <= now) {
                self.timers[timer as usize] = None;
                self.on_timer(now, timer);
            }
        }
    }

    /// The next change, if any.
    pub fn poll_event(&mut self) -> Option<GatherEvent> {
        self.events.pop_front()
    }

    /// Our server-reflexive address, once a server told it.
    pub fn reflexive(&self) -> Option<SocketAddr> {
        self.reflexive
    }

    /// Our relayed address while we hold an allocation.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// The server in use (answering or being tried), if any.
    pub fn server(&self) -> Option<SocketAddr> {
        self.current_server().map(|s| s.addr)
    }

    /// The counters.
    pub fn stats(&self) -> GatherStats {
        self.stats
    }

    fn current_server(&self) -> Option<&ServerConfig> {
        match self.phase {
            Phase::Idle => None,
            _ => self.servers.get(self.current),
        }
    }

    fn transaction_id(&mut self) -> [u8; 12] {
        let mut id = [0; 12];
        self.rng.fill_bytes(&mut id);
        id
    }

    /// Forgets everything learned from the current server and tells the daemon.
    fn reset(&mut self, _now: Instant) {
        self.transactions.clear();
        self.timers = [None; TIMERS];
        self.realm = None;
        self.session = None;
        self.stale_nonces = 0;
        self.lost_refreshes = 0;
        self.deleted_once = false;
        self.channels.clear();
        self.set_relayed(None);
        self.set_reflexive(None);
    }

    /// Starts with the current server: an Allocate for a TURN server, a Binding otherwise.
    fn start(&mut self, now: Instant) {
        self.phase = Phase::Trying;
        let turn = self.current_server().is_some_and(|s| s.turn.is_some());
        self.request(now, if turn { Kind::Allocate } else { Kind::Binding });
    }

    /// The current server failed: say so, then try the next one, or back off after the last.
    fn fail(&mut self, now: Instant, why: &str) {
        if let Some(server) = self.current_server() {
            let what = if server.turn.is_some() {
                "TURN"
            } else {
                "STUN"
            };
            let trouble = format!("{what} server {} {why}", server.addr);
            if self.last_trouble.as_ref() != Some(&trouble) {
                tracing::info!(%trouble, "NAT traversal");
                self.events.push_back(GatherEvent::Trouble(trouble.clone()));
                self.last_trouble = Some(trouble);
            }
        }
        self.reset(now);
        if self.current + 1 < self.servers.len() {
            self.current += 1;
            self.start(now);
        } else {
            self.current = 0;
            self.phase = Phase::BackingOff;
            self.timers[Timer::Retry as usize] = Some(now + self.backoff);
            self.backoff = self.backoff.saturating_mul(2).min(self.config.max_backoff);
        }
    }

    /// The server answered as it should.
    fn working(&mut self) {
        self.phase = Phase::Working;
        self.backoff = self.config.min_backoff;
        self.last_trouble = None;
    }

    fn set_reflexive(&mut self, addr: Option<SocketAddr>) {
        if self.reflexive != addr {
            self.reflexive = addr;
            self.events.push_back(GatherEvent::Reflexive(addr));
        }
    }

    fn set_relayed(&mut self, addr: Option<SocketAddr>) {
        if self.relayed != addr {
            self.relayed = addr;
            self.events.push_back(GatherEvent::Relayed(addr));
        }
    }

    /// The credentials for a request of `kind`: a new allocation uses the configured ones;
    /// everything about an allocation uses those it was made with, because the server ties
    /// the allocation to its USERNAME (coturn answers 441 to any other).
    fn auth(&self, kind: &Kind) -> Option<Auth> {
        let configured = self.current_server()?.turn.as_ref()?;
        let creds = match (kind, &self.session) {
            (Kind::Allocate, _) | (_, None) => configured,
            (_, Some(session)) => session,
        };
        let (realm, nonce) = self.realm.clone()?;
        Some(Auth {
            username: Username::new(creds.username.clone()).ok()?,
            realm,
            nonce,
            password: creds.password.clone(),
        })
    }

    /// Builds, records and queues a request of `kind` to the current server.
    fn request(&mut self, now: Instant, kind: Kind) {
        // Nothing goes out while idle or backing off, whatever asked.
        if !matches!(self.phase, Phase::Trying | Phase::Working) {
            return;
        }
        let Some(server) = self.current_server().map(|s| s.addr) else {
            return;
        };
        let (method, attributes): (_, Vec<Attribute>) = match &kind {
            Kind::Binding => (BINDING, vec![]),
            Kind::Allocate => (
                ALLOCATE,
                vec![
                    RequestedTransport::new(msg::UDP).into(),
                    Lifetime::from_u32(600).into(),
                ],
            ),
            Kind::Refresh => (REFRESH, vec![Lifetime::from_u32(600).into()]),
            Kind::Delete => (REFRESH, vec![Lifetime::from_u32(0).into()]),
            Kind::CreatePermission(ips) => (
                CREATE_PERMISSION,
                ips.iter()
                    .map(|ip| XorPeerAddress::new(SocketAddr::new(*ip, 0)).into())
                    .collect(),
            ),
            Kind::ChannelBind(number) => {
                let Some(channel) = self.channels.iter().find(|c| c.number == *number) else {
                    return;
                };
                let Ok(channel_number) = ChannelNumber::new(*number) else {
                    return;
                };
                (
                    CHANNEL_BIND,
                    vec![
                        channel_number.into(),
                        XorPeerAddress::new(channel.peer).into(),
                    ],
                )
            }
        };
        // Binding is never authenticated; the rest is once the server gave us its realm.
        let auth = match kind {
            Kind::Binding => None,
            _ => self.auth(&kind),
        };
        let id = self.transaction_id();
        let bytes = match msg::encode(
            MessageClass::Request,
            method,
            id,
            attributes,
            auth.as_ref(),
            true,
        ) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(%error, "could not encode a STUN request");
                self.fail(now, "cannot be used with these credentials");
                return;
            }
        };
        self.transmits.push_back((server, bytes.clone()));
        self.stats.requests += 1;
        self.transactions.push(Transaction {
            id,
            kind,
            server,
            bytes,
            sends: 1,
            rto: self.config.rto,
            next: now + self.config.rto,
            auth,
        });
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Retry => {
                if self.phase == Phase::BackingOff && !self.servers.is_empty() {
                    self.current = 0;
                    self.start(now);
                }
            }
            Timer::Keepalive => {
                if !self
                    .transactions
                    .iter()
                    .any(|t| matches!(t.kind, Kind::Binding))
                {
                    self.request(now, Kind::Binding);
                }
                self.timers[Timer::Keepalive as usize] = Some(now + self.config.keepalive);
            }
            Timer::Refresh => self.request(now, Kind::Refresh),
            Timer::Permissions => {
                // Channels last 10 minutes, permissions 5: renewing both on this one timer
                // (every 4 minutes) keeps them all.
                self.renew_permissions(now);
                let numbers: Vec<u16> = self
                    .channels
                    .iter()
                    .filter(|c| c.state == ChannelState::Bound)
                    .map(|c| c.number)
                    .collect();
                for number in numbers {
                    self.request(now, Kind::ChannelBind(number));
                }
                self.timers[Timer::Permissions as usize] =
                    Some(now + self.config.permission_refresh);
            }
        }
    }

    /// One CreatePermission for every permitted IP (in chunks that fit a datagram).
    fn renew_permissions(&mut self, now: Instant) {
        let mut ips = self.permissions.clone();
        if let Some(relayed) = self.relayed
            && !ips.contains(&relayed.ip())
        {
            ips.insert(0, relayed.ip());
        }
        for chunk in ips.chunks(32) {
            self.request(now, Kind::CreatePermission(chunk.to_vec()));
        }
    }

    /// Starts binding a channel to `peer`; false when the channels are all taken.
    fn bind_channel(&mut self, now: Instant, peer: SocketAddr) -> bool {
        if self.channels.len() >= self.config.max_permissions {
            return false;
        }
        let mut number = self.next_channel;
        while self.channels.iter().any(|c| c.number == number) {
            number = next_channel(number);
        }
        self.next_channel = next_channel(number);
        self.channels.push(Channel {
            peer,
            number,
            state: ChannelState::Binding,
        });
        // Renewed with the others from now on (the ChannelBind installs it at once).
        if !self.permissions.contains(&peer.ip())
            && self.permissions.len() < self.config.max_permissions
        {
            self.permissions.push(peer.ip());
        }
        self.request(now, Kind::ChannelBind(number));
        true
    }

    fn channel_failed(&mut self, number: u16) {
        if let Some(channel) = self.channels.iter_mut().find(|c| c.number == number) {
            channel.state = ChannelState::Failed;
        }
    }

    /// The allocation is gone: tell the daemon and allocate again.
    fn lose_allocation(&mut self, now: Instant) {
        self.transactions.clear();
        self.timers = [None; TIMERS];
        self.channels.clear();
        self.lost_refreshes = 0;
        self.set_relayed(None);
        self.start(now);
    }
}

/// The channel number after `number`, wrapping within the client range.
fn next_channel(number: u16) -> u16 {
    if number >= msg::CHANNEL_MAX {
        msg::CHANNEL_MIN
    } else {
        number + 1
    }
}
