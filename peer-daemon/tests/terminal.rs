//! The terminal client driven through a pseudo-terminal, as a person would use it: the real
//! `peer-daemon` binary on a pty, the real index, and a second (`--json`) daemon that sends it
//! a message while something is half typed at the prompt.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, EVENT_TIMEOUT, Index, daemon_command};
use expectrl::Expect;
use expectrl::session::OsSession;
use peer_daemon::terminal::name_colour;
use uuid::Uuid;

/// A daemon on a pty, and everything it has written so far.
struct Screen {
    session: OsSession,
    raw: Vec<u8>,
    /// Where in the text (escape sequences removed) the next wait starts looking.
    mark: usize,
}

impl Screen {
    /// The output as a person reads it: escape sequences and carriage returns removed.
    fn text(&self) -> String {
        strip_escapes(&String::from_utf8_lossy(&self.raw))
    }

    /// Waits until `needle` appears after the previous match; returns the text from the
    /// start of the match on. Fails after `timeout` with what the screen showed.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text();
            if let Some(at) = text.get(self.mark..).and_then(|rest| rest.find(needle)) {
                let start = self.mark + at;
                self.mark = start + needle.len();
                return text[start..].to_owned();
            }
            if Instant::now() > deadline {
                panic!(
                    "no {needle:?} on the terminal within {timeout:?}; it shows:\n{}",
                    tail(&text)
                );
            }
            let mut buf = [0u8; 4096];
            match self.session.try_read(&mut buf) {
                Ok(0) => panic!(
                    "the terminal closed while waiting for {needle:?}; it showed:\n{}",
                    tail(&text)
                ),
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("reading the pty: {e}"),
            }
        }
    }

    /// Types `keys` as they are (`\r` is Enter).
    fn type_keys(&mut self, keys: &str) {
        self.session.send(keys).expect("typing on the pty");
    }

    /// Reads what is left until the process closes the terminal (it exited).
    fn wait_closed(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            match self.session.try_read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !self.session.get_process().is_alive().unwrap_or(false) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                // Linux reports a pty whose other side closed as EIO.
                Err(_) => return,
            }
            assert!(
                Instant::now() < deadline,
                "still running {timeout:?} after /quit:\n{}",
                tail(&self.text())
            );
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Removes CSI (`ESC [ … final`), OSC (`ESC ] … BEL`) and two-byte escapes, and `\r`.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    for c in chars.by_ref() {
                        if c == '\x07' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Runs blocking pty work off the runtime's threads, which the index and the other daemon need.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("the pty work panicked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_client_shows_prompt_commands_and_incoming_messages() {
    let index = Index::start().await;
    let state = tempfile::tempdir().expect("state directory");
    let (url, path) = (index.url(), state.path().to_owned());

    // The prompt names the active session, once the daemon has registered.
    let (mut screen, carol) = blocking(move || {
        let mut screen = start_on_pty(&url, "carol", &path, true);
        let registered = screen.wait_for("registered as ", Duration::from_secs(15));
        let uuid = registered["registered as ".len()..]
            .split_whitespace()
            .next()
            .expect("a UUID")
            .to_owned();
        screen.wait_for("#lobby> ", EVENT_TIMEOUT);
        (
            screen,
            Uuid::parse_str(&uuid).unwrap_or_else(|e| panic!("{uuid:?}: {e}")),
        )
    })
    .await;

    // A command and its answer, then the prompt again.
    let mut screen = blocking(move || {
        screen.type_keys("/help\r");
        let help = screen.wait_for("/fork <peer>, /dm <peer>", EVENT_TIMEOUT);
        assert!(help.contains("open a private session"), "{help}");
        screen.wait_for("#lobby> ", EVENT_TIMEOUT);
        // Half a line, left there while a message arrives.
        screen.type_keys("half-typed");
        screen.wait_for("half-typed", EVENT_TIMEOUT);
        screen
    })
    .await;

    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    bob.msg(carol, "hello carol").await;
    let receiver = carol.to_string();
    bob.expect("delivered", |v| v["to"] == receiver.as_str(), EVENT_TIMEOUT)
        .await;
    let bob_uuid = bob.uuid;

    let mut screen = blocking(move || {
        // The message appears above the prompt, which comes back with the half-typed line.
        screen.wait_for("[private] <bob> hello carol\n", EVENT_TIMEOUT);
        screen.wait_for("#lobby> half-typed", EVENT_TIMEOUT);
        let coloured = format!("\x1b[{}mbob\x1b[0m", name_colour("bob"));
        assert!(
            String::from_utf8_lossy(&screen.raw).contains(&coloured),
            "bob's name should be in its colour {coloured:?}"
        );
        // Clear the half line (Ctrl-U), answer bob and see the tick with the RTT.
        screen.type_keys(&format!("\x15/msg {bob_uuid} hi bob\r"));
        let tick = screen.wait_for("✓ delivered to bob (", EVENT_TIMEOUT);
        assert!(
            tick.lines().next().is_some_and(|l| l.ends_with(" ms)")),
            "{tick}"
        );
        screen
    })
    .await;

    // A message full of escape sequences and bidi controls shows them visibly and does
    // nothing to the terminal: no title, no clearing, no bell, no reordering.
    let attack = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}gnp.exe\u{9b}31m\u{2066} PTY-ATTACK";
    bob.msg(carol, attack).await;
    bob.expect("delivered", |v| v["to"] == receiver.as_str(), EVENT_TIMEOUT)
        .await;
    let screen = blocking(move || {
        let before = screen.raw.len();
        screen.wait_for("PTY-ATTACK", EVENT_TIMEOUT);
        screen.wait_for("#lobby> ", EVENT_TIMEOUT);
        let shown = String::from_utf8_lossy(&screen.raw[before..]).into_owned();
        for bad in [
            "\u{1b}]",
            "\u{1b}[2J",
            "\u{7}",
            "\u{202e}",
            "\u{2066}",
            "\u{9b}",
        ] {
            assert!(
                !shown.contains(bad),
                "{bad:?} reached the terminal: {shown:?}"
            );
        }
        assert!(
            shown.contains("␛]0;owned␇␛[2J\\u{202e}gnp.exe\\u{9b}31m\\u{2066} PTY-ATTACK"),
            "{shown:?}"
        );
        // An unknown command is one line of error, and the prompt follows.
        screen.type_keys("/bogus\r");
        let error = screen.wait_for("error: unknown command /bogus", EVENT_TIMEOUT);
        assert!(
            error
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("#lobby> ")),
            "{error}"
        );
        screen.type_keys("/quit\r");
        screen.wait_closed(EVENT_TIMEOUT);
        screen
    })
    .await;
    let sender = carol.to_string();
    bob.expect(
        "message",
        |v| v["from"] == sender.as_str() && v["text"] == "hi bob",
        EVENT_TIMEOUT,
    )
    .await;
    assert!(screen.text().contains("half-typed"));

    // The commands typed are kept for the next start, privately; what was said is not (the
    // half line neither).
    let history = std::fs::read_to_string(state.path().join("history.txt")).expect("history file");
    assert!(
        history.contains("/help") && history.contains(&format!("/msg {bob_uuid} ")),
        "{history}"
    );
    assert!(
        !history.contains("hi bob"),
        "message text in the history: {history}"
    );
    assert!(!history.contains("half-typed"), "{history}");
    // Every line shows its time; the day comes first.
    let text = screen.text();
    let line = text
        .lines()
        .find(|l| l.contains("[private] <bob> hello carol"))
        .expect("the message line");
    // (The prompt may be redrawn before it on the same line.)
    let at = line.find("[private]").unwrap();
    let clock = &line[at.saturating_sub(6)..at];
    assert!(
        clock.as_bytes()[2] == b':'
            && clock[..2].parse::<u8>().is_ok_and(|h| h < 24)
            && clock[3..5].parse::<u8>().is_ok_and(|m| m < 60)
            && clock.ends_with(' '),
        "no HH:MM before {line:?}"
    );
    assert!(text.contains("── "), "no day line: {}", tail(&text));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.path().join("history.txt"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

/// Starts `name` on a pty (160×50, in UTC) against `index_url` with its state in `state`, in
/// colour or not.
fn start_on_pty(index_url: &str, name: &str, state: &std::path::Path, colour: bool) -> Screen {
    let mut command = daemon_command(index_url, name, state);
    command
        .env("TERM", "xterm-256color")
        .env("TZ", "UTC")
        .env_remove("RUST_LOG");
    if colour {
        command.env_remove("NO_COLOR");
    } else {
        command.env("NO_COLOR", "1");
    }
    let mut session = OsSession::spawn(command).expect("spawning peer-daemon on a pty");
    session
        .get_process_mut()
        .set_window_size(160, 50)
        .expect("sizing the pty");
    Screen {
        session,
        raw: Vec::new(),
        mark: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_client_basics_status_and_history() {
    let mut index = Index::start().await;
    let url = index.url();
    let state = tempfile::tempdir().expect("state directory");
    let path = state.path().to_owned();
    // A history file as older versions wrote it: everything typed, private text included.
    std::fs::write(
        state.path().join("history.txt"),
        "#V2\n/join rust\nmy secret plan\n/msg bob the password is hunter2\n",
    )
    .unwrap();
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let (mut screen, carol) = blocking(move || {
        let mut screen = start_on_pty(&url, "carol", &path, false);
        screen.wait_for("registered as ", Duration::from_secs(15));
        screen.wait_for("#lobby> ", EVENT_TIMEOUT);
        // What was said is gone from the history file; the commands stay.
        let history = std::fs::read_to_string(path.join("history.txt")).unwrap();
        assert!(
            !history.contains("secret plan") && !history.contains("hunter2"),
            "{history}"
        );
        assert!(
            history.contains("/join rust") && history.contains("/msg bob "),
            "{history}"
        );
        screen.type_keys("/whoami\r");
        let whoami = screen.wait_for("you are carol (", EVENT_TIMEOUT);
        let uuid = whoami["you are carol (".len()..][..36].to_owned();
        screen.wait_for("index:", EVENT_TIMEOUT);
        screen.wait_for("(online)", EVENT_TIMEOUT);
        screen.wait_for("state:", EVENT_TIMEOUT);
        (screen, Uuid::parse_str(&uuid).expect("carol's UUID"))
    })
    .await;

    // Two private messages while carol is in the lobby: switching shows them.
    for text in ["first unread", "second unread"] {
        alice.msg(carol, text).await;
        alice.expect("delivered", |_| true, EVENT_TIMEOUT).await;
    }
    let mut screen = blocking(move || {
        screen.wait_for("<alice> second unread", EVENT_TIMEOUT);
        screen.type_keys("/sw alice\r");
        let block = screen.wait_for("── 2 unread in @", EVENT_TIMEOUT);
        let block = &block[..block.find("── end of history ──").expect("the block's end")];
        assert!(
            block.contains("<alice> first unread") && block.contains("<alice> second unread"),
            "{block}"
        );
        screen.wait_for("@alice> ", EVENT_TIMEOUT);
        screen.type_keys("/me waves\r");
        screen
    })
    .await;
    let action = alice
        .expect("message", |v| v["text"] == "waves", EVENT_TIMEOUT)
        .await;
    assert_eq!(action["action"], true, "{action}");

    let mut screen = blocking(move || {
        screen.type_keys("/close\r");
        screen.wait_for("closed @alice; now talking in #lobby", EVENT_TIMEOUT);
        screen.type_keys("/join empty\r");
        screen.wait_for("joined #empty (nobody else here yet)", EVENT_TIMEOUT);
        screen.type_keys("anyone?\r");
        screen.wait_for("nobody else is in #empty to receive it", EVENT_TIMEOUT);
        screen.type_keys("/who\r");
        screen.wait_for("you carol (", EVENT_TIMEOUT);
        screen
    })
    .await;

    // The index goes away: a failing request makes carol look, and the prompt says so.
    index.stop().await;
    let mut screen = blocking(move || {
        screen.type_keys("/join other\r");
        screen.wait_for("offline from the index: ", EVENT_TIMEOUT);
        // The next prompt says so (the one being edited is redrawn as it was).
        screen.type_keys("\r");
        screen.wait_for("(offline)> ", EVENT_TIMEOUT);
        screen
    })
    .await;
    index.restart().await;
    let url = index.url();
    let path = state.path().to_owned();
    blocking(move || {
        screen.wait_for("the index answers again", Duration::from_secs(30));
        screen.type_keys("/sw empty\r");
        screen.wait_for("#empty> ", EVENT_TIMEOUT);
        let prompt_online = screen.text();
        assert!(
            prompt_online.trim_end().ends_with("#empty>"),
            "{}",
            tail(&prompt_online)
        );
        screen.type_keys("/quit\r");
        screen.wait_closed(EVENT_TIMEOUT);
        // A restart shows where carol was, with what was said there.
        let mut again = start_on_pty(&url, "carol", &path, false);
        let block = again.wait_for("── last messages in #empty ──", Duration::from_secs(15));
        assert!(block.contains("<you> anyone?"), "{block}");
        again.wait_for("#empty> ", EVENT_TIMEOUT);
        again.type_keys("/quit\r");
        again.wait_closed(EVENT_TIMEOUT);
    })
    .await;
}
