//! Records live for the TTL after their last refresh: lookups stop showing an expired record at
//! once, the background task purges it (and counts it), and heartbeats keep a record alive.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{eventually, owner_request, test_app, test_app_with};

#[tokio::test]
async fn lookups_say_how_long_to_cache() {
    let app = test_app_with(|c| c.max_cache_age = 120).await;
    let (uuid, _) = app.register_keyless(4000).await;
    let answer = app
        .send(
            Request::get(format!("/peers/{uuid}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["ttl_secs"], 120, "capped by --max-cache-age");
    assert_eq!(answer.headers[header::CACHE_CONTROL], "max-age=120");

    // With a TTL shorter than the cap, the remaining lifetime is the limit.
    let app = test_app_with(|c| c.peer_ttl = Duration::from_secs(60)).await;
    let (uuid, _) = app.register_keyless(4000).await;
    let answer = app
        .send(
            Request::get(format!("/peers/{uuid}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let ttl = answer.body["ttl_secs"].as_u64().unwrap();
    assert!((50..=60).contains(&ttl), "{ttl}");
    assert_eq!(
        answer.headers[header::CACHE_CONTROL].to_str().unwrap(),
        format!("max-age={ttl}")
    );
}

#[tokio::test]
async fn expired_records_vanish_get_purged_and_heartbeats_keep_them() {
    // Long enough that a loaded machine stalling the loop below for a second or two does not
    // let `kept` expire between heartbeats.
    let ttl = Duration::from_secs(3);
    let app = test_app_with(|c| {
        c.peer_ttl = ttl;
        c.purge_interval = Some(Duration::from_millis(100));
    })
    .await;
    let (kept, token) = app.register_keyless(4000).await;
    let (dropped, _) = app.register_keyless(4001).await;

    // Heartbeat `kept` every 200 ms until `dropped`, registered at the same moment, has
    // vanished: by then `kept` has outlived its first TTL, and each heartbeat must find it.
    let heartbeat = format!("/peers/{kept}/heartbeat");
    let bearer = format!("Bearer {token}");
    let started = std::time::Instant::now();
    loop {
        let answer = app
            .send(owner_request("POST", &heartbeat, "", Some(&bearer)))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "heartbeat after {:?}: {}",
            started.elapsed(),
            answer.body
        );
        assert_eq!(answer.body["ttl_secs"], 3);
        let (status, _) = app.get(&format!("/peers/{dropped}")).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the unrefreshed record never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() >= ttl, "expired early");
    let (status, record) = app.get(&format!("/peers/{kept}")).await;
    assert_eq!(status, StatusCode::OK, "heartbeats kept it alive: {record}");

    // The background task deletes the expired row and counts it.
    let pool = app.service.state().pool.clone();
    eventually(Duration::from_secs(10), "the purge", || {
        let pool = pool.clone();
        let dropped = dropped.clone();
        async move {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM peers WHERE uuid = ?1")
                .bind(dropped)
                .fetch_one(&pool)
                .await
                .unwrap();
            (left == 0).then_some(())
        }
    })
    .await;
    let metrics = &app.service.state().metrics;
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
    let (status, _) = eventually(Duration::from_secs(10), "expiry", || {
        let app = &app;
        let gone = gone.clone();
        async move {
            let (status, body) = app.get(&format!("/peers/{gone}")).await;
            (status == StatusCode::NOT_FOUND).then_some((status, body))
        }
    })
    .await;
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

#[tokio::test]
async fn the_default_ttl_is_two_hours() {
    let app = test_app().await;
    let (status, record) = app.register(r#"{"udp_port": 4000}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(record["ttl_secs"], 7200);
}
