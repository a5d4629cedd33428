//! The secure layer around [`Endpoint`]: every frame travels encrypted and authenticated in a
//! Noise session (`Noise_XX_25519_ChaChaPoly_BLAKE2s`) whose static key is the X25519 form of
//! the peer's identity key, and whose identity is checked against the peer's UUID.
//!
//! Still sans-IO: randomness (ephemeral keys, session indices) comes from the seed in
//! [`SecureConfig`], time from the caller. Drive it exactly like [`Endpoint`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{HandshakeState, StatelessTransportState};
use uuid::Uuid;

use crate::endpoint::{Config, Endpoint, Event, SendError, Stats, Transmit};
use crate::identity::{Identity, noise_public_key, uuid_for_key};
use crate::replay::ReplayWindow;
use crate::send::MsgId;
use crate::wire::{self, MAX_DATAGRAM, Sealed};

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

/// A deterministic CSPRNG: SHA-256 of a seed and a counter.
struct HashRng {
    seed: [u8; 32],
    counter: u64,
}

impl HashRng {
    fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let block = Sha256::new()
                .chain_update(self.seed)
                .chain_update(self.counter.to_be_bytes())
                .finalize();
            self.counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
    fn seed(&mut self) -> [u8; 32] {
        let mut seed = [0; 32];
        self.fill(&mut seed);
        seed
    }
    fn u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill(&mut bytes);
        u32::from_be_bytes(bytes)
    }
}

impl Random for HashRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.fill(dest);
        Ok(())
    }
}

