//! NAT traversal as a user meets it, with real daemons, the real index and a real coturn on
//! loopback (the NAT lab in `tests/natlab/` has the real NATs): the first message goes through
//! the relay and the conversation moves to a direct path; a TURN server that is down or refuses
//! the credentials is reported once and the chat goes on without a relay; `--ice-server none`
//! publishes no candidates. `/stats` shows the counters of each.

mod common;
#[path = "turn/harness.rs"]
#[allow(dead_code)] // The gatherer tests use the rest of it.
mod harness;

use std::time::Duration;

use common::{Daemon, EVENT_TIMEOUT, Index};
use harness::{Coturn, free_port};
use serde_json::Value;

/// `--ice-server` for a TURN server on loopback with these credentials.
fn turn_flag(port: u16, username: &str, password: &str) -> String {
    format!("turn:{username}:{password}@127.0.0.1:{port}")
}

/// The daemon's counters, from `/stats`.
async fn stats(daemon: &mut Daemon) -> Value {
    daemon.send_line("/stats").await;
    let event = daemon.expect("stats", |_| true, EVENT_TIMEOUT).await;
    event["counters"].clone()
}

/// The index's record of `uuid`, if it has one.
async fn record(index: &Index, uuid: uuid::Uuid) -> Option<Value> {
    let (status, body) = index.get_peer(&uuid.to_string()).await;
    (status == 200).then_some(body)
}

