//! The datagram format peers exchange over UDP (see `docs/protocol.md`).
//!
//! Every datagram starts with a version byte and a type byte; all integers are big-endian.
//! [`decode`] never panics: anything it cannot make sense of is a [`DecodeError`], which the
//! caller counts and drops.

use thiserror::Error;
use uuid::Uuid;

/// The only wire version this build speaks. A datagram with another version is refused so
/// a future format can change anything after the first byte.
pub const VERSION: u8 = 1;

/// Largest datagram we ever send: fits the 1200-byte path MTU that QUIC also assumes, so
/// nothing is fragmented by IP on any sane path.
pub const MAX_DATAGRAM: usize = 1200;

/// Bytes a DATA datagram spends before its payload.
pub const DATA_HEADER_LEN: usize = 2 + 16 + 16 + 8 + 8 + 4 + 8 + 1;

/// Bytes the secure layer adds around an encrypted frame: version, type, receiver index,
/// counter, and the AEAD tag.
pub const TRANSPORT_OVERHEAD: usize = 2 + 4 + 8 + 16;

/// Payload bytes one DATA frame carries at most, so that it still fits [`MAX_DATAGRAM`] once
/// encrypted.
pub const MAX_FRAGMENT: usize = MAX_DATAGRAM - TRANSPORT_OVERHEAD - DATA_HEADER_LEN;

/// Most selective-ack ranges one ACK carries; more would not fit comfortably in a datagram
/// and older holes are repaired by the cumulative part anyway.
pub const MAX_ACK_RANGES: usize = 32;

const TYPE_DATA: u8 = 0x01;
const TYPE_ACK: u8 = 0x02;
const TYPE_HS_INIT: u8 = 0x10;
const TYPE_HS_RESP: u8 = 0x11;
const TYPE_HS_FINAL: u8 = 0x12;
const TYPE_COOKIE_REPLY: u8 = 0x13;
const TYPE_HS_INIT_COOKIE: u8 = 0x14;
const TYPE_TRANSPORT: u8 = 0x20;
const TYPE_UNKNOWN_SESSION: u8 = 0x21;
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

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Shorter than its header says it must be.
    #[error("datagram truncated")]
    Truncated,
    /// A version this build does not speak.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// A type byte we do not know.
    #[error("unknown datagram type {0:#04x}")]
    UnknownType(u8),
    /// Fields that cannot be valid together.
    #[error("malformed datagram: {0}")]
    Malformed(&'static str),
    /// Larger than any datagram a peer may send.
    #[error("datagram longer than {MAX_DATAGRAM} bytes")]
    TooLong,
}

/// Bytes of a cookie (see [`Sealed::CookieReply`]) and of the MAC that proves one.
pub const COOKIE_LEN: usize = 16;
/// Bytes of a cookie reply's nonce (XChaCha20-Poly1305).
pub const COOKIE_NONCE_LEN: usize = 24;
/// Bytes of a sealed cookie: the cookie and its AEAD tag.
pub const SEALED_COOKIE_LEN: usize = COOKIE_LEN + 16;

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
    if bytes.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong);
    }
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
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

