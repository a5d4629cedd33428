//! peerlink's loopback benchmark: real daemons against raw UDP, measured in one run on one
//! machine, so only the ratios mean anything elsewhere.
//!
//! `scripts/bench-chat.sh` builds the release binaries and runs this; it starts the release
//! `index-service` and three `peer-daemon`s found next to it (alice sends; bob listens
//! directly; carol listens behind the lossy relay of `tests/common/relay/`), and prints:
//!
//! - the ack round trip of one message at a time against a raw UDP echo of the same size,
//! - reliable, encrypted throughput of pipelined messages against raw one-way UDP,
//! - both again through the relay with loss.
//!
//! The daemon is driven through stdin and stdout like any script would, so the figures include
//! that plumbing; it is measured on its own (`/peers` → `peers`), and the daemon's own `rtt_ms`
//! is reported beside the wall clock. Nothing asserts on speed.

#[path = "../tests/common/process.rs"]
mod process;
#[path = "../tests/common/relay/mod.rs"]
mod relay;

#[path = "bench/baseline.rs"]
mod baseline;
#[path = "bench/daemon.rs"]
mod daemon;
#[path = "bench/profile.rs"]
mod profile;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/stats.rs"]
mod stats;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use baseline::{EchoServer, Sink};
use daemon::Daemon;
use profile::Watch;
use relay::{Impairment, Relay, RelayConfig};
use report::{Results, report};
use stats::{Throughput, cpu_time, receive_buffer_drops};

