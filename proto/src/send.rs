//! The sending half of one peer stream: fragments messages, keeps them in flight within a
//! window, retransmits on timeout or on selective-ack evidence, and reports each message
//! delivered (with its round-trip time) or failed.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::rtt::RttEstimator;
use crate::wire::MAX_FRAGMENT;

/// Identifies one message handed to [`crate::Endpoint::send`].
pub type MsgId = u64;

/// A message not yet fully acknowledged.
#[derive(Debug)]
struct OutMessage {
    data: Vec<u8>,
    /// Bytes already cut into fragments in the current stream.
    sent_upto: usize,
    fully_sent: bool,
    unacked: usize,
    first_sent: Option<Instant>,
    deadline: Instant,
}

/// A fragment in flight.
#[derive(Debug)]
struct Sent {
    msg: MsgId,
    offset: usize,
    len: usize,
    last: bool,
    sent_at: Instant,
    retransmitted: bool,
    queued: bool,
    /// Selectively acknowledged: held by the receiver, not yet delivered in order.
    sacked: bool,
}

/// A fragment ready to be put on the wire.
#[derive(Debug)]
pub struct Fragment<'a> {
    /// Sequence number in the current stream.
    pub seq: u64,
    /// Ends its message.
    pub last: bool,
    /// The bytes.
    pub payload: &'a [u8],
}

/// Outcome of acknowledgements or timers for one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every fragment acknowledged; the time since the first fragment went out.
    Delivered(MsgId, Duration),
    /// Not acknowledged before its deadline.
    Expired(MsgId),
}

/// Retransmission parameters, copied from the endpoint's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// RTO before any sample.
    pub initial_rto: Duration,
    /// Lower clamp of the RTO.
    pub min_rto: Duration,
    /// Upper clamp of the RTO, backoff included.
    pub max_rto: Duration,
}

/// Send state towards one peer.
#[derive(Debug, Default)]
pub struct SendStream {
    /// Current stream number; bumped by [`SendStream::restart`].
    pub stream: u32,
    next_seq: u64,
    messages: BTreeMap<MsgId, OutMessage>,
    in_flight: BTreeMap<u64, Sent>,
    retransmit: VecDeque<u64>,
    rtt: RttEstimator,
    backoff: u32,
    /// Largest acknowledged sequence number and when it had been sent.
    largest_acked: Option<(u64, Instant)>,
    /// Fragments sent again.
    pub retransmits: u64,
}

/// Fragments at least this far below the largest acknowledged one are presumed lost
/// (RFC 9002's packet threshold).
const REORDER_THRESHOLD: u64 = 3;

impl SendStream {
    /// Queues a message; it goes out as the window allows.
    pub fn push(&mut self, id: MsgId, data: Vec<u8>, deadline: Instant) {
        self.messages.insert(
            id,
            OutMessage {
                data,
                sent_upto: 0,
                fully_sent: false,
                unacked: 0,
                first_sent: None,
                deadline,
            },
        );
    }

    /// Whether anything is queued or unacknowledged.
    pub fn is_idle(&self) -> bool {
        self.messages.is_empty()
    }

