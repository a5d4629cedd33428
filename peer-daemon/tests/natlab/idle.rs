//! What LAN discovery and the DHT cost when nothing happens (issue 13): `bench_discovery_idle`,
//! ignored by default, run by `scripts/bench-discovery.sh`. In one lab LAN:
//!
//! - two daemons (`--index none`, mDNS on, the DHT on through a private DHT of
//!   [`DHT_NODES`] `mainline` nodes on a third host), each on a host of its own;
//! - the **baseline** on a fourth host: the same libraries bare, as an application that only
//!   uses them would run them: one `mdns-sd` daemon registering one `_peerlink._udp` service
//!   and browsing for the type, and one `mainline` client that stored one BEP 44 item.
//!
//! After [`WARM_UP`] (start-up announcements, DHT bootstrap and first publication) every
//! host's `OUTPUT` counters are zeroed, then read after [`IDLE`] (`BENCH_IDLE_SECS` overrides
//! it): packets and bytes per minute to the mDNS port and to the DHT host, the daemon's against
//! the bare libraries'.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::lab::{Lab, NatKind};
use crate::netns::in_netns;

/// Nodes of the private DHT.
const DHT_NODES: usize = 8;
/// Time given to start-up traffic before counting.
const WARM_UP: Duration = Duration::from_secs(20);
/// Default idle time counted.
const IDLE: Duration = Duration::from_secs(120);

/// Packets and bytes a host sent to the mDNS port and to the DHT host since the last zeroing.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    mdns: (u64, u64),
    dht: (u64, u64),
}

fn count_rules(lab: &Lab, ns: &str, dht_ip: Ipv4Addr) {
    let dht = format!("-d {dht_ip}");
    for (matching, comment) in [("--dport 5353", "mdns"), (dht.as_str(), "dht")] {
        let mut rule = vec!["iptables", "-A", "OUTPUT", "-p", "udp"];
        rule.extend(matching.split(' '));
        rule.extend(["-m", "comment", "--comment", comment]);
        lab.ns(ns, &rule);
    }
}

fn read(lab: &Lab, ns: &str) -> Sent {
    let out = lab.ns(ns, &["iptables", "-L", "OUTPUT", "-v", "-x", "-n"]);
    let mut sent = Sent::default();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(p), Some(b)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        let (Ok(p), Ok(b)) = (p.parse::<u64>(), b.parse::<u64>()) else {
            continue;
        };
        if line.contains("/* mdns */") {
            sent.mdns = (p, b);
        } else if line.contains("/* dht */") {
            sent.dht = (p, b);
        }
    }
    sent
}

