//! `POST /register`, `GET /peers/{uuid}` and `GET /peers?name=`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::api::{ErrorBody, PeerRecord, RegisterRequest};
use proto::identity;
use serde::Deserialize;
use uuid::Uuid;

use super::auth;
use super::error::ApiError;
use super::json::ApiJson;
use crate::db::quota::{Exceeded, Origin};
use crate::db::{StoredPeer, WriteError};
use crate::naming::{self, Name};
use crate::{AppState, candidates, db};

pub use crate::naming::MAX_NAME_CHARS;

/// Register a peer: its address is the IP this request came from and the given UDP port.
///
/// Without `public_key` the record is keyless: it gets a fresh random UUID and the answer
/// carries a bearer `token`, the only credential that can later update, heartbeat or delete it.
/// With `public_key`, `timestamp` and `signature` (over `proto::identity::register_message`)
/// the UUID is derived from the key, and registering again with the same key updates the same
/// record (address, name, `last_seen`). Both answer 201.
///
/// A keyed registration may list `candidates` (at most 8; each kind and address once; none at
/// port 0 nor at an unspecified, multicast or broadcast address: 422), covered by its signature;
/// they replace the stored list and lookups return them as signed. `addr` stays the observed IP
/// and `udp_port`. A keyless registration with candidates is refused with 400.
///
/// When the index is configured with STUN/TURN servers (`--turn-url`), the answer carries
/// `ice_servers`: TURN URLs with a time-limited `username` (`<expiry unix time>:<uuid>`) and
/// `credential` (base64 of HMAC-SHA1 with coturn's `static-auth-secret`), and STUN URLs.
/// Lookups never carry them.
///
/// Only a keyed registration may carry a `name`. Names are unique among live records by their
/// confusable skeleton (NFKC, case folding, UTS #39): a name another live record holds, or one
/// that looks the same, is refused with 409 (a keyed record registering again keeps its own
/// name). Names with invisible characters (control, format, zero-width, bidi controls), outer
/// spaces or only spaces are refused with 400.
///
/// Each client IP and each /24 (IPv4) or /48 (IPv6) subnet may hold only so many live records
/// and names (`--max-records-per-ip` and friends): past that the answer is 429. When the
/// index holds `--max-records` records, new ones are refused with 507.
#[utoipa::path(
    post,
    path = "/register",
    tag = "peers",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered (or, with a key already registered, updated); the record as stored, with `token` for keyless registrations and `ice_servers` when the index has STUN/TURN servers", body = PeerRecord,
            headers(("Cache-Control" = String, description = "`no-store`: the answer may hold a token"))),
        (status = 400, description = "The body is not valid JSON; a name with invisible characters (control, format, zero-width, bidi controls), outer spaces or only spaces; or a name or candidates in a keyless registration (names and candidates need public_key, timestamp and signature)", body = ErrorBody),
        (status = 401, description = "A keyed registration whose signature is missing, malformed, stale, replayed or wrong (it covers udp_port, name and candidates)", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 409, description = "Another live peer has this name, or one that looks the same (case, width, accents composed or not, look-alike letters of other scripts): choose another", body = ErrorBody),
        (status = 422, description = "A field is missing or out of range; more than 8 candidates, a candidate listed twice, or one that reaches nobody (port 0, an unspecified, multicast or broadcast address)", body = ErrorBody),
        (status = 429, description = "Too many writes from this address (with Retry-After), or this address or its subnet already holds as many live records or names as the index allows (delete some or wait until they expire)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying (rate limit only)"))),
        (status = 500, description = "The index failed; nothing was stored", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full (with Retry-After), or the index holds as many records as it is configured to (`--max-records`; retry once records have expired); nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    validate(request.udp_port, None)?;
    let addr = SocketAddr::new(client.ip().to_canonical(), request.udp_port).to_string();
    let origin = Origin::of(client.ip());
    let refused = |error| match error {
        WriteError::Replay => replayed(),
        WriteError::NameTaken => name_taken(request.name.as_deref().unwrap_or_default()),
        WriteError::Quota(exceeded) => over_quota(exceeded),
        other => internal(other),
    };
    let mut record = match &request.public_key {
        None => {
            if request.timestamp.is_some() || request.signature.is_some() {
                return Err(ApiError::Unauthorized(
                    "timestamp and signature sign a public_key, which is missing: send all \
                     three for a keyed registration, or none for a keyless one"
                        .into(),
                ));
            }
            if validate(request.udp_port, request.name.as_deref())?.is_some() {
                return Err(keyless_name());
            }
            if !request.candidates.is_empty() {
                return Err(keyless_candidates());
            }
            let (token, token_hash) = auth::new_token();
            let mut record = state
                .writer
                .insert_keyless(Uuid::new_v4(), addr, origin, token_hash)
                .await
                .map_err(refused)?;
            record.token = Some(token);
            record
        }
        Some(key_hex) => {
            let key = identity::parse_public_key(key_hex)
                .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
            let (Some(timestamp), Some(signature)) = (request.timestamp, &request.signature) else {
                return Err(ApiError::Unauthorized(
                    "a registration with public_key must also carry timestamp (Unix seconds) \
                     and signature (128 hex digits, Ed25519 over \
                     proto::identity::register_message(public_key, udp_port, name, candidates, \
                     timestamp))"
                        .into(),
                ));
            };
            let message = identity::register_message(
                &key,
                request.udp_port,
                request.name.as_deref(),
                &request.candidates,
                timestamp,
            );
            identity::verify(&key, &message, signature, timestamp, auth::unix_now())
                .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
            // The name and candidates are judged once the request is known to come from the
            // key's holder.
            let name = validate(request.udp_port, request.name.as_deref())?;
            candidates::check(&request.candidates)
                .map_err(|error| ApiError::Unprocessable(error.to_string()))?;
            let used = auth::used_signature(signature, timestamp)?;
            state
                .writer
                .upsert_keyed(
                    identity::uuid_for_key(&key),
                    addr,
                    origin,
                    name,
                    hex::encode(key),
                    used,
                    request.candidates.clone(),
                )
                .await
                .map_err(refused)?
        }
    };
    record.set_record_ttl(state.config.peer_ttl.as_secs());
    record.ice_servers = state.ice.for_peer(record.uuid, auth::unix_now());
    tracing::info!(
        peer = %record.uuid,
        addr = %record.addr,
        keyed = record.public_key.is_some(),
        candidates = record.candidates.len(),
        "registered"
    );
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(record),
    )
        .into_response())
}