/// snow's default primitives, with our seeded RNG instead of the OS's.
struct SeededResolver([u8; 32]);

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(HashRng {
            seed: self.0,
            counter: 0,
        }))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
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

    fn initiate(&mut self, now: Instant, peer: Uuid, addr: SocketAddr) {
        let index = self.new_index();
        let key = self.identity.noise_private_key();
        let Ok(mut state) = self
            .builder()
            .local_private_key(&key)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_initiator())
        else {
            return;
        };
        let mut noise = vec![0; MAX_DATAGRAM];
        let Ok(len) = state.write_message(&[0; INIT_PADDING], &mut noise) else {
            return;
        };
        noise.truncate(len);
        let message = wire::encode_sealed(&Sealed::HsInit {
            sender: index,
            noise,
        });
        self.out.push_back(Transmit {
            peer,
            to: addr,
            bytes: message.clone(),
        });
        let next_retry = now + HANDSHAKE_RETRY;
        self.initiating.insert(
            peer,
            Initiation {
                index,
                state,
                addr,
                message,
                next_retry,
                attempts: 1,
            },
        );
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

    fn on_init(&mut self, now: Instant, from: SocketAddr, remote_index: u32, noise: &[u8]) {
        if self.responding.len() >= MAX_RESPONDING {
            let oldest = self
                .responding
                .iter()
                .min_by_key(|(_, r)| r.started)
                .map(|(i, _)| *i);
            self.responding.remove(&oldest.expect("not empty"));
        }
        let key = self.identity.noise_private_key();
        let public_key = self.identity.public_key();
        let Ok(mut state) = self
            .builder()
            .local_private_key(&key)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_responder())
        else {
            return;
        };
        let mut payload = vec![0; MAX_DATAGRAM];
        let mut reply = vec![0; MAX_DATAGRAM];
        // Only a fully padded first message is answered, so the answer is never larger than
        // what a spoofed sender made us receive.
        if noise.len() != 32 + INIT_PADDING
            || state.read_message(noise, &mut payload) != Ok(INIT_PADDING)
        {
            self.stats.handshake_failures += 1;
            return;
        }
        let Ok(len) = state.write_message(&public_key, &mut reply) else {
            self.stats.handshake_failures += 1;
            return;
        };
        reply.truncate(len);
        let index = self.new_index();
        self.responding.insert(
            index,
            Responding {
                state,
                remote_index,
                started: now,
            },
        );
        let bytes = wire::encode_sealed(&Sealed::HsResp {
            sender: index,
            receiver: remote_index,
            noise: reply,
        });
        // The peer's UUID is not known yet; it only matters for frames, not handshakes.
        self.out.push_back(Transmit {
            peer: Uuid::nil(),
            to: from,
            bytes,
        });
    }

    fn on_resp(&mut self, from: SocketAddr, remote_index: u32, index: u32, noise: &[u8]) {
        let Some(peer) = self
            .initiating
            .iter()
            .find(|(_, i)| i.index == index)
            .map(|(p, _)| *p)
        else {
            self.stats.unknown_session += 1;
            return;
        };
        let mut initiation = self.initiating.remove(&peer).expect("found above");
        let mut payload = vec![0; MAX_DATAGRAM];
        let verified = initiation
            .state
            .read_message(noise, &mut payload)
            .ok()
            .and_then(|len| verified_peer(&initiation.state, &payload[..len]));
        if verified != Some(peer) {
            // Wrong key for that UUID, or garbage. The state is spent; the next frame the
            // reliable layer (re)sends starts a new handshake.
            self.stats.handshake_failures += 1;
            self.queued.remove(&peer);
            return;
        }
        let mut reply = vec![0; MAX_DATAGRAM];
        let Ok(len) = initiation
            .state
            .write_message(&self.identity.public_key(), &mut reply)
        else {
            self.stats.handshake_failures += 1;
            return;
        };
        reply.truncate(len);
        let Ok(transport) = initiation.state.into_stateless_transport_mode() else {
            return;
        };
        let bytes = wire::encode_sealed(&Sealed::HsFinal {
            sender: initiation.index,
            receiver: remote_index,
            noise: reply,
        });
        self.out.push_back(Transmit {
            peer,
            to: from,
            bytes: bytes.clone(),
        });
        self.establish(peer, initiation.index, remote_index, transport, Some(bytes));
    }

    fn on_final(&mut self, _remote_index: u32, index: u32, noise: &[u8]) {
        let Some(mut responding) = self.responding.remove(&index) else {
            self.stats.unknown_session += 1;
            return;
        };
        let mut payload = vec![0; MAX_DATAGRAM];
        let peer = responding
            .state
            .read_message(noise, &mut payload)
            .ok()
            .and_then(|len| verified_peer(&responding.state, &payload[..len]));
        let (Some(peer), Ok(transport)) = (peer, responding.state.into_stateless_transport_mode())
        else {
            self.stats.handshake_failures += 1;
            return;
        };
        if peer == self.id() {
            self.stats.handshake_failures += 1;
            return;
        }
        self.establish(peer, index, responding.remote_index, transport, None);
    }

    fn establish(
        &mut self,
        peer: Uuid,
        index: u32,
        remote_index: u32,
        transport: StatelessTransportState,
        unconfirmed_final: Option<Vec<u8>>,
    ) {
        self.stats.handshakes += 1;
        self.sessions.insert(
            index,
            Session {
                peer,
                remote_index,
                transport,
                send_counter: 0,
                replay: ReplayWindow::default(),
                unconfirmed_final,
            },
        );
        let indices = self.by_peer.entry(peer).or_default();
        indices.push_back(index);
        if indices.len() > SESSIONS_PER_PEER {
            let oldest = indices.pop_front().expect("not empty");
            self.sessions.remove(&oldest);
        }
        // Our own handshake to this peer, if any, is moot now.
        self.initiating.remove(&peer);
        let queued = self.queued.remove(&peer).unwrap_or_default();
        let addr = self.inner.peer_addr(&peer);
        if let Some(to) = addr {
            for frame in queued {
                self.seal(peer, to, &frame);
            }
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

/// The UUID whose key the peer proved in this handshake: the payload carries its Ed25519
/// key, which must be the one behind the Noise static key it used.
fn verified_peer(state: &HandshakeState, payload: &[u8]) -> Option<Uuid> {
    let public_key: [u8; 32] = payload.try_into().ok()?;
    let expected_static = noise_public_key(&public_key).ok()?;
    (state.get_remote_static()? == expected_static).then(|| uuid_for_key(&public_key))
}
