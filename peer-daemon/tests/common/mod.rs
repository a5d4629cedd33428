//! Helpers for the end-to-end tests: the real index run in-process on 127.0.0.1, and real
//! `peer-daemon` processes driven through stdin and read through their `--json` stdout.
//!
//! Every wait has a deadline and fails with what was seen so far; nothing sleeps and then
//! checks.

#![allow(dead_code)]

pub mod relay;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::Location;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long a daemon may take to register (the first start of a test binary can be slow).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);
/// The default wait for one event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The index
// ---------------------------------------------------------------------------------------------

/// The real index service, served in-process from a SQLite file in its own temporary directory.
/// It can be stopped and started again on the same port and the same file.
pub struct Index {
    dir: TempDir,
    /// The TCP port it serves on (kept across restarts).
    pub port: u16,
    running: Option<Running>,
}

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Index {
    /// Starts a fresh index on 127.0.0.1 with an ephemeral port and an empty database.
    pub async fn start() -> Index {
        let dir = tempfile::tempdir().expect("creating a temporary directory for the index");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the index on 127.0.0.1:0");
        let port = listener.local_addr().expect("index address").port();
        let mut index = Index {
            dir,
            port,
            running: None,
        };
        index.serve(listener);
        index
    }

    /// Base URL for `--index`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("index.db")
    }

    fn serve(&mut self, listener: TcpListener) {
        let config =
            index_service::Config::for_database(format!("sqlite://{}", self.db_path().display()));
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(index_service::run(config, listener, async move {
            let _ = rx.await;
        }));
        self.running = Some(Running { shutdown, task });
    }

    /// Stops the index: triggers its graceful shutdown and waits for it to finish, so its
    /// port is closed when this returns. Fails if it does not stop within 5 s or stopped with
    /// an error.
    pub async fn stop(&mut self) {
        let Running { shutdown, mut task } = self.running.take().expect("the index is running");
        let _ = shutdown.send(());
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("the index stopped with an error: {error:#}"),
            Ok(Err(join)) => panic!("the index task failed: {join}"),
            Err(_) => {
                task.abort();
                let _ = task.await;
                panic!("the index did not stop within 5 s of its shutdown signal");
            }
        }
    }

    /// Starts the index again on the same port and the same SQLite file.
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "restart() of a running index");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(3);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {error}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("could not bind {addr} again to restart the index: {error}"),
            }
        };
        self.serve(listener);
    }

    /// `GET /peers/{uuid}`: the status and the JSON body.
    pub async fn get_peer(&self, uuid: &str) -> (u16, Value) {
        let url = format!("{}/peers/{uuid}", self.url());
        let response = http_client()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("reading the index's answer");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {url} answered {status} with non-JSON {text:?}: {e}"));
        (status, body)
    }
}

/// A client that does not keep connections alive, so stopping the index never waits on it.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("building an HTTP client")
}

// ---------------------------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------------------------

enum Line {
    Json(Value),
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
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Line>,
    /// Events read but not yet taken by an `expect_event`, in arrival order.
    backlog: VecDeque<Value>,
    /// Every stdout line so far (shortened), for failure messages.
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_peer-daemon"))
            .args(["--json", "--listen", "127.0.0.1:0", "--index", index_url])
            .args(["--name", name])
            .args(extra)
            .arg("--state-dir")
            .arg(state.path())
            .env_remove("PEER_STATE_DIR")
            .env_remove("PEER_INDEX_URL")
            .env_remove("PEER_LISTEN")
            .env_remove("PEER_NAME")
            .env_remove("PEER_DEADLINE_SECS")
            .env_remove("PEER_PUBLIC_PORT")
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
        let sockets = relay::udp_sockets_of(self.pid())
            .unwrap_or_else(|e| panic!("{}: reading its sockets from /proc: {e}", self.name));
        match sockets[..] {
            [addr] => addr,
            _ => panic!(
                "{}: expected one bound UDP socket, found {sockets:?}",
                self.name
            ),
        }
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

