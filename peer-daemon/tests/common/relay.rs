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
//! Each direction (and each mapping's way back) drops, duplicates, delays and reorders
//! datagrams on its own seeded RNG, so a given arrival order always meets the same fate, and counts what it did: a test can check that
//! the network really was bad, not only that the chat survived it.
//!
//! Shared by `tests/` (through `common`) and `examples/bench.rs` (through `#[path]`), hence no
//! dependency on anything else in `common`.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What one direction does to the datagrams crossing it. Every datagram is first dropped with
/// probability `loss`; a survivor is sent twice with probability `duplicate`. Each copy waits
/// `latency`, plus with probability `reorder` a further uniformly random delay of up to
/// `reorder_delay`, which lets later datagrams overtake it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Probability of dropping a datagram.
    pub loss: f64,
    /// Probability of sending a surviving datagram twice.
    pub duplicate: f64,
    /// Probability of holding a copy back by a random extra delay.
    pub reorder: f64,
    /// The longest extra delay of a held-back copy.
    pub reorder_delay: Duration,
    /// Delay of every copy.
    pub latency: Duration,
}

impl Impairment {
    /// A perfect link.
    pub const NONE: Impairment = Impairment {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::ZERO,
        latency: Duration::ZERO,
    };

    /// Only loss, no added delay.
    pub fn loss(loss: f64) -> Impairment {
        Impairment {
            loss,
            ..Impairment::NONE
        }
    }
}

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

/// What one direction did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams that arrived to be relayed.
    pub received: u64,
    /// Copies sent on (duplicates included).
    pub forwarded: u64,
    /// Datagrams dropped on purpose.
    pub dropped: u64,
    /// Datagrams sent twice.
    pub duplicated: u64,
    /// Copies given a random extra delay.
    pub delayed: u64,
    /// Copies sent after a copy of a datagram that arrived later: reordering that happened.
    pub reordered: u64,
    /// Datagrams that reached a mapping's socket from someone other than the daemon.
    pub unroutable: u64,
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

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
    unroutable: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            received: get(&self.received),
            forwarded: get(&self.forwarded),
            dropped: get(&self.dropped),
            duplicated: get(&self.duplicated),
            delayed: get(&self.delayed),
            reordered: get(&self.reordered),
            unroutable: get(&self.unroutable),
        }
    }
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

/// A copy waiting for its time.
struct Held {
    due: Instant,
    arrival: u64,
    bytes: Vec<u8>,
    via: Arc<UdpSocket>,
    to: SocketAddr,
}

impl Held {
    fn key(&self) -> (Instant, u64) {
        (self.due, self.arrival)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By due time, then arrival.
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// One stream of datagrams and what befalls them: its own RNG, its held-back copies, and its
/// view of the arrival order (for counting reordering).
struct Lane {
    impairment: Impairment,
    rng: StdRng,
    counters: Arc<Counters>,
    held: BinaryHeap<Reverse<Held>>,
    arrivals: u64,
    /// The latest arrival number sent on so far: a copy of an earlier one is reordered.
    newest_sent: Option<u64>,
}

impl Lane {
    fn new(impairment: Impairment, seed: u64, counters: Arc<Counters>) -> Lane {
        Lane {
            impairment,
            rng: StdRng::seed_from_u64(seed),
            counters,
            held: BinaryHeap::new(),
            arrivals: 0,
            newest_sent: None,
        }
    }

    /// Takes one arriving datagram, to go on `via` to `to`: now, later, twice or never.
    async fn take(&mut self, bytes: &[u8], via: &Arc<UdpSocket>, to: SocketAddr) {
        Counters::bump(&self.counters.received);
        let arrival = self.arrivals;
        self.arrivals += 1;
        for delay in self.fate() {
            if delay.is_zero() {
                self.send(bytes, arrival, via, to).await;
            } else {
                self.held.push(Reverse(Held {
                    due: Instant::now() + delay,
                    arrival,
                    bytes: bytes.to_vec(),
                    via: via.clone(),
                    to,
                }));
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    /// Sends every held copy whose time has come.
    async fn release_due(&mut self) {
        let now = Instant::now();
        while self.held.peek().is_some_and(|Reverse(h)| h.due <= now) {
            let Reverse(copy) = self.held.pop().expect("peeked");
            self.send(&copy.bytes, copy.arrival, &copy.via, copy.to)
                .await;
        }
    }

    /// The delays of the copies to send: none if dropped, two if duplicated.
    fn fate(&mut self) -> Vec<Duration> {
        let imp = self.impairment;
        if self.rng.random_bool(imp.loss) {
            Counters::bump(&self.counters.dropped);
            return Vec::new();
        }
        let copies = if self.rng.random_bool(imp.duplicate) {
            Counters::bump(&self.counters.duplicated);
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let mut delay = imp.latency;
                if self.rng.random_bool(imp.reorder) {
                    Counters::bump(&self.counters.delayed);
                    let max = imp.reorder_delay.as_micros() as u64;
                    delay += Duration::from_micros(self.rng.random_range(0..=max));
                }
                delay
            })
            .collect()
    }

    async fn send(&mut self, bytes: &[u8], arrival: u64, via: &UdpSocket, to: SocketAddr) {
        if self.newest_sent.is_some_and(|newest| arrival < newest) {
            Counters::bump(&self.counters.reordered);
        } else {
            self.newest_sent = Some(arrival);
        }
        // A full socket buffer loses the datagram, like a real network would.
        if via.send_to(bytes, to).await.is_ok() {
            Counters::bump(&self.counters.forwarded);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The IPv4 UDP sockets process `pid` has bound, read from `/proc` (Linux). The daemon binds
/// `127.0.0.1:0` and registers the relay's port, so this is how to learn where it really is.
pub fn udp_sockets_of(pid: u32) -> std::io::Result<Vec<SocketAddr>> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed meanwhile is simply not a socket of interest.
        let Ok(link) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.push(inode.to_owned());
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/udp"))?;
    let mut found = Vec::new();
    // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(inode)) = (fields.get(1), fields.get(9)) else {
            continue;
        };
        if !inodes.iter().any(|i| i == inode) {
            continue;
        }
        let Some((ip, port)) = local.split_once(':') else {
            continue;
        };
        // The address is the network-order word printed as a native integer; the port is plain.
        let (Ok(ip), Ok(port)) = (u32::from_str_radix(ip, 16), u16::from_str_radix(port, 16))
        else {
            continue;
        };
        let ip = std::net::Ipv4Addr::from(u32::from_be(ip));
        found.push(SocketAddr::from((ip, port)));
    }
    Ok(found)
}
