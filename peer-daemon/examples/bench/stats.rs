//! Measurements and their summaries: percentiles from a sorted `Vec` (no histogram crate in
//! the lock file), rates, and CPU time read from `/proc`.

use std::time::Duration;

/// Round-trip samples of one measurement.
#[derive(Debug, Default, Clone)]
pub struct Latency {
    /// One per answered round trip.
    pub samples: Vec<Duration>,
    /// Round trips that got no answer in time (raw UDP through a lossy relay).
    pub lost: u64,
}

impl Latency {
    /// The nearest-rank percentile `p` (0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// The median.
    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }
}

/// A one-way transfer.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Messages or datagrams sent.
    pub sent: u64,
    /// Those that arrived (raw UDP) or were acknowledged (daemons).
    pub delivered: u64,
    /// From the first send to the last arrival or acknowledgement.
    pub elapsed: Duration,
    /// Payload bytes per message.
    pub size: usize,
}

impl Throughput {
    /// Delivered messages per second.
    pub fn per_sec(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }

    /// Delivered payload megabytes (10^6) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.per_sec() * self.size as f64 / 1e6
    }
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// User plus system CPU time of process `pid` so far; zero when `/proc` cannot tell.
pub fn cpu_time(pid: u32) -> Duration {
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(crate::process::cpu_ticks(pid).unwrap_or(0) * 10)
}

/// Datagrams the kernel dropped because a UDP socket's receive buffer was full, machine-wide
/// so far (`RcvbufErrors` in `/proc/net/snmp`).
pub fn receive_buffer_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}
