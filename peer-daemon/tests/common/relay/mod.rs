//! A lossy UDP relay for end-to-end tests and the benchmark: a bad network between two real
//! daemons, on 127.0.0.1.
//!
//! It stands in front of one daemon like a NAT's port forward: datagrams arriving on its front
//! socket (the port the daemon registers with `--public-port`) go on to the daemon's real
//! address, each correspondent's from its own back socket (its mapping, opened when it first
//! speaks); what the daemon sends to a back socket goes to that mapping's correspondent. The
//! daemon thus sees each correspondent at a mapping's address, so its replies cross the relay
//! too. What the daemon sends on its own initiative to a correspondent's real address does not
//! cross the relay (loopback has no default route to force through it): start the daemon behind
//! the relay before the others, so that they make the first contact (e.g. the lobby greeting a
//! newcomer sends to the members already there).
//!
//! Each direction (and each mapping's way back) is a [`lane`]: it drops, duplicates, delays and
//! reorders datagrams on its own seeded RNG, so a given arrival order always meets the same
//! fate, and counts what it did: a test can check that the network really was bad, not only
//! that the chat survived it.
//!
//! Shared by `tests/` (through `common`) and `examples/bench.rs` (through `#[path]`), hence no
//! dependency on anything else in `common`. It is a `mod.rs` so that `lane` resolves to
//! `relay/lane.rs` both ways (a file loaded through `#[path]` looks for its submodules beside it).

#![allow(dead_code)]

mod lane;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use lane::{Counters, Lane};
pub use lane::{DirectionStats, Impairment};

/// How the relay treats both directions.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// Front to back: towards the daemon behind the relay.
    pub up: Impairment,
    /// Back to front: from the daemon behind the relay.
    pub down: Impairment,
    /// Seeds both directions' RNGs.
    pub seed: u64,
}

impl RelayConfig {
    /// The same impairment both ways.
    pub fn symmetric(impairment: Impairment, seed: u64) -> RelayConfig {
        RelayConfig {
            up: impairment,
            down: impairment,
            seed,
        }
    }
}

/// What both directions did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Towards the daemon behind the relay.
    pub up: DirectionStats,
    /// From the daemon behind the relay.
    pub down: DirectionStats,
    /// Correspondents seen, each with its own mapping.
    pub mappings: u64,
}

/// A running relay; dropping it stops it.
pub struct Relay {
    /// The front socket's address: what the daemon behind the relay registers.
    pub front: SocketAddr,
    /// The daemon behind the relay.
    pub target: SocketAddr,
    shared: Arc<Shared>,
}

/// What every task of one relay uses.
struct Shared {
    front: Arc<UdpSocket>,
    target: SocketAddr,
    config: RelayConfig,
    up: Arc<Counters>,
    down: Arc<Counters>,
    mappings: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Relay {
    /// Relays between `front` (bound by the caller, so its port can be handed to the daemon
    /// before the relay starts) and the daemon at `target`. Datagrams that reached `front`
    /// earlier wait in its buffer. Must be called inside a tokio runtime.
    pub async fn start(front: UdpSocket, target: SocketAddr, config: RelayConfig) -> Relay {
        let front_addr = front.local_addr().expect("the relay's front address");
        let shared = Arc::new(Shared {
            front: Arc::new(front),
            target,
            config,
            up: Arc::default(),
            down: Arc::default(),
            mappings: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let lane = Lane::new(config.up, config.seed, shared.up.clone());
        let task = tokio::spawn(upward(shared.clone(), lane));
        shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        Relay {
            front: front_addr,
            target,
            shared,
        }
    }

    /// The counters of both directions.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            up: self.shared.up.snapshot(),
            down: self.shared.down.snapshot(),
            mappings: self.shared.mappings.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for task in tasks.iter() {
            task.abort();
        }
    }
}

/// Front to back: from any correspondent to the daemon, each correspondent through its own
/// mapping (back socket), opened when it first speaks.
async fn upward(shared: Arc<Shared>, mut lane: Lane) {
    let mut buf = vec![0u8; 65_536];
    let mut mappings: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    loop {
        let next_due = lane.next_due();
        tokio::select! {
            received = shared.front.recv_from(&mut buf) => {
                // Errors here are ICMP echoes of earlier sends; the socket is fine.
                let Ok((len, client)) = received else { continue };
                let back = match mappings.get(&client) {
                    Some(back) => back.clone(),
                    None => {
                        let back = open_mapping(&shared, client).await;
                        mappings.insert(client, back.clone());
                        back
                    }
                };
                lane.take(&buf[..len], &back, shared.target).await;
            }
            () = sleep_until(next_due), if next_due.is_some() => lane.release_due().await,
        }
    }
}

/// A back socket for `client`, and the task relaying what the daemon sends to it.
async fn open_mapping(shared: &Arc<Shared>, client: SocketAddr) -> Arc<UdpSocket> {
    let back = UdpSocket::bind(SocketAddr::new(shared.target.ip(), 0))
        .await
        .expect("binding a relay mapping");
    let back = Arc::new(back);
    let n = shared.mappings.fetch_add(1, Ordering::Relaxed);
    let seed = shared.config.seed ^ 0x9e37_79b9_7f4a_7c15 ^ n;
    let lane = Lane::new(shared.config.down, seed, shared.down.clone());
    let task = tokio::spawn(downward(shared.clone(), back.clone(), client, lane));
    shared
        .tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(task);
    back
}

/// Back to front for one mapping: from the daemon only, to the correspondent it belongs to.
async fn downward(shared: Arc<Shared>, back: Arc<UdpSocket>, client: SocketAddr, mut lane: Lane) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let next_due = lane.next_due();
        tokio::select! {
            received = back.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                if from != shared.target {
                    Counters::bump(&lane.counters.unroutable);
                    continue;
                }
                lane.take(&buf[..len], &shared.front, client).await;
            }
            () = sleep_until(next_due), if next_due.is_some() => lane.release_due().await,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
