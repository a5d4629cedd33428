//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers and takes
//! writes), for container health checks and load balancers, and `GET /metrics` for Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{ApiError, error_response};
use crate::db::health::{Fault, WriteHealth};
use crate::{AppState, db};

/// Body of the health endpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `"ok"` on a 200.
    pub status: &'static str,
}

/// Liveness: the service is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The service is running", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers a query, its file is still the one opened at start-up, and
/// the last write went through (after a failed write the index tries a write of its own every
/// few seconds, so this turns 200 again once the cause is gone, without client traffic).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "The database does not answer, cannot be written (full disk, I/O error, read-only, locked), or its file was deleted or replaced", body = proto::api::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before asking again"))),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let fault = if state.writer.file().is_some_and(|file| !file.unchanged()) {
        Some(Fault::Replaced)
    } else if let WriteHealth::Failing(fault) = state.writer.health() {
        Some(fault)
    } else if let Err(error) = sqlx::query("SELECT 1").execute(&state.pool).await {
        tracing::warn!(%error, "readiness query failed");
        Some(Fault::of(&error).unwrap_or(Fault::Other))
    } else {
        None
    };
    match fault {
        None => Json(Health { status: "ok" }).into_response(),
        Some(fault) => {
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}", fault.problem()),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(fault.retry_after_secs()),
            );
            response
        }
    }
}

/// Prometheus metrics in the text exposition format: requests by route template and status,
/// request latency, live peers, expiries, rate-limit refusals, commit group sizes.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format, version 0.0.4", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 429, description = "Too many reads from this address", body = proto::api::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "The database does not answer", body = proto::api::ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let live = db::count_live(&state.pool, &state.now()).await?;
    state.metrics.live_peers.set(live as f64);
    let (letters, bytes) = db::mailbox::totals(&state.pool).await?;
    state.metrics.mailbox.letters.set(letters as f64);
    state.metrics.mailbox.bytes.set(bytes as f64);
    let cache = &state.metrics.cache;
    cache.entries.set(state.cache.len() as f64);
    cache
        .coherent
        .set(f64::from(u8::from(state.cache.coherent())));
    let (hits, misses) = state.cache.counts();
    cache.hits.absolute(hits);
    cache.misses.absolute(misses);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response())
}
