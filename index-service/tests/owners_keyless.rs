//! Keyless records are changed through the bearer token handed out at registration, and by
//! nobody else: everyone else gets 401/403, and nothing changes. Owner requests check the UUID
//! before the credentials and the body after them.

mod common;

use axum::http::{StatusCode, header};
use common::{
    Attempt, assert_client_error, assert_refused, owner_request, signature_header, test_app,
    unix_now,
};
use proto::identity::Identity;

#[tokio::test]
async fn keyless_owner_updates_heartbeats_and_deletes_with_its_token() {
    let app = test_app().await;
    let (status, record) = app.register(r#"{"udp_port": 4000}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    let uuid = record["uuid"].as_str().unwrap().to_owned();
    let token = record["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(record["ttl_secs"], 7200);
    assert!(record["last_seen"].is_string());

    // The token is stored hashed, never as it was handed out.
    let stored: Vec<(Option<String>,)> = sqlx::query_as("SELECT token_hash FROM peers")
        .fetch_all(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let hash = stored[0].0.clone().unwrap();
    assert_ne!(hash, token);
    assert_eq!(hash, index_service::http::auth::token_hash(&token));

    let bearer = format!("Bearer {token}");
    let path = format!("/peers/{uuid}");
    // A keyless record may not take a name: names need a key.
    let answer = app
        .send(owner_request(
            "PUT",
            &path,
            r#"{"udp_port": 4001, "name": "ann2"}"#,
            Some(&bearer),
        ))
        .await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::BAD_REQUEST,
        "names need a keyed registration",
    );
    let answer = app
        .send(owner_request(
            "PUT",
            &path,
            r#"{"udp_port": 4001}"#,
            Some(&bearer),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["addr"], "203.0.113.7:4001");
    assert!(answer.body.get("name").is_none());
    assert!(answer.body.get("token").is_none());
    let (_, found) = app.lookup(&uuid).await;
    assert_eq!(found["addr"], "203.0.113.7:4001");

    // PUT replaces: a name left out is removed.
    let answer = app
        .send(owner_request(
            "PUT",
            &path,
            r#"{"udp_port": 4002}"#,
            Some(&bearer),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.get("name").is_none());

    let answer = app
        .send(owner_request(
            "POST",
            &format!("{path}/heartbeat"),
            "",
            Some(&bearer),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["uuid"], uuid.as_str());
    assert!(answer.body["last_seen"].as_str() >= found["last_seen"].as_str());

    // The 32-hex-digit form works too.
    let simple = uuid.replace('-', "").to_uppercase();
    let answer = app
        .send(owner_request(
            "DELETE",
            &format!("/peers/{simple}"),
            "",
            Some(&bearer),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let (status, body) = app.lookup(&uuid).await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND, "no peer");
    let (status, body) = app
        .call(owner_request("DELETE", &path, "", Some(&bearer)))
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND, "no peer");
}

#[tokio::test]
async fn nobody_else_can_change_a_keyless_record() {
    let app = test_app().await;
    let (victim, _token) = app.register_keyless(5000).await;
    let (_, other_token) = app.register_keyless(5001).await;
    let path = format!("/peers/{victim}");
    let heartbeat = format!("{path}/heartbeat");
    let mallory = Identity::from_secret([66; 32]);
    let now = unix_now();

    let attempts: Vec<Attempt> = vec![
        // No credentials at all.
        (
            "PUT",
            &path,
            r#"{"udp_port": 6666}"#,
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            "POST",
            &heartbeat,
            "",
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            "DELETE",
            &path,
            "",
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        // Garbage credentials.
        (
            "DELETE",
            &path,
            "",
            Some("Basic YTpi".into()),
            StatusCode::UNAUTHORIZED,
            "Bearer",
        ),
        // Another record's (valid) token, and a made-up one.
        (
            "PUT",
            &path,
            r#"{"udp_port": 6666}"#,
            Some(format!("Bearer {other_token}")),
            StatusCode::FORBIDDEN,
            "token",
        ),
        (
            "POST",
            &heartbeat,
            "",
            Some(format!("Bearer {other_token}")),
            StatusCode::FORBIDDEN,
            "token",
        ),
        (
            "DELETE",
            &path,
            "",
            Some(format!("Bearer {}", "0".repeat(64))),
            StatusCode::FORBIDDEN,
            "token",
        ),
        // A signature, even a valid one by some key, does not own a keyless record.
        (
            "DELETE",
            &path,
            "",
            Some(signature_header(&mallory, "DELETE", &path, b"", now)),
            StatusCode::FORBIDDEN,
            "Bearer",
        ),
    ];
    assert_refused(&app, attempts).await;
    let (status, record) = app.lookup(&victim).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["addr"], "203.0.113.7:5000", "unchanged");
}

#[tokio::test]
async fn owner_requests_validate_uuid_and_body() {
    let app = test_app().await;
    let (uuid, token) = app.register_keyless(5000).await;
    let bearer = format!("Bearer {token}");
    let path = format!("/peers/{uuid}");
    let (status, body) = app
        .call(owner_request(
            "PUT",
            "/peers/nope",
            r#"{"udp_port": 1}"#,
            Some(&bearer),
        ))
        .await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST, "not a UUID");
    let (status, body) = app
        .call(owner_request(
            "POST",
            "/peers/6f1c3b2e-8a4d-4f6b-9c1e-2d3f4a5b6c7d/heartbeat",
            "",
            Some(&bearer),
        ))
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND, "no peer");
    for (body, expected, mentions) in [
        (
            r#"{"udp_port": 0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "udp_port",
        ),
        (
            r#"{"name": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "udp_port",
        ),
        (
            r#"{"udp_port": 1, "name": ""}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            r#"{"udp_port": 1"#,
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
    ] {
        let (status, answer) = app
            .call(owner_request("PUT", &path, body, Some(&bearer)))
            .await;
        assert_client_error(status, &answer, expected, mentions);
    }
    let request = axum::http::Request::put(&path)
        .header(header::AUTHORIZATION, &bearer)
        .body(axum::body::Body::from(r#"{"udp_port": 1}"#))
        .unwrap();
    let (status, answer) = app.call(request).await;
    assert_client_error(
        status,
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Content-Type",
    );
    let (_, record) = app.lookup(&uuid).await;
    assert_eq!(record["addr"], "203.0.113.7:5000", "unchanged");
}
