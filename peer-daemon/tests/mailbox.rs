//! Offline delivery end to end: the real index on its SQLite file and real daemons. A message
//! for a peer that quit waits, sealed, in its mailbox on the index; the peer takes every
//! letter exactly once, in order, when it comes back, and the sender sees `delivered`.

mod common;

use std::time::Duration;

use common::mail::{key_of, sealed_text};
use common::{Daemon, EVENT_TIMEOUT, Index};
use peer_daemon::index::IndexClient;
use proto::identity::Identity;

/// Messages sent while the recipient is away.
const LETTERS: usize = 100;

/// Every byte of the index's database files (the main file and its write-ahead log), read by
/// another process: closing a descriptor of the file in this one (where the index runs) would
/// drop SQLite's POSIX locks, and the next `sqlite3` would take the WAL away from under it.
fn database_bytes(index: &Index) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let mut path = index.db_path().into_os_string();
        path.push(suffix);
        let out = std::process::Command::new("cat")
            .arg(&path)
            .output()
            .expect("running cat");
        bytes.extend_from_slice(&out.stdout);
    }
    assert!(!bytes.is_empty(), "the database files could not be read");
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn a_peer_that_was_away_gets_every_message_once_in_order() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let bob_id = bob.uuid.to_string();
    let bob_state = bob.state();

    // They talk once; then bob quits (his record goes offline at once).
    alice.msg(&bob_id, "are you there?").await;
    bob.expect("message", |v| v["text"] == "are you there?", EVENT_TIMEOUT)
        .await;
    alice
        .expect("delivered", |v| v["to"] == bob_id.as_str(), EVENT_TIMEOUT)
        .await;
    bob.send_line("/quit").await;
    bob.wait_exit(EVENT_TIMEOUT).await;
    let (status, _) = index.get_peer(&bob_id).await;
    assert_eq!(status, 404, "bob's record went offline when he quit");

    // Alice writes anyway: each message waits in bob's mailbox.
    for n in 0..LETTERS {
        alice
            .msg(&bob_id, &format!("while you were out #{n:03}"))
            .await;
    }
    let mut queued = Vec::new();
    for _ in 0..LETTERS {
        let event = alice
            .expect("queued", |v| v["to"] == bob_id.as_str(), EVENT_TIMEOUT)
            .await;
        queued.push(event["id"].as_u64().expect("an id"));
    }
    assert_eq!(alice.seen_failed(), Vec::<serde_json::Value>::new());

    // The index holds them sealed: not one byte of any text is in its files.
    let stored = database_bytes(&index);
    assert!(
        !contains(&stored, b"while you were out"),
        "plaintext in the index's database"
    );
    let rows = std::process::Command::new("sqlite3")
        .arg(index.db_path())
        .arg(format!(
            "select count(*), count(distinct sender) from mailbox where recipient = '{bob_id}'"
        ))
        .output();
    match rows {
        Ok(out) if out.status.success() => {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("{LETTERS}|1")
            );
        }
        _ => common::skip("sqlite3 is not installed: the mailbox rows were not counted"),
    }

    // Bob comes back: every letter, once, in alice's order; alice hears they arrived.
    let mut bob = Daemon::spawn_with_state(&index.url(), "bob", bob_state.clone()).await;
    for n in 0..LETTERS {
        let message = bob.expect("message", |_| true, EVENT_TIMEOUT).await;
        assert_eq!(
            message["text"],
            format!("while you were out #{n:03}"),
            "{message}"
        );
        assert_eq!(message["from"], alice.uuid.to_string().as_str());
        assert_eq!(message["via"], "mailbox");
        assert!(message["sent_at_ms"].as_u64().is_some(), "{message}");
    }
    let mut delivered = Vec::new();
    for _ in 0..LETTERS {
        let event = alice
            .expect(
                "delivered",
                |v| v["to"] == bob_id.as_str() && v["via"] == "mailbox",
                EVENT_TIMEOUT,
            )
            .await;
        delivered.push(event["id"].as_u64().expect("an id"));
    }
    delivered.sort_unstable();
    queued.sort_unstable();
    assert_eq!(delivered, queued, "each queued message is delivered once");

    // The mailbox is empty now, and nothing comes twice: not now, not after a restart.
    let waiting = wait_until_empty(&index, &bob_id).await;
    assert_eq!(
        waiting,
        0,
        "bob's mailbox is emptied once he took the letters\n{}",
        bob.diagnostics()
    );
    bob.send_line("/quit").await;
    bob.wait_exit(EVENT_TIMEOUT).await;
    let mut bob = Daemon::spawn_with_state(&index.url(), "bob", bob_state).await;
    alice.msg(&bob_id, "one more, directly").await;
    bob.expect(
        "message",
        |v| v["text"] == "one more, directly",
        EVENT_TIMEOUT,
    )
    .await;
    let repeated = bob
        .backlog_events()
        .filter(|v| v["event"] == "message" && v["via"] == "mailbox")
        .count();
    assert_eq!(repeated, 0, "no letter is shown twice");
}

