//! The NAT traversal benchmark (issue 11): `bench_nat`, ignored by default, run by
//! `scripts/bench-nat.sh`. For each lab case (same router, cone × cone, cone × symmetric,
//! symmetric × symmetric) it builds one lab and measures, in that lab and in one run:
//!
//! 1. **As a user gets it**: fresh daemons alice and bob; the time from alice's first `/msg`
//!    to its `delivered` event (relay first: well under a second), the time from that `/msg`
//!    until alice's `path` event says `"via":"direct"` ("never" when it does not within
//!    [`DIRECT_WAIT`]), then the ack RTT (`rtt_ms` of `delivered`) of [`SAMPLES`] sequential
//!    messages on the path the conversation settled on (each sample filed under its receipt's
//!    `via`).
//! 2. **Relay forced**: alice and bob are gone; the routers also drop every UDP packet that
//!    is not to or from coturn (a firewall that lets only the relay through: the same hosts,
//!    NATs, coturn and daemons, only the direct path removed), and fresh daemons carol and
//!    dave do the same: first `/msg` to `delivered`, then [`SAMPLES`] RTTs, all relayed. This
//!    is the relay RTT of a case that would go direct, measured on the same topology rather
//!    than on the few messages that happen to precede the upgrade.
//! 3. **Baselines**, the firewall rules removed: a raw UDP echo between the two hosts over
//!    the direct path (to the peer's LAN address on one router; across both routers through
//!    a port forward on the second otherwise: the same NATs, routers and links as the direct
//!    path), and a raw UDP echo relayed by the same coturn, relay to relay as the daemons do,
//!    each end with the daemon's own sans-IO TURN client ([`Gatherer`]) on a socket in its
//!    host's namespace, credentials made as the index makes them.
//!
//! It prints one table per figure kind, with the ratios chat RTT / raw echo RTT.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peer_daemon::nat::turn::{Gatherer, Incoming, ServerConfig, TurnCredentials};

use crate::DAEMON_ARGS;
use crate::chat::MESSAGE_TIMEOUT;
use crate::lab::{Lab, NatKind, RouterId};
use crate::netns::in_netns;
use crate::pair::{Pair, Topology};
use crate::peer::LabDaemon;
use crate::servers::{TURN_IP, TURN_PORT, TURN_SECRET};

/// Sequential chat messages (and raw echoes) timed per phase.
const SAMPLES: usize = 100;
/// Raw echoes sent and not timed first (ARP, conntrack entries, TURN channel binding).
const WARMUP: usize = 10;
/// How long alice's path may take to become direct before it counts as "never".
const DIRECT_WAIT: Duration = Duration::from_secs(20);
/// A first delivery slower than this prints the sender's events.
const SLOW_FIRST: Duration = Duration::from_millis(100);
/// How long a raw echo may take before it counts as lost.
const ECHO_TIMEOUT: Duration = Duration::from_millis(500);
/// The UDP port of the raw echo server (outside the ephemeral range the daemons bind in).
const ECHO_PORT: u16 = 7000;
/// Bytes of a raw echo datagram: about a chat datagram carrying one benchmark message.
const ECHO_BYTES: usize = 160;
/// The comment marking the relay-only firewall rules.
const RELAY_ONLY: &str = "natlab-bench-relay-only";

/// The four cases of the issue, as named in the table.
const CASES: [(&str, Topology); 4] = [
    ("same router", Topology::SameRouter(NatKind::Cone)),
    (
        "cone × cone",
        Topology::TwoRouters(NatKind::Cone, NatKind::Cone),
    ),
    (
        "cone × symmetric",
        Topology::TwoRouters(NatKind::Cone, NatKind::Symmetric),
    ),
    (
        "symmetric × symmetric",
        Topology::TwoRouters(NatKind::Symmetric, NatKind::Symmetric),
    ),
];

/// The benchmark; see the module documentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it with scripts/bench-nat.sh"]
async fn bench_nat() {
    let mut rows = Vec::new();
    for (name, topology) in CASES {
        let Some(row) = bench_case(name, topology).await else {
            return;
        };
        rows.push(row);
    }
    print_tables(&rows);
}