    /// The next fragment to transmit, retransmissions first, new data while fewer than
    /// `window` fragments are in flight.
    pub fn next_fragment(&mut self, now: Instant, window: usize) -> Option<Fragment<'_>> {
        while let Some(seq) = self.retransmit.pop_front() {
            let Some(sent) = self.in_flight.get_mut(&seq).filter(|s| !s.sacked) else {
                continue;
            };
            sent.queued = false;
            sent.retransmitted = true;
            sent.sent_at = now;
            self.retransmits += 1;
            let (msg, offset, len, last) = (sent.msg, sent.offset, sent.len, sent.last);
            let data = &self.messages[&msg].data;
            return Some(Fragment {
                seq,
                last,
                payload: &data[offset..offset + len],
            });
        }
        if self.in_flight.len() >= window {
            return None;
        }
        let (&id, msg) = self.messages.iter_mut().find(|(_, m)| !m.fully_sent)?;
        let offset = msg.sent_upto;
        let len = (msg.data.len() - offset).min(MAX_FRAGMENT);
        msg.sent_upto += len;
        let last = msg.sent_upto == msg.data.len();
        msg.fully_sent = last;
        msg.unacked += 1;
        msg.first_sent.get_or_insert(now);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.insert(
            seq,
            Sent {
                msg: id,
                offset,
                len,
                last,
                sent_at: now,
                retransmitted: false,
                queued: false,
                sacked: false,
            },
        );
        Some(Fragment {
            seq,
            last,
            payload: &msg.data[offset..offset + len],
        })
    }

    /// Applies an acknowledgement of the current stream; returns messages it completed.
    ///
    /// Selectively acknowledged fragments reached the peer but wait there behind a gap: they
    /// are no longer retransmitted, yet only the cumulative part counts towards delivery,
    /// because a stream restart would make the receiver discard what it buffered.
    pub fn on_ack(
        &mut self,
        now: Instant,
        cumulative: u64,
        ranges: &[(u64, u64)],
        out: &mut Vec<Outcome>,
    ) {
        let mut newest: Option<(u64, Instant, bool)> = None;
        let mut note = |seq: u64, sent: &Sent| {
            if newest.is_none_or(|(s, _, _)| seq > s) {
                newest = Some((seq, sent.sent_at, sent.retransmitted));
            }
        };
        for &(start, end) in ranges {
            for (&seq, sent) in self.in_flight.range_mut(start..end) {
                if !sent.sacked {
                    sent.sacked = true;
                    note(seq, sent);
                }
            }
        }
        let mut acked: Vec<(u64, Sent)> = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if *entry.key() >= cumulative {
                break;
            }
            let (seq, sent) = entry.remove_entry();
            if !sent.sacked {
                note(seq, &sent);
            }
            acked.push((seq, sent));
        }
        let Some((seq, sent_at, retransmitted)) = newest else {
            return;
        };
        if self.largest_acked.is_none_or(|(largest, _)| seq > largest) {
            self.largest_acked = Some((seq, sent_at));
            // Karn's rule: a retransmitted fragment's ack is ambiguous, so no sample.
            if !retransmitted {
                self.rtt.sample(now.saturating_duration_since(sent_at));
            }
        }
        self.backoff = 0;
        for (_, sent) in acked {
            let Some(msg) = self.messages.get_mut(&sent.msg) else {
                continue;
            };
            msg.unacked -= 1;
            if msg.unacked == 0 && msg.fully_sent {
                let first = msg.first_sent.unwrap_or(now);
                self.messages.remove(&sent.msg);
                out.push(Outcome::Delivered(
                    sent.msg,
                    now.saturating_duration_since(first),
                ));
            }
        }
        self.detect_losses();
    }

    /// Queues for retransmission every fragment that later, acknowledged fragments show lost.
    fn detect_losses(&mut self) {
        let Some((largest, largest_sent)) = self.largest_acked else {
            return;
        };
        let below = largest.saturating_sub(REORDER_THRESHOLD - 1);
        for (&seq, sent) in self.in_flight.range_mut(..below) {
            // A fragment already resent is only presumed lost again once something sent after
            // the resend has been acknowledged.
            if !sent.queued && !sent.sacked && (!sent.retransmitted || sent.sent_at < largest_sent)
            {
                sent.queued = true;
                self.retransmit.push_back(seq);
            }
        }
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self, timing: &Timing) -> Duration {
        let base = self
            .rtt
            .rto(timing.initial_rto, timing.min_rto, timing.max_rto);
        base.saturating_mul(1 << self.backoff.min(16))
            .min(timing.max_rto)
    }

    /// Smoothed RTT to this peer, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// When [`SendStream::on_timeout`] next has work: a retransmission or a message deadline.
    pub fn next_timeout(&self, timing: &Timing) -> Option<Instant> {
        let rto = self.rto(timing);
        let retransmit = self
            .in_flight
            .values()
            .filter(|s| !s.queued && !s.sacked)
            .map(|s| s.sent_at + rto)
            .min();
        // Deadlines grow with the message id, so the first message has the earliest.
        let deadline = self.messages.values().next().map(|m| m.deadline);
        retransmit.into_iter().chain(deadline).min()
    }

    /// Fails expired messages and queues timed-out fragments for retransmission.
    pub fn on_timeout(&mut self, now: Instant, timing: &Timing, out: &mut Vec<Outcome>) {
        let expired: Vec<MsgId> = self
            .messages
            .iter()
            .take_while(|(_, m)| m.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut abandoned_fragments = false;
        for id in expired {
            let msg = self.messages.remove(&id).expect("listed above");
            abandoned_fragments |= msg.sent_upto > 0;
            out.push(Outcome::Expired(id));
        }
        if abandoned_fragments {
            // The receiver would wait forever for the fragments we just gave up on, so start
            // a fresh stream that it recognises as such; later messages go out whole again.
            self.restart();
            return;
        }
        let rto = self.rto(timing);
        let mut fired = false;
        for (&seq, sent) in self.in_flight.iter_mut() {
            if !sent.queued && !sent.sacked && sent.sent_at + rto <= now {
                sent.queued = true;
                self.retransmit.push_back(seq);
                fired = true;
            }
        }
        if fired {
            self.backoff = self.backoff.saturating_add(1);
        }
    }

    /// The path to the peer changed: what is in flight may be lost on the old one, so it goes
    /// out again at once on the new one, and the round-trip time is learnt afresh.
    pub fn path_changed(&mut self) {
        for (&seq, sent) in self.in_flight.iter_mut() {
            if !sent.queued && !sent.sacked {
                sent.queued = true;
                self.retransmit.push_back(seq);
            }
        }
        self.backoff = 0;
        self.rtt = RttEstimator::default();
    }

    /// Abandons the current stream and starts the next one, resending every unacknowledged
    /// message from its beginning (used when the peer restarted or a message was given up).
    pub fn restart(&mut self) {
        self.stream = self.stream.wrapping_add(1);
        self.next_seq = 0;
        self.in_flight.clear();
        self.retransmit.clear();
        self.largest_acked = None;
        self.backoff = 0;
        for msg in self.messages.values_mut() {
            msg.sent_upto = 0;
            msg.fully_sent = false;
            msg.unacked = 0;
        }
    }
}

#[cfg(test)]
mod tests;
