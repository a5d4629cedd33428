//! The lab's topology: network namespaces joined by veth pairs and bridges, built with `ip`,
//! `iptables` and `sysctl`, and torn down when the [`Lab`] is dropped (also on panic).
//!
//! ```text
//!   host ns ─┐                    ┌──────── internet ns ────────┐                  ┌─ host ns
//!   host ns ─┤ br0 [router 1] wan ┤ br0 203.0.113.0/24          ├ wan [router 2] br0 ┤
//!  192.0.2.0/24   203.0.113.101   │ index .10:8080, coturn .20  │  203.0.113.102    198.51.100.0/24
//!                                 └─────────────────────────────┘
//! ```
//!
//! Every name carries a prefix unique to this process and lab, so tests run in parallel.
//! Interfaces are created directly inside their namespaces, where short fixed names (`wan`,
//! `br0`, `eth0`) cannot collide with anything.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::counters::{self, COUNT_CHAIN, Counters};
use crate::netns::{enable_bridge_nf, kill_all_in, on_path, run, sweep_stale_namespaces};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::servers::{Servers, TURN_IP};

/// How a router translates and filters, as the issue's two kinds of NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// `MASQUERADE`: endpoint-independent mapping (the source port is kept when free),
    /// address-and-port-dependent filtering; a typical home router.
    Cone,
    /// `MASQUERADE --random-fully`: a new random port per destination, like many CGNATs.
    Symmetric,
}

/// Index of a router in its [`Lab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterId(pub usize);

/// Index of a host in its [`Lab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostId(pub usize);

/// A router: its namespace, its address on the internet and its LAN.
#[derive(Debug, Clone)]
pub struct Router {
    /// Namespace name.
    pub ns: String,
    /// What kind of NAT it is.
    #[allow(
        dead_code,
        reason = "harness API for cases that look a router's kind up"
    )]
    pub kind: NatKind,
    /// Its address on the internet bridge (203.0.113.101, .102, …).
    pub wan_ip: Ipv4Addr,
    /// Its address on its LAN bridge, the hosts' default gateway.
    pub lan_ip: Ipv4Addr,
    /// The LAN's first three octets, e.g. `[192, 0, 2]` (a /24).
    lan_net: [u8; 3],
    /// Hosts behind it so far.
    hosts: u8,
    /// Whether traffic bridged between its LAN hosts passes its iptables (`br_netfilter`):
    /// without it, LAN↔LAN traffic is neither counted nor blacked out.
    pub bridge_nf: bool,
}

/// A host behind a router.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Its LAN address.
    pub ip: Ipv4Addr,
    /// The router it sits behind.
    #[allow(
        dead_code,
        reason = "harness API for cases that look a host's router up"
    )]
    pub router: RouterId,
}

/// The comment marking a blackout's DROP rules.
const BLACKOUT: &str = "natlab-blackout";

