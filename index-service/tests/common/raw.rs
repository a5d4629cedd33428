//! Raw HTTP/1.1 over a `TcpStream`, for tests of what happens before routing (malformed
//! requests, connection limits), where an HTTP client library would get in the way.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer read off the wire.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Header lines, names lowercased: `("content-type", "application/json")`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the answer is `status` with a JSON `{"error": "…"}` body (and a correct
    /// `Content-Length`); returns the error message.
    pub fn assert_json_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(
            self.header("content-length"),
            Some(self.body.len().to_string().as_str()),
            "{self:?}"
        );
        let body: Value = serde_json::from_slice(&self.body).expect("a JSON body");
        let error = body["error"].as_str().expect("an `error` string");
        assert!(!error.is_empty());
        error.to_owned()
    }
}

/// Parses the first answer in `bytes` (its body delimited by `Content-Length`).
pub fn parse_answer(bytes: &[u8]) -> Option<RawAnswer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body = bytes.get(end + 4..end + 4 + length)?.to_vec();
    Some(RawAnswer {
        status,
        headers,
        body,
    })
}

/// Everything the server sends on `stream` until it closes the connection (a reset after
/// some bytes counts as a close) or `timeout` passes.
pub async fn read_to_close(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server neither answered nor closed within {timeout:?}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// Reads exactly one answer (head, then a `Content-Length` body) from a kept-alive
/// connection, within `timeout`.
pub async fn read_answer(stream: &mut TcpStream, timeout: Duration) -> RawAnswer {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(answer) = parse_answer(&received) {
            return answer;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "connection closed before a whole answer: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer within {timeout:?}"),
        }
    }
}

/// Sends `request` on a new connection and reads until the server closes it. Write errors
/// are ignored: a server may answer and close before a huge request is fully sent.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    read_to_close(&mut stream, Duration::from_secs(10)).await
}
