//! Crash safety of the real binary: concurrent registrations, `kill -9` mid-stream, restart on
//! the same file — every registration that was answered with a 2xx is still there.
//!
//! This holds because the database runs in WAL mode with `synchronous = FULL` and the writer
//! answers a change only after the transaction holding it committed: the commit fsyncs the WAL,
//! and on restart SQLite replays every committed frame of the WAL (see docs/index.md). On
//! PostgreSQL (`INDEX_TEST_BACKEND=postgres`) the same test kills the index, not the server: a
//! 2xx must still only follow the commit.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::identity::Identity;
use serde_json::{Value, json};

/// The real binary, killed with SIGKILL when dropped (also when a test fails).
struct Index {
    child: Child,
    base: String,
}

impl Index {
    async fn start(url: &str, log: &Path) -> Index {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_index-service"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", url])
            // The flood comes from one address; the limiter is not under test here.
            .args(["--write-rate-per-sec", "0", "--read-rate-per-sec", "0"])
            .args(["--max-records-per-ip", "0", "--max-records-per-subnet", "0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let index = Index {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/readyz", index.base)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "the index did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        index
    }

    /// SIGKILL: no shutdown code runs, nothing gets flushed.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registration the index acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    uuid: String,
    addr: String,
}

/// Registers from `workers` tasks until the index goes away; returns what was acknowledged.
fn flood(
    base: &str,
    workers: u16,
    round: u16,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|worker| {
            let base = base.to_owned();
            let acked = acked.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                for n in 0u16.. {
                    let port = 1 + ((u32::from(worker) * 7919 + u32::from(n)) % 65534) as u16;
                    // Odd workers register keyed records, which take the signed upsert path.
                    let body = if worker % 2 == 1 {
                        let mut secret = [0u8; 32];
                        secret[..2].copy_from_slice(&round.to_le_bytes());
                        secret[2..4].copy_from_slice(&worker.to_le_bytes());
                        secret[4..6].copy_from_slice(&n.to_le_bytes());
                        keyed(&Identity::from_secret(secret), port)
                    } else {
                        json!({ "udp_port": port })
                    };
                    let Ok(response) = client
                        .post(format!("{base}/register"))
                        .json(&body)
                        .send()
                        .await
                    else {
                        return;
                    };
                    let status = response.status();
                    let Ok(record) = response.json::<Value>().await else {
                        return;
                    };
                    assert!(
                        status.is_success(),
                        "registration refused before the crash: {status} {record}"
                    );
                    acked.lock().unwrap().push(Acked {
                        uuid: record["uuid"].as_str().unwrap().to_owned(),
                        addr: record["addr"].as_str().unwrap().to_owned(),
                    });
                }
            })
        })
        .collect()
}

fn keyed(id: &Identity, port: u16) -> Value {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = id.public_key();
    let message = proto::identity::register_message(&key, port, None, &[], timestamp);
    json!({
        "udp_port": port,
        "public_key": hex::encode(key),
        "timestamp": timestamp,
        "signature": hex::encode(id.sign(&message)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_registration_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::database_url(&dir);
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    for round in 0..3u16 {
        let index = Index::start(&db, &dir.path().join(format!("index-{round}.log"))).await;
        let before = acked.lock().unwrap().len();
        let workers = flood(&index.base, 8, round, acked.clone());
        // Kill once a good number of registrations were acknowledged in this round, while
        // the eight workers keep sending.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 150 {
            assert!(Instant::now() < deadline, "registrations are too slow");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        index.kill_9();
        for worker in workers {
            worker.await.unwrap();
        }
    }

    let acked = acked.lock().unwrap().clone();
    let index = Index::start(&db, &dir.path().join("index-final.log")).await;
    let client = reqwest::Client::new();
    for registration in &acked {
        let response = client
            .get(format!("{}/peers/{}", index.base, registration.uuid))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::OK,
            "acknowledged registration {} lost after kill -9",
            registration.uuid
        );
        let record: Value = response.json().await.unwrap();
        assert_eq!(record["addr"], registration.addr.as_str());
    }
    assert!(acked.len() >= 450, "{} registrations", acked.len());
}
