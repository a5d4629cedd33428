//! LAN discovery (issue 13): daemons with no index at all (`--index none`) on bridged LANs in
//! namespaces find each other over real multicast mDNS, resolve each other by name, and chat in
//! private and in rooms; a daemon on another LAN is never seen; a daemon that quits withdraws
//! its announcement.

use std::time::Duration;

use serde_json::Value;

use crate::lab::{Lab, NatKind};
use crate::peer::LabDaemon;

/// How long discovery may take (mDNS answers within a second or two).
const FIND: Duration = Duration::from_secs(20);
const ACK: Duration = Duration::from_secs(10);

/// `/whoami` of `daemon`.
async fn whoami(daemon: &mut LabDaemon) -> Value {
    daemon.send_line("/whoami").await;
    daemon.expect("whoami", |_| true, ACK).await
}

/// Waits until `daemon` heard `count` peers on the LAN.
async fn wait_lan_peers(daemon: &mut LabDaemon, count: u64) -> Value {
    let deadline = tokio::time::Instant::now() + FIND;
    loop {
        let me = whoami(daemon).await;
        if me["lan_peers"] == count {
            return me;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: {} LAN peers, not {count}, after {FIND:?}: {me}{}",
            daemon.name,
            me["lan_peers"],
            daemon.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_peers_find_each_other_and_chat_without_an_index() {
    let Some(mut lab) = Lab::new("lan discovery") else {
        return;
    };
    let (home, other) = (lab.add_router(NatKind::Cone), lab.add_router(NatKind::Cone));
    let hosts: Vec<_> = (0..3).map(|_| lab.add_host(home)).collect();
    let far = lab.add_host(other);
    let mut alice = lab.spawn_lan_daemon(hosts[0], "alice", &[]).await;
    let mut bob = lab.spawn_lan_daemon(hosts[1], "bob", &[]).await;
    let mut carol = lab.spawn_lan_daemon(hosts[2], "carol", &[]).await;
    let mut dave = lab.spawn_lan_daemon(far, "dave", &[]).await;

    for daemon in [&mut alice, &mut bob, &mut carol] {
        wait_lan_peers(daemon, 2).await;
    }
    // Everyone in the lobby hears of the others as members, under their LAN names.
    for (daemon, others) in [
        (&mut alice, ["bob", "carol"]),
        (&mut bob, ["alice", "carol"]),
    ] {
        for name in others {
            daemon
                .expect("joined", |v| v["room"] == "lobby" && v["name"] == name, FIND)
                .await;
        }
    }
    // `/users` lists them with their LAN addresses.
    alice.send_line("/users").await;
    let users = alice.expect("peers", |_| true, ACK).await;
    let names: Vec<&str> = users["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"bob") && names.contains(&"carol"), "{users}");

    // By name, privately: resolved on the LAN, proven by the handshake.
    alice.send_line("/msg bob hello over the LAN").await;
    alice.receipt(bob.uuid, ACK).await;
    let message = bob
        .expect("message", |v| v["text"] == "hello over the LAN", ACK)
        .await;
    assert_eq!(message["from"], alice.uuid.to_string());
    assert_eq!(message["name"], "alice", "{message}");

    // In the lobby: both LAN members, not the far one.
    alice.send_line("hello lobby").await;
    let receipt = alice
        .expect("delivered", |v| v["room"] == "lobby", ACK)
        .await;
    assert_eq!((receipt["delivered"].as_u64(), receipt["total"].as_u64()), (Some(2), Some(2)), "{receipt}");
    carol
        .expect("message", |v| v["text"] == "hello lobby" && v["name"] == "alice", ACK)
        .await;

    // A room of two: bob and carol join #rust; alice is not in it.
    bob.send_line("/join rust").await;
    carol.send_line("/join rust").await;
    bob.expect("joined", |v| v["room"] == "rust" && v["name"] == "carol", FIND)
        .await;
    bob.send_line("rust talk").await;
    let receipt = bob.expect("delivered", |v| v["room"] == "rust", ACK).await;
    assert_eq!(receipt["delivered"], 1, "{receipt}");
    carol
        .expect("message", |v| v["text"] == "rust talk" && v["room"] == "rust", ACK)
        .await;

    // The other LAN saw nobody, and nobody saw it.
    let far_view = whoami(&mut dave).await;
    assert_eq!(far_view["lan_peers"], 0, "{far_view}");
    dave.send_line("/msg alice can you hear me").await;
    let failed = dave.expect("error", |_| true, ACK).await;
    assert!(failed["message"].as_str().unwrap().contains("alice"), "{failed}");

    // Leaving withdraws the announcement: the others forget alice at once.
    alice.send_line("/quit").await;
    for daemon in [&mut bob, &mut carol] {
        wait_lan_peers(daemon, 1).await;
    }
    let stats = {
        bob.send_line("/stats").await;
        bob.expect("stats", |_| true, ACK).await
    };
    assert!(stats["counters"]["discovery.lan_announcements"].as_u64() >= Some(2), "{stats}");
}
