//! Real `peer-daemon --json` processes driven the way a user or script drives them: commands
//! on stdin, events on stdout. The sender's stdout is read on the measuring thread itself, so
//! no extra hand-off is timed; a receiver's stdout is drained by a thread that only counts
//! messages (a daemon whose stdout pipe fills stops chatting).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::daemon_command;
use crate::stats::{Latency, Throughput};

/// How long a receiver may take to print the last message after its sender's receipt.
const SETTLE: Duration = Duration::from_secs(10);

/// One daemon process.
pub struct Daemon {
    /// For messages.
    pub name: String,
    /// From its `registered` event.
    pub uuid: String,
    /// Process id.
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    /// `message` events printed so far, once draining.
    messages: Arc<AtomicU64>,
    stderr: Arc<Mutex<Vec<String>>>,
    _state: tempfile::TempDir,
}

impl Daemon {
    /// Starts `peer-daemon --json` on 127.0.0.1:0 and waits for its registration.
    pub fn spawn(
        bin: &Path,
        index_url: &str,
        name: &str,
        extra: &[String],
    ) -> anyhow::Result<Daemon> {
        let state = tempfile::tempdir().context("creating a state directory")?;
        let mut child = daemon_command(bin, index_url, name, state.path())
            .arg("--json")
            .args(extra)
            // `info` for the counters the driver logs when it stops; nothing per message.
            .env("RUST_LOG", "warn,peer_daemon=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("piped stderr");
        let who = name.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("[{who}] {line}");
                }
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut daemon = Daemon {
            name: name.to_owned(),
            uuid: String::new(),
            pid: child.id(),
            stdin: child.stdin.take(),
            stdout: child
                .stdout
                .take()
                .map(|s| BufReader::with_capacity(1 << 16, s)),
            child,
            messages: Arc::new(AtomicU64::new(0)),
            stderr,
            _state: state,
        };
        let registered = daemon.wait_for("registered")?;
        daemon.uuid = registered["uuid"]
            .as_str()
            .context("`registered` without a uuid")?
            .to_owned();
        Ok(daemon)
    }

    /// Reads one stdout line into `line`; fails at the end of output.
    fn read_line(&mut self, line: &mut String) -> anyhow::Result<()> {
        line.clear();
        let stdout = self.stdout.as_mut().context("stdout is being drained")?;
        if stdout.read_line(line)? == 0 {
            bail!("{} closed its stdout (exited?)", self.name);
        }
        Ok(())
    }

    /// The next event of `kind`, skipping others; fails on a `failed` event.
    fn wait_for(&mut self, kind: &str) -> anyhow::Result<Value> {
        let mut line = String::new();
        loop {
            self.read_line(&mut line)?;
            let event: Value = serde_json::from_str(&line)
                .with_context(|| format!("{} printed a non-JSON line: {line:?}", self.name))?;
            if event["event"] == kind {
                return Ok(event);
            }
            match event["event"].as_str() {
                Some("failed") => bail!("{}: {event}", self.name),
                // Trouble beside the chat (e.g. with the index) is worth seeing, not fatal.
                Some("error") => eprintln!("[{}] {}", self.name, line.trim_end()),
                _ => {}
            }
        }
    }

