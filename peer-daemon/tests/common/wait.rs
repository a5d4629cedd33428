//! Waiting for a daemon's events: every wait has a deadline and fails with what was seen so
//! far (the last stdout lines and stderr); nothing sleeps and then checks. Events read while
//! waiting for another stay in a backlog, oldest first, for the next wait.

use std::fmt::Write as _;
use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use serde_json::Value;

use super::daemon::{Daemon, Line};

/// How long a daemon may take to register (the first start of a test binary can be slow).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);
/// The default wait for one event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

impl Daemon {
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

/// `line` cut to 300 bytes for a failure message, saying how long it was.
pub(super) fn shorten(line: &str) -> String {
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
