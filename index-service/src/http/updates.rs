//! Owner-only changes to a peer record: `PUT /peers/{uuid}`, `POST /peers/{uuid}/heartbeat`
//! and `DELETE /peers/{uuid}`. The [`Owner`] extractor proves the caller owns the record
//! (credentials: see [`super::auth`]) before a handler runs.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::api::{ErrorBody, PeerRecord, PeerUpdate};

use super::auth;
use super::error::ApiError;
use super::json::parse_body;
use super::owner::{Owner, write_error};
use super::peers::{keyless_name, name_taken, over_quota, validate};
use crate::AppState;
use crate::db::quota::Origin;
use crate::db::{self, WriteError};

/// The answer to an owner's change: the record as stored, with the TTL it now has and fresh
/// ICE server credentials, and not to be cached (the owner changes it).
fn owner_answer(state: &AppState, mut record: PeerRecord) -> Response {
    record.set_record_ttl(state.config.peer_ttl.as_secs());
    record.ice_servers = state.ice.for_peer(record.uuid, auth::unix_now());
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(record),
    )
        .into_response()
}

/// Move a record to a new address (the IP this request came from and the given UDP port)
/// and name, refreshing it. Owner only. A name left out is removed; only a keyed record may
/// carry a name (a keyless one sending a name gets 400); a name another live record holds, or
/// one that looks the same, is refused with 409. Quotas apply as on registration (429).
/// Candidates are kept: a keyed registration replaces them.
#[utoipa::path(
    put,
    path = "/peers/{uuid}",
    tag = "peers",
    params(("uuid" = String, Path,
        description = "The peer's UUID, hyphenated or 32 hex digits, any case",
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")),
    request_body = PeerUpdate,
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 200, description = "Updated; the record as stored (its candidates unchanged), with `ice_servers` when the index has STUN/TURN servers", body = PeerRecord),
        (status = 400, description = "Not a UUID, the body is not valid JSON, a name with invisible characters, outer spaces or only spaces, or a name for a keyless record (names need a keyed registration)", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID", body = ErrorBody),
        (status = 409, description = "Another live peer has this name, or one that looks the same: choose another", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "A field is missing or out of range", body = ErrorBody),
        (status = 429, description = "Too many writes from this address (with Retry-After), or this address or its subnet already holds as many live records or names as the index allows", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying (rate limit only)"))),
        (status = 500, description = "The index failed; nothing was changed", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn update_peer(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    owner: Owner,
) -> Result<Response, ApiError> {
    let update: PeerUpdate = parse_body(&headers, &owner.body)?;
    let name = validate(update.udp_port, update.name.as_deref())?;
    if name.is_some() && !matches!(owner.owner, db::Owner::Key(_)) {
        return Err(keyless_name());
    }
    let addr = SocketAddr::new(client.ip().to_canonical(), update.udp_port).to_string();
    let origin = Origin::of(client.ip());
    let record = state
        .writer
        .update(owner.uuid, owner.owner, addr, origin, name, owner.signature)
        .await
        .map_err(|error| match error {
            WriteError::NameTaken => name_taken(update.name.as_deref().unwrap_or_default()),
            WriteError::Quota(exceeded) => over_quota(exceeded),
            other => write_error(owner.uuid)(other),
        })?;
    tracing::info!(peer = %record.uuid, addr = %record.addr, "updated");
    Ok(owner_answer(&state, record))
}

/// Refresh a record's `last_seen` so it outlives another TTL. Owner only; the body, if any, is
/// ignored (but covered by a signature). The answer carries fresh `ice_servers` credentials
/// when the index has STUN/TURN servers.
#[utoipa::path(
    post,
    path = "/peers/{uuid}/heartbeat",
    tag = "peers",
    params(("uuid" = String, Path,
        description = "The peer's UUID, hyphenated or 32 hex digits, any case",
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")),
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 200, description = "Refreshed; the record as stored, with fresh `ice_servers` credentials when the index has STUN/TURN servers", body = PeerRecord),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID: register again", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Too many writes from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn heartbeat(State(state): State<AppState>, owner: Owner) -> Result<Response, ApiError> {
    let record = state
        .writer
        .heartbeat(owner.uuid, owner.owner, owner.signature)
        .await
        .map_err(write_error(owner.uuid))?;
    tracing::debug!(peer = %record.uuid, "heartbeat");
    Ok(owner_answer(&state, record))
}

/// Delete a record. Owner only.
#[utoipa::path(
    delete,
    path = "/peers/{uuid}",
    tag = "peers",
    params(("uuid" = String, Path,
        description = "The peer's UUID, hyphenated or 32 hex digits, any case",
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")),
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Too many writes from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed; nothing was deleted", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn delete_peer(
    State(state): State<AppState>,
    owner: Owner,
) -> Result<StatusCode, ApiError> {
    state
        .writer
        .delete(owner.uuid, owner.owner, owner.signature)
        .await
        .map_err(write_error(owner.uuid))?;
    tracing::info!(peer = %owner.uuid, "deleted");
    Ok(StatusCode::NO_CONTENT)
}
