//! The chat client a person keeps using, end to end with real daemons and the real index: one
//! daemon per identity, permanent errors stop the daemon, no ghosts at the index after a quit,
//! rooms reconciled when the index returns, and the history kept across a restart.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Daemon, EVENT_TIMEOUT, Index, daemon_command, http_client};
use serde_json::Value;

/// The UUIDs the index lists in `room`.
async fn room_members(index: &Index, room: &str) -> Vec<String> {
    let response = http_client()
        .get(format!("{}/rooms/{room}", index.url()))
        .send()
        .await
        .expect("asking the index for a room");
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Vec::new();
    }
    let body: Value = response.json().await.expect("a JSON room");
    body["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|m| m["uuid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `check` holds for what `probe` returns, failing after `timeout` with the last
/// value seen.
async fn eventually<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> F,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe().await;
        if check(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {value:?} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_second_daemon_on_one_state_directory_stops_naming_the_first() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let bob = Daemon::spawn(&index.url(), "bob").await;
    let started = Instant::now();
    let output =
        tokio::process::Command::from(daemon_command(&index.url(), "alice", alice.state().path()))
            .arg("--json")
            .stdin(Stdio::null())
            .output();
    let output = tokio::time::timeout(EVENT_TIMEOUT, output)
        .await
        .expect("the second daemon must stop at once, not run")
        .expect("running the second daemon");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", alice.pid())),
        "the message names the running daemon: {stderr}"
    );
    assert!(
        stderr.contains("--name") && stderr.contains("--state-dir"),
        "and says how to run a second identity: {stderr}"
    );
    eprintln!("second daemon refused in {:?}", started.elapsed());
    // The first one never noticed: it still chats, under its identity.
    alice.msg(bob.uuid, "still me").await;
    let delivered = alice.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(delivered["to"], bob.uuid.to_string(), "{delivered}");
    let (status, _) = index.get_peer(&alice.uuid.to_string()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_unreadable_identity_stops_the_daemon_with_advice() {
    let index = Index::start().await;
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("identity.key"), "not a key\n").unwrap();
    let output = tokio::process::Command::from(daemon_command(&index.url(), "alice", state.path()))
        .arg("--json")
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(EVENT_TIMEOUT, output)
        .await
        .expect("the daemon must stop at once")
        .expect("running the daemon");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("identity.key") && stderr.contains("move that file away"),
        "{stderr}"
    );
}

#[tokio::test]
async fn quitting_leaves_no_ghost_at_the_index_and_peers_are_told() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let mut carol = Daemon::spawn(&index.url(), "carol").await;
    for daemon in [&mut alice, &mut bob, &mut carol] {
        daemon.send_line("/join rust").await;
        daemon
            .expect(
                "joined",
                |v| v["room"] == "rust" && v["peer"].is_null(),
                EVENT_TIMEOUT,
            )
            .await;
    }
    alice.send_line("hello before leaving").await;
    bob.expect(
        "message",
        |v| v["text"] == "hello before leaving",
        EVENT_TIMEOUT,
    )
    .await;
    let alice_id = alice.uuid.to_string();
    assert!(room_members(&index, "rust").await.contains(&alice_id));

    // `/quit`: the record and its memberships go at once; peers hear it once.
    alice.send_line("/quit").await;
    let status = alice.wait_exit(EVENT_TIMEOUT).await;
    assert!(status.success(), "{status}");
    let (status, _) = index.get_peer(&alice_id).await;
    assert_eq!(status, 404, "alice's record is offline");
    assert!(!room_members(&index, "rust").await.contains(&alice_id));
    assert!(!room_members(&index, "lobby").await.contains(&alice_id));
    let offline = bob
        .expect(
            "peer_offline",
            |v| v["peer"] == alice_id.as_str(),
            EVENT_TIMEOUT,
        )
        .await;
    assert_eq!(offline["name"], "alice", "{offline}");

    // SIGTERM does the same.
    let carol_id = carol.uuid.to_string();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(carol.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signalling carol");
    carol.wait_exit(EVENT_TIMEOUT).await;
    let (status, _) = index.get_peer(&carol_id).await;
    assert_eq!(status, 404, "carol's record is offline");
    bob.expect(
        "peer_offline",
        |v| v["peer"] == carol_id.as_str(),
        EVENT_TIMEOUT,
    )
    .await;
    assert_eq!(
        bob.backlog_events()
            .filter(|v| v["event"] == "left" && v["peer"] == alice_id.as_str())
            .count(),
        0,
        "one `peer_offline`, not a `left` per room"
    );

    // With the index gone, quitting does not wait for it.
    let mut index = index;
    index.stop().await;
    let started = Instant::now();
    bob.send_line("/quit").await;
    bob.wait_exit(EVENT_TIMEOUT).await;
    eprintln!("quit with the index down took {:?}", started.elapsed());
}

