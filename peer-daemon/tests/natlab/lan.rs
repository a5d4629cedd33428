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
                .expect(
                    "joined",
                    |v| v["room"] == "lobby" && v["name"] == name,
                    FIND,
                )
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
    assert!(
        names.contains(&"bob") && names.contains(&"carol"),
        "{users}"
    );

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
    assert_eq!(
        (receipt["delivered"].as_u64(), receipt["total"].as_u64()),
        (Some(2), Some(2)),
        "{receipt}"
    );
    carol
        .expect(
            "message",
            |v| v["text"] == "hello lobby" && v["name"] == "alice",
            ACK,
        )
        .await;

    // A room of two: bob and carol join #rust; alice is not in it.
    bob.send_line("/join rust").await;
    carol.send_line("/join rust").await;
    bob.expect(
        "joined",
        |v| v["room"] == "rust" && v["name"] == "carol",
        FIND,
    )
    .await;
    bob.send_line("rust talk").await;
    let receipt = bob.expect("delivered", |v| v["room"] == "rust", ACK).await;
    assert_eq!(receipt["delivered"], 1, "{receipt}");
    carol
        .expect(
            "message",
            |v| v["text"] == "rust talk" && v["room"] == "rust",
            ACK,
        )
        .await;

    // The other LAN saw nobody, and nobody saw it.
    let far_view = whoami(&mut dave).await;
    assert_eq!(far_view["lan_peers"], 0, "{far_view}");
    dave.send_line("/msg alice can you hear me").await;
    let failed = dave.expect("error", |_| true, ACK).await;
    assert!(
        failed["message"].as_str().unwrap().contains("alice"),
        "{failed}"
    );

    // Leaving withdraws the announcement: the others forget alice at once.
    alice.send_line("/quit").await;
    for daemon in [&mut bob, &mut carol] {
        wait_lan_peers(daemon, 1).await;
    }
    let stats = {
        bob.send_line("/stats").await;
        bob.expect("stats", |_| true, ACK).await
    };
    assert!(
        stats["counters"]["discovery.lan_announcements"].as_u64() >= Some(2),
        "{stats}"
    );
}

/// With an index that went away, the LAN stands in: a peer that started after the index died
/// (never registered) is found by name on the LAN, and its messages show under its LAN name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_index_is_down_the_lan_stands_in() {
    let Some(mut lab) = Lab::new("lan stands in") else {
        return;
    };
    let home = lab.add_router(NatKind::Cone);
    let (h1, h2) = (lab.add_host(home), lab.add_host(home));
    lab.start_servers();
    let url = lab.servers.as_ref().unwrap().index_url();
    let mut alice = lab.spawn_on_lan(h1, "alice", &url, &[]).await;
    alice
        .expect("registered", |_| true, Duration::from_secs(15))
        .await;
    lab.servers().kill_index();
    let mut bob = lab.spawn_on_lan(h2, "bob", &url, &[]).await;
    // Each must have heard the other's announcement: the name a message shows under comes
    // from the receiver's LAN peers (under load bob's could lag behind alice's).
    wait_lan_peers(&mut alice, 1).await;
    wait_lan_peers(&mut bob, 1).await;

    alice.send_line("/msg bob the index is gone").await;
    alice.receipt(bob.uuid, ACK).await;
    let message = bob
        .expect("message", |v| v["text"] == "the index is gone", ACK)
        .await;
    assert_eq!(message["name"], "alice", "{message}");
    bob.send_line("/msg alice and yet here we are").await;
    bob.receipt(alice.uuid, ACK).await;
    let reply = alice
        .expect("message", |v| v["text"] == "and yet here we are", ACK)
        .await;
    assert_eq!(reply["name"], "bob", "{reply}");
}

