//! The offline mailbox: `POST /peers/{uuid}/mailbox` (a signed sender deposits a sealed
//! letter for any UUID, live record or not), the owner-only `GET` and `DELETE` of the same
//! path (take the letters, then delete them), and the owner-only `PUT`/`DELETE
//! /peers/{uuid}/blocked/{sender}`.
//!
//! Letters are sealed end to end (`proto::mailbox`): the index stores the bytes it was given
//! and never decodes them. A deposit is checked in this order: the path's UUID (400), the body
//! (413, 415, 400/422), the letter's encoding (400) and size (413), credentials (401), the
//! sender's live keyed record (403), its signature (403 wrong key, 401 stale or replayed),
//! whether the recipient blocks it (403), its deposit rate (429), and in the writer's
//! transaction the caps: letters it has waiting (429), the recipient's mailbox (507), all
//! mailboxes (507).

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proto::api::ErrorBody;
use proto::api::mailbox::{
    Deposit, Deposited, Letter, MAX_TAKE, Mailbox, Taken, decode_sealed, encode_sealed,
};
use proto::mailbox::MAX_SEALED;
use std::collections::HashMap;
use uuid::Uuid;

use super::auth::{self, Credentials, SignedRequest};
use super::error::ApiError;
use super::json::{RawBody, parse_body};
use super::owner::{Owner, path_param, write_error};
use super::peers::{internal, parse_uuid, replayed};
use super::ratelimit::whole_secs;
use crate::AppState;
use crate::db::mailbox::{self, MailRefusal, StoredLetter};
use crate::db::{self, WriteError};
use crate::metrics::MailRefused;

/// What `Retry-After` says when a cap refuses a deposit: letters leave a mailbox when their
/// recipient comes online or they expire, neither of which the index can predict.
const RETRY_FULL_SECS: u64 = 300;

/// The answer's `Cache-Control`: mailboxes change with every deposit and take.
fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// Deposit a sealed letter for the peer `{uuid}`, which need not be registered now: its
/// record may have expired or been deleted (a sender who knows its key can still seal for
/// it). The sender `from` must be a live keyed record, and the request must be signed with its
/// key (`Authorization: Signature`, over `proto::identity::owner_message("POST", path, body,
/// timestamp)`); each signature is accepted once. The index stores the sealed bytes, the
/// sender, the recipient, the size and the times; it cannot read the letter. The letter waits
/// `--mailbox-ttl` (default 7 days) unless taken first.
#[utoipa::path(
    post,
    path = "/peers/{uuid}/mailbox",
    tag = "mailbox",
    params(("uuid" = String, Path,
        description = "The recipient's UUID, hyphenated or 32 hex digits, any case; its record may have expired",
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32})$")),
    request_body = Deposit,
    security(("sender_signature" = [])),
    responses(
        (status = 201, description = "Stored; the letter's number and when it expires", body = Deposited,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "Not a UUID, the body is not valid JSON, or `sealed` is not standard padded base64 of at least one byte", body = ErrorBody),
        (status = 401, description = "No credentials, a bearer token (mail needs a keyed sender), or a signature that is malformed, stale or replayed", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "The accepted schemes"))),
        (status = 403, description = "`from` is not a live keyed record (register with a key first), the signature is not by its key, or the recipient does not accept mail from it", body = ErrorBody),
        (status = 413, description = "The body is too large, or the sealed letter is larger than 10240 bytes", body = ErrorBody),
        (status = 415, description = "The body is not declared as JSON", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or of the wrong type", body = ErrorBody),
        (status = 429, description = "Too many writes from this address, too many deposits from this sender (`--mailbox-sender-rate-per-sec`), or too many of its letters waiting in mailboxes (`--mailbox-max-per-sender`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The index failed; nothing was stored", body = ErrorBody),
        (status = 503, description = "The database cannot be written at the moment (I/O error, locked, read-only, or its file was deleted or replaced), or the request took too long; nothing was stored", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 507, description = "The recipient's mailbox is full (`--mailbox-max-letters`, `--mailbox-max-bytes`), all mailboxes together are (`--mailbox-max-total-bytes`), or the index's disk is; nothing was stored", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn deposit(
    State(state): State<AppState>,
    request: Request,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, HeaderValue); 1],
        Json<Deposited>,
    ),
    Response,
