//! Names are unique among live records (in any case, and among look-alikes: see
//! names_confusable.rs) and can be looked up; rooms keep their
//! live members, which only owners add and remove and which vanish with their records.

mod common;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use common::{
    Answer, TestApp, assert_client_error, database_url, eventually, keyed_registration,
    owner_request, signature_header, test_app, test_app_with, unix_now,
};
use index_service::db;
use proto::identity::{Identity, uuid_for_key};
use serde_json::{Value, json};

/// What the index answers a name someone else holds.
fn taken(name: &str) -> String {
    format!(
        "the name `{name}` is taken by another peer, or looks the same as a name another peer \
         holds; choose another name (e.g. --name {name}2)"
    )
}

/// The identity [`register_named`] signs with for `port`: one key per port.
fn named_id(port: u16) -> Identity {
    let mut secret = [7u8; 32];
    secret[..2].copy_from_slice(&port.to_le_bytes());
    Identity::from_secret(secret)
}

/// A keyed registration (names need one) by [`named_id`]`(port)`.
async fn register_named(app: &TestApp, port: u16, name: &str) -> (StatusCode, Value) {
    let answer = app.register_keyed(&named_id(port), port, Some(name)).await;
    (answer.status, answer.body)
}

async fn peer_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM peers")
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap()
}

/// The UUIDs of a room's members as `GET /rooms/{room}` lists them.
async fn member_uuids(app: &TestApp, room: &str) -> Vec<String> {
    let (status, body) = app.get(&format!("/rooms/{room}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room"], room);
    uuids(&body)
}

fn uuids(room: &Value) -> Vec<String> {
    room["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uuid"].as_str().unwrap().to_owned())
        .collect()
}

