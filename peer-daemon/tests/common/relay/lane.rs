//! One direction of the relay as a lane: its own seeded RNG decides what befalls each datagram
//! (dropped, duplicated, delayed so that later ones overtake it), its held-back copies wait in
//! a heap until due, and its counters record what it did.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// What one direction does to the datagrams crossing it. Every datagram is first dropped with
/// probability `loss`; a survivor is sent twice with probability `duplicate`. Each copy waits
/// `latency`, plus with probability `reorder` a further uniformly random delay of up to
/// `reorder_delay`, which lets later datagrams overtake it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Probability of dropping a datagram.
    pub loss: f64,
    /// Probability of sending a surviving datagram twice.
    pub duplicate: f64,
    /// Probability of holding a copy back by a random extra delay.
    pub reorder: f64,
    /// The longest extra delay of a held-back copy.
    pub reorder_delay: Duration,
    /// Delay of every copy.
    pub latency: Duration,
}

impl Impairment {
    /// A perfect link.
    pub const NONE: Impairment = Impairment {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::ZERO,
        latency: Duration::ZERO,
    };

    /// Only loss, no added delay.
    pub fn loss(loss: f64) -> Impairment {
        Impairment {
            loss,
            ..Impairment::NONE
        }
    }
}

/// What one direction did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams that arrived to be relayed.
    pub received: u64,
    /// Copies sent on (duplicates included).
    pub forwarded: u64,
    /// Datagrams dropped on purpose.
    pub dropped: u64,
    /// Datagrams sent twice.
    pub duplicated: u64,
    /// Copies given a random extra delay.
    pub delayed: u64,
    /// Copies sent after a copy of a datagram that arrived later: reordering that happened.
    pub reordered: u64,
    /// Datagrams that reached a mapping's socket from someone other than the daemon.
    pub unroutable: u64,
}

/// The live counters behind [`DirectionStats`], shared by the tasks of one direction.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) received: AtomicU64,
    pub(super) forwarded: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) duplicated: AtomicU64,
    pub(super) delayed: AtomicU64,
    pub(super) reordered: AtomicU64,
    pub(super) unroutable: AtomicU64,
}

impl Counters {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            received: get(&self.received),
            forwarded: get(&self.forwarded),
            dropped: get(&self.dropped),
            duplicated: get(&self.duplicated),
            delayed: get(&self.delayed),
            reordered: get(&self.reordered),
            unroutable: get(&self.unroutable),
        }
    }
}

/// A copy waiting for its time.
struct Held {
    due: Instant,
    arrival: u64,
    bytes: Vec<u8>,
    via: Arc<UdpSocket>,
    to: SocketAddr,
}

impl Held {
    fn key(&self) -> (Instant, u64) {
        (self.due, self.arrival)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By due time, then arrival.
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// One stream of datagrams and what befalls them: its own RNG, its held-back copies, and its
/// view of the arrival order (for counting reordering).
pub(super) struct Lane {
    impairment: Impairment,
    rng: StdRng,
    pub(super) counters: Arc<Counters>,
    held: BinaryHeap<Reverse<Held>>,
    arrivals: u64,
    /// The latest arrival number sent on so far: a copy of an earlier one is reordered.
    newest_sent: Option<u64>,
}

impl Lane {
    pub(super) fn new(impairment: Impairment, seed: u64, counters: Arc<Counters>) -> Lane {
        Lane {
            impairment,
            rng: StdRng::seed_from_u64(seed),
            counters,
            held: BinaryHeap::new(),
            arrivals: 0,
            newest_sent: None,
        }
    }

    /// Takes one arriving datagram, to go on `via` to `to`: now, later, twice or never.
    pub(super) async fn take(&mut self, bytes: &[u8], via: &Arc<UdpSocket>, to: SocketAddr) {
        Counters::bump(&self.counters.received);
        let arrival = self.arrivals;
        self.arrivals += 1;
        for delay in self.fate() {
            if delay.is_zero() {
                self.send(bytes, arrival, via, to).await;
            } else {
                self.held.push(Reverse(Held {
                    due: Instant::now() + delay,
                    arrival,
                    bytes: bytes.to_vec(),
                    via: via.clone(),
                    to,
                }));
            }
        }
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    /// Sends every held copy whose time has come.
    pub(super) async fn release_due(&mut self) {
        let now = Instant::now();
        while self.held.peek().is_some_and(|Reverse(h)| h.due <= now) {
            let Reverse(copy) = self.held.pop().expect("peeked");
            self.send(&copy.bytes, copy.arrival, &copy.via, copy.to)
                .await;
        }
    }

    /// The delays of the copies to send: none if dropped, two if duplicated.
    fn fate(&mut self) -> Vec<Duration> {
        let imp = self.impairment;
        if self.rng.random_bool(imp.loss) {
            Counters::bump(&self.counters.dropped);
            return Vec::new();
        }
        let copies = if self.rng.random_bool(imp.duplicate) {
            Counters::bump(&self.counters.duplicated);
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let mut delay = imp.latency;
                if self.rng.random_bool(imp.reorder) {
                    Counters::bump(&self.counters.delayed);
                    let max = imp.reorder_delay.as_micros() as u64;
                    delay += Duration::from_micros(self.rng.random_range(0..=max));
                }
                delay
            })
            .collect()
    }

    async fn send(&mut self, bytes: &[u8], arrival: u64, via: &UdpSocket, to: SocketAddr) {
        if self.newest_sent.is_some_and(|newest| arrival < newest) {
            Counters::bump(&self.counters.reordered);
        } else {
            self.newest_sent = Some(arrival);
        }
        // A full socket buffer loses the datagram, like a real network would.
        if via.send_to(bytes, to).await.is_ok() {
            Counters::bump(&self.counters.forwarded);
        }
    }
}
