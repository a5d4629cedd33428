//! Helpers for the tests about display names: one signing key per port, the answer to a name
//! someone else holds, and racing claims.

use std::sync::Arc;

use axum::http::StatusCode;
use proto::identity::Identity;
use serde_json::Value;

use super::TestApp;

/// What the index answers a name someone else holds.
pub fn taken(name: &str) -> String {
    format!(
        "the name `{name}` is taken by another peer, or looks the same as a name another peer \
         holds; choose another name (e.g. --name {name}2)"
    )
}

/// The identity [`register_named`] signs with for `port`: one key per port.
pub fn named_id(port: u16) -> Identity {
    let mut secret = [7u8; 32];
    secret[..2].copy_from_slice(&port.to_le_bytes());
    Identity::from_secret(secret)
}

/// A keyed registration (names need one) by [`named_id`]`(port)`.
pub async fn register_named(app: &TestApp, port: u16, name: &str) -> (StatusCode, Value) {
    let answer = app.register_keyed(&named_id(port), port, Some(name)).await;
    (answer.status, answer.body)
}

/// Registers every `(port, name)` at once, each by [`named_id`]`(port)`, and checks that
/// exactly one claim wins (201) and every other one is refused (409).
pub async fn assert_one_winner(app: &Arc<TestApp>, claims: Vec<(u16, &'static str)>) {
    let tasks: Vec<_> = claims
        .into_iter()
        .map(|(port, name)| {
            let app = app.clone();
            tokio::spawn(async move { register_named(&app, port, name).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, lost), (1, statuses.len() - 1), "{statuses:?}");
}
