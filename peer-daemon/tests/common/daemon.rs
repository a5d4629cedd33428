//! A real `peer-daemon --json` process: started on 127.0.0.1 against an index, driven through
//! its stdin, its stdout read line by line into events (see `wait.rs` for the waits on them)
//! and its stderr kept for failure messages.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::REGISTER_TIMEOUT;
use super::daemon_command;
use super::process::{bound_udp_addr, cpu_ticks};

/// One line of a daemon's stdout, as the reader task hands it over.
pub(super) enum Line {
    /// A JSON object with an `"event"` string.
    Json(Value),
    /// Anything else, which `--json` must never print.
    NotJson(String),
}

/// A real `peer-daemon --json` process.
pub struct Daemon {
    /// The name it registered with (for messages).
    pub name: String,
    /// Its UUID, from the `registered` event.
    pub uuid: Uuid,
    /// Its UDP address, from the `registered` event.
    pub addr: SocketAddr,
    pub(super) child: Child,
    stdin: Option<ChildStdin>,
    pub(super) lines: mpsc::UnboundedReceiver<Line>,
    /// Events read but not yet taken by an `expect_event`, in arrival order.
    pub(super) backlog: VecDeque<Value>,
    /// Every stdout line so far (shortened), for failure messages.
    pub(super) seen: Vec<String>,
    pub(super) stderr: Arc<Mutex<Vec<String>>>,
    /// Its state directory (identity key); removed with the daemon.
    state: Arc<tempfile::TempDir>,
}

impl Daemon {
    /// The state directory, to start the same identity again.
    pub fn state(&self) -> Arc<tempfile::TempDir> {
        self.state.clone()
    }

    /// Spawns `peer-daemon --json --listen 127.0.0.1:0 --index <index_url> --name <name>` and
    /// waits until it has registered.
    pub async fn spawn(index_url: &str, name: &str) -> Daemon {
        let state = Arc::new(tempfile::tempdir().expect("state directory"));
        Self::spawn_with_state(index_url, name, state).await
    }

    /// Like [`Daemon::spawn`], with further command-line arguments (e.g. `--public-port`).
    pub async fn spawn_with_args(index_url: &str, name: &str, extra: &[&str]) -> Daemon {
        let state = Arc::new(tempfile::tempdir().expect("state directory"));
        Self::spawn_inner(index_url, name, state, extra).await
    }

    /// Starts a daemon on an existing state directory (same identity as an earlier run).
    pub async fn spawn_with_state(
        index_url: &str,
        name: &str,
        state: Arc<tempfile::TempDir>,
    ) -> Daemon {
        Self::spawn_inner(index_url, name, state, &[]).await
    }

    /// Starts a daemon on `state` with the DHT on, joined through `bootstrap` (nodes the test
    /// started on loopback), without waiting for it to register (see
    /// [`Daemon::wait_registered`]).
    pub fn start_with_dht(
        index_url: &str,
        name: &str,
        state: Arc<tempfile::TempDir>,
        bootstrap: &[String],
    ) -> Daemon {
        let extra: Vec<&str> = bootstrap
            .iter()
            .flat_map(|node| ["--dht-bootstrap", node.as_str()])
            .collect();
        Self::launch_with(index_url, name, state, &extra, &["PEER_NO_DHT"])
    }

    /// Waits until the daemon has registered; fills in its UUID and address.
    pub async fn wait_registered(&mut self) {
        self.await_registration().await;
    }

    /// Starts a daemon without waiting for it to register (e.g. when the index must refuse it).
    pub async fn spawn_unregistered(index_url: &str, name: &str) -> Daemon {
        let state = Arc::new(tempfile::tempdir().expect("state directory"));
        Self::launch(index_url, name, state, &[])
    }

    async fn spawn_inner(
        index_url: &str,
        name: &str,
        state: Arc<tempfile::TempDir>,
        extra: &[&str],
    ) -> Daemon {
        let mut daemon = Self::launch(index_url, name, state, extra);
        daemon.await_registration().await;
        daemon
    }

