//! What the scenarios stand on: the release index on a SQLite file of its own, the members
//! joined to the benchmark's rooms, and the check that they all ended with the same state.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::member::Member;

/// The release index, on a SQLite file in a temporary directory; killed on drop.
pub struct IndexProcess {
    child: Child,
    /// Where it listens.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl IndexProcess {
    /// Starts `bin` on a free port and waits until it listens.
    pub fn start(bin: &Path) -> anyhow::Result<IndexProcess> {
        let dir = tempfile::tempdir()?;
        // The index does not report an ephemeral port, so take a free one and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--database-url")
            .arg(format!(
                "sqlite://{}",
                dir.path().join("index.db").display()
            ))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let index = IndexProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the index did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(index)
    }
}

impl Drop for IndexProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Joins every member to `rooms`, one after the other, and waits until each knows all others
/// are in each room (only members are synced with).
pub fn join_all(members: &mut [Member], rooms: &[&str]) -> anyhow::Result<()> {
    let wait = Duration::from_secs(30);
    for member in members.iter_mut() {
        let lines: Vec<String> = rooms.iter().map(|r| format!("/join {r}")).collect();
        member.send(&lines)?;
        for room in rooms {
            member.wait_until(wait, &format!("its own join of #{room}"), |s| {
                s.members_at_join.contains_key(*room)
            })?;
        }
    }
    let others = members.len() - 1;
    for member in members.iter() {
        for room in rooms {
            member.wait_until(wait, &format!("{others} other members of #{room}"), |s| {
                s.members(room) >= others
            })?;
        }
    }
    Ok(())
}

/// Whether every member holds exactly `expected` in `room`.
pub fn check_state(
    members: &mut [Member],
    room: &str,
    expected: &HashMap<String, String>,
) -> anyhow::Result<String> {
    let mut wrong = Vec::new();
    for member in members.iter_mut() {
        member.send(&[format!("/sw #{room}")])?;
        let state = member.state()?;
        if &state != expected {
            let missing = expected.keys().filter(|k| !state.contains_key(*k)).count();
            let differ = expected
                .iter()
                .filter(|(k, v)| state.get(*k).is_some_and(|s| s != *v))
                .count();
            wrong.push(format!(
                "{} holds {} keys ({missing} missing, {differ} other values)",
                member.name,
                state.len()
            ));
        }
    }
    Ok(if wrong.is_empty() {
        format!(
            "all {} members hold the {} keys written, with their values",
            members.len(),
            expected.len()
        )
    } else {
        format!("DIFFERS: {}", wrong.join("; "))
    })
}
