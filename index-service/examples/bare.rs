//! The benchmark's baseline: axum handlers of the same shape as the index's `GET /peers/{uuid}`,
//! `POST /register` and `POST /peers/{uuid}/mailbox` (same paths, same UUID parsing, same JSON
//! types in and out, the sealed letter decoded from base64) with no database, no middleware, no
//! signature check and nothing durable. `scripts/bench-index.sh` serves it next to the
//! real index and reports the index's throughput as a fraction of this.
//!
//! Usage: `cargo run --release -p index-service --example bare -- 127.0.0.1:9000`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::extract::{ConnectInfo, Path};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use proto::api::mailbox::{Deposit, Deposited, decode_sealed};
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

/// A deposit as the index reads it before its checks: the recipient's UUID, the JSON body and
/// the letter's base64; the answer the index gives once it stored the letter.
async fn deposit(
    Path(raw): Path<String>,
    Json(deposit): Json<Deposit>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        Json<Deposited>,
    ),
    StatusCode,
> {
    static NEXT_ID: AtomicI64 = AtomicI64::new(1);
    Uuid::parse_str(&raw).map_err(|_| StatusCode::BAD_REQUEST)?;
    decode_sealed(&deposit.sealed).ok_or(StatusCode::BAD_REQUEST)?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store".to_owned())],
        Json(Deposited {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            expires_at: NOW.into(),
        }),
    ))
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
        .route("/register", post(register))
        .route("/peers/{uuid}/mailbox", post(deposit));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare baseline listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
