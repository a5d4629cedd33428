//! One measured scenario: some members write their lines at once, and the clock runs until
//! every watched member's events show all it should have; then the network is left to go
//! quiet, and what every member's counters and CPU time grew by is the scenario's cost.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use crate::member::{Member, Seen};
use crate::stats::receive_buffer_drops;

/// How often the members' counters are read while waiting for the network to go quiet.
const QUIET_POLL: Duration = Duration::from_millis(300);
/// The longest wait for quiet after convergence (anti-entropy never stops for good).
const QUIET_MAX: Duration = Duration::from_secs(30);

/// How many of what a member waits for have arrived, and when the last did.
pub type Progress = fn(&Seen, &str) -> (u64, Option<Instant>);

/// Keys of the room that have a value: the state scenarios.
pub fn keys(seen: &Seen, room: &str) -> (u64, Option<Instant>) {
    (seen.key_count(room) as u64, seen.last_key(room))
}

/// Messages of the room (or private ones): the baselines.
pub fn messages(seen: &Seen, room: &str) -> (u64, Option<Instant>) {
    let arrivals = seen.arrivals(room);
    (arrivals.count, arrivals.last)
}

/// What to do and what to wait for.
pub struct Plan {
    /// Names the row.
    pub label: String,
    /// Lines each writer (index into the members) gets, all written at the start.
    pub writes: Vec<(usize, Vec<String>)>,
    /// The room (or [`crate::member::PRIVATE`]) the arrivals are counted in.
    pub room: String,
    /// What is counted.
    pub progress: Progress,
    /// Members watched, and how many more arrivals each must see.
    pub expect: Vec<(usize, u64)>,
    /// Key and value (or text) bytes the writers wrote, times the members each had to reach.
    pub payload: u64,
    /// Keys (or messages) the writers wrote.
    pub items: u64,
}

/// What one scenario cost, summed over every member.
#[derive(Debug, Default, Clone)]
pub struct Cost {
    /// `state.sent`: sync messages.
    pub messages: u64,
    /// `state.sent_bytes`: their sync messages and signature records.
    pub bytes: u64,
    /// `state.applied`: keys that changed on arrival.
    pub applied: u64,
    /// `state.rejected_*` and `state.not_member`: sync messages refused.
    pub refused: u64,
    /// `reliable.datagrams`: frames received, data and acknowledgements.
    pub datagrams: u64,
    /// `reliable.retransmits`.
    pub retransmits: u64,
    /// Datagrams the kernel dropped on full socket receive buffers (machine-wide
    /// `RcvbufErrors`).
    pub overflows: u64,
    /// The daemons' CPU time.
    pub cpu: Duration,
    /// The busiest daemon's CPU time.
    pub cpu_max: Duration,
}

/// A scenario's figures.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// From the plan.
    pub label: String,
    /// From the first write to the last arrival at the last watched member; `None` when not
    /// all arrived in time.
    pub converged: Option<Duration>,
    /// The fewest arrivals at a watched member, and how many it should have had.
    pub least: (u64, u64),
    /// From the first write until the counters stopped moving (or until waiting for that was
    /// given up, see `quiet`).
    pub settled: Duration,
    /// Whether the counters did stop moving within [`QUIET_MAX`] after convergence; if not, the
    /// cost is what was spent until then, a lower bound.
    pub quiet: bool,
    /// The counters' growth until then.
    pub cost: Cost,
    /// From the plan.
    pub payload: u64,
    /// From the plan.
    pub items: u64,
}

/// Every member's counters and CPU time now.
fn snapshot(members: &mut [Member]) -> anyhow::Result<Vec<(HashMap<String, u64>, Duration)>> {
    members
        .iter_mut()
        .map(|m| Ok((m.stats()?, m.cpu())))
        .collect()
}

