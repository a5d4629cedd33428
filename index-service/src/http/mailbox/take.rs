//! The owner's side of the mailbox: `GET /peers/{uuid}/mailbox` (take the oldest letters),
//! `DELETE /peers/{uuid}/mailbox?through=` (delete them once stored), and `PUT`/`DELETE
//! /peers/{uuid}/blocked/{sender}` (refuse or accept a sender's mail again).
//!
//! Every route here is owner-only: the [`Owner`] extractor proves the caller owns the live
//! record `{uuid}` before a handler runs. A signed `GET` is recorded as used like any write, so
//! a captured request cannot fetch the letters again.

use axum::Json;
use axum::extract::{FromRequestParts, Query, RawPathParams, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use proto::api::ErrorBody;
use proto::api::mailbox::{Letter, MAX_TAKE, Mailbox, Taken, encode_sealed};
use std::collections::HashMap;
use uuid::Uuid;

use super::no_store;
use crate::AppState;
use crate::db::WriteError;
use crate::db::mailbox::{self, StoredLetter};
use crate::http::error::ApiError;
use crate::http::owner::{Owner, path_param, write_error};
use crate::http::peers::parse_uuid;

/// The query's parameters, 400 when they cannot be read.
async fn query(parts: &mut Parts, state: &AppState) -> Result<HashMap<String, String>, Response> {
    Query::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Query(query)| query)
        .map_err(|rejection| {
            ApiError::BadRequest(format!(
                "could not read the query: {}",
                rejection.body_text()
            ))
            .into_response()
        })
}

/// `?limit=`: 1 to [`MAX_TAKE`], [`MAX_TAKE`] when left out.
pub(in crate::http) struct Limit(u32);

impl FromRequestParts<AppState> for Limit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let query = query(parts, state).await?;
        let Some(raw) = query.get("limit") else {
            return Ok(Limit(MAX_TAKE as u32));
        };
        match raw.parse::<u32>() {
            Ok(limit) if (1..=MAX_TAKE as u32).contains(&limit) => Ok(Limit(limit)),
            _ => Err(ApiError::BadRequest(format!(
                "`limit={raw}` is not a number of letters: give 1 to {MAX_TAKE}, or leave it out \
                 for {MAX_TAKE}"
            ))
            .into_response()),
        }
    }
}

/// `?through=`: the number of the last letter to delete.
pub(in crate::http) struct Through(i64);

impl FromRequestParts<AppState> for Through {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let query = query(parts, state).await?;
        let raw = query.get("through").map(String::as_str);
        match raw.map(str::parse::<i64>) {
            Some(Ok(through)) if through >= 0 => Ok(Through(through)),
            _ => Err(ApiError::BadRequest(format!(
                "{} must be `?through=<id>`, the number of the last letter taken (a \
                 non-negative integer): letters numbered up to it are deleted",
                raw.map_or_else(|| "the query".to_owned(), |raw| format!("`through={raw}`"))
            ))
            .into_response()),
        }
    }
}

/// The path's `{sender}`, a UUID (400 otherwise).
pub(in crate::http) struct Sender(Uuid);

impl FromRequestParts<AppState> for Sender {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let raw = path_param(&params, "sender").map_err(IntoResponse::into_response)?;
        parse_uuid(raw)
            .map(Sender)
            .map_err(IntoResponse::into_response)
    }
}

fn letter(stored: StoredLetter) -> Result<Letter, ApiError> {
    let from = Uuid::parse_str(&stored.sender)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored sender {}: {e}", stored.sender)))?;
    Ok(Letter {
        id: stored.id,
        from,
        size: stored.size.max(0) as u64,
        deposited_at: stored.deposited_at,
        expires_at: stored.expires_at,
        sealed: encode_sealed(&stored.sealed),
    })
}

