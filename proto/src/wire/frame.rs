//! The reliable layer's frames: DATA carries a fragment of a message, ACK says which
//! fragments of a stream arrived. On the network they only ever travel inside
//! [`super::Sealed::Transport`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use uuid::Uuid;

use super::{DecodeError, Reader, TYPE_ACK, TYPE_DATA, TYPE_PROBE, TYPE_PROBE_REPLY, VERSION};

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
    /// "Answer me from where this arrived": tests a path (and opens NAT mappings on it).
    Probe(Probe),
    /// The answer to a [`Probe`], sent back to the address the probe came from.
    ProbeReply(ProbeReply),
}

/// Padding of a [`Probe`], so that its reply is never larger than the probe: answering one
/// amplifies nothing.
pub const PROBE_PADDING: usize = 24;

/// A path probe between two peers; it only ever travels inside an established session, so
/// its sender is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Sender's UUID.
    pub from: Uuid,
    /// Receiver's UUID.
    pub to: Uuid,
    /// Chosen by the sender; the reply echoes it.
    pub nonce: u64,
}

/// The answer to a [`Probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReply {
    /// The probed peer.
    pub from: Uuid,
    /// The prober.
    pub to: Uuid,
    /// The probe's nonce.
    pub nonce: u64,
    /// The address the probe arrived from, as the probed peer saw it (what the prober's NAT
    /// made of its socket towards this peer).
    pub observed: SocketAddr,
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
        Packet::Probe(_) | Packet::ProbeReply(_) => 2 + 32 + 8 + PROBE_PADDING,
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
        Packet::Probe(p) => {
            out.push(TYPE_PROBE);
            out.extend_from_slice(p.from.as_bytes());
            out.extend_from_slice(p.to.as_bytes());
            out.extend_from_slice(&p.nonce.to_be_bytes());
            out.extend_from_slice(&[0; PROBE_PADDING]);
        }
        Packet::ProbeReply(p) => {
            out.push(TYPE_PROBE_REPLY);
            out.extend_from_slice(p.from.as_bytes());
            out.extend_from_slice(p.to.as_bytes());
            out.extend_from_slice(&p.nonce.to_be_bytes());
            // Always 16 address bytes (IPv4 mapped into IPv6), so the size is fixed.
            let (family, ip) = match p.observed.ip() {
                IpAddr::V4(v4) => (4, v4.to_ipv6_mapped()),
                IpAddr::V6(v6) => (6, v6),
            };
            out.push(family);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&p.observed.port().to_be_bytes());
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
        TYPE_PROBE => {
            let (from, to, nonce) = (r.uuid()?, r.uuid()?, r.u64()?);
            if r.0 != [0; PROBE_PADDING] {
                return Err(DecodeError::Malformed("probe padding"));
            }
            Ok(Packet::Probe(Probe { from, to, nonce }))
        }
        TYPE_PROBE_REPLY => {
            let (from, to, nonce) = (r.uuid()?, r.uuid()?, r.u64()?);
            let family = r.u8()?;
            let ip = Ipv6Addr::from(r.take::<16>()?);
            let port = u16::from_be_bytes(r.take()?);
            let ip = match (family, ip.to_ipv4_mapped()) {
                (4, Some(v4)) => IpAddr::V4(v4),
                (6, _) => IpAddr::V6(ip),
                _ => return Err(DecodeError::Malformed("probe reply address family")),
            };
            if !r.0.is_empty() {
                return Err(DecodeError::Malformed("trailing bytes after probe reply"));
            }
            Ok(Packet::ProbeReply(ProbeReply {
                from,
                to,
                nonce,
                observed: SocketAddr::new(ip, port),
            }))
        }
        other => Err(DecodeError::UnknownType(other)),
    }
}

/// Whether an encoded frame is a probe or a probe reply: those are only sent inside a session
/// that already exists, never a reason to start a handshake towards an unproven address.
pub fn is_probe(frame: &[u8]) -> bool {
    matches!(frame.get(1), Some(&(TYPE_PROBE | TYPE_PROBE_REPLY)))
}
