//! Owners alone change their records: keyless records through the bearer token handed out at
//! registration, keyed records through signatures by their key. Everyone else gets 401/403,
//! and nothing changes.

mod common;

use axum::http::{StatusCode, header};
use common::{
    TestApp, assert_client_error, keyed_registration, owner_request, signature_header, test_app,
    unix_now,
};
use proto::identity::{Identity, MAX_CLOCK_SKEW_SECS, uuid_for_key};
use serde_json::{Value, json};

/// method, path, body, Authorization, expected status, what the error must mention.
type Attempt<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<String>,
    StatusCode,
    &'a str,
);

async fn lookup(app: &TestApp, uuid: &str) -> (StatusCode, Value) {
    app.get(&format!("/peers/{uuid}")).await
}

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
    let (_, found) = lookup(&app, &uuid).await;
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
    let (status, body) = lookup(&app, &uuid).await;
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
    for (method, path, body, authorization, expected, mentions) in attempts {
        let answer = app
            .send(owner_request(method, path, body, authorization.as_deref()))
            .await;
        assert_client_error(answer.status, &answer.body, expected, mentions);
        if expected == StatusCode::UNAUTHORIZED {
            assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));
        }
    }
    let (status, record) = lookup(&app, &victim).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["addr"], "203.0.113.7:5000", "unchanged");
}

#[tokio::test]
async fn keyed_registration_derives_the_uuid_and_upserts() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let first = app.register_keyed(&alice, 7000, Some("alice")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let uuid = uuid_for_key(&alice.public_key()).to_string();
    assert_eq!(first.body["uuid"], uuid.as_str());
    assert_eq!(first.body["public_key"], hex::encode(alice.public_key()));
    assert!(
        first.body.get("token").is_none(),
        "keyed records need no token"
    );

    // Registering again with the same key (a new signature) updates the same record.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let body = keyed_registration(&alice, 7001, None, unix_now() + 1);
    let (status, second) = app.register(body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["uuid"], uuid.as_str());
    assert_eq!(second["addr"], "203.0.113.7:7001");
    assert!(second.get("name").is_none());
    assert_eq!(second["registered_at"], first.body["registered_at"]);
    assert!(second["last_seen"].as_str() > first.body["last_seen"].as_str());
    let (status, found) = lookup(&app, &uuid).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["public_key"], hex::encode(alice.public_key()));
    assert_eq!(found["addr"], "203.0.113.7:7001");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM peers")
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);

    // Replaying the exact registration (e.g. from another address) is refused.
    let (status, answer) = app.register(body.to_string()).await;
    assert_client_error(status, &answer, StatusCode::UNAUTHORIZED, "already used");
}

#[tokio::test]
async fn bad_keyed_registrations_are_401_and_store_nothing() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let now = unix_now();
    let good = keyed_registration(&alice, 7000, Some("alice"), now);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = good.clone();
        edit(&mut body);
        body.to_string()
    };
    let mallory = Identity::from_secret([2; 32]);
    let cases = [
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("signature");
            }),
            "signature",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("timestamp");
            }),
            "timestamp",
        ),
        (with(&|b| b["signature"] = "zz".into()), "128 hex digits"),
        (with(&|b| b["public_key"] = "abc".into()), "public_key"),
        // Signed fields changed after signing.
        (with(&|b| b["udp_port"] = 7001.into()), "does not match"),
        (with(&|b| b["name"] = "mallory".into()), "does not match"),
        (
            with(&|b| b["timestamp"] = (now + 1).into()),
            "does not match",
        ),
        // Someone else's key with alice's signature.
        (
            with(&|b| b["public_key"] = hex::encode(mallory.public_key()).into()),
            "does not match",
        ),
        // Too old and too far in the future.
        (
            keyed_registration(&alice, 7000, None, now - MAX_CLOCK_SKEW_SECS - 60).to_string(),
            "clock",
        ),
        (
            keyed_registration(&alice, 7000, None, now + MAX_CLOCK_SKEW_SECS + 60).to_string(),
            "clock",
        ),
        // A signature without a key.
        (
            json!({"udp_port": 7000, "timestamp": now, "signature": "00".repeat(64)}).to_string(),
            "public_key",
        ),
    ];
    for (body, mentions) in cases {
        let (status, answer) = app.register(body.clone()).await;
        assert_client_error(status, &answer, StatusCode::UNAUTHORIZED, mentions);
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM peers")
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn keyed_owner_signs_its_changes() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let created = app.register_keyed(&alice, 7000, Some("alice")).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let uuid = uuid_for_key(&alice.public_key()).to_string();
    let path = format!("/peers/{uuid}");
    let now = unix_now();

    let body = r#"{"udp_port": 7100, "name": "alice"}"#;
    let auth = signature_header(&alice, "PUT", &path, body.as_bytes(), now);
    let answer = app
        .send(owner_request("PUT", &path, body, Some(&auth)))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["addr"], "203.0.113.7:7100");

    let heartbeat = format!("{path}/heartbeat");
    let auth = signature_header(&alice, "POST", &heartbeat, b"", now);
    let answer = app
        .send(owner_request("POST", &heartbeat, "", Some(&auth)))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // The same signed heartbeat again is a replay.
    let answer = app
        .send(owner_request("POST", &heartbeat, "", Some(&auth)))
        .await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::UNAUTHORIZED,
        "already used",
    );
    // A fresh signature (another second) is fine.
    let auth = signature_header(&alice, "POST", &heartbeat, b"", now + 1);
    let answer = app
        .send(owner_request("POST", &heartbeat, "", Some(&auth)))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    let auth = signature_header(&alice, "DELETE", &path, b"", now);
    let answer = app
        .send(owner_request("DELETE", &path, "", Some(&auth)))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let (status, _) = lookup(&app, &uuid).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The key can register again after deleting its record (a new signature).
    let again = app.register_keyed(&alice, 7000, None).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body["uuid"], uuid.as_str());
}

