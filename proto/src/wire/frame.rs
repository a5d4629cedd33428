//! The reliable layer's frames: DATA carries a fragment of a message, ACK says which
//! fragments of a stream arrived. On the network they only ever travel inside
//! [`super::Sealed::Transport`].

use uuid::Uuid;

use super::{DecodeError, Reader, TYPE_ACK, TYPE_DATA, VERSION};

/// Bytes a DATA datagram spends before its payload.
pub const DATA_HEADER_LEN: usize = 2 + 16 + 16 + 8 + 8 + 4 + 8 + 1;

/// Most selective-ack ranges one ACK carries; more would not fit comfortably in a datagram
/// and older holes are repaired by the cumulative part anyway.
pub const MAX_ACK_RANGES: usize = 32;

const FLAG_LAST: u8 = 0x01;

/// One datagram, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// A fragment of a message.
    Data(Data),
    /// Which fragments of a stream arrived.
    Ack(Ack),
}

/// A fragment of a message on the stream `from` → `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// Sender's UUID.
    pub from: Uuid,
    /// Intended receiver's UUID; a receiver drops datagrams addressed to someone else.
    pub to: Uuid,
    /// Sender's incarnation (differs on every run, grows across restarts).
    pub from_inc: u64,
    /// Receiver's incarnation as the sender knows it; 0 when it knows none yet.
    pub to_inc: u64,
    /// Stream number within the sender's incarnation; bumped when the sender abandons a stream.
    pub stream: u32,
    /// Fragment sequence number within the stream, from 0.
    pub seq: u64,
    /// This fragment ends a message.
    pub last: bool,
    /// Raw message bytes; any content.
    pub payload: Vec<u8>,
}

/// Acknowledgement of the stream `to` → `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The acknowledging peer (the stream's receiver).
    pub from: Uuid,
    /// The stream's sender.
    pub to: Uuid,
    /// Acknowledging peer's incarnation; a change tells the sender its peer restarted.
    pub from_inc: u64,
    /// The stream sender's incarnation being acknowledged.
    pub to_inc: u64,
    /// The stream being acknowledged.
    pub stream: u32,
    /// Every fragment with `seq < cumulative` arrived.
    pub cumulative: u64,
    /// Further half-open ranges `[start, end)` that arrived, above `cumulative`.
    pub ranges: Vec<(u64, u64)>,
}

/// Serialises a packet into a fresh buffer.
pub fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = Vec::with_capacity(match packet {
        Packet::Data(d) => DATA_HEADER_LEN + d.payload.len(),
        Packet::Ack(a) => 64 + a.ranges.len() * 16,
    });
    out.push(VERSION);
    match packet {
        Packet::Data(d) => {
            out.push(TYPE_DATA);
            out.extend_from_slice(d.from.as_bytes());
            out.extend_from_slice(d.to.as_bytes());
            out.extend_from_slice(&d.from_inc.to_be_bytes());
            out.extend_from_slice(&d.to_inc.to_be_bytes());
            out.extend_from_slice(&d.stream.to_be_bytes());
            out.extend_from_slice(&d.seq.to_be_bytes());
            out.push(if d.last { FLAG_LAST } else { 0 });
            out.extend_from_slice(&d.payload);
        }
        Packet::Ack(a) => {
            out.push(TYPE_ACK);
            out.extend_from_slice(a.from.as_bytes());
            out.extend_from_slice(a.to.as_bytes());
            out.extend_from_slice(&a.from_inc.to_be_bytes());
            out.extend_from_slice(&a.to_inc.to_be_bytes());
            out.extend_from_slice(&a.stream.to_be_bytes());
            out.extend_from_slice(&a.cumulative.to_be_bytes());
            let n = a.ranges.len().min(MAX_ACK_RANGES);
            out.push(n as u8);
            for &(start, end) in &a.ranges[..n] {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&end.to_be_bytes());
            }
        }
    }
    out
}

/// Parses one datagram. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut r = Reader::header(bytes)?;
    match r.u8()? {
        TYPE_DATA => {
            let from = r.uuid()?;
            let to = r.uuid()?;
            let from_inc = r.u64()?;
            let to_inc = r.u64()?;
            let stream = r.u32()?;
            let seq = r.u64()?;
            let flags = r.u8()?;
            if flags & !FLAG_LAST != 0 {
                return Err(DecodeError::Malformed("unknown flag bits"));
            }
            if from_inc == 0 {
                return Err(DecodeError::Malformed("zero incarnation"));
            }
            Ok(Packet::Data(Data {
                from,
                to,
                from_inc,
                to_inc,
                stream,
                seq,
                last: flags & FLAG_LAST != 0,
                payload: r.0.to_vec(),
            }))
        }
        TYPE_ACK => {
            let from = r.uuid()?;
            let to = r.uuid()?;
            let from_inc = r.u64()?;
            let to_inc = r.u64()?;
            let stream = r.u32()?;
            let cumulative = r.u64()?;
            let n = r.u8()? as usize;
            if n > MAX_ACK_RANGES {
                return Err(DecodeError::Malformed("too many ack ranges"));
            }
            if from_inc == 0 {
                return Err(DecodeError::Malformed("zero incarnation"));
            }
            let mut ranges = Vec::with_capacity(n);
            for _ in 0..n {
                let start = r.u64()?;
                let end = r.u64()?;
                if start <= cumulative || end <= start {
                    return Err(DecodeError::Malformed("ack range out of order"));
                }
                ranges.push((start, end));
            }
            if !r.0.is_empty() {
                return Err(DecodeError::Malformed("trailing bytes after ack"));
            }
            Ok(Packet::Ack(Ack {
                from,
                to,
                from_inc,
                to_inc,
                stream,
                cumulative,
                ranges,
            }))
        }
        other => Err(DecodeError::UnknownType(other)),
    }
}