/// What one case measured.
struct Row {
    name: &'static str,
    /// The fresh pair's first message.
    first: Opening,
    /// RTTs of the fresh pair after the first message, by receipt `via`.
    settled: BTreeMap<String, Vec<f64>>,
    /// The relay-forced pair's first message.
    relay_first: Opening,
    /// RTTs of the relay-forced pair, by receipt `via`.
    relayed: BTreeMap<String, Vec<f64>>,
    /// Raw UDP echo RTTs over the direct path, ms.
    raw_direct: Echoes,
    /// Raw UDP echo RTTs through coturn, ms.
    raw_relay: Echoes,
}

/// One case: a lab, the three phases of the module documentation.
async fn bench_case(name: &'static str, topology: Topology) -> Option<Row> {
    let test = format!("bench_nat {name}");
    let mut pair = Pair::new(&test, topology, DAEMON_ARGS).await?;
    let [ha, hb] = pair.hosts();

    let first = open(&mut pair.alice, &mut pair.bob, true).await;
    let settled = rtts(&mut pair.alice, &mut pair.bob, "settled").await;
    pair.alice.kill().await;
    pair.bob.kill().await;
    eprintln!("bench {name}: fresh pair done: {first:?}");

    for &router in &pair.routers {
        relay_only(&pair.lab, router, true);
    }
    let mut carol = pair.lab.spawn_daemon(ha, "carol", DAEMON_ARGS).await;
    let mut dave = pair.lab.spawn_daemon(hb, "dave", DAEMON_ARGS).await;
    let relay_first = open(&mut carol, &mut dave, false).await;
    let relayed = rtts(&mut carol, &mut dave, "relayed").await;
    carol.kill().await;
    dave.kill().await;
    for &router in &pair.routers {
        relay_only(&pair.lab, router, false);
    }
    eprintln!("bench {name}: relay-forced pair done: {relay_first:?}");

    let (client_ns, server_ns) = (pair.lab.host(ha).ns.clone(), pair.lab.host(hb).ns.clone());
    let target = match topology {
        Topology::SameRouter(_) => SocketAddr::from((pair.lab.host(hb).ip, ECHO_PORT)),
        Topology::TwoRouters(..) => {
            let router = pair.routers[1];
            pair.lab.port_forward(router, hb, ECHO_PORT);
            SocketAddr::from((pair.lab.router(router).wan_ip, ECHO_PORT))
        }
    };
    let raw_direct = tokio::task::block_in_place(|| udp_echo(&client_ns, &server_ns, target));
    let raw_relay = tokio::task::block_in_place(|| relay_echo(&client_ns, &server_ns));
    eprintln!(
        "bench {name}: raw echoes done ({} and {} lost)",
        raw_direct.lost, raw_relay.lost
    );
    Some(Row {
        name,
        first,
        settled,
        relay_first,
        relayed,
        raw_direct,
        raw_relay,
    })
}

// ---------------------------------------------------------------------------------------------
// Chat phases.

/// A pair's first message.
#[derive(Debug)]
struct Opening {
    /// From writing the `/msg` to reading its `delivered`.
    delivered: Duration,
    /// The receipt's `via`.
    via: String,
    /// The receipt's `rtt_ms`.
    rtt_ms: f64,
    /// When the path became direct, if waited for.
    direct: Option<Direct>,
}

/// When a pair's path became direct, as `a` reported it.
#[derive(Debug, Clone, Copy)]
enum Direct {
    /// Before the first `/msg`: the `path` event had been emitted when it was written (the
    /// daemons greet each other in the lobby when they register, and the greetings punch).
    Before,
    /// This long after the `/msg` was written, when its `path` event was read.
    After(Duration),
    /// Not within [`DIRECT_WAIT`].
    Never,
}