    /// Waits for the first event (oldest first, including ones read earlier but not taken)
    /// that satisfies `predicate`, removes it and returns it. Fails after `timeout`, listing
    /// the events seen, or as soon as stdout carries a non-JSON line or closes.
    #[track_caller]
    pub fn expect_event<'a>(
        &'a mut self,
        predicate: impl FnMut(&Value) -> bool + 'a,
        timeout: Duration,
    ) -> impl Future<Output = Value> + 'a {
        let caller = Location::caller();
        self.expect_at(caller, "event matching the predicate", predicate, timeout)
    }

    /// Like [`Daemon::expect_event`] for an event whose `"event"` field is `kind`.
    #[track_caller]
    pub fn expect<'a>(
        &'a mut self,
        kind: &'a str,
        mut predicate: impl FnMut(&Value) -> bool + 'a,
        timeout: Duration,
    ) -> impl Future<Output = Value> + 'a {
        let caller = Location::caller();
        self.expect_at(
            caller,
            kind,
            move |v: &Value| v["event"] == kind && predicate(v),
            timeout,
        )
    }

    async fn expect_at(
        &mut self,
        caller: &'static Location<'static>,
        what: &str,
        mut predicate: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        if let Some(i) = self.backlog.iter().position(&mut predicate) {
            return self.backlog.remove(i).expect("index in range");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(Line::Json(value))) => {
                    self.seen.push(shorten(&value.to_string()));
                    if predicate(&value) {
                        return value;
                    }
                    self.backlog.push_back(value);
                }
                Ok(Some(Line::NotJson(line))) => panic!(
                    "{} ({caller}): stdout carried a line that is not a JSON object: {:?}{}",
                    self.name,
                    shorten(&line),
                    self.diagnostics()
                ),
                Ok(None) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "{} ({caller}): stdout closed while waiting for {what} (exit status {status:?}){}",
                        self.name,
                        self.diagnostics()
                    )
                }
                Err(_) => panic!(
                    "{} ({caller}): no {what} within {timeout:?}{}",
                    self.name,
                    self.diagnostics()
                ),
            }
        }
    }

    /// Events already printed but not taken by an `expect_*`, oldest first. Takes what is on
    /// the pipe right now without waiting for more.
    pub fn backlog_events(&mut self) -> impl Iterator<Item = &Value> {
        while let Ok(line) = self.lines.try_recv() {
            match line {
                Line::Json(value) => {
                    self.seen.push(shorten(&value.to_string()));
                    self.backlog.push_back(value);
                }
                Line::NotJson(line) => panic!(
                    "{}: stdout carried a line that is not a JSON object: {:?}{}",
                    self.name,
                    shorten(&line),
                    self.diagnostics()
                ),
            }
        }
        self.backlog.iter()
    }

    /// How many untaken events of `kind` have been printed so far.
    pub fn seen_count(&mut self, kind: &str) -> usize {
        self.backlog_events().filter(|v| v["event"] == kind).count()
    }

    /// The untaken `failed` events printed so far.
    pub fn seen_failed(&mut self) -> Vec<Value> {
        self.backlog_events()
            .filter(|v| v["event"] == "failed")
            .cloned()
            .collect()
    }

    /// The events seen and the daemon's stderr, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        let skip = self.seen.len().saturating_sub(40);
        let _ = write!(
            text,
            "\n--- {} stdout lines seen{} ---",
            self.seen.len(),
            if skip > 0 { " (last 40)" } else { "" }
        );
        for line in &self.seen[skip..] {
            let _ = write!(text, "\n  {line}");
        }
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let skip = stderr.len().saturating_sub(20);
        let _ = write!(text, "\n--- stderr ({} lines) ---", stderr.len());
        for line in &stderr[skip..] {
            let _ = write!(text, "\n  {}", shorten(line));
        }
        text
    }
}

fn shorten(line: &str) -> String {
    const MAX: usize = 300;
    if line.len() <= MAX {
        return line.to_owned();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &line[..end], line.len())
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

/// User CPU time plus system CPU time of a process so far, in clock ticks
/// (fields 14 and 15 of `/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // The command name (field 2) is in parentheses and may contain spaces.
    let after_name = &stat[stat.rfind(')').expect("a command name in parentheses") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field 14 is at index 11.
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Says loudly that a test skipped itself because this machine lacks a capability: on stderr,
/// and in `target/tmp/SKIPPED`, which `.ci/run` prints after the tests (cargo hides the stderr
/// of tests that pass).
pub fn skip(why: &str) {
    use std::io::Write;
    eprintln!("SKIP: {why}");
    let path = concat!(env!("CARGO_TARGET_TMPDIR"), "/SKIPPED");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{why}");
    }
}
