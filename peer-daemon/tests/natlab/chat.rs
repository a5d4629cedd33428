//! Conversations between two lab daemons and what they must show: every message exactly
//! once and in order, every send acknowledged, the first one fast; and the path checks
//! (daemon `path` events, `delivered.via`), which stay off until the daemon reports paths.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::peer::LabDaemon;

/// Whether the daemon under test emits `path` events and `delivered.via` (issue 11). While
/// `false`, [`path_checks`] is off unless `NATLAB_PATH_EVENTS=1` is set; router counters are
/// checked either way.
pub const DAEMON_REPORTS_PATHS: bool = true;

/// How long one message event may take in a bulk exchange (a blackout delays some by seconds).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The first message must be acknowledged within this long of its `/msg` ("relay first").
pub const FIRST_DELIVERY: Duration = Duration::from_secs(1);

/// Whether path-event assertions are on: [`DAEMON_REPORTS_PATHS`] or `NATLAB_PATH_EVENTS=1`.
pub fn path_checks() -> bool {
    DAEMON_REPORTS_PATHS || std::env::var("NATLAB_PATH_EVENTS").is_ok_and(|v| v == "1")
}

/// What one [`exchange`] saw.
#[derive(Debug, Default)]
pub struct Exchange {
    /// How many `delivered` events carried each `via` (`"none"` when absent), both ways.
    pub via: BTreeMap<String, usize>,
    /// Bytes of message text sent, both ways (what the path carrying it carries at least).
    pub payload_bytes: u64,
    /// Wall time of the whole exchange.
    pub elapsed: Duration,
}

/// Sends one message `a` → `b` and returns the time from writing the `/msg` to the
/// `delivered` event; checks that `b` got it. Fails if it takes longer than
/// [`FIRST_DELIVERY`] ("relay first": a message never waits for hole punching).
pub async fn first_message(a: &mut LabDaemon, b: &mut LabDaemon) -> Duration {
    first_message_within(a, b, FIRST_DELIVERY).await
}

/// Like [`first_message`] with another limit (e.g. after a path died unnoticed). Gives up
/// waiting after ten times the limit (at least 10 s).
pub async fn first_message_within(
    a: &mut LabDaemon,
    b: &mut LabDaemon,
    limit: Duration,
) -> Duration {
    let wait = (limit * 10).max(Duration::from_secs(10));
    let text = format!("first message from {}", a.name);
    let start = Instant::now();
    a.send_line(&format!("/msg {} {text}", b.uuid)).await;
    let to = b.uuid.to_string();
    let outcome = a.receipt(b.uuid, wait).await;
    let took = start.elapsed();
    let from = a.uuid.to_string();
    b.expect(
        "message",
        |v| v["from"] == from.as_str() && v["text"] == text.as_str(),
        wait,
    )
    .await;
    a.expect("sent", |v| v["to"] == to.as_str(), wait).await;
    eprintln!(
        "natlab: first message {} → {} delivered in {took:?} ({outcome})",
        a.name, b.name
    );
    assert!(
        took <= limit,
        "the first message {} → {} took {took:?} to be delivered (at most {limit:?}): {outcome}",
        a.name,
        b.name
    );
    took
}

/// Sends `n` numbered messages each way between `a` and `b` (all at once, or one pair every
/// `pace`), then checks both directions: every message received exactly once and in order,
/// every one acknowledged once (`sent` ids matched by `delivered`), nothing `failed`, and
/// nothing after the last but a sentinel.
pub async fn exchange(
    a: &mut LabDaemon,
    b: &mut LabDaemon,
    tag: &str,
    n: usize,
    pace: Option<Duration>,
) -> Exchange {
    let start = Instant::now();
    let script = |from: &LabDaemon, to: &LabDaemon| -> Vec<String> {
        (0..n)
            .map(|i| format!("/msg {} {}", to.uuid, text(tag, &from.name, i)))
            .collect()
    };
    let (to_b, to_a) = (script(a, b), script(b, a));
    match pace {
        None => {
            a.write_raw(format!("{}\n", to_b.join("\n")).as_bytes())
                .await;
            b.write_raw(format!("{}\n", to_a.join("\n")).as_bytes())
                .await;
        }
        Some(pace) => {
            for (line_a, line_b) in to_b.iter().zip(&to_a) {
                a.send_line(line_a).await;
                b.send_line(line_b).await;
                tokio::time::sleep(pace).await;
            }
        }
    }
    let mut result = Exchange {
        payload_bytes: (0..n)
            .map(|i| (text(tag, &a.name, i).len() + text(tag, &b.name, i).len()) as u64)
            .sum(),
        ..Exchange::default()
    };
    receive_in_order(b, a, tag, n).await;
    receive_in_order(a, b, tag, n).await;
    acknowledged(a, b, n, &mut result).await;
    acknowledged(b, a, n, &mut result).await;
    // Nothing more (no duplicate) arrives before a sentinel sent after everything.
    sentinel(a, b, tag, n).await;
    sentinel(b, a, tag, n).await;
    for d in [&mut *a, &mut *b] {
        let failed = d.seen_of("failed");
        assert!(failed.is_empty(), "{}: failed sends: {failed:?}", d.name);
        let extra = d.seen_of("delivered").len();
        assert_eq!(extra, 0, "{}: more receipts than messages", d.name);
    }
    result.elapsed = start.elapsed();
    eprintln!(
        "natlab: {tag}: {n} messages each way in {:?}, delivered via {:?}",
        result.elapsed, result.via
    );
    result
}