fn cost(
    before: &[(HashMap<String, u64>, Duration)],
    after: &[(HashMap<String, u64>, Duration)],
) -> Cost {
    let mut cost = Cost::default();
    for ((b, b_cpu), (a, a_cpu)) in before.iter().zip(after) {
        let delta = |name: &str| {
            a.get(name)
                .copied()
                .unwrap_or(0)
                .saturating_sub(b.get(name).copied().unwrap_or(0))
        };
        cost.messages += delta("state.sent");
        cost.bytes += delta("state.sent_bytes");
        cost.applied += delta("state.applied");
        cost.refused += a
            .keys()
            .filter(|n| n.starts_with("state.rejected_") || *n == "state.not_member")
            .map(|n| delta(n))
            .sum::<u64>();
        cost.datagrams += delta("reliable.datagrams");
        cost.retransmits += delta("reliable.retransmits");
        let cpu = a_cpu.saturating_sub(*b_cpu);
        cost.cpu += cpu;
        cost.cpu_max = cost.cpu_max.max(cpu);
    }
    cost
}

/// The counters that move while anything is sent.
fn activity(snapshot: &[(HashMap<String, u64>, Duration)]) -> u64 {
    snapshot
        .iter()
        .map(|(s, _)| {
            ["state.sent", "reliable.datagrams"]
                .iter()
                .map(|n| s.get(*n).copied().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

/// Runs `plan` on `members`, giving up waiting for arrivals after `timeout`.
pub fn run(members: &mut [Member], plan: Plan, timeout: Duration) -> anyhow::Result<Outcome> {
    eprintln!("{}", plan.label);
    let before = snapshot(members)?;
    let drops_before = receive_buffer_drops();
    let counted = |members: &[Member], i: usize| (plan.progress)(&members[i].seen(), &plan.room);
    let targets: Vec<(usize, u64)> = plan
        .expect
        .iter()
        .map(|&(i, more)| (i, counted(members, i).0 + more))
        .collect();
    let start = Instant::now();
    for (writer, lines) in &plan.writes {
        members[*writer].send(lines)?;
    }
    let mut report_at = start + Duration::from_secs(5);
    let converged = loop {
        let now = Instant::now();
        let counts: Vec<(u64, Option<Instant>)> =
            targets.iter().map(|&(i, _)| counted(members, i)).collect();
        if counts.iter().zip(&targets).all(|(c, t)| c.0 >= t.1) {
            let last = counts.iter().filter_map(|c| c.1).max().unwrap_or(start);
            break Some(last.saturating_duration_since(start));
        }
        if now > start + timeout {
            break None;
        }
        if now > report_at {
            let least = counts.iter().map(|c| c.0).min().unwrap_or(0);
            let most = counts.iter().map(|c| c.0).max().unwrap_or(0);
            eprintln!(
                "  {:.0} s: watched members have {least} to {most} (of {})",
                (now - start).as_secs_f64(),
                targets.iter().map(|t| t.1).max().unwrap_or(0)
            );
            report_at = now + Duration::from_secs(5);
        }
        thread::sleep(Duration::from_millis(2));
    };
    let least = targets
        .iter()
        .map(|&(i, target)| (counted(members, i).0, target))
        .min()
        .unwrap_or((0, 0));
    // Quiet: the counters stood still for one poll interval.
    let mut last = snapshot(members)?;
    let quiet_since = Instant::now();
    let (settled, quiet) = loop {
        thread::sleep(QUIET_POLL);
        let now = snapshot(members)?;
        let still = activity(&now) == activity(&last);
        last = now;
        if still || quiet_since.elapsed() > QUIET_MAX {
            break (start.elapsed().saturating_sub(QUIET_POLL), still);
        }
    };
    let mut cost = cost(&before, &last);
    cost.overflows = receive_buffer_drops().saturating_sub(drops_before);
    Ok(Outcome {
        label: plan.label,
        converged,
        least,
        settled,
        quiet,
        cost,
        payload: plan.payload,
        items: plan.items,
    })
}

/// What every member's counters grew by over `span` with nothing written: anti-entropy.
pub fn idle(members: &mut [Member], span: Duration) -> anyhow::Result<Cost> {
    eprintln!("idle for {span:?}");
    let before = snapshot(members)?;
    thread::sleep(span);
    Ok(cost(&before, &snapshot(members)?))
}
