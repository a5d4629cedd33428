//! The benchmark's baseline: axum handlers of the same shape as the index's `GET /peers/{uuid}`
//! and `POST /register` (same paths, same UUID parsing, same JSON types in and out) with no
//! database, no middleware and nothing durable. `scripts/bench-index.sh` serves it next to the
//! real index and reports the index's throughput as a fraction of this.
//!
//! Usage: `cargo run --release -p index-service --example bare -- 127.0.0.1:9000`

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use proto::api::{PeerRecord, RegisterRequest};
use uuid::Uuid;

const NOW: &str = "2026-11-24T12:00:00.000Z";

async fn get_peer(
    Path(raw): Path<String>,
) -> Result<([(header::HeaderName, String); 1], Json<PeerRecord>), StatusCode> {
    let uuid = Uuid::parse_str(&raw).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok((
        [(header::CACHE_CONTROL, "max-age=300".to_owned())],
        Json(PeerRecord {
            uuid,
            addr: "10.0.0.1:4000".into(),
            name: None,
            public_key: None,
            registered_at: NOW.into(),
            last_seen: Some(NOW.into()),
            ttl_secs: Some(300),
            record_ttl_secs: None,
            cache_ttl_secs: Some(300),
            token: None,
            candidates: Vec::new(),
            ice_servers: Vec::new(),
        }),
    ))
}

async fn register(
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Json(request): Json<RegisterRequest>,
) -> (StatusCode, Json<PeerRecord>) {
    (
        StatusCode::CREATED,
        Json(PeerRecord {
            uuid: Uuid::new_v4(),
            addr: SocketAddr::new(client.ip(), request.udp_port).to_string(),
            name: request.name,
            public_key: None,
            registered_at: NOW.into(),
            last_seen: Some(NOW.into()),
            ttl_secs: Some(7200),
            record_ttl_secs: Some(7200),
            cache_ttl_secs: None,
            token: Some("0".repeat(64)),
            candidates: Vec::new(),
            ice_servers: Vec::new(),
        }),
    )
}

// The same allocator as the index binary, so the comparison is between handlers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let app = Router::new()
        .route("/peers/{uuid}", get(get_peer))
        .route("/register", post(register));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare baseline listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
