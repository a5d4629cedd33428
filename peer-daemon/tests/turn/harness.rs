//! A real coturn on loopback ([`Coturn`]) and a tokio task per gatherer that owns a real UDP
//! socket and drives a [`Gatherer`] the way the daemon does ([`Node`]).

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use peer_daemon::nat::turn::{
    GatherConfig, GatherEvent, GatherStats, Gatherer, Incoming, ServerConfig, TurnCredentials,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// How long a test waits for anything before failing with what it saw.
pub const WAIT: Duration = Duration::from_secs(15);

/// Says loudly that a test skipped itself because this machine lacks a capability: on
/// stderr and in `target/tmp/SKIPPED`, which `.ci/run` prints after the tests.
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

/// A coturn process on 127.0.0.1 with a TURN REST secret; killed on drop.
pub struct Coturn {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    secret: String,
    /// The relay port range, inclusive.
    pub relay_ports: (u16, u16),
    log: PathBuf,
}

/// A fresh UDP port on 127.0.0.1 (free when this returns; good enough for a test).
pub fn free_port() -> u16 {
    let socket = StdUdpSocket::bind("127.0.0.1:0").expect("binding a probe socket");
    socket.local_addr().unwrap().port()
}

impl Coturn {
    /// Starts coturn with `extra` flags and waits until it answers a Binding. `None` (after
    /// saying SKIP) when `turnserver` is not installed.
    pub fn start(extra: &[&str]) -> Option<Coturn> {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        if Command::new("turnserver")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            skip("turn: coturn's `turnserver` is not installed (apt-get install coturn)");
            return None;
        }
        let port = free_port();
        // Each coturn of this process gets its own 20 relay ports.
        let slot = NEXT.fetch_add(1, Ordering::Relaxed);
        let min = 20_000 + (std::process::id() % 500) as u16 * 80 + (slot % 4) * 20;
        let max = min + 19;
        let secret = format!("secret-{port}");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let log = dir.join(format!("coturn-{port}.log"));
        let pid = dir.join(format!("coturn-{port}.pid"));
        let child = Command::new("turnserver")
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp"])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args([
                "--min-port",
                &min.to_string(),
                "--max-port",
                &max.to_string(),
            ])
            .args([
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
            ])
            .args(["--realm", "peerlink", "--fingerprint"])
            .args(["--log-file", "stdout", "--simple-log"])
            .args(["--allow-loopback-peers", "--allowed-peer-ip=127.0.0.1"])
            .arg(format!("--pidfile={}", pid.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("creating the coturn log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting turnserver");
        let coturn = Coturn {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            secret,
            relay_ports: (min, max),
            log,
        };
        coturn.wait_ready();
        Some(coturn)
    }

    /// Blocks until coturn answers a STUN Binding (a gatherer on a plain socket asks).
    fn wait_ready(&self) {
        let socket = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let start = Instant::now();
        let mut gatherer = Gatherer::new(start, [9; 32]);
        gatherer.set_servers(start, vec![self.stun()]);
        let mut buf = [0; 2048];
        while gatherer.reflexive().is_none() {
            assert!(
                start.elapsed() < WAIT,
                "coturn did not answer a Binding; its log:\n{}",
                self.log()
            );
            while let Some((to, bytes)) = gatherer.poll_transmit() {
                let _ = socket.send_to(&bytes, to);
            }
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                gatherer.handle_datagram(Instant::now(), from, &buf[..n]);
            }
            gatherer.handle_timeout(Instant::now());
        }
    }

    /// This server for STUN only.
    pub fn stun(&self) -> ServerConfig {
        ServerConfig {
            addr: self.addr,
            turn: None,
        }
    }

    /// This server for TURN with fresh REST credentials for `name`.
    pub fn turn(&self, name: &str) -> ServerConfig {
        ServerConfig {
            addr: self.addr,
            turn: Some(self.credentials(name)),
        }
    }

    /// This server for TURN with REST credentials for `name` that expire in `secs` seconds.
    pub fn turn_expiring(&self, name: &str, secs: u64) -> ServerConfig {
        ServerConfig {
            addr: self.addr,
            turn: Some(self.credentials_for(name, secs)),
        }
    }

    /// TURN REST credentials valid for an hour.
    pub fn credentials(&self, name: &str) -> TurnCredentials {
        self.credentials_for(name, 3600)
    }

    /// TURN REST credentials: username `<expiry>:<name>`, password
    /// base64(HMAC-SHA1(secret, username)).
    pub fn credentials_for(&self, name: &str, secs: u64) -> TurnCredentials {
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + secs;
        let username = format!("{expiry}:{name}");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.secret.as_bytes()).unwrap();
        mac.update(username.as_bytes());
        let password =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        TurnCredentials { username, password }
    }

    /// What coturn logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test leaves the log behind for a look.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
            let _ = std::fs::remove_file(self.log.with_extension("pid"));
        }
    }
}

