//! `GET /metrics` exposes what the index did, in Prometheus text format.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::test_app;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = test_app().await;
    let (uuid, _) = app.register_keyless(4000).await;
    assert_eq!(app.get(&format!("/peers/{uuid}")).await.0, StatusCode::OK);
    assert_eq!(app.get(&format!("/peers/{uuid}")).await.0, StatusCode::OK);
    let unknown = "/peers/6f1c3b2e-8a4d-4f6b-9c1e-2d3f4a5b6c7d";
    assert_eq!(app.get(unknown).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/peers/nope").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/elsewhere/1").await.0, StatusCode::NOT_FOUND);

    let response = app
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for expected in [
        r#"index_http_requests_total{method="POST",route="/register",status="201"} 1"#,
        r#"index_http_requests_total{method="GET",route="/peers/{uuid}",status="200"} 2"#,
        r#"index_http_requests_total{method="GET",route="/peers/{uuid}",status="404"} 1"#,
        r#"index_http_requests_total{method="GET",route="/peers/{uuid}",status="400"} 1"#,
        r#"index_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"index_http_request_duration_seconds_bucket{method="GET",route="/peers/{uuid}",le="+Inf"} 4"#,
        r#"index_http_request_duration_seconds_count{method="POST",route="/register"} 1"#,
        "# TYPE index_http_request_duration_seconds histogram",
        "index_peers_live 1",
        "index_peers_expired_total 0",
        r#"index_rate_limited_total{budget="read"} 0"#,
        r#"index_rate_limited_total{budget="write"} 0"#,
        // The registration, plus the purges the background task ran meanwhile.
        "index_db_commit_group_size_count ",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
    assert!(!text.contains("6f1c3b2e"), "raw paths never become labels");
}