/// A lab: the internet namespace, routers, hosts and the servers on the internet. Dropping it
/// kills every process inside its namespaces and deletes them.
pub struct Lab {
    /// Prefix of every namespace name of this lab.
    pub prefix: String,
    /// The internet namespace.
    pub inet: String,
    routers: Vec<Router>,
    hosts: Vec<Host>,
    /// Namespaces created, deleted in reverse order on drop.
    namespaces: Vec<String>,
    /// coturn and the index, once started.
    pub servers: Option<Servers>,
    /// Scratch directory (index database, coturn log, daemon state).
    pub dir: tempfile::TempDir,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Builds the internet namespace with its bridge, or says SKIP (see [`crate::skip`]) and
    /// returns `None` when this machine cannot run the lab: no `ip netns add` privilege, or
    /// no `iptables` or `turnserver`.
    pub fn new(test: &str) -> Option<Lab> {
        for tool in ["ip", "iptables", "turnserver", "sysctl"] {
            if !on_path(tool) {
                crate::skip(&format!("natlab {test}: `{tool}` is not installed"));
                return None;
            }
        }
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(sweep_stale_namespaces);
        let dir = tempfile::tempdir().expect("lab scratch directory");
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("nl{}x{n}", std::process::id());
        let inet = format!("{prefix}-inet");
        let added = Command::new("ip").args(["netns", "add", &inet]).output();
        match added {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                crate::skip(&format!(
                    "natlab {test}: `ip netns add` failed (no privilege?): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                return None;
            }
            Err(e) => {
                crate::skip(&format!("natlab {test}: cannot run `ip`: {e}"));
                return None;
            }
        }
        let lab = Lab {
            prefix,
            inet: inet.clone(),
            routers: Vec::new(),
            hosts: Vec::new(),
            namespaces: vec![inet.clone()],
            servers: None,
            dir,
        };
        lab.ns(&inet, &["ip", "link", "set", "lo", "up"]);
        lab.ns(&inet, &["ip", "link", "add", "br0", "type", "bridge"]);
        lab.ns(&inet, &["ip", "link", "set", "br0", "up"]);
        // The servers' addresses live on the bridge itself.
        for ip in [
            "203.0.113.10/24",
            &format!("{TURN_IP}/32"),
            "203.0.113.30/32",
        ] {
            lab.ns(&inet, &["ip", "addr", "add", ip, "dev", "br0"]);
        }
        Some(lab)
    }

    fn add_ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        run(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        self.ns(&name, &["ip", "link", "set", "lo", "up"]);
        name
    }

    /// Adds a router of `kind` on the internet (203.0.113.101 for the first, .102 for the
    /// second, …) with its LAN (192.0.2.0/24 behind the first, 198.51.100.0/24 behind the
    /// second; at most two). Its FORWARD chain counts UDP (see [`Lab::counters`]), accepts
    /// from the wan only what answers something sent from inside, and drops the rest.
    pub fn add_router(&mut self, kind: NatKind) -> RouterId {
        let i = self.routers.len();
        let lan_net = match i {
            0 => [192, 0, 2],
            1 => [198, 51, 100],
            _ => panic!("the lab has two LAN ranges, hence at most two routers"),
        };
        let ns = self.add_ns(&format!("r{}", i + 1));
        let wan_ip = Ipv4Addr::new(203, 0, 113, 101 + i as u8);
        let lan_ip = Ipv4Addr::new(lan_net[0], lan_net[1], lan_net[2], 1);
        let port = format!("r{}", i + 1);
        self.ns(
            &ns,
            &[
                "ip", "link", "add", "wan", "type", "veth", "peer", "name", &port, "netns",
                &self.inet,
            ],
        );
        self.ns(
            &self.inet,
            &["ip", "link", "set", &port, "master", "br0", "up"],
        );
        self.ns(
            &ns,
            &["ip", "addr", "add", &format!("{wan_ip}/24"), "dev", "wan"],
        );
        self.ns(&ns, &["ip", "link", "set", "wan", "up"]);
        self.ns(&ns, &["ip", "link", "add", "br0", "type", "bridge"]);
        self.ns(
            &ns,
            &["ip", "addr", "add", &format!("{lan_ip}/24"), "dev", "br0"],
        );
        self.ns(&ns, &["ip", "link", "set", "br0", "up"]);
        self.ns(&ns, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        let bridge_nf = enable_bridge_nf(&ns);
        let ipt = |args: &[&str]| {
            let mut full = vec!["iptables", "-w"];
            full.extend_from_slice(args);
            self.ns(&ns, &full);
        };
        let mut masquerade = vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "wan",
            "-j",
            "MASQUERADE",
        ];
        if kind == NatKind::Symmetric {
            masquerade.push("--random-fully");
        }
        ipt(&masquerade);
        // Counting rules without a target: each counts and lets the packet go on.
        ipt(&["-N", COUNT_CHAIN]);
        let turn = TURN_IP.to_string();
        for rule in [
            &[
                "-i",
                "br0",
                "-o",
                "br0",
                "-p",
                "udp",
                "-m",
                "comment",
                "--comment",
                "lan_lan",
            ][..],
            &[
                "-i",
                "br0",
                "-o",
                "wan",
                "-p",
                "udp",
                "-d",
                &turn,
                "-m",
                "comment",
                "--comment",
                "to_turn",
            ],
            &[
                "-i",
                "br0",
                "-o",
                "wan",
                "-p",
                "udp",
                "!",
                "-d",
                &turn,
                "-m",
                "comment",
                "--comment",
                "to_direct",
            ],
            &[
                "-i",
                "wan",
                "-o",
                "br0",
                "-p",
                "udp",
                "-s",
                &turn,
                "-m",
                "comment",
                "--comment",
                "from_turn",
            ],
            &[
                "-i",
                "wan",
                "-o",
                "br0",
                "-p",
                "udp",
                "!",
                "-s",
                &turn,
                "-m",
                "comment",
                "--comment",
                "from_direct",
            ],
        ] {
            let mut args = vec!["-A", COUNT_CHAIN];
            args.extend_from_slice(rule);
            ipt(&args);
        }
        ipt(&["-A", "FORWARD", "-j", COUNT_CHAIN]);
        ipt(&[
            "-A",
            "FORWARD",
            "-i",
            "wan",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]);
        // Unsolicited packets to the wan address that match no mapping are the router's own
        // (INPUT), not forwarded: dropped there too, counted under the same name.
        for chain in ["FORWARD", "INPUT"] {
            if chain == "INPUT" {
                ipt(&[
                    "-A",
                    chain,
                    "-i",
                    "wan",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "ESTABLISHED,RELATED",
                    "-j",
                    "ACCEPT",
                ]);
            }
            ipt(&[
                "-A",
                chain,
                "-i",
                "wan",
                "-m",
                "comment",
                "--comment",
                "dropped_inbound",
                "-j",
                "DROP",
            ]);
        }
        self.routers.push(Router {
            ns,
            kind,
            wan_ip,
            lan_ip,
            lan_net,
            hosts: 0,
            bridge_nf,
        });
        RouterId(i)
    }

    /// Adds a host behind `router` (LAN addresses .10, .11, … of its /24), its default route
    /// through the router.
    pub fn add_host(&mut self, router: RouterId) -> HostId {
        let r = self.routers[router.0].clone();
        let i = self.hosts.len();
        let ns = self.add_ns(&format!("h{}", i + 1));
        let ip = Ipv4Addr::new(r.lan_net[0], r.lan_net[1], r.lan_net[2], 10 + r.hosts);
        let port = format!("h{}", i + 1);
        self.ns(
            &ns,
            &[
                "ip", "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &r.ns,
            ],
        );
        self.ns(&r.ns, &["ip", "link", "set", &port, "master", "br0", "up"]);
        self.ns(
            &ns,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        );
        self.ns(&ns, &["ip", "link", "set", "eth0", "up"]);
        self.ns(
            &ns,
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &r.lan_ip.to_string(),
            ],
        );
        self.routers[router.0].hosts += 1;
        self.hosts.push(Host { ns, ip, router });
        HostId(i)
    }

