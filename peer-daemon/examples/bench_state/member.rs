//! A release `peer-daemon --json` as a room member: commands go to its stdin, and a thread reads
//! every event on its stdout as it comes, keeping what the benchmark waits for (when each key
//! of a room first arrived, how many room and private messages came and when the last did,
//! which members it knows) and handing `/stats` and `/state` answers back to the caller.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::daemon_command;
use crate::stats::cpu_time;

/// How long a daemon may take to answer `/stats`, `/state` or to register.
const ANSWER: Duration = Duration::from_secs(30);

/// Messages that arrived for one room (or, under [`PRIVATE`], privately).
#[derive(Debug, Default, Clone, Copy)]
pub struct Arrivals {
    /// How many so far.
    pub count: u64,
    /// When the last one was read.
    pub last: Option<Instant>,
}

/// Where private messages are counted in [`Seen::messages`].
pub const PRIVATE: &str = "";

/// What a member's events said so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Room → key → when a `state` event first gave it a value.
    pub keys: HashMap<String, HashMap<String, Instant>>,
    /// Room (or [`PRIVATE`]) → messages that arrived.
    pub messages: HashMap<String, Arrivals>,
    /// Room → members it knew when we joined (our own `joined` event).
    pub members_at_join: HashMap<String, usize>,
    /// Room → members that joined after us.
    pub joined_later: HashMap<String, HashSet<String>>,
    /// `error` and `failed` events, for the report.
    pub errors: Vec<String>,
}

impl Seen {
    /// Other members of `room` this member knows of.
    pub fn members(&self, room: &str) -> usize {
        self.members_at_join.get(room).copied().unwrap_or(0)
            + self.joined_later.get(room).map_or(0, HashSet::len)
    }

    /// Keys of `room` that have arrived.
    pub fn key_count(&self, room: &str) -> usize {
        self.keys.get(room).map_or(0, HashMap::len)
    }

    /// When the last key of `room` arrived.
    pub fn last_key(&self, room: &str) -> Option<Instant> {
        self.keys.get(room)?.values().max().copied()
    }

    /// Messages that arrived for `room` (or [`PRIVATE`]).
    pub fn arrivals(&self, room: &str) -> Arrivals {
        self.messages.get(room).copied().unwrap_or_default()
    }

    fn take(&mut self, event: &Value, at: Instant) {
        let room = event["room"].as_str();
        match event["event"].as_str() {
            Some("state") if event["reason"] == "changed" && event["value"].is_string() => {
                if let (Some(room), Some(key)) = (room, event["key"].as_str()) {
                    self.keys
                        .entry(room.to_owned())
                        .or_default()
                        .entry(key.to_owned())
                        .or_insert(at);
                }
            }
            Some("message") => {
                let arrivals = self
                    .messages
                    .entry(room.unwrap_or(PRIVATE).to_owned())
                    .or_default();
                arrivals.count += 1;
                arrivals.last = Some(at);
            }
            Some("joined") => {
                let Some(room) = room else { return };
                match event["peer"].as_str() {
                    Some(peer) => {
                        self.joined_later
                            .entry(room.to_owned())
                            .or_default()
                            .insert(peer.to_owned());
                    }
                    None => {
                        let known = event["members"].as_u64().unwrap_or(0) as usize;
                        self.members_at_join.insert(room.to_owned(), known);
                    }
                }
            }
            Some("left") => {
                if let (Some(room), Some(peer)) = (room, event["peer"].as_str())
                    && let Some(later) = self.joined_later.get_mut(room)
                    && !later.remove(peer)
                {
                    let known = self.members_at_join.entry(room.to_owned()).or_default();
                    *known = known.saturating_sub(1);
                }
            }
            Some("error" | "failed") => self.errors.push(event.to_string()),
            _ => {}
        }
    }
}

/// One daemon process.
pub struct Member {
    /// Its name on the index.
    pub name: String,
    /// From its `registered` event.
    pub uuid: String,
    /// Process id.
    pub pid: u32,
    child: Child,
    stdin: ChildStdin,
    seen: Arc<Mutex<Seen>>,
    /// `stats`, `state_list` and `registered` events, in order.
    answers: Receiver<Value>,
    _state: tempfile::TempDir,
}

