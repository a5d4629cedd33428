//! A `Json` extractor whose rejections use our error format and say what to fix, instead of
//! axum's plain-text ones.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Deserialises a JSON body like `axum::Json`, failing with an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !declares_json(request.headers()) {
            return Err(unsupported_media_type());
        }
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The body as bytes (for requests whose signature covers the exact bytes), failing with an
/// [`ApiError`].
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::BadRequest(format!(
                        "could not read the body: {}",
                        rejection.body_text()
                    ))
                }
            })
    }
}

/// Parses a body read with [`RawBody`] as a JSON object of type `T`, checking that the headers
/// declare JSON.
pub fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    if !declares_json(headers) {
        return Err(unsupported_media_type());
    }
    parse_json(bytes)
}

fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == "application"
                && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
        })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would happily read a struct from a JSON array; the API only takes objects.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b == b'[') {
        return Err(ApiError::Unprocessable(
            "the body must be a JSON object, not an array".into(),
        ));
    }
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => Ok(value),
        Err(rejection) => Err(explain(rejection)),
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::UnsupportedMediaType(
        "send the body as JSON with the header `Content-Type: application/json`".into(),
    )
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge("the body is too large; registrations are small JSON objects".into())
}

fn explain(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::BadRequest(format!("the body is not valid JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => ApiError::Unprocessable(format!(
            "the JSON does not fit the schema: {}",
            e.body_text()
        )),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(
                "the body is too large; registrations are small JSON objects".into(),
            )
        }
        other => ApiError::BadRequest(format!("could not read the body: {}", other.body_text())),
    }
}
