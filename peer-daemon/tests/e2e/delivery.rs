//! Messages arrive: both ways with receipts and round-trip times, two hundred in order, a
//! 200 kB message whole, and through an outage of the index.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::common::{Daemon, EVENT_TIMEOUT, Index, http_client};
use super::{assert_delivered, assert_registered};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_roundtrip() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    assert_ne!(alice.uuid, bob.uuid);
    assert_registered(&index, &alice).await;
    assert_registered(&index, &bob).await;

    // Hyphenated lowercase UUID; the first message goes through an index lookup.
    alice.msg(bob.uuid.hyphenated(), "hi bob").await;
    let message = bob.expect("message", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(
        message["from"],
        alice.uuid.to_string().as_str(),
        "{message}"
    );
    assert_eq!(message["text"], "hi bob", "{message}");
    let delivered = alice.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(
        delivered["to"],
        bob.uuid.to_string().as_str(),
        "{delivered}"
    );
    assert!(
        delivered["rtt_ms"].as_f64().is_some_and(|rtt| rtt >= 0.0),
        "rtt_ms must be a number >= 0: {delivered}"
    );

    // 32 uppercase hex digits name the same peer.
    let simple_upper = bob.uuid.simple().to_string().to_uppercase();
    assert_eq!(simple_upper.len(), 32);
    alice.msg(&simple_upper, "hi again, in capitals").await;
    assert_delivered(&mut alice, &mut bob, "hi again, in capitals").await;

    // UTF-8 beyond ASCII, JSON-special characters and runs of spaces arrive byte-exact.
    let text =
        r#"héllo 🌍🚀 中文テスト "quoted" back\slash \n not-a-newline {"json":1}  two  spaces	tab"#;
    alice.msg(bob.uuid, text).await;
    assert_delivered(&mut alice, &mut bob, text).await;

    // And the other way round, to a peer bob never looked up.
    bob.msg(alice.uuid, "hi alice").await;
    assert_delivered(&mut bob, &mut alice, "hi alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_survives_index_outage() {
    let mut index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;

    // Alice looks bob up (and caches him) with her first message.
    alice.msg(bob.uuid, "before the outage").await;
    assert_delivered(&mut alice, &mut bob, "before the outage").await;

    index.stop().await;
    let down = http_client()
        .get(format!("{}/peers/{}", index.url(), bob.uuid))
        .send()
        .await;
    assert!(
        down.is_err(),
        "the index still answers after being stopped: {down:?}"
    );

    alice.msg(bob.uuid, "during the outage").await;
    assert_delivered(&mut alice, &mut bob, "during the outage").await;
    // Bob never looked alice up: he knows her address only from her datagrams.
    bob.msg(alice.uuid, "reply during the outage").await;
    assert_delivered(&mut bob, &mut alice, "reply during the outage").await;
    for d in [&mut alice, &mut bob] {
        let failed = d.seen_failed();
        assert!(
            failed.is_empty(),
            "{}: failures during the outage: {failed:?}",
            d.name
        );
    }

    // Same file, same port: the registrations are still there.
    index.restart().await;
    for d in [&alice, &bob] {
        let (status, body) = index.get_peer(&d.uuid.to_string()).await;
        assert_eq!(status, 200, "{} after the restart: {body}", d.name);
        assert_eq!(
            body["addr"],
            d.addr.to_string().as_str(),
            "{} after the restart: {body}",
            d.name
        );
    }
    let (status, body) = index.get_peer(&Uuid::new_v4().to_string()).await;
    assert_eq!(status, 404, "an unknown peer after the restart: {body}");

    // What `sqlite3 index.db 'select uuid, addr from peers'` shows, as the product promises.
    match tokio::process::Command::new("sqlite3")
        .args(["-batch", "-list", "-noheader", "-separator", "|"])
        .arg(index.db_path())
        .arg("select uuid, addr from peers")
        .output()
        .await
    {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("sqlite3 is not on PATH; skipping the sqlite3 check");
        }
        Err(error) => panic!("running sqlite3: {error}"),
        Ok(output) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "sqlite3 failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            for d in [&alice, &bob] {
                let row = format!("{}|{}", d.uuid.hyphenated(), d.addr);
                assert!(
                    stdout.lines().any(|line| line == row),
                    "sqlite3 does not show the row {row:?} for {}; it printed:\n{stdout}",
                    d.name
                );
            }
        }
    }

    // The restarted index serves lookups to a newcomer.
    let mut carol = Daemon::spawn(&index.url(), "carol").await;
    carol.msg(alice.uuid, "hello from carol").await;
    assert_delivered(&mut carol, &mut alice, "hello from carol").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_in_order() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;

    // All 200 lines in one write, before any lookup has finished.
    let texts: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
    let mut script = String::new();
    for text in &texts {
        script.push_str(&format!("/msg {} {text}\n", bob.uuid));
    }
    alice.write_raw(script.as_bytes()).await;

    let sender = alice.uuid.to_string();
    let mut received = Vec::with_capacity(200);
    for _ in 0..200 {
        let message = bob
            .expect("message", |_| true, Duration::from_secs(20))
            .await;
        assert_eq!(message["from"], sender.as_str(), "{message}");
        received.push(message["text"].as_str().unwrap_or_default().to_owned());
    }
    if received != texts {
        let first = received.iter().zip(&texts).position(|(r, t)| r != t);
        panic!(
            "bob received the messages out of order or altered; first difference at {first:?}: {received:?}"
        );
    }
    let receiver = bob.uuid.to_string();
    for i in 0..200 {
        alice
            .expect(
                "delivered",
                |v| v["to"] == receiver.as_str(),
                Duration::from_secs(20),
            )
            .await
            .get("rtt_ms")
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("delivered #{i} without rtt_ms"));
    }

    // Nothing more came in between: a sentinel sent after all 200 receipts is the next message.
    alice.msg(bob.uuid, "end").await;
    let next = bob.expect("message", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(
        next["text"], "end",
        "a message after the 200 that was not the sentinel: {next}"
    );
    alice
        .expect("delivered", |v| v["to"] == receiver.as_str(), EVENT_TIMEOUT)
        .await;
    let extra_receipts = alice.seen_count("delivered");
    assert_eq!(extra_receipts, 0, "more than 201 receipts for 201 messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_message() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;

    // 60 000 printable ASCII bytes (spaces included) from a fixed pseudo-random sequence, so
    // a lost, misplaced or repeated fragment changes the text.
    let mut state: u32 = 0x2545_f491;
    let text: String = (0..60_000)
        .map(|i| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            match i {
                0 => 'X',
                59_999 => 'Z',
                _ => char::from(0x20 + ((state >> 24) % 95) as u8),
            }
        })
        .collect();
    assert_eq!(text.len(), 60_000);
    alice.msg(bob.uuid, &text).await;

    let receiver = bob.uuid.to_string();
    let outcome = alice
        .expect_event(
            |v| {
                (v["event"] == "delivered" || v["event"] == "failed")
                    && v["to"] == receiver.as_str()
            },
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        outcome["event"], "delivered",
        "the large message was not delivered: {outcome}"
    );
    let message = bob.expect("message", |_| true, EVENT_TIMEOUT).await;
    let got = message["text"].as_str().unwrap_or_default();
    if got != text {
        let first = got.bytes().zip(text.bytes()).position(|(a, b)| a != b);
        panic!(
            "the large message arrived altered: {} bytes instead of {}, first difference at {first:?}",
            got.len(),
            text.len()
        );
    }
    assert_eq!(message["from"], alice.uuid.to_string().as_str());
}
