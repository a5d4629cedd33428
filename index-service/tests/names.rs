//! Names are unique among live records (in any case, and among look-alikes: see
//! names_confusable.rs), even under concurrent claims; an expired holder frees its name; peers
//! are found by name.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use common::names::{assert_one_winner, named_id, register_named, taken};
use common::{
    assert_client_error, keyed_registration, owner_request, signature_header, test_app,
    test_app_with, test_app_with_clock, unix_now,
};
use proto::identity::Identity;

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
        app.peer_count().await,
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
    let claims = (0..32u16)
        .map(|i| (6000 + i, if i % 2 == 0 { "race" } else { "RACE" }))
        .collect();
    assert_one_winner(&app, claims).await;
    assert_eq!(app.peer_count().await, 1);
}

#[tokio::test]
async fn an_expired_holder_frees_its_name_before_the_purge() {
    // The purge never runs during the test: the name is freed by the registration itself.
    let (app, clock) = test_app_with_clock(|c| {
        c.peer_ttl = Duration::from_secs(2);
        c.purge_interval = Some(Duration::from_secs(3600));
    })
    .await;
    let (status, old) = register_named(&app, 4000, "carol").await;
    assert_eq!(status, StatusCode::CREATED, "{old}");
    let (status, body) = register_named(&app, 4001, "Carol").await;
    assert_client_error(status, &body, StatusCode::CONFLICT, "taken");

    clock.advance(Duration::from_secs(3));
    assert_eq!(app.get("/peers?name=carol").await.0, StatusCode::NOT_FOUND);
    // Signed a second later than the refused attempt, so it is not that request again.
    let again = keyed_registration(&named_id(4001), 4001, Some("Carol"), unix_now() + 1);
    let (status, new) = app.register(again.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    assert_ne!(new["uuid"], old["uuid"]);

    // The expired record is still stored, without its name.
    let old_name: Option<String> = sqlx::query_scalar("SELECT name FROM peers WHERE uuid = $1")
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