/// What a node's task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A gatherer event.
    Event(GatherEvent),
    /// A peer's datagram through the relay; `wire` is the size of the datagram that carried it.
    Relayed {
        peer: SocketAddr,
        data: Vec<u8>,
        wire: usize,
    },
    /// A datagram not from a server.
    Peer { from: SocketAddr, data: Vec<u8> },
}

/// What a node's task is told to do.
enum Command_ {
    SetServers(Vec<ServerConfig>),
    Send {
        peer: SocketAddr,
        data: Vec<u8>,
        done: oneshot::Sender<Option<usize>>,
    },
    Inject {
        from: SocketAddr,
        bytes: Vec<u8>,
        done: oneshot::Sender<Incoming>,
    },
    Snapshot(oneshot::Sender<Snapshot>),
}

/// The gatherer's state at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stats: GatherStats,
    pub reflexive: Option<SocketAddr>,
    pub relayed: Option<SocketAddr>,
}

/// A gatherer on its own UDP socket, driven by its own task.
pub struct Node {
    /// The socket's address.
    pub addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command_>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Everything reported so far, for failure messages.
    pub seen: Vec<Report>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    /// A node with the default timings.
    pub async fn start(servers: Vec<ServerConfig>) -> Node {
        Node::with_config(servers, GatherConfig::default()).await
    }

