//! The owner check every owner-only route shares, as one extractor: a handler that takes an
//! [`Owner`] runs only for the proven owner of the live record its path's `{uuid}` names.
//!
//! Checks run in this order, so a stranger learns nothing about a record beyond its existence
//! (which lookups show anyway): the path's parameters can be read (400), the body can be read
//! (413), what else the path names, e.g. the room (400), the UUID (400), credentials present
//! (401), a live record (404), ownership (401/403). The handler then judges the body
//! (415/400/422).
//!
//! [`Owner`] is a `FromRequest` extractor rather than a `FromRequestParts` one because a
//! signature covers the exact body: the check has to read it, and it hands the bytes on.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::auth::{self, SignedRequest};
use super::error::ApiError;
use super::json::RawBody;
use super::peers::{internal, not_found, parse_uuid, replayed};
use crate::AppState;
use crate::db::{self, UsedSignature, WriteError};

/// A request whose sender proved it owns the live record `uuid`.
///
/// `T` is what else the path names, checked before the record (e.g. the room of a
/// membership change); `()` for routes about the record alone.
pub(super) struct Owner<T = ()> {
    pub(super) uuid: Uuid,
    /// How the record is owned, which the writer checks again when it writes.
    pub(super) owner: db::Owner,
    /// The request's signature, for the writer to refuse if it comes again.
    pub(super) signature: Option<UsedSignature>,
    /// The exact body, which the signature covers.
    pub(super) body: Bytes,
    /// What else the path names, already checked.
    pub(super) target: T,
}

impl<T> FromRequest<AppState> for Owner<T>
where
    T: FromRequestParts<AppState> + Send,
    T::Rejection: IntoResponse,
{
    /// Our [`ApiError`], or axum's answer to a path that cannot be decoded, which the edge
    /// middleware renders in our JSON format like every other route's.
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut head, body) = request.into_parts();
        let params = RawPathParams::from_request_parts(&mut head, state)
            .await
            .map_err(IntoResponse::into_response)?;
        // Reading the body consumes a request; the head stays here for the checks after it.
        let body_request = Request::from_parts(head.clone(), body);
        let RawBody(body) = RawBody::from_request(body_request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let target = T::from_request_parts(&mut head, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let (uuid, owner, signature) = authorize(state, &head, &params, &body)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Owner {
            uuid,
            owner,
            signature,
            body,
            target,
        })
    }
}

/// The checks from the UUID on, in the order the module documentation gives.
async fn authorize(
    state: &AppState,
    head: &Parts,
    params: &RawPathParams,
    body: &[u8],
) -> Result<(Uuid, db::Owner, Option<UsedSignature>), ApiError> {
    let uuid = parse_uuid(path_param(params, "uuid")?)?;
    let credentials = auth::credentials(&head.headers)?;
    let peer = db::find_peer(&state.pool, uuid, &state.now())
        .await?
        .ok_or_else(|| not_found(uuid))?;
    let request = SignedRequest {
        method: head.method.as_str(),
        // With the query: `?through=` says what a DELETE deletes.
        path: head.uri.path_and_query().map_or("/", |p| p.as_str()),
        body,
    };
    let signature = auth::authorize(&peer.owner, &credentials, &request, auth::unix_now())?;
    Ok((uuid, peer.owner, signature))
}

/// The path parameter `name`; a route without it is a bug of ours (500), not the client's.
pub(super) fn path_param<'a>(params: &'a RawPathParams, name: &str) -> Result<&'a str, ApiError> {
    params
        .iter()
        .find_map(|(key, value)| (key == name).then_some(value))
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the route has no `{{{name}}}`")))
}

/// Maps the writer's refusals: a replayed signature is 401; a record that expired or was
/// deleted between the check and the write is 404.
pub(super) fn write_error(uuid: Uuid) -> impl FnOnce(WriteError) -> ApiError {
    move |error| match error {
        WriteError::Replay => replayed(),
        WriteError::Gone => not_found(uuid),
        other => internal(other),
    }
}
