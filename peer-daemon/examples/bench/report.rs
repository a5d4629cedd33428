//! The printed table: every figure of one run, with ratios against the baselines of its block.

use std::time::Duration;

use crate::Options;
use crate::daemon::AckLatency;
use crate::profile::{Counts, SYSCALLS};
use crate::stats::{Latency, Throughput, ms};

/// Everything one run measured.
pub struct Results {
    /// Raw UDP echo between two blocking threads: the round-trip baseline.
    pub raw_echo: Latency,
    /// The same echo between two tokio runtimes.
    pub tokio_echo: Latency,
    /// `/peers` → `peers` through a daemon's stdin and stdout.
    pub plumbing: Latency,
    /// Alice → bob, one message at a time.
    pub direct: AckLatency,
    /// Raw UDP echo through a lossy relay.
    pub relay_echo: Latency,
    /// Alice → carol through the lossy relay, one message at a time.
    pub relayed: AckLatency,
    /// Raw UDP one way: the sender flooding, and at most 64 datagrams in flight.
    pub raw_flow: [Throughput; 2],
    /// Alice → bob, pipelined.
    pub flow: Throughput,
    /// Raw UDP one way through a lossy relay, flooding and windowed.
    pub relay_raw_flow: [Throughput; 2],
    /// Alice → carol through the lossy relay, pipelined.
    pub relayed_flow: Throughput,
    /// CPU time of alice, bob and this benchmark during the direct throughput runs.
    pub cpu: [Duration; 3],
    /// Datagrams lost to full receive buffers: raw direct runs, daemons' direct runs.
    pub overflows: [u64; 2],
    /// What the relay and the daemons counted, for the record.
    pub counters: Vec<(String, String)>,
    /// System calls during the direct round trips (warm-up included) and throughput runs.
    pub syscalls: [Counts; 2],
    /// The machine's one-minute load average before and after: others' work skews figures.
    pub load: [String; 2],
}

/// The one-minute load average.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().next().unwrap_or("?").to_owned()
}

