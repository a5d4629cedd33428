//! Sealed letters for the index's mailbox: a message (or a receipt) for a peer who is offline,
//! readable only by that peer and provably from its sender, free of I/O.
//!
//! A letter is one Noise `X` handshake message (`Noise_X_25519_ChaChaPoly_BLAKE2s`, the
//! one-way pattern for a recipient whose static key the sender knows) from the sender's static
//! key to the recipient's, both the X25519 forms of their Ed25519 identity keys:
//!
//! ```text
//! sealed   = version (1) || noise X message (e, encrypted s, encrypted payload)
//! prologue = "peerlink-mailbox-v1" || sender UUID (16) || recipient UUID (16)
//! payload  = sender's Ed25519 public key (32) || JSON of Letter
//! ```
//!
//! Only the recipient's secret opens it (`es`, `ss`); the `ss` term proves the sender's static
//! key, and the recipient checks that key against the Ed25519 key in the payload and that key
//! against the sender's UUID (`uuid_for_key`). The prologue binds both UUIDs: a letter
//! re-deposited under another sender, or handed to another recipient, does not open. Any
//! changed byte fails the AEAD. What the index learns is in docs/mailbox.md.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::identity::{Identity, noise_public_key, uuid_for_key};
use crate::secure::rng::SeededResolver;

/// The format of a sealed letter (its first byte).
pub const VERSION: u8 = 1;
/// Most bytes of a sealed letter: the index refuses larger ones, and its request body limit
/// must hold one in base64.
pub const MAX_SEALED: usize = 10 * 1024;
/// Most receipts one letter carries.
pub const MAX_RECEIPTS: usize = 200;

const PARAMS: &str = "Noise_X_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"peerlink-mailbox-v1";

/// Which message a receipt is for: the sender's id and the time it gave the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// The sender's message id (its `sent`/`delivered` id).
    pub id: u64,
    /// When it was sent, Unix milliseconds by the sender's clock.
    pub at: u64,
}

/// What a letter says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    /// A private message.
    Text {
        /// The text, as typed.
        text: String,
        /// A `/me` action.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        action: bool,
    },
    /// The recipient of these letters has taken them (a delivery receipt that had to wait
    /// for its own recipient too).
    Receipt {
        /// The letters taken.
        letters: Vec<Stamp>,
    },
}

/// The plaintext of a sealed letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Letter {
    /// The recipient.
    pub to: Uuid,
    /// The sender's id for it and when it was written: unique per sender, so the recipient
    /// takes each letter once, and receipts name it.
    #[serde(flatten)]
    pub stamp: Stamp,
    /// What it says.
    #[serde(flatten)]
    pub content: Content,
}

/// A letter opened and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's Ed25519 key, proven by the seal.
    pub sender_key: [u8; 32],
    /// The sender (derived from the key).
    pub from: Uuid,
    /// The letter.
    pub letter: Letter,
}

/// Why a letter could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MailboxError {
    /// Sealed, it would be larger than [`MAX_SEALED`].
    #[error("the letter is too large for the mailbox (at most {MAX_SEALED} bytes sealed)")]
    TooLarge,
    /// Not a letter of a version we read.
    #[error("not a sealed letter of version {VERSION}")]
    Version,
    /// The recipient key is not an Ed25519 public key.
    #[error("the recipient's key is not a valid public key")]
    BadKey,
    /// It does not open with our key: altered, cut, or for someone else (or another sender).
    #[error("the letter does not open: altered, or not sealed for us by this sender")]
    Tampered,
    /// It opens, but the key inside is not the sender's.
    #[error("the letter's sender key does not match its sender")]
    ForgedSender,
    /// It opens, but what is inside is not a letter for us.
    #[error("the letter's contents are malformed")]
    Malformed,
}

fn prologue(from: Uuid, to: Uuid) -> Vec<u8> {
    let mut prologue = PROLOGUE.to_vec();
    prologue.extend_from_slice(from.as_bytes());
    prologue.extend_from_slice(to.as_bytes());
    prologue
}

