//! The secure layer around [`Endpoint`]: every frame travels encrypted and authenticated in a
//! Noise session (`Noise_XX_25519_ChaChaPoly_BLAKE2s`) whose static key is the X25519 form of
//! the peer's identity key, and whose identity is checked against the peer's UUID. Under a
//! flood of handshakes it answers with cookie replies first (`secure/cookie.rs`).
//!
//! Still sans-IO: randomness (ephemeral keys, session indices, cookie secrets) comes from the
//! seed in [`SecureConfig`], time (which also measures load) from the caller. Drive it exactly
//! like [`Endpoint`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use snow::params::NoiseParams;
use snow::{HandshakeState, StatelessTransportState};
use uuid::Uuid;

use crate::api::Candidate;
use crate::endpoint::{Config, Endpoint, Event, SendError, Stats, Transmit};
use crate::identity::{Identity, noise_public_key, uuid_for_key};
use crate::path::PathKind;
use crate::replay::ReplayWindow;
use crate::send::MsgId;
use crate::wire::{self, MAX_DATAGRAM, Sealed};

mod cookie;
mod handshake;
pub(crate) mod rng;
mod transport;

use rng::{SeededResolver, SeededRng};

const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"peerlink wire v1";
/// The first handshake message is padded to this many payload bytes so that answering it
/// never sends more than was received (no amplification towards a spoofed address).
const INIT_PADDING: usize = 160;
/// Frames kept per peer while its handshake is under way; the reliable layer resends the rest.
const MAX_QUEUED_FRAMES: usize = 1024;
/// Handshakes we answered and that wait for their third message.
const MAX_RESPONDING: usize = 1024;
/// Established sessions kept per peer (the newest sends; older ones still receive).
const SESSIONS_PER_PEER: usize = 3;
/// First handshake retry; doubles per attempt.
const HANDSHAKE_RETRY: Duration = Duration::from_millis(500);
/// Handshake attempts before the queued frames are dropped.
const HANDSHAKE_ATTEMPTS: u32 = 8;
/// How long an answered handshake waits for its third message.
const RESPONDING_TIMEOUT: Duration = Duration::from_secs(10);
/// Transport datagrams for an answered but unfinished handshake are presumed to have overtaken
/// its third message for this long; after that the third message is presumed lost.
const FINAL_GRACE: Duration = Duration::from_secs(1);

/// Configuration of the secure layer.
#[derive(Debug, Clone)]
pub struct SecureConfig {
    /// The reliable layer's tunables.
    pub endpoint: Config,
    /// Seed of every random choice (ephemeral keys, session indices); fresh randomness in
    /// production, fixed in tests.
    pub seed: [u8; 32],
}

/// Counters of the secure layer; everything counted here was dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecureStats {
    /// Datagrams that did not decode, or plaintext frames.
    pub malformed: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Handshake messages that failed, or peers whose key did not match their UUID.
    pub handshake_failures: u64,
    /// Transport datagrams for a session we do not have.
    pub unknown_session: u64,
    /// Transport datagrams that failed decryption (tampered, forged, wrong key).
    pub decrypt_failures: u64,
    /// Transport datagrams seen before.
    pub replays: u64,
    /// Decrypted frames claiming another sender than the session's peer.
    pub spoofed: u64,
    /// HsInits answered with a cookie reply instead of a handshake, because we were under
    /// load (see `docs/protocol.md`, "Handshake floods").
    pub cookie_replies: u64,
    /// HsInits refused under load because their cookie did not verify (forged, stale, or
    /// minted for another address; they get a fresh cookie reply), and cookie replies to our
    /// own HsInits that failed authentication.
    pub bad_cookies: u64,
    /// HsInits with a valid cookie dropped because their source IP spent its budget.
    pub rate_limited: u64,
    /// Answered handshakes forgotten to make room for new ones.
    pub half_open_evicted: u64,
    /// Path probes not sent because no session with their peer existed yet.
    pub probes_without_session: u64,
}

struct Session {
    peer: Uuid,
    remote_index: u32,
    transport: StatelessTransportState,
    send_counter: u64,
    replay: ReplayWindow,
    /// For sessions we initiated: our third handshake message, until the peer shows (by
    /// sending on the session) that it arrived; it goes out again beside our first datagrams.
    unconfirmed_final: Option<Vec<u8>>,
}

struct Initiation {
    index: u32,
    state: HandshakeState,
    addr: SocketAddr,
    /// The Noise part of our HsInit (a cookie reply is bound to it).
    noise: Vec<u8>,
    /// The latest cookie the responder gave us.
    cookie: Option<[u8; wire::COOKIE_LEN]>,
    /// The HsInit as (re)sent: with the cookie's MAC once we have one.
    message: Vec<u8>,
    next_retry: Instant,
    attempts: u32,
}

