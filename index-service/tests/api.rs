//! The HTTP API through `app(state).oneshot(request)` on a real, migrated SQLite file:
//! the contract's happy paths and every kind of client mistake.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{assert_client_error, test_app};
use index_service::db::quota::Origin;
use index_service::{Config, Service};
use proto::identity::Identity;
use serde_json::json;

#[tokio::test]
async fn register_then_lookup_in_every_uuid_form() {
    let app = test_app().await;
    let answer = app
        .register_keyed(&Identity::from_secret([1; 32]), 50001, Some("alice"))
        .await;
    let (status, record) = (answer.status, answer.body);
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        record["addr"], "203.0.113.7:50001",
        "observed IP + given port"
    );
    assert_eq!(record["name"], "alice");
    let uuid = record["uuid"].as_str().unwrap().to_owned();
    assert_eq!(uuid, uuid.to_lowercase());
    assert_eq!(uuid.len(), 36);

    let simple = uuid.replace('-', "");
    for form in [
        uuid.clone(),
        uuid.to_uppercase(),
        simple.clone(),
        simple.to_uppercase(),
    ] {
        let (status, found) = app.get(&format!("/peers/{form}")).await;
        assert_eq!(status, StatusCode::OK, "{form}");
        for field in ["uuid", "addr", "name", "registered_at", "last_seen"] {
            assert_eq!(found[field], record[field], "{form}: {field}");
        }
        assert!(
            found.get("token").is_none(),
            "the token is never shown again"
        );
    }

    let (_, other) = app.register(r#"{"udp_port": 50002}"#).await;
    assert_ne!(
        other["uuid"], record["uuid"],
        "each registration gets its own UUID"
    );
    assert!(other.get("name").is_none());
}

#[tokio::test]
async fn unknown_and_malformed_uuids() {
    let app = test_app().await;
    let (status, body) = app.get("/peers/6f1c3b2e-8a4d-4f6b-9c1e-2d3f4a5b6c7d").await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND, "no peer");
    for bad in [
        "nope",
        "6f1c3b2e-8a4d-4f6b-9c1e",
        "6f1c3b2e8a4d4f6b9c1e2d3f4a5b6c7g",
        "%F0%9F%98%80",
    ] {
        let (status, body) = app.get(&format!("/peers/{bad}")).await;
        assert_client_error(status, &body, StatusCode::BAD_REQUEST, "not a UUID");
    }
}

#[tokio::test]
async fn bad_registrations_are_4xx_json_and_store_nothing() {
    let app = test_app().await;
    let cases: Vec<(Body, StatusCode, &str)> = vec![
        (
            r#"{"udp_port": 0}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "udp_port",
        ),
        (
            r#"{"udp_port": 65536}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "udp_port",
        ),
        (
            r#"{"udp_port": -1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "udp_port",
        ),
        (
            r#"{"udp_port": "80"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "udp_port",
        ),
        (
            r#"{"udp_port": 1.5}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "udp_port",
        ),
        (r#"{}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, "udp_port"),
        (
            r#"[1]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "JSON object",
        ),
        (
            r#"  [9, "x"]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "JSON object",
        ),
        (
            r#""text""#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema",
        ),
        (
            r#"{"udp_port": 9, "name": 7}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            r#"{"udp_port": 9, "name": ""}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            format!(r#"{{"udp_port": 9, "name": "{}"}}"#, "x".repeat(65)).into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            r#"{"udp_port": 9, "name": "a\u0007b"}"#.into(),
            StatusCode::BAD_REQUEST,
            "control",
        ),
        (
            r#"{"udp_port": 9"#.into(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        ("".into(), StatusCode::BAD_REQUEST, "not valid JSON"),
        (
            b"{\"udp_port\": 9, \"name\": \"\xff\xfe\"}".to_vec().into(),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            vec![b' '; 100_000].into(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
        ),
    ];
    for (body, expected, mentions) in cases {
        let (status, answer) = app.register(body).await;
        assert_client_error(status, &answer, expected, mentions);
    }

    // Not declared as JSON.
    let request = Request::post("/register")
        .body(Body::from(r#"{"udp_port": 9}"#))
        .unwrap();
    let (status, body) = app.call(request).await;
    assert_client_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Content-Type",
    );
    let request = Request::post("/register")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"udp_port": 9}"#))
        .unwrap();
    let (status, _) = app.call(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Wrong method, unknown route.
    let (status, body) = app
        .call(Request::delete("/register").body(Body::empty()).unwrap())
        .await;
    assert_client_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "DELETE");
    let (status, body) = app.get("/nowhere").await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND, "no such endpoint");

    // Still healthy, and none of the above was stored.
    let (status, record) = app.register(r#"{"udp_port": 1, "extra": "ignored"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .get(&format!("/peers/{}", record["uuid"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn registrations_survive_a_restart_of_the_service() {
    let app = test_app().await;
    let answer = app
        .register_keyed(&Identity::from_secret([2; 32]), 7, Some("bob"))
        .await;
    let (status, record) = (answer.status, answer.body);
    assert_eq!(status, StatusCode::CREATED);
    let common::TestApp { service, dir, .. } = app;
    service.shutdown().await;

    let service = Service::open(Config::for_database(common::database_url(&dir)))
        .await
        .unwrap();
    let uuid: uuid::Uuid = record["uuid"].as_str().unwrap().parse().unwrap();
    let stored = index_service::db::find_peer(&service.state().pool, uuid, &service.state().now())
        .await
        .unwrap()
        .expect("still registered after a restart");
    assert_eq!(stored.record.addr, "203.0.113.7:7");
    assert_eq!(stored.record.name.as_deref(), Some("bob"));
    if common::on_postgres() {
        return; // PostgreSQL's durability is its server's settings
    }
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&service.state().pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&service.state().pool)
        .await
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous = FULL");
}

#[tokio::test]
async fn concurrent_registrations_all_succeed() {
    let app = Arc::new(test_app().await);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.register(json!({"udp_port": 1000 + i}).to_string())
                    .await
            })
        })
        .collect();
    let mut uuids = std::collections::HashSet::new();
    for task in tasks {
        let (status, record) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED);
        uuids.insert(record["uuid"].as_str().unwrap().to_owned());
    }
    assert_eq!(uuids.len(), 64);
}

