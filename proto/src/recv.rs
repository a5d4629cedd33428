//! The receiving half of one peer stream: puts fragments back in order, drops duplicates,
//! reassembles messages and says what to acknowledge.

use std::collections::BTreeMap;

use crate::wire::MAX_ACK_RANGES;

/// What became of one arriving fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// New and accepted (it may have completed messages, see [`RecvStream::take_message`]).
    Accepted,
    /// Seen before; worth acknowledging again since the sender evidently missed our ack.
    Duplicate,
    /// Too far ahead of the first missing fragment to buffer; the sender will resend it.
    OutOfWindow,
}

/// Reassembly state of the stream `(incarnation, stream)` from one peer.
#[derive(Debug)]
pub struct RecvStream {
    /// Which stream this is; a greater key starts a new one.
    pub key: (u64, u32),
    next: u64,
    buffered: BTreeMap<u64, (bool, Vec<u8>)>,
    partial: Vec<u8>,
    /// The current message outgrew the limit: skip fragments until its last one.
    discarding: bool,
    complete: std::collections::VecDeque<Vec<u8>>,
    /// An acknowledgement should go out.
    pub ack_pending: bool,
    /// Messages dropped because they exceeded the size limit.
    pub oversized: u64,
}

impl RecvStream {
    /// A stream that expects fragment 0 next.
    pub fn new(key: (u64, u32)) -> Self {
        RecvStream {
            key,
            next: 0,
            buffered: BTreeMap::new(),
            partial: Vec::new(),
            discarding: false,
            complete: Default::default(),
            ack_pending: false,
            oversized: 0,
        }
    }

    /// Takes one fragment. `window` bounds how far ahead of the first gap we buffer and
    /// `max_message` how large a reassembled message may grow.
    pub fn on_fragment(
        &mut self,
        seq: u64,
        last: bool,
        payload: Vec<u8>,
        window: u64,
        max_message: usize,
    ) -> Arrival {
        self.ack_pending = true;
        if seq < self.next || self.buffered.contains_key(&seq) {
            return Arrival::Duplicate;
        }
        if seq >= self.next.saturating_add(window) {
            return Arrival::OutOfWindow;
        }
        self.buffered.insert(seq, (last, payload));
        while let Some((last, payload)) = self.buffered.remove(&self.next) {
            self.next += 1;
            self.append(last, payload, max_message);
        }
        Arrival::Accepted
    }

    fn append(&mut self, last: bool, payload: Vec<u8>, max_message: usize) {
        if !self.discarding {
            if self.partial.len() + payload.len() > max_message {
                self.discarding = true;
                self.oversized += 1;
                self.partial = Vec::new();
            } else if self.partial.is_empty() {
                self.partial = payload;
            } else {
                self.partial.extend_from_slice(&payload);
            }
        }
        if last {
            if !self.discarding {
                self.complete.push_back(std::mem::take(&mut self.partial));
            }
            self.discarding = false;
        }
    }

    /// The next message completed in order, if any.
    pub fn take_message(&mut self) -> Option<Vec<u8>> {
        self.complete.pop_front()
    }

    /// `(cumulative, ranges)` to acknowledge: everything below `cumulative`, plus the highest
    /// buffered runs above it (the newest news, so the sender's RTT samples stay fresh; the
    /// holes below are inferred from them).
    pub fn ack_state(&self) -> (u64, Vec<(u64, u64)>) {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &seq in self.buffered.keys().rev() {
            if let Some((start, _)) = ranges.last_mut().filter(|(start, _)| *start == seq + 1) {
                *start = seq;
            } else if ranges.len() == MAX_ACK_RANGES {
                break;
            } else {
                ranges.push((seq, seq + 1));
            }
        }
        ranges.reverse();
        (self.next, ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(rx: &mut RecvStream, seq: u64, last: bool, data: &[u8]) -> Arrival {
        rx.on_fragment(seq, last, data.to_vec(), 16, 8)
    }

    #[test]
    fn reorders_dedups_and_reassembles() {
        let mut rx = RecvStream::new((1, 0));
        assert_eq!(frag(&mut rx, 1, true, b"lo"), Arrival::Accepted);
        assert_eq!(rx.take_message(), None);
        assert_eq!(rx.ack_state(), (0, vec![(1, 2)]));
        assert_eq!(frag(&mut rx, 0, false, b"hel"), Arrival::Accepted);
        assert_eq!(frag(&mut rx, 0, false, b"hel"), Arrival::Duplicate);
        assert_eq!(rx.take_message().as_deref(), Some(&b"hello"[..]));
        assert_eq!(rx.ack_state(), (2, vec![]));
        assert_eq!(frag(&mut rx, 40, true, b"x"), Arrival::OutOfWindow);
    }

    #[test]
    fn drops_oversized_messages_but_keeps_the_stream() {
        let mut rx = RecvStream::new((1, 0));
        frag(&mut rx, 0, false, b"12345");
        frag(&mut rx, 1, true, b"6789");
        frag(&mut rx, 2, true, b"ok");
        assert_eq!(rx.take_message().as_deref(), Some(&b"ok"[..]));
        assert_eq!(rx.oversized, 1);
    }
}