> {
    let (mut head, body) = request.into_parts();
    let params = RawPathParams::from_request_parts(&mut head, &state)
        .await
        .map_err(IntoResponse::into_response)?;
    let recipient = parse_uuid(path_param(&params, "uuid").map_err(IntoResponse::into_response)?)
        .map_err(IntoResponse::into_response)?;
    let RawBody(body) = RawBody::from_request(Request::from_parts(head.clone(), body), &state)
        .await
        .map_err(|error| {
            if error.status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                state.metrics.mailbox.refused(MailRefused::TooLarge);
            }
            error.into_response()
        })?;
    let deposited = deposit_checked(&state, &head, recipient, &body)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((StatusCode::CREATED, no_store(), Json(deposited)))
}

/// The checks from the body on, then the deposit.
async fn deposit_checked(
    state: &AppState,
    head: &Parts,
    recipient: Uuid,
    body: &[u8],
) -> Result<Deposited, ApiError> {
    let letter: Deposit = parse_body(&head.headers, body)?;
    let sealed = decode(&letter.sealed).inspect_err(|error| {
        if error.status_code() == StatusCode::PAYLOAD_TOO_LARGE {
            state.metrics.mailbox.refused(MailRefused::TooLarge);
        }
    })?;
    let credentials = sender_credentials(head)?;
    let sender = letter.from;
    let key = match db::find_peer(&state.pool, sender, &state.now()).await? {
        Some(peer) => match peer.owner {
            db::Owner::Key(key) => key,
            _ => return Err(unknown_sender(sender)),
        },
        None => return Err(unknown_sender(sender)),
    };
    let request = SignedRequest {
        method: head.method.as_str(),
        path: head.uri.path(),
        body,
    };
    let owner = db::Owner::Key(key.clone());
    let signature = match auth::authorize(&owner, &credentials, &request, auth::unix_now()) {
        Ok(Some(signature)) => signature,
        Ok(None) => return Err(keyed_only()),
        Err(ApiError::Forbidden(_)) => {
            return Err(ApiError::Forbidden(format!(
                "the signature is not by the key of the sender {sender} over \
                 owner_message(\"POST\", path, body, timestamp): sign the deposit with `from`'s key"
            )));
        }
        Err(other) => return Err(other),
    };
    // Checked again in the writer's transaction; asked here too so that a blocked sender is
    // told so before its rate is spent.
    if mailbox::is_blocked(&state.pool, recipient, sender).await? {
        return Err(refused(state, MailRefusal::Blocked));
    }
    if let Err(wait) = state.limits.check_sender(sender) {
        state.metrics.mailbox.refused(MailRefused::Rate);
        return Err(ApiError::Throttled {
            message: format!(
                "you deposit letters faster than the index accepts from one sender: wait {} s \
                 (Retry-After) and send again",
                whole_secs(wait)
            ),
            retry_after_secs: whole_secs(wait),
        });
    }
    let size = sealed.len();
    let (id, expires_at) = state
        .writer
        .deposit(recipient, sender, key, sealed, signature)
        .await
        .map_err(|error| match error {
            WriteError::Replay => replayed(),
            WriteError::Gone => unknown_sender(sender),
            WriteError::Mail(refusal) => refused(state, refusal),
            other => internal(other),
        })?;
    state.metrics.mailbox.deposits.increment(1);
    tracing::info!(%recipient, %sender, id, size, "letter deposited");
    Ok(Deposited { id, expires_at })
}

