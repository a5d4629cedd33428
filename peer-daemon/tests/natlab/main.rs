//! The NAT lab (issue 11): Linux network namespaces with real NAT routers (`MASQUERADE`,
//! `MASQUERADE --random-fully`), a real coturn and the real index on an "internet" between
//! them, real daemons on hosts behind the routers. Each test builds its own lab and removes it.
//!
//! [`lab`] builds the topology and reads the routers' packet counters, [`servers`] runs coturn
//! and the index, [`peer`] runs a daemon on a host, [`chat`] runs and checks conversations,
//! [`stun`] probes mappings. Needs root (namespaces, iptables) and coturn; without them each
//! test says SKIP and writes a line to `target/tmp/SKIPPED`.
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

mod chat;
mod lab;
mod peer;
mod servers;
mod stun;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use chat::{
    assert_delivered_via, exchange, expect_path, first_message, first_message_within, path_checks,
};
use lab::{Counters, HostId, Lab, NatKind, RouterId, in_netns};
use peer::LabDaemon;
use servers::{STUN_AUX_PORT, TURN_IP, TURN_PORT};

/// Arguments every case's daemons get besides `--json --index … --name … --state-dir …`
/// (e.g. a `--turn`/`--stun` override once the daemon has one; the index hands out coturn
/// already when it knows `--turn-url`, see `servers::INDEX_TURN_FLAGS`).
const DAEMON_ARGS: &[&str] = &[];

/// Messages each way in a bulk phase.
const BULK: usize = 200;

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

/// Where the two daemons of a case sit.
#[derive(Debug, Clone, Copy)]
enum Topology {
    /// Both behind one router of this kind.
    SameRouter(NatKind),
    /// Each behind its own router: alice behind the first, bob behind the second.
    TwoRouters(NatKind, NatKind),
}

/// Which path the bulk phase must take, judged from the routers' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Directly over the shared LAN bridge.
    Lan,
    /// Directly between the two routers' wan addresses.
    Direct,
    /// Through coturn.
    Relay,
    /// Direct if the daemons manage it, else through coturn.
    RelayOrDirect,
}

/// A lab with servers and two registered daemons, alice and bob.
struct Pair {
    // Field order is drop order: the daemons go before the lab removes their namespaces.
    alice: LabDaemon,
    bob: LabDaemon,
    routers: Vec<RouterId>,
    /// alice's host, bob's host.
    hosts: [HostId; 2],
    lab: Lab,
}

impl Pair {
    /// Builds the lab for `topology`, starts the servers and the two daemons; `None` when
    /// the lab is skipped on this machine.
    async fn new(test: &str, topology: Topology, extra: &[&str]) -> Option<Pair> {
        let mut lab = Lab::new(test)?;
        let (routers, ha, hb) = match topology {
            Topology::SameRouter(kind) => {
                let r = lab.add_router(kind);
                assert!(
                    lab.router(r).bridge_nf,
                    "{test} needs br_netfilter (`modprobe br_netfilter`) to count LAN traffic"
                );
                (vec![r], lab.add_host(r), lab.add_host(r))
            }
            Topology::TwoRouters(ka, kb) => {
                let (ra, rb) = (lab.add_router(ka), lab.add_router(kb));
                (vec![ra, rb], lab.add_host(ra), lab.add_host(rb))
            }
        };
        lab.start_servers();
        let alice = lab.spawn_daemon(ha, "alice", extra).await;
        let bob = lab.spawn_daemon(hb, "bob", extra).await;
        eprintln!(
            "natlab {test}: alice registered as {}, bob as {}",
            alice.addr, bob.addr
        );
        Some(Pair {
            alice,
            bob,
            routers,
            hosts: [ha, hb],
            lab,
        })
    }

    /// The counters of all the pair's routers, added up.
    fn counters(&self) -> Counters {
        self.routers.iter().fold(Counters::default(), |sum, &r| {
            sum.plus(&self.lab.counters(r))
        })
    }

