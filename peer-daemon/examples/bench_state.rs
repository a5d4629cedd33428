//! peerlink's room state benchmark: how long a room's shared key-value state takes to reach
//! every member, and how many bytes the members exchange for it, against the same key=value
//! pairs sent as ordinary chat messages by the same daemons in the same run.
//!
//! `scripts/bench-state.sh` builds the release binaries and runs this; it starts the release
//! `index-service` (on a temporary SQLite file) and `--members` release `peer-daemon`s found
//! next to it (`--no-mdns --no-dht`, each with its own state directory, `--json`, on
//! 127.0.0.1), all in three rooms, and measures:
//!
//! - one writer: one member `/set`s `--keys` keys as fast as its stdin takes them, until every
//!   other member holds them all; baseline: the same pairs as room messages (`key=value`);
//! - ten writers: every member sets its share of the keys at once; baseline: every member
//!   sends its share as room messages at once;
//! - late joiner: one more daemon joins the room that holds the one writer's keys, until it
//!   holds them all; baseline: the same pairs sent to it as private messages.
//!
//! Bytes are the daemons' own `state.sent_bytes` (sync messages and signature records, before
//! base64, JSON and encryption), summed over all members, against the raw key+value payload
//! times the members it had to reach. Nothing asserts on speed.

#[path = "../tests/common/process.rs"]
#[allow(
    dead_code,
    reason = "the benchmark needs only part of what the tests share"
)]
mod process;

#[path = "bench/stats.rs"]
#[allow(
    dead_code,
    reason = "the latency and throughput summaries are the chat benchmark's"
)]
mod stats;

#[path = "bench_state/member.rs"]
mod member;
#[path = "bench_state/report.rs"]
mod report;
#[path = "bench_state/scenario.rs"]
mod scenario;
#[path = "bench_state/setup.rs"]
mod setup;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use member::{Member, PRIVATE};
use report::{Results, report};
use scenario::{Outcome, Plan};
use setup::{IndexProcess, check_state, join_all};

/// Room state benchmark: convergence time and bytes exchanged, against chat messages.
#[derive(Debug, Parser)]
struct Options {
    /// Daemons in the room (the late joiner comes on top).
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Keys written per scenario (a room holds at most 1024).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Bytes of each value.
    #[arg(long, default_value_t = 24)]
    value_len: usize,
    /// How long to wait for a scenario to converge before reporting how far it got, seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// After the scenarios, count what the idle members send for this many seconds
    /// (anti-entropy rounds come every 30 s); 0 skips it.
    #[arg(long, default_value_t = 0)]
    idle: u64,
    /// Directory holding the release `peer-daemon` and `index-service` [default: the
    /// directory above this example's, i.e. target/release].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// The rooms: one per state scenario (a room holds at most 1024 keys), one for the baselines.
const ONE: &str = "bench-one";
const TEN: &str = "bench-ten";
const CHAT: &str = "bench-chat";

/// The pairs one writer writes: `(key, value)`, the value `value_len` bytes.
fn pairs(prefix: &str, count: usize, value_len: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let mut value = format!("v{i:05}-");
            value.extend((value.len()..value_len).map(|j| char::from(b'a' + (j % 26) as u8)));
            value.truncate(value_len.max(1));
            (format!("{prefix}{i:04}"), value)
        })
        .collect()
}

