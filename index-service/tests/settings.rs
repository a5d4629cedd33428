//! Settings the index cannot work with are refused at start-up: the real binary exits non-zero
//! with one sentence naming the mistake, instead of starting a service that can do nothing.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest a refused start may take; a binary still running then has accepted the setting.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Runs the index with `args` (on a free port, in `dir`) and returns its output once it exits;
/// panics if it is still running after [`START_LIMIT`], i.e. if it started.
fn run(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_index-service"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        // A backtrace would bury the one sentence this test is about.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + START_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the index started with {args:?} instead of refusing it; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Asserts the index refuses `args` with a message containing `says`.
fn refused(dir: &Path, args: &[&str], says: &str) {
    let output = run(dir, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{args:?} exited successfully: {stderr}"
    );
    assert!(
        stderr.contains(says),
        "{args:?}: stderr should say `{says}`: {stderr}"
    );
    assert!(
        stderr.lines().filter(|l| !l.trim().is_empty()).count() <= 4,
        "{args:?}: one clear sentence, not a wall of text: {stderr}"
    );
}

#[test]
fn bad_durations_and_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("index.db").display());
    let with_db = |args: &[&'static str]| {
        let mut all = vec!["--database-url", db.as_str()];
        all.extend_from_slice(args);
        all
    };
    // Overflowing (it used to wrap around to 3584 s) or absurdly long.
    refused(
        dir.path(),
        &with_db(&["--peer-ttl", "5124095576030432h"]),
        "too long",
    );
    refused(
        dir.path(),
        &with_db(&["--peer-ttl", "99999999999999999999s"]),
        "too long",
    );
    refused(
        dir.path(),
        &with_db(&["--request-timeout", "87601h"]),
        "too long",
    );
    // Zero: a service that expires everything at once, times every request out, or takes no body.
    refused(dir.path(), &with_db(&["--peer-ttl", "0"]), "--peer-ttl 0");
    refused(dir.path(), &with_db(&["--peer-ttl", "0ms"]), "--peer-ttl 0");
    refused(
        dir.path(),
        &with_db(&["--request-timeout", "0s"]),
        "--request-timeout 0",
    );
    refused(
        dir.path(),
        &with_db(&["--purge-interval", "0"]),
        "--purge-interval 0",
    );
    refused(
        dir.path(),
        &with_db(&["--max-body-bytes", "0"]),
        "--max-body-bytes 0",
    );
    refused(
        dir.path(),
        &with_db(&["--write-rate-per-sec", "1e-300"]),
        "not a rate",
    );
    assert!(
        !dir.path().join("index.db").exists(),
        "a refused configuration must not touch the database"
    );
}

#[test]
fn ice_servers_the_index_cannot_hand_out_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("index.db").display());
    let with_db = |args: &[&'static str]| {
        let mut all = vec!["--database-url", db.as_str()];
        all.extend_from_slice(args);
        all
    };
    for (url, says) in [
        ("turns:turn.example.org:5349", "TLS is not supported"),
        ("turn:turn.example.org?transport=tcp", "only UDP"),
        ("turn:turn.example.org:0", "port must be a number"),
        (
            "http://turn.example.org",
            "the scheme must be turn: or stun:",
        ),
        ("stun:192.0.2.1,turn:bad_host", "not a host name"),
    ] {
        refused(
            dir.path(),
            &with_db(&["--turn-url", url, "--turn-secret", "s"]),
            says,
        );
    }
    // Credentials cannot be made without coturn's secret.
    refused(
        dir.path(),
        &with_db(&["--turn-url", "stun:192.0.2.1,turn:192.0.2.1:3478"]),
        "--turn-url turn:192.0.2.1:3478 needs --turn-secret",
    );
    refused(
        dir.path(),
        &with_db(&[
            "--turn-url",
            "turn:192.0.2.1",
            "--turn-secret",
            "s",
            "--turn-credential-ttl",
            "0s",
        ]),
        "--turn-credential-ttl 0",
    );
    assert!(
        !dir.path().join("index.db").exists(),
        "a refused configuration must not touch the database"
    );
}

#[test]
fn database_urls_the_index_cannot_keep_records_in_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for memory in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://index.db?mode=memory",
        "sqlite:index.db?cache=shared&mode=memory",
    ] {
        refused(
            dir.path(),
            &["--database-url", memory],
            "in-memory database",
        );
    }
    refused(
        dir.path(),
        &["--database-url", "sqlite://"],
        "names no file",
    );
    refused(dir.path(), &["--database-url", "sqlite:"], "names no file");
    refused(
        dir.path(),
        &["--database-url", "notaurl"],
        "is neither a SQLite nor a PostgreSQL URL",
    );
    refused(
        dir.path(),
        &["--database-url", "/var/lib/index.db"],
        "is neither a SQLite nor a PostgreSQL URL",
    );
    refused(
        dir.path(),
        &[
            "--database-url",
            "postgres://index@localhost/index?sslmode=bogus",
        ],
        "not a usable PostgreSQL URL",
    );
    refused(
        dir.path(),
        &["--database-url", "sqlite://index.db?mode=bogus"],
        "is not usable",
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "refused URLs created files: {left:?}");
}

/// A tmpfs remounted read-only, unmounted (lazily) when dropped. Root writes through file
/// modes, so a read-only file system is the honest way to make a database unwritable here.
struct ReadOnlyMount {
    dir: tempfile::TempDir,
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn sh(args: &[&str], path: &Path) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[test]
fn an_unwritable_database_is_refused() {
    let mount = ReadOnlyMount {
        dir: tempfile::tempdir().unwrap(),
    };
    if let Err(why) = sh(
        &["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs"],
        mount.dir.path(),
    ) {
        eprintln!("SKIP: an_unwritable_database_is_refused: {why}");
        // Also where .ci/run prints it: cargo hides the stderr of tests that pass.
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(concat!(env!("CARGO_TARGET_TMPDIR"), "/SKIPPED"))
            .and_then(|mut f| {
                std::io::Write::write_all(
                    &mut f,
                    format!("an_unwritable_database_is_refused: {why}\n").as_bytes(),
                )
            });
        return;
    }
    let dir = mount.dir.path();
    // A real database, made by the index itself, then frozen.
    let db = dir.join("index.db");
    let url = format!("sqlite://{}", db.display());
    {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let config = index_service::Config::for_database(url.clone());
            index_service::Service::open(config)
                .await
                .unwrap()
                .shutdown()
                .await;
        });
    }
    // SQLite's worker threads may close the last descriptors a moment after the service has
    // shut down; until then the file system is busy.
    let mut remounted = sh(&["mount", "-o", "remount,ro"], dir);
    for _ in 0..20 {
        if remounted.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        remounted = sh(&["mount", "-o", "remount,ro"], dir);
    }
    remounted.unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    refused(
        elsewhere.path(),
        &["--database-url", &url],
        "cannot write the database",
    );
    // A new file in a read-only directory cannot be created either.
    let fresh = format!("sqlite://{}", dir.join("new.db").display());
    refused(
        elsewhere.path(),
        &["--database-url", &fresh],
        "cannot write the database",
    );
}
