//! How many HsInits per second one core answers with full handshakes (an ephemeral key and two
//! Diffie-Hellman operations each) against how many it answers with cookie replies, as a
//! responder under load does. Sans-IO, so only the protocol's work is measured (no sockets):
//!
//! ```text
//! cargo run --release -p peerlink-proto --example handshake_flood
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use proto::identity::Identity;
use proto::{Config, SecureConfig, SecureEndpoint};

fn endpoint(secret: u8, seed: u64) -> SecureEndpoint {
    let mut bytes = [secret; 32];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    let config = SecureConfig {
        endpoint: Config::default(),
        seed: bytes,
    };
    SecureEndpoint::new(Identity::from_secret([secret; 32]), 1, config)
}

/// `n` valid HsInits for `target`, each with a fresh ephemeral key.
fn hs_inits(target: &SecureEndpoint, to: SocketAddr, n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut ep = endpoint(0x66, i);
            let now = Instant::now();
            ep.send(now, target.id(), to, b"x".to_vec()).expect("send");
            ep.poll_transmit(now).expect("an HsInit").bytes
        })
        .collect()
}

fn from(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(IpAddr::V4(ip), 40_000)
}

/// HsInits per second the responder answers, each from its own address, with virtual time
/// advancing `step` per HsInit from `t0`; returns the rate and the answer types seen.
fn answer_rate(
    responder: &mut SecureEndpoint,
    inits: &[Vec<u8>],
    t0: Instant,
    step: Duration,
) -> (f64, [u64; 256]) {
    let mut kinds = [0; 256];
    let start = Instant::now();
    let mut now = t0;
    for (i, init) in inits.iter().enumerate() {
        now += step;
        responder.handle_datagram(now, from(i), init);
        if responder.poll_timeout().is_some_and(|t| t <= now) {
            responder.handle_timeout(now);
        }
        while let Some(t) = responder.poll_transmit(now) {
            kinds[usize::from(t.bytes[1])] += 1;
        }
    }
    (inits.len() as f64 / start.elapsed().as_secs_f64(), kinds)
}

fn main() {
    const N: u64 = 2_000;
    let to = SocketAddr::from(([127, 0, 0, 1], 7000));
    let probe = endpoint(0x42, 0);
    let inits = hs_inits(&probe, to, N);
    let t0 = Instant::now();

    // Below load: one HsInit per virtual second, each answered with a full handshake.
    let mut responder = endpoint(0x42, 0);
    let (full, kinds) = answer_rate(&mut responder, &inits, t0, Duration::from_secs(1));
    assert_eq!(kinds[0x11], N, "every HsInit answered with a handshake");

    // Under load: all at once; after the first few, each gets a cookie reply.
    let mut responder = endpoint(0x42, 0);
    let (warm, rest) = inits.split_at(64);
    answer_rate(&mut responder, warm, t0, Duration::ZERO);
    let (cookies, kinds) = answer_rate(&mut responder, rest, t0, Duration::ZERO);
    assert_eq!(
        kinds[0x13],
        rest.len() as u64,
        "every HsInit answered with a cookie reply"
    );
    let stats = responder.secure_stats();

    println!("HsInits answered per second on one core (sans-IO, {N} distinct HsInits):");
    println!("  full handshakes (below load): {full:>10.0}/s");
    println!("  cookie replies (under load):  {cookies:>10.0}/s");
    println!("  ratio: {:.1}x", cookies / full);
    println!("  responder counters: {stats:?}");
}