/// A datagram of the secure layer: a Noise handshake message, an encrypted frame, or a
/// notice that a session index is unknown. Frames ([`Packet`]) only ever travel inside
/// [`Sealed::Transport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// First handshake message (`-> e`), padded so the answer is never larger.
    HsInit {
        /// Initiator's session index.
        sender: u32,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// Second handshake message (`<- e, ee, s, es`).
    HsResp {
        /// Responder's session index.
        sender: u32,
        /// Initiator's session index.
        receiver: u32,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// Third handshake message (`-> s, se`).
    HsFinal {
        /// Initiator's session index.
        sender: u32,
        /// Responder's session index.
        receiver: u32,
        /// Noise message.
        noise: Vec<u8>,
    },
    /// An encrypted [`Packet`].
    Transport {
        /// The receiver's session index.
        receiver: u32,
        /// Nonce; each value is accepted once.
        counter: u64,
        /// Ciphertext and tag.
        ciphertext: Vec<u8>,
    },
    /// "I have no session with that index": the sender should handshake again.
    UnknownSession {
        /// The index that was not recognised.
        index: u32,
    },
    /// "I am under load: send your [`Sealed::HsInit`] again with this cookie". The answer of a
    /// busy responder, which costs it no Diffie-Hellman and keeps no state.
    CookieReply {
        /// The initiator's session index, from the HsInit.
        receiver: u32,
        /// Nonce of the sealed cookie.
        nonce: [u8; COOKIE_NONCE_LEN],
        /// The cookie, sealed under a key derived from the HsInit that caused this reply.
        cookie: [u8; SEALED_COOKIE_LEN],
    },
    /// A first handshake message carrying a cookie: an HsInit followed by a MAC over all the
    /// bytes before it, keyed by the cookie.
    HsInitCookie {
        /// Initiator's session index.
        sender: u32,
        /// Noise message, as in [`Sealed::HsInit`].
        noise: Vec<u8>,
        /// The MAC.
        mac: [u8; COOKIE_LEN],
    },
}

/// Serialises a secure-layer datagram.
pub fn encode_sealed(sealed: &Sealed) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    out.push(VERSION);
    match sealed {
        Sealed::HsInit { sender, noise } => {
            out.push(TYPE_HS_INIT);
            out.extend_from_slice(&sender.to_be_bytes());
            out.extend_from_slice(noise);
        }
        Sealed::HsResp {
            sender,
            receiver,
            noise,
        }
        | Sealed::HsFinal {
            sender,
            receiver,
            noise,
        } => {
            out.push(if matches!(sealed, Sealed::HsResp { .. }) {
                TYPE_HS_RESP
            } else {
                TYPE_HS_FINAL
            });
            out.extend_from_slice(&sender.to_be_bytes());
            out.extend_from_slice(&receiver.to_be_bytes());
            out.extend_from_slice(noise);
        }
        Sealed::Transport {
            receiver,
            counter,
            ciphertext,
        } => {
            out.push(TYPE_TRANSPORT);
            out.extend_from_slice(&receiver.to_be_bytes());
            out.extend_from_slice(&counter.to_be_bytes());
            out.extend_from_slice(ciphertext);
        }
        Sealed::UnknownSession { index } => {
            out.push(TYPE_UNKNOWN_SESSION);
            out.extend_from_slice(&index.to_be_bytes());
        }
        Sealed::CookieReply {
            receiver,
            nonce,
            cookie,
        } => {
            out.push(TYPE_COOKIE_REPLY);
            out.extend_from_slice(&receiver.to_be_bytes());
            out.extend_from_slice(nonce);
            out.extend_from_slice(cookie);
        }
        Sealed::HsInitCookie { sender, noise, mac } => {
            out.push(TYPE_HS_INIT_COOKIE);
            out.extend_from_slice(&sender.to_be_bytes());
            out.extend_from_slice(noise);
            out.extend_from_slice(mac);
        }
    }
    out
}

/// Parses a secure-layer datagram. Never panics; plain frames are refused here because an
/// unencrypted frame is never acceptable from the network.
pub fn decode_sealed(bytes: &[u8]) -> Result<Sealed, DecodeError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong);
    }
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let sealed = match r.u8()? {
        TYPE_HS_INIT => Sealed::HsInit {
            sender: r.u32()?,
            noise: r.0.to_vec(),
        },
        TYPE_HS_RESP => Sealed::HsResp {
            sender: r.u32()?,
            receiver: r.u32()?,
            noise: r.0.to_vec(),
        },
        TYPE_HS_FINAL => Sealed::HsFinal {
            sender: r.u32()?,
            receiver: r.u32()?,
            noise: r.0.to_vec(),
        },
        TYPE_TRANSPORT => {
            let receiver = r.u32()?;
            let counter = r.u64()?;
            if r.0.len() < 16 {
                return Err(DecodeError::Truncated);
            }
            Sealed::Transport {
                receiver,
                counter,
                ciphertext: r.0.to_vec(),
            }
        }
        TYPE_UNKNOWN_SESSION => {
            let index = r.u32()?;
            if !r.0.is_empty() {
                return Err(DecodeError::Malformed(
                    "trailing bytes after session notice",
                ));
            }
            Sealed::UnknownSession { index }
        }
        TYPE_COOKIE_REPLY => {
            let receiver = r.u32()?;
            let nonce = r.take()?;
            let cookie = r.take()?;
            if !r.0.is_empty() {
                return Err(DecodeError::Malformed("trailing bytes after cookie reply"));
            }
            Sealed::CookieReply {
                receiver,
                nonce,
                cookie,
            }
        }
        TYPE_HS_INIT_COOKIE => {
            let sender = r.u32()?;
            let (noise, mac) =
                r.0.split_last_chunk::<COOKIE_LEN>()
                    .ok_or(DecodeError::Truncated)?;
            Sealed::HsInitCookie {
                sender,
                noise: noise.to_vec(),
                mac: *mac,
            }
        }
        TYPE_DATA | TYPE_ACK => return Err(DecodeError::Malformed("unencrypted frame")),
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(sealed)
}

/// A cursor that turns every short read into [`DecodeError::Truncated`].
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests;
