//! The printed table: each state scenario under the baseline it is compared with, both
//! measured in this run on the same daemons.

use std::time::Duration;

use crate::scenario::{Cost, Outcome};

/// Everything one run measured.
pub struct Results {
    /// Members that wrote and read (the late joiner not counted).
    pub members: usize,
    /// Keys per scenario.
    pub keys: usize,
    /// Bytes of each value.
    pub value_len: usize,
    /// (block title, baseline, state scenario).
    pub blocks: Vec<(String, Outcome, Outcome)>,
    /// Whether every member ended with the same keys and values as the writers wrote, per
    /// room checked.
    pub identical: Vec<(String, String)>,
    /// Counters over an idle span, when measured.
    pub idle: Option<(Duration, Cost)>,
    /// Resident memory of the members at the end, KiB: least and most.
    pub rss_kib: (u64, u64),
    /// Problems the daemons reported (`error` and `failed` events), by member.
    pub errors: Vec<(String, usize, String)>,
    /// The machine's one-minute load average before and after.
    pub load: [String; 2],
}

/// The one-minute load average.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().next().unwrap_or("?").to_owned()
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

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

fn time(o: &Outcome) -> String {
    match o.converged {
        Some(d) => ms(d),
        None => format!("> {} ({}/{})", ms(o.settled), o.least.0, o.least.1),
    }
}

/// The time to quiet, `> …` when the counters were still moving when the wait was given up.
fn quiet(o: &Outcome) -> String {
    if o.quiet {
        ms(o.settled)
    } else {
        format!("> {}", ms(o.settled))
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        return "-".to_owned();
    }
    format!("{:.2}", a / b)
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// Prints the table on stdout.
pub fn report(r: &Results) {
    println!();
    println!(
        "peerlink room state benchmark: {} members, {} keys, {}-byte values; {}",
        r.members,
        r.keys,
        r.value_len,
        machine()
    );
    println!(
        "every figure measured in this run; a ratio compares with the baseline above it; load \
         average {} before, {} after",
        r.load[0], r.load[1]
    );
    println!();
    println!(
        "  {:<56}{:>9}{:>8}{:>10}{:>8}{:>13}{:>9}{:>10}{:>8}{:>8}{:>7}",
        "",
        "conv ms",
        "ratio",
        "quiet ms",
        "msgs",
        "bytes",
        "ratio",
        "dgrams",
        "ratio",
        "cpu s",
        "max s"
    );
    for (title, base, state) in &r.blocks {
        println!(" {title}");
        row(base, None);
        row(state, Some(base));
    }
    println!();
    println!(
        "conv ms: first write to the last arrival at the last member watched; quiet ms: until \
         no member's state.sent or reliable.datagrams moved for 300 ms (`> …`: still moving 30 s \
         after convergence, so the counts are lower bounds)"
    );
    println!(
        "baseline rows: msgs and bytes are the messages and their raw key+value payload times \
         the members it had to reach; state rows: state.sent and state.sent_bytes summed over \
         all members (sync messages + signature records, before base64, JSON, encryption)"
    );
    println!(
        "dgrams: reliable.datagrams received, summed over all members (data and acks); cpu s: \
         the daemons' CPU time, all and the busiest"
    );
    for (_, _, state) in &r.blocks {
        let c = &state.cost;
        println!(
            "{}: {} sync messages of {} bytes on average, {} keys applied on arrival, {} \
             refused, {} retransmits, {} datagrams dropped on full receive buffers",
            state.label,
            c.messages,
            c.bytes / c.messages.max(1),
            c.applied,
            c.refused,
            c.retransmits,
            c.overflows
        );
    }
    for (room, verdict) in &r.identical {
        println!("final state of #{room}: {verdict}");
    }
    if let Some((span, idle)) = &r.idle {
        println!(
            "idle {} s after the scenarios (anti-entropy): {} sync messages, {} bytes, {} \
             datagrams, {} s CPU",
            span.as_secs(),
            idle.messages,
            idle.bytes,
            idle.datagrams,
            secs(idle.cpu)
        );
    }
    println!(
        "resident memory per daemon at the end: {} to {} KiB",
        r.rss_kib.0, r.rss_kib.1
    );
    for (member, count, first) in &r.errors {
        println!("{member} reported {count} errors, the first: {first}");
    }
}

fn row(o: &Outcome, base: Option<&Outcome>) {
    let conv = |o: &Outcome| o.converged.unwrap_or(o.settled).as_secs_f64();
    let (messages, bytes) = match base {
        None => (o.items, o.payload),
        Some(_) => (o.cost.messages, o.cost.bytes),
    };
    let cmp = |f: &dyn Fn(&Outcome) -> f64| base.map_or(String::new(), |b| ratio(f(o), f(b)));
    println!(
        "  {:<56}{:>9}{:>8}{:>10}{:>8}{:>13}{:>9}{:>10}{:>8}{:>8}{:>7}",
        o.label,
        time(o),
        cmp(&conv),
        quiet(o),
        messages,
        bytes,
        base.map_or(String::new(), |b| ratio(bytes as f64, b.payload as f64)),
        o.cost.datagrams,
        cmp(&|o: &Outcome| o.cost.datagrams as f64),
        secs(o.cost.cpu),
        secs(o.cost.cpu_max),
    );
}