fn payload(pairs: &[(String, String)]) -> u64 {
    pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

/// `/sw #room`, then a line for each pair.
fn lines(
    room: &str,
    pairs: &[(String, String)],
    line: impl Fn(&str, &str) -> String,
) -> Vec<String> {
    let mut lines = vec![format!("/sw #{room}")];
    lines.extend(pairs.iter().map(|(k, v)| line(k, v)));
    lines
}

fn text(key: &str, value: &str) -> String {
    format!("{key}={value}")
}

fn set(key: &str, value: &str) -> String {
    format!("/set {key} {value}")
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
                "{} is missing: run scripts/bench-state.sh (or --bin-dir)",
                bin.display()
            );
        }
    }
    let n = options.members.max(2);
    let (keys, value_len) = (options.keys.max(1), options.value_len.max(1));
    let timeout = Duration::from_secs(options.timeout);
    let load_before = report::load_average();

    let index = IndexProcess::start(&index_bin)?;
    eprintln!("starting {n} members");
    let mut members = (0..n)
        .map(|i| Member::spawn(&daemon_bin, &index.url, &format!("m{i:02}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    join_all(&mut members, &[ONE, TEN, CHAT])?;
    let everyone_but = |writer: usize, more: u64| -> Vec<(usize, u64)> {
        (0..n).filter(|&i| i != writer).map(|i| (i, more)).collect()
    };
    let receivers = (n - 1) as u64;
    let mut blocks = Vec::new();

    // One writer.
    let one = pairs("k", keys, value_len);
    let base = scenario::run(
        &mut members,
        Plan {
            label: format!("baseline: {keys} room messages to {receivers} members"),
            writes: vec![(0, lines(CHAT, &one, text))],
            room: CHAT.to_owned(),
            progress: scenario::messages,
            expect: everyone_but(0, keys as u64),
            payload: payload(&one) * receivers,
            items: keys as u64,
        },
        timeout,
    )?;
    let state = scenario::run(
        &mut members,
        Plan {
            label: format!("state: {keys} /set by one member, until {receivers} hold all"),
            writes: vec![(0, lines(ONE, &one, set))],
            room: ONE.to_owned(),
            progress: scenario::keys,
            expect: everyone_but(0, keys as u64),
            payload: payload(&one) * receivers,
            items: keys as u64,
        },
        timeout,
    )?;
    blocks.push(("one writer".to_owned(), base, state));

    // Ten writers, each with its share.
    let share = keys / n;
    let shares: Vec<Vec<(String, String)>> = (0..n)
        .map(|w| pairs(&format!("w{w:02}k"), share, value_len))
        .collect();
    let all_shares: u64 = shares.iter().map(|s| payload(s)).sum();
    let base = scenario::run(
        &mut members,
        Plan {
            label: format!("baseline: {n} x {share} room messages at once"),
            writes: (0..n).map(|w| (w, lines(CHAT, &shares[w], text))).collect(),
            room: CHAT.to_owned(),
            progress: scenario::messages,
            expect: (0..n).map(|i| (i, (share * (n - 1)) as u64)).collect(),
            payload: all_shares * receivers,
            items: (share * n) as u64,
        },
        timeout,
    )?;
    let state = scenario::run(
        &mut members,
        Plan {
            label: format!("state: {n} x {share} /set at once, until all hold all"),
            writes: (0..n).map(|w| (w, lines(TEN, &shares[w], set))).collect(),
            room: TEN.to_owned(),
            progress: scenario::keys,
            expect: (0..n).map(|i| (i, (share * n) as u64)).collect(),
            payload: all_shares * receivers,
            items: (share * n) as u64,
        },
        timeout,
    )?;
    blocks.push((format!("{n} writers"), base, state));

    let identical = vec![
        (
            ONE.to_owned(),
            check_state(&mut members, ONE, &one.iter().cloned().collect())?,
        ),
        (
            TEN.to_owned(),
            check_state(
                &mut members,
                TEN,
                &shares.iter().flatten().cloned().collect(),
            )?,
        ),
    ];

    // A late joiner.
    eprintln!("starting the late joiner");
    members.push(Member::spawn(&daemon_bin, &index.url, "late")?);
    let late = n;
    let uuid = members[late].uuid.clone();
    members[late].wait_until(Duration::from_secs(30), "every member in the lobby", |s| {
        s.members("lobby") >= n
    })?;
    let base: Outcome = scenario::run(
        &mut members,
        Plan {
            label: format!("baseline: {keys} private messages to the newcomer"),
            writes: vec![(
                0,
                one.iter()
                    .map(|(k, v)| format!("/msg {uuid} {k}={v}"))
                    .collect(),
            )],
            room: PRIVATE.to_owned(),
            progress: scenario::messages,
            expect: vec![(late, keys as u64)],
            payload: payload(&one),
            items: keys as u64,
        },
        timeout,
    )?;
    let state = scenario::run(
        &mut members,
        Plan {
            label: format!("state: the newcomer /joins, until it holds {keys}"),
            writes: vec![(late, vec![format!("/join {ONE}")])],
            room: ONE.to_owned(),
            progress: scenario::keys,
            expect: vec![(late, keys as u64)],
            payload: payload(&one),
            items: keys as u64,
        },
        timeout,
    )?;
    blocks.push(("late joiner".to_owned(), base, state));

    let idle = (options.idle > 0)
        .then(|| {
            let span = Duration::from_secs(options.idle);
            scenario::idle(&mut members, span).map(|cost| (span, cost))
        })
        .transpose()?;
    let rss: Vec<u64> = members.iter().map(Member::rss_kib).collect();
    let errors = members
        .iter()
        .filter_map(|m| {
            let seen = m.seen();
            let first = seen.errors.first()?.clone();
            Some((m.name.clone(), seen.errors.len(), first))
        })
        .collect();
    let results = Results {
        members: n,
        keys,
        value_len,
        blocks,
        identical,
        idle,
        rss_kib: (
            rss.iter().copied().min().unwrap_or(0),
            rss.iter().copied().max().unwrap_or(0),
        ),
        errors,
        load: [load_before, report::load_average()],
    };
    drop(members);
    drop(index);
    report(&results);
    Ok(())
}