    /// The router `id`.
    pub fn router(&self, id: RouterId) -> &Router {
        &self.routers[id.0]
    }

    /// The host `id`.
    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id.0]
    }

    /// Sets the conntrack UDP timeouts (`nf_conntrack_udp_timeout` and `_stream`) in the
    /// router's namespace: its NAT mappings expire after `secs` without traffic.
    pub fn set_udp_timeout(&self, router: RouterId, secs: u32) {
        let ns = &self.routers[router.0].ns;
        for key in [
            "nf_conntrack_udp_timeout",
            "nf_conntrack_udp_timeout_stream",
        ] {
            self.ns(
                ns,
                &["sysctl", "-q", "-w", &format!("net.netfilter.{key}={secs}")],
            );
        }
    }

    /// Makes the router drop everything it would forward, both ways and between its LAN
    /// hosts (`on`), or forward again (`!on`). Conntrack entries are kept, as a router whose
    /// link went down for a moment keeps them.
    /// Ending it returns how many packets it dropped.
    pub fn blackout(&self, router: RouterId, on: bool) -> u64 {
        blackout_ns(&self.routers[router.0].ns, on)
    }

    /// Forwards UDP `port` on the router's wan to `host`'s same port (a manual port forward,
    /// with which today's daemons reach each other across routers).
    pub fn port_forward(&self, router: RouterId, host: HostId, port: u16) {
        let ns = &self.routers[router.0].ns;
        let to = format!("{}:{port}", self.hosts[host.0].ip);
        let port = port.to_string();
        self.ns(
            ns,
            &[
                "iptables",
                "-w",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-i",
                "wan",
                "-p",
                "udp",
                "--dport",
                &port,
                "-j",
                "DNAT",
                "--to-destination",
                &to,
            ],
        );
        // Before the final DROP: the last rule of FORWARD.
        self.ns(
            ns,
            &[
                "iptables",
                "-w",
                "-I",
                "FORWARD",
                "2",
                "-i",
                "wan",
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "-j",
                "ACCEPT",
            ],
        );
    }

    /// The router's packet counters now.
    pub fn counters(&self, router: RouterId) -> Counters {
        counters::read(&self.routers[router.0].ns)
    }

    /// Runs `args` inside namespace `ns` (`ip netns exec`), panicking with its stderr when it
    /// fails; returns its stdout.
    pub fn ns(&self, ns: &str, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// The servers, which [`Lab::start_servers`] must have started.
    pub fn servers(&mut self) -> &mut Servers {
        self.servers
            .as_mut()
            .expect("Lab::start_servers was not called")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A failing test gets the servers' last words.
        if std::thread::panicking()
            && let Some(servers) = &self.servers
        {
            for (name, log) in [
                ("coturn", servers.turn_log()),
                ("index", servers.index_log()),
            ] {
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("--- {name} log of {} (last 15 lines) ---", self.prefix);
                for line in &lines[lines.len().saturating_sub(15)..] {
                    eprintln!("  {line}");
                }
            }
        }
        // Servers first (they say goodbye), then whatever still runs in any namespace.
        drop(self.servers.take());
        for ns in self.namespaces.iter().rev() {
            kill_all_in(ns);
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// [`Lab::blackout`] by the router's namespace name, for a task that cannot borrow the lab.
pub fn blackout_ns(router_ns: &str, on: bool) -> u64 {
    let mut args = vec!["ip", "netns", "exec", router_ns, "iptables", "-w"];
    let mut dropped = 0;
    if on {
        args.extend_from_slice(&["-I", "FORWARD", "1"]);
    } else {
        // What the blackout rule dropped, read before the rule goes.
        let listing = run(&[
            "ip", "netns", "exec", router_ns, "iptables", "-w", "-L", "FORWARD", "-v", "-x", "-n",
        ]);
        dropped = listing
            .lines()
            .filter(|line| line.contains(BLACKOUT))
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        args.extend_from_slice(&["-D", "FORWARD"]);
    }
    args.extend_from_slice(&["-m", "comment", "--comment", BLACKOUT, "-j", "DROP"]);
    run(&args);
    dropped
}
