//! Records live for the TTL after their last refresh: lookups stop showing an expired record at
//! once, the background task purges it (and counts it), and heartbeats keep a record alive.
//! Most tests move the index's clock on past the TTL instead of sleeping through it; one runs
//! the real server on the system clock.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{
    Answer, TestApp, database_url, eventually, owner_request, test_app, test_app_with,
    test_app_with_clock,
};
use index_service::{Config, maintenance};

async fn lookup(app: &TestApp, uuid: &str) -> Answer {
    app.send(
        Request::get(format!("/peers/{uuid}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn lookups_say_how_long_to_cache() {
    let app = test_app_with(|c| c.max_cache_age = 120).await;
    let (uuid, _) = app.register_keyless(4000).await;
    let answer = lookup(&app, &uuid).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["ttl_secs"], 120, "capped by --max-cache-age");
    assert_eq!(answer.headers[header::CACHE_CONTROL], "max-age=120");

    // With a TTL shorter than the cap, the remaining lifetime is the limit, and it runs down.
    let (app, clock) = test_app_with_clock(|c| c.peer_ttl = Duration::from_secs(60)).await;
    let (uuid, _) = app.register_keyless(4000).await;
    for (advance_ms, ttl) in [(0, 60), (15_500, 44), (44_000, 0)] {
        clock.advance(Duration::from_millis(advance_ms));
        let answer = lookup(&app, &uuid).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["ttl_secs"], ttl);
        assert_eq!(
            answer.headers[header::CACHE_CONTROL].to_str().unwrap(),
            format!("max-age={ttl}")
        );
    }
}

#[tokio::test]
async fn expired_records_vanish_get_purged_and_heartbeats_keep_them() {
    let (app, clock) = test_app_with_clock(|c| {
        c.peer_ttl = Duration::from_secs(60);
        c.purge_interval = Some(Duration::from_millis(50));
    })
    .await;
    let state = app.service.state();
    let (kept, token) = app.register_keyless(4000).await;
    let (dropped, _) = app.register_keyless(4001).await;

    // `kept` is refreshed every 25 s of the index's clock; `dropped`, registered at the same
    // moment, is not, and is live until its TTL has passed.
    let heartbeat = format!("/peers/{kept}/heartbeat");
    let bearer = format!("Bearer {token}");
    for (at, dropped_left) in [(25, Some(35)), (50, Some(10)), (75, None)] {
        clock.advance(Duration::from_secs(25));
        let answer = app
            .send(owner_request("POST", &heartbeat, "", Some(&bearer)))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "at {at} s: {}", answer.body);
        assert_eq!(answer.body["ttl_secs"], 60);
        let answer = lookup(&app, &dropped).await;
        match dropped_left {
            Some(left) => {
                assert_eq!(answer.status, StatusCode::OK, "at {at} s");
                assert_eq!(answer.body["ttl_secs"], left);
                // Nothing is purged while it is live.
                assert_eq!(maintenance::purge_expired(state).await, 0);
            }
            // Gone from lookups at once, whether or not the purge has run.
            None => assert_eq!(answer.status, StatusCode::NOT_FOUND, "at {at} s"),
        }
    }
    let (status, record) = app.get(&format!("/peers/{kept}")).await;
    assert_eq!(status, StatusCode::OK, "heartbeats kept it alive: {record}");

    // The background task deletes the expired row and counts it.
    let pool = state.pool.clone();
    eventually(Duration::from_secs(10), "the purge", || {
        let pool = pool.clone();
        let dropped = dropped.clone();
        async move {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM peers WHERE uuid = $1")
                .bind(dropped)
                .fetch_one(&pool)
                .await
                .unwrap();
            (left == 0).then_some(())
        }
    })
    .await;
    let metrics = &state.metrics;
    eventually(
        Duration::from_secs(10),
        "the expiry to be counted",
        || async {
            metrics
                .render()
                .contains("index_peers_expired_total 1")
                .then_some(())
        },
    )
    .await;

    // An expired record can no longer be refreshed; its owner has to register again.
    let (gone, token) = app.register_keyless(4002).await;
    clock.advance(Duration::from_secs(61));
    let (status, _) = app.get(&format!("/peers/{gone}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let answer = app
        .send(owner_request(
            "POST",
            &format!("/peers/{gone}/heartbeat"),
            "",
            Some(&format!("Bearer {token}")),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
}

/// The same on the system clock, through the real server: a record is found until its TTL
/// has passed in real time, and not after.
#[tokio::test]
async fn records_expire_on_the_system_clock() {
    // Long enough that a loaded machine stalling between the registration and the first
    // lookup does not let the record expire in between.
    let ttl = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_database(database_url(&dir));
    config.peer_ttl = ttl;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(index_service::run(config, listener, async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let started = Instant::now();
    let record: serde_json::Value = client
        .post(format!("{base}/register"))
        .json(&serde_json::json!({ "udp_port": 4000 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{base}/peers/{}", record["uuid"].as_str().unwrap());
    let status = client.get(&url).send().await.unwrap().status();
    assert_eq!(status, reqwest::StatusCode::OK);
    eventually(Duration::from_secs(30), "the record to expire", || async {
        let status = client.get(&url).send().await.unwrap().status();
        (status == reqwest::StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(started.elapsed() >= ttl, "expired early");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_default_ttl_is_two_hours() {
    let app = test_app().await;
    let (status, record) = app.register(r#"{"udp_port": 4000}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(record["record_ttl_secs"], 7200);
    assert_eq!(record["ttl_secs"], 7200);
}