#[tokio::test]
async fn lookups_see_records_loaded_at_start_up_and_rows_written_by_others() {
    let app = test_app().await;
    let answer = app
        .register_keyed(&Identity::from_secret([3; 32]), 7, Some("carol"))
        .await;
    let (status, record) = (answer.status, answer.body);
    assert_eq!(status, StatusCode::CREATED);
    let common::TestApp {
        router,
        service,
        dir,
    } = app;
    drop(router);
    service.shutdown().await;

    // Restarted, the index serves the record from the copy it loaded.
    let app = common::TestApp::reopen(dir).await;
    let (status, found) = app
        .get(&format!("/peers/{}", record["uuid"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
    for field in ["uuid", "addr", "name", "registered_at", "last_seen"] {
        assert_eq!(found[field], record[field], "{field}");
    }

    // A row another program wrote while the index runs is found too.
    let uuid = "6f1c3b2e-8a4d-4f6b-9c1e-2d3f4a5b6c7d";
    let now = index_service::db::clock::format_ms(index_service::db::Clock::System.now_ms());
    sqlx::query(
        "INSERT INTO peers (uuid, addr, registered_at, last_seen)
         VALUES ($1, '192.0.2.9:9', $2, $2)",
    )
    .bind(uuid)
    .bind(&now)
    .execute(&app.service.state().pool)
    .await
    .unwrap();
    let (status, found) = app.get(&format!("/peers/{uuid}")).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["addr"], "192.0.2.9:9");
}

#[tokio::test]
async fn a_burst_of_registrations_is_committed_as_one_group() {
    let app = test_app().await;
    let writer = app.service.state().writer.clone();
    let uuids: Vec<uuid::Uuid> = (0..70).map(|_| uuid::Uuid::new_v4()).collect();
    // All 70 are queued before the writer runs (one runtime thread), so they form one group:
    // multi-row inserts of 64 and 4 rows, then two single ones.
    let tasks: Vec<_> = uuids
        .iter()
        .enumerate()
        .map(|(i, &uuid)| {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .insert_keyless(
                        uuid,
                        format!("192.0.2.1:{}", i + 1),
                        Origin::of([192, 0, 2, 1].into()),
                        "00".repeat(32),
                    )
                    .await
            })
        })
        .collect();
    for (task, uuid) in tasks.into_iter().zip(&uuids) {
        let record = task.await.unwrap().unwrap();
        assert_eq!(record.uuid, *uuid, "each answer is its own record");
    }
    for (i, uuid) in uuids.iter().enumerate() {
        let (status, found) = app.get(&format!("/peers/{uuid}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(found["addr"], format!("192.0.2.1:{}", i + 1));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM peers")
        .fetch_one(&app.service.state().pool)
        .await
        .unwrap();
    assert_eq!(stored, 70);
    let metrics = app.service.state().metrics.render();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert!(
        value("index_db_commit_group_size_bucket{le=\"64\"}")
            < value("index_db_commit_group_size_count"),
        "one commit carried more than 64 changes:\n{metrics}"
    );
}