/// Checks the fields every registration and update carries.
pub(super) fn validate(udp_port: u16, name: Option<&str>) -> Result<Option<Name>, ApiError> {
    if udp_port == 0 {
        return Err(ApiError::Unprocessable(
            "udp_port must be between 1 and 65535".into(),
        ));
    }
    name.map(validate_name).transpose()
}

/// A name's length out of range is 422; anything else wrong with it is 400.
fn validate_name(name: &str) -> Result<Name, ApiError> {
    naming::check(name).map_err(|error| {
        if error.is_length() {
            ApiError::Unprocessable(error.to_string())
        } else {
            ApiError::BadRequest(error.to_string())
        }
    })
}

/// The answer to a name in a registration or update without a key.
pub(super) fn keyless_name() -> ApiError {
    ApiError::BadRequest(
        "names need a keyed registration: register with public_key, timestamp and signature \
         (Ed25519 over proto::identity::register_message), or register without a name"
            .into(),
    )
}

/// The answer to candidates in a registration without a key.
fn keyless_candidates() -> ApiError {
    ApiError::BadRequest(
        "candidates need a keyed registration: register with public_key, timestamp and \
         signature (Ed25519 over proto::identity::register_message, which covers the \
         candidates), or register without candidates"
            .into(),
    )
}

/// The answer to a write past a quota (429) or the global cap (507).
pub(super) fn over_quota(exceeded: Exceeded) -> ApiError {
    match exceeded {
        Exceeded::Full(_) => ApiError::InsufficientStorage(exceeded.to_string()),
        other => ApiError::QuotaExceeded(other.to_string()),
    }
}

/// The answer to a name another live record holds.
pub(super) fn name_taken(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "the name `{name}` is taken by another peer, or looks the same as a name another peer \
         holds; choose another name (e.g. --name {name}2)"
    ))
}

/// The answer to a signature the index has already accepted once.
pub(super) fn replayed() -> ApiError {
    ApiError::Unauthorized(
        "this signed request was already used; sign it again with the current timestamp".into(),
    )
}

/// A writer failure that is not the client's fault: 507/503 when the database cannot be
/// written, 500 otherwise.
pub(super) fn internal(error: WriteError) -> ApiError {
    error.into()
}

/// Look a peer up by UUID. The answer may be cached for `cache_ttl_secs` seconds (also sent
/// as `Cache-Control: max-age`); records whose owner stopped refreshing them are not found.
#[utoipa::path(
    get,
    path = "/peers/{uuid}",
    tag = "peers",
    params(("uuid" = String, Path,
        description = "The peer's UUID, hyphenated or 32 hex digits, any case",
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")),
    responses(
        (status = 200, description = "The peer's record", body = PeerRecord,
            headers(("Cache-Control" = String, description = "`max-age=<cache_ttl_secs>`: how long this answer may be cached"))),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID", body = ErrorBody),
        (status = 429, description = "Too many reads from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed", body = ErrorBody),
    )
)]
pub async fn get_peer(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let uuid = parse_uuid(&raw)?;
    // The hot path: the in-memory copy, without building the owner lookups do not show.
    if let Some((mut record, remaining_secs)) = state.cache.lookup(uuid) {
        let cache_secs = remaining_secs
            .min(state.config.max_cache_age as f64)
            .floor() as u64;
        record.set_cache_ttl(cache_secs);
        let max_age = format!("max-age={cache_secs}");
        return Ok(([(header::CACHE_CONTROL, max_age)], Json(record)).into_response());
    }
    let ticket = state.cache.ticket(uuid);
    let peer = db::find_peer(&state.pool, uuid, &state.now())
        .await?
        .ok_or_else(|| not_found(uuid))?;
    state.cache.fill(ticket, &peer.record);
    Ok(lookup_answer(&state, peer))
}

