//! The secure layer around [`Endpoint`]: every frame travels encrypted and authenticated in a
//! Noise session (`Noise_XX_25519_ChaChaPoly_BLAKE2s`) whose static key is the X25519 form of
//! the peer's identity key, and whose identity is checked against the peer's UUID.
//!
//! Still sans-IO: randomness (ephemeral keys, session indices) comes from the seed in
//! [`SecureConfig`], time from the caller. Drive it exactly like [`Endpoint`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use snow::params::NoiseParams;
use snow::{HandshakeState, StatelessTransportState};
use uuid::Uuid;

use crate::endpoint::{Config, Endpoint, Event, SendError, Stats, Transmit};
use crate::identity::{Identity, noise_public_key, uuid_for_key};
use crate::replay::ReplayWindow;
use crate::send::MsgId;
use crate::wire::{self, MAX_DATAGRAM, Sealed};

mod handshake;
mod rng;

use rng::{HashRng, SeededResolver};

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
    message: Vec<u8>,
    next_retry: Instant,
    attempts: u32,
}

struct Responding {
    state: HandshakeState,
    remote_index: u32,
    started: Instant,
}

/// An [`Endpoint`] whose every datagram is encrypted and bound to the peers' identities.
pub struct SecureEndpoint {
    inner: Endpoint,
    identity: Identity,
    rng: HashRng,
    params: NoiseParams,
    sessions: HashMap<u32, Session>,
    /// Per peer, session indices from oldest to newest.
    by_peer: HashMap<Uuid, VecDeque<u32>>,
    initiating: HashMap<Uuid, Initiation>,
    responding: HashMap<u32, Responding>,
    queued: HashMap<Uuid, VecDeque<Vec<u8>>>,
    out: VecDeque<Transmit>,
    stats: SecureStats,
}

impl SecureEndpoint {
    /// An endpoint speaking for `identity`; `incarnation` as for [`Endpoint::new`].
    pub fn new(identity: Identity, incarnation: u64, config: SecureConfig) -> Self {
        SecureEndpoint {
            inner: Endpoint::new(identity.uuid(), incarnation, config.endpoint),
            identity,
            rng: HashRng {
                seed: config.seed,
                counter: 0,
            },
            params: NOISE_PARAMS.parse().expect("valid Noise parameters"),
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            initiating: HashMap::new(),
            responding: HashMap::new(),
            queued: HashMap::new(),
            out: VecDeque::new(),
            stats: SecureStats::default(),
        }
    }

    /// Our UUID (derived from our key).
    pub fn id(&self) -> Uuid {
        self.inner.id()
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

    /// See [`Endpoint::known_peers`].
    pub fn known_peers(&self) -> impl Iterator<Item = (Uuid, SocketAddr, Option<Duration>)> + '_ {
        self.inner.known_peers()
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
        loop {
            if let Some(transmit) = self.out.pop_front() {
                return Some(transmit);
            }
            let frame = self.inner.poll_transmit(now)?;
            if self.seal(frame.peer, frame.to, &frame.bytes) {
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

    /// Encrypts `frame` for `peer` into the outgoing queue; `false` when there is no session.
    fn seal(&mut self, peer: Uuid, to: SocketAddr, frame: &[u8]) -> bool {
        let Some(session) = self
            .by_peer
            .get(&peer)
            .and_then(|indices| indices.back())
            .and_then(|index| self.sessions.get_mut(index))
        else {
            return false;
        };
        let mut ciphertext = vec![0; frame.len() + 16];
        let counter = session.send_counter;
        let Ok(len) = session
            .transport
            .write_message(counter, frame, &mut ciphertext)
        else {
            return false;
        };
        session.send_counter += 1;
        ciphertext.truncate(len);
        // Until confirmed, repeat our final handshake message beside datagrams 1, 2, 4, 8, …
        // so a lost one costs little (the first copy went out with the handshake).
        if let Some(final_message) = &session.unconfirmed_final
            && counter.is_power_of_two()
        {
            self.out.push_back(Transmit {
                peer,
                to,
                bytes: final_message.clone(),
            });
        }
        let receiver = session.remote_index;
        let bytes = wire::encode_sealed(&Sealed::Transport {
            receiver,
            counter,
            ciphertext,
        });
        self.out.push_back(Transmit { peer, to, bytes });
        true
    }

    /// Takes one datagram from the network.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match wire::decode_sealed(bytes) {
            Err(_) => self.stats.malformed += 1,
            Ok(Sealed::HsInit { sender, noise }) => self.on_init(now, from, sender, &noise),
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

    fn on_transport(
        &mut self,
        now: Instant,
        from: SocketAddr,
        index: u32,
        counter: u64,
        ciphertext: &[u8],
    ) {
        let Some(session) = self.sessions.get_mut(&index) else {
            self.stats.unknown_session += 1;
            if let Some(responding) = self.responding.get(&index) {
                if now.saturating_duration_since(responding.started) < FINAL_GRACE {
                    return;
                }
                self.responding.remove(&index);
            }
            let bytes = wire::encode_sealed(&Sealed::UnknownSession { index });
            self.out.push_back(Transmit {
                peer: Uuid::nil(),
                to: from,
                bytes,
            });
            return;
        };
        if !session.replay.check(counter) {
            self.stats.replays += 1;
            return;
        }
        let mut frame = vec![0; ciphertext.len()];
        let Ok(len) = session
            .transport
            .read_message(counter, ciphertext, &mut frame)
        else {
            self.stats.decrypt_failures += 1;
            return;
        };
        session.replay.mark(counter);
        session.unconfirmed_final = None;
        let peer = session.peer;
        let packet = match wire::decode(&frame[..len]) {
            Ok(packet) => packet,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let claimed = match &packet {
            wire::Packet::Data(d) => d.from,
            wire::Packet::Ack(a) => a.from,
        };
        if claimed != peer {
            self.stats.spoofed += 1;
            return;
        }
        self.inner.handle_packet(now, from, packet);
    }

    fn on_unknown_session(&mut self, from: SocketAddr, remote_index: u32) {
        let Some((&index, session)) = self
            .sessions
            .iter()
            .find(|(_, s)| s.remote_index == remote_index)
        else {
            return;
        };
        // The peer lost the session (it restarted): forget it so the next frame handshakes anew.
        // Only the peer's own address may say so, which keeps off-path meddling out.
        let peer = session.peer;
        if self.inner.peer_addr(&peer) != Some(from) {
            return;
        }
        self.sessions.remove(&index);
        if let Some(indices) = self.by_peer.get_mut(&peer) {
            indices.retain(|i| *i != index);
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
