//! A case's cast: a lab with its servers and two daemons, alice and bob ([`Pair`]), where
//! they sit ([`Topology`]), and the path their conversation must take ([`Expect`]), judged
//! from the routers' counters and, with path checks on, the daemons' `path` events.

use std::net::SocketAddr;
use std::time::Duration;

use crate::chat::{self, assert_delivered_via, exchange, expect_path, first_message};
use crate::counters::Counters;
use crate::lab::{HostId, Lab, NatKind, RouterId};
use crate::peer::LabDaemon;
use crate::servers::TURN_IP;
use crate::{BULK, DAEMON_ARGS};

/// Where the two daemons of a case sit.
#[derive(Debug, Clone, Copy)]
pub enum Topology {
    /// Both behind one router of this kind.
    SameRouter(NatKind),
    /// Each behind its own router: alice behind the first, bob behind the second.
    TwoRouters(NatKind, NatKind),
}

/// Which path the bulk phase must take, judged from the routers' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
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
pub struct Pair {
    // Field order is drop order: the daemons go before the lab removes their namespaces.
    /// The first daemon (behind the first router).
    pub alice: LabDaemon,
    /// The second daemon.
    pub bob: LabDaemon,
    /// The routers, one or two.
    pub routers: Vec<RouterId>,
    /// alice's host, bob's host.
    hosts: [HostId; 2],
    /// The lab, to change the network mid-case.
    pub lab: Lab,
}

impl Pair {
    /// Builds the lab for `topology`, starts the servers and the two daemons; `None` when
    /// the lab is skipped on this machine.
    pub async fn new(test: &str, topology: Topology, extra: &[&str]) -> Option<Pair> {
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

    /// alice's host and bob's host.
    pub fn hosts(&self) -> [HostId; 2] {
        self.hosts
    }

    /// The counters of all the pair's routers, added up.
    pub fn counters(&self) -> Counters {
        self.routers.iter().fold(Counters::default(), |sum, &r| {
            sum.plus(&self.lab.counters(r))
        })
    }

    /// The first message (fast whatever the path), then, with path checks on, waiting until
    /// both ends use the path `expect` names.
    pub async fn open(&mut self, expect: Expect) {
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
    pub async fn bulk(&mut self, tag: &str, expect: Expect, pace: Option<Duration>) -> Counters {
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
pub async fn case(test: &str, topology: Topology, expect: Expect) {
    let Some(mut pair) = Pair::new(test, topology, DAEMON_ARGS).await else {
        return;
    };
    pair.open(expect).await;
    pair.bulk(test, expect, None).await;
}