/// The query of `GET /peers`.
#[derive(Debug, Deserialize)]
pub struct NameQuery {
    name: Option<String>,
}

/// Look a peer up by display name. The name is matched by its key (NFKC, case folding, UTS #39
/// confusable skeleton), as uniqueness is, so `ALICE` or `аlice` with a Cyrillic `а` finds
/// `alice`. Cached like a lookup by UUID.
#[utoipa::path(
    get,
    path = "/peers",
    tag = "peers",
    params(("name" = String, Query,
        description = "The display name to look for, in any case or look-alike spelling",
        min_length = 1, max_length = 64, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")),
    responses(
        (status = 200, description = "The record of the live peer with that name", body = PeerRecord,
            headers(("Cache-Control" = String, description = "`max-age=<cache_ttl_secs>`: how long this answer may be cached"))),
        (status = 400, description = "No `name` in the query, or a query that cannot be read", body = ErrorBody),
        (status = 404, description = "No live peer has that name, or no peer could (invisible characters, outer spaces, only spaces)", body = ErrorBody),
        (status = 422, description = "Not a possible name (empty or too long)", body = ErrorBody),
        (status = 429, description = "Too many reads from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed", body = ErrorBody),
    )
)]
pub async fn find_by_name(
    State(state): State<AppState>,
    query: Result<Query<NameQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(NameQuery { name }) = query.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "could not read the query: {}; look a name up with /peers?name=<name>",
            rejection.body_text()
        ))
    })?;
    let name = name
        .ok_or_else(|| ApiError::BadRequest("say whom to look for: /peers?name=<name>".into()))?;
    // A name no record could hold is simply not found (its length aside, which the contract
    // states): lookups need not know which characters registrations refuse.
    let key = match naming::check(&name) {
        Ok(checked) => checked.key,
        Err(error) if error.is_length() => return Err(ApiError::Unprocessable(error.to_string())),
        Err(error) => {
            return Err(ApiError::NotFound(format!(
                "no peer can be called `{}`: {error}",
                name.escape_debug()
            )));
        }
    };
    let peer = db::names::find_peer_by_name(&state.pool, &key, &state.now())
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no live peer is called `{name}` (names are matched in any case and look-alike \
                 spelling; records expire when their owners stop refreshing them)"
            ))
        })?;
    Ok(lookup_answer(&state, peer))
}

/// A live record as a lookup returns it: `cache_ttl_secs` (and the deprecated `ttl_secs`) is
/// how long the answer may be cached (the record's remaining lifetime, capped by
/// `--max-cache-age`).
pub(super) fn cached_record(state: &AppState, peer: StoredPeer) -> PeerRecord {
    let cache_secs = peer
        .remaining_secs(state.config.peer_ttl)
        .min(state.config.max_cache_age as f64)
        .floor() as u64;
    let mut record = peer.record;
    record.set_cache_ttl(cache_secs);
    record
}

/// The answer to a lookup: the record, and `Cache-Control: max-age` saying the same as its
/// `cache_ttl_secs`.
fn lookup_answer(state: &AppState, peer: StoredPeer) -> Response {
    let record = cached_record(state, peer);
    let max_age = format!("max-age={}", record.cache_ttl_secs.unwrap_or(0));
    ([(header::CACHE_CONTROL, max_age)], Json(record)).into_response()
}

/// The 404 for a UUID with no live record.
pub(super) fn not_found(uuid: Uuid) -> ApiError {
    ApiError::NotFound(format!(
        "no peer is registered as {uuid} (or its record expired: owners must refresh it within the TTL)"
    ))
}

/// Accepts the hyphenated and the 32-hex-digit forms, any case.
pub(super) fn parse_uuid(raw: &str) -> Result<Uuid, ApiError> {
    let well_formed = match raw.len() {
        32 => raw.bytes().all(|b| b.is_ascii_hexdigit()),
        36 => raw.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        }),
        _ => false,
    };
    well_formed
        .then(|| Uuid::parse_str(raw).ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`{raw}` is not a UUID: use 8-4-4-4-12 hex digits with hyphens, or 32 hex digits"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            parse_uuid("01234567-89ab-cdef-0123-456789abcdef").unwrap(),
            id
        );
        assert_eq!(parse_uuid("0123456789ABCDEF0123456789ABCDEF").unwrap(), id);
        for bad in [
            "",
            "xyz",
            "{01234567-89ab-cdef-0123-456789abcdef}",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert!(parse_uuid(bad).is_err(), "{bad}");
        }
    }
}
