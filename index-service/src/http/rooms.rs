//! Rooms: `GET /rooms`, `GET /rooms/{room}`, and the owner-only
//! `PUT`/`DELETE /rooms/{room}/members/{uuid}`.
//!
//! The index only remembers who is in which room, so members can find each other; room
//! messages go directly from peer to peer. A member stays in a room while its record is live:
//! it vanishes from every room when its record expires or is deleted.

use axum::Json;
use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::api::{ErrorBody, RoomList, RoomMembers};
use proto::chat::valid_room;

use super::error::ApiError;
use super::owner::{Owner, path_param, write_error};
use super::peers::cached_record;
use crate::AppState;
use crate::db::rooms;

/// The room the path's `{room}` names, checked (400 for a name no room can have).
pub(super) struct Room(String);

impl FromRequestParts<AppState> for Room {
    /// Our [`ApiError`], or axum's answer to a path that cannot be decoded, which the edge
    /// middleware renders in our JSON format like every other route's.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let raw = path_param(&params, "room").map_err(IntoResponse::into_response)?;
        if valid_room(raw) {
            Ok(Room(raw.to_owned()))
        } else {
            Err(ApiError::BadRequest(format!(
                "`{raw}` is not a room name: use 1 to 32 characters, each a lowercase letter a-z, \
                 a digit, `-` or `_`"
            ))
            .into_response())
        }
    }
}

/// `room` with its live members, each with how long its record may be cached.
async fn members(state: &AppState, room: &str) -> Result<RoomMembers, ApiError> {
    let members = rooms::members(&state.pool, room, &state.now()).await?;
    Ok(RoomMembers {
        room: room.to_owned(),
        members: members
            .into_iter()
            .map(|peer| cached_record(state, peer))
            .collect(),
    })
}

/// Puts the owner in the room (`joined`) or takes it out, for join and leave alike; returns
/// the room.
async fn change_membership(
    state: &AppState,
    owner: Owner<Room>,
    joined: bool,
) -> Result<String, ApiError> {
    let Room(room) = owner.target;
    state
        .writer
        .membership(
            room.clone(),
            joined,
            owner.uuid,
            owner.owner,
            owner.signature,
        )
        .await
        .map_err(write_error(owner.uuid))?;
    let change = if joined { "joined" } else { "left" };
    tracing::info!(peer = %owner.uuid, room, "{change}");
    Ok(room)
}

/// List the rooms that have at least one live member, by name, with their member counts.
#[utoipa::path(
    get,
    path = "/rooms",
    tag = "rooms",
    responses(
        (status = 200, description = "Every room with a live member", body = RoomList),
        (status = 429, description = "Too many reads from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed", body = ErrorBody),
    )
)]
pub async fn list_rooms(State(state): State<AppState>) -> Result<Json<RoomList>, ApiError> {
    let rooms = rooms::list(&state.pool, &state.now()).await?;
    Ok(Json(RoomList { rooms }))
}

/// A room's live members, in the order they joined; a room nobody is in has no members.
/// Each member's `cache_ttl_secs` says how long its record may be cached.
#[utoipa::path(
    get,
    path = "/rooms/{room}",
    tag = "rooms",
    params(("room" = String, Path,
        description = "The room: 1 to 32 of a-z, 0-9, `-` and `_`",
        pattern = "^[a-z0-9_-]{1,32}$")),
    responses(
        (status = 200, description = "The room and its live members", body = RoomMembers),
        (status = 400, description = "Not a room name", body = ErrorBody),
        (status = 429, description = "Too many reads from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed", body = ErrorBody),
    )
)]
pub async fn get_room(
    State(state): State<AppState>,
    Room(room): Room,
) -> Result<Json<RoomMembers>, ApiError> {
    Ok(Json(members(&state, &room).await?))
}

/// Join a room. Owner only (credentials of the record `uuid`); joining a room again changes
/// nothing. The body, if any, is ignored (but covered by a signature). Answers the room's live
/// members, the caller included.
#[utoipa::path(
    put,
    path = "/rooms/{room}/members/{uuid}",
    tag = "rooms",
    params(
        ("room" = String, Path,
            description = "The room: 1 to 32 of a-z, 0-9, `-` and `_`",
            pattern = "^[a-z0-9_-]{1,32}$"),
        ("uuid" = String, Path,
            description = "The joining peer's UUID, hyphenated or 32 hex digits, any case",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"),
    ),
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 200, description = "A member now; the room and its live members", body = RoomMembers,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "Not a room name, or not a UUID", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID: register again", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Too many writes from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed; membership is unchanged", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn join_room(
    State(state): State<AppState>,
    owner: Owner<Room>,
) -> Result<Response, ApiError> {
    let room = change_membership(&state, owner, true).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(members(&state, &room).await?),
    )
        .into_response())
}

/// Leave a room. Owner only; leaving a room one is not in changes nothing and succeeds too.
/// The body, if any, is ignored (but covered by a signature).
#[utoipa::path(
    delete,
    path = "/rooms/{room}/members/{uuid}",
    tag = "rooms",
    params(
        ("room" = String, Path,
            description = "The room: 1 to 32 of a-z, 0-9, `-` and `_`",
            pattern = "^[a-z0-9_-]{1,32}$"),
        ("uuid" = String, Path,
            description = "The leaving peer's UUID, hyphenated or 32 hex digits, any case",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"),
    ),
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 204, description = "Not a member (any more)"),
        (status = 400, description = "Not a room name, or not a UUID", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID (an expired record is in no room)", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Too many writes from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed; membership is unchanged", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn leave_room(
    State(state): State<AppState>,
    owner: Owner<Room>,
) -> Result<StatusCode, ApiError> {
    change_membership(&state, owner, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
