//! Behind a load balancer (`--trusted-proxy`), records get the client's address from the
//! proxy's `X-Forwarded-For`, and quotas count the client; from anyone else the header is
//! ignored.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{CLIENT, test_app_with};
use serde_json::json;

fn register_via(forwarded_for: &str, port: u16) -> Request<Body> {
    Request::post("/register")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", forwarded_for)
        .body(Body::from(json!({"udp_port": port}).to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    // Every test request comes from CLIENT (203.0.113.7): here, the load balancer.
    let app = test_app_with(|config| {
        config.trusted_proxies = vec!["203.0.113.0/24".parse().unwrap()];
        config.max_records_per_ip = 1;
    })
    .await;
    let (status, record) = app
        .call(register_via("192.0.2.66, 198.51.100.20", 4000))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    assert_eq!(
        record["addr"], "198.51.100.20:4000",
        "the client, not the proxy"
    );
    // Quotas count per client: another client behind the same proxy is not refused…
    let (status, record) = app.call(register_via("198.51.100.21", 4001)).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    assert_eq!(record["addr"], "198.51.100.21:4001");
    // …while the first client's second record is.
    let (status, body) = app.call(register_via("198.51.100.20", 4002)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("198.51.100.20"),
        "{body}"
    );
}

#[tokio::test]
async fn the_header_means_nothing_from_anyone_else() {
    let app = test_app_with(|config| {
        config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (status, record) = app.call(register_via("198.51.100.20", 4000)).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    let client_ip = CLIENT.split(':').next().unwrap();
    assert_eq!(record["addr"], format!("{client_ip}:4000"));
    // Nor without any trusted proxy (the default).
    let app = test_app_with(|_| {}).await;
    let (_, record) = app.call(register_via("198.51.100.20", 4000)).await;
    assert_eq!(record["addr"], format!("{client_ip}:4000"));
}
