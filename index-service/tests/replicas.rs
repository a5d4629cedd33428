//! Replicas (issue 16): two index processes' worth of services on one PostgreSQL database.
//! A change made through one is served by the other within a second (its lookup cache is kept
//! coherent by LISTEN/NOTIFY), owners may use either, names stay unique and signatures
//! single-use across both, and conflicting writes are decided by the database.
//!
//! Needs a PostgreSQL server: `INDEX_TEST_POSTGRES=postgres://USER@HOST:PORT` (`.ci/run` starts
//! one); without it every test here says SKIP.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::names::named_id;
use common::{TestApp, keyed_registration, owner_request, signature_header, unix_now};
use proto::identity::Identity;
use serde_json::json;

/// Two replicas on one fresh database, each coherent (hearing its own announcements), or
/// `None` after saying SKIP.
async fn replicas(test: &str) -> Option<(TestApp, TestApp)> {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = common::postgres_url(&dir) else {
        common::skip(&format!(
            "replicas::{test}: no PostgreSQL server (set INDEX_TEST_POSTGRES=postgres://USER@HOST:PORT)"
        ));
        return None;
    };
    let (a, b) = (TestApp::on(&url).await, TestApp::on(&url).await);
    for app in [&a, &b] {
        let cache = app.service.state().cache.clone();
        common::eventually(Duration::from_secs(5), "a coherent cache", || {
            let cache = cache.clone();
            async move { cache.coherent().then_some(()) }
        })
        .await;
    }
    Some((a, b))
}

