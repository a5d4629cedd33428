//! End-to-end test through a real lossy network: two real daemons chat across a UDP relay
//! (`common::relay`) that drops, duplicates and reorders datagrams in both directions, and the
//! chat keeps its promises: every message exactly once, in order, with a receipt.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::relay::{DirectionStats, Impairment, Relay, RelayConfig};
use common::{Daemon, Index};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The whole exchange must finish within this; it normally takes a few seconds.
const BUDGET: Duration = Duration::from_secs(25);

/// What is left of the budget (at least a moment, so an overrun fails with a clear message).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(10))
}

/// A 200 000-byte printable line from a fixed pseudo-random sequence, so that a lost, repeated
/// or misplaced fragment changes it.
fn large_text() -> String {
    let mut state: u32 = 0x1234_5678;
    (0..200_000)
        .map(|i| match i {
            0 => 'A',
            199_999 => 'Z',
            _ => {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                char::from(0x21 + ((state >> 24) % 94) as u8)
            }
        })
        .collect()
}

/// Takes `count` messages from `to` that `from` sent, in arrival order.
async fn receive(to: &mut Daemon, from: &Daemon, count: usize, deadline: Instant) -> Vec<String> {
    let sender = from.uuid.to_string();
    let mut texts = Vec::with_capacity(count);
    for _ in 0..count {
        let message = to.expect("message", |_| true, left(deadline)).await;
        assert_eq!(
            message["from"],
            sender.as_str(),
            "a message not from {}: {message}",
            from.name
        );
        texts.push(message["text"].as_str().unwrap_or_default().to_owned());
    }
    texts
}

/// Takes the `sent` and then the `delivered` events of `count` messages from `from` to `to`:
/// every id acknowledged exactly once, none failed.
async fn receipts(from: &mut Daemon, to: &Daemon, count: usize, deadline: Instant) {
    let receiver = to.uuid.to_string();
    let mut sent = BTreeSet::new();
    for _ in 0..count {
        let event = from
            .expect_event(
                |v| v["event"] == "sent" || v["event"] == "failed",
                left(deadline),
            )
            .await;
        assert_eq!(
            event["event"], "sent",
            "{} could not send: {event}",
            from.name
        );
        sent.insert(event["id"].as_u64().expect("a numeric id"));
    }
    assert_eq!(sent.len(), count, "{}: `sent` ids repeat", from.name);
    let mut delivered = BTreeSet::new();
    for _ in 0..count {
        let event = from
            .expect_event(
                |v| {
                    (v["event"] == "delivered" || v["event"] == "failed")
                        && v["to"] == receiver.as_str()
                },
                left(deadline),
            )
            .await;
        assert_eq!(
            event["event"], "delivered",
            "{} lost a message: {event}",
            from.name
        );
        let id = event["id"].as_u64().expect("a numeric id");
        assert!(
            delivered.insert(id),
            "{}: a second receipt for id {id}",
            from.name
        );
        assert!(
            event["rtt_ms"].as_f64().is_some_and(|rtt| rtt >= 0.0),
            "{event}"
        );
    }
    assert_eq!(
        delivered, sent,
        "{}: receipts for other ids than were sent",
        from.name
    );
}

/// Checks the first difference between what arrived and what was sent, without printing
/// 200 000-byte strings.
fn assert_same(who: &str, got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(g, w)| g != w);
    let describe = |t: Option<&String>| t.map(|t| format!("{:.40} ({} bytes)", t, t.len()));
    let i = at.unwrap_or(got.len().min(want.len()));
    panic!(
        "{who} received {} messages instead of {} or altered or out of order; first difference at \
         #{i}: got {:?}, sent {:?}",
        got.len(),
        want.len(),
        describe(got.get(i)),
        describe(want.get(i)),
    );
}