/// Waits up to `limit` for the record of `uuid` to satisfy `ok`.
async fn wait_record(
    index: &Index,
    uuid: uuid::Uuid,
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let found = record(index, uuid).await;
        if found.as_ref().is_some_and(&ok) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the record of {uuid} never became what the test waits for: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn counter(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_message_goes_through_the_relay_then_the_path_turns_direct() {
    let Some(coturn) = Coturn::start(&[]) else {
        return;
    };
    let index = Index::start().await;
    let port = coturn.addr.port();
    let (a, b) = (coturn.credentials("alice"), coturn.credentials("bob"));
    let mut alice = Daemon::spawn_with_args(
        &index.url(),
        "alice",
        &["--ice-server", &turn_flag(port, &a.username, &a.password)],
    )
    .await;
    let mut bob = Daemon::spawn_with_args(
        &index.url(),
        "bob",
        &["--ice-server", &turn_flag(port, &b.username, &b.password)],
    )
    .await;
    // Both allocated: their registrations list a relay candidate.
    for uuid in [alice.uuid, bob.uuid] {
        wait_record(&index, uuid, Duration::from_secs(10), |r| {
            r["candidates"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["kind"] == "relay"))
        })
        .await;
    }

    alice.msg(bob.uuid, "first").await;
    let first = alice
        .expect("path", |e| e["peer"] == bob.uuid.to_string(), EVENT_TIMEOUT)
        .await;
    assert_eq!(first["via"], "relay", "relay first: {first}");
    let delivered = alice.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    assert!(delivered["via"].is_string(), "{delivered}");
    bob.expect("message", |e| e["text"] == "first", EVENT_TIMEOUT)
        .await;
    // Both find the direct path on the machine and move to it.
    alice
        .expect(
            "path",
            |e| e["peer"] == bob.uuid.to_string() && e["via"] == "direct",
            EVENT_TIMEOUT,
        )
        .await;
    alice.msg(bob.uuid, "second").await;
    let delivered = alice.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(delivered["via"], "direct", "{delivered}");

    let counters = stats(&mut alice).await;
    assert!(counter(&counters, "nat.allocations") >= 1, "{counters}");
    assert!(counter(&counters, "nat.relayed_out") >= 1, "{counters}");
    assert!(counter(&counters, "path.changes") >= 2, "{counters}");
    // The direct path was proven by a probe one way or the other.
    let probes = counter(&counters, "path.probe_replies_in") + counter(&counters, "path.probes_in");
    assert!(probes >= 1, "{counters}");
    alice.send_line("/peers").await;
    let peers = alice.expect("peers", |_| true, EVENT_TIMEOUT).await;
    let bob_line = peers["peers"]
        .as_array()
        .and_then(|p| {
            p.iter()
                .find(|p| p["uuid"] == bob.uuid.to_string())
                .cloned()
        })
        .unwrap_or_else(|| panic!("bob not in /peers: {peers}"));
    assert_eq!(bob_line["via"], "direct", "{bob_line}");
    for d in [&mut alice, &mut bob] {
        let failed = d.seen_failed();
        assert!(failed.is_empty(), "{}: {failed:?}", d.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_server_that_is_down_is_reported_once_and_the_chat_goes_on() {
    let index = Index::start().await;
    // Nothing listens there.
    let dead = turn_flag(free_port(), "1:x", "nothing");
    let mut alice = Daemon::spawn_with_args(&index.url(), "alice", &["--ice-server", &dead]).await;
    let mut bob = Daemon::spawn_with_args(&index.url(), "bob", &["--ice-server", &dead]).await;
    // Six tries, 250 ms doubling: the gatherer gives up on the server after ~16 s.
    let trouble = alice
        .expect(
            "error",
            |e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("NAT traversal"))
            },
            Duration::from_secs(30),
        )
        .await;
    eprintln!("alice said: {trouble}");
    alice.msg(bob.uuid, "without a relay").await;
    let delivered = alice.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(delivered["via"], "direct", "{delivered}");
    bob.expect("message", |e| e["text"] == "without a relay", EVENT_TIMEOUT)
        .await;
    let counters = stats(&mut alice).await;
    assert!(counter(&counters, "nat.timeouts") >= 1, "{counters}");
    assert_eq!(counter(&counters, "nat.allocations"), 0, "{counters}");
    // Retrying with backoff: a bounded number of requests, not a spin.
    assert!(counter(&counters, "nat.requests") < 40, "{counters}");
    let errors = alice
        .backlog_events()
        .filter(|e| e["event"] == "error")
        .count();
    assert_eq!(errors, 0, "the same trouble was reported again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_reported_and_the_chat_goes_on() {
    let Some(coturn) = Coturn::start(&[]) else {
        return;
    };
    let index = Index::start().await;
    let forged = turn_flag(coturn.addr.port(), "9999999999:mallory", "not-the-secret");
    let mut alice =
        Daemon::spawn_with_args(&index.url(), "alice", &["--ice-server", &forged]).await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    // coturn answers at once, so the refusal may come before the registration (whose waiting
    // clears earlier errors): the counters say it, and the output still shows it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while counter(&stats(&mut alice).await, "nat.errors") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "coturn never refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = alice.diagnostics();
    assert!(
        output.contains("NAT traversal: TURN server") && output.contains("refused the credentials"),
        "the refusal was not reported: {output}"
    );
    alice.msg(bob.uuid, "still here").await;
    alice.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    bob.expect("message", |e| e["text"] == "still here", EVENT_TIMEOUT)
        .await;
    let counters = stats(&mut alice).await;
    assert_eq!(counter(&counters, "nat.allocations"), 0, "{counters}");
    assert!(counter(&counters, "nat.errors") >= 1, "{counters}");
}

#[tokio::test]
async fn without_nat_traversal_no_candidates_are_published() {
    let index = Index::start().await;
    let alice = Daemon::spawn_with_args(&index.url(), "alice", &["--ice-server", "none"]).await;
    let with = Daemon::spawn(&index.url(), "bob").await;
    let found = record(&index, alice.uuid)
        .await
        .expect("alice is registered");
    assert!(found.get("candidates").is_none(), "{found}");
    // A daemon with the defaults lists at least its host address (the tests bind it to
    // loopback, which is its host candidate then).
    wait_record(&index, with.uuid, Duration::from_secs(5), |r| {
        r["candidates"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await;
}
