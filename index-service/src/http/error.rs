//! The one error type of the HTTP API; every variant renders as JSON `{"error": "..."}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::api::ErrorBody;

use crate::db::WriteError;
use crate::db::health::Fault;

/// What can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be understood (bad JSON, a path parameter that is not a UUID…).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed JSON whose values are not acceptable.
    #[error("{0}")]
    Unprocessable(String),
    /// No credentials, or credentials that cannot be checked (malformed, stale, replayed).
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials that do not own the record.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing at that key.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what another record holds (a taken name).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the service accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The client's rate budget is spent; it may retry after this many seconds.
    #[error("too many requests from your address; retry in {retry_after_secs} s")]
    TooManyRequests {
        /// Whole seconds until a request would be accepted again.
        retry_after_secs: u64,
    },
    /// The database cannot be written at the moment (507 for a full disk, 503 otherwise);
    /// nothing was stored, and the client may retry after `Retry-After` seconds.
    #[error("{}; nothing was stored, retry in {} s", .0.problem(), .0.retry_after_secs())]
    CannotWrite(Fault),
    /// The client's address or subnet holds as many records or names as the quotas allow.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The index holds as many records as it may (`--max-records`).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A per-sender limit of the mailbox (its deposit rate, its letters waiting): 429 with
    /// `Retry-After`.
    #[error("{message}")]
    Throttled {
        /// What was refused and what to do.
        message: String,
        /// Whole seconds worth waiting before trying again.
        retry_after_secs: u64,
    },
    /// A mailbox (or all of them) holds as much as the index keeps: 507 with `Retry-After`.
    #[error("{message}")]
    StorageFull {
        /// What is full and what to do.
        message: String,
        /// Whole seconds worth waiting before trying again.
        retry_after_secs: u64,
    },
    /// A failure on our side; the details go to the log, not to the client.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The HTTP status this error is sent with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. }
            | ApiError::QuotaExceeded(_)
            | ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InsufficientStorage(_) | ApiError::StorageFull { .. } => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::CannotWrite(Fault::Full) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::CannotWrite(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<WriteError> for ApiError {
    /// The writer's failures that are not refusals (those each handler maps itself).
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Unavailable(fault) => ApiError::CannotWrite(fault),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                "internal error; the index logged the details".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = error_response(self.status_code(), message);
        match self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer realm="peerlink-index", Signature realm="peerlink-index""#,
                    ),
                );
            }
            ApiError::TooManyRequests { retry_after_secs }
            | ApiError::Throttled {
                retry_after_secs, ..
            }
            | ApiError::StorageFull {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::CannotWrite(fault) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(fault.retry_after_secs()),
                );
            }
            _ => {}
        }
        response
    }
}

/// A JSON error body with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}