struct Responding {
    state: HandshakeState,
    remote_index: u32,
    started: Instant,
    /// Where the HsInit came from: a full table evicts from the IP holding most entries.
    ip: std::net::IpAddr,
}

/// An [`Endpoint`] whose every datagram is encrypted and bound to the peers' identities.
pub struct SecureEndpoint {
    inner: Endpoint,
    identity: Identity,
    rng: SeededRng,
    params: NoiseParams,
    sessions: HashMap<u32, Session>,
    /// Per peer, session indices from oldest to newest.
    by_peer: HashMap<Uuid, VecDeque<u32>>,
    initiating: HashMap<Uuid, Initiation>,
    responding: HashMap<u32, Responding>,
    queued: HashMap<Uuid, VecDeque<Vec<u8>>>,
    out: VecDeque<Transmit>,
    stats: SecureStats,
    guard: cookie::Guard,
    /// The Ed25519 key each peer proved in its latest handshake (at most [`MAX_KEYS`]).
    keys: HashMap<Uuid, [u8; 32]>,
}

/// Peers whose proven keys are kept; beyond that an arbitrary one is forgotten (it is proven
/// again at that peer's next handshake).
const MAX_KEYS: usize = 4096;

impl SecureEndpoint {
    /// An endpoint speaking for `identity`; `incarnation` as for [`Endpoint::new`].
    pub fn new(identity: Identity, incarnation: u64, config: SecureConfig) -> Self {
        SecureEndpoint {
            inner: Endpoint::new(identity.uuid(), incarnation, config.endpoint),
            identity,
            rng: SeededRng::from_seed(config.seed),
            params: NOISE_PARAMS.parse().expect("valid Noise parameters"),
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            initiating: HashMap::new(),
            responding: HashMap::new(),
            queued: HashMap::new(),
            out: VecDeque::new(),
            stats: SecureStats::default(),
            guard: cookie::Guard::default(),
            keys: HashMap::new(),
        }
    }

    /// Our UUID (derived from our key).
    pub fn id(&self) -> Uuid {
        self.inner.id()
    }

    /// Who we are: what our signatures are made with (room state changes, for one).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Counters of the reliable layer.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Counters of the secure layer.
    pub fn secure_stats(&self) -> SecureStats {
        self.stats.clone()
    }

    /// See [`Endpoint::peer_addr`].
    pub fn peer_addr(&self, peer: &Uuid) -> Option<SocketAddr> {
        self.inner.peer_addr(peer)
    }

    /// The Ed25519 public key `peer` proved in a handshake with us, if one finished.
    pub fn peer_key(&self, peer: &Uuid) -> Option<[u8; 32]> {
        self.keys.get(peer).copied()
    }

    /// See [`Endpoint::relocate`].
    pub fn relocate(&mut self, now: Instant, peer: Uuid, addr: SocketAddr) {
        self.inner.relocate(now, peer, addr);
    }

