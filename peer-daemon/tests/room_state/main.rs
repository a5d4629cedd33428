//! Shared room state end to end: the real index and real daemons on 127.0.0.1. Members that
//! write at the same moment converge to one state, a restarted member finds its state in its
//! own store, a stranger neither reads nor writes a room it is not in (not even with a signed
//! sync message of its own making), the sync goes on peer to peer with the index down, and
//! the control API reads and writes the state and says what it refuses.

#[path = "../common/mod.rs"]
mod common;
mod control;
mod stranger;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Daemon, EVENT_TIMEOUT, Index, http_client};
use peer_daemon::roomstate::{Limits, RoomStates};
use proto::chat::ChatMessage;
use proto::identity::Identity;
use proto::{Event, MsgId, SecureConfig, SecureEndpoint};
use serde_json::{Value, json};
use uuid::Uuid;

/// The room every test shares state in.
const ROOM: &str = "garden";
/// How long members may take to agree after the last write (a sync round is a few messages
/// on loopback).
const CONVERGE: Duration = Duration::from_secs(5);

/// A room's state as `/state` (or the control API) lists it: key → `{"value", "author"}`.
/// The author's name is left out: it is presentation, known or not depending on whom the
/// daemon has heard of.
type State = BTreeMap<String, Value>;

/// Each member in turn joins [`ROOM`]; returns once every member knows every other one as a
/// member (the earlier ones from the newcomer's `joined`, the newcomer from the index).
async fn join_all(members: &mut [&mut Daemon]) {
    for i in 0..members.len() {
        let (earlier, rest) = members.split_at_mut(i);
        let newcomer = &mut *rest[0];
        newcomer.send_line(&format!("/join {ROOM}")).await;
        let joined = newcomer
            .expect(
                "joined",
                |v| v["room"] == ROOM && v["peer"].is_null(),
                EVENT_TIMEOUT,
            )
            .await;
        assert_eq!(joined["members"], i, "{}: {joined}", newcomer.name);
        let id = newcomer.uuid.to_string();
        for member in earlier.iter_mut() {
            member
                .expect(
                    "joined",
                    |v| v["room"] == ROOM && v["peer"] == id.as_str(),
                    EVENT_TIMEOUT,
                )
                .await;
        }
    }
}

/// Reduces a list of entries (`/state`'s or the control API's) to a [`State`].
fn state_from(entries: &Value) -> State {
    entries
        .as_array()
        .unwrap_or_else(|| panic!("entries are not a list: {entries}"))
        .iter()
        .map(|entry| {
            let key = entry["key"]
                .as_str()
                .unwrap_or_else(|| panic!("an entry without a key: {entry}"));
            let value = json!({ "value": entry["value"], "author": entry["author"] });
            (key.to_owned(), value)
        })
        .collect()
}

/// `/state` of `daemon`, whose active room must be [`ROOM`]: the entries as printed.
async fn state_list(daemon: &mut Daemon) -> Value {
    daemon.send_line("/state").await;
    let list = daemon.expect("state_list", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(list["room"], ROOM, "{}: {list}", daemon.name);
    list["entries"].clone()
}

/// `/state` of `daemon`, as a [`State`].
async fn state_of(daemon: &mut Daemon) -> State {
    state_from(&state_list(daemon).await)
}

/// Asks for `daemon`'s state until `done` accepts it, waiting for the next `state` event
/// between two asks (the state changes only with one); fails after `timeout`, saying `what`
/// was awaited and showing the last state.
async fn wait_state(
    daemon: &mut Daemon,
    what: &str,
    mut done: impl FnMut(&State) -> bool,
    timeout: Duration,
) -> State {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let state = state_of(daemon).await;
        if done(&state) {
            return state;
        }
        let changed = tokio::time::timeout_at(
            deadline,
            daemon.expect(
                "state",
                |v| v["room"] == ROOM && v["reason"] == "changed",
                timeout + EVENT_TIMEOUT,
            ),
        )
        .await;
        if changed.is_err() {
            panic!(
                "{}: not {what} within {timeout:?}; its state is {state:#?}{}",
                daemon.name,
                daemon.diagnostics()
            );
        }
    }
}

/// The entry for `value` written by `author`.
fn by(author: &Daemon, value: &str) -> Value {
    json!({ "value": value, "author": author.uuid.to_string() })
}

/// How many `state` events with reason `changed` `daemon` has printed and no wait took.
fn changes_shown(daemon: &mut Daemon) -> usize {
    daemon
        .backlog_events()
        .filter(|v| v["event"] == "state" && v["reason"] == "changed")
        .count()
}

/// `/stats` counters of `daemon`.
async fn counters(daemon: &mut Daemon) -> Value {
    daemon.send_line("/stats").await;
    daemon.expect("stats", |_| true, EVENT_TIMEOUT).await["counters"].clone()
}