    /// A node with `config`'s timings.
    pub async fn with_config(servers: Vec<ServerConfig>, config: GatherConfig) -> Node {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (commands, mut command_rx) = mpsc::unbounded_channel();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let seed = [addr.port() as u8; 32];
        let task = tokio::spawn(async move {
            let mut gatherer = Gatherer::with_config(Instant::now(), seed, config);
            gatherer.set_servers(Instant::now(), servers);
            let mut buf = vec![0; 4096];
            loop {
                while let Some((to, bytes)) = gatherer.poll_transmit() {
                    let _ = socket.send_to(&bytes, to).await;
                }
                while let Some(event) = gatherer.poll_event() {
                    let _ = report_tx.send(Report::Event(event));
                }
                let deadline = gatherer
                    .poll_timeout()
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    received = socket.recv_from(&mut buf) => {
                        let Ok((n, from)) = received else { continue };
                        match gatherer.handle_datagram(Instant::now(), from, &buf[..n]) {
                            Incoming::Consumed => {}
                            Incoming::Relayed { peer, data } => {
                                let _ = report_tx.send(Report::Relayed { peer, data, wire: n });
                            }
                            Incoming::NotOurs => {
                                let _ = report_tx.send(Report::Peer { from, data: buf[..n].to_vec() });
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        gatherer.handle_timeout(Instant::now());
                    }
                    command = command_rx.recv() => match command {
                        None => return,
                        Some(Command_::SetServers(servers)) => {
                            gatherer.set_servers(Instant::now(), servers);
                        }
                        Some(Command_::Send { peer, data, done }) => {
                            let wrapped = gatherer.wrap(Instant::now(), peer, &data);
                            let size = wrapped.as_ref().map(|(_, bytes)| bytes.len());
                            if let Some((to, bytes)) = wrapped {
                                // What the gatherer queued (a ChannelBind) goes out first.
                                while let Some((to, bytes)) = gatherer.poll_transmit() {
                                    let _ = socket.send_to(&bytes, to).await;
                                }
                                let _ = socket.send_to(&bytes, to).await;
                            }
                            let _ = done.send(size);
                        }
                        Some(Command_::Inject { from, bytes, done }) => {
                            let _ = done.send(gatherer.handle_datagram(Instant::now(), from, &bytes));
                        }
                        Some(Command_::Snapshot(done)) => {
                            let _ = done.send(Snapshot {
                                stats: gatherer.stats(),
                                reflexive: gatherer.reflexive(),
                                relayed: gatherer.relayed(),
                            });
                        }
                    }
                }
            }
        });
        Node {
            addr,
            commands,
            reports,
            seen: Vec::new(),
            task,
        }
    }

    /// Waits for a report `matches` accepts (others are kept in `seen`), or fails.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut matches: impl FnMut(&Report) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(report)) => {
                    let found = matches(&report);
                    self.seen.push(report);
                    if let Some(found) = found {
                        return found;
                    }
                }
                _ => panic!("waited {WAIT:?} for {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Collects whatever is reported during `time`.
    pub async fn collect(&mut self, time: Duration) -> Vec<Report> {
        let deadline = tokio::time::Instant::now() + time;
        let mut got = Vec::new();
        while let Ok(Some(report)) = tokio::time::timeout_at(deadline, self.reports.recv()).await {
            self.seen.push(report.clone());
            got.push(report);
        }
        got
    }

    /// Waits for the relayed address.
    pub async fn relayed(&mut self) -> SocketAddr {
        self.wait_for("a relayed address", |r| match r {
            Report::Event(GatherEvent::Relayed(Some(addr))) => Some(*addr),
            _ => None,
        })
        .await
    }

    /// Waits for the reflexive address.
    pub async fn reflexive(&mut self) -> SocketAddr {
        self.wait_for("a reflexive address", |r| match r {
            Report::Event(GatherEvent::Reflexive(Some(addr))) => Some(*addr),
            _ => None,
        })
        .await
    }

    /// Waits for a trouble report.
    pub async fn trouble(&mut self) -> String {
        self.wait_for("a trouble report", |r| match r {
            Report::Event(GatherEvent::Trouble(why)) => Some(why.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for a datagram from `peer` through the relay; gives its data and wire size.
    pub async fn relayed_from(&mut self, peer: SocketAddr) -> (Vec<u8>, usize) {
        self.wait_for(&format!("a relayed datagram from {peer}"), |r| match r {
            Report::Relayed {
                peer: p,
                data,
                wire,
            } if *p == peer => Some((data.clone(), *wire)),
            _ => None,
        })
        .await
    }

    /// Sends `data` to `peer` through the relay; gives the wrapped datagram's size.
    pub async fn send(&self, peer: SocketAddr, data: &[u8]) -> Option<usize> {
        let (done, rx) = oneshot::channel();
        self.command(Command_::Send {
            peer,
            data: data.to_vec(),
            done,
        });
        rx.await.expect("the node task ended")
    }

    /// Hands `bytes` to the gatherer as if they came from `from`.
    pub async fn inject(&self, from: SocketAddr, bytes: Vec<u8>) -> Incoming {
        let (done, rx) = oneshot::channel();
        self.command(Command_::Inject { from, bytes, done });
        rx.await.expect("the node task ended")
    }

    /// Replaces the node's servers.
    pub fn set_servers(&self, servers: Vec<ServerConfig>) {
        self.command(Command_::SetServers(servers));
    }

    /// The gatherer's state now.
    pub async fn snapshot(&self) -> Snapshot {
        let (done, rx) = oneshot::channel();
        self.command(Command_::Snapshot(done));
        rx.await.expect("the node task ended")
    }

    fn command(&self, command: Command_) {
        assert!(self.commands.send(command).is_ok(), "the node task ended");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}
