//! Rooms keep their live members, which only owners add and remove; room names follow one
//! rule, checked before the credentials.

mod common;

use axum::http::{StatusCode, header};
use common::rooms::{member_uuids, signed, uuids, with_token};
use common::{
    Attempt, assert_client_error, assert_refused, owner_request, signature_header, test_app,
    test_app_with, unix_now,
};
use proto::identity::{Identity, uuid_for_key};
use serde_json::json;

#[tokio::test]
async fn rooms_are_joined_listed_and_left() {
    let app = test_app_with(|c| c.max_cache_age = 120).await;
    let (ann, ann_token) = app.register_keyless(4000).await;
    let bob = Identity::from_secret([2; 32]);
    assert_eq!(
        app.register_keyed(&bob, 5000, Some("bob")).await.status,
        StatusCode::CREATED
    );
    let bob_uuid = uuid_for_key(&bob.public_key()).to_string();
    let now = unix_now();

    let (status, body) = app.get("/rooms").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "rooms": [] }));

    // Joining answers the room with its live members, the caller included.
    let answer = with_token(&app, "PUT", "rust", &ann, &ann_token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["room"], "rust");
    assert_eq!(uuids(&answer.body), [ann.as_str()]);
    assert_eq!(answer.body["members"][0]["addr"], "203.0.113.7:4000");
    assert_eq!(answer.body["members"][0]["ttl_secs"], 120);
    assert!(answer.body["members"][0].get("token").is_none());
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    // Joining again changes nothing; the 32-hex-digit UUID form works too.
    let simple = ann.replace('-', "").to_uppercase();
    let answer = with_token(&app, "PUT", "rust", &simple, &ann_token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(uuids(&answer.body), [ann.as_str()]);

    // A keyed member signs its request.
    let answer = signed(&app, "PUT", "rust", &bob, now).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(uuids(&answer.body), [ann.as_str(), bob_uuid.as_str()]);
    assert_eq!(answer.body["members"][1]["name"], "bob");
    assert_eq!(
        answer.body["members"][1]["public_key"],
        hex::encode(bob.public_key())
    );
    // The same signed join again is a replay.
    let answer = signed(&app, "PUT", "rust", &bob, now).await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::UNAUTHORIZED,
        "already used",
    );
    let answer = signed(&app, "PUT", "lobby", &bob, now).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(uuids(&answer.body), [bob_uuid.as_str()]);

    assert_eq!(
        member_uuids(&app, "rust").await,
        [ann.as_str(), bob_uuid.as_str()]
    );
    let (status, body) = app.get("/rooms").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "rooms": [
            { "room": "lobby", "members": 1 },
            { "room": "rust", "members": 2 },
        ]})
    );
    let (status, body) = app.get("/rooms/nobody-here").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "room": "nobody-here", "members": [] }));

    // Leaving is 204, and so is leaving a room one is not (any more) in.
    let answer = with_token(&app, "DELETE", "rust", &ann, &ann_token).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let answer = with_token(&app, "DELETE", "rust", &ann, &ann_token).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let answer = with_token(&app, "DELETE", "never-joined", &ann, &ann_token).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(member_uuids(&app, "rust").await, [bob_uuid.as_str()]);
    let answer = signed(&app, "DELETE", "rust", &bob, now + 1).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert!(member_uuids(&app, "rust").await.is_empty());
    let (_, body) = app.get("/rooms").await;
    assert_eq!(
        body,
        json!({ "rooms": [{ "room": "lobby", "members": 1 }] })
    );
}

