//! Nothing a peer sends can drive the receiver's terminal: a peer whose message text carries a
//! window-title sequence, a screen clear, a bell, a carriage return, backspaces and a
//! right-to-left override writes to a daemon in plain (non-JSON) output; the bytes that daemon
//! prints never contain ESC, BEL, CR, backspace, DEL or a bidi control, and show them visibly.
//! (A daemon whose name the index refuses stops at start-up, so names full of escapes are
//! checked where they are rendered: `output/plain.rs` and `terminal/render/tests.rs`. Here the
//! peer's name is a claim from another index, shown unverified.)

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, EVENT_TIMEOUT, Index, daemon_command};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use uuid::Uuid;

/// Bidi controls and other invisible format characters that must never be printed raw.
const FORBIDDEN: [char; 14] = [
    '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}', '\u{200b}', '\u{feff}',
];

/// A plain-output daemon and every byte of its stdout so far.
struct Plain {
    child: tokio::process::Child,
    stdout: Arc<Mutex<Vec<u8>>>,
}

impl Plain {
    async fn spawn(index_url: &str, name: &str, state: &Path) -> Plain {
        let mut child = Command::from(daemon_command(index_url, name, state))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning peer-daemon");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (mut pipe, sink) = (child.stdout.take().expect("stdout"), stdout.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Plain { child, stdout }
    }

    fn bytes(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until stdout contains `needle`; returns everything printed so far.
    async fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = String::from_utf8_lossy(&self.bytes()).into_owned();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on stdout within {timeout:?}; it printed:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The UDP port in `registered as <uuid> at <ip:port>`.
fn bob_port(shown: &str) -> u16 {
    shown
        .split(" at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok())
        .map(|addr| addr.port())
        .unwrap_or_else(|| panic!("no address in {shown:?}"))
}

#[tokio::test]
async fn escape_sequences_from_a_peer_never_reach_plain_output() {
    let index = Index::start().await;
    let state = tempfile::tempdir().expect("state directory");
    let bob = Plain::spawn(&index.url(), "bob", state.path()).await;
    let shown = bob.wait_for("type /help", Duration::from_secs(15)).await;
    let uuid = shown
        .split("registered as ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| Uuid::parse_str(id).ok())
        .unwrap_or_else(|| panic!("no UUID in {shown:?}"));

    // Mallory registered at another index, where it found bob: its name is only a claim here.
    let other = Index::start().await;
    other.list_daemon(state.path(), bob_port(&shown)).await;
    let mut mallory = Daemon::spawn(&other.url(), "mallory").await;
    let payload = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}gnp.exe fake\rover\u{8}\u{8}\u{7f}\u{9b}31m\u{2066}x\u{2069}";
    mallory.msg(uuid, &format!("{payload} END-OF-ATTACK")).await;
    mallory
        .expect(
            "delivered",
            |v| v["to"] == uuid.to_string().as_str(),
            EVENT_TIMEOUT,
        )
        .await;
    let text = bob.wait_for("END-OF-ATTACK", EVENT_TIMEOUT).await;

    let bytes = bob.bytes();
    for (byte, what) in [
        (0x1b, "ESC"),
        (0x07, "BEL"),
        (b'\r', "CR"),
        (0x08, "backspace"),
        (0x7f, "DEL"),
    ] {
        assert!(
            !bytes.contains(&byte),
            "{what} reached plain output:\n{text:?}"
        );
    }
    for c in FORBIDDEN.iter().chain(&['\u{9b}']) {
        assert!(
            !text.contains(*c),
            "U+{:04X} reached plain output:\n{text:?}",
            *c as u32
        );
    }
    // What was tried is visible, and the name is only a claim.
    let line = text
        .lines()
        .find(|l| l.contains("END-OF-ATTACK"))
        .expect("the message line");
    assert!(
        line.contains("␛]0;owned␇␛[2J\\u{202e}gnp.exe fake␍over␈␈␡\\u{9b}31m"),
        "{line}"
    );
    assert!(line.contains("(claims \"mallory\", unverified)"), "{line}");
    drop(bob.child);
}
