//! A keyed registration derives its UUID from its key and updates the same record when it comes
//! again; one whose signature is missing, malformed, stale, replayed or wrong is 401 and stores
//! nothing.

mod common;

use axum::http::StatusCode;
use common::{assert_client_error, keyed_registration, test_app, unix_now};
use proto::identity::{Identity, MAX_CLOCK_SKEW_SECS, uuid_for_key};
use serde_json::{Value, json};

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
    let (status, found) = app.lookup(&uuid).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["public_key"], hex::encode(alice.public_key()));
    assert_eq!(found["addr"], "203.0.113.7:7001");
    assert_eq!(app.peer_count().await, 1);

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
    assert_eq!(app.peer_count().await, 0);
}
