//! Peer identities: an Ed25519 key pair per daemon, the UUID derived from its public key, and
//! the exact byte strings that registrations and owner-only requests sign.
//!
//! Because the UUID is a hash of the public key (a UUIDv8, as Syncthing derives device IDs from
//! certificates), anyone holding a UUID and a claimed key can check the binding offline, and
//! re-registering with the same key always yields the same UUID. The Noise static key used on
//! the wire is the X25519 form of the same key, so one secret proves both.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

use crate::api::Candidate;

/// How far a signed timestamp may be from the verifier's clock, in seconds.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Why a key, a signature or a binding was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    /// Not 64 hex digits, or not a valid Ed25519 point.
    #[error("public_key must be 64 hex digits of an Ed25519 public key")]
    BadKey,
    /// Not 128 hex digits.
    #[error("signature must be 128 hex digits")]
    BadSignatureEncoding,
    /// Does not verify.
    #[error("the signature does not match the public key and the signed fields")]
    BadSignature,
    /// The timestamp is too far from now.
    #[error(
        "timestamp is more than {MAX_CLOCK_SKEW_SECS} s away from the index's clock; check the peer's clock"
    )]
    Skew,
}

/// A daemon's long-term key pair.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("uuid", &self.uuid())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity whose secret is these 32 bytes (from a key file, or fresh randomness).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Identity {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// The 32 secret bytes, for the key file.
    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The UUID bound to this key.
    pub fn uuid(&self) -> Uuid {
        uuid_for_key(&self.public_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The X25519 private key for Noise (the Ed25519 secret scalar, as libsodium converts it).
    pub fn noise_private_key(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }
}

/// The UUID bound to an Ed25519 public key: the first 16 bytes of SHA-256 over a domain tag
/// and the key, with the UUIDv8 version and variant bits set.
pub fn uuid_for_key(public_key: &[u8; 32]) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"peerlink-uuid-v1\0")
        .chain_update(public_key)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The X25519 public key (Noise static key) belonging to an Ed25519 public key.
pub fn noise_public_key(public_key: &[u8; 32]) -> Result<[u8; 32], IdentityError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| IdentityError::BadKey)?;
    Ok(key.to_montgomery().to_bytes())
}

/// What a keyed registration signs: every field the index stores from it, and when.
pub fn register_message(
    public_key: &[u8; 32],
    udp_port: u16,
    name: Option<&str>,
    candidates: &[Candidate],
    timestamp: u64,
) -> Vec<u8> {
    let mut message = format!(
        "peerlink-register-v1\n{}\n{udp_port}\n{}\n{timestamp}",
        hex::encode(public_key),
        name.unwrap_or("")
    );
    // Without candidates the message is exactly v1's, so older clients keep verifying.
    if !candidates.is_empty() {
        message.push_str("\ncandidates");
        for candidate in candidates {
            message.push_str(&format!(" {} {}", candidate.kind.as_str(), candidate.addr));
        }
    }
    message.into_bytes()
}

/// What an owner-only request on a keyed record signs (`method` is the HTTP method, `path`
/// the request path with its query as sent (`/peers/{uuid}/mailbox?through=7`; most requests
/// have none), `body` the exact request body bytes).
pub fn owner_message(method: &str, path: &str, body: &[u8], timestamp: u64) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("peerlink-owner-v1\n{method}\n{path}\n{body_hash}\n{timestamp}").into_bytes()
}

/// What a LAN announcement (the mDNS TXT record, see docs/protocol.md) signs: every field a
/// peer on the LAN acts on, each length-prefixed so that no two announcements sign the same
/// bytes.
pub fn lan_message(
    public_key: &[u8; 32],
    name: &str,
    addrs: &str,
    rooms: &str,
    timestamp: u64,
) -> Vec<u8> {
    let mut message = b"peerlink-lan-v1\n".to_vec();
    message.extend_from_slice(public_key);
    for field in [name, addrs, rooms] {
        message.extend_from_slice(&(field.len() as u32).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    message.extend_from_slice(&timestamp.to_be_bytes());
    message
}

/// Checks a hex signature by `public_key` over `message`, with no clock involved (the caller
/// judges freshness).
pub fn verify_signature(
    public_key: &[u8; 32],
    message: &[u8],
    signature_hex: &str,
) -> Result<(), IdentityError> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut bytes)
        .map_err(|_| IdentityError::BadSignatureEncoding)?;
    verify_raw(public_key, message, &bytes)
}

/// Checks a raw 64-byte signature by `public_key` over `message` (strict verification: no
/// malleable or small-order forms).
pub fn verify_raw(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), IdentityError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| IdentityError::BadKey)?;
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| IdentityError::BadSignature)
}

/// Parses a hex public key.
pub fn parse_public_key(hex_key: &str) -> Result<[u8; 32], IdentityError> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut key).map_err(|_| IdentityError::BadKey)?;
    VerifyingKey::from_bytes(&key).map_err(|_| IdentityError::BadKey)?;
    Ok(key)
}

/// Checks a hex signature by `public_key` over `message`, made at `timestamp`, against `now`
/// (both Unix seconds).
pub fn verify(
    public_key: &[u8; 32],
    message: &[u8],
    signature_hex: &str,
    timestamp: u64,
    now: u64,
) -> Result<(), IdentityError> {
    if timestamp.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(IdentityError::Skew);
    }
    verify_signature(public_key, message, signature_hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_a_stable_v8_hash_of_the_key() {
        let a = Identity::from_secret([7; 32]);
        assert_eq!(a.uuid(), Identity::from_secret([7; 32]).uuid());
        assert_ne!(a.uuid(), Identity::from_secret([8; 32]).uuid());
        assert_eq!(a.uuid().get_version_num(), 8);
    }

    #[test]
    fn signatures_bind_every_field() {
        let id = Identity::from_secret([1; 32]);
        let key = id.public_key();
        let message = register_message(&key, 4000, Some("alice"), &[], 1_000);
        let sig = hex::encode(id.sign(&message));
        assert_eq!(verify(&key, &message, &sig, 1_000, 1_100), Ok(()));
        let other = register_message(&key, 4001, Some("alice"), &[], 1_000);
        assert_eq!(
            verify(&key, &other, &sig, 1_000, 1_100),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            verify(&key, &message, &sig, 1_000, 2_000),
            Err(IdentityError::Skew)
        );
        let mallory = Identity::from_secret([2; 32]).public_key();
        assert_eq!(
            verify(&mallory, &message, &sig, 1_000, 1_000),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            verify(&key, &message, "zz", 1_000, 1_000),
            Err(IdentityError::BadSignatureEncoding)
        );
    }

    #[test]
    fn noise_key_matches_the_identity() {
        let id = Identity::from_secret([9; 32]);
        let public = x25519_public(&id.noise_private_key());
        assert_eq!(noise_public_key(&id.public_key()).unwrap(), public);
    }

    fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
        curve25519_dalek::MontgomeryPoint::mul_base_clamped(*private).to_bytes()
    }
}