/// `a`'s first message to `b`, timed; with `wait_direct`, then waits (bounded) for `a`'s path
/// to `b` to become direct. Checks that `b` got the message.
async fn open(a: &mut LabDaemon, b: &mut LabDaemon, wait_direct: bool) -> Opening {
    let text = format!("bench: first message from {}", a.name);
    // Events already emitted are read (and time-stamped) before the clock starts.
    a.drain();
    let start = Instant::now();
    a.send_line(&format!("/msg {} {text}", b.uuid)).await;
    let receipt = a.receipt(b.uuid, MESSAGE_TIMEOUT).await;
    let delivered = start.elapsed();
    if delivered > SLOW_FIRST {
        // What the sender saw meanwhile (its path events) is what explains a slow one.
        eprintln!(
            "bench: {} → {}: the first message took {delivered:?}: {receipt}{}",
            a.name,
            b.name,
            a.diagnostics()
        );
    }
    let direct = if wait_direct {
        let seen = a
            .try_wait_path(b.uuid, "direct", DIRECT_WAIT.saturating_sub(delivered))
            .await;
        Some(match seen {
            Some((_, at)) => at
                .checked_duration_since(start)
                .map_or(Direct::Before, Direct::After),
            None => Direct::Never,
        })
    } else {
        None
    };
    let from = a.uuid.to_string();
    b.expect(
        "message",
        |v| v["from"] == from.as_str() && v["text"] == text.as_str(),
        MESSAGE_TIMEOUT,
    )
    .await;
    let to = b.uuid.to_string();
    a.expect("sent", |v| v["to"] == to.as_str(), MESSAGE_TIMEOUT)
        .await;
    Opening {
        delivered,
        via: receipt["via"].as_str().unwrap_or("none").to_owned(),
        rtt_ms: receipt["rtt_ms"].as_f64().unwrap_or(f64::NAN),
        direct,
    }
}

/// [`SAMPLES`] messages `a` → `b`, one at a time (the next `/msg` after the previous
/// `delivered`): their `rtt_ms` by the receipt's `via`. Checks that `b` got them all in order.
async fn rtts(a: &mut LabDaemon, b: &mut LabDaemon, tag: &str) -> BTreeMap<String, Vec<f64>> {
    let text = |i: usize| format!("bench-{tag}-{i:04} {}", "x".repeat(80));
    let mut by_via: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for i in 0..SAMPLES {
        a.send_line(&format!("/msg {} {}", b.uuid, text(i))).await;
        let receipt = a.receipt(b.uuid, MESSAGE_TIMEOUT).await;
        let rtt = receipt["rtt_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: a receipt without rtt_ms: {receipt}", a.name));
        let via = receipt["via"].as_str().unwrap_or("none").to_owned();
        by_via.entry(via).or_default().push(rtt);
    }
    let from = a.uuid.to_string();
    for i in 0..SAMPLES {
        let got = b
            .expect("message", |v| v["from"] == from.as_str(), MESSAGE_TIMEOUT)
            .await;
        assert_eq!(
            got["text"],
            text(i).as_str(),
            "{} got {}'s benchmark messages out of order or twice at #{i}",
            b.name,
            a.name
        );
    }
    let to = b.uuid.to_string();
    for _ in 0..SAMPLES {
        a.expect("sent", |v| v["to"] == to.as_str(), MESSAGE_TIMEOUT)
            .await;
    }
    by_via
}

/// Adds (`on`) or removes the relay-only firewall on `router`: drop forwarded UDP to or from
/// the wan unless it is coturn's, and UDP between LAN hosts. Before the router's own rules,
/// so its counters do not see what this drops.
fn relay_only(lab: &Lab, router: RouterId, on: bool) {
    let ns = lab.router(router).ns.clone();
    let turn = TURN_IP.to_string();
    let turn = turn.as_str();
    let rules: [&[&str]; 3] = [
        &["-o", "wan", "-p", "udp", "!", "-d", turn],
        &["-i", "wan", "-p", "udp", "!", "-s", turn],
        &["-i", "br0", "-o", "br0", "-p", "udp"],
    ];
    for rule in rules {
        let mut args = vec!["iptables", "-w"];
        args.extend_from_slice(if on {
            &["-I", "FORWARD", "1"][..]
        } else {
            &["-D", "FORWARD"][..]
        });
        args.extend_from_slice(rule);
        args.extend_from_slice(&["-m", "comment", "--comment", RELAY_ONLY, "-j", "DROP"]);
        lab.ns(&ns, &args);
    }
}

// ---------------------------------------------------------------------------------------------
// Raw baselines.