/// A hostile host on the LAN floods it with announcements: hundreds with forged signatures,
/// some with oversized or unsafe fields, hundreds of validly signed fakes from fresh keys, and
/// thousands of malformed mDNS packets.
/// The daemons ignore and count the bad ones, keep at most `MAX_LAN_PEERS`, and keep chatting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fake_announcements_is_ignored_and_bounded() {
    use peer_daemon::discovery::{announce, lan};
    use proto::identity::Identity;

    let Some(mut lab) = Lab::new("lan flood") else {
        return;
    };
    let home = lab.add_router(NatKind::Cone);
    let (h1, h2, h3) = (lab.add_host(home), lab.add_host(home), lab.add_host(home));
    let mut alice = lab.spawn_lan_daemon(h1, "alice", &[]).await;
    let mut bob = lab.spawn_lan_daemon(h2, "bob", &[]).await;
    wait_lan_peers(&mut alice, 1).await;

    const FORGED: usize = 200;
    const HOSTILE: usize = 40;
    const SIGNED: usize = 300;
    let flooder_ns = lab.host(h3).ns.clone();
    let flooder = crate::netns::in_netns(&flooder_ns, mdns_sd::ServiceDaemon::new)
        .expect("an mDNS daemon on the flooder's host");
    let ip = lab.host(h3).ip.to_string();
    let register = |i: usize, txt: Vec<(&'static str, String)>| {
        let name = format!("fake{i}");
        let info = mdns_sd::ServiceInfo::new(
            lan::SERVICE,
            &name,
            &format!("{name}.local."),
            ip.as_str(),
            4000,
            &txt[..],
        )
        .expect("a service");
        // The library's command queue holds 100: a flood waits for room.
        loop {
            match flooder.register(info.clone()) {
                Ok(()) => break,
                Err(mdns_sd::Error::Again) => std::thread::sleep(Duration::from_millis(5)),
                Err(error) => panic!("registering a fake service: {error}"),
            }
        }
    };
    let me = |i: usize| announce::Me {
        name: Some(format!("fake-{i}")),
        candidates: vec![proto::api::Candidate {
            kind: proto::api::CandidateKind::Host,
            addr: format!("{ip}:{}", 4000 + i).parse().unwrap(),
        }],
        rooms: vec!["lobby".into()],
    };
    for i in 0..FORGED {
        let key = Identity::from_secret(rand_secret(i));
        let mut txt = announce::lan_txt(&key, &me(i), 1);
        // The signature of something else.
        txt.retain(|(k, _)| *k != "s");
        txt.push(("s", "ab".repeat(64)));
        register(i, txt);
    }
    for i in FORGED..FORGED + HOSTILE {
        let key = Identity::from_secret(rand_secret(i));
        let mut txt = announce::lan_txt(&key, &me(i), 1);
        for (k, v) in txt.iter_mut() {
            match *k {
                "n" => *v = "\u{1b}[2J".repeat(30),
                "a" => *v = "host/0.0.0.0:0".into(),
                _ => {}
            }
        }
        register(i, txt);
    }
    for i in FORGED + HOSTILE..FORGED + HOSTILE + SIGNED {
        let key = Identity::from_secret(rand_secret(i));
        register(i, announce::lan_txt(&key, &me(i), 1));
    }

    // And plain garbage on the mDNS port, multicast and straight at alice.
    let garbage = crate::netns::in_netns(&flooder_ns, || {
        std::net::UdpSocket::bind("0.0.0.0:0").expect("the flooder's raw socket")
    });
    let alice_ip = lab.host(h1).ip;
    for i in 0..2000u32 {
        let mut datagram = vec![0u8; (i as usize * 37) % 1400 + 1];
        for (j, byte) in datagram.iter_mut().enumerate() {
            *byte = (i as usize * 31 + j * 7) as u8;
        }
        // A DNS header claiming thousands of records, then noise.
        if datagram.len() >= 12 {
            datagram[4..12].copy_from_slice(&[0xff; 8]);
        }
        let to: std::net::SocketAddr = if i % 2 == 0 {
            "224.0.0.251:5353".parse().unwrap()
        } else {
            (alice_ip, 5353).into()
        };
        let _ = garbage.send_to(&datagram, to);
    }

    // The bad ones are counted, the book stays bounded, and alice still reaches bob at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let counters = loop {
        alice.send_line("/stats").await;
        let counters = alice.expect("stats", |_| true, ACK).await["counters"].clone();
        if counters["discovery.lan_rejected"].as_u64() >= Some((FORGED + HOSTILE) as u64) {
            break counters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the forged announcements were not all refused: {counters}{}",
            alice.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let heard = whoami(&mut alice).await["lan_peers"].as_u64().unwrap();
    assert!(
        heard <= lan::MAX_LAN_PEERS as u64 && heard > 1,
        "{heard} LAN peers kept: {counters}"
    );
    let started = std::time::Instant::now();
    alice.send_line("/msg bob still here?").await;
    alice.receipt(bob.uuid, ACK).await;
    bob.expect("message", |v| v["text"] == "still here?", ACK)
        .await;
    eprintln!(
        "lan flood: {} refused, {heard} peers kept, a message to bob took {:?}",
        counters["discovery.lan_rejected"],
        started.elapsed()
    );
    let _ = flooder.shutdown();
}

/// A distinct secret per fake peer.
fn rand_secret(i: usize) -> [u8; 32] {
    let mut secret = [0x5a; 32];
    secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
    secret
}