    /// Writes one command line.
    fn send_line(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// From now on a thread reads stdout and counts `message` events.
    pub fn drain(&mut self) {
        let Some(mut stdout) = self.stdout.take() else {
            return;
        };
        let messages = self.messages.clone();
        let name = self.name.clone();
        thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line.starts_with(r#"{"event":"message""#) => {
                        messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => eprintln!("[{name}] {}", line.trim_end()),
                }
            }
        });
    }

    /// Waits until the draining thread has counted `count` messages in all.
    pub fn await_messages(&self, count: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE;
        while self.messages.load(Ordering::Relaxed) < count {
            if Instant::now() > deadline {
                bail!(
                    "{} printed {} messages, expected {count}",
                    self.name,
                    self.messages.load(Ordering::Relaxed)
                );
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Messages printed so far (once draining).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Stops the daemon with SIGTERM and returns the counters it logs on the way out.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        // Give the stderr thread a moment to read the last lines.
        thread::sleep(Duration::from_millis(50));
        let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .find(|l| l.contains("daemon stopped"))
            .cloned()
            .unwrap_or_else(|| "(no counters logged)".to_owned())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Round trips of `/peers` → `peers`: the stdin/stdout plumbing alone, no network.
pub fn plumbing(d: &mut Daemon, warmup: usize, count: usize) -> anyhow::Result<Latency> {
    let mut latency = Latency::default();
    for i in 0..warmup + count {
        let start = Instant::now();
        d.send_line("/peers")?;
        d.wait_for("peers")?;
        if i >= warmup {
            latency.samples.push(start.elapsed());
        }
    }
    Ok(latency)
}

/// The two views of one-at-a-time acknowledgements.
pub struct AckLatency {
    /// `rtt_ms` of each `delivered`: first transmission to final ack, inside the daemon.
    pub rtt: Latency,
    /// From writing the `/msg` line to reading its `delivered`.
    pub wall: Latency,
}

/// Sends `warmup + count` messages from `from` to `to`, each after the previous one's
/// `delivered`, and checks that `to` printed every one.
pub fn ack_round_trips(
    from: &mut Daemon,
    to: &Daemon,
    payload: &str,
    warmup: usize,
    count: usize,
) -> anyhow::Result<AckLatency> {
    let line = format!("/msg {} {payload}", to.uuid);
    let before = to.messages();
    let (mut rtt, mut wall) = (Latency::default(), Latency::default());
    for i in 0..warmup + count {
        let start = Instant::now();
        from.send_line(&line)?;
        let delivered = from.wait_for("delivered")?;
        let elapsed = start.elapsed();
        let rtt_ms = delivered["rtt_ms"]
            .as_f64()
            .context("`delivered` without rtt_ms")?;
        if i >= warmup {
            wall.samples.push(elapsed);
            rtt.samples.push(Duration::from_secs_f64(rtt_ms / 1e3));
        }
    }
    to.await_messages(before + (warmup + count) as u64)?;
    Ok(AckLatency { rtt, wall })
}

/// Writes `count` `/msg` lines to `from` as fast as its stdin takes them while reading its
/// events, until the last `delivered`; checks that `to` printed every message.
pub fn pipelined(
    from: &mut Daemon,
    to: &Daemon,
    payload: &str,
    count: u64,
) -> anyhow::Result<Throughput> {
    let line = format!("/msg {} {payload}\n", to.uuid);
    let before = to.messages();
    let mut stdin = from.stdin.take().context("stdin closed")?;
    let start = Instant::now();
    let writer = thread::spawn(move || -> std::io::Result<ChildStdin> {
        let mut buffered = BufWriter::with_capacity(1 << 16, &mut stdin);
        for _ in 0..count {
            buffered.write_all(line.as_bytes())?;
        }
        buffered.flush()?;
        drop(buffered);
        Ok(stdin)
    });
    let mut delivered = 0;
    let mut text = String::new();
    let outcome = loop {
        if delivered == count {
            break Ok(());
        }
        if let Err(error) = from.read_line(&mut text) {
            break Err(error);
        }
        if text.starts_with(r#"{"event":"delivered""#) {
            delivered += 1;
        } else if text.starts_with(r#"{"event":"failed""#) {
            break Err(anyhow::anyhow!("{}: {}", from.name, text.trim_end()));
        } else if !text.starts_with(r#"{"event":"sent""#) {
            eprintln!("[{}] {}", from.name, text.trim_end());
        }
    };
    let elapsed = start.elapsed();
    // On failure the writer may be stuck on a full pipe; it ends when the daemon is killed.
    outcome?;
    from.stdin = Some(writer.join().expect("the writer thread")?);
    to.await_messages(before + count)?;
    Ok(Throughput {
        sent: count,
        delivered,
        elapsed,
        size: payload.len(),
    })
}