/// Polls `app` until the lookup of `uuid` answers `expected` (status and, when given, `addr`),
/// and checks that this took less than a second (the promise across replicas).
async fn served_within_a_second(
    app: &TestApp,
    uuid: &str,
    expected: StatusCode,
    addr: Option<&str>,
) {
    let started = Instant::now();
    loop {
        let (status, body) = app.lookup(uuid).await;
        if status == expected && addr.is_none_or(|addr| body["addr"] == addr) {
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(1),
                "{expected} {addr:?} served only after {took:?}"
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still {status} {body} after 3 s; waited for {expected} {addr:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_is_served_by_the_other_within_a_second() {
    let Some((a, b)) = replicas("change").await else {
        return;
    };
    let ann = Identity::from_secret([31; 32]);
    let registered = a.register_keyed(&ann, 4000, Some("ann")).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    let uuid = registered.body["uuid"].as_str().unwrap().to_owned();
    // B finds it (from the database), and now holds it in its cache.
    assert_eq!(b.lookup(&uuid).await.0, StatusCode::OK);
    let (status, found) = b.lookup(&uuid).await;
    assert_eq!(
        (status, &found["addr"]),
        (StatusCode::OK, &json!("203.0.113.7:4000"))
    );
    assert!(
        b.service
            .state()
            .cache
            .lookup(uuid.parse().unwrap())
            .is_some(),
        "cached by B"
    );

    // A moves the record: B serves the new address within a second, not its cached copy.
    let again = keyed_registration(&ann, 4001, Some("ann"), unix_now());
    let (status, body) = a.register(again.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    served_within_a_second(&b, &uuid, StatusCode::OK, Some("203.0.113.7:4001")).await;
    // …and by name.
    let (status, body) = b.get("/peers?name=ann").await;
    assert_eq!(
        (status, &body["addr"]),
        (StatusCode::OK, &json!("203.0.113.7:4001"))
    );

    // A deletes it: B answers 404 within a second.
    assert_eq!(b.lookup(&uuid).await.0, StatusCode::OK);
    let path = format!("/peers/{uuid}");
    let auth = signature_header(&ann, "DELETE", &path, b"", unix_now());
    let answer = a
        .send(owner_request("DELETE", &path, "", Some(&auth)))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    served_within_a_second(&b, &uuid, StatusCode::NOT_FOUND, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_may_use_either_replica() {
    let Some((a, b)) = replicas("owners").await else {
        return;
    };
    let (uuid, token) = a.register_keyless(5000).await;
    let bearer = format!("Bearer {token}");
    // Registered on A; refreshed, moved, put in a room and deleted through B.
    let heartbeat = format!("/peers/{uuid}/heartbeat");
    let answer = b
        .send(owner_request("POST", &heartbeat, "", Some(&bearer)))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let path = format!("/peers/{uuid}");
    let moved = json!({"udp_port": 5001}).to_string();
    let answer = b
        .send(owner_request("PUT", &path, &moved, Some(&bearer)))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    served_within_a_second(&a, &uuid, StatusCode::OK, Some("203.0.113.7:5001")).await;
    let join = format!("/rooms/ops/members/{uuid}");
    let answer = b.send(owner_request("PUT", &join, "", Some(&bearer))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let (status, room) = a.get("/rooms/ops").await;
    assert_eq!(
        (status, room["members"][0]["uuid"].as_str()),
        (StatusCode::OK, Some(uuid.as_str()))
    );
    // Another token is refused on either replica.
    let wrong = format!("Bearer {}", "0".repeat(64));
    for app in [&a, &b] {
        let answer = app
            .send(owner_request("DELETE", &path, "", Some(&wrong)))
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    }
    let answer = b
        .send(owner_request("DELETE", &path, "", Some(&bearer)))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let (status, room) = a.get("/rooms/ops").await;
    assert_eq!(
        (status, room["members"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    served_within_a_second(&a, &uuid, StatusCode::NOT_FOUND, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_raced_for_on_both_replicas_has_one_holder() {
    let Some((a, b)) = replicas("names").await else {
        return;
    };
    let (a, b) = (Arc::new(a), Arc::new(b));
    // Sixteen keys claim look-alikes of one name at once, half through each replica.
    let spellings = ["mallory", "MALLORY", "ma\u{0031}lory", "m\u{0430}llory"];
    let tasks: Vec<_> = (0..16u16)
        .map(|n| {
            let app = if n % 2 == 0 { a.clone() } else { b.clone() };
            let name = spellings[usize::from(n) % spellings.len()];
            tokio::spawn(async move {
                let answer = app
                    .register_keyed(&named_id(6000 + n), 6000 + n, Some(name))
                    .await;
                answer.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, lost), (1, 15), "{statuses:?}");
    // Both replicas find the one holder by any spelling.
    let (_, on_a) = a.get("/peers?name=MALLORY").await;
    let (_, on_b) = b.get("/peers?name=m%D0%B0llory").await;
    assert_eq!(on_a["uuid"], on_b["uuid"]);
    assert!(on_a["uuid"].is_string(), "{on_a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_spent_on_one_replica_is_refused_by_the_other() {
    let Some((a, b)) = replicas("replay").await else {
        return;
    };
    let eve = Identity::from_secret([32; 32]);
    // A registration replayed on the other replica (e.g. from another address) is refused.
    let signed = keyed_registration(&eve, 7000, None, unix_now()).to_string();
    let (status, record) = a.register(signed.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    let (status, body) = b.register(signed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // So is a signed heartbeat: accepted once, whichever replica sees it first.
    let path = format!("/peers/{}/heartbeat", record["uuid"].as_str().unwrap());
    let auth = signature_header(&eve, "POST", &path, b"", unix_now());
    let answer = b.send(owner_request("POST", &path, "", Some(&auth))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = a.send(owner_request("POST", &path, "", Some(&auth))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    // The same signature sent to both at the same instant is accepted exactly once.
    let auth = signature_header(&eve, "POST", &path, b"", unix_now() + 1);
    let (on_a, on_b) = tokio::join!(
        a.send(owner_request("POST", &path, "", Some(&auth))),
        b.send(owner_request("POST", &path, "", Some(&auth))),
    );
    let mut statuses = [on_a.status, on_b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_room_writes_on_both_replicas_leave_a_consistent_room() {
    let Some((a, b)) = replicas("rooms").await else {
        return;
    };
    // Each round: one replica joins a record to a room while the other deletes the record, at
    // the same instant. Whichever commits first, the room never lists a deleted record and
    // keeps no membership of it, and the join is either done (then deleted with the record)
    // or refused with 404.
    let mut outcomes = std::collections::BTreeMap::<(u16, u16), u32>::new();
    for round in 0..12u16 {
        let (uuid, token) = a.register_keyless(8000 + round).await;
        let bearer = format!("Bearer {token}");
        let join = format!("/rooms/race/members/{uuid}");
        let record = format!("/peers/{uuid}");
        let (joiner, deleter) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (joined, deleted) = tokio::join!(
            joiner.send(owner_request("PUT", &join, "", Some(&bearer))),
            deleter.send(owner_request("DELETE", &record, "", Some(&bearer))),
        );
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
        assert!(
            [StatusCode::OK, StatusCode::NOT_FOUND].contains(&joined.status),
            "{} {}",
            joined.status,
            joined.body
        );
        *outcomes
            .entry((joined.status.as_u16(), deleted.status.as_u16()))
            .or_default() += 1;
        for app in [&a, &b] {
            let (status, room) = app.get("/rooms/race").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(room["members"], json!([]), "round {round}");
        }
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM room_members")
        .fetch_one(&a.service.state().pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "memberships of deleted records: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_listening_connection_breaks_serves_no_stale_record() {
    let Some((a, b)) = replicas("broken").await else {
        return;
    };
    let (uuid, token) = a.register_keyless(9000).await;
    assert_eq!(b.lookup(&uuid).await.0, StatusCode::OK);
    assert_eq!(b.lookup(&uuid).await.0, StatusCode::OK);
    assert!(
        b.service
            .state()
            .cache
            .lookup(uuid.parse().unwrap())
            .is_some(),
        "cached by B"
    );
    // The server drops every listening connection of this database, and the record moves at
    // once: what was announced meanwhile may never reach B.
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_one(&a.service.state().pool)
    .await
    .unwrap();
    assert_eq!(dropped, 2, "both replicas listen");
    let path = format!("/peers/{uuid}");
    let bearer = format!("Bearer {token}");
    let moved = json!({"udp_port": 9001}).to_string();
    let answer = a
        .send(owner_request("PUT", &path, &moved, Some(&bearer)))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    served_within_a_second(&b, &uuid, StatusCode::OK, Some("203.0.113.7:9001")).await;
    // B listens again and its cache answers again.
    let cache = b.service.state().cache.clone();
    common::eventually(Duration::from_secs(5), "B's cache coherent again", || {
        let cache = cache.clone();
        async move { cache.coherent().then_some(()) }
    })
    .await;
    let (hits, _) = cache.counts();
    assert_eq!(b.lookup(&uuid).await.0, StatusCode::OK);
    assert_eq!(b.lookup(&uuid).await.1["addr"], "203.0.113.7:9001");
    assert!(cache.counts().0 > hits, "answered from the cache again");
}
