//! The mailbox endpoints' bodies (`/peers/{uuid}/mailbox`, `/peers/{uuid}/blocked/{sender}`).
//!
//! The index keeps, per recipient, letters it cannot read: each is a [`crate::mailbox`] seal
//! (base64 here), with the sender's UUID, its size and when it was deposited. See
//! docs/mailbox.md for the sealing format and what the index learns.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::mailbox::MAX_SEALED;

/// A sealed letter as the API carries it (standard base64, padded).
pub fn encode_sealed(sealed: &[u8]) -> String {
    STANDARD.encode(sealed)
}

/// A sealed letter from the API: `None` unless it is standard padded base64 of 1 to
/// [`MAX_SEALED`] bytes (checked on the text's length before anything is decoded).
pub fn decode_sealed(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() > MAX_SEALED.div_ceil(3) * 4 {
        return None;
    }
    STANDARD
        .decode(text)
        .ok()
        .filter(|bytes| !bytes.is_empty() && bytes.len() <= MAX_SEALED)
}

/// Most letters one `GET /peers/{uuid}/mailbox` answers.
pub const MAX_TAKE: usize = 100;

/// Body of `POST /peers/{uuid}/mailbox`: a sealed letter for the record `{uuid}`, deposited by
/// `from`, whose key signs the request (`Authorization: Signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    /// The sender: a live keyed record whose key signed this request.
    pub from: Uuid,
    /// The sealed letter, standard base64 with padding; at most
    /// [`crate::mailbox::MAX_SEALED`] bytes once decoded.
    #[cfg_attr(feature = "openapi", schema(example = "AWVwaGVtZXJhbC4uLg=="))]
    pub sealed: String,
}

/// Answer of `POST /peers/{uuid}/mailbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deposited {
    /// The letter's number in the recipient's mailbox (increasing in deposit order).
    pub id: i64,
    /// When the letter is deleted unless taken first (RFC 3339, UTC).
    pub expires_at: String,
}

/// One letter in `GET /peers/{uuid}/mailbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Letter {
    /// Its number in the mailbox (increasing in deposit order).
    pub id: i64,
    /// The sender, as its signature proved to the index.
    pub from: Uuid,
    /// Bytes of the sealed letter.
    pub size: u64,
    /// When it was deposited (RFC 3339, UTC).
    pub deposited_at: String,
    /// When it is deleted unless taken first (RFC 3339, UTC).
    pub expires_at: String,
    /// The sealed letter, standard base64 with padding.
    pub sealed: String,
}

/// Answer of `GET /peers/{uuid}/mailbox`: the oldest waiting letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mailbox {
    /// At most `limit` (and at most 100) letters, oldest first.
    pub letters: Vec<Letter>,
    /// Whether more letters wait after these.
    pub more: bool,
}

/// Answer of `DELETE /peers/{uuid}/mailbox?through=<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Taken {
    /// How many letters were deleted.
    pub deleted: u64,
}