    fn launch(
        index_url: &str,
        name: &str,
        state: Arc<tempfile::TempDir>,
        extra: &[&str],
    ) -> Daemon {
        Self::launch_with(index_url, name, state, extra, &[])
    }

    /// [`Daemon::launch`] without the environment variables in `unset` (e.g. `PEER_NO_DHT`,
    /// which `daemon_command` sets).
    fn launch_with(
        index_url: &str,
        name: &str,
        state: Arc<tempfile::TempDir>,
        extra: &[&str],
        unset: &[&str],
    ) -> Daemon {
        let mut command = daemon_command(index_url, name, state.path());
        for var in unset {
            command.env_remove(var);
        }
        let mut child = Command::from(command)
            .arg("--json")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning peer-daemon");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(read_stdout(child.stdout.take().expect("piped stdout"), tx));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(read_stderr(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
        ));
        Daemon {
            name: name.to_owned(),
            uuid: Uuid::nil(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            child,
            stdin,
            lines,
            backlog: VecDeque::new(),
            seen: Vec::new(),
            stderr,
            state,
        }
    }

    async fn await_registration(&mut self) {
        let name = self.name.clone();
        let daemon = self;
        let registered = daemon
            .expect("registered", |_| true, REGISTER_TIMEOUT)
            .await;
        let uuid = registered["uuid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: `registered` without a uuid string: {registered}"));
        let parsed = Uuid::parse_str(uuid)
            .unwrap_or_else(|e| panic!("{name}: registered uuid {uuid:?} is not a UUID: {e}"));
        assert_eq!(
            uuid,
            parsed.hyphenated().to_string(),
            "{name}: registered uuid must be lowercase hyphenated"
        );
        let addr = registered["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: `registered` without an addr string: {registered}"));
        // Complaints about registration attempts that were retried are history now.
        daemon.backlog.retain(|v| v["event"] != "error");
        daemon.uuid = parsed;
        daemon.addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("{name}: registered addr {addr:?} is not ip:port: {e}"));
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the daemon has not been reaped yet")
    }

    /// The UDP address the daemon is bound to, which differs from [`Daemon::addr`] (what it
    /// registered) when it was started with `--public-port`.
    pub fn bound_addr(&self) -> SocketAddr {
        bound_udp_addr(self.pid()).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// CPU time it has used so far, in clock ticks (10 ms).
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid()).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// Writes one command line (a newline is added).
    pub async fn send_line(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.write_raw(&bytes).await;
    }

    /// Writes bytes to stdin as they are, in one go.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        let name = self.name.clone();
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name}: stdin already closed"));
        stdin
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("{name}: writing to stdin: {e}"));
        stdin
            .flush()
            .await
            .unwrap_or_else(|e| panic!("{name}: flushing stdin: {e}"));
    }

    /// `/msg <to> <text>`.
    pub async fn msg(&mut self, to: impl std::fmt::Display, text: &str) {
        self.send_line(&format!("/msg {to} {text}")).await;
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// `Some(status)` if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("polling the daemon's status")
    }

    /// Waits for the process to exit, failing after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("waiting for the daemon"),
            Err(_) => panic!(
                "{}: still running {timeout:?} after being asked to stop{}",
                self.name,
                self.diagnostics()
            ),
        }
    }
}

async fn read_stdout(stdout: impl AsyncRead + Unpin, tx: mpsc::UnboundedSender<Line>) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = match std::str::from_utf8(&buf) {
                    Ok(text) => text.trim_end_matches('\n').to_owned(),
                    Err(_) => {
                        let _ = tx.send(Line::NotJson(format!(
                            "(not UTF-8) {}",
                            String::from_utf8_lossy(&buf)
                        )));
                        continue;
                    }
                };
                let parsed = match serde_json::from_str::<Value>(&line) {
                    Ok(value) if value.is_object() && value["event"].is_string() => {
                        Line::Json(value)
                    }
                    _ => Line::NotJson(line),
                };
                if tx.send(parsed).is_err() {
                    return;
                }
            }
        }
    }
}

async fn read_stderr(stderr: impl AsyncRead + Unpin, sink: Arc<Mutex<Vec<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}
