//! Rate limits key on the TCP peer's IP: a client flooding from 127.0.0.1 gets 429s with
//! `Retry-After`, while a client on 127.0.0.2 is served as usual, against a real listener.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::running::Running;
use reqwest::StatusCode;
use serde_json::Value;

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_flooding_address_is_limited_and_others_are_not() {
    // One request per 10 s after the burst, so the test does not depend on how fast it runs.
    let index = Running::start(|config| {
        config.read_rate_per_sec = 0.1;
        config.read_burst = 5;
        config.write_rate_per_sec = 0.1;
        config.write_burst = 3;
    })
    .await;
    let base = format!("http://{}", index.addr);

    let flooder = client_from("127.0.0.1");
    let neighbour = client_from("127.0.0.2");
    let lookup = format!("{base}/peers/6f1c3b2e-8a4d-4f6b-9c1e-2d3f4a5b6c7d");

    let mut limited = 0;
    for _ in 0..30 {
        let response = flooder.get(&lookup).send().await.unwrap();
        match response.status() {
            StatusCode::NOT_FOUND => {}
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=10).contains(&retry_after), "{retry_after}");
                let body: Value = response.json().await.unwrap();
                assert!(
                    body["error"]
                        .as_str()
                        .unwrap()
                        .contains("too many requests")
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(limited >= 24, "only {limited} of 30 were limited");

    // The neighbour's reads are untouched by the flood.
    for _ in 0..5 {
        let response = neighbour.get(&lookup).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    // Writes have their own budget: the flooder can still register, up to its write burst.
    let register = |client: &reqwest::Client| {
        client
            .post(format!("{base}/register"))
            .json(&serde_json::json!({"udp_port": 4000}))
            .send()
    };
    for _ in 0..3 {
        let response = register(&flooder).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = register(&flooder).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = register(&neighbour).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let record: Value = response.json().await.unwrap();
    assert!(record["addr"].as_str().unwrap().starts_with("127.0.0.2:"));

    // Health checks are never limited.
    let response = flooder.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let metrics = client_from("127.0.0.3")
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "index_rate_limited_total{{budget=\"read\"}} {limited}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("index_rate_limited_total{budget=\"write\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"index_http_requests_total{method="GET",route="/peers/{uuid}",status="429"}"#
        ),
        "{metrics}"
    );

    index.stop().await;
}
