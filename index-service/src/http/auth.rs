//! Owner credentials: bearer tokens for keyless records, Ed25519 signatures for keyed ones.
//!
//! - Keyless: `Authorization: Bearer <token>`, the token handed out once in the registration
//!   answer. The index stores only its SHA-256 and compares hashes in constant time.
//! - Keyed: `Authorization: Signature <timestamp>.<signature>`, the hex Ed25519 signature over
//!   `proto::identity::owner_message(method, path, body, timestamp)` by the record's key, with
//!   `timestamp` within `proto::identity::MAX_CLOCK_SKEW_SECS` of the index's clock. Each
//!   signature is accepted once (see [`crate::db::UsedSignature`]).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use proto::identity::{self, IdentityError, MAX_CLOCK_SKEW_SECS};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::db::{Owner, UsedSignature};

/// What a client presented in `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Bearer <token>`.
    Bearer(String),
    /// `Signature <timestamp>.<hex signature>`.
    Signature {
        /// Unix seconds the request was signed at.
        timestamp: u64,
        /// 128 hex digits.
        signature: String,
    },
}

/// A fresh bearer token (64 hex digits from the OS's CSPRNG) and the hash to store.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// What the index stores for a token: hex SHA-256 of its text.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads `Authorization`; a missing or unreadable header is 401.
pub fn credentials(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "this request needs the record owner's credentials: `Authorization: Bearer <token>` \
             (keyless records; the token came with the registration) or \
             `Authorization: Signature <timestamp>.<hex signature>` (keyed records)"
                .into(),
        ));
    };
    let text = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, rest) = text.split_once(' ').ok_or_else(malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Credentials::Bearer(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("signature") {
        let (timestamp, signature) = rest.split_once('.').ok_or_else(malformed)?;
        let timestamp = timestamp.parse().map_err(|_| malformed())?;
        return Ok(Credentials::Signature {
            timestamp,
            signature: signature.to_owned(),
        });
    }
    Err(malformed())
}

fn malformed() -> ApiError {
    ApiError::Unauthorized(
        "the Authorization header must be `Bearer <token>` or \
         `Signature <unix timestamp>.<128 hex digits>`"
            .into(),
    )
}

/// The request being authorised, as the owner signed it.
pub struct SignedRequest<'a> {
    /// HTTP method, e.g. `PUT`.
    pub method: &'a str,
    /// The request path with its query, as sent, e.g. `/peers/<uuid>/heartbeat` or
    /// `/peers/<uuid>/mailbox?through=7`.
    pub path: &'a str,
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// Checks that `credentials` prove ownership of a record owned by `owner`; for a signature,
/// returns it so the writer can refuse it next time.
///
/// 401: the credentials cannot be checked (stale timestamp, bad encoding, replay is caught
/// later). 403: they can, and they belong to someone else.
pub fn authorize(
    owner: &Owner,
    credentials: &Credentials,
    request: &SignedRequest<'_>,
    now: u64,
) -> Result<Option<UsedSignature>, ApiError> {
    match (owner, credentials) {
        (Owner::Token(stored), Credentials::Bearer(token)) => {
            let presented = Sha256::digest(token.as_bytes());
            let mut stored_bytes = [0u8; 32];
            let readable = hex::decode_to_slice(stored, &mut stored_bytes).is_ok();
            if readable && bool::from(presented.as_slice().ct_eq(&stored_bytes)) {
                Ok(None)
            } else {
                Err(ApiError::Forbidden(
                    "this token does not own the record; only the token returned by its \
                     registration does"
                        .into(),
                ))
            }
        }
        (
            Owner::Key(key_hex),
            Credentials::Signature {
                timestamp,
                signature,
            },
        ) => {
            let key = identity::parse_public_key(key_hex)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored key {key_hex}: {e}")))?;
            let message =
                identity::owner_message(request.method, request.path, request.body, *timestamp);
            match identity::verify(&key, &message, signature, *timestamp, now) {
                Ok(()) => Ok(Some(used_signature(signature, *timestamp)?)),
                Err(IdentityError::BadSignature) => Err(ApiError::Forbidden(
                    "the signature is not by this record's key over \
                     owner_message(method, path, body, timestamp)"
                        .into(),
                )),
                Err(error) => Err(ApiError::Unauthorized(error.to_string())),
            }
        }
        (Owner::Token(_), Credentials::Signature { .. }) => Err(ApiError::Forbidden(
            "this record was registered without a key: authorise with `Authorization: Bearer \
             <token>`, the token from its registration"
                .into(),
        )),
        (Owner::Key(_), Credentials::Bearer(_)) => Err(ApiError::Forbidden(
            "this record is keyed: sign the request with its key \
             (`Authorization: Signature <timestamp>.<hex signature>`)"
                .into(),
        )),
        (Owner::Nobody, _) => Err(ApiError::Forbidden(
            "this record was registered before owners existed; nobody can change it, and it \
             expires after the index's TTL"
                .into(),
        )),
    }
}

/// The replay-protection entry for a verified signature.
pub fn used_signature(signature_hex: &str, timestamp: u64) -> Result<UsedSignature, ApiError> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut bytes)
        .map_err(|_| ApiError::Unauthorized(IdentityError::BadSignatureEncoding.to_string()))?;
    Ok(UsedSignature {
        hash: hex::encode(Sha256::digest(bytes)),
        expires_at: i64::try_from(timestamp.saturating_add(MAX_CLOCK_SKEW_SECS + 1))
            .unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proto::identity::Identity;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn authorization_forms() {
        assert_eq!(
            credentials(&headers("Bearer abc")).unwrap(),
            Credentials::Bearer("abc".into())
        );
        assert_eq!(
            credentials(&headers("signature 17.ab")).unwrap(),
            Credentials::Signature {
                timestamp: 17,
                signature: "ab".into()
            }
        );
        for bad in [
            "Bearer",
            "Basic abc",
            "Signature ab",
            "Signature x.ab",
            "token",
        ] {
            assert!(
                matches!(credentials(&headers(bad)), Err(ApiError::Unauthorized(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            credentials(&HeaderMap::new()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn tokens_match_only_their_hash() {
        let (token, hash) = new_token();
        assert_eq!(token.len(), 64);
        let owner = Owner::Token(hash);
        let request = SignedRequest {
            method: "DELETE",
            path: "/peers/x",
            body: b"",
        };
        assert_eq!(
            authorize(&owner, &Credentials::Bearer(token), &request, 0).unwrap(),
            None
        );
        let (other, _) = new_token();
        assert!(matches!(
            authorize(&owner, &Credentials::Bearer(other), &request, 0),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn signatures_bind_method_path_body_and_time() {
        let id = Identity::from_secret([3; 32]);
        let owner = Owner::Key(hex::encode(id.public_key()));
        let request = SignedRequest {
            method: "PUT",
            path: "/peers/u",
            body: b"{}",
        };
        let sign = |method: &str, path: &str, body: &[u8], ts: u64| Credentials::Signature {
            timestamp: ts,
            signature: hex::encode(id.sign(&identity::owner_message(method, path, body, ts))),
        };
        let used = authorize(
            &owner,
            &sign("PUT", "/peers/u", b"{}", 1000),
            &request,
            1000,
        )
        .unwrap()
        .unwrap();
        assert_eq!(used.expires_at, 1000 + MAX_CLOCK_SKEW_SECS as i64 + 1);
        for wrong in [
            sign("DELETE", "/peers/u", b"{}", 1000),
            sign("PUT", "/peers/v", b"{}", 1000),
            sign("PUT", "/peers/u", b"{ }", 1000),
        ] {
            assert!(matches!(
                authorize(&owner, &wrong, &request, 1000),
                Err(ApiError::Forbidden(_))
            ));
        }
        assert!(matches!(
            authorize(
                &owner,
                &sign("PUT", "/peers/u", b"{}", 1000),
                &request,
                2000
            ),
            Err(ApiError::Unauthorized(_))
        ));
        // Upper- and lowercase hex of one signature are one signature for replay purposes.
        let Credentials::Signature { signature, .. } = sign("PUT", "/peers/u", b"{}", 1000) else {
            unreachable!()
        };
        assert_eq!(
            used_signature(&signature, 1000).unwrap(),
            used_signature(&signature.to_uppercase(), 1000).unwrap()
        );
    }
}
