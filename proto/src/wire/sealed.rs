//! The secure layer's datagrams: the Noise handshake messages, cookie replies under load,
//! encrypted frames, and notices of unknown sessions.

use super::{
    DecodeError, MAX_DATAGRAM, Reader, TYPE_ACK, TYPE_COOKIE_REPLY, TYPE_DATA, TYPE_HS_FINAL,
    TYPE_HS_INIT, TYPE_HS_INIT_COOKIE, TYPE_HS_RESP, TYPE_PROBE, TYPE_PROBE_REPLY, TYPE_TRANSPORT,
    TYPE_UNKNOWN_SESSION, VERSION,
};

/// Bytes the secure layer adds around an encrypted frame: version, type, receiver index,
/// counter, and the AEAD tag.
pub const TRANSPORT_OVERHEAD: usize = 2 + 4 + 8 + 16;

/// Bytes of a cookie (see [`Sealed::CookieReply`]) and of the MAC that proves one.
pub const COOKIE_LEN: usize = 16;
/// Bytes of a cookie reply's nonce (XChaCha20-Poly1305).
pub const COOKIE_NONCE_LEN: usize = 24;
/// Bytes of a sealed cookie: the cookie and its AEAD tag.
pub const SEALED_COOKIE_LEN: usize = COOKIE_LEN + 16;

/// A datagram of the secure layer: a Noise handshake message, an encrypted frame, or a
/// notice that a session index is unknown. Frames ([`super::Packet`]) only ever travel inside
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
    /// An encrypted [`super::Packet`].
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
    let mut r = Reader::header(bytes)?;
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
        TYPE_DATA | TYPE_ACK | TYPE_PROBE | TYPE_PROBE_REPLY => {
            return Err(DecodeError::Malformed("unencrypted frame"));
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(sealed)
}
