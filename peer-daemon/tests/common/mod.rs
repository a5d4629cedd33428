//! Helpers for the end-to-end tests: the real index run in-process on 127.0.0.1 ([`Index`]),
//! and real `peer-daemon` processes driven through stdin and read through their `--json`
//! stdout ([`Daemon`]).
//!
//! Every wait has a deadline and fails with what was seen so far; nothing sleeps and then
//! checks. `process` and `relay` use nothing else from here: the benchmark includes them too.

#![allow(dead_code)]

use std::path::Path;

mod daemon;
mod index;
pub mod mail;
pub mod process;
pub mod relay;
mod wait;

#[allow(unused_imports, reason = "each test binary uses its own part of these")]
pub use self::{
    daemon::Daemon,
    index::{Index, http_client},
    wait::{EVENT_TIMEOUT, REGISTER_TIMEOUT},
};

/// The `peer-daemon` of this test build, started as [`process::daemon_command`] says.
pub fn daemon_command(index_url: &str, name: &str, state_dir: &Path) -> std::process::Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_peer-daemon"));
    process::daemon_command(bin, index_url, name, state_dir)
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