/// The `state.*` counters of `daemon`.
async fn state_counters(daemon: &mut Daemon) -> BTreeMap<String, u64> {
    let all = counters(daemon).await;
    let map = all
        .as_object()
        .unwrap_or_else(|| panic!("counters are not an object: {all}"));
    let state: BTreeMap<String, u64> = map
        .iter()
        .filter(|(name, _)| name.starts_with("state."))
        .map(|(name, value)| (name.clone(), value.as_u64().expect("a count")))
        .collect();
    assert!(
        state.contains_key("state.not_member") && state.contains_key("state.applied"),
        "{}: the state counters are missing: {all}",
        daemon.name
    );
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_writing_at_once_converge_to_one_state() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let mut carol = Daemon::spawn(&index.url(), "carol").await;
    join_all(&mut [&mut alice, &mut bob, &mut carol]).await;

    // All three set the topic at the same moment, then keys of their own, each in one burst
    // (a burst is taken in one turn, so each topic is written before its author hears any
    // other): the topic writes are concurrent.
    let burst = |name: &str| {
        format!(
            "/topic {name} says hello\n/set {name}.colour {name}-blue\n\
             /set {name}.count {name}-3\n/set {name}.plant {name}-fern\n"
        )
    };
    let (a, b, c) = (burst("alice"), burst("bob"), burst("carol"));
    tokio::join!(
        alice.write_raw(a.as_bytes()),
        bob.write_raw(b.as_bytes()),
        carol.write_raw(c.as_bytes()),
    );

    // A writer's first topic event is its own write unless it heard another one first.
    let mut concurrent = 0;
    for daemon in [&mut alice, &mut bob, &mut carol] {
        let own = format!("{} says hello", daemon.name);
        let first = daemon
            .expect("state", |v| v["key"] == "topic", EVENT_TIMEOUT)
            .await;
        concurrent += usize::from(first["value"] == own.as_str());
    }
    // Without two writes that did not know of each other, nothing here is a conflict.
    assert!(
        concurrent >= 2,
        "only {concurrent} of the topic writes were made before hearing another one"
    );

    // Every key but the topic is known in advance; the topic is one of the three.
    let mut expected = State::new();
    for writer in [&alice, &bob, &carol] {
        let name = &writer.name;
        for (key, value) in [("colour", "blue"), ("count", "3"), ("plant", "fern")] {
            expected.insert(
                format!("{name}.{key}"),
                by(writer, &format!("{name}-{value}")),
            );
        }
    }
    let mut keys: BTreeSet<String> = expected.keys().cloned().collect();
    keys.insert("topic".into());
    let mut states = Vec::new();
    let start = Instant::now();
    for daemon in [&mut alice, &mut bob, &mut carol] {
        // Each writer set the topic before its own keys, and a change arrives only after
        // those it follows: a member holding every key holds every topic write too, so its
        // topic is the final one.
        let state = wait_state(
            daemon,
            "holding every key",
            |state| {
                state.keys().eq(keys.iter())
                    && expected
                        .iter()
                        .all(|(key, entry)| state.get(key) == Some(entry))
            },
            CONVERGE,
        )
        .await;
        states.push(state);
    }
    eprintln!(
        "room state: three members converged {:?} after writing; {concurrent} of 3 topic \
         writes were concurrent",
        start.elapsed()
    );
    assert_eq!(states[0], states[1], "alice and bob disagree");
    assert_eq!(states[0], states[2], "alice and carol disagree");

    // One topic won everywhere, and its author is the member who wrote that value.
    let topic = &states[0]["topic"];
    let winner = [&alice, &bob, &carol]
        .into_iter()
        .find(|d| topic["value"] == format!("{} says hello", d.name).as_str())
        .unwrap_or_else(|| panic!("the topic is none of the values written: {topic}"));
    assert_eq!(
        topic["author"],
        winner.uuid.to_string(),
        "the topic's author is not its writer"
    );
    let winner_name = winner.name.clone();
    eprintln!("room state: {winner_name} won the topic");
    // Every member shows the winner's name beside it, and `/topic` says the same.
    for daemon in [&mut alice, &mut bob, &mut carol] {
        let entries = state_list(daemon).await;
        let entry = entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "topic")
            .cloned()
            .expect("a topic");
        assert_eq!(
            entry["author_name"],
            winner_name.as_str(),
            "{}: {entry}",
            daemon.name
        );
        daemon.send_line("/topic").await;
        let shown = daemon
            .expect("state", |v| v["reason"] == "get", EVENT_TIMEOUT)
            .await;
        assert_eq!(
            (
                &shown["room"],
                &shown["key"],
                &shown["value"],
                &shown["author"]
            ),
            (
                &json!(ROOM),
                &json!("topic"),
                &topic["value"],
                &topic["author"]
            ),
            "{}: {shown}",
            daemon.name
        );
    }
    // Nothing was refused on the way.
    for daemon in [&mut alice, &mut bob, &mut carol] {
        let stats = state_counters(daemon).await;
        let refused: u64 = stats
            .iter()
            .filter(|(name, _)| name.contains("rejected") || name.ends_with("not_member"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(refused, 0, "{}: {stats:?}", daemon.name);
        assert!(stats["state.applied"] >= 6, "{}: {stats:?}", daemon.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_finds_the_state_in_its_own_store() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let mut carol = Daemon::spawn(&index.url(), "carol").await;
    join_all(&mut [&mut alice, &mut bob, &mut carol]).await;

    alice.send_line("/topic kept across restarts").await;
    alice.send_line("/set harvest pumpkins").await;
    alice.send_line("/set weeds many").await;
    bob.send_line("/set water twice a day").await;
    carol.send_line("/set seeds tomato").await;
    // A removal must survive too: bob pulls alice's weeds once he has them.
    wait_state(
        &mut bob,
        "holding alice's weeds",
        |s| s.contains_key("weeds"),
        CONVERGE,
    )
    .await;
    bob.send_line("/unset weeds").await;
    let expected: State = [
        ("topic", by(&alice, "kept across restarts")),
        ("harvest", by(&alice, "pumpkins")),
        ("water", by(&bob, "twice a day")),
        ("seeds", by(&carol, "tomato")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let before = wait_state(
        &mut carol,
        "holding every write",
        |s| *s == expected,
        CONVERGE,
    )
    .await;

    // Everyone goes; carol comes back alone, on the same state directory: what she shows
    // can only come from her own store.
    let carol_state = carol.state();
    for daemon in [&mut alice, &mut bob, &mut carol] {
        daemon.send_line("/quit").await;
        daemon.wait_exit(EVENT_TIMEOUT).await;
    }
    let mut carol = Daemon::spawn_with_state(&index.url(), "carol", carol_state.clone()).await;
    carol.send_line(&format!("/join {ROOM}")).await;
    let joined = carol
        .expect(
            "joined",
            |v| v["room"] == ROOM && v["peer"].is_null(),
            EVENT_TIMEOUT,
        )
        .await;
    assert_eq!(joined["members"], 0, "the others are gone: {joined}");
    // Joining shows the topic.
    let topic = carol
        .expect("state", |v| v["reason"] == "joined", EVENT_TIMEOUT)
        .await;
    assert_eq!(
        (
            &topic["room"],
            &topic["key"],
            &topic["value"],
            &topic["author"]
        ),
        (
            &json!(ROOM),
            &json!("topic"),
            &json!("kept across restarts"),
            &json!(alice.uuid.to_string())
        ),
        "{topic}"
    );
    assert_eq!(
        state_of(&mut carol).await,
        before,
        "carol's state after a restart"
    );
    carol.send_line("/quit").await;
    carol.wait_exit(EVENT_TIMEOUT).await;

    // The same directory with --no-history restores nothing: the state above came from the
    // store (and this test would see it missing).
    let entries = state_without_history(&index.url(), carol_state.path()).await;
    assert_eq!(entries, json!([]), "--no-history restored the state");
}

/// `/state` of [`ROOM`] printed by a daemon started with `--no-history` on `state_dir`.
/// (`Daemon` cannot start an existing state directory with extra flags, hence by hand.)
async fn state_without_history(index_url: &str, state_dir: &std::path::Path) -> Value {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut child =
        tokio::process::Command::from(common::daemon_command(index_url, "carol", state_dir))
            .args(["--json", "--no-history"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning peer-daemon --no-history");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("/join {ROOM}\n/state\n").as_bytes())
        .await
        .expect("writing to the daemon");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut seen = Vec::new();
    let list = tokio::time::timeout(EVENT_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.expect("reading stdout") {
            let event: Value = serde_json::from_str(&line).expect("a JSON event");
            if event["event"] == "state_list" {
                return Some(event);
            }
            seen.push(line);
        }
        None
    })
    .await;
    let list = match list {
        Ok(Some(list)) => list,
        _ => panic!("no state_list from the --no-history daemon; it printed {seen:#?}"),
    };
    assert_eq!(list["room"], ROOM, "{list}");
    drop(stdin);
    let _ = child.kill().await;
    list["entries"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_keep_syncing_with_the_index_down() {
    let mut index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let mut carol = Daemon::spawn(&index.url(), "carol").await;
    join_all(&mut [&mut alice, &mut bob, &mut carol]).await;
    alice.send_line("/set before the index went away").await;
    for daemon in [&mut bob, &mut carol] {
        wait_state(
            daemon,
            "holding `before`",
            |s| s.contains_key("before"),
            CONVERGE,
        )
        .await;
    }

    index.stop().await;
    alice.send_line("/set after alice still writes").await;
    bob.send_line("/unset before").await;
    carol.send_line("/topic no index needed").await;
    let expected: State = [
        ("after".to_owned(), by(&alice, "alice still writes")),
        ("topic".to_owned(), by(&carol, "no index needed")),
    ]
    .into();
    for daemon in [&mut alice, &mut bob, &mut carol] {
        wait_state(
            daemon,
            "holding the writes made after the index went",
            |s| *s == expected,
            CONVERGE,
        )
        .await;
    }
    // Each write was shown as it arrived, by its author.
    let after = alice.uuid.to_string();
    for daemon in [&mut bob, &mut carol] {
        let changed = daemon
            .expect(
                "state",
                |v| v["key"] == "after" && v["reason"] == "changed",
                EVENT_TIMEOUT,
            )
            .await;
        assert_eq!(changed["author"], after.as_str(), "{changed}");
    }
}
