//! Helpers for the mailbox tests (`mailbox_deposit`, `mailbox_owner`, `mailbox_limits`): the
//! cast, sealed letters, signed deposits, the owner's takes, and the metrics they move.

use axum::http::StatusCode;
use http_body_util::BodyExt;
use proto::api::mailbox::{decode_sealed, encode_sealed};
use proto::identity::Identity;
use proto::mailbox::{Content, Letter, Stamp, open, seal};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use super::{Answer, TestApp, owner_request, signature_header, unix_now};

pub fn alice() -> Identity {
    Identity::from_secret([1; 32])
}
pub fn bob() -> Identity {
    Identity::from_secret([2; 32])
}
pub fn carol() -> Identity {
    Identity::from_secret([3; 32])
}

/// `text` sealed by `from` for `to`, as the API carries it (base64).
pub fn sealed(from: &Identity, to: &Identity, id: u64, text: &str) -> String {
    let letter = Letter {
        to: to.uuid(),
        stamp: Stamp { id, at: 1_000 + id },
        content: Content::Text {
            text: text.to_owned(),
            action: false,
        },
    };
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&id.to_le_bytes());
    encode_sealed(&seal(from, &to.public_key(), &letter, seed).unwrap())
}

/// The body of a deposit from `from`.
pub fn deposit_body(from: Uuid, sealed: &str) -> String {
    json!({ "from": from, "sealed": sealed }).to_string()
}

/// `POST /peers/{recipient}/mailbox` with `body`, signed by `signer` at `timestamp`.
pub async fn deposit_signed(
    app: &TestApp,
    signer: &Identity,
    recipient: &str,
    body: &str,
    timestamp: u64,
) -> Answer {
    let path = format!("/peers/{recipient}/mailbox");
    let auth = signature_header(signer, "POST", &path, body.as_bytes(), timestamp);
    app.send(owner_request("POST", &path, body, Some(&auth)))
        .await
}

/// A letter saying `text` from `from` to `to`, deposited (signed by `from` now).
pub async fn deposit(app: &TestApp, from: &Identity, to: &Identity, id: u64, text: &str) -> Answer {
    let body = deposit_body(from.uuid(), &sealed(from, to, id, text));
    deposit_signed(
        app,
        from,
        &to.uuid().to_string(),
        &body,
        unix_now() + id % 50,
    )
    .await
}

/// An owner request on `path_and_query` (both signed) by `id` at a timestamp no earlier call
/// used: now, or one past the last one (as the daemon signs), so no two ever collide.
pub async fn signed(app: &TestApp, id: &Identity, method: &str, path_and_query: &str) -> Answer {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = unix_now();
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    let timestamp = now.max(previous + 1);
    let auth = signature_header(id, method, path_and_query, b"", timestamp);
    app.send(owner_request(method, path_and_query, "", Some(&auth)))
        .await
}

/// `GET /peers/{id}/mailbox[?limit=]` by `id`, which must answer 200.
pub async fn take(app: &TestApp, id: &Identity, limit: Option<u32>) -> Value {
    let query = limit.map(|l| format!("?limit={l}")).unwrap_or_default();
    let answer = signed(
        app,
        id,
        "GET",
        &format!("/peers/{}/mailbox{query}", id.uuid()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["cache-control"], "no-store");
    answer.body
}

/// The ids of the letters in a mailbox answer.
pub fn ids(mailbox: &Value) -> Vec<i64> {
    mailbox["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect()
}

/// Letters stored, waiting or expired.
pub async fn stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM mailbox")
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap()
}

/// The text of a letter `me` opens from a mailbox answer.
pub fn open_text(me: &Identity, letter: &Value) -> String {
    let sealed = decode_sealed(letter["sealed"].as_str().unwrap()).unwrap();
    assert_eq!(letter["size"].as_u64().unwrap(), sealed.len() as u64);
    let from = letter["from"].as_str().unwrap().parse().unwrap();
    let opened = open(me, from, &sealed).unwrap();
    match opened.letter.content {
        Content::Text { text, .. } => text,
        other => panic!("not a text: {other:?}"),
    }
}

/// Whether `GET /metrics` (which refreshes the gauges) has exactly this line.
pub async fn metric(app: &TestApp, line: &str) -> bool {
    let answer = app
        .router
        .clone()
        .oneshot(owner_request("GET", "/metrics", "", None))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines().any(|l| l == line)
}
