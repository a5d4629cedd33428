//! The two clients of the control test: a daemon started with `--control` whose `--json`
//! stdout is read as events ([`Controlled`]), and a reader of the API's `/events` stream
//! ([`EventStream`]).

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::common::{REGISTER_TIMEOUT, daemon_command};

/// A `peer-daemon --json --control 127.0.0.1:0` process and its stdout events.
pub(crate) struct Controlled {
    /// Its UUID, from the `registered` event.
    pub(crate) uuid: Uuid,
    /// Its state directory (the token file is there).
    pub(crate) state: tempfile::TempDir,
    _child: tokio::process::Child,
    events: mpsc::UnboundedReceiver<Value>,
    backlog: VecDeque<Value>,
}

impl Controlled {
    pub(crate) async fn spawn(index_url: &str, name: &str) -> Controlled {
        let state = tempfile::tempdir().expect("state directory");
        let mut command =
            tokio::process::Command::from(daemon_command(index_url, name, state.path()));
        command
            .args(["--json", "--control", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawning peer-daemon");
        let (tx, events) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line {line:?} is not JSON: {e}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let mut daemon = Controlled {
            uuid: Uuid::nil(),
            state,
            _child: child,
            events,
            backlog: VecDeque::new(),
        };
        let registered = daemon
            .expect("registered", |_| true, REGISTER_TIMEOUT)
            .await;
        daemon.uuid = registered["uuid"]
            .as_str()
            .and_then(|u| u.parse().ok())
            .expect("a UUID");
        daemon
    }

    /// The first event of `kind` (oldest first) that `predicate` accepts, removed.
    pub(crate) async fn expect(
        &mut self,
        kind: &str,
        mut predicate: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let mut wanted = |v: &Value| v["event"] == kind && predicate(v);
        if let Some(i) = self.backlog.iter().position(&mut wanted) {
            return self.backlog.remove(i).expect("in range");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(value)) if wanted(&value) => return value,
                Ok(Some(value)) => self.backlog.push_back(value),
                Ok(None) => panic!(
                    "stdout closed while waiting for {kind}; seen: {:?}",
                    self.backlog
                ),
                Err(_) => panic!("no {kind} within {timeout:?}; seen: {:?}", self.backlog),
            }
        }
    }

    /// How many events of `kind` have been printed and not taken.
    pub(crate) fn seen_count(&mut self, kind: &str) -> usize {
        while let Ok(value) = self.events.try_recv() {
            self.backlog.push_back(value);
        }
        self.backlog.iter().filter(|v| v["event"] == kind).count()
    }
}

/// A reader of the `/events` stream: `(event name, data)` pairs as they arrive.
pub(crate) struct EventStream {
    response: reqwest::Response,
    buf: String,
    seen: Vec<String>,
}

impl EventStream {
    /// Reads the stream `response` carries.
    pub(crate) fn new(response: reqwest::Response) -> EventStream {
        EventStream {
            response,
            buf: String::new(),
            seen: Vec::new(),
        }
    }

    /// Waits for an event that `predicate` accepts, checking on the way that every event is
    /// named after its `event` field. Fails after `timeout`, listing what came.
    pub(crate) async fn expect(
        &mut self,
        mut predicate: impl FnMut(&str, &Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                let Some(name) = name else { continue }; // keep-alive comments
                self.seen.push(format!("{name}: {data}"));
                let value: Value = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON: {data:?}: {e}"));
                assert_eq!(
                    value["event"],
                    name.as_str(),
                    "the SSE event name must be the event's kind: {block:?}"
                );
                if predicate(&name, &value) {
                    return value;
                }
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self
                    .buf
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events")),
                Ok(Ok(None)) => panic!("the event stream ended; seen: {:#?}", self.seen),
                Ok(Err(error)) => {
                    panic!("reading the event stream: {error}; seen: {:#?}", self.seen)
                }
                Err(_) => panic!(
                    "no matching event within {timeout:?}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }
}
