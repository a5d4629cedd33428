//! Settings the daemon cannot work with stop it at once, with a sentence saying what to fix,
//! instead of retrying forever behind a prompt that looks usable.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn bad_settings_exit_at_once_saying_what_to_fix() {
    let cases: [(&[&str], &str); 5] = [
        (&["--index", "localhost:8081"], "http://"),
        (&["--index", "ftp://127.0.0.1:8080"], "http://"),
        (&["--deadline-secs", "0"], "--deadline-secs"),
        (&["--heartbeat-secs", "0"], "--heartbeat-secs"),
        (
            &["--deadline-secs", "99999999999999999999"],
            "--deadline-secs",
        ),
    ];
    for (args, expected) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_peer-daemon"))
            .args(["--json", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("PEER_NO_MDNS", "1")
            .env("PEER_NO_DHT", "1")
            .env(
                "PEER_STATE_DIR",
                std::env::temp_dir().join("peerlink-settings-test"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run peer-daemon");
        // Before the fix these started and kept retrying; a daemon still running after the
        // grace period is the failure, not a hang of the test.
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?} was accepted: the daemon was still running after 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("collect output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} exited 0: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} printed on stdout");
    }
}

/// Without `--state-dir` the identity goes to `$XDG_DATA_HOME/peerlink/<name>`, the name made
/// harmless (`../evil` cannot climb out of the data directory).
#[test]
fn the_default_state_directory_follows_xdg_data_home() {
    let root = tempfile::tempdir().expect("temporary directory");
    let (data, home) = (root.path().join("data"), root.path().join("home"));
    let key = data.join("peerlink/___evil/identity.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_peer-daemon"))
        // Port 9 (discard) refuses: the daemon keeps retrying, its identity already made.
        .args([
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--index",
            "http://127.0.0.1:9",
        ])
        .args(["--name", "../evil"])
        .env("XDG_DATA_HOME", &data)
        .env("PEER_NO_MDNS", "1")
        .env("PEER_NO_DHT", "1")
        .env("HOME", &home)
        .env_remove("PEER_STATE_DIR")
        .env_remove("PEER_CONTROL")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run peer-daemon");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !key.exists() {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!(
                "the daemon exited ({status}) before creating {}",
                key.display()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no {} within 20 s", key.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !home.exists(),
        "nothing goes to $HOME when XDG_DATA_HOME is set"
    );
}
