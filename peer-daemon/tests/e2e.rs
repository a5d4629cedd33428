//! End-to-end tests: the real index (in-process, SQLite in a temporary directory, 127.0.0.1:0)
//! and real `peer-daemon` processes talking over UDP on 127.0.0.1, driven through stdin and
//! observed through their `--json` stdout.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Daemon, EVENT_TIMEOUT, Index, http_client};
use serde_json::Value;
use uuid::Uuid;

/// Waits for `from` to get the receipt for a message to `to` (failing at once on a `failed`
/// for `to` or an `error`), then for `to` to have received `text` from `from`.
async fn assert_delivered(from: &mut Daemon, to: &mut Daemon, text: &str) {
    let receiver = to.uuid.to_string();
    let outcome = from
        .expect_event(
            |v| {
                v["event"] == "error"
                    || (v["event"] == "delivered" || v["event"] == "failed")
                        && v["to"] == receiver.as_str()
            },
            EVENT_TIMEOUT,
        )
        .await;
    assert_eq!(
        outcome["event"], "delivered",
        "{} could not deliver to {}: {outcome}",
        from.name, to.name
    );
    let rtt = outcome["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("`delivered` without a numeric rtt_ms: {outcome}"));
    assert!(rtt >= 0.0, "negative rtt_ms in {outcome}");
    let sender = from.uuid.to_string();
    to.expect(
        "message",
        |v| v["from"] == sender.as_str() && v["text"] == text,
        EVENT_TIMEOUT,
    )
    .await;
}

/// Checks that `d` registered with an address on 127.0.0.1 and the index agrees.
async fn assert_registered(index: &Index, d: &Daemon) {
    assert_eq!(
        d.addr.ip().to_string(),
        "127.0.0.1",
        "{} registered from the wrong IP: {}",
        d.name,
        d.addr
    );
    assert_ne!(d.addr.port(), 0, "{} registered port 0", d.name);
    let (status, body) = index.get_peer(&d.uuid.to_string()).await;
    assert_eq!(status, 200, "index lookup of {}: {body}", d.name);
    assert_eq!(body["uuid"], d.uuid.to_string().as_str(), "{body}");
    assert_eq!(body["addr"], d.addr.to_string().as_str(), "{body}");
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_peer_fails_cleanly() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;

    let stranger = Uuid::new_v4();
    alice.msg(stranger, "x").await;
    let failed = alice
        .expect(
            "failed",
            |v| v["to"] == stranger.to_string().as_str(),
            EVENT_TIMEOUT,
        )
        .await;
    let reason = failed["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("index")
            && [
                "no such",
                "not registered",
                "unknown",
                "not know",
                "not found"
            ]
            .iter()
            .any(|s| reason.contains(s)),
        "the reason should say the index does not know the peer: {failed}"
    );

    for bad in [
        "/bogus",
        // Not a UUID, so a name, and nobody has it.
        "/msg not-a-registered-name hi",
        "/msg",
    ] {
        alice.send_line(bad).await;
        let error = alice.expect("error", |_| true, EVENT_TIMEOUT).await;
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "an error without a message for {bad:?}: {error}"
        );
    }

    // /help and /peers still answer, and chatting still works.
    alice.send_line("/help").await;
    alice.expect("help", |_| true, EVENT_TIMEOUT).await;
    alice.msg(bob.uuid, "still here").await;
    assert_delivered(&mut alice, &mut bob, "still here").await;
    alice.send_line("/peers").await;
    let bob_id = bob.uuid.to_string();
    let peers = alice.expect("peers", |_| true, EVENT_TIMEOUT).await;
    let listed = peers["peers"]
        .as_array()
        .is_some_and(|list| list.iter().any(|p| p["uuid"] == bob_id.as_str()));
    assert!(
        listed,
        "/peers does not list bob after chatting with him: {peers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_dropped() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    alice.msg(bob.uuid, "before the garbage").await;
    assert_delivered(&mut alice, &mut bob, "before the garbage").await;

    let version = proto::wire::VERSION;
    let mut state: u32 = 7;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect()
    };
    // A DATA-like header: version, type, from, to, from_inc, to_inc, stream, seq, flags.
    let header = |kind: u8, from: Uuid, to: Uuid, inc: u64, seq: u64, flags: u8| -> Vec<u8> {
        let mut d = vec![version, kind];
        d.extend_from_slice(from.as_bytes());
        d.extend_from_slice(to.as_bytes());
        d.extend_from_slice(&inc.to_be_bytes());
        d.extend_from_slice(&0u64.to_be_bytes());
        d.extend_from_slice(&0u32.to_be_bytes());
        d.extend_from_slice(&seq.to_be_bytes());
        d.push(flags);
        d
    };
    let stranger = Uuid::new_v4();
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![version],
        vec![version, 0x01],
        vec![version, 0x02],
        vec![version, 0xff, 1, 2, 3],
        vec![0xff; 64],
        noise(1),
        noise(100),
        noise(2000),
        [vec![version, 0x01], noise(2000)].concat(),
        [vec![version, 0x02], noise(40)].concat(),
        // Truncated header.
        header(0x01, stranger, bob.uuid, 1, 0, 1)[..30].to_vec(),
        // Zero incarnation, unknown flags.
        header(0x01, stranger, bob.uuid, 0, 0, 1),
        header(0x01, stranger, bob.uuid, 1, 0, 0xfe),
        // Well-formed but addressed to someone else, or absurd.
        [
            header(0x01, stranger, Uuid::new_v4(), 1, 0, 1),
            b"not for bob".to_vec(),
        ]
        .concat(),
        [
            header(0x01, stranger, bob.uuid, 1, u64::MAX, 1),
            b"far future".to_vec(),
        ]
        .concat(),
        // An ACK header with junk where the ranges go.
        [header(0x02, stranger, bob.uuid, 1, 5, 0xff), noise(17)].concat(),
    ];
    garbage.push([header(0x01, stranger, bob.uuid, 1, 0, 1), noise(1500)].concat());

    let socket = UdpSocket::bind("127.0.0.1:0").expect("binding a UDP socket");
    for datagram in &garbage {
        for target in [bob.addr, alice.addr] {
            socket
                .send_to(datagram, target)
                .unwrap_or_else(|e| panic!("sending {} garbage bytes: {e}", datagram.len()));
        }
    }

    alice.msg(bob.uuid, "after the garbage").await;
    assert_delivered(&mut alice, &mut bob, "after the garbage").await;
    bob.msg(alice.uuid, "me too").await;
    assert_delivered(&mut bob, &mut alice, "me too").await;
    for d in [&mut alice, &mut bob] {
        assert!(d.try_wait().is_none(), "{} exited after garbage", d.name);
        let unexpected: Vec<Value> = d
            .backlog_events()
            .filter(|v| v["event"] == "message")
            .cloned()
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: garbage turned into messages: {unexpected:?}",
            d.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_eof_does_not_spin_or_exit() {
    let index = Index::start().await;
    let mut lone = Daemon::spawn(&index.url(), "lone").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let pid = lone.pid();

    lone.close_stdin();
    let before = lone.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        lone.try_wait().is_none(),
        "the daemon exited at the end of piped stdin: {:?}{}",
        lone.try_wait(),
        lone.diagnostics()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = lone.cpu_ticks() - before;
    assert!(
        spent < 20,
        "the daemon used {spent} clock ticks of CPU in 2 s with stdin closed (spinning?)"
    );
    assert!(
        lone.try_wait().is_none(),
        "the daemon exited with stdin closed"
    );

    // It still chats: it receives and acknowledges.
    bob.msg(lone.uuid, "are you there?").await;
    assert_delivered(&mut bob, &mut lone, "are you there?").await;

    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -TERM {pid} failed");
    let exit = lone.wait_exit(Duration::from_secs(5)).await;
    assert!(
        exit.success(),
        "the daemon exited with {exit} on SIGTERM{}",
        lone.diagnostics()
    );
}