impl Member {
    /// Starts `peer-daemon --json --no-mdns --no-dht` on 127.0.0.1:0 with its own state
    /// directory and waits for its registration.
    pub fn spawn(bin: &Path, index_url: &str, name: &str) -> anyhow::Result<Member> {
        let state = tempfile::tempdir().context("creating a state directory")?;
        let mut child = daemon_command(bin, index_url, name, state.path())
            .args(["--json", "--no-mdns", "--no-dht"])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let who = name.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{who}] {line}");
            }
        });
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, answers) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let (reader_seen, who) = (seen.clone(), name.to_owned());
        thread::spawn(move || read_events(stdout, &who, &reader_seen, &tx));
        let mut member = Member {
            name: name.to_owned(),
            uuid: String::new(),
            pid: child.id(),
            stdin: child.stdin.take().expect("piped stdin"),
            child,
            seen,
            answers,
            _state: state,
        };
        let registered = member.answer("registered")?;
        member.uuid = registered["uuid"]
            .as_str()
            .context("`registered` without a uuid")?
            .to_owned();
        Ok(member)
    }

    /// Writes command lines (each without its newline) in one go.
    pub fn send(&mut self, lines: &[String]) -> anyhow::Result<()> {
        let mut all = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            all.push_str(line);
            all.push('\n');
        }
        self.stdin
            .write_all(all.as_bytes())
            .and_then(|()| self.stdin.flush())
            .with_context(|| format!("writing to {}'s stdin", self.name))
    }

    /// What its events said so far.
    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next answer of `kind`, skipping others.
    fn answer(&self, kind: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + ANSWER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.answers.recv_timeout(left).with_context(|| {
                format!("{} gave no `{kind}` event within {ANSWER:?}", self.name)
            })?;
            if event["event"] == kind {
                return Ok(event);
            }
        }
    }

    /// `/stats`: every counter by name.
    pub fn stats(&mut self) -> anyhow::Result<HashMap<String, u64>> {
        self.send(&["/stats".to_owned()])?;
        let stats = self.answer("stats")?;
        let counters = stats["counters"]
            .as_object()
            .context("`stats` without counters")?;
        Ok(counters
            .iter()
            .map(|(name, value)| (name.clone(), value.as_u64().unwrap_or(0)))
            .collect())
    }

    /// `/state` of the active room: key → value.
    pub fn state(&mut self) -> anyhow::Result<HashMap<String, String>> {
        self.send(&["/state".to_owned()])?;
        let list = self.answer("state_list")?;
        let entries = list["entries"]
            .as_array()
            .context("`state_list` without entries")?;
        Ok(entries
            .iter()
            .filter_map(|e| {
                Some((
                    e["key"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// User plus system CPU time so far.
    pub fn cpu(&self) -> Duration {
        cpu_time(self.pid)
    }

    /// Resident memory now, in KiB (`VmRSS`), 0 when `/proc` cannot tell.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until its events say `pred`; fails after `timeout` with `what`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Seen) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !pred(&self.seen()) {
            if Instant::now() > deadline {
                bail!("{}: {what} not seen within {timeout:?}", self.name);
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stdout reader: stamps every event as it is read, so a busy caller does not delay the
/// arrival times (a daemon whose stdout pipe fills would stop chatting, too).
fn read_events(stdout: impl std::io::Read, who: &str, seen: &Mutex<Seen>, answers: &Sender<Value>) {
    let mut stdout = BufReader::with_capacity(1 << 16, stdout);
    let mut line = String::new();
    let mut complaints = 0;
    loop {
        line.clear();
        match stdout.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let at = Instant::now();
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            eprintln!("[{who}] non-JSON line: {}", line.trim_end());
            continue;
        };
        if matches!(event["event"].as_str(), Some("error" | "failed")) {
            // A refused write repeats for every line after it: the report counts them all.
            complaints += 1;
            if complaints <= 10 {
                eprintln!("[{who}] {}", line.trim_end());
            }
        }
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(&event, at);
        if matches!(
            event["event"].as_str(),
            Some("stats" | "state_list" | "registered")
        ) {
            // The benchmark may have stopped listening; the events still count.
            let _ = answers.send(event);
        }
    }
}