/// A membership change by a keyless owner.
async fn with_token(app: &TestApp, method: &str, room: &str, uuid: &str, token: &str) -> Answer {
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
async fn signed(app: &TestApp, method: &str, room: &str, id: &Identity, timestamp: u64) -> Answer {
    let path = format!("/rooms/{room}/members/{}", uuid_for_key(&id.public_key()));
    let auth = signature_header(id, method, &path, b"", timestamp);
    app.send(owner_request(method, &path, "", Some(&auth)))
        .await
}

#[tokio::test]
async fn a_name_held_by_a_live_peer_is_refused_in_any_case() {
    let app = test_app().await;
    let (status, alice) = register_named(&app, 4000, "alice").await;
    assert_eq!(status, StatusCode::CREATED, "{alice}");
    let alice_uuid = alice["uuid"].as_str().unwrap().to_owned();

    // In the same and in another case: 409 saying how to fix it, nothing stored.
    for name in ["alice", "ALICE", "aLiCe"] {
        let (status, body) = register_named(&app, 4001, name).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], taken(name).as_str());
    }
    // Keyed, too.
    let bob = Identity::from_secret([2; 32]);
    let answer = app.register_keyed(&bob, 5000, Some("Alice")).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert_eq!(answer.body["error"], taken("Alice").as_str());
    assert_eq!(
        peer_count(&app).await,
        1,
        "refused registrations store nothing"
    );

    // A keyed peer registering again keeps its own name, and may change its case.
    let answer = app.register_keyed(&bob, 5000, Some("bob")).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let bob_uuid = answer.body["uuid"].as_str().unwrap().to_owned();
    let again = keyed_registration(&bob, 5001, Some("bob"), unix_now() + 1);
    let (status, body) = app.register(again.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "bob");
    let recased = keyed_registration(&bob, 5001, Some("Bob"), unix_now() + 2);
    let (status, body) = app.register(recased.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "Bob");

    // PUT cannot take someone else's name either, but can keep its own.
    let alice_id = named_id(4000);
    let path = format!("/peers/{alice_uuid}");
    let put = |body: &'static str, at: u64| {
        let auth = signature_header(&alice_id, "PUT", &path, body.as_bytes(), at);
        owner_request("PUT", &path, body, Some(&auth))
    };
    let answer = app
        .send(put(r#"{"udp_port": 4002, "name": "BOB"}"#, unix_now()))
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert_eq!(answer.body["error"], taken("BOB").as_str());
    let answer = app
        .send(put(r#"{"udp_port": 4002, "name": "Alice"}"#, unix_now()))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["name"], "Alice");

    // A freed name is free: alice drops hers, and bob's key takes it.
    let answer = app.send(put(r#"{"udp_port": 4002}"#, unix_now())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let take = keyed_registration(&bob, 5001, Some("alice"), unix_now() + 3);
    let (status, body) = app.register(take.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["uuid"], bob_uuid.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_of_one_name_have_one_winner() {
    let app = Arc::new(test_app().await);
    let claims: Vec<_> = (0..32u16)
        .map(|i| {
            let app = app.clone();
            let name = if i % 2 == 0 { "race" } else { "RACE" };
            tokio::spawn(async move { register_named(&app, 6000 + i, name).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for claim in claims {
        statuses.push(claim.await.unwrap());
    }
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, lost), (1, 31), "{statuses:?}");
    assert_eq!(peer_count(&app).await, 1);
}

#[tokio::test]
async fn an_expired_holder_frees_its_name_before_the_purge() {
    // The purge never runs during the test: the name is freed by the registration itself.
    let app = test_app_with(|c| {
        c.peer_ttl = Duration::from_secs(2);
        c.purge_interval = Some(Duration::from_secs(3600));
    })
    .await;
    let (status, old) = register_named(&app, 4000, "carol").await;
    assert_eq!(status, StatusCode::CREATED, "{old}");
    let (status, body) = register_named(&app, 4001, "Carol").await;
    assert_client_error(status, &body, StatusCode::CONFLICT, "taken");

    eventually(
        Duration::from_secs(15),
        "carol's record to expire",
        || async { (app.get("/peers?name=carol").await.0 == StatusCode::NOT_FOUND).then_some(()) },
    )
    .await;
    let (status, new) = register_named(&app, 4001, "Carol").await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    assert_ne!(new["uuid"], old["uuid"]);

    // The expired record is still stored, without its name.
    let old_name: Option<String> = sqlx::query_scalar("SELECT name FROM peers WHERE uuid = ?1")
        .bind(old["uuid"].as_str().unwrap())
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(old_name, None);
}

#[tokio::test]
async fn peers_are_found_by_name_in_any_case() {
    let app = test_app_with(|c| c.max_cache_age = 120).await;
    let (status, zoe) = register_named(&app, 4000, "Zoë Smith").await;
    assert_eq!(status, StatusCode::CREATED, "{zoe}");
    let (status, _) = register_named(&app, 4001, "zed").await;
    assert_eq!(status, StatusCode::CREATED);

    for query in ["Zo%C3%AB%20Smith", "zo%C3%AB+smith", "ZO%C3%AB%20SMITH"] {
        let answer = app
            .send(
                axum::http::Request::get(format!("/peers?name={query}"))
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
        assert_eq!(answer.body["uuid"], zoe["uuid"]);
        assert_eq!(answer.body["name"], "Zoë Smith");
        assert_eq!(answer.body["addr"], "203.0.113.7:4000");
        assert_eq!(answer.body["ttl_secs"], 120);
        assert_eq!(answer.headers[header::CACHE_CONTROL], "max-age=120");
        assert!(answer.body.get("token").is_none());
    }

    let (status, body) = app.get("/peers?name=nobody").await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND, "`nobody`");
    let (status, body) = app.get("/peers").await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST, "?name=");
    let (status, body) = app.get("/peers?nam=zed").await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST, "?name=");
    let (status, body) = app.get("/peers?name=a&name=b").await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST, "?name=");
    let (status, body) = app.get("/peers?name=").await;
    assert_client_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "1 to 64");
    let long = "x".repeat(65);
    let (status, body) = app.get(&format!("/peers?name={long}")).await;
    assert_client_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "1 to 64");
    let (status, body) = app.get("/peers?name=a%07b").await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND, "control");

    // The other routes under /peers are unaffected.
    let (status, body) = app.call(owner_request("POST", "/peers", "", None)).await;
    assert_client_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "POST");
    let (status, _) = app
        .get(&format!("/peers/{}", zoe["uuid"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
}

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

    let attempts: Vec<(&str, &str, Option<String>, StatusCode, &str)> = vec![
        (
            "PUT",
            &path,
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            "DELETE",
            &path,
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            "PUT",
            &path,
            Some("Basic YTpi".into()),
            StatusCode::UNAUTHORIZED,
            "Bearer",
        ),
        (
            "PUT",
            &path,
            Some(format!("Bearer {other_token}")),
            StatusCode::FORBIDDEN,
            "token",
        ),
        (
            "DELETE",
            &path,
            Some(format!("Bearer {other_token}")),
            StatusCode::FORBIDDEN,
            "token",
        ),
        (
            "PUT",
            &alice_path,
            Some(signature_header(&mallory, "PUT", &alice_path, b"", now)),
            StatusCode::FORBIDDEN,
            "signature",
        ),
        // Alice's signature for another room does not let anyone put her in this one.
        (
            "PUT",
            &alice_path,
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
            Some(format!("Bearer {victim_token}")),
            StatusCode::FORBIDDEN,
            "keyed",
        ),
        (
            "PUT",
            unknown,
            Some(format!("Bearer {victim_token}")),
            StatusCode::NOT_FOUND,
            "no peer",
        ),
        (
            "PUT",
            "/rooms/rust/members/nope",
            Some(format!("Bearer {victim_token}")),
            StatusCode::BAD_REQUEST,
            "not a UUID",
        ),
    ];
    for (method, path, authorization, expected, mentions) in attempts {
        let answer = app
            .send(owner_request(method, path, "", authorization.as_deref()))
            .await;
        assert_client_error(answer.status, &answer.body, expected, mentions);
        if expected == StatusCode::UNAUTHORIZED {
            assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));
        }
    }
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

#[tokio::test]
async fn members_vanish_with_deleted_records() {
    let app = test_app().await;
    let (ann, ann_token) = app.register_keyless(4000).await;
    let (bea, bea_token) = app.register_keyless(4001).await;
    for (uuid, token) in [(&ann, &ann_token), (&bea, &bea_token)] {
        assert_eq!(
            with_token(&app, "PUT", "rust", uuid, token).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        with_token(&app, "PUT", "lobby", &ann, &ann_token)
            .await
            .status,
        StatusCode::OK
    );
    let answer = app
        .send(owner_request(
            "DELETE",
            &format!("/peers/{ann}"),
            "",
            Some(&format!("Bearer {ann_token}")),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(member_uuids(&app, "rust").await, [bea.as_str()]);
    let (_, body) = app.get("/rooms").await;
    assert_eq!(body, json!({ "rooms": [{ "room": "rust", "members": 1 }] }));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM room_members WHERE uuid = ?1")
        .bind(&ann)
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the memberships went with the record");

    // A deleted record cannot join or leave any more.
    let answer = with_token(&app, "PUT", "rust", &ann, &ann_token).await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::NOT_FOUND,
        "no peer",
    );
    let answer = with_token(&app, "DELETE", "rust", &ann, &ann_token).await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::NOT_FOUND,
        "no peer",
    );
}

#[tokio::test]
async fn members_vanish_when_their_records_expire() {
    let app = test_app_with(|c| {
        c.peer_ttl = Duration::from_secs(2);
        c.purge_interval = Some(Duration::from_secs(3600));
    })
    .await;
    let (ann, ann_token) = app.register_keyless(4000).await;
    let bob = Identity::from_secret([2; 32]);
    assert_eq!(
        app.register_keyed(&bob, 5000, None).await.status,
        StatusCode::CREATED
    );
    let bob_uuid = uuid_for_key(&bob.public_key()).to_string();
    let answer = with_token(&app, "PUT", "rust", &ann, &ann_token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = signed(&app, "PUT", "rust", &bob, unix_now()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(uuids(&answer.body), [ann.as_str(), bob_uuid.as_str()]);

    // Expired members leave every list at once, before any purge.
    eventually(Duration::from_secs(15), "the members to expire", || async {
        let (_, body) = app.get("/rooms").await;
        (body == json!({ "rooms": [] })).then_some(())
    })
    .await;
    assert!(member_uuids(&app, "rust").await.is_empty());

    // Bob's key registering again is a new record, in no room: the old membership does not
    // come back.
    let again = keyed_registration(&bob, 5000, None, unix_now() + 1);
    let (status, body) = app.register(again.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(member_uuids(&app, "rust").await.is_empty());

    // The purge deletes the expired record, and its memberships with it.
    let state = app.service.state();
    assert!(index_service::maintenance::purge_expired(state).await >= 1);
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&state.pool)
            .await
            .unwrap()
    };
    assert_eq!(
        count("SELECT count(*) FROM peers").await,
        1,
        "only bob is left"
    );
    assert_eq!(count("SELECT count(*) FROM room_members").await, 0);
}

#[tokio::test]
async fn the_migration_keeps_the_newest_of_duplicate_names_and_the_index_backs_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(&dir);
    // A database as the previous release left it: two records share a name.
    let options = db::connect_options(&url).unwrap();
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations"
    )))
    .await
    .unwrap();
    let before: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < 20261126000000)
        .cloned()
        .collect();
    assert_eq!(before.len(), 2);
    migrator.migrations = Cow::Owned(before);
    migrator.run(&pool).await.unwrap();
    for (uuid, name, last_seen) in [
        (
            "00000000-0000-0000-0000-000000000001",
            "dup",
            "2026-01-01T00:00:00.000Z",
        ),
        (
            "00000000-0000-0000-0000-000000000002",
            "DUP",
            "2026-01-02T00:00:00.000Z",
        ),
        (
            "00000000-0000-0000-0000-000000000003",
            "Dup",
            "2025-12-31T00:00:00.000Z",
        ),
        (
            "00000000-0000-0000-0000-000000000004",
            "solo",
            "2025-12-31T00:00:00.000Z",
        ),
        // A look-alike of `solo` (Cyrillic ѕ), seen earlier: the name keys drop it.
        (
            "00000000-0000-0000-0000-000000000006",
            "\u{0455}olo",
            "2025-12-30T00:00:00.000Z",
        ),
        // No longer acceptable as a name (a zero-width space).
        (
            "00000000-0000-0000-0000-000000000007",
            "zero\u{200B}width",
            "2025-12-30T00:00:00.000Z",
        ),
        // Keyless: names need a key now.
        (
            "00000000-0000-0000-0000-000000000008",
            "keyless",
            "2026-01-03T00:00:00.000Z",
        ),
    ] {
        let keyless = uuid.ends_with('8');
        sqlx::query(
            "INSERT INTO peers (uuid, addr, name, registered_at, last_seen, public_key)
             VALUES (?1, '192.0.2.1:1', ?2, ?3, ?3, ?4)",
        )
        .bind(uuid)
        .bind(name)
        .bind(last_seen)
        .bind((!keyless).then(|| format!("{:0>64}", &uuid[35..])))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let pool = db::connect(&url).await.unwrap();
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let names: Vec<Row> =
        sqlx::query_as("SELECT uuid, name, name_key, subnet FROM peers ORDER BY uuid")
            .fetch_all(&pool)
            .await
            .unwrap();
    let keys: Vec<Option<&str>> = names.iter().map(|(_, _, k, _)| k.as_deref()).collect();
    assert!(
        names
            .iter()
            .all(|(.., subnet)| subnet.as_deref() == Some("192.0.2.0/24"))
    );
    let names: Vec<Option<&str>> = names.iter().map(|(_, n, _, _)| n.as_deref()).collect();
    assert_eq!(
        names,
        [None, Some("DUP"), None, Some("solo"), None, None, None]
    );
    assert_eq!(
        keys,
        [None, Some("dup"), None, Some("solo"), None, None, None]
    );

    // Whatever writes the database, two records never share a name (key), and a name
    // always comes with its key.
    let error = sqlx::query(
        "INSERT INTO peers (uuid, addr, name, name_key, registered_at, last_seen)
         VALUES ('00000000-0000-0000-0000-000000000005', '192.0.2.1:1', 'Solo', 'solo', 'x', 'x')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(db::names::is_name_conflict(&error), "{error}");
    let error = sqlx::query(
        "INSERT INTO peers (uuid, addr, name, registered_at, last_seen)
         VALUES ('00000000-0000-0000-0000-000000000005', '192.0.2.1:1', 'other', 'x', 'x')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(error.to_string().contains("needs its key"), "{error}");
    // The room table is there, tied to the records.
    let error = sqlx::query(
        "INSERT INTO room_members (room, uuid, joined_at) VALUES ('lobby', 'no-such-peer', 'x')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
}
