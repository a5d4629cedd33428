//! Requests that never reach the router — a malformed request line, a huge target, huge or
//! too many headers — are answered like every other error: the right status, a JSON
//! `{"error": …}` body with `Content-Type: application/json`, and the connection closed.
//! Sent over a raw `TcpStream` to the real `run()`, since HTTP clients refuse to send them.

mod common;

use common::raw::{exchange, parse_answer};
use common::running::Running;

fn answer(bytes: &[u8]) -> common::raw::RawAnswer {
    parse_answer(bytes)
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(bytes)))
}

fn headers(count: usize, value_len: usize) -> String {
    let value = "v".repeat(value_len);
    (0..count)
        .map(|i| format!("X-Filler-{i}: {value}\r\n"))
        .collect()
}

#[tokio::test]
async fn errors_before_routing_are_json() {
    let index = Running::start(|_| {}).await;

    // A request line hyper cannot parse.
    let bytes = exchange(index.addr, b"NOT A REQUEST\r\n\r\n").await;
    let error = answer(&bytes).assert_json_error(400);
    assert!(error.contains("HTTP/1.1"), "{error}");
    assert_eq!(answer(&bytes).header("connection"), Some("close"));

    // Bytes no header may contain.
    let bytes = exchange(
        index.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad\x01Header: 1\r\n\r\n",
    )
    .await;
    answer(&bytes).assert_json_error(400);

    // A 20 KB target.
    let request = format!(
        "GET /peers/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20_000)
    );
    let bytes = exchange(index.addr, request.as_bytes()).await;
    let error = answer(&bytes).assert_json_error(414);
    assert!(error.contains("8192"), "{error}");

    // 100 KB of headers: more than fits hyper's buffer.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        headers(50, 2000)
    );
    let bytes = exchange(index.addr, request.as_bytes()).await;
    let error = answer(&bytes).assert_json_error(431);
    assert!(error.contains("headers"), "{error}");

    // 20 KB of headers: within hyper's buffer, over our limit.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        headers(10, 2000)
    );
    let bytes = exchange(index.addr, request.as_bytes()).await;
    let error = answer(&bytes).assert_json_error(431);
    assert!(error.contains("16384"), "{error}");

    // Too many headers, each small.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        headers(150, 1)
    );
    let bytes = exchange(index.addr, request.as_bytes()).await;
    answer(&bytes).assert_json_error(431);

    // A malformed request after a good one on the same connection: the good answer is
    // untouched, the bad one is JSON too.
    let bytes = exchange(
        index.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/9\x01\r\n\r\n",
    )
    .await;
    let first = answer(&bytes);
    assert_eq!(first.status, 200, "{first:?}");
    let first_len = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + first.body.len();
    answer(&bytes[first_len..]).assert_json_error(400);

    // Counted, by status.
    let bytes = exchange(
        index.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let metrics = String::from_utf8(answer(&bytes).body).unwrap();
    assert!(
        metrics.contains(r#"index_http_malformed_total{status="400"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"index_http_malformed_total{status="431"} 2"#),
        "{metrics}"
    );

    index.stop().await;
}
