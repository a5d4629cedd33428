//! The NAT lab (issue 11): Linux network namespaces with real NAT routers (`MASQUERADE`,
//! `MASQUERADE --random-fully`), a real coturn and the real index on an "internet" between
//! them, real daemons on hosts behind the routers. Each test builds its own lab and removes it.
//!
//! [`lab`] builds the topology, [`counters`] reads the routers' packet counters, [`netns`]
//! runs things in namespaces and cleans up, [`servers`] runs coturn and the index, [`peer`]
//! runs a daemon on a host, [`chat`] runs and checks conversations, [`pair`] sets up a case,
//! [`stun`] probes mappings, [`selfcheck`] proves the lab itself, [`bench`] is the ignored
//! benchmark `bench_nat` (`scripts/bench-nat.sh`). Needs root (namespaces, iptables) and
//! coturn; without them each test says SKIP and writes a line to `target/tmp/SKIPPED`.
//!
//! A new case: `Pair::new(name, Topology::TwoRouters(NatKind::Cone, NatKind::Symmetric),
//! DAEMON_ARGS)` builds the lab and starts alice and bob; `pair.open(Expect::…)` sends the
//! first message each way (acknowledged within 1 s) and, with path checks on, waits for the
//! path; `pair.bulk(tag, Expect::…, pace)` exchanges 200 messages each way and judges the path
//! from the routers' counters. `pair.lab` changes the network meanwhile (`blackout`,
//! `set_udp_timeout`, `servers().kill_index()`). Path events are checked once
//! `chat::DAEMON_REPORTS_PATHS` is `true` (or with `NATLAB_PATH_EVENTS=1`).
//!
//! Run: `cargo test -p peer-daemon --test natlab -- --include-ignored --nocapture`.

mod bench;
mod chat;
mod counters;
mod idle;
mod lab;
mod lan;
mod netns;
mod pair;
mod peer;
mod selfcheck;
mod servers;
mod state;
mod stun;

use std::time::Duration;

use chat::{exchange, expect_path, first_message_within, path_checks};
use lab::NatKind;
use pair::{Expect, Pair, Topology, case};

/// Arguments every case's daemons get besides `--json --index … --name … --state-dir …`
/// (e.g. a `--turn`/`--stun` override once the daemon has one; the index hands out coturn
/// already when it knows `--turn-url`, see `servers::INDEX_TURN_FLAGS`).
pub(crate) const DAEMON_ARGS: &[&str] = &[];

/// Messages each way in a bulk phase.
pub(crate) const BULK: usize = 200;

/// Says loudly that a test skipped itself because this machine lacks a capability: on stderr,
/// and in `target/tmp/SKIPPED`, which `.ci/run` prints after the tests.
pub fn skip(why: &str) {
    use std::io::Write;
    eprintln!("SKIP: {why}");
    let path = concat!(env!("CARGO_TARGET_TMPDIR"), "/SKIPPED");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{why}");
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// Two hosts behind one router talk over their LAN, not through the router's wan (no hairpin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_router() {
    case(
        "same_router",
        Topology::SameRouter(NatKind::Cone),
        Expect::Lan,
    )
    .await;
}

/// Two cone routers: direct. (Today's daemons get through already: both introduce themselves
/// to the lobby at once, which punches through two cone NATs by chance.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cone_cone() {
    case(
        "cone_cone",
        Topology::TwoRouters(NatKind::Cone, NatKind::Cone),
        Expect::Direct,
    )
    .await;
}

/// A cone and a symmetric router: direct if the daemons can, relayed otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cone_symmetric() {
    case(
        "cone_symmetric",
        Topology::TwoRouters(NatKind::Cone, NatKind::Symmetric),
        Expect::RelayOrDirect,
    )
    .await;
}

/// Two symmetric routers: relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_symmetric() {
    case(
        "symmetric_symmetric",
        Topology::TwoRouters(NatKind::Symmetric, NatKind::Symmetric),
        Expect::Relay,
    )
    .await;
}

/// The index dies after the conversation started: the conversation goes on, on its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_killed() {
    let topology = Topology::TwoRouters(NatKind::Cone, NatKind::Cone);
    let Some(mut pair) = Pair::new("index_killed", topology, DAEMON_ARGS).await else {
        return;
    };
    pair.open(Expect::Direct).await;
    pair.lab.servers().kill_index();
    pair.bulk("index_killed", Expect::Direct, None).await;
}

/// NAT mappings expire while the chat is idle (UDP conntrack timeout lowered to 3 s in both
/// routers, idle for 10 s): the chat resumes by itself, on a direct path again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_expires() {
    let topology = Topology::TwoRouters(NatKind::Cone, NatKind::Cone);
    let Some(mut pair) = Pair::new("mapping_expires", topology, DAEMON_ARGS).await else {
        return;
    };
    for &r in &pair.routers {
        pair.lab.set_udp_timeout(r, 3);
    }
    pair.open(Expect::Direct).await;
    exchange(&mut pair.alice, &mut pair.bob, "before-idle", 20, None).await;
    // Idle is the condition under test: there is no event to wait for.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Every mapping is gone, bob's towards coturn too, so nothing reaches bob until bob sends
    // something himself: his 15 s keep-alive to coturn (or to alice) opens his NAT again, and
    // alice's next retransmission (at most 5 s apart) gets through. Far more than a real NAT's
    // mapping lifetime (30 s or more) would ever allow to happen, so it may take that long.
    first_message_within(&mut pair.alice, &mut pair.bob, Duration::from_secs(25)).await;
    let (a, b) = (pair.alice.uuid, pair.bob.uuid);
    expect_path(&mut pair.alice, b, "direct").await;
    expect_path(&mut pair.bob, a, "direct").await;
    pair.bulk("after-idle", Expect::Direct, None).await;
}

/// Router 1 drops everything for 4 s in the middle of a paced stream: nothing is lost or
/// duplicated, order holds, and the direct path comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_blackout() {
    let topology = Topology::TwoRouters(NatKind::Cone, NatKind::Cone);
    let Some(mut pair) = Pair::new("router_blackout", topology, DAEMON_ARGS).await else {
        return;
    };
    pair.open(Expect::Direct).await;
    let router = pair.routers[0];
    let ns = pair.lab.router(router).ns.clone();
    // 200 pairs, one every 30 ms: 6 s of stream, dark from 1 s to 5 s.
    let dark = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        lab::blackout_ns(&ns, true);
        tokio::time::sleep(Duration::from_secs(4)).await;
        lab::blackout_ns(&ns, false)
    });
    let result = exchange(
        &mut pair.alice,
        &mut pair.bob,
        "blackout",
        BULK,
        Some(Duration::from_millis(30)),
    )
    .await;
    let dropped = dark.await.expect("blackout task");
    assert!(
        dropped > 0,
        "the blackout dropped nothing: it missed the stream"
    );
    eprintln!("natlab blackout: receipts via {:?}", result.via);
    let (a, b) = (pair.alice.uuid, pair.bob.uuid);
    expect_path(&mut pair.alice, b, "direct").await;
    expect_path(&mut pair.bob, a, "direct").await;
    pair.bulk("after-blackout", Expect::Direct, None).await;
    if path_checks() {
        eprintln!(
            "natlab blackout: alice's path events: {:?}",
            pair.alice.paths
        );
    }
}
