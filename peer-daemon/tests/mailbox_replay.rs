//! An index that hands out the same letters again and again (and never deletes them) cannot
//! make a daemon show a letter twice, nor make it look into its mailbox without pause: a proxy
//! in front of the real index replays bob's first full mailbox answer, with `"more": true`, to
//! every look, and the mailman backs off as it would from an empty mailbox.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::mail::{key_of, sealed_text};
use common::{Daemon, EVENT_TIMEOUT, Index};
use peer_daemon::index::{IndexClient, MAIL_BATCH};
use proto::identity::Identity;
use tokio::sync::Mutex;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    /// The first mailbox answer with letters, replayed ever after.
    replay: Arc<Mutex<Option<Bytes>>>,
    /// Looks into a mailbox.
    looks: Arc<AtomicU64>,
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (head, body) = request.into_parts();
    let path = head
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mailbox = head.uri.path().ends_with("/mailbox");
    if mailbox && head.method == Method::DELETE {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"deleted":0}"#,
        )
            .into_response();
    }
    if mailbox && head.method == Method::GET {
        proxy.looks.fetch_add(1, Ordering::SeqCst);
        if let Some(replay) = proxy.replay.lock().await.clone() {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                replay,
            )
                .into_response();
        }
    }
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut upstream = proxy
        .http
        .request(head.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = head.headers.get(&name) {
            upstream = upstream.header(name, value.clone());
        }
    }
    let Ok(answer) = upstream.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(value) = answer.headers().get(name.as_str()) {
            headers.insert(name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    if mailbox && head.method == Method::GET && status == StatusCode::OK {
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if value["letters"]
            .as_array()
            .is_some_and(|l| l.len() >= MAIL_BATCH)
        {
            value["more"] = true.into();
            let replay = Bytes::from(serde_json::to_vec(&value).unwrap());
            *proxy.replay.lock().await = Some(replay.clone());
            return (status, headers, replay).into_response();
        }
    }
    (status, headers, bytes).into_response()
}

#[tokio::test]
async fn an_index_that_replays_letters_gets_each_shown_once_and_no_busy_polling() {
    let index = Index::start().await;
    let proxy = Proxy {
        upstream: index.url(),
        http: reqwest::Client::new(),
        replay: Arc::default(),
        looks: Arc::default(),
    };
    let looks = proxy.looks.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut bob = Daemon::spawn(&proxy_url, "bob").await;
    let bob_key = key_of(&index, bob.uuid).await;
    let client = IndexClient::new(&index.url()).unwrap();
    let alice = Identity::from_secret(rand::random());
    client.register(&alice, 9, None, Vec::new()).await.unwrap();
    for id in 0..MAIL_BATCH as u64 {
        let sealed = sealed_text(&alice, &bob_key, id, &format!("letter {id:02}"));
        client.deposit(&alice, bob.uuid, &sealed).await.unwrap();
    }

    for id in 0..MAIL_BATCH {
        let message = bob
            .expect("message", |_| true, Duration::from_secs(70))
            .await;
        assert_eq!(message["text"], format!("letter {id:02}"));
    }
    // From now on every look gets the same full batch back.
    let before = looks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = looks.load(Ordering::SeqCst) - before;
    assert!(
        during <= 2,
        "{during} looks in 3 s at an index that only replays letters: the mailman must back off"
    );
    bob.send_line("/stats").await;
    let stats = bob.expect("stats", |_| true, EVENT_TIMEOUT).await;
    let duplicates = stats["counters"]["mailbox.duplicates"]
        .as_u64()
        .unwrap_or(0);
    assert!(duplicates >= MAIL_BATCH as u64, "{stats}");
    assert_eq!(
        bob.backlog_events()
            .filter(|v| v["event"] == "message")
            .count(),
        0,
        "no letter is shown twice"
    );
}
