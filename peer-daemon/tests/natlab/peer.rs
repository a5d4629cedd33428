//! A real `peer-daemon --json` on a lab host (`ip netns exec HOST peer-daemon …`): driven
//! through stdin, its stdout read into events. Every wait has a deadline and fails with what
//! was seen; `path` events are kept apart (see [`LabDaemon::paths`]) so that no wait for
//! another event swallows them.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::lab::{HostId, Lab};

/// How long a daemon in the lab may take to register.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);

/// A daemon running on a lab host.
pub struct LabDaemon {
    /// Its name (for messages).
    pub name: String,
    /// Its UUID, from `registered`.
    pub uuid: Uuid,
    /// The address the index recorded for it, from `registered`.
    pub addr: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Result<Value, String>>,
    backlog: VecDeque<Value>,
    /// Every `path` event so far, oldest first.
    pub paths: Vec<Value>,
    /// When each of [`LabDaemon::paths`] was read from the daemon's stdout (same order).
    pub path_times: Vec<Instant>,
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    _state: tempfile::TempDir,
}

impl Lab {
    /// Starts `peer-daemon --json --index <the lab's index> --name <name>` on `host` with
    /// `extra` arguments (e.g. `--listen`), and waits for `registered`.
    pub async fn spawn_daemon(&self, host: HostId, name: &str, extra: &[&str]) -> LabDaemon {
        let url = self
            .servers
            .as_ref()
            .expect("Lab::start_servers was not called")
            .index_url();
        let mut daemon = self.launch(host, name, &url, false, extra);
        let registered = daemon
            .expect("registered", |_| true, REGISTER_TIMEOUT)
            .await;
        daemon.uuid = registered["uuid"]
            .as_str()
            .and_then(|u| Uuid::parse_str(u).ok())
            .unwrap_or_else(|| panic!("{name}: `registered` without a uuid: {registered}"));
        daemon.addr = registered["addr"].as_str().unwrap_or_default().to_owned();
        daemon.backlog.retain(|v| v["event"] != "error");
        daemon
    }

    /// Starts `peer-daemon --json --index none --name <name>` with LAN discovery on (mDNS on
    /// the host's LAN, inside the lab) on `host`, and learns its UUID from `/whoami`.
    pub async fn spawn_lan_daemon(&self, host: HostId, name: &str, extra: &[&str]) -> LabDaemon {
        self.spawn_on_lan(host, name, "none", extra).await
    }

    /// Starts a daemon with LAN discovery on and `--index <index>` (which may be down) on
    /// `host`, without waiting for a registration; learns its UUID from `/whoami`.
    pub async fn spawn_on_lan(
        &self,
        host: HostId,
        name: &str,
        index: &str,
        extra: &[&str],
    ) -> LabDaemon {
        let mut daemon = self.launch(host, name, index, true, extra);
        daemon.send_line("/whoami").await;
        let whoami = daemon.expect("whoami", |_| true, REGISTER_TIMEOUT).await;
        assert_eq!(whoami["mdns"], true, "{name}: mDNS is off: {whoami}");
        if index == "none" {
            assert_eq!(whoami["index_status"], "none", "{name}: {whoami}");
        }
        daemon.uuid = whoami["uuid"]
            .as_str()
            .and_then(|u| Uuid::parse_str(u).ok())
            .unwrap_or_else(|| panic!("{name}: `whoami` without a uuid: {whoami}"));
        daemon
    }

    /// Starts the daemon on `host` without waiting for anything.
    fn launch(
        &self,
        host: HostId,
        name: &str,
        index: &str,
        mdns: bool,
        extra: &[&str],
    ) -> LabDaemon {
        let state = tempfile::tempdir_in(self.dir.path()).expect("daemon state directory");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.host(host).ns])
            .arg(env!("CARGO_BIN_EXE_peer-daemon"))
            .args(["--json", "--index", index, "--name", name, "--state-dir"])
            .arg(state.path())
            .args(extra);
        // Settings exported where the tests run must not change what they test.
        for (var, _) in std::env::vars_os() {
            let var_str = var.to_string_lossy();
            if var_str.starts_with("PEER_") || var_str.to_ascii_lowercase().ends_with("_proxy") {
                command.env_remove(var);
            }
        }
        // Never the public DHT (only a private one a test names with `--dht-bootstrap`); LAN
        // discovery only where a test asks for it.
        if !extra.contains(&"--dht-bootstrap") {
            command.env("PEER_NO_DHT", "1");
        }
        if !mdns {
            command.env("PEER_NO_MDNS", "1");
        }
        let mut child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning peer-daemon in its namespace");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let parsed = match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v["event"].is_string() => Ok(v),
                    _ => Err(line),
                };
                if tx.send(parsed).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("piped stderr");
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        LabDaemon {
            name: name.to_owned(),
            uuid: Uuid::nil(),
            addr: String::new(),
            stdin: child.stdin.take(),
            child,
            lines,
            backlog: VecDeque::new(),
            paths: Vec::new(),
            path_times: Vec::new(),
            seen: Vec::new(),
            stderr,
            _state: state,
        }
    }
}

impl LabDaemon {
    /// Writes one command line.
    pub async fn send_line(&mut self, line: &str) {
        self.write_raw(format!("{line}\n").as_bytes()).await;
    }