    /// The first message (fast whatever the path), then, with path checks on, waiting until
    /// both ends use the path `expect` names.
    async fn open(&mut self, expect: Expect) {
        first_message(&mut self.alice, &mut self.bob).await;
        first_message(&mut self.bob, &mut self.alice).await;
        let via = match expect {
            Expect::Lan | Expect::Direct => "direct",
            Expect::Relay => "relay",
            Expect::RelayOrDirect => return,
        };
        let (a, b) = (self.alice.uuid, self.bob.uuid);
        let alice_path = expect_path(&mut self.alice, b, via).await;
        let bob_path = expect_path(&mut self.bob, a, via).await;
        // Where each path must lead: the peer's LAN address, its router, or coturn.
        for (path, peer) in [(alice_path, self.hosts[1]), (bob_path, self.hosts[0])] {
            let Some(path) = path else { continue };
            let addr: SocketAddr = path["addr"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .expect("ip:port");
            let host = self.lab.host(peer);
            let want = match expect {
                Expect::Lan => host.ip,
                Expect::Direct => self.lab.router(host.router).wan_ip,
                Expect::Relay | Expect::RelayOrDirect => TURN_IP,
            };
            assert_eq!(addr.ip(), want, "{expect:?} path leads elsewhere: {path}");
        }
    }

    /// A bulk exchange of [`BULK`] messages each way whose router counters must show the
    /// path `expect` names; returns the counters of the phase.
    async fn bulk(&mut self, tag: &str, expect: Expect, pace: Option<Duration>) -> Counters {
        let before = self.counters();
        let result = exchange(&mut self.alice, &mut self.bob, tag, BULK, pace).await;
        let delta = self.counters().since(&before);
        eprintln!("natlab {tag}: router counters during the bulk phase: {delta}");
        check_path(expect, &delta, &result);
        delta
    }
}

/// Judges the bulk phase's path from its counters (and, with path checks on, the receipts):
/// the path named carries at least the messages' text in bytes, the other one at most a
/// quarter of that (probes, keep-alives, allocation refreshes) or, for a direct path that
/// cannot exist, at most a few probes.
fn check_path(expect: Expect, delta: &Counters, result: &chat::Exchange) {
    let payload = result.payload_bytes;
    let little = payload / 4;
    let probes = 10;
    match expect {
        Expect::Lan => {
            assert!(delta.lan_lan.bytes >= payload, "not over the LAN: {delta}");
            assert!(
                delta.to_direct.packets <= probes,
                "hairpin or stray direct traffic: {delta}"
            );
            assert!(delta.to_turn.bytes <= little, "relayed: {delta}");
            assert_delivered_via(result, "direct");
        }
        Expect::Direct => {
            assert!(delta.to_direct.bytes >= payload, "not direct: {delta}");
            assert!(delta.to_turn.bytes <= little, "relayed too much: {delta}");
            assert_delivered_via(result, "direct");
        }
        Expect::Relay => {
            assert!(delta.to_turn.bytes >= payload, "not relayed: {delta}");
            assert!(
                delta.to_direct.packets <= probes,
                "direct traffic where none can pass: {delta}"
            );
            assert_delivered_via(result, "relay");
        }
        Expect::RelayOrDirect => {
            let direct = delta.to_direct.bytes >= payload && delta.to_turn.bytes <= little;
            let relay = delta.to_turn.bytes >= payload;
            assert!(direct || relay, "neither direct nor relayed: {delta}");
            eprintln!(
                "natlab: cone × symmetric went {} ({delta}), receipts via {:?}",
                if direct { "DIRECT" } else { "RELAYED" },
                result.via
            );
        }
    }
}

/// One whole case: a pair on `topology`, the first messages, a bulk phase on `expect`.
async fn case(test: &str, topology: Topology, expect: Expect) {
    let Some(mut pair) = Pair::new(test, topology, DAEMON_ARGS).await else {
        return;
    };
    pair.open(expect).await;
    pair.bulk(test, expect, None).await;
}

// ---------------------------------------------------------------------------------------------
// The lab itself.

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

// ---------------------------------------------------------------------------------------------
// The cases.

/// Two hosts behind one router talk over their LAN, not through the router's wan (no hairpin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs NAT traversal (issue 11): the index records the router's wan address for both"]
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
#[ignore = "needs NAT traversal (issue 11)"]
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
#[ignore = "needs NAT traversal (issue 11)"]
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
#[ignore = "needs NAT traversal (issue 11)"]
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
    // The daemon may not know the direct path died: a few seconds to notice and fall back.
    first_message_within(&mut pair.alice, &mut pair.bob, Duration::from_secs(5)).await;
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
