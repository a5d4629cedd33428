//! Helpers for the secure-layer tests (`tests/secure.rs`, `tests/secure_handshake.rs`): the
//! three fixed identities, secure nodes on the deterministic [`proto::sim::Net`], and a [`Rogue`] that
//! speaks the secure wire protocol by hand with `snow`.

use std::net::SocketAddr;

use proto::identity::Identity;
use proto::sim::{Impair, Net, Node};
use proto::wire::{self, Data, MAX_DATAGRAM, Packet, Sealed};
use proto::{Config, SecureConfig, SecureEndpoint, SecureStats};
use snow::{HandshakeState, StatelessTransportState};

pub const A: usize = 0;
pub const B: usize = 1;
/// Mallory, when she runs a real endpoint.
pub const M: usize = 2;
pub const SECRETS: [[u8; 32]; 3] = [[0xA1; 32], [0xB2; 32], [0x3C; 32]];
pub const INCS: [u64; 3] = [1_000, 2_000, 3_000];
/// Where a [`Rogue`] sends from; nobody listens there.
pub const ROGUE_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66)),
    7000,
);
/// Offset of the ciphertext in a transport datagram: version, type, receiver, counter.
pub const CIPHERTEXT_AT: usize = 2 + 4 + 8;

// What the secure layer puts on the wire, restated independently of proto/src/secure.rs.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
pub const PROLOGUE: &[u8] = b"peerlink wire v1";
pub const INIT_PADDING: usize = 160;

pub fn identity(i: usize) -> Identity {
    Identity::from_secret(SECRETS[i])
}

pub fn endpoint(i: usize, incarnation: u64, seed: u8) -> SecureEndpoint {
    let config = SecureConfig {
        endpoint: Config::default(),
        seed: [seed; 32],
    };
    SecureEndpoint::new(identity(i), incarnation, config)
}

pub type SecureNet = Net<SecureEndpoint>;

/// `links.len()` secure endpoints: A, B and, with three links, Mallory.
pub fn net(links: &[Impair], seed: u64) -> SecureNet {
    let nodes = (0..links.len())
        .map(|i| Node::new(i, endpoint(i, INCS[i], 10 + i as u8), identity(i).uuid()))
        .collect();
    let mut p = Net::with_nodes(nodes, links.to_vec(), seed);
    p.void.insert(ROGUE_ADDR);
    p
}

/// What the secure tests read off a [`SecureNet`].
pub trait SecureNetExt {
    /// Node `i`'s secure-layer counters.
    fn secure(&self, i: usize) -> SecureStats;
    /// What node `i` sent from its `mark`-th datagram on, decoded.
    fn sealed_sent(&self, i: usize, mark: usize) -> Vec<Sealed>;
}

impl SecureNetExt for SecureNet {
    fn secure(&self, i: usize) -> SecureStats {
        self.nodes[i].ep.secure_stats()
    }

    fn sealed_sent(&self, i: usize, mark: usize) -> Vec<Sealed> {
        let sent = &self.nodes[i].sent[mark..];
        let decoded = sent.iter().map(|s| wire::decode_sealed(&s.bytes));
        decoded
            .map(|d| d.expect("an endpoint sent garbage"))
            .collect()
    }
}

pub fn is_transport(bytes: &[u8]) -> bool {
    matches!(wire::decode_sealed(bytes), Ok(Sealed::Transport { .. }))
}

/// A peer that speaks the secure protocol by hand, initiator side.
pub struct Rogue {
    pub index: u32,
    pub state: Option<HandshakeState>,
    /// The responder's index and the session keys.
    pub session: Option<(u32, StatelessTransportState)>,
    pub counter: u64,
}

