//! The two TTLs have names that say what they are: `record_ttl_secs` on the owner's own
//! answers (how long the record lives without a heartbeat), `cache_ttl_secs` on lookups and
//! member lists (how long the answer may be cached, as `Cache-Control: max-age` says where it
//! is sent). The deprecated `ttl_secs` repeats whichever of the two applies.

mod common;

use std::time::Duration;

use axum::http::{StatusCode, header};
use common::rooms::{signed, with_token};
use common::{owner_request, signature_header, test_app_with_clock, unix_now};
use proto::api::PeerRecord;
use proto::identity::{Identity, uuid_for_key};
use serde_json::Value;

/// An owner answer carries the record's lifetime, and no cache lifetime.
fn assert_owner_answer(record: &Value, lifetime: u64) {
    assert_eq!(record["record_ttl_secs"], lifetime, "{record}");
    assert_eq!(record["ttl_secs"], lifetime, "{record}");
    assert!(record.get("cache_ttl_secs").is_none(), "{record}");
}

/// A lookup answer carries how long it may be cached, and no record lifetime.
fn assert_cacheable(record: &Value, max_age: u64) {
    assert_eq!(record["cache_ttl_secs"], max_age, "{record}");
    assert_eq!(record["ttl_secs"], max_age, "{record}");
    assert!(record.get("record_ttl_secs").is_none(), "{record}");
}

#[tokio::test]
async fn owner_answers_carry_the_record_ttl_and_lookups_the_cache_ttl() {
    let (app, clock) = test_app_with_clock(|c| {
        c.peer_ttl = Duration::from_secs(600);
        c.max_cache_age = 120;
    })
    .await;
    let ann = Identity::from_secret([7; 32]);
    let uuid = uuid_for_key(&ann.public_key()).to_string();

    // Registration and heartbeat: the full lifetime, not to be cached.
    let answer = app.register_keyed(&ann, 4000, Some("ann")).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_owner_answer(&answer.body, 600);
    let path = format!("/peers/{uuid}/heartbeat");
    let auth = signature_header(&ann, "POST", &path, b"", unix_now());
    let answer = app
        .send(owner_request("POST", &path, "", Some(&auth)))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_owner_answer(&answer.body, 600);
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");

    // Lookups: capped by --max-cache-age while the record has longer to live, then its
    // remaining lifetime in whole seconds; always the same as the header.
    for (age_ms, max_age) in [(0, 120), (589_500, 10)] {
        clock.advance(Duration::from_millis(age_ms));
        for path in [format!("/peers/{uuid}"), "/peers?name=ann".to_owned()] {
            let (status, record) = app.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {record}");
            assert_cacheable(&record, max_age);
            let answer = app
                .send(
                    axum::http::Request::get(&path)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(
                answer.headers[header::CACHE_CONTROL],
                format!("max-age={max_age}").as_str(),
                "{path}"
            );
        }
    }

    // Room members, in the join answer and the member list, are lookups too.
    let answer = signed(&app, "PUT", "rust", &ann, unix_now() + 1).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_cacheable(&answer.body["members"][0], 10);
    let (status, room) = app.get("/rooms/rust").await;
    assert_eq!(status, StatusCode::OK, "{room}");
    assert_cacheable(&room["members"][0], 10);
}

#[tokio::test]
async fn keyless_owner_answers_carry_the_record_ttl() {
    let (app, _clock) = test_app_with_clock(|c| c.peer_ttl = Duration::from_secs(900)).await;
    let (status, record) = app.register(r#"{"udp_port": 4000}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    assert_owner_answer(&record, 900);
    let uuid = record["uuid"].as_str().unwrap();
    let bearer = format!("Bearer {}", record["token"].as_str().unwrap());

    let answer = app
        .send(owner_request(
            "POST",
            &format!("/peers/{uuid}/heartbeat"),
            "",
            Some(&bearer),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_owner_answer(&answer.body, 900);
    let answer = app
        .send(owner_request(
            "PUT",
            &format!("/peers/{uuid}"),
            r#"{"udp_port": 4001}"#,
            Some(&bearer),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_owner_answer(&answer.body, 900);

    let answer = with_token(
        &app,
        "PUT",
        "lobby",
        uuid,
        record["token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_cacheable(&answer.body["members"][0], 300);
}

/// An index from before the two names sent only `ttl_secs`; clients read it as whichever of
/// the two they want.
#[test]
fn records_from_older_indexes_still_read() {
    let old: PeerRecord = serde_json::from_str(
        r#"{"uuid":"0d556e2d-712b-4da6-8144-6dcfc876a7cd","addr":"172.23.0.1:9000",
            "registered_at":"2026-11-22T05:37:47.720Z","ttl_secs":7200}"#,
    )
    .unwrap();
    assert_eq!(old.record_ttl_secs, None);
    assert_eq!(old.record_ttl(), Some(7200));
    assert_eq!(old.cache_ttl(), Some(7200));

    let mut new = old.clone();
    new.set_cache_ttl(42);
    assert_eq!((new.cache_ttl(), new.ttl_secs), (Some(42), Some(42)));
    assert_eq!(new.record_ttl_secs, None);
    let json = serde_json::to_value(&new).unwrap();
    assert!(json.get("record_ttl_secs").is_none(), "{json}");
}