fn assert_impaired(direction: &str, stats: DirectionStats) {
    assert!(
        stats.dropped > 0 && stats.duplicated > 0 && stats.reordered > 0,
        "the relay did not drop, duplicate and reorder {direction}: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_a_lossy_relay() {
    let deadline = Instant::now() + BUDGET;
    let index = Index::start().await;
    let front = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("binding the relay");
    let public = front.local_addr().expect("the relay's address");
    let mut bob = Daemon::spawn_with_args(
        &index.url(),
        "bob",
        // Without candidates (no NAT traversal), so that bob is known only at the relay's
        // port and every datagram crosses the impaired relay.
        &[
            "--public-port",
            &public.port().to_string(),
            "--ice-server",
            "none",
        ],
    )
    .await;
    assert_eq!(
        bob.addr, public,
        "bob must register the relay's port, not his own"
    );
    let bound = bob.bound_addr();
    assert_ne!(bound, public);
    let bad = Impairment {
        loss: 0.2,
        duplicate: 0.1,
        reorder: 0.2,
        reorder_delay: Duration::from_millis(10),
        latency: Duration::from_millis(1),
    };
    let relay = Relay::start(front, bound, RelayConfig::symmetric(bad, 0x5eed)).await;
    // Alice comes second, so she makes the first contact (her lobby greeting) through the relay;
    // a greeting from bob would go straight to her and teach her his real address.
    let mut alice = Daemon::spawn_with_args(&index.url(), "alice", &["--ice-server", "none"]).await;

    // Alice finds bob at the index (the relay's port); 300 short messages and a 200 000-byte
    // one go out in one write, so the window fills and the big one is fragmented behind them.
    let mut texts: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    texts.push(large_text());
    let script: String = texts
        .iter()
        .map(|t| format!("/msg {} {t}\n", bob.uuid))
        .collect();
    alice.write_raw(script.as_bytes()).await;

    let received = receive(&mut bob, &alice, texts.len(), deadline).await;
    assert_same("bob", &received, &texts);
    receipts(&mut alice, &bob, texts.len(), deadline).await;

    // Exactly once: the next message after a sentinel sent now is the sentinel.
    alice.msg(bob.uuid, "end").await;
    let next = bob.expect("message", |_| true, left(deadline)).await;
    assert_eq!(
        next["text"],
        "end",
        "a message after the {} that was not the sentinel",
        texts.len()
    );
    receipts(&mut alice, &bob, 1, deadline).await;

    // Bob knows alice only from her datagrams, i.e. at the relay's back socket: his replies
    // cross the relay too, through the NAT mapping alice's datagrams made.
    let before = relay.stats().down;
    let replies: Vec<String> = (0..50).map(|i| format!("r{i:02}")).collect();
    let script: String = replies
        .iter()
        .map(|t| format!("/msg {} {t}\n", alice.uuid))
        .collect();
    bob.write_raw(script.as_bytes()).await;
    let received = receive(&mut alice, &bob, replies.len(), deadline).await;
    assert_same("alice", &received, &replies);
    receipts(&mut bob, &alice, replies.len(), deadline).await;
    let after = relay.stats().down;
    assert!(
        after.received >= before.received + replies.len() as u64,
        "bob's replies did not cross the relay: {before:?} then {after:?}"
    );

    for d in [&mut alice, &mut bob] {
        let failed = d.seen_failed();
        assert!(failed.is_empty(), "{}: failures: {failed:?}", d.name);
    }
    let stats = relay.stats();
    eprintln!("relay: {stats:#?}");
    assert_impaired("towards bob", stats.up);
    assert_impaired("from bob", stats.down);
    assert_eq!(
        stats.mappings, 1,
        "only alice should talk to bob, through the relay: {stats:?}"
    );
    assert_eq!(
        stats.down.unroutable, 0,
        "datagrams reached the relay's mappings from someone other than bob: {stats:?}"
    );
    assert!(
        Instant::now() < deadline,
        "the exchange overran its {BUDGET:?} budget"
    );
}