/// Raw echo round trips, ms, and how many echoes were lost.
#[derive(Debug, Default)]
struct Echoes {
    rtts: Vec<f64>,
    lost: usize,
}

/// A datagram of [`ECHO_BYTES`] starting with the sequence number `seq`.
fn echo_datagram(seq: u32) -> Vec<u8> {
    let mut datagram = vec![b'x'; ECHO_BYTES];
    datagram[..4].copy_from_slice(&seq.to_be_bytes());
    datagram
}

/// Whether `datagram` is the echo of [`echo_datagram`]`(seq)`.
fn is_echo(datagram: &[u8], seq: u32) -> bool {
    datagram.len() == ECHO_BYTES && datagram[..4] == seq.to_be_bytes()
}

/// The client end of a raw echo.
trait EchoClient {
    /// Sends one datagram towards the echo server.
    fn send(&mut self, datagram: &[u8]);
    /// The next datagram from the echo server that arrives before `limit`, if any.
    fn receive(&mut self, limit: Instant) -> Option<Vec<u8>>;
}

/// Times `WARMUP + SAMPLES` echoes through `client`, one at a time, the first `WARMUP`
/// untimed.
fn time_echoes(client: &mut impl EchoClient) -> Echoes {
    let mut echoes = Echoes::default();
    for i in 0..WARMUP + SAMPLES {
        let seq = i as u32;
        let datagram = echo_datagram(seq);
        let start = Instant::now();
        client.send(&datagram);
        let limit = start + ECHO_TIMEOUT;
        let echoed = loop {
            match client.receive(limit) {
                Some(datagram) if is_echo(&datagram, seq) => break true,
                Some(_) => {}
                None if Instant::now() >= limit => break false,
                None => {}
            }
        };
        let rtt = start.elapsed();
        if i >= WARMUP {
            if echoed {
                echoes.rtts.push(rtt.as_secs_f64() * 1e3);
            } else {
                echoes.lost += 1;
            }
        }
    }
    assert!(
        echoes.lost * 10 < SAMPLES,
        "{} of {SAMPLES} raw echoes lost: the baseline path does not work",
        echoes.lost
    );
    echoes
}

/// A plain UDP socket sending to one address.
struct UdpClient {
    socket: UdpSocket,
    target: SocketAddr,
    buf: Vec<u8>,
}

impl EchoClient for UdpClient {
    fn send(&mut self, datagram: &[u8]) {
        self.socket
            .send_to(datagram, self.target)
            .expect("sending an echo");
    }

    fn receive(&mut self, limit: Instant) -> Option<Vec<u8>> {
        let wait = limit.saturating_duration_since(Instant::now());
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_micros(100))))
            .ok()?;
        let (len, _) = self.socket.recv_from(&mut self.buf).ok()?;
        Some(self.buf[..len].to_vec())
    }
}

/// A UDP echo server on `ECHO_PORT` in `server_ns`, a client in `client_ns` sending to
/// `target`: the direct-path baseline.
fn udp_echo(client_ns: &str, server_ns: &str, target: SocketAddr) -> Echoes {
    let server = in_netns(server_ns, || {
        UdpSocket::bind(("0.0.0.0", ECHO_PORT)).expect("binding the echo server")
    });
    let client = in_netns(client_ns, || {
        UdpSocket::bind("0.0.0.0:0").expect("binding the echo client")
    });
    server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((len, from)) = server.recv_from(&mut buf) {
                    let _ = server.send_to(&buf[..len], from);
                }
            }
        })
    };
    let mut client = UdpClient {
        socket: client,
        target,
        buf: vec![0; 2048],
    };
    let echoes = time_echoes(&mut client);
    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo server thread");
    echoes
}

/// One end of the relayed baseline: the daemon's TURN client on a socket of its own.
struct TurnEnd {
    gatherer: Gatherer,
    socket: UdpSocket,
    read_timeout: Option<Duration>,
}

