//! The offline mailbox's deposit: `POST /peers/{uuid}/mailbox`, where a signed sender leaves
//! a sealed letter for any UUID, live record or not. The owner's routes (`GET` and `DELETE` of
//! the same path to take the letters and then delete them, `PUT`/`DELETE
//! /peers/{uuid}/blocked/{sender}`) are in [`take`].
//!
//! Letters are sealed end to end (`proto::mailbox`): the index stores the bytes it was given
//! and never decodes them. A deposit is checked in this order: the path's UUID (400), the body
//! (413, 415, 400/422), the letter's encoding (400) and size (413), credentials (401), the
//! sender's live keyed record (403), its signature (403 wrong key, 401 stale or replayed),
//! whether the recipient blocks it (403), its deposit rate (429), and in the writer's
//! transaction the caps: letters it has waiting (429), the recipient's mailbox (507), all
//! mailboxes (507).

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proto::api::ErrorBody;
use proto::api::mailbox::{Deposit, Deposited, decode_sealed};
use proto::mailbox::MAX_SEALED;
use uuid::Uuid;

use super::auth::{self, Credentials, SignedRequest};
use super::error::ApiError;
use super::json::{RawBody, parse_body};
use super::owner::path_param;
use super::peers::{internal, parse_uuid, replayed};
use super::ratelimit::whole_secs;
use crate::AppState;
use crate::db::mailbox::{self, MailRefusal};
use crate::db::{self, WriteError};
use crate::metrics::MailRefused;

pub(super) mod take;

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
        // With the query: `?through=` says what a DELETE deletes.
        path: head.uri.path_and_query().map_or("/", |p| p.as_str()),
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
