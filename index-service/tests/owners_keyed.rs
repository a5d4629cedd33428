//! Keyed records are changed through signatures by their key, each accepted once, and by
//! nobody else: other keys, tokens, moved, stale or replayed signatures get 401/403, and
//! nothing changes.

mod common;

use axum::http::StatusCode;
use common::{
    Attempt, assert_client_error, assert_refused, keyed_registration, owner_request,
    signature_header, test_app, unix_now,
};
use proto::identity::{Identity, MAX_CLOCK_SKEW_SECS, uuid_for_key};

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
    let (status, _) = app.lookup(&uuid).await;
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
    assert_refused(&app, attempts).await;

    // A signed registration of alice's key is alice's alone to make: mallory cannot forge one
    // to move the record either.
    let mut forged = keyed_registration(&mallory, 6666, None, now);
    forged["public_key"] = hex::encode(alice.public_key()).into();
    let (status, answer) = app.register(forged.to_string()).await;
    assert_client_error(status, &answer, StatusCode::UNAUTHORIZED, "does not match");

    let (status, record) = app.lookup(&uuid).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["addr"], "203.0.113.7:7000", "unchanged");
    assert_eq!(record["name"], "alice");
}
