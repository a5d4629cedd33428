//! The real servers on the lab's internet: coturn (the Debian `turnserver`) and the index
//! (the `index-service` binary of this build), each a process started with `ip netns exec`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::netns::in_netns;
use crate::stun;

/// coturn's address (it relays from the same address).
pub const TURN_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
/// coturn's main port (TURN and STUN).
pub const TURN_PORT: u16 = 3478;
/// A second STUN port of the same coturn (`--aux-server`), for mapping checks.
pub const STUN_AUX_PORT: u16 = 3479;
/// The index's address.
pub const INDEX_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 8080);
/// coturn's `static-auth-secret`, which the index gets too.
pub const TURN_SECRET: &str = "natlab-shared-secret";
/// The index flags naming the TURN server and its secret: passed only when `index-service
/// --help` lists the first of them (the flags are new with issue 11).
pub const INDEX_TURN_FLAGS: [&str; 2] = ["--turn-url", "--turn-secret"];

/// coturn and the index, killed when dropped.
pub struct Servers {
    turn: Child,
    index: Option<Child>,
    inet: String,
    dir: PathBuf,
    /// Whether the index was given the TURN server (its binary knows [`INDEX_TURN_FLAGS`]).
    pub index_knows_turn: bool,
}

impl Servers {
    /// The index's base URL, for `--index`.
    pub fn index_url(&self) -> String {
        format!("http://{INDEX_ADDR}")
    }

    /// Kills the index (SIGKILL, as a crash) and waits for it to be gone.
    pub fn kill_index(&mut self) {
        let mut index = self.index.take().expect("the index is running");
        let _ = index.kill();
        let _ = index.wait();
    }

    /// Starts the index again on the same address and database.
    #[allow(dead_code, reason = "harness API: an index that comes back")]
    pub fn restart_index(&mut self) {
        assert!(self.index.is_none(), "the index is still running");
        self.index = Some(start_index(&self.inet, &self.dir, self.index_knows_turn));
        wait_for_index(&self.inet);
    }

    /// coturn's log so far (for failure messages).
    pub fn turn_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turn.log")).unwrap_or_default()
    }

    /// The index's log so far (for failure messages).
    pub fn index_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("index.log")).unwrap_or_default()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.turn).chain(self.index.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Lab {
    /// Starts coturn on 203.0.113.20:3478 (and STUN on :3479) and the index on
    /// 203.0.113.10:8080 in the internet namespace, and waits until both answer.
    pub fn start_servers(&mut self) {
        let dir = self.dir.path().to_owned();
        let log = std::fs::File::create(dir.join("turn.log")).expect("coturn log file");
        let turn = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.inet,
                "turnserver",
                "-n",
                "--no-cli",
                "--no-tls",
            ])
            .args(["--no-dtls", "--listening-ip", &TURN_IP.to_string()])
            .args(["--relay-ip", &TURN_IP.to_string()])
            .args(["--listening-port", &TURN_PORT.to_string()])
            .args(["--aux-server", &format!("{TURN_IP}:{STUN_AUX_PORT}")])
            .args([
                "--min-port",
                "49152",
                "--max-port",
                "49400",
                "--use-auth-secret",
            ])
            .arg(format!("--static-auth-secret={TURN_SECRET}"))
            .args(["--realm", "natlab", "--fingerprint", "--log-file", "stdout"])
            .args([
                "--simple-log",
                "--allowed-peer-ip=203.0.113.0-203.0.113.255",
            ])
            .arg("--pidfile")
            .arg(dir.join("turn.pid"))
            .arg("--userdb")
            .arg(dir.join("turndb"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting turnserver");
        let index_knows_turn = index_supports_turn();
        if !index_knows_turn {
            eprintln!(
                "natlab: index-service does not know {INDEX_TURN_FLAGS:?} yet; started without TURN"
            );
        }
        let index = start_index(&self.inet, &dir, index_knows_turn);
        let servers = Servers {
            turn,
            index: Some(index),
            inet: self.inet.clone(),
            dir,
            index_knows_turn,
        };
        let inet = self.inet.clone();
        self.servers = Some(servers);
        // coturn answers a STUN Binding once it listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        let turn = SocketAddr::from((TURN_IP, TURN_PORT));
        loop {
            let answered = in_netns(&inet, || {
                let socket = std::net::UdpSocket::bind("203.0.113.30:0").expect("bind");
                stun::binding(&socket, turn, Duration::from_millis(200)).is_ok()
            });
            if answered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "coturn did not answer a STUN Binding within 10 s; its log:\n{}",
                self.servers().turn_log()
            );
        }
        wait_for_index(&inet);
    }
}

/// The `index-service` binary next to this test's `peer-daemon`, built (once per test
/// process) when it is missing or older than its sources: `cargo test -p peer-daemon` does
/// not build another package's binaries.
fn index_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_peer-daemon")).with_file_name("index-service");
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let sources = ["index-service", "proto", "migrations"]
            .iter()
            .filter_map(|dir| newest_mtime(&workspace.join(dir)))
            .max();
        let stale = match (built, sources) {
            (None, _) => true,
            (Some(built), Some(sources)) => sources > built,
            (Some(_), None) => false,
        };
        if stale {
            eprintln!("natlab: building index-service (missing or older than its sources)");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "index-service", "--bin", "index-service"])
                .current_dir(&workspace)
                .status()
                .expect("running cargo build -p index-service");
            assert!(status.success(), "cargo build -p index-service failed");
        }
    });
    assert!(bin.is_file(), "{} is missing", bin.display());
    bin
}

/// The latest modification time of any file under `dir` (skipping `target`).
fn newest_mtime(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// Whether this build's `index-service --help` lists the TURN flags.
fn index_supports_turn() -> bool {
    let out = Command::new(index_binary())
        .arg("--help")
        .output()
        .expect("running index-service --help");
    String::from_utf8_lossy(&out.stdout).contains(INDEX_TURN_FLAGS[0])
}

fn start_index(inet: &str, dir: &std::path::Path, with_turn: bool) -> Child {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", inet])
        .arg(index_binary())
        .args(["--listen", &INDEX_ADDR.to_string()])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("index.db").display()));
    if with_turn {
        command
            .args([INDEX_TURN_FLAGS[0], &format!("turn:{TURN_IP}:{TURN_PORT}")])
            .args([INDEX_TURN_FLAGS[1], TURN_SECRET]);
    }
    // Settings exported where the tests run must not change the lab's index.
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("INDEX_") {
            command.env_remove(var);
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("index.log"))
        .expect("index log file");
    command
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("starting index-service")
}

/// Waits until the index accepts TCP connections (it binds after migrating its database).
fn wait_for_index(inet: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let up = in_netns(inet, || {
            TcpStream::connect_timeout(&SocketAddr::V4(INDEX_ADDR), Duration::from_millis(200))
                .is_ok()
        });
        if up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the index did not listen on {INDEX_ADDR} within 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