/// Counts bob's waiting letters until there are none (or 10 s passed); returns the count.
async fn wait_until_empty(index: &Index, bob: &str) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new("sqlite3")
            .arg(index.db_path())
            .arg(format!(
                "select count(*) from mailbox where recipient = '{bob}'"
            ))
            .output();
        let Ok(out) = out else {
            common::skip("sqlite3 is not installed: the emptied mailbox was not checked");
            return 0;
        };
        let count: usize = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(usize::MAX);
        if count == 0 || tokio::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/stats` counters of `daemon`.
async fn counters(daemon: &mut Daemon) -> serde_json::Value {
    daemon.send_line("/stats").await;
    daemon.expect("stats", |_| true, EVENT_TIMEOUT).await["counters"].clone()
}

#[tokio::test]
async fn altered_and_misdirected_letters_are_dropped_and_counted() {
    let index = Index::start().await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let bob_key = key_of(&index, bob.uuid).await;
    // Mallory is a registered peer with her own key, writing to bob through the real API.
    let client = IndexClient::new(&index.url()).expect("a client");
    let mallory = Identity::from_secret(rand::random());
    let alice = Identity::from_secret(rand::random());
    client
        .register(&mallory, 9, None, Vec::new())
        .await
        .expect("mallory registers");

    // 1. Altered on the way: one bit of the ciphertext flipped.
    let mut altered = sealed_text(&mallory, &bob_key, 1, "altered");
    let last = altered.len() - 1;
    altered[last] ^= 1;
    // 2. Alice's genuine letter, deposited by mallory as if it were hers.
    let stolen = sealed_text(&alice, &bob_key, 2, "stolen from alice");
    // 3. Mallory's own honest letter: it must come through (or the test proves nothing).
    let honest = sealed_text(&mallory, &bob_key, 3, "an honest letter from mallory");
    for sealed in [&altered, &stolen, &honest] {
        client
            .deposit(&mallory, bob.uuid, sealed)
            .await
            .expect("the index takes any sealed letter from a registered sender");
    }

    // Bob looks into his mailbox within POLL_MIN..POLL_MAX of registering; wait for the honest
    // one, then check nothing else came through.
    let message = bob
        .expect("message", |_| true, Duration::from_secs(70))
        .await;
    assert_eq!(
        message["text"], "an honest letter from mallory",
        "{message}"
    );
    assert_eq!(message["from"], mallory.uuid().to_string().as_str());
    let stats = counters(&mut bob).await;
    assert_eq!(stats["mailbox.rejected"], 2, "{stats}");
    assert_eq!(stats["mailbox.taken"], 1, "{stats}");
    assert_eq!(
        bob.backlog_events()
            .filter(|v| v["event"] == "message")
            .count(),
        0
    );
    assert_eq!(wait_until_empty(&index, &bob.uuid.to_string()).await, 0);
}

#[tokio::test]
async fn a_peer_that_blocks_a_sender_gets_no_mail_from_it() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut carol = Daemon::spawn(&index.url(), "carol").await;
    let carol_id = carol.uuid.to_string();
    alice.msg(&carol_id, "hi carol").await;
    carol
        .expect("message", |v| v["text"] == "hi carol", EVENT_TIMEOUT)
        .await;
    alice
        .expect("delivered", |v| v["to"] == carol_id.as_str(), EVENT_TIMEOUT)
        .await;
    carol.send_line("/block alice").await;
    carol
        .expect(
            "info",
            |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("blocked alice"))
            },
            EVENT_TIMEOUT,
        )
        .await;

    // Directly: dropped by carol (alice hears nothing back but the acknowledgement).
    alice.msg(&carol_id, "still there?").await;
    alice
        .expect("delivered", |v| v["to"] == carol_id.as_str(), EVENT_TIMEOUT)
        .await;

    // By mail, once carol is offline: the index refuses it, and alice is told.
    carol.send_line("/quit").await;
    carol.wait_exit(EVENT_TIMEOUT).await;
    alice.msg(&carol_id, "let me in").await;
    let failed = alice
        .expect("failed", |v| v["to"] == carol_id.as_str(), EVENT_TIMEOUT)
        .await;
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("does not accept mail from you"), "{failed}");
    assert!(alice.backlog_events().all(|v| v["event"] != "queued"));
    // Carol saw none of it.
    let carol_state = carol.state();
    let mut carol = Daemon::spawn_with_state(&index.url(), "carol", carol_state).await;
    alice.msg(&carol_id, "and now?").await;
    alice
        .expect("delivered", |v| v["to"] == carol_id.as_str(), EVENT_TIMEOUT)
        .await;
    let stats = counters(&mut carol).await;
    // The text, and alice's introduction to this new run of carol's.
    assert!(stats["mailbox.from_blocked"].as_u64() >= Some(1), "{stats}");
    assert_eq!(
        carol
            .backlog_events()
            .filter(|v| v["event"] == "message")
            .count(),
        0,
        "nothing from a blocked peer is shown"
    );
}

#[tokio::test]
async fn a_receipt_waits_in_the_senders_mailbox_when_the_sender_went_away_too() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let bob_id = bob.uuid.to_string();
    let (alice_state, bob_state) = (alice.state(), bob.state());
    alice.msg(&bob_id, "hello").await;
    alice
        .expect("delivered", |v| v["to"] == bob_id.as_str(), EVENT_TIMEOUT)
        .await;
    bob.send_line("/quit").await;
    bob.wait_exit(EVENT_TIMEOUT).await;
    alice.msg(&bob_id, "see you monday").await;
    let queued = alice
        .expect("queued", |v| v["to"] == bob_id.as_str(), EVENT_TIMEOUT)
        .await;
    // Alice leaves too; bob comes back, takes the letter, and can only leave his receipt in
    // alice's mailbox.
    alice.send_line("/quit").await;
    alice.wait_exit(EVENT_TIMEOUT).await;
    let mut bob = Daemon::spawn_with_state(&index.url(), "bob", bob_state).await;
    bob.expect("message", |v| v["text"] == "see you monday", EVENT_TIMEOUT)
        .await;
    // Alice's next run finds the receipt for the message her last run queued.
    let mut alice = Daemon::spawn_with_state(&index.url(), "alice", alice_state).await;
    let delivered = alice
        .expect(
            "delivered",
            |v| v["to"] == bob_id.as_str() && v["via"] == "mailbox",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(delivered["id"], queued["id"], "{delivered}");
    // And her history says so (the store writes within 100 ms).
    let store = alice.state().path().join("messages.db");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let state = loop {
        let out = std::process::Command::new("sqlite3")
            .arg(&store)
            .arg("select state from lines where text = 'see you monday'")
            .output();
        let Ok(out) = out else {
            common::skip("sqlite3 is not installed: alice's history was not checked");
            break "delivered".to_owned();
        };
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if state == "delivered" || tokio::time::Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state, "delivered");
    drop(bob);
}

#[tokio::test]
async fn with_no_mailbox_a_message_for_a_peer_that_left_fails_at_once() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn_with_args(&index.url(), "alice", &["--no-mailbox"]).await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let bob_id = bob.uuid.to_string();
    alice.msg(&bob_id, "hi").await;
    alice
        .expect("delivered", |v| v["to"] == bob_id.as_str(), EVENT_TIMEOUT)
        .await;
    bob.send_line("/quit").await;
    bob.wait_exit(EVENT_TIMEOUT).await;
    alice.msg(&bob_id, "still there?").await;
    let failed = alice
        .expect("failed", |v| v["to"] == bob_id.as_str(), EVENT_TIMEOUT)
        .await;
    assert_eq!(failed["reason"], "no such peer is registered at the index");
    assert!(alice.backlog_events().all(|v| v["event"] != "queued"));
    let (status, _) = index.get_peer(&bob_id).await;
    assert_eq!(status, 404);
}