#[tokio::test]
async fn rooms_joined_and_left_while_the_index_was_down_are_reconciled() {
    let mut index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let alice_id = alice.uuid.to_string();
    index.stop().await;
    alice.send_line("/join rust").await;
    alice.send_line("/leave lobby").await;
    // The failed requests make the daemon check the index: offline, said once.
    let offline = alice
        .expect("index", |v| v["status"] == "offline", EVENT_TIMEOUT)
        .await;
    assert!(offline["reason"].is_string(), "{offline}");
    index.restart().await;
    alice
        .expect(
            "index",
            |v| v["status"] == "online",
            Duration::from_secs(30),
        )
        .await;
    eventually(
        "alice in #rust at the index",
        EVENT_TIMEOUT,
        || room_members(&index, "rust"),
        |members| members.contains(&alice_id),
    )
    .await;
    eventually(
        "alice out of #lobby at the index",
        EVENT_TIMEOUT,
        || room_members(&index, "lobby"),
        |members| !members.contains(&alice_id),
    )
    .await;
    assert_eq!(
        alice
            .backlog_events()
            .filter(|v| v["event"] == "index" && v["status"] == "offline")
            .count(),
        0,
        "offline is said once, not at every retry"
    );
}

/// 1000 messages from alice to bob; bob restarts and finds them: the tail of the active
/// session at once, pages further back with `/history`.
#[tokio::test]
async fn history_survives_a_restart() {
    const MESSAGES: usize = 1000;
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let alice_id = alice.uuid.to_string();
    bob.send_line(&format!("/dm {alice_id}")).await;
    bob.expect(
        "info",
        |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("now talking in @"))
        },
        EVENT_TIMEOUT,
    )
    .await;
    for n in 0..MESSAGES {
        alice.msg(bob.uuid, &format!("m{n:04}")).await;
    }
    let last = format!("m{:04}", MESSAGES - 1);
    bob.expect(
        "message",
        |v| v["text"] == last.as_str(),
        Duration::from_secs(60),
    )
    .await;
    for _ in 0..MESSAGES {
        alice
            .expect("delivered", |_| true, Duration::from_secs(60))
            .await;
    }
    bob.send_line("sent by bob").await;
    bob.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    bob.send_line("/quit").await;
    bob.wait_exit(EVENT_TIMEOUT).await;

    let started = Instant::now();
    let state = bob.state();
    drop(bob);
    let mut bob = Daemon::spawn_with_state(&index.url(), "bob", state).await;
    let restored = bob
        .expect("history", |v| v["reason"] == "restored", EVENT_TIMEOUT)
        .await;
    eprintln!(
        "restart with {MESSAGES} messages of history: tail shown {:?} after the spawn",
        started.elapsed()
    );
    assert_eq!(restored["peer"], alice_id.as_str(), "{restored}");
    let lines = restored["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 10, "{restored}");
    assert_eq!(lines[9]["text"], "sent by bob");
    assert!(lines[9].get("from").is_none(), "ours: {}", lines[9]);
    assert_eq!(lines[9]["state"], "delivered", "{}", lines[9]);
    assert!(lines[9]["rtt_ms"].as_f64().is_some(), "{}", lines[9]);
    assert_eq!(lines[8]["text"], format!("m{:04}", MESSAGES - 1));
    assert_eq!(lines[8]["from"], alice_id.as_str());
    assert_eq!(lines[8]["name"], "alice");
    assert_eq!(lines[8]["state"], "received");
    assert!(
        lines[8]["at_ms"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000_000)
    );

    // The session list came back too, with alice's session active.
    bob.send_line("/sessions").await;
    let sessions = bob.expect("sessions", |_| true, EVENT_TIMEOUT).await;
    let active: Vec<&Value> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["active"] == true)
        .collect();
    assert_eq!(active.len(), 1, "{sessions}");
    assert_eq!(active[0]["n"], 1, "{sessions}");
    let label = active[0]["label"].as_str().unwrap();
    assert!(
        label == "@alice" || label == format!("@{alice_id}"),
        "{sessions}"
    );

    // `/history` pages back from there, and on to the beginning.
    bob.send_line("/history 100").await;
    let page = bob
        .expect("history", |v| v["reason"] == "requested", EVENT_TIMEOUT)
        .await;
    let page = page["lines"].as_array().unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(page[99]["text"], format!("m{:04}", MESSAGES - 10));
    assert_eq!(page[0]["text"], format!("m{:04}", MESSAGES - 109));
    bob.send_line("/history 1000").await;
    let rest = bob
        .expect("history", |v| v["reason"] == "requested", EVENT_TIMEOUT)
        .await;
    let rest = rest["lines"].as_array().unwrap();
    assert_eq!(rest.len(), MESSAGES - 109);
    assert_eq!(rest[0]["text"], "m0000");
    bob.send_line("/history").await;
    bob.expect(
        "info",
        |v| v["message"] == "no earlier messages in @alice",
        EVENT_TIMEOUT,
    )
    .await;
    // Ids go on after the restart: a new message does not reuse one.
    alice.msg(bob.uuid, "after the restart").await;
    let message = bob
        .expect(
            "message",
            |v| v["text"] == "after the restart",
            EVENT_TIMEOUT,
        )
        .await;
    let restored_last = lines[9]["id"].as_u64().unwrap();
    assert!(
        message["id"].as_u64().unwrap() > restored_last,
        "{message} vs {restored_last}"
    );
}