    /// See [`Endpoint::known_peers`].
    pub fn known_peers(&self) -> impl Iterator<Item = (Uuid, SocketAddr, Option<Duration>)> + '_ {
        self.inner.known_peers()
    }

    /// See [`Endpoint::learn_candidates`].
    pub fn learn_candidates(&mut self, now: Instant, peer: Uuid, candidates: &[Candidate]) {
        self.inner.learn_candidates(now, peer, candidates);
    }

    /// See [`Endpoint::set_own_relay`].
    pub fn set_own_relay(&mut self, now: Instant, have: bool) {
        self.inner.set_own_relay(now, have);
    }

    /// See [`Endpoint::path`].
    pub fn path(&self, peer: &Uuid) -> Option<(SocketAddr, PathKind)> {
        self.inner.path(peer)
    }

    /// See [`Endpoint::path_addrs`].
    pub fn path_addrs(&self, now: Instant, peer: &Uuid) -> Vec<(SocketAddr, PathKind, bool)> {
        self.inner.path_addrs(now, peer)
    }

    /// See [`Endpoint::is_relay_addr`].
    pub fn is_relay_addr(&self, addr: &SocketAddr) -> bool {
        self.inner.is_relay_addr(addr)
    }

    /// Takes one datagram that our relay delivered from `from` (a TURN Data indication):
    /// `from` is a relay address from now on, and answers to it go through the relay.
    pub fn handle_relayed(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.inner.relayed_from(from);
        self.handle_datagram(now, from, bytes);
    }

    /// See [`Endpoint::send`]; the handshake, if one is needed, starts on the next poll.
    pub fn send(
        &mut self,
        now: Instant,
        to: Uuid,
        addr: SocketAddr,
        data: Vec<u8>,
    ) -> Result<MsgId, SendError> {
        self.inner.send(now, to, addr, data)
    }

    /// See [`Endpoint::poll_event`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.inner.poll_event()
    }

    fn builder(&mut self) -> snow::Builder<'static> {
        let resolver = Box::new(SeededResolver(self.rng.seed()));
        snow::Builder::with_resolver(self.params.clone(), resolver)
    }

    fn new_index(&mut self) -> u32 {
        loop {
            let index = self.rng.u32();
            if !self.sessions.contains_key(&index) && !self.responding.contains_key(&index) {
                return index;
            }
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.follow_paths();
        loop {
            if let Some(transmit) = self.out.pop_front() {
                return Some(transmit);
            }
            let frame = self.inner.poll_transmit(now)?;
            if self.seal(frame.peer, frame.to, &frame.bytes) {
                continue;
            }
            if wire::is_probe(&frame.bytes) {
                // Probes only travel in a session that exists: a handshake goes to the
                // current path, never to an address being probed.
                self.stats.probes_without_session += 1;
                continue;
            }
            let queue = self.queued.entry(frame.peer).or_default();
            if queue.len() == MAX_QUEUED_FRAMES {
                queue.pop_front();
            }
            queue.push_back(frame.bytes);
            if !self.initiating.contains_key(&frame.peer) {
                self.initiate(now, frame.peer, frame.to);
            }
        }
    }

    /// A handshake under way follows its peer's path: when the path changed since the HsInit
    /// went out (our relay came up, a direct path answered), it goes out again at once on the
    /// new path instead of at the next retry. Once per change, so it stays bounded.
    fn follow_paths(&mut self) {
        for (peer, initiation) in self.initiating.iter_mut() {
            let Some(addr) = self.inner.peer_addr(peer) else {
                continue;
            };
            if addr != initiation.addr {
                initiation.addr = addr;
                self.out.push_back(Transmit {
                    peer: *peer,
                    to: addr,
                    bytes: initiation.message.clone(),
                });
            }
        }
    }

    /// Takes one datagram from the network.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match wire::decode_sealed(bytes) {
            Err(_) => self.stats.malformed += 1,
            Ok(Sealed::HsInit { sender, noise }) => self.on_init(now, from, sender, &noise, None),
            Ok(Sealed::HsInitCookie { sender, noise, mac }) => {
                self.on_init(now, from, sender, &noise, Some(&mac));
            }
            Ok(Sealed::CookieReply {
                receiver,
                nonce,
                cookie,
            }) => self.on_cookie_reply(receiver, &nonce, &cookie),
            Ok(Sealed::HsResp {
                sender,
                receiver,
                noise,
            }) => self.on_resp(from, sender, receiver, &noise),
            Ok(Sealed::HsFinal {
                sender,
                receiver,
                noise,
            }) => self.on_final(sender, receiver, &noise),
            Ok(Sealed::Transport {
                receiver,
                counter,
                ciphertext,
            }) => self.on_transport(now, from, receiver, counter, &ciphertext),
            Ok(Sealed::UnknownSession { index }) => self.on_unknown_session(from, index),
        }
    }

    /// Runs due timers: handshake retries and the reliable layer's.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        let mut abandoned = Vec::new();
        for (peer, initiation) in self.initiating.iter_mut() {
            if initiation.next_retry > now {
                continue;
            }
            if initiation.attempts >= HANDSHAKE_ATTEMPTS {
                abandoned.push(*peer);
                continue;
            }
            let to = self.inner.peer_addr(peer).unwrap_or(initiation.addr);
            initiation.addr = to;
            self.out.push_back(Transmit {
                peer: *peer,
                to,
                bytes: initiation.message.clone(),
            });
            initiation.next_retry = now + HANDSHAKE_RETRY * (1 << initiation.attempts);
            initiation.attempts += 1;
        }
        for peer in abandoned {
            self.initiating.remove(&peer);
            self.queued.remove(&peer);
        }
        self.responding
            .retain(|_, r| now.saturating_duration_since(r.started) < RESPONDING_TIMEOUT);
    }

    /// The next instant [`SecureEndpoint::handle_timeout`] has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retries = self.initiating.values().map(|i| i.next_retry);
        let expiries = self
            .responding
            .values()
            .map(|r| r.started + RESPONDING_TIMEOUT);
        retries
            .chain(expiries)
            .chain(self.inner.poll_timeout())
            .min()
    }
}