impl TurnEnd {
    /// A socket in `ns` and a gatherer allocating on the lab's coturn with credentials made
    /// as the index makes them (username `<expiry>:<name>`, password
    /// base64(HMAC-SHA1(secret, username))).
    fn new(ns: &str, name: &str, seed: u8) -> TurnEnd {
        let socket = in_netns(ns, || {
            UdpSocket::bind("0.0.0.0:0").expect("binding a TURN client socket")
        });
        let now = Instant::now();
        let mut gatherer = Gatherer::new(now, [seed; 32]);
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            + 3600;
        let username = format!("{expiry}:{name}");
        let password = index_service::ice::turn_credential(TURN_SECRET.as_bytes(), &username);
        gatherer.set_servers(
            now,
            vec![ServerConfig {
                addr: SocketAddr::from((TURN_IP, TURN_PORT)),
                turn: Some(TurnCredentials { username, password }),
            }],
        );
        TurnEnd {
            gatherer,
            socket,
            read_timeout: None,
        }
    }

    /// Sends what the gatherer wants sent and forgets its events.
    fn flush(&mut self) {
        while let Some((to, bytes)) = self.gatherer.poll_transmit() {
            let _ = self.socket.send_to(&bytes, to);
        }
        while self.gatherer.poll_event().is_some() {}
    }

    /// Waits until `limit` at most for one datagram and handles it and the gatherer's
    /// timers; a peer's datagram that came through the relay is returned.
    fn step(&mut self, limit: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        self.flush();
        let now = Instant::now();
        let until = self
            .gatherer
            .poll_timeout()
            .map_or(limit, |at| at.min(limit));
        let wait = until
            .saturating_duration_since(now)
            .max(Duration::from_micros(100));
        // Rounded to milliseconds so that the steady state makes no syscall for it.
        let wait = Some(Duration::from_millis(wait.as_millis().max(1) as u64));
        if self.read_timeout != wait {
            self.socket.set_read_timeout(wait).expect("read timeout");
            self.read_timeout = wait;
        }
        let mut buf = [0u8; 2048];
        let got = match self.socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                match self
                    .gatherer
                    .handle_datagram(Instant::now(), from, &buf[..len])
                {
                    Incoming::Relayed { peer, data } => Some((peer, data)),
                    Incoming::Consumed | Incoming::NotOurs => None,
                }
            }
            Err(_) => None,
        };
        let now = Instant::now();
        if self.gatherer.poll_timeout().is_some_and(|at| at <= now) {
            self.gatherer.handle_timeout(now);
        }
        self.flush();
        got
    }

    /// Waits for the allocation; its relayed address.
    fn allocate(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(relayed) = self.gatherer.relayed() {
                return relayed;
            }
            assert!(
                Instant::now() < deadline,
                "no TURN allocation within 10 s: {:?}",
                self.gatherer.stats()
            );
            self.step(Instant::now() + Duration::from_millis(50));
        }
    }

    /// Sends `data` to `peer` through the allocation.
    fn send(&mut self, peer: SocketAddr, data: &[u8]) {
        if let Some((to, bytes)) = self.gatherer.wrap(Instant::now(), peer, data) {
            let _ = self.socket.send_to(&bytes, to);
        }
        self.flush();
    }
}

/// The relayed baseline: an allocation in each host's namespace, the client's echoes sent
/// from its allocation to the server's, which sends them back the same way.
fn relay_echo(client_ns: &str, server_ns: &str) -> Echoes {
    let mut client = TurnEnd::new(client_ns, "bench-echo-client", 1);
    let mut server = TurnEnd::new(server_ns, "bench-echo-server", 2);
    let client_relay = client.allocate();
    let server_relay = server.allocate();
    server.gatherer.permit(Instant::now(), client_relay.ip());
    client.gatherer.permit(Instant::now(), server_relay.ip());
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let limit = Instant::now() + Duration::from_millis(50);
                if let Some((peer, data)) = server.step(limit) {
                    server.send(peer, &data);
                }
            }
            server.gatherer.stats()
        })
    };
    let echoes = time_echoes(&mut RelayClient {
        end: client,
        server: server_relay,
    });
    stop.store(true, Ordering::Relaxed);
    let stats = echo.join().expect("relay echo thread");
    eprintln!("bench: relay echo server's TURN counters: {stats:?}");
    echoes
}

/// The client end of the relayed echo: sends to the server's relayed address.
struct RelayClient {
    end: TurnEnd,
    server: SocketAddr,
}