/// Message `i` of an exchange from `name`: numbered, and padded to about 100 bytes so that
/// the message text outweighs the protocol's own packets in the routers' byte counters.
fn text(tag: &str, name: &str, i: usize) -> String {
    format!("{tag}-{name}-{i:04} {}", "x".repeat(80))
}

/// `x` sends a sentinel after everything: the next message `y` gets from `x` must be it (no
/// duplicate of an earlier one came late), and it is acknowledged.
async fn sentinel(x: &mut LabDaemon, y: &mut LabDaemon, tag: &str, n: usize) {
    let end = format!("{tag}-end");
    x.send_line(&format!("/msg {} {end}", y.uuid)).await;
    let from = x.uuid.to_string();
    let next = y
        .expect("message", |v| v["from"] == from.as_str(), MESSAGE_TIMEOUT)
        .await;
    assert_eq!(
        next["text"],
        end.as_str(),
        "{} got a message from {} after all {n} that is not the sentinel: {next}",
        y.name,
        x.name
    );
    let to = y.uuid.to_string();
    x.expect("sent", |v| v["to"] == to.as_str(), MESSAGE_TIMEOUT)
        .await;
    x.receipt(y.uuid, MESSAGE_TIMEOUT).await;
}

/// `to` receives the `n` messages of `from` with the exchange's texts, in order.
async fn receive_in_order(to: &mut LabDaemon, from: &LabDaemon, tag: &str, n: usize) {
    let sender = from.uuid.to_string();
    for i in 0..n {
        let want = text(tag, &from.name, i);
        let got = to
            .expect("message", |v| v["from"] == sender.as_str(), MESSAGE_TIMEOUT)
            .await;
        assert_eq!(
            got["text"],
            want.as_str(),
            "{} received messages from {} out of order, twice or altered at #{i}: {got}{}",
            to.name,
            from.name,
            to.diagnostics()
        );
    }
}

/// `from` reports `n` `sent` to `to` and a `delivered` for each of their ids, once.
async fn acknowledged(from: &mut LabDaemon, to: &LabDaemon, n: usize, result: &mut Exchange) {
    let receiver = to.uuid.to_string();
    let mut ids = HashSet::new();
    for _ in 0..n {
        let sent = from
            .expect("sent", |v| v["to"] == receiver.as_str(), MESSAGE_TIMEOUT)
            .await;
        ids.insert(sent["id"].as_u64().expect("sent id"));
    }
    assert_eq!(ids.len(), n, "{}: sent ids repeat", from.name);
    for i in 0..n {
        let delivered = from.receipt(to.uuid, MESSAGE_TIMEOUT).await;
        let id = delivered["id"].as_u64().expect("delivered id");
        assert!(
            ids.remove(&id),
            "{}: receipt #{i} for id {id}, which was not sent or was acknowledged before",
            from.name
        );
        let via = delivered["via"].as_str().unwrap_or("none").to_owned();
        *result.via.entry(via).or_default() += 1;
    }
}

/// With [`path_checks`] on, waits until `d`'s path to `peer` is `via` and checks the
/// event's `addr` is an `ip:port`; returns the event. Off: returns `None` at once.
pub async fn expect_path(d: &mut LabDaemon, peer: uuid::Uuid, via: &str) -> Option<Value> {
    if !path_checks() {
        return None;
    }
    let path = d.wait_path(peer, via, Duration::from_secs(15)).await;
    let addr = path["addr"].as_str().unwrap_or_default();
    assert!(
        addr.parse::<std::net::SocketAddr>().is_ok(),
        "{}: path event without an ip:port addr: {path}",
        d.name
    );
    eprintln!("natlab: {} → path {path}", d.name);
    Some(path)
}

/// With [`path_checks`] on, checks that at least 90 % of the exchange's receipts say `via`.
pub fn assert_delivered_via(exchange: &Exchange, via: &str) {
    if !path_checks() {
        return;
    }
    let total: usize = exchange.via.values().sum();
    let matching = exchange.via.get(via).copied().unwrap_or(0);
    assert!(
        matching * 10 >= total * 9,
        "receipts should mostly say via {via}: {:?}",
        exchange.via
    );
}