/// Take the oldest letters waiting in your mailbox. Owner only (credentials of the record
/// `uuid`, which must be live: register again first). Letters come oldest first, by number;
/// `more` says whether others wait after them. Taking does not delete them: delete them with
/// `DELETE ?through=<the last id>` once they are safely stored. Open each with
/// `proto::mailbox::open`.
#[utoipa::path(
    get,
    path = "/peers/{uuid}/mailbox",
    tag = "mailbox",
    params(
        ("uuid" = String, Path,
            description = "Your UUID, hyphenated or 32 hex digits, any case",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Most letters to answer: 1 to 100 (the default)"),
    ),
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 200, description = "The oldest waiting letters and whether more wait", body = Mailbox,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "Not a UUID, or a limit that is not 1 to 100", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID: register again, then take your mail", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Too many reads from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (a signed request is recorded as used before it is answered), or the request took too long", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full (a signed request is recorded as used before it is answered)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn take_mail(
    State(state): State<AppState>,
    owner: Owner<Limit>,
) -> Result<Response, ApiError> {
    let Limit(limit) = owner.target;
    if owner.signature.is_some() {
        // Spends the signature, so a captured request cannot fetch the letters again.
        state
            .writer
            .vouch(owner.uuid, owner.owner, owner.signature)
            .await
            .map_err(write_error(owner.uuid))?;
    }
    let (stored, more) = mailbox::letters(&state.pool, owner.uuid, limit, &state.now()).await?;
    let letters = stored
        .into_iter()
        .map(letter)
        .collect::<Result<Vec<_>, _>>()?;
    tracing::debug!(peer = %owner.uuid, letters = letters.len(), more, "mail taken");
    Ok((no_store(), Json(Mailbox { letters, more })).into_response())
}

/// Delete the letters you have taken: every waiting letter numbered up to `through` (the
/// `id` of the last one you stored). Owner only. Deleting letters already gone deletes
/// nothing and succeeds.
#[utoipa::path(
    delete,
    path = "/peers/{uuid}/mailbox",
    tag = "mailbox",
    params(
        ("uuid" = String, Path,
            description = "Your UUID, hyphenated or 32 hex digits, any case",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"),
        ("through" = i64, Query, minimum = 0, maximum = 9223372036854775807i64,
            description = "The number of the last letter to delete; letters numbered up to it go"),
    ),
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 200, description = "How many letters were deleted", body = Taken),
        (status = 400, description = "Not a UUID, or `through` missing or not a non-negative integer", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID: register again first", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Too many writes from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed; nothing was deleted", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was deleted", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full; nothing was deleted", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn delete_mail(
    State(state): State<AppState>,
    owner: Owner<Through>,
) -> Result<Json<Taken>, ApiError> {
    let Through(through) = owner.target;
    let deleted = state
        .writer
        .take(owner.uuid, owner.owner, owner.signature, through)
        .await
        .map_err(write_error(owner.uuid))?;
    state.metrics.mailbox.taken.increment(deleted);
    tracing::debug!(peer = %owner.uuid, through, deleted, "mail deleted");
    Ok(Json(Taken { deleted }))
}

/// Refuse mail from `sender`: its deposits are refused with 403 from now on, and its letters
/// waiting in your mailbox are deleted. Owner only; blocking a sender again changes nothing.
/// At most 1000 senders per mailbox.
#[utoipa::path(
    put,
    path = "/peers/{uuid}/blocked/{sender}",
    tag = "mailbox",
    params(
        ("uuid" = String, Path,
            description = "Your UUID, hyphenated or 32 hex digits, any case",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"),
        ("sender" = String, Path,
            description = "The sender to refuse, hyphenated or 32 hex digits, any case",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"),
    ),
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 204, description = "Blocked; its waiting letters are deleted"),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID: register again first", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "You already block 1000 senders: unblock some first", body = ErrorBody),
        (status = 429, description = "Too many writes from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed; nothing was changed", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn block_sender(
    State(state): State<AppState>,
    owner: Owner<Sender>,
) -> Result<StatusCode, ApiError> {
    change_block(&state, owner, true).await
}

/// Accept mail from `sender` again. Owner only; unblocking a sender that is not blocked
/// changes nothing. Letters deleted when it was blocked do not come back.
#[utoipa::path(
    delete,
    path = "/peers/{uuid}/blocked/{sender}",
    tag = "mailbox",
    params(
        ("uuid" = String, Path,
            description = "Your UUID, hyphenated or 32 hex digits, any case",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"),
        ("sender" = String, Path,
            description = "The sender to accept again, hyphenated or 32 hex digits, any case",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$"),
    ),
    security(("bearer_token" = []), ("owner_signature" = [])),
    responses(
        (status = 204, description = "Not blocked (any more)"),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, description = "No credentials, or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes: Bearer and Signature"))),
        (status = 403, description = "The credentials do not own this record", body = ErrorBody),
        (status = 404, description = "No live peer with that UUID: register again first", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 429, description = "Too many writes from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed; nothing was changed", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The index's disk is full; nothing was changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn unblock_sender(
    State(state): State<AppState>,
    owner: Owner<Sender>,
) -> Result<StatusCode, ApiError> {
    change_block(&state, owner, false).await
}

async fn change_block(
    state: &AppState,
    owner: Owner<Sender>,
    block: bool,
) -> Result<StatusCode, ApiError> {
    let Sender(sender) = owner.target;
    let deleted = state
        .writer
        .block(owner.uuid, owner.owner, owner.signature, sender, block)
        .await
        .map_err(|error| match error {
            WriteError::Mail(refusal) => ApiError::Unprocessable(refusal.to_string()),
            other => write_error(owner.uuid)(other),
        })?;
    state.metrics.mailbox.taken.increment(deleted);
    let change = if block { "blocked" } else { "unblocked" };
    tracing::info!(peer = %owner.uuid, %sender, deleted, "{change}");
    Ok(StatusCode::NO_CONTENT)
}
