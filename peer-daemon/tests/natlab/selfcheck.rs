//! Checks of the lab itself: its routers behave as the NATs they stand for, and today's
//! daemons chat through it where no NAT traversal is needed (port-forwarding routers).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::chat::{assert_delivered_via, exchange, first_message};
use crate::lab::{HostId, Lab, NatKind};
use crate::netns::in_netns;
use crate::servers::{self, STUN_AUX_PORT, TURN_IP, TURN_PORT};
use crate::{BULK, stun};

/// The lab's routers behave as the issue says: a cone router keeps one mapping per socket
/// (same port to two destinations, the source port kept), a symmetric one maps per
/// destination; inbound traffic passes only as an answer to the exact address sent to; LAN
/// traffic is counted as such; a blackout drops everything; a lowered UDP timeout expires
/// mappings.
#[test]
fn lab_selfcheck() {
    let Some(mut lab) = Lab::new("lab_selfcheck") else {
        return;
    };
    let cone = lab.add_router(NatKind::Cone);
    let symmetric = lab.add_router(NatKind::Symmetric);
    let h1 = lab.add_host(cone);
    let h3 = lab.add_host(cone);
    let h2 = lab.add_host(symmetric);
    lab.start_servers();
    let main = SocketAddr::from((TURN_IP, TURN_PORT));
    let aux = SocketAddr::from((TURN_IP, STUN_AUX_PORT));
    let wait = Duration::from_secs(2);

    // Cone: one mapping for both destinations, on the router's address, the port kept.
    let s1 = bind(&lab, h1, 0);
    let local = s1.local_addr().expect("local addr");
    let m1 = stun::binding(&s1, main, wait).expect("STUN via the cone router");
    let m2 = stun::binding(&s1, aux, wait).expect("STUN via the cone router, aux port");
    assert_eq!(m1, m2, "a cone router must map one socket to one address");
    assert_eq!(m1.ip(), lab.router(cone).wan_ip);
    assert_eq!(
        m1.port(),
        local.port(),
        "MASQUERADE keeps a free source port"
    );

    // Symmetric: a new port per destination.
    let s2 = bind(&lab, h2, 0);
    let m3 = stun::binding(&s2, main, wait).expect("STUN via the symmetric router");
    let m4 = stun::binding(&s2, aux, wait).expect("STUN via the symmetric router, aux port");
    assert_eq!(m3.ip(), lab.router(symmetric).wan_ip);
    assert_eq!(m4.ip(), lab.router(symmetric).wan_ip);
    assert_ne!(
        m3.port(),
        m4.port(),
        "a symmetric router maps per destination"
    );
    eprintln!("natlab selfcheck: cone {m1} = {m2}; symmetric {m3} ≠ {m4}");

    // coturn relays, with TURN REST API credentials from the shared secret (as the index
    // hands them out), for clients behind the symmetric router: two allocations sending to
    // each other through the relay.
    let before = lab.counters(symmetric);
    let relayed = std::process::Command::new("timeout")
        .args([
            "20",
            "ip",
            "netns",
            "exec",
            &lab.host(h2).ns,
            "turnutils_uclient",
            "-y",
        ])
        .args(["-n", "5", "-z", "10", "-m", "1", "-u", "selfcheck"])
        .args(["-W", servers::TURN_SECRET, &TURN_IP.to_string()])
        .output()
        .expect("running turnutils_uclient (package coturn)");
    let report = String::from_utf8_lossy(&relayed.stdout).into_owned()
        + &String::from_utf8_lossy(&relayed.stderr);
    let received: u64 = report
        .rsplit("tot_recv_msgs=")
        .next()
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        relayed.status.success() && received > 0 && report.contains("Total lost packets 0 "),
        "coturn did not relay for a client behind the symmetric router:\n{report}\n{}",
        lab.servers().turn_log()
    );
    let delta = lab.counters(symmetric).since(&before);
    assert!(delta.to_turn.packets >= received, "{delta}");
    eprintln!("natlab selfcheck: coturn relayed {received} messages; {delta}");

    // Filtering: an answer from where h1 sent passes, the same port from elsewhere does not.
    let before = lab.counters(cone);
    let inet = lab.inet.clone();
    let (far, stranger) = in_netns(&inet, || {
        (
            UdpSocket::bind("203.0.113.30:4000").expect("bind far"),
            UdpSocket::bind("203.0.113.30:4001").expect("bind stranger"),
        )
    });
    for s in [&far, &stranger, &s1] {
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .expect("timeout");
    }
    s1.send_to(b"out", far.local_addr().unwrap())
        .expect("send out");
    let mut buf = [0u8; 64];
    let (_, seen_from) = far.recv_from(&mut buf).expect("the far end hears h1");
    assert_eq!(seen_from, m1, "the far end sees h1's mapping");
    far.send_to(b"answer", seen_from).expect("answer");
    let (len, _) = s1.recv_from(&mut buf).expect("h1 gets the answer");
    assert_eq!(&buf[..len], b"answer");
    stranger
        .send_to(b"unsolicited", seen_from)
        .expect("send unsolicited");
    assert!(
        s1.recv_from(&mut buf).is_err(),
        "an unsolicited packet from another port reached h1"
    );
    let delta = lab.counters(cone).since(&before);
    assert!(
        delta.dropped_inbound.packets >= 1,
        "the drop was not counted: {delta}"
    );
    assert!(
        delta.to_direct.packets >= 1 && delta.from_direct.packets >= 1,
        "{delta}"
    );

    // LAN to LAN is counted as such, not as wan traffic.
    assert!(
        lab.router(cone).bridge_nf,
        "the lab needs br_netfilter (`modprobe br_netfilter`) to see traffic between LAN hosts"
    );
    let before = lab.counters(cone);
    let s3 = bind(&lab, h3, 5000);
    s3.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    s1.send_to(b"neighbour", s3.local_addr().unwrap())
        .expect("send on the LAN");
    s3.recv_from(&mut buf).expect("h3 hears h1 over the LAN");
    let delta = lab.counters(cone).since(&before);
    assert_eq!(delta.lan_lan.packets, 1, "{delta}");
    assert_eq!(
        delta.to_direct.packets + delta.to_turn.packets,
        0,
        "{delta}"
    );

    // A blackout drops everything, and ends.
    lab.blackout(cone, true);
    s1.send_to(b"dark", far.local_addr().unwrap())
        .expect("send");
    assert!(
        far.recv_from(&mut buf).is_err(),
        "a packet crossed a blackout"
    );
    s1.send_to(b"dark", s3.local_addr().unwrap()).expect("send");
    assert!(
        s3.recv_from(&mut buf).is_err(),
        "a LAN packet crossed a blackout"
    );
    assert_eq!(
        lab.blackout(cone, false),
        2,
        "the blackout counts what it drops"
    );
    s1.send_to(b"light", far.local_addr().unwrap())
        .expect("send");
    far.recv_from(&mut buf)
        .expect("traffic passes after the blackout");

    // A lowered UDP timeout expires the mapping: the far end's answer no longer passes.
    lab.set_udp_timeout(cone, 1);
    s1.send_to(b"again", far.local_addr().unwrap())
        .expect("send");
    far.recv_from(&mut buf).expect("far hears h1");
    std::thread::sleep(Duration::from_secs(3));
    far.send_to(b"late", seen_from).expect("late answer");
    assert!(
        s1.recv_from(&mut buf).is_err(),
        "an answer passed after the mapping should have expired"
    );
}

