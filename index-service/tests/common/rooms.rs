//! Helpers for the tests about rooms: membership changes by either kind of owner, and the
//! member lists the index answers.

use axum::http::StatusCode;
use proto::identity::{Identity, uuid_for_key};
use serde_json::Value;

use super::{Answer, TestApp, owner_request, signature_header};

/// The UUIDs of a room's members as `GET /rooms/{room}` lists them.
pub async fn member_uuids(app: &TestApp, room: &str) -> Vec<String> {
    let (status, body) = app.get(&format!("/rooms/{room}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room"], room);
    uuids(&body)
}

/// The UUIDs of the members in a room answer, in its order.
pub fn uuids(room: &Value) -> Vec<String> {
    room["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uuid"].as_str().unwrap().to_owned())
        .collect()
}

/// A membership change by a keyless owner.
pub async fn with_token(
    app: &TestApp,
    method: &str,
    room: &str,
    uuid: &str,
    token: &str,
) -> Answer {
    let path = format!("/rooms/{room}/members/{uuid}");
    app.send(owner_request(
        method,
        &path,
        "",
        Some(&format!("Bearer {token}")),
    ))
    .await
}

/// A membership change signed by `id` at `timestamp` (each signature is accepted once).
pub async fn signed(
    app: &TestApp,
    method: &str,
    room: &str,
    id: &Identity,
    timestamp: u64,
) -> Answer {
    let path = format!("/rooms/{room}/members/{}", uuid_for_key(&id.public_key()));
    let auth = signature_header(id, method, &path, b"", timestamp);
    app.send(owner_request(method, &path, "", Some(&auth)))
        .await
}