    /// Writes bytes to stdin in one go.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        let name = self.name.clone();
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("{name}: writing to stdin: {e}"));
        stdin
            .flush()
            .await
            .unwrap_or_else(|e| panic!("{name}: flushing stdin: {e}"));
    }

    /// Waits for the first event of `kind` satisfying `predicate` (earlier untaken ones first),
    /// removes and returns it. Fails after `timeout` with what was seen.
    #[track_caller]
    pub fn expect<'a>(
        &'a mut self,
        kind: &'a str,
        mut predicate: impl FnMut(&Value) -> bool + 'a,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let matches = move |v: &Value| v["event"] == kind && predicate(v);
            self.expect_at(caller, kind, matches, timeout).await
        }
    }

    async fn expect_at(
        &mut self,
        caller: &'static std::panic::Location<'static>,
        what: &str,
        mut matches: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        if let Some(i) = self.backlog.iter().position(&mut matches) {
            return self.backlog.remove(i).expect("in range");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(Ok(value))) => {
                    if let Some(found) = self.take(value, &mut matches) {
                        return found;
                    }
                }
                Ok(Some(Err(line))) => panic!(
                    "{} ({caller}): stdout carried a non-JSON line {line:?}{}",
                    self.name,
                    self.diagnostics()
                ),
                Ok(None) => panic!(
                    "{} ({caller}): stdout closed while waiting for {what}{}",
                    self.name,
                    self.diagnostics()
                ),
                Err(_) => panic!(
                    "{} ({caller}): no {what} within {timeout:?}{}",
                    self.name,
                    self.diagnostics()
                ),
            }
        }
    }

    /// Waits for the receipt of a message to `to`: returns the `delivered` event, fails at
    /// once on a `failed` one (or after `timeout`).
    #[track_caller]
    pub fn receipt(
        &mut self,
        to: Uuid,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Value> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let to = to.to_string();
            let receipt = self
                .expect_at(
                    caller,
                    "delivered or failed",
                    |v| {
                        (v["event"] == "delivered" || v["event"] == "failed")
                            && v["to"] == to.as_str()
                    },
                    timeout,
                )
                .await;
            assert_eq!(
                receipt["event"],
                "delivered",
                "{} ({caller}): a message to {to} failed: {receipt}{}",
                self.name,
                self.diagnostics()
            );
            receipt
        }
    }

    /// Files an event that just arrived: `path` events into [`LabDaemon::paths`], the rest
    /// returned when they match or kept in the backlog.
    fn take(&mut self, value: Value, matches: &mut impl FnMut(&Value) -> bool) -> Option<Value> {
        let mut line = value.to_string();
        line.truncate(300);
        self.seen.push(line);
        if value["event"] == "path" {
            self.paths.push(value.clone());
            self.path_times.push(Instant::now());
        }
        if matches(&value) {
            return Some(value);
        }
        if value["event"] != "path" {
            self.backlog.push_back(value);
        }
        None
    }

    /// Reads what is on the pipe now, without waiting, into the backlog and `paths`.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            if let Ok(value) = line {
                self.take(value, &mut |_| false);
            }
        }
    }

    /// The untaken events of `kind` so far.
    pub fn seen_of(&mut self, kind: &str) -> Vec<Value> {
        self.drain();
        self.backlog
            .iter()
            .filter(|v| v["event"] == kind)
            .cloned()
            .collect()
    }

    /// The latest `path` event for `peer`, if any.
    pub fn last_path(&mut self, peer: Uuid) -> Option<Value> {
        self.drain();
        let peer = peer.to_string();
        self.paths
            .iter()
            .rev()
            .find(|v| v["peer"] == peer.as_str())
            .cloned()
    }

    /// Waits until the latest `path` event for `peer` says `via`; returns it.
    pub async fn wait_path(&mut self, peer: Uuid, via: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(path) = self.last_path(peer)
                && path["via"] == via
            {
                return path;
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(Ok(value))) => {
                    self.take(value, &mut |_| false);
                }
                Ok(Some(Err(_))) | Ok(None) | Err(_) => panic!(
                    "{}: the path to {peer} did not become {via} within {timeout:?}{}",
                    self.name,
                    self.diagnostics()
                ),
            }
        }
    }

    /// Like [`LabDaemon::wait_path`], but `None` instead of a failure when the path does not
    /// become `via` within `timeout` (a benchmark's bounded wait); `Some` with the event and
    /// when it was read.
    pub async fn try_wait_path(
        &mut self,
        peer: Uuid,
        via: &str,
        timeout: Duration,
    ) -> Option<(Value, Instant)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let wanted = peer.to_string();
        loop {
            self.drain();
            let found = self
                .paths
                .iter()
                .zip(&self.path_times)
                .rev()
                .find(|(v, _)| v["peer"] == wanted.as_str());
            if let Some((path, &at)) = found
                && path["via"] == via
            {
                return Some((path.clone(), at));
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(Ok(value))) => {
                    self.take(value, &mut |_| false);
                }
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Kills the daemon.
    #[allow(
        dead_code,
        reason = "harness API: a peer that vanishes or changes network"
    )]
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The last events seen and the last stderr lines, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = format!("\n--- {} stdout lines (last 30) ---", self.seen.len());
        for line in &self.seen[self.seen.len().saturating_sub(30)..] {
            text.push_str("\n  ");
            text.push_str(line);
        }
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        text.push_str(&format!(
            "\n--- stderr ({} lines, last 20) ---",
            stderr.len()
        ));
        for line in &stderr[stderr.len().saturating_sub(20)..] {
            text.push_str("\n  ");
            text.push_str(line);
        }
        text
    }
}