/// A UDP socket bound on `host` (port 0: any free one).
fn bind(lab: &Lab, host: HostId, port: u16) -> UdpSocket {
    let h = lab.host(host);
    let addr = SocketAddr::from((h.ip, port));
    in_netns(&h.ns, || UdpSocket::bind(addr).expect("bind on a lab host"))
}

/// Today's daemons chat across two cone routers when each router forwards the daemon's port
/// (`--public-port`'s use case): the harness's daemons, index, counters and checks end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forwarded_cones_chat_directly() {
    let Some(mut lab) = Lab::new("port_forwarded_cones_chat_directly") else {
        return;
    };
    let (r1, r2) = (lab.add_router(NatKind::Cone), lab.add_router(NatKind::Cone));
    let (h1, h2) = (lab.add_host(r1), lab.add_host(r2));
    const PORT: u16 = 40000;
    lab.port_forward(r1, h1, PORT);
    lab.port_forward(r2, h2, PORT);
    lab.start_servers();
    let listen = |h: HostId| format!("{}:{PORT}", lab.host(h).ip);
    let (l1, l2) = (listen(h1), listen(h2));
    let mut alice = lab.spawn_daemon(h1, "alice", &["--listen", &l1]).await;
    let mut bob = lab.spawn_daemon(h2, "bob", &["--listen", &l2]).await;
    assert_eq!(alice.addr, format!("{}:{PORT}", lab.router(r1).wan_ip));
    assert_eq!(bob.addr, format!("{}:{PORT}", lab.router(r2).wan_ip));
    first_message(&mut alice, &mut bob).await;
    first_message(&mut bob, &mut alice).await;
    let before = [lab.counters(r1), lab.counters(r2)];
    let result = exchange(&mut alice, &mut bob, "fwd", BULK, None).await;
    let d1 = lab.counters(r1).since(&before[0]);
    let d2 = lab.counters(r2).since(&before[1]);
    eprintln!("natlab port forward: router 1 {d1}; router 2 {d2}");
    // Each side sends its half of the text and receives the other half, directly.
    let half = result.payload_bytes / 2;
    for d in [d1, d2] {
        assert!(d.to_direct.bytes >= half, "{d}");
        assert!(d.from_direct.bytes >= half, "{d}");
        assert_eq!(d.to_turn.packets, 0, "{d}");
    }
    assert_delivered_via(&result, "direct");
}