impl EchoClient for RelayClient {
    fn send(&mut self, datagram: &[u8]) {
        self.end.send(self.server, datagram);
    }

    fn receive(&mut self, limit: Instant) -> Option<Vec<u8>> {
        loop {
            match self.end.step(limit) {
                Some((peer, data)) if peer == self.server => return Some(data),
                Some(_) => {}
                None => return None,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tables.

/// The `p`-quantile (0..=1) of `samples` (nearest rank), or `None` when there are none.
fn quantile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// "p50 / p90 (n)" in ms, or "—".
fn p50_p90(samples: &[f64]) -> String {
    match (quantile(samples, 0.5), quantile(samples, 0.9)) {
        (Some(p50), Some(p90)) => format!("{p50:.3} / {p90:.3} ({})", samples.len()),
        _ => "—".to_owned(),
    }
}

/// `chat` p50 over `raw` p50, or "—".
fn ratio(chat: &[f64], raw: &[f64]) -> String {
    match (quantile(chat, 0.5), quantile(raw, 0.5)) {
        (Some(chat), Some(raw)) if raw > 0.0 => format!("{:.1}×", chat / raw),
        _ => "—".to_owned(),
    }
}

/// The samples filed under `via`.
fn via<'a>(by_via: &'a BTreeMap<String, Vec<f64>>, via: &str) -> &'a [f64] {
    by_via.get(via).map_or(&[], Vec::as_slice)
}

/// Prints the benchmark's tables (Markdown) on stdout.
fn print_tables(rows: &[Row]) {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!();
    println!(
        "First message and upgrade (fresh daemons; relay forced: only coturn's UDP passes the routers)"
    );
    println!();
    println!(
        "| case | first /msg → delivered | its via, rtt_ms | first /msg → path direct | relay forced: first /msg → delivered |"
    );
    println!("|---|---:|---|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {}, {:.2} ms | {} | {} ({}) |",
            row.name,
            ms(row.first.delivered),
            row.first.via,
            row.first.rtt_ms,
            match row.first.direct {
                Some(Direct::Before) => "before the /msg".to_owned(),
                Some(Direct::After(after)) => ms(after),
                Some(Direct::Never) | None => format!("never (≥ {} s)", DIRECT_WAIT.as_secs()),
            },
            ms(row.relay_first.delivered),
            row.relay_first.via,
        );
    }
    println!();
    println!(
        "Ack RTT (`rtt_ms` of `delivered`), ms, p50 / p90 (samples), {SAMPLES} sequential messages; raw UDP echo {SAMPLES} after {WARMUP} untimed"
    );
    println!();
    println!(
        "| case | chat direct | raw echo direct | ratio | chat relayed | raw echo via coturn | ratio | fresh pair's receipts |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let direct = via(&row.settled, "direct");
        // The relay figures come from the relay-forced pair; a case that stays relayed
        // anyway shows its own relayed samples in the last column.
        let relayed = via(&row.relayed, "relay");
        let receipts: Vec<String> = row
            .settled
            .iter()
            .map(|(via, samples)| format!("{via}: {}", p50_p90(samples)))
            .collect();
        let others: usize = row
            .relayed
            .iter()
            .filter(|(via, _)| via.as_str() != "relay")
            .map(|(_, samples)| samples.len())
            .sum();
        let note = if others > 0 {
            format!(" ({others} relay-forced receipts not via relay)")
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {} | {}{note} | {} | {} | {} |",
            row.name,
            p50_p90(direct),
            p50_p90(&row.raw_direct.rtts),
            ratio(direct, &row.raw_direct.rtts),
            p50_p90(relayed),
            p50_p90(&row.raw_relay.rtts),
            ratio(relayed, &row.raw_relay.rtts),
            receipts.join("; "),
        );
    }
    println!();
    let lost: Vec<String> = rows
        .iter()
        .map(|r| format!("{}: {}+{}", r.name, r.raw_direct.lost, r.raw_relay.lost))
        .collect();
    println!(
        "Raw echoes lost (direct+relayed, of {SAMPLES} each): {}",
        lost.join(", ")
    );
}