fn builder(seed: [u8; 32]) -> snow::Builder<'static> {
    snow::Builder::with_resolver(
        PARAMS.parse().expect("valid Noise parameters"),
        Box::new(SeededResolver(seed)),
    )
}

/// Seals `letter` from `sender` for the peer whose Ed25519 key is `recipient_key`
/// (`letter.to` is set to its UUID). `seed` is fresh randomness for the ephemeral key.
pub fn seal(
    sender: &Identity,
    recipient_key: &[u8; 32],
    letter: &Letter,
    seed: [u8; 32],
) -> Result<Vec<u8>, MailboxError> {
    let to = uuid_for_key(recipient_key);
    let remote = noise_public_key(recipient_key).map_err(|_| MailboxError::BadKey)?;
    let letter = Letter {
        to,
        ..letter.clone()
    };
    let mut payload = sender.public_key().to_vec();
    payload.extend_from_slice(&serde_json::to_vec(&letter).expect("letters serialise"));
    // e (32) + s (32 + 16) + payload + tag (16), after the version byte.
    if 1 + 32 + 48 + payload.len() + 16 > MAX_SEALED {
        return Err(MailboxError::TooLarge);
    }
    let private = sender.noise_private_key();
    let prologue = prologue(sender.uuid(), to);
    let mut state = builder(seed)
        .local_private_key(&private)
        .and_then(|b| b.remote_public_key(&remote))
        .and_then(|b| b.prologue(&prologue))
        .and_then(|b| b.build_initiator())
        .expect("a valid X initiator");
    let mut out = vec![0u8; MAX_SEALED];
    out[0] = VERSION;
    let len = state
        .write_message(&payload, &mut out[1..])
        .map_err(|_| MailboxError::TooLarge)?;
    out.truncate(1 + len);
    Ok(out)
}

/// Opens a letter deposited by `from` for `me`, checking that it is sealed for us, that its
/// sender key is `from`'s and proven by the seal, and that it names us.
pub fn open(me: &Identity, from: Uuid, sealed: &[u8]) -> Result<Opened, MailboxError> {
    if sealed.len() > MAX_SEALED {
        return Err(MailboxError::TooLarge);
    }
    let Some((&VERSION, message)) = sealed.split_first() else {
        return Err(MailboxError::Version);
    };
    let private = me.noise_private_key();
    let prologue = prologue(from, me.uuid());
    // The responder draws no randomness in a one-way pattern.
    let mut state = builder([0; 32])
        .local_private_key(&private)
        .and_then(|b| b.prologue(&prologue))
        .and_then(|b| b.build_responder())
        .expect("a valid X responder");
    let mut payload = vec![0u8; message.len()];
    let len = state
        .read_message(message, &mut payload)
        .map_err(|_| MailboxError::Tampered)?;
    payload.truncate(len);
    if payload.len() < 32 {
        return Err(MailboxError::Malformed);
    }
    let (key, json) = payload.split_at(32);
    let sender_key: [u8; 32] = key.try_into().expect("32 bytes");
    let proven = state.get_remote_static().ok_or(MailboxError::Tampered)?;
    let matches = noise_public_key(&sender_key).is_ok_and(|noise| noise == proven);
    if !matches || uuid_for_key(&sender_key) != from {
        return Err(MailboxError::ForgedSender);
    }
    let letter: Letter = serde_json::from_slice(json).map_err(|_| MailboxError::Malformed)?;
    let receipts_ok = match &letter.content {
        Content::Receipt { letters } => letters.len() <= MAX_RECEIPTS,
        Content::Text { .. } => true,
    };
    if letter.to != me.uuid() || !receipts_ok {
        return Err(MailboxError::Malformed);
    }
    Ok(Opened {
        sender_key,
        from,
        letter,
    })
}

#[cfg(test)]
mod tests;
