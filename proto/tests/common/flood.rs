//! The attacker's tools for `tests/secure_flood.rs`: pools of valid HsInits, floods of them
//! from spoofed addresses, a [`Swarm`] of real initiators outside the harness's nodes, and
//! readers of what the responder answered.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::secure::{M, Rogue, SecureNet, identity};
use proto::identity::Identity;
use proto::wire::{self, Sealed};
use proto::{Config, SecureConfig, SecureEndpoint};

/// The responder's threshold (`cookie.rs`): this many HsInits within a second means load.
pub const LOAD_INITS: u64 = 16;
/// The per-IP burst under load (`cookie.rs`).
pub const IP_BURST: u64 = 8;
/// The per-IP refill rate under load (`cookie.rs`), per second.
pub const IP_RATE: u64 = 4;

/// An address in 10.200.0.0/16, where spoofed sources live.
pub fn addr(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 200, a, b)), port)
}

/// `n` distinct, valid HsInits (fresh ephemeral keys), as a flood replays them.
pub fn hs_inits(n: usize) -> Vec<Vec<u8>> {
    let key = identity(M).noise_private_key();
    (0..n)
        .map(|i| {
            let mut ephemeral = [0x11; 32];
            ephemeral[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Rogue::initiate(key, 0x7000_0000 + i as u32, ephemeral).1
        })
        .collect()
}

/// What `node` sent to `to`, decoded.
pub fn sent_to(p: &SecureNet, node: usize, to: impl Fn(SocketAddr) -> bool) -> Vec<Sealed> {
    let sent = p.nodes[node].sent.iter().filter(|s| to(s.to));
    sent.map(|s| wire::decode_sealed(&s.bytes).expect("garbage sent"))
        .collect()
}

pub fn is_resp(s: &Sealed) -> bool {
    matches!(s, Sealed::HsResp { .. })
}

/// Every HsResp is a fresh ephemeral key and two Diffie-Hellman operations.
pub fn responses_to(p: &SecureNet, node: usize, to: impl Fn(SocketAddr) -> bool) -> usize {
    sent_to(p, node, to).iter().filter(|s| is_resp(s)).count()
}

/// Hands node `to` `count` HsInits from the pool, each from a fresh address (spoofed sources).
pub fn flood(p: &mut SecureNet, to: usize, pool: &[Vec<u8>], count: usize, next: &mut usize) {
    for _ in 0..count {
        let i = *next;
        *next += 1;
        let from = addr(
            (i / 250 % 250) as u8,
            (i % 250) as u8 + 1,
            1000 + (i / 62_500) as u16,
        );
        p.void.insert(from);
        let now = p.now();
        p.nodes[to]
            .ep
            .handle_datagram(now, from, &pool[i % pool.len()]);
    }
}

/// Real initiators outside the harness's nodes, each with its own identity and address,
/// talking to one node directly (their datagrams arrive at once; the node's answers are taken
/// from its `sent` record).
pub struct Swarm {
    pub members: Vec<(SocketAddr, SecureEndpoint)>,
    /// How much of the target's `sent` record has been routed back.
    routed: usize,
}

impl Swarm {
    /// `n` initiators at `addrs(i)`, each with a message for node `to`.
    pub fn new(
        p: &mut SecureNet,
        to: usize,
        n: usize,
        addrs: impl Fn(usize) -> SocketAddr,
    ) -> Self {
        let (now, id, target) = (p.now(), p.nodes[to].id, p.nodes[to].addr);
        let members = (0..n)
            .map(|i| {
                let mut secret = [0x5A; 32];
                secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
                let config = SecureConfig {
                    endpoint: Config::default(),
                    seed: secret,
                };
                let mut ep = SecureEndpoint::new(Identity::from_secret(secret), 7, config);
                ep.send(now, id, target, b"let me in".to_vec()).unwrap();
                p.void.insert(addrs(i));
                (addrs(i), ep)
            })
            .collect();
        let routed = p.nodes[to].sent.len();
        Swarm { members, routed }
    }

    /// One exchange with node `to`: due timers, our datagrams to it, its answers to us.
    pub fn step(&mut self, p: &mut SecureNet, to: usize) {
        let now = p.now();
        for (from, ep) in &mut self.members {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
            while let Some(t) = ep.poll_transmit(now) {
                p.nodes[to].ep.handle_datagram(now, *from, &t.bytes);
            }
        }
        p.flush();
        let answers = p.nodes[to].sent[self.routed..].to_vec();
        self.routed = p.nodes[to].sent.len();
        for answer in answers {
            if let Some((_, ep)) = self.members.iter_mut().find(|(a, _)| *a == answer.to) {
                ep.handle_datagram(now, answer.to, &answer.bytes);
            }
        }
        for (from, ep) in &mut self.members {
            while let Some(t) = ep.poll_transmit(now) {
                p.nodes[to].ep.handle_datagram(now, *from, &t.bytes);
            }
        }
        p.flush();
    }
}

/// Keeps node `to` under load with plain HsInits from spoofed addresses.
pub fn keep_busy(p: &mut SecureNet, to: usize, pool: &[Vec<u8>], next: &mut usize) {
    flood(p, to, pool, LOAD_INITS as usize, next);
    p.flush();
}