/// Loopback benchmark of peerlink's chat path against raw UDP.
#[derive(Debug, Parser)]
struct Options {
    /// Messages sent one at a time per round-trip measurement.
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Unmeasured round trips before each measurement.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Messages pipelined per throughput measurement.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Throughput runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Payload bytes per message (ASCII text).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// The relay's loss probability, each way.
    #[arg(long, default_value_t = 0.05)]
    loss: f64,
    /// Seed of the relay's RNG.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Record `perf` profiles of alice and bob during the direct round-trip and throughput
    /// runs into this directory (`round-trip.data`, `throughput.data`); needs `perf`.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Count alice's and bob's system calls during the direct runs (with `perf stat`) and
    /// report them per message.
    #[arg(long)]
    syscalls: bool,
    /// Start the daemons with `--no-history` (no message store), to see what the store costs.
    #[arg(long)]
    no_history: bool,
    /// Directory holding the release `peer-daemon` and `index-service` [default: the
    /// directory above this example's, i.e. target/release].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// The release index, in a temporary directory; killed on drop.
struct IndexProcess {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl IndexProcess {
    fn start(bin: &Path) -> anyhow::Result<IndexProcess> {
        let dir = tempfile::tempdir()?;
        // The index does not report an ephemeral port, so take a free one and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--database-url")
            .arg(format!(
                "sqlite://{}",
                dir.path().join("index.db").display()
            ))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let index = IndexProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the index did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(index)
    }
}

impl Drop for IndexProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `run` `repeat` times and keeps the run with the median rate: one throughput run lasts
/// about a second, short enough for a noisy neighbour to skew it.
fn median(
    repeat: usize,
    mut run: impl FnMut() -> anyhow::Result<Throughput>,
) -> anyhow::Result<Throughput> {
    let mut runs = (0..repeat)
        .map(|_| run())
        .collect::<anyhow::Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    Ok(runs[runs.len() / 2])
}

/// Starts a relay in front of whatever `start` brings up on the port it is given.
fn relay_in_front<T>(
    rt: &tokio::runtime::Runtime,
    config: RelayConfig,
    start: impl FnOnce(u16) -> anyhow::Result<(T, SocketAddr)>,
) -> anyhow::Result<(T, Relay)> {
    let front = rt.block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))?;
    let (behind, target) = start(front.local_addr()?.port())?;
    let relay = rt.block_on(Relay::start(front, target, config));
    Ok((behind, relay))
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let bin_dir = match &options.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("locating target/release")?
            .to_owned(),
    };
    let (daemon_bin, index_bin) = (bin_dir.join("peer-daemon"), bin_dir.join("index-service"));
    for bin in [&daemon_bin, &index_bin] {
        if !bin.exists() {
            bail!(
                "{} is missing: run scripts/bench-chat.sh (or --bin-dir)",
                bin.display()
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let lossy = RelayConfig::symmetric(Impairment::loss(options.loss), options.seed);
    let payload: String = (0..options.size)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let (warmup, n) = (options.warmup, options.round_trips);

    let load_before = report::load_average();
    let index = IndexProcess::start(&index_bin)?;
    // Carol first: the others then make the first contact with her (their lobby greetings)
    // through her relay; her own greetings would go straight to them and teach them her real
    // address.
    let history: Vec<String> = if options.no_history {
        vec!["--no-history".to_owned()]
    } else {
        Vec::new()
    };
    let (mut carol, carol_relay) = relay_in_front(&rt, lossy, |port| {
        let mut extra = vec!["--public-port".to_owned(), port.to_string()];
        extra.extend(history.iter().cloned());
        let carol = Daemon::spawn(&daemon_bin, &index.url, "carol", &extra)?;
        let addr = process::bound_udp_addr(carol.pid)?;
        Ok((carol, addr))
    })?;
    let mut alice = Daemon::spawn(&daemon_bin, &index.url, "alice", &history)?;
    let mut bob = Daemon::spawn(&daemon_bin, &index.url, "bob", &history)?;
    bob.drain();
    carol.drain();

    eprintln!("round trips: raw UDP echo");
    let echo = EchoServer::start();
    let raw_echo = baseline::echo_round_trips(echo.addr, options.size, warmup, n);
    let tokio_echo = baseline::tokio_echo_round_trips(options.size, warmup, n);
    let (_, echo_relay) = relay_in_front(&rt, lossy, |_| Ok(((), echo.addr)))?;
    let relay_echo = baseline::echo_round_trips(echo_relay.front, options.size, warmup, n);
    drop(echo_relay);
    eprintln!("round trips: daemons");
    let plumbing = daemon::plumbing(&mut alice, warmup, n)?;
    let counts_dir = tempfile::tempdir()?;
    let counts = options.syscalls.then_some(counts_dir.path());
    let pair = [("alice", alice.pid), ("bob", bob.pid)];
    let watch = Watch::start(options.perf.as_deref(), counts, "round-trip", &pair)?;
    let direct = daemon::ack_round_trips(&mut alice, &bob, &payload, warmup, n)?;
    let round_trip_calls = watch.finish();
    let relayed = daemon::ack_round_trips(&mut alice, &carol, &payload, warmup, n)?;

    eprintln!("throughput: raw UDP");
    let (count, repeat) = (options.messages, options.repeat.max(1));
    // Few enough 1 KiB datagrams in flight to fit a default (208 KiB) socket receive buffer.
    const WINDOW: u64 = 64;
    let drops_before = receive_buffer_drops();
    let raw_flow = [None, Some(WINDOW)].map(|window| {
        median(repeat, || {
            let sink = Sink::start(count);
            let to = sink.addr;
            Ok(baseline::one_way(sink, to, options.size, count, window))
        })
    });
    let raw_overflows = receive_buffer_drops() - drops_before;
    let relay_raw_flow = [None, Some(WINDOW)].map(|window| {
        median(repeat, || {
            let (sink, relay) = relay_in_front(&rt, lossy, |_| {
                let sink = Sink::start(count);
                let addr = sink.addr;
                Ok((sink, addr))
            })?;
            Ok(baseline::one_way(
                sink,
                relay.front,
                options.size,
                count,
                window,
            ))
        })
    });
    let [raw_flood, raw_windowed] = raw_flow;
    let raw_flow = [raw_flood?, raw_windowed?];
    let [relay_flood, relay_windowed] = relay_raw_flow;
    let relay_raw_flow = [relay_flood?, relay_windowed?];
    eprintln!("throughput: daemons");
    let pids = [alice.pid, bob.pid, std::process::id()];
    let cpu_before = pids.map(cpu_time);
    let watch = Watch::start(options.perf.as_deref(), counts, "throughput", &pair)?;
    let drops_before = receive_buffer_drops();
    let flow = median(repeat, || {
        daemon::pipelined(&mut alice, &bob, &payload, count)
    })?;
    let cpu_after = pids.map(cpu_time);
    let overflows = receive_buffer_drops() - drops_before;
    let throughput_calls = watch.finish();
    let cpu = [0, 1, 2].map(|i| cpu_after[i].saturating_sub(cpu_before[i]));
    let relayed_flow = median(repeat, || {
        daemon::pipelined(&mut alice, &carol, &payload, count)
    })?;

    let relay_stats = carol_relay.stats();
    let mut counters = vec![(
        "relay in front of carol".to_owned(),
        format!(
            "{} mappings; towards carol {} datagrams, {} dropped; from carol {} datagrams, {} \
             dropped",
            relay_stats.mappings,
            relay_stats.up.received,
            relay_stats.up.dropped,
            relay_stats.down.received,
            relay_stats.down.dropped
        ),
    )];
    for d in [alice, bob, carol] {
        let name = d.name.clone();
        counters.push((name, d.stop()));
    }
    drop(index);
    report(
        &options,
        &Results {
            raw_echo,
            tokio_echo,
            plumbing,
            direct,
            relay_echo,
            relayed,
            raw_flow,
            flow,
            relay_raw_flow,
            relayed_flow,
            cpu,
            overflows: [raw_overflows, overflows],
            counters,
            syscalls: [round_trip_calls, throughput_calls],
            load: [load_before, report::load_average()],
        },
    );
    Ok(())
}
