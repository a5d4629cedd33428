//! `GET /healthz` (the process answers) and `GET /readyz` (the database answers too), for
//! container health checks and load balancers, and `GET /metrics` for Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
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

/// Readiness: the database answers a query.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 500, description = "The database does not answer", body = proto::api::ErrorBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    sqlx::query("SELECT 1").execute(&state.pool).await?;
    Ok(Json(Health { status: "ok" }))
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
    let live = db::count_live(&state.pool, state.config.peer_ttl).await?;
    state.metrics.live_peers.set(live as f64);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response())
}
