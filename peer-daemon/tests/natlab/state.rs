//! Shared room state across a partition: three members on lab hosts (alice and bob behind
//! one router, carol alone behind another) agree on a room's state, carol's router drops
//! everything for a while, both sides write meanwhile (one key on both sides), and once the
//! router forwards again all three agree on one state holding every write, the doubly
//! written key with one winner everywhere.
//!
//! Sends give up after `--deadline-secs 2`, so the cut outlasts them and the state only comes
//! through because a fresh sync round follows a give-up ([`STALL_AFTER`], 3 s).
//!
//! [`STALL_AFTER`]: peer_daemon::roomstate::STALL_AFTER

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lab::{Lab, NatKind};
use crate::peer::LabDaemon;

/// The room the members share.
const ROOM: &str = "garden";
/// How long a message to an unreachable member is tried before it is given up.
const DEADLINE_SECS: &str = "2";
/// How long one event may take (a join asks the index, a first message may punch holes).
const ACK: Duration = Duration::from_secs(10);
/// How long members connected to each other may take to agree.
const CONVERGE: Duration = Duration::from_secs(5);
/// How long all three may take to agree once the partition healed.
const HEALED: Duration = Duration::from_secs(15);

/// Most sync messages a member may send in the whole test. Ten keys written among three
/// members through a cut of a few seconds take about twenty (measured with sends that settle);
/// hundreds mean members that answer each other without end.
const MAX_SYNC_MESSAGES: u64 = 100;

/// A room's state: key → `{"value", "author"}`.
type State = BTreeMap<String, Value>;

/// Each member joins [`ROOM`] in turn; returns once every member knows every other one.
async fn join_all(members: &mut [&mut LabDaemon]) {
    for i in 0..members.len() {
        let (earlier, rest) = members.split_at_mut(i);
        let newcomer = &mut *rest[0];
        newcomer.send_line(&format!("/join {ROOM}")).await;
        let joined = newcomer
            .expect("joined", |v| v["room"] == ROOM && v["peer"].is_null(), ACK)
            .await;
        assert_eq!(joined["members"], i, "{}: {joined}", newcomer.name);
        let id = newcomer.uuid.to_string();
        for member in earlier.iter_mut() {
            member
                .expect(
                    "joined",
                    |v| v["room"] == ROOM && v["peer"] == id.as_str(),
                    ACK,
                )
                .await;
        }
    }
}

/// `/state` of `daemon` (its active room is [`ROOM`]).
async fn state_of(daemon: &mut LabDaemon) -> State {
    daemon.send_line("/state").await;
    let list = daemon.expect("state_list", |_| true, ACK).await;
    assert_eq!(list["room"], ROOM, "{}: {list}", daemon.name);
    list["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: entries are not a list: {list}", daemon.name))
        .iter()
        .map(|e| {
            let key = e["key"].as_str().expect("a key").to_owned();
            (key, json!({ "value": e["value"], "author": e["author"] }))
        })
        .collect()
}

/// Asks for `daemon`'s state until `done` accepts it, waiting for the next `state` change
/// between two asks; fails after `timeout` saying `what` was awaited.
async fn wait_state(
    daemon: &mut LabDaemon,
    what: &str,
    done: impl FnMut(&State) -> bool,
    timeout: Duration,
) -> State {
    match try_wait_state(daemon, done, timeout).await {
        Ok(state) => state,
        Err(state) => panic!(
            "{}: not {what} within {timeout:?}; its state is {state:#?}{}",
            daemon.name,
            daemon.diagnostics()
        ),
    }
}

/// Like [`wait_state`], but the last state seen instead of a failure after `timeout`.
async fn try_wait_state(
    daemon: &mut LabDaemon,
    mut done: impl FnMut(&State) -> bool,
    timeout: Duration,
) -> Result<State, State> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let state = state_of(daemon).await;
        if done(&state) {
            return Ok(state);
        }
        let changed = tokio::time::timeout_at(
            deadline,
            daemon.expect(
                "state",
                |v| v["room"] == ROOM && v["reason"] == "changed",
                timeout + ACK,
            ),
        )
        .await;
        if changed.is_err() {
            return Err(state);
        }
    }
}

/// The `state.*` counters of `daemon` (for failure messages).
async fn state_counters(daemon: &mut LabDaemon) -> Value {
    daemon.send_line("/stats").await;
    let stats = daemon.expect("stats", |_| true, ACK).await;
    let counters = stats["counters"].as_object().cloned().unwrap_or_default();
    counters
        .into_iter()
        .filter(|(name, _)| name.starts_with("state."))
        .collect()
}

/// The entry for `value` written by `author`.
fn by(author: &LabDaemon, value: &str) -> Value {
    json!({ "value": value, "author": author.uuid.to_string() })
}