impl Rogue {
    /// Starts a handshake with `key` (an X25519 private key); returns the HsInit datagram.
    pub fn initiate(key: [u8; 32], index: u32, ephemeral: [u8; 32]) -> (Rogue, Vec<u8>) {
        let mut state = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .local_private_key(&key)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&ephemeral)
            .prologue(PROLOGUE)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut noise = vec![0; MAX_DATAGRAM];
        let len = state.write_message(&[0; INIT_PADDING], &mut noise).unwrap();
        noise.truncate(len);
        let rogue = Rogue {
            index,
            state: Some(state),
            session: None,
            counter: 0,
        };
        (
            rogue,
            wire::encode_sealed(&Sealed::HsInit {
                sender: index,
                noise,
            }),
        )
    }

    /// Completes the handshake with node `to` of `p`, telling it that our Ed25519 key is
    /// `claimed`; returns the Ed25519 key the responder proved.
    pub fn handshake(
        p: &mut SecureNet,
        to: usize,
        key: [u8; 32],
        claimed: [u8; 32],
    ) -> (Rogue, [u8; 32]) {
        let (mut rogue, init) = Rogue::initiate(key, 0x6060_0000 + to as u32, [0x77; 32]);
        let mark = p.nodes[to].sent.len();
        p.hand(to, ROGUE_ADDR, &init);
        let resp = p.sealed_sent(to, mark).into_iter().find_map(|s| match s {
            Sealed::HsResp {
                sender,
                receiver,
                noise,
            } if receiver == rogue.index => Some((sender, noise)),
            _ => None,
        });
        let (responder, noise) = resp.expect("no handshake response");
        let mut state = rogue.state.take().unwrap();
        let mut payload = vec![0; MAX_DATAGRAM];
        let len = state.read_message(&noise, &mut payload).unwrap();
        let proved: [u8; 32] = payload[..len].try_into().unwrap();
        let mut noise = vec![0; MAX_DATAGRAM];
        let len = state.write_message(&claimed, &mut noise).unwrap();
        noise.truncate(len);
        let final_ = Sealed::HsFinal {
            sender: rogue.index,
            receiver: responder,
            noise,
        };
        p.hand(to, ROGUE_ADDR, &wire::encode_sealed(&final_));
        rogue.session = Some((responder, state.into_stateless_transport_mode().unwrap()));
        (rogue, proved)
    }

    /// A transport datagram carrying `frame`, sealed in our session.
    pub fn seal_frame(&mut self, frame: &[u8]) -> Vec<u8> {
        let (receiver, transport) = self.session.as_ref().expect("no session");
        let mut ciphertext = vec![0; frame.len() + 16];
        let len = transport
            .write_message(self.counter, frame, &mut ciphertext)
            .unwrap();
        ciphertext.truncate(len);
        let counter = self.counter;
        self.counter += 1;
        wire::encode_sealed(&Sealed::Transport {
            receiver: *receiver,
            counter,
            ciphertext,
        })
    }

    pub fn seal(&mut self, packet: &Packet) -> Vec<u8> {
        self.seal_frame(&wire::encode(packet))
    }
}

/// The answer to a captured HsInit from a responder holding `key` (X25519) that claims the
/// Ed25519 key `claimed`.
pub fn rogue_response(key: [u8; 32], claimed: [u8; 32], init: &[u8]) -> Vec<u8> {
    let Ok(Sealed::HsInit { sender, noise }) = wire::decode_sealed(init) else {
        panic!("not a handshake initiation");
    };
    let mut state = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
        .local_private_key(&key)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&[0x55; 32])
        .prologue(PROLOGUE)
        .unwrap()
        .build_responder()
        .unwrap();
    let mut payload = vec![0; MAX_DATAGRAM];
    state.read_message(&noise, &mut payload).unwrap();
    let mut reply = vec![0; MAX_DATAGRAM];
    let len = state.write_message(&claimed, &mut reply).unwrap();
    reply.truncate(len);
    wire::encode_sealed(&Sealed::HsResp {
        sender: 0x5151,
        receiver: sender,
        noise: reply,
    })
}

pub fn data(from: usize, to: usize, seq: u64, payload: &[u8]) -> Packet {
    Packet::Data(Data {
        from: identity(from).uuid(),
        to: identity(to).uuid(),
        from_inc: INCS[from],
        to_inc: INCS[to],
        stream: 0,
        seq,
        last: true,
        payload: payload.to_vec(),
    })
}

/// Message `i` tagged `tag`: the text `PLAINTEXT:<tag><i>;` repeated, every 50th spanning
/// several fragments, so every datagram that carries message bytes in the clear carries
/// `PLAINTEXT` whole.
pub fn marked(tag: char, i: usize) -> Vec<u8> {
    let unit = format!("PLAINTEXT:{tag}{i:03};");
    let repeat = if i % 50 == 7 {
        3 * wire::MAX_FRAGMENT / unit.len() + 1
    } else {
        1 + i % 5
    };
    unit.repeat(repeat).into_bytes()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