#[tokio::test]
async fn nick_is_registered_first_and_peers_learn_it() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    bob.msg(alice.uuid, "hi, it's bob").await;
    alice
        .expect("message", |v| v["name"] == "bob", EVENT_TIMEOUT)
        .await;
    // A taken name is refused by the index, in one sentence, and bob stays bob.
    bob.send_line("/nick alice").await;
    let refused = bob.expect("error", |_| true, EVENT_TIMEOUT).await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("taken") && message.contains("you stay bob"),
        "{refused}"
    );
    // A free one is registered, and alice hears of it (her index vouches for it).
    bob.send_line("/nick robert").await;
    let renamed = bob
        .expect("renamed", |v| v["peer"].is_null(), EVENT_TIMEOUT)
        .await;
    assert_eq!(
        (renamed["old"].as_str(), renamed["name"].as_str()),
        (Some("bob"), Some("robert"))
    );
    let bob_id = bob.uuid.to_string();
    let seen = alice
        .expect("renamed", |v| v["peer"] == bob_id.as_str(), EVENT_TIMEOUT)
        .await;
    assert_eq!(seen["name"], "robert", "{seen}");
    let (_, record) = index.get_peer(&bob_id).await;
    assert_eq!(record["name"], "robert", "{record}");
    bob.send_line("/whoami").await;
    let whoami = bob.expect("whoami", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(whoami["name"], "robert", "{whoami}");
    assert_eq!(whoami["index_status"], "online", "{whoami}");
}

#[tokio::test]
async fn no_history_keeps_nothing_on_disk() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn_with_args(&index.url(), "bob", &["--no-history"]).await;
    alice.msg(bob.uuid, "not for the record").await;
    bob.expect(
        "message",
        |v| v["text"] == "not for the record",
        EVENT_TIMEOUT,
    )
    .await;
    bob.msg(alice.uuid, "nor this").await;
    bob.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    bob.send_line("/history").await;
    let refused = bob.expect("error", |_| true, EVENT_TIMEOUT).await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("--no-history")),
        "{refused}"
    );
    bob.send_line("/quit").await;
    bob.wait_exit(EVENT_TIMEOUT).await;
    let state = bob.state();
    assert!(
        !state.path().join("messages.db").exists(),
        "no store file with --no-history"
    );
    // Alice, with the default, kept both lines.
    assert!(alice.state().path().join("messages.db").exists());
    // A restart with history on finds nothing from the run without.
    drop(bob);
    let mut bob = Daemon::spawn_with_state(&index.url(), "bob", state).await;
    bob.send_line("/history").await;
    bob.expect(
        "info",
        |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no earlier messages"))
        },
        EVENT_TIMEOUT,
    )
    .await;
    assert_eq!(bob.seen_count("history"), 0);
}