/// Says `text` in [`ROOM`] and waits for its receipt, a `delivered` or a `failed` event
/// (`kind`), which comes once every copy was acknowledged or given up.
async fn say(daemon: &mut LabDaemon, text: &str, kind: &str) -> Value {
    daemon.send_line(text).await;
    daemon.expect(kind, |v| v["room"] == ROOM, ACK).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_state_converges_after_a_partition_heals() {
    let Some(mut lab) = Lab::new("room state partition") else {
        return;
    };
    let (home, away) = (lab.add_router(NatKind::Cone), lab.add_router(NatKind::Cone));
    let (ha, hb, hc) = (lab.add_host(home), lab.add_host(home), lab.add_host(away));
    lab.start_servers();
    let args = ["--deadline-secs", DEADLINE_SECS];
    let mut alice = lab.spawn_daemon(ha, "alice", &args).await;
    let mut bob = lab.spawn_daemon(hb, "bob", &args).await;
    let mut carol = lab.spawn_daemon(hc, "carol", &args).await;
    join_all(&mut [&mut alice, &mut bob, &mut carol]).await;

    // All three agree first.
    alice.send_line("/topic before the storm").await;
    bob.send_line("/set bob.before 1").await;
    carol.send_line("/set carol.before 1").await;
    let agreed: State = [
        ("topic".to_owned(), by(&alice, "before the storm")),
        ("bob.before".to_owned(), by(&bob, "1")),
        ("carol.before".to_owned(), by(&carol, "1")),
    ]
    .into();
    for daemon in [&mut alice, &mut bob, &mut carol] {
        wait_state(
            daemon,
            "agreeing before the cut",
            |s| *s == agreed,
            CONVERGE,
        )
        .await;
    }

    // Carol is cut off. Both sides write; `plan` on both (each writer sets it before its
    // other keys, so a member holding those holds its `plan` too), and carol removes one of
    // bob's keys.
    lab.blackout(away, true);
    alice
        .write_raw(b"/set plan from alice\n/set alice.during a\n")
        .await;
    bob.send_line("/set bob.during b").await;
    carol
        .write_raw(b"/set plan from carol\n/set carol.during c\n/unset bob.before\n")
        .await;
    // Alice and bob still sync with each other; carol hears nothing of it.
    let (alice_during, bob_during) = (by(&alice, "a"), by(&bob, "b"));
    let home_side = |s: &State| {
        s.get("alice.during") == Some(&alice_during) && s.get("bob.during") == Some(&bob_during)
    };
    for daemon in [&mut alice, &mut bob] {
        wait_state(daemon, "syncing within its side", home_side, CONVERGE).await;
    }
    // The cut outlasts the give-up: room messages sent now fail towards the other side
    // after the deadline (and the room state's sends with them).
    let started = Instant::now();
    let receipt = say(&mut alice, "can you hear me, carol?", "delivered").await;
    assert_eq!(
        (&receipt["delivered"], &receipt["total"]),
        (&json!(1), &json!(2)),
        "only bob got alice's message: {receipt}"
    );
    say(&mut carol, "is anyone there?", "failed").await;
    eprintln!(
        "natlab state: sends across the cut gave up after {:?}",
        started.elapsed()
    );
    let carol_cut = state_of(&mut carol).await;
    assert!(
        !carol_cut.contains_key("alice.during")
            && carol_cut.get("plan") == Some(&by(&carol, "from carol")),
        "carol is cut off, yet: {carol_cut:#?}"
    );
    let bob_cut = state_of(&mut bob).await;
    assert!(
        !bob_cut.contains_key("carol.during") && bob_cut.contains_key("bob.before"),
        "bob is cut off from carol, yet: {bob_cut:#?}"
    );

    // Healed: all three agree on every write of either side.
    let dropped = lab.blackout(away, false);
    assert!(dropped > 0, "the blackout dropped nothing");
    let healed = Instant::now();
    let expected: State = [
        ("topic".to_owned(), by(&alice, "before the storm")),
        ("carol.before".to_owned(), by(&carol, "1")),
        ("alice.during".to_owned(), by(&alice, "a")),
        ("bob.during".to_owned(), by(&bob, "b")),
        ("carol.during".to_owned(), by(&carol, "c")),
    ]
    .into();
    let mut keys: BTreeSet<String> = expected.keys().cloned().collect();
    keys.insert("plan".into());
    let mut states = Vec::new();
    let mut late = Vec::new();
    for daemon in [&mut alice, &mut bob, &mut carol] {
        let holds_all = |s: &State| {
            s.keys().eq(keys.iter()) && expected.iter().all(|(k, v)| s.get(k) == Some(v))
        };
        match try_wait_state(daemon, holds_all, HEALED.saturating_sub(healed.elapsed())).await {
            Ok(state) => states.push(state),
            Err(state) => late.push((daemon.name.clone(), state, daemon.diagnostics())),
        }
    }
    if !late.is_empty() {
        let mut report = String::new();
        for daemon in [&mut alice, &mut bob, &mut carol] {
            let counters = state_counters(daemon).await;
            report.push_str(&format!("\n{}'s counters: {counters}", daemon.name));
        }
        for (name, state, diagnostics) in &late {
            report.push_str(&format!("\n{name}'s state: {state:#?}{diagnostics}"));
        }
        panic!(
            "not every member held every write of both sides {HEALED:?} after the partition \
             healed: {:?} did not{report}",
            late.iter().map(|(name, ..)| name).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "natlab state: all three agreed {:?} after the partition healed",
        healed.elapsed()
    );
    assert_eq!(states[0], states[1], "alice and bob disagree");
    assert_eq!(states[0], states[2], "alice and carol disagree");
    let plan = &states[0]["plan"];
    let winner = [&alice, &carol]
        .into_iter()
        .find(|d| plan["value"] == format!("from {}", d.name).as_str())
        .unwrap_or_else(|| panic!("`plan` is neither value written: {plan}"));
    assert_eq!(
        plan["author"],
        winner.uuid.to_string(),
        "`plan`'s author is not its writer"
    );
    eprintln!("natlab state: `plan` went to {}", winner.name);
    // And the members did not get there by answering each other without end: a sync round
    // is a handful of messages per change and member.
    for daemon in [&mut alice, &mut bob, &mut carol] {
        let counters = state_counters(daemon).await;
        eprintln!("natlab state: {}'s counters: {counters}", daemon.name);
        let sent = counters["state.sent"].as_u64().expect("state.sent");
        assert!(
            sent <= MAX_SYNC_MESSAGES,
            "{} sent {sent} sync messages in this test (at most {MAX_SYNC_MESSAGES} expected): \
             members answer each other's sync messages without end: {counters}",
            daemon.name
        );
    }
}