/// Prints the table on stdout.
pub fn report(options: &Options, r: &Results) {
    let loss = options.loss * 100.0;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let lat = |label: &str, l: &Latency, base: Option<&Latency>, note: &str| {
        let cmp = base.map_or(String::new(), |b| {
            format!("{:>8.2}", ratio(l.p50(), b.p50()))
        });
        println!(
            "  {label:<58}{:>9}{:>9}{cmp:>9}  {note}",
            ms(l.p50()),
            ms(l.p99())
        );
    };
    let flow = |label: &str, t: &Throughput, base: Option<&Throughput>, note: &str| {
        let cmp = base.map_or(String::new(), |b| {
            format!("{:>8.2}", t.per_sec() / b.per_sec().max(1e-9))
        });
        println!(
            "  {label:<58}{:>9.0}{:>9.1}{cmp:>9}  {note}",
            t.per_sec(),
            t.mb_per_sec()
        );
    };
    println!();
    println!(
        "peerlink loopback benchmark: {}-byte messages; {}",
        options.size,
        machine()
    );
    println!(
        "every figure measured in this run; a ratio compares with the baseline of its block; \
         load average {} before, {} after",
        r.load[0], r.load[1]
    );
    println!();
    println!(
        "ROUND TRIP, one message at a time ({} each after {} warm-up){:>13}{:>9}{:>9}",
        options.round_trips, options.warmup, "p50 ms", "p99 ms", "ratio"
    );
    println!(" direct");
    lat(
        "raw UDP echo, blocking threads (baseline)",
        &r.raw_echo,
        None,
        "",
    );
    lat(
        "UDP echo between two tokio runtimes (no protocol)",
        &r.tokio_echo,
        Some(&r.raw_echo),
        "",
    );
    lat(
        "daemon stdin -> stdout, `/peers` -> `peers` (no network)",
        &r.plumbing,
        Some(&r.raw_echo),
        "",
    );
    lat(
        "daemon ack round trip, `rtt_ms` it reports",
        &r.direct.rtt,
        Some(&r.raw_echo),
        "goal <= 1.3",
    );
    lat(
        "daemon ack round trip, wall clock `/msg` -> `delivered`",
        &r.direct.wall,
        Some(&r.raw_echo),
        "",
    );
    println!(" through the relay, {loss}% loss each way");
    let lost = format!(
        "raw UDP echo (baseline; {} lost and left out)",
        r.relay_echo.lost
    );
    lat(&lost, &r.relay_echo, None, "");
    lat(
        "daemon ack round trip, `rtt_ms` it reports",
        &r.relayed.rtt,
        Some(&r.relay_echo),
        "goal <= 1.3",
    );
    lat(
        "daemon ack round trip, wall clock",
        &r.relayed.wall,
        Some(&r.relay_echo),
        "",
    );
    println!();
    println!(
        "THROUGHPUT, one way, {} messages{:>31}{:>9}{:>9}",
        options.messages, "msg/s", "MB/s", "ratio"
    );
    let raw_rows = |raw: &[Throughput; 2]| {
        let labels = ["raw UDP, sender floods", "raw UDP, <= 64 in flight"];
        for (label, t) in labels.iter().zip(raw) {
            let label = format!("{label} ({}/{} arrived)", t.delivered, t.sent);
            flow(&label, t, None, "");
        }
    };
    // The better raw figure is the baseline, so the ratio never flatters the daemons.
    let best = |raw: &[Throughput; 2]| {
        if raw[0].per_sec() >= raw[1].per_sec() {
            raw[0]
        } else {
            raw[1]
        }
    };
    println!(" direct");
    raw_rows(&r.raw_flow);
    flow(
        "daemons, pipelined, until the last `delivered`",
        &r.flow,
        Some(&best(&r.raw_flow)),
        "goal >= 0.5",
    );
    println!(" through the relay, {loss}% loss each way");
    raw_rows(&r.relay_raw_flow);
    flow(
        "daemons, pipelined, until the last `delivered`",
        &r.relayed_flow,
        Some(&best(&r.relay_raw_flow)),
        "goal >= 0.5",
    );
    println!();
    let total = (options.messages * options.repeat.max(1) as u64) as f64;
    let per_msg = |d: Duration| d.as_secs_f64() * 1e6 / total;
    let [alice, bob, bench] = r.cpu;
    let runs = options.repeat.max(1) as u64;
    println!(
        "CPU per message, direct daemon throughput runs: alice {:.1} us, bob {:.1} us, this \
         benchmark {:.1} us (wall {:.1} us per message at the median rate, 2 CPUs)",
        per_msg(alice),
        per_msg(bob),
        per_msg(bench),
        1e6 / r.flow.per_sec().max(1e-9),
    );
    println!(
        "datagrams dropped by full socket receive buffers (kernel RcvbufErrors) per direct run: \
         raw UDP (both) {}, daemons {}",
        r.overflows[0] / runs,
        r.overflows[1] / runs
    );
    if options.syscalls {
        let runs = [
            ("round trips", (options.warmup + options.round_trips) as f64),
            (
                "throughput",
                (options.messages * options.repeat.max(1) as u64) as f64,
            ),
        ];
        println!();
        print!("SYSCALLS per message (perf stat)  ");
        for name in SYSCALLS.iter().chain(&["all"]) {
            print!("{name:>11}");
        }
        println!();
        for ((run, per), counts) in runs.iter().zip(&r.syscalls) {
            for (who, calls) in counts {
                print!("  {:<32}", format!("{who}, {run}"));
                for name in SYSCALLS.iter().chain(&["all"]) {
                    print!(
                        "{:>11.2}",
                        calls.get(*name).copied().unwrap_or(0) as f64 / per
                    );
                }
                println!();
            }
        }
    }
    println!();
    println!("counters");
    for (who, line) in &r.counters {
        let line = line.split("daemon stopped").nth(1).unwrap_or(line).trim();
        println!("  {who}: {line}");
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown CPU");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cpus} CPUs, Linux {}", kernel.trim())
}
