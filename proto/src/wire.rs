//! The datagram format peers exchange over UDP (see `docs/protocol.md`), in two layers: the
//! frames of the reliable layer ([`Packet`], in `frame`) and the secure layer's datagrams
//! ([`Sealed`], in `sealed`) that carry them encrypted. Frames never travel on their own.
//!
//! Every datagram starts with a version byte and a type byte; all integers are big-endian.
//! [`decode`] and [`decode_sealed`] never panic: anything they cannot make sense of is a
//! [`DecodeError`], which the caller counts and drops.

mod frame;
mod sealed;

use thiserror::Error;
use uuid::Uuid;

pub use frame::{
    Ack, DATA_HEADER_LEN, Data, MAX_ACK_RANGES, PROBE_PADDING, Packet, Probe, ProbeReply, decode,
    encode, is_probe,
};
pub use sealed::{
    COOKIE_LEN, COOKIE_NONCE_LEN, SEALED_COOKIE_LEN, Sealed, TRANSPORT_OVERHEAD, decode_sealed,
    encode_sealed,
};

/// The only wire version this build speaks. A datagram with another version is refused so
/// a future format can change anything after the first byte.
pub const VERSION: u8 = 1;

/// Largest datagram we ever send: fits the 1200-byte path MTU that QUIC also assumes, so
/// nothing is fragmented by IP on any sane path.
pub const MAX_DATAGRAM: usize = 1200;

/// Payload bytes one DATA frame carries at most, so that it still fits [`MAX_DATAGRAM`] once
/// encrypted.
pub const MAX_FRAGMENT: usize = MAX_DATAGRAM - TRANSPORT_OVERHEAD - DATA_HEADER_LEN;

// One type-byte space for both layers, so a frame on its own is recognised and refused.
const TYPE_DATA: u8 = 0x01;
const TYPE_ACK: u8 = 0x02;
const TYPE_PROBE: u8 = 0x03;
const TYPE_PROBE_REPLY: u8 = 0x04;
const TYPE_HS_INIT: u8 = 0x10;
const TYPE_HS_RESP: u8 = 0x11;
const TYPE_HS_FINAL: u8 = 0x12;
const TYPE_COOKIE_REPLY: u8 = 0x13;
const TYPE_HS_INIT_COOKIE: u8 = 0x14;
const TYPE_TRANSPORT: u8 = 0x20;
const TYPE_UNKNOWN_SESSION: u8 = 0x21;

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

/// A cursor that turns every short read into [`DecodeError::Truncated`].
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader past the version and length checks every datagram gets.
    fn header(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLong);
        }
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        Ok(r)
    }
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
