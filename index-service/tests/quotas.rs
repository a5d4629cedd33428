//! Per-address quotas and the global cap (issue 9, finding 7): live records and names per
//! client IP and per /24 or /48 subnet are limited (429 JSON saying what to do), a keyed record
//! registering again does not count twice, concurrent registrations cannot overshoot a quota,
//! and a full index answers 507 JSON. Client addresses are set per request with `ConnectInfo`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use common::{Answer, TestApp, assert_client_error, keyed_registration, test_app_with, unix_now};
use index_service::Config;
use proto::identity::Identity;
use serde_json::{Value, json};

fn id(n: u16) -> Identity {
    let mut secret = [5u8; 32];
    secret[..2].copy_from_slice(&n.to_le_bytes());
    Identity::from_secret(secret)
}

/// Every quota off, for tests that turn one on.
fn no_quotas(config: &mut Config) {
    config.max_records_per_ip = 0;
    config.max_records_per_subnet = 0;
    config.max_names_per_ip = 0;
    config.max_names_per_subnet = 0;
    config.max_records = 0;
}

/// `POST /register` with `body`, as if sent from `ip`.
async fn register_from(app: &TestApp, ip: &str, body: Value) -> Answer {
    let client: SocketAddr = SocketAddr::new(ip.parse().unwrap(), 40000);
    app.send(
        Request::post("/register")
            .header(header::CONTENT_TYPE, "application/json")
            .extension(ConnectInfo(client))
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

async fn keyless_from(app: &TestApp, ip: &str) -> StatusCode {
    register_from(app, ip, json!({ "udp_port": 4000 }))
        .await
        .status
}

fn refused(answer: &Answer, mentions: &str) {
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::TOO_MANY_REQUESTS,
        mentions,
    );
}

#[tokio::test]
async fn records_are_limited_per_address_and_per_subnet() {
    let app = test_app_with(|c| {
        no_quotas(c);
        c.max_records_per_ip = 3;
        c.max_records_per_subnet = 5;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            keyless_from(&app, "198.51.100.1").await,
            StatusCode::CREATED
        );
    }
    let answer = register_from(&app, "198.51.100.1", json!({ "udp_port": 4000 })).await;
    refused(
        &answer,
        "your address 198.51.100.1 already has 3 live records",
    );
    assert!(answer.body["error"].as_str().unwrap().contains("DELETE"));
    // The neighbour in the same /24 has its own per-address quota, but shares the subnet's.
    assert_eq!(
        keyless_from(&app, "198.51.100.2").await,
        StatusCode::CREATED
    );
    assert_eq!(
        keyless_from(&app, "198.51.100.2").await,
        StatusCode::CREATED
    );
    let answer = register_from(&app, "198.51.100.2", json!({ "udp_port": 4000 })).await;
    refused(
        &answer,
        "the network 198.51.100.0/24 already has 5 live records",
    );
    // Another subnet is unaffected; an IPv4-mapped IPv6 client counts as its IPv4 address.
    assert_eq!(
        keyless_from(&app, "198.51.101.1").await,
        StatusCode::CREATED
    );
    let answer = register_from(&app, "::ffff:198.51.100.3", json!({ "udp_port": 1 })).await;
    refused(&answer, "198.51.100.0/24");

    // IPv6 subnets are /48.
    let app = test_app_with(|c| {
        no_quotas(c);
        c.max_records_per_subnet = 2;
    })
    .await;
    assert_eq!(
        keyless_from(&app, "2001:db8:1:1::1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        keyless_from(&app, "2001:db8:1:2::1").await,
        StatusCode::CREATED
    );
    let answer = register_from(&app, "2001:db8:1:ffff::5", json!({ "udp_port": 1 })).await;
    refused(&answer, "2001:db8:1::/48");
    assert_eq!(
        keyless_from(&app, "2001:db8:2::1").await,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_keyed_record_registering_again_counts_once() {
    let app = test_app_with(|c| {
        no_quotas(c);
        c.max_records_per_ip = 2;
        c.max_names_per_ip = 1;
    })
    .await;
    let ip = "192.0.2.10";
    for i in 0..5 {
        let body = keyed_registration(&id(1), 5000, Some("ann"), unix_now() + i);
        let answer = register_from(&app, ip, body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
    // A second named record passes the names quota; without a name it fits the records quota.
    let body = keyed_registration(&id(2), 5000, Some("bob"), unix_now());
    refused(
        &register_from(&app, ip, body).await,
        "your address 192.0.2.10 already holds 1 names",
    );
    let body = keyed_registration(&id(2), 5000, None, unix_now());
    assert_eq!(
        register_from(&app, ip, body).await.status,
        StatusCode::CREATED
    );
    refused(
        &register_from(&app, ip, json!({ "udp_port": 1 })).await,
        "already has 2 live records",
    );
    // ann may still move and keep her name; a record that moves away frees its slot.
    let body = keyed_registration(&id(1), 5001, Some("ann"), unix_now() + 10);
    assert_eq!(
        register_from(&app, ip, body).await.status,
        StatusCode::CREATED
    );
    let body = keyed_registration(&id(1), 5001, Some("ann"), unix_now() + 11);
    assert_eq!(
        register_from(&app, "192.0.2.99", body).await.status,
        StatusCode::CREATED
    );
    assert_eq!(keyless_from(&app, ip).await, StatusCode::CREATED);
}

#[tokio::test]
async fn names_are_limited_per_subnet() {
    let app = test_app_with(|c| {
        no_quotas(c);
        c.max_names_per_subnet = 2;
    })
    .await;
    for (n, ip) in [(1, "192.0.2.1"), (2, "192.0.2.2")] {
        let body = keyed_registration(&id(n), 5000, Some(&format!("n{n}")), unix_now());
        assert_eq!(
            register_from(&app, ip, body).await.status,
            StatusCode::CREATED
        );
    }
    let body = keyed_registration(&id(3), 5000, Some("n3"), unix_now());
    refused(
        &register_from(&app, "192.0.2.3", body).await,
        "the network 192.0.2.0/24 already holds 2 names",
    );
    // The refused signature was used; a fresh one from another subnet goes through.
    let body = keyed_registration(&id(3), 5000, Some("n3"), unix_now() + 1);
    assert_eq!(
        register_from(&app, "192.0.3.3", body).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_cannot_overshoot_a_quota() {
    let app = Arc::new(
        test_app_with(|c| {
            no_quotas(c);
            c.max_records_per_ip = 8;
        })
        .await,
    );
    // Many at once, so the writer groups them (and tries its multi-row insert).
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { keyless_from(&app, "192.0.2.50").await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 8);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM peers WHERE ip = '192.0.2.50'")
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(stored, 8);
}

#[tokio::test]
async fn a_full_index_answers_507_until_a_record_goes() {
    let app = test_app_with(|c| {
        no_quotas(c);
        c.max_records = 3;
    })
    .await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        let answer = register_from(&app, &format!("192.0.2.{i}"), json!({ "udp_port": 1 })).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        tokens.push((answer.body["uuid"].clone(), answer.body["token"].clone()));
    }
    let answer = register_from(&app, "198.51.100.1", json!({ "udp_port": 1 })).await;
    assert_client_error(
        answer.status,
        &answer.body,
        StatusCode::INSUFFICIENT_STORAGE,
        "as many as it is configured to store",
    );
    let body = keyed_registration(&id(1), 5000, Some("late"), unix_now());
    let answer = register_from(&app, "198.51.100.1", body).await;
    assert_eq!(
        answer.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        answer.body
    );

    // Deleting one makes room.
    let (uuid, token) = &tokens[0];
    let answer = app
        .send(common::owner_request(
            "DELETE",
            &format!("/peers/{}", uuid.as_str().unwrap()),
            "",
            Some(&format!("Bearer {}", token.as_str().unwrap())),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let body = keyed_registration(&id(1), 5000, Some("late"), unix_now() + 1);
    let answer = register_from(&app, "198.51.100.1", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);

    // Full again, but a stored keyed record registering again adds no row: it is let through.
    let body = keyed_registration(&id(1), 5001, Some("late"), unix_now() + 2);
    let answer = register_from(&app, "198.51.100.1", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let body = keyed_registration(&id(2), 5000, None, unix_now() + 2);
    let answer = register_from(&app, "198.51.100.1", body).await;
    assert_eq!(
        answer.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn defaults_suit_a_household_behind_one_address() {
    let config = Config::for_database("sqlite://unused.db");
    assert_eq!(
        (
            config.max_records_per_ip,
            config.max_records_per_subnet,
            config.max_names_per_ip,
            config.max_names_per_subnet,
            config.max_records,
        ),
        (128, 1024, 32, 256, 1_000_000)
    );
}
