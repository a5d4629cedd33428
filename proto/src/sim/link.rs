//! One node's outgoing wire: impairments, a tap, and the datagrams in flight. Knows nothing
//! about endpoints, so any harness can carry its own nodes' datagrams over it.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Impair, Rng};

/// Sees each datagram a link is given; returns false to drop it, and may alter it.
pub type Tap = Box<dyn FnMut(&mut Vec<u8>) -> bool>;

/// A datagram on its way.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Virtual time it arrives.
    pub arrival: Duration,
    /// Order of sending on this link, so equal arrival times keep the sending order.
    pub order: u64,
    /// The address it was sent to.
    pub to: SocketAddr,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// Everything one node sends.
#[derive(Default)]
pub struct Link {
    /// How this link mistreats datagrams.
    pub impair: Impair,
    /// Sees every datagram before the impairments.
    pub tap: Option<Tap>,
    /// Datagrams not delivered yet, in no particular order.
    pub queue: Vec<InFlight>,
    pushed: u64,
    /// The latest-sent datagram delivered so far.
    newest: u64,
    /// Deliveries that overtook an earlier-sent datagram: proof that a test reordered.
    pub reordered: u64,
}

impl Link {
    /// A link with `impair` and no tap.
    pub fn new(impair: Impair) -> Self {
        Link {
            impair,
            ..Default::default()
        }
    }

    /// Drops every datagram `drop` returns true for, on top of the random loss.
    pub fn drop_if(&mut self, mut drop: impl FnMut(&[u8]) -> bool + 'static) {
        self.tap = Some(Box::new(move |bytes| !drop(bytes)));
    }

    /// Puts `bytes` for `to` on the link at virtual time `now`: the tap, then loss,
    /// duplication and delay apply.
    pub fn push(&mut self, rng: &mut Rng, now: Duration, to: SocketAddr, mut bytes: Vec<u8>) {
        if self.tap.as_mut().is_some_and(|tap| !tap(&mut bytes)) || rng.chance(self.impair.loss) {
            return;
        }
        for _ in 0..if rng.chance(self.impair.dup) { 2 } else { 1 } {
            let arrival = now + self.impair.latency + rng.below(self.impair.jitter);
            self.pushed += 1;
            let order = self.pushed;
            let bytes = bytes.clone();
            self.queue.push(InFlight {
                arrival,
                order,
                to,
                bytes,
            });
        }
    }

    /// Removes and returns every datagram due by `now`, in arrival order.
    pub fn take_due(&mut self, now: Duration) -> Vec<InFlight> {
        let (mut due, rest): (Vec<_>, Vec<_>) =
            self.queue.drain(..).partition(|d| d.arrival <= now);
        self.queue = rest;
        due.sort_by_key(|d| (d.arrival, d.order));
        for d in &due {
            self.reordered += u64::from(d.order < self.newest);
            self.newest = self.newest.max(d.order);
        }
        due
    }

    /// When the next datagram arrives, if any is in flight: a harness's clock jumps there.
    pub fn next_arrival(&self) -> Option<Duration> {
        self.queue.iter().map(|d| d.arrival).min()
    }
}