/// The sealed bytes of `text`: 400 unless standard padded base64 of at least one byte, 413
/// when larger than a sealed letter may be.
fn decode(text: &str) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the sealed letter is larger than {MAX_SEALED} bytes, the most the mailbox takes: \
             send a shorter message (proto::mailbox::seal refuses larger ones)"
        ))
    };
    if text.len() > MAX_SEALED.div_ceil(3) * 4 {
        return Err(too_large());
    }
    if let Some(sealed) = decode_sealed(text) {
        return Ok(sealed);
    }
    if STANDARD
        .decode(text)
        .is_ok_and(|bytes| bytes.len() > MAX_SEALED)
    {
        return Err(too_large());
    }
    Err(ApiError::BadRequest(
        "`sealed` must be the sealed letter (proto::mailbox::seal) in standard base64 with \
         padding, at least one byte"
            .into(),
    ))
}

/// The sender's signature from `Authorization`; anything else is 401.
fn sender_credentials(head: &Parts) -> Result<Credentials, ApiError> {
    if !head.headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::Unauthorized(
            "a deposit must be signed by the sender: `Authorization: Signature <timestamp>.<hex \
             signature>`, the Ed25519 signature of `from`'s key over \
             proto::identity::owner_message(\"POST\", path, body, timestamp)"
                .into(),
        ));
    }
    match auth::credentials(&head.headers)? {
        Credentials::Bearer(_) => Err(keyed_only()),
        signature => Ok(signature),
    }
}

fn keyed_only() -> ApiError {
    ApiError::Unauthorized(
        "mail needs a keyed sender: a bearer token cannot sign a letter's deposit; register \
         with a key and sign the request (`Authorization: Signature <timestamp>.<hex signature>`)"
            .into(),
    )
}

fn unknown_sender(sender: Uuid) -> ApiError {
    ApiError::Forbidden(format!(
        "the sender {sender} is not a live keyed record: register with a key first (POST \
         /register with public_key), then deposit with `from` set to its UUID"
    ))
}

/// The answer to a deposit the mailbox refused, counted.
fn refused(state: &AppState, refusal: MailRefusal) -> ApiError {
    let (why, error) = match &refusal {
        MailRefusal::Blocked => (
            MailRefused::Blocked,
            ApiError::Forbidden(refusal.to_string()),
        ),
        MailRefusal::SenderCap(_) => (
            MailRefused::SenderCap,
            ApiError::Throttled {
                message: refusal.to_string(),
                retry_after_secs: RETRY_FULL_SECS,
            },
        ),
        MailRefusal::MailboxFull(_) => (
            MailRefused::Full,
            ApiError::StorageFull {
                message: refusal.to_string(),
                retry_after_secs: RETRY_FULL_SECS,
            },
        ),
        MailRefusal::TotalFull(_) => (
            MailRefused::TotalFull,
            ApiError::StorageFull {
                message: refusal.to_string(),
                retry_after_secs: RETRY_FULL_SECS,
            },
        ),
        MailRefusal::TooManyBlocks(_) => {
            return ApiError::Unprocessable(refusal.to_string());
        }
    };
    state.metrics.mailbox.refused(why);
    error
}

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
pub(super) struct Limit(u32);

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
pub(super) struct Through(i64);

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
pub(super) struct Sender(Uuid);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_letters_up_to_the_limit() {
        let exactly = STANDARD.encode(vec![9u8; MAX_SEALED]);
        assert_eq!(decode(&exactly).unwrap().len(), MAX_SEALED);
        assert_eq!(decode("AA==").unwrap(), vec![0]);
        let status = |text: &str| decode(text).unwrap_err().status_code();
        assert_eq!(
            status(&STANDARD.encode(vec![9u8; MAX_SEALED + 1])),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // As long as the largest letter's text, but decoding to two bytes more.
        assert_eq!(
            status(&"A".repeat(MAX_SEALED.div_ceil(3) * 4)),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(&"A".repeat(MAX_SEALED.div_ceil(3) * 4 + 1)),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Empty, unpadded, URL-safe, non-zero padding bits, spaces: not what the API carries.
        for bad in ["", "AA", "-_-_", "AB==", "AA== ", "A==="] {
            assert_eq!(status(bad), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