#[tokio::test]
async fn only_owners_join_and_leave() {
    let app = test_app().await;
    let (victim, victim_token) = app.register_keyless(4000).await;
    let (_, other_token) = app.register_keyless(4001).await;
    let alice = Identity::from_secret([1; 32]);
    assert_eq!(
        app.register_keyed(&alice, 5000, None).await.status,
        StatusCode::CREATED
    );
    let alice_uuid = uuid_for_key(&alice.public_key()).to_string();
    let mallory = Identity::from_secret([66; 32]);
    let now = unix_now();
    let path = format!("/rooms/rust/members/{victim}");
    let alice_path = format!("/rooms/rust/members/{alice_uuid}");
    let unknown = "/rooms/rust/members/6f1c3b2e-8a4d-4f6b-9c1e-2d3f4a5b6c7d";

    let attempts: Vec<Attempt> = vec![
        (
            "PUT",
            &path,
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
        (
            "PUT",
            &path,
            "",
            Some("Basic YTpi".into()),
            StatusCode::UNAUTHORIZED,
            "Bearer",
        ),
        (
            "PUT",
            &path,
            "",
            Some(format!("Bearer {other_token}")),
            StatusCode::FORBIDDEN,
            "token",
        ),
        (
            "DELETE",
            &path,
            "",
            Some(format!("Bearer {other_token}")),
            StatusCode::FORBIDDEN,
            "token",
        ),
        (
            "PUT",
            &alice_path,
            "",
            Some(signature_header(&mallory, "PUT", &alice_path, b"", now)),
            StatusCode::FORBIDDEN,
            "signature",
        ),
        // Alice's signature for another room does not let anyone put her in this one.
        (
            "PUT",
            &alice_path,
            "",
            Some(signature_header(
                &alice,
                "PUT",
                "/rooms/other/members/x",
                b"",
                now,
            )),
            StatusCode::FORBIDDEN,
            "signature",
        ),
        (
            "PUT",
            &alice_path,
            "",
            Some(format!("Bearer {victim_token}")),
            StatusCode::FORBIDDEN,
            "keyed",
        ),
        (
            "PUT",
            unknown,
            "",
            Some(format!("Bearer {victim_token}")),
            StatusCode::NOT_FOUND,
            "no peer",
        ),
        (
            "PUT",
            "/rooms/rust/members/nope",
            "",
            Some(format!("Bearer {victim_token}")),
            StatusCode::BAD_REQUEST,
            "not a UUID",
        ),
    ];
    assert_refused(&app, attempts).await;
    let (_, body) = app.get("/rooms").await;
    assert_eq!(body, json!({ "rooms": [] }), "nobody joined anything");

    // The owner joins; a stranger cannot take the victim out again.
    assert_eq!(
        with_token(&app, "PUT", "rust", &victim, &victim_token)
            .await
            .status,
        StatusCode::OK
    );
    let answer = with_token(&app, "DELETE", "rust", &victim, &other_token).await;
    assert_client_error(answer.status, &answer.body, StatusCode::FORBIDDEN, "token");
    assert_eq!(member_uuids(&app, "rust").await, [victim.as_str()]);
}

#[tokio::test]
async fn room_names_follow_the_rule() {
    let app = test_app().await;
    let (uuid, token) = app.register_keyless(4000).await;
    let long = "x".repeat(33);
    for bad in [
        "Lobby",
        "a%20b",
        "caf%C3%A9",
        "dot.dot",
        "%F0%9F%98%80",
        long.as_str(),
    ] {
        let (status, body) = app.get(&format!("/rooms/{bad}")).await;
        assert_client_error(status, &body, StatusCode::BAD_REQUEST, "not a room name");
        assert!(
            body["error"].as_str().unwrap().contains("a-z"),
            "the error says the rule: {body}"
        );
        // Checked before the credentials: a bad room is 400 with or without them.
        for authorization in [None, Some(format!("Bearer {token}"))] {
            for method in ["PUT", "DELETE"] {
                let path = format!("/rooms/{bad}/members/{uuid}");
                let answer = app
                    .send(owner_request(method, &path, "", authorization.as_deref()))
                    .await;
                assert_client_error(
                    answer.status,
                    &answer.body,
                    StatusCode::BAD_REQUEST,
                    "not a room name",
                );
            }
        }
    }
    let longest = "x".repeat(32);
    for good in ["lobby", "rust-dev_2", "0", longest.as_str()] {
        let answer = with_token(&app, "PUT", good, &uuid, &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{good}: {}", answer.body);
    }
    let (_, body) = app.get("/rooms").await;
    assert_eq!(body["rooms"].as_array().unwrap().len(), 4, "{body}");
}