fn per_minute(value: u64, over: Duration) -> f64 {
    value as f64 * 60.0 / over.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-discovery.sh"]
async fn bench_discovery_idle() {
    let Some(mut lab) = Lab::new("bench discovery idle") else {
        return;
    };
    let idle = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(IDLE, Duration::from_secs);
    let home = lab.add_router(NatKind::Cone);
    let (h1, h2, h_dht, h_bare) = (
        lab.add_host(home),
        lab.add_host(home),
        lab.add_host(home),
        lab.add_host(home),
    );
    let dht_ip = lab.host(h_dht).ip;
    let net = in_netns(&lab.host(h_dht).ns.clone(), || {
        mainline::Testnet::builder(DHT_NODES)
            .bind_address(dht_ip)
            .build()
    })
    .expect("a private DHT on the DHT host");
    let mut args: Vec<&str> = Vec::new();
    for node in &net.bootstrap {
        args.extend(["--dht-bootstrap", node.as_str()]);
    }
    for host in [h1, h2, h_bare] {
        count_rules(&lab, &lab.host(host).ns.clone(), dht_ip);
    }
    let mut alice = lab.spawn_lan_daemon(h1, "alice", &args).await;
    let _bob = lab.spawn_lan_daemon(h2, "bob", &args).await;

    // The baseline: the two libraries bare, on their own host.
    let bare_ns = lab.host(h_bare).ns.clone();
    let bare_ip = lab.host(h_bare).ip;
    let bootstrap = net.bootstrap.clone();
    let (mdns, dht) = in_netns(&bare_ns, move || {
        let mdns = mdns_sd::ServiceDaemon::new().expect("bare mdns-sd");
        let info = mdns_sd::ServiceInfo::new(
            peer_daemon::discovery::lan::SERVICE,
            "bare",
            "bare.local.",
            bare_ip.to_string().as_str(),
            4000,
            &[("v", "1")][..],
        )
        .expect("a service");
        mdns.register(info).expect("registered");
        // Browsing for as long as the benchmark runs, what it finds read as it comes.
        let events = mdns
            .browse(peer_daemon::discovery::lan::SERVICE)
            .expect("browsing");
        std::thread::spawn(move || while events.recv().is_ok() {});
        let dht = mainline::Dht::builder()
            .bootstrap(&bootstrap)
            .build()
            .expect("bare mainline");
        let key = mainline::SigningKey::from_bytes(&[9; 32]);
        #[allow(deprecated, reason = "the blocking API, off the runtime")]
        let stored = dht.put_mutable(mainline::MutableItem::new(key, b"{}", 1, None), None);
        stored.expect("a bare BEP 44 put");
        (mdns, dht)
    });

    tokio::time::sleep(WARM_UP).await;
    let hosts = [
        ("daemon alice", h1),
        ("daemon bob", h2),
        ("bare libraries", h_bare),
    ];
    let start: Vec<Sent> = hosts
        .iter()
        .map(|(_, h)| read(&lab, &lab.host(*h).ns.clone()))
        .collect();
    for (_, host) in hosts {
        lab.ns(&lab.host(host).ns.clone(), &["iptables", "-Z", "OUTPUT"]);
    }
    tokio::time::sleep(idle).await;
    let counted: Vec<Sent> = hosts
        .iter()
        .map(|(_, h)| read(&lab, &lab.host(*h).ns.clone()))
        .collect();
    alice.send_line("/stats").await;
    let stats = alice
        .expect("stats", |_| true, Duration::from_secs(10))
        .await;

    println!("\ndiscovery traffic sent, warm-up {WARM_UP:?} then idle {idle:?} (per host)");
    println!(
        "{:<16} {:>22} {:>22} {:>26} {:>26}",
        "",
        "start-up mDNS pkts/B",
        "start-up DHT pkts/B",
        "idle mDNS pkts/min (B/min)",
        "idle DHT pkts/min (B/min)"
    );
    for ((name, _), (s, c)) in hosts.iter().zip(start.iter().zip(&counted)) {
        println!(
            "{name:<16} {:>22} {:>22} {:>26} {:>26}",
            format!("{}/{}", s.mdns.0, s.mdns.1),
            format!("{}/{}", s.dht.0, s.dht.1),
            format!(
                "{:.1} ({:.0})",
                per_minute(c.mdns.0, idle),
                per_minute(c.mdns.1, idle)
            ),
            format!(
                "{:.1} ({:.0})",
                per_minute(c.dht.0, idle),
                per_minute(c.dht.1, idle)
            ),
        );
    }
    let bare = counted[2];
    let ratio = |a: u64, b: u64| match (a, b) {
        (0, 0) => "equal (none)".to_owned(),
        (_, 0) => format!("{a} packets against none"),
        _ => format!("{:.2}×", a as f64 / b as f64),
    };
    println!(
        "alice / bare libraries, idle packets: mDNS {}, DHT {}",
        ratio(counted[0].mdns.0, bare.mdns.0),
        ratio(counted[0].dht.0, bare.dht.0)
    );
    println!("alice's discovery counters: {}", {
        let c = &stats["counters"];
        let keys = [
            "discovery.lan_announcements",
            "discovery.lan_published",
            "discovery.dht_published",
            "discovery.dht_publish_failures",
        ];
        keys.iter()
            .map(|k| format!("{k}={}", c[*k]))
            .collect::<Vec<_>>()
            .join(" ")
    });
    assert!(
        counted[0].mdns.0 + counted[0].dht.0 > 0 || idle < Duration::from_secs(60),
        "nothing counted at all: are the counting rules in place?"
    );
    let _ = mdns.shutdown();
    drop(dht);
    drop(net);
}
