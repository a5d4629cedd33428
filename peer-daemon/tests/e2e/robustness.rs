//! What goes wrong around the chat does not break it: a message to an unknown peer fails
//! cleanly, garbage datagrams are dropped, and a closed stdin neither stops nor spins the daemon.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::assert_delivered;
use super::common::{Daemon, EVENT_TIMEOUT, Index};

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