#[tokio::test]
async fn nobody_else_can_change_a_keyed_record() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let mallory = Identity::from_secret([2; 32]);
    assert_eq!(
        app.register_keyed(&alice, 7000, Some("alice")).await.status,
        StatusCode::CREATED
    );
    let (_, mallory_token) = app.register_keyless(9999).await;
    let uuid = uuid_for_key(&alice.public_key()).to_string();
    let path = format!("/peers/{uuid}");
    let heartbeat = format!("{path}/heartbeat");
    let put_body = r#"{"udp_port": 6666}"#;
    let now = unix_now();
    let stale = now - MAX_CLOCK_SKEW_SECS - 1;

    // A request alice really signed, captured and replayed: first delivery works.
    let captured = signature_header(&alice, "POST", &heartbeat, b"", now);
    let answer = app
        .send(owner_request("POST", &heartbeat, "", Some(&captured)))
        .await;
    assert_eq!(answer.status, StatusCode::OK);

    let attempts: Vec<Attempt> = vec![
        (
            "PUT",
            &path,
            put_body,
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        // Mallory's own key.
        (
            "PUT",
            &path,
            put_body,
            Some(signature_header(
                &mallory,
                "PUT",
                &path,
                put_body.as_bytes(),
                now,
            )),
            StatusCode::FORBIDDEN,
            "key",
        ),
        (
            "POST",
            &heartbeat,
            "",
            Some(signature_header(&mallory, "POST", &heartbeat, b"", now)),
            StatusCode::FORBIDDEN,
            "key",
        ),
        (
            "DELETE",
            &path,
            "",
            Some(signature_header(&mallory, "DELETE", &path, b"", now)),
            StatusCode::FORBIDDEN,
            "key",
        ),
        // A bearer token (mallory's, valid for its own record) does not own a keyed record.
        (
            "DELETE",
            &path,
            "",
            Some(format!("Bearer {mallory_token}")),
            StatusCode::FORBIDDEN,
            "keyed",
        ),
        // Alice's signature moved to another request: other method, other body, other path.
        (
            "DELETE",
            &path,
            "",
            Some(signature_header(&alice, "POST", &heartbeat, b"", now + 2)),
            StatusCode::FORBIDDEN,
            "key",
        ),
        (
            "PUT",
            &path,
            put_body,
            Some(signature_header(
                &alice,
                "PUT",
                &path,
                br#"{"udp_port": 7000}"#,
                now + 3,
            )),
            StatusCode::FORBIDDEN,
            "key",
        ),
        (
            "DELETE",
            &path,
            "",
            Some(signature_header(
                &alice,
                "DELETE",
                "/peers/00000000-0000-0000-0000-000000000000",
                b"",
                now + 4,
            )),
            StatusCode::FORBIDDEN,
            "key",
        ),
        // Alice's real signatures, but stale or from the future.
        (
            "DELETE",
            &path,
            "",
            Some(signature_header(&alice, "DELETE", &path, b"", stale)),
            StatusCode::UNAUTHORIZED,
            "clock",
        ),
        (
            "DELETE",
            &path,
            "",
            Some(signature_header(
                &alice,
                "DELETE",
                &path,
                b"",
                now + MAX_CLOCK_SKEW_SECS + 60,
            )),
            StatusCode::UNAUTHORIZED,
            "clock",
        ),
        // The captured heartbeat, replayed verbatim and with its hex in upper case.
        (
            "POST",
            &heartbeat,
            "",
            Some(captured.clone()),
            StatusCode::UNAUTHORIZED,
            "already used",
        ),
        (
            "POST",
            &heartbeat,
            "",
            Some(captured.to_uppercase().replace("SIGNATURE", "Signature")),
            StatusCode::UNAUTHORIZED,
            "already used",
        ),
        // Malformed signature headers.
        (
            "DELETE",
            &path,
            "",
            Some("Signature nonsense".into()),
            StatusCode::UNAUTHORIZED,
            "Signature",
        ),
        (
            "DELETE",
            &path,
            "",
            Some(format!("Signature {now}.zz")),
            StatusCode::UNAUTHORIZED,
            "hex",
        ),
    ];
    for (method, path, body, authorization, expected, mentions) in attempts {
        let answer = app
            .send(owner_request(method, path, body, authorization.as_deref()))
            .await;
        assert_client_error(answer.status, &answer.body, expected, mentions);
    }

    // A signed registration of alice's key is alice's alone to make: mallory cannot forge one
    // to move the record either.
    let mut forged = keyed_registration(&mallory, 6666, None, now);
    forged["public_key"] = hex::encode(alice.public_key()).into();
    let (status, answer) = app.register(forged.to_string()).await;
    assert_client_error(status, &answer, StatusCode::UNAUTHORIZED, "does not match");

    let (status, record) = lookup(&app, &uuid).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["addr"], "203.0.113.7:7000", "unchanged");
    assert_eq!(record["name"], "alice");
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
    let (_, record) = lookup(&app, &uuid).await;
    assert_eq!(record["addr"], "203.0.113.7:5000", "unchanged");
}
