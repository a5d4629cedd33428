//! A deterministic network simulator for testing sans-IO state machines, modelled on
//! quinn-proto's `Pair`; compiled only with the `sim` feature.
//!
//! Two layers, so harnesses above `proto` (the daemon's chat core) can reuse the bottom one with
//! their own node type:
//! - [`Rng`], [`Impair`] and [`Link`] know nothing about endpoints: a link carries whatever one
//!   node sends, drops a datagram with probability `loss`, sends it twice with probability
//!   `dup`, and delays each copy by `latency` plus a uniform random `jitter` (a jitter larger
//!   than the latency reorders datagrams). A link's [`Tap`] sees every datagram before the
//!   impairments and may drop or alter it. All randomness comes from a seeded [`Rng`], so every
//!   run of a test sees exactly the same traffic.
//! - [`Net`] drives a few [`Peer`]s ([`crate::Endpoint`] or [`crate::SecureEndpoint`]) over one
//!   link per sending node, on a virtual clock that only the harness advances.

mod link;
mod net;

use std::time::Duration;

pub use link::{InFlight, Link, Tap};
pub use net::{Net, Node, Peer, Sent};

/// One millisecond, for writing virtual times.
pub const MS: Duration = Duration::from_millis(1);
/// One second, for writing virtual times.
pub const SEC: Duration = Duration::from_secs(1);
/// Clock jumps one run may take before it is declared stuck, so a livelock fails a test
/// instead of hanging it.
pub const STEP_CAP: usize = 200_000;
/// Datagrams one endpoint may emit in one drain before it is declared stuck.
pub const FLUSH_CAP: usize = 10_000;

/// splitmix64: tiny, seedable and good enough for link impairments. Not for cryptography; the
/// same seed always yields the same sequence, which is the point.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A uniform duration in `[0, d)` (zero when `d` is zero).
    pub fn below(&mut self, d: Duration) -> Duration {
        Duration::from_nanos(self.next_u64() % (d.as_nanos() as u64).max(1))
    }

    /// `len` random bytes, for garbage datagrams.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// How a [`Link`] mistreats what it carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impair {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram that was not dropped arrives twice.
    pub dup: f64,
    /// Delay every copy gets.
    pub latency: Duration,
    /// Upper bound of the uniform random delay added to `latency`.
    pub jitter: Duration,
}

/// `loss` and `dup` probabilities, 10 ms latency plus up to `jitter_ms` of jitter.
pub const fn impair(loss: f64, dup: f64, jitter_ms: u64) -> Impair {
    let (latency, jitter) = (Duration::from_millis(10), Duration::from_millis(jitter_ms));
    Impair {
        loss,
        dup,
        latency,
        jitter,
    }
}

/// Nothing lost, duplicated or reordered; 10 ms latency.
pub const CLEAN: Impair = impair(0.0, 0.0, 0);
/// Everything lost.
pub const DEAD: Impair = impair(1.0, 0.0, 0);
/// 30% loss, 10% duplication, jitter (40 ms) well above the base latency (10 ms).
pub const HARSH: Impair = impair(0.3, 0.1, 40);
/// The longest round trip a datagram and its acknowledgement can take over [`HARSH`].
pub const HARSH_MAX_RTT: Duration = Duration::from_millis(2 * (10 + 40));
