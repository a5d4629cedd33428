//! A hostile index cannot take a daemon's memory or hang it: a real `peer-daemon` process
//! pointed at a tiny HTTP server (in this test, on 127.0.0.1) that answers with
//! `Content-Length: 50000000000` and a stream of bytes, with an endless chunked answer, and
//! with an answer that never ends. The daemon refuses them, says why, keeps its memory within
//! a small bound of where it started, and keeps running.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Daemon, EVENT_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// Most the server streams in one answer, so that a daemon without a cap shows the problem
/// without taking the machine down.
const STREAM_CAP: u64 = 200 * 1024 * 1024;
/// How far the daemon's peak memory may rise over what it used before the hostile answers.
const MEMORY_BOUND_KB: u64 = 50 * 1024;

/// The tiny hostile index.
struct Hostile {
    url: String,
    /// Until armed, every request gets a plain 503 with a JSON error.
    armed: Arc<AtomicBool>,
    /// Bytes of answer bodies written so far.
    written: Arc<AtomicU64>,
}

async fn hostile_index() -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let armed = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let (a, w) = (armed.clone(), written.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, a.load(Ordering::SeqCst), w.clone()));
        }
    });
    Hostile {
        url,
        armed,
        written,
    }
}

/// Reads the request head; returns its first line.
async fn request_line(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    text.lines().next().map(str::to_owned)
}

async fn answer(mut stream: TcpStream, armed: bool, written: Arc<AtomicU64>) {
    let Some(line) = request_line(&mut stream).await else {
        return;
    };
    if !armed {
        let body = br#"{"error":"not yet"}"#;
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body).await;
        return;
    }
    let chunk = vec![b' '; 64 * 1024];
    if line.starts_with("GET /rooms ") {
        // Promises 100 bytes, sends 10, then nothing: an answer that never ends.
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"rooms\":")
            .await;
    } else if line.starts_with("GET /peers/") {
        // Chunked, without end (JSON whitespace, so a reader that takes it all keeps going).
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let mut sent = 0;
        while sent < STREAM_CAP {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            if stream.write_all(&framed).await.is_err() {
                return;
            }
            sent += chunk.len() as u64;
            written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    } else {
        // Registrations and everything else: 50 GB announced, streamed as fast as it goes.
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 50000000000\r\n\r\n")
            .await;
        let mut sent = 0;
        while sent < STREAM_CAP {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            sent += chunk.len() as u64;
            written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }
    // Then hold the connection open without a word until the daemon gives up on it.
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// `VmRSS` and `VmHWM` (peak) of a process, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn message(event: &serde_json::Value) -> String {
    event["message"]
        .as_str()
        .or(event["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The index status `/whoami` reports.
async fn whoami_status(daemon: &mut Daemon) -> String {
    daemon.send_line("/whoami").await;
    let whoami = daemon.expect("whoami", |_| true, EVENT_TIMEOUT).await;
    whoami["index_status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_hostile_index_cannot_exhaust_memory_or_hang_the_daemon() {
    let index = hostile_index().await;
    let mut daemon = Daemon::spawn_unregistered(&index.url, "victim").await;
    // The index answers a plain 503 at first: the daemon is up, has tried to register, and
    // says once that it is offline from the index.
    let first = daemon
        .expect(
            "index",
            |v| v["status"] == "offline" && message(v).contains("503"),
            EVENT_TIMEOUT,
        )
        .await;
    let (baseline, _) = memory_kb(daemon.pid());
    eprintln!("baseline VmRSS {baseline} kB; first trouble: {first}");

    index.armed.store(true, Ordering::SeqCst);
    // The next registration gets 50 GB announced: refused up front. The retries go on quietly;
    // `/whoami` says what the latest one ran into.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        daemon.send_line("/whoami").await;
        let whoami = daemon.expect("whoami", |_| true, EVENT_TIMEOUT).await;
        let error = whoami["index_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !error.contains("503") && !error.is_empty() {
            break error;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never tried again: {whoami}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        refused.contains("50000000000") && refused.contains("65536"),
        "the error should say the answer was too big: {refused}"
    );
    assert_eq!(whoami_status(&mut daemon).await, "offline");

    // A lookup answered by an endless chunked stream: cut off at the cap.
    let stranger = Uuid::from_u128(0x5eed);
    daemon.msg(stranger, "hello?").await;
    let failed = daemon
        .expect(
            "failed",
            |v| v["to"] == stranger.to_string().as_str(),
            Duration::from_secs(30),
        )
        .await;
    let reason = message(&failed);
    assert!(
        reason.contains("went on past 65536 bytes"),
        "the lookup should fail on the size cap: {reason}"
    );

    // An answer that never ends: the request times out and the user hears why.
    daemon.send_line("/rooms").await;
    let timed_out = daemon
        .expect(
            "error",
            |v| message(v).contains("listing rooms") || message(v).contains("room list"),
            Duration::from_secs(30),
        )
        .await;
    let timed_out = message(&timed_out);
    assert!(
        timed_out.contains("within 5 s"),
        "the error should say the index did not answer in time: {timed_out}"
    );

    // Still running, still answering, and its memory never went far.
    daemon.send_line("/help").await;
    daemon.expect("help", |_| true, EVENT_TIMEOUT).await;
    assert!(daemon.try_wait().is_none(), "the daemon must keep running");
    let (rss, peak) = memory_kb(daemon.pid());
    let streamed = index.written.load(Ordering::Relaxed);
    eprintln!(
        "VmRSS {rss} kB, VmHWM {peak} kB (baseline {baseline} kB); the server wrote {} MB",
        streamed / (1024 * 1024)
    );
    assert!(
        peak < baseline + MEMORY_BOUND_KB,
        "peak memory {peak} kB rose more than {MEMORY_BOUND_KB} kB over {baseline} kB while the index streamed {streamed} bytes"
    );
}
