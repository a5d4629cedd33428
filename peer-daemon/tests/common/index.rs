//! The real index service, run in-process on 127.0.0.1 from a SQLite file in a temporary
//! directory, which a test can stop and start again on the same port and file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The real index service, served in-process from a SQLite file in its own temporary directory.
/// It can be stopped and started again on the same port and the same file.
pub struct Index {
    dir: TempDir,
    /// The TCP port it serves on (kept across restarts).
    pub port: u16,
    running: Option<Running>,
}

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Index {
    /// Starts a fresh index on 127.0.0.1 with an ephemeral port and an empty database.
    pub async fn start() -> Index {
        let dir = tempfile::tempdir().expect("creating a temporary directory for the index");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the index on 127.0.0.1:0");
        let port = listener.local_addr().expect("index address").port();
        let mut index = Index {
            dir,
            port,
            running: None,
        };
        index.serve(listener);
        index
    }

    /// Base URL for `--index`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("index.db")
    }

    fn serve(&mut self, listener: TcpListener) {
        let config =
            index_service::Config::for_database(format!("sqlite://{}", self.db_path().display()));
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(index_service::run(config, listener, async move {
            let _ = rx.await;
        }));
        self.running = Some(Running { shutdown, task });
    }

    /// Stops the index: triggers its graceful shutdown and waits for it to finish, so its
    /// port is closed when this returns. Fails if it does not stop within 5 s or stopped with
    /// an error.
    pub async fn stop(&mut self) {
        let Running { shutdown, mut task } = self.running.take().expect("the index is running");
        let _ = shutdown.send(());
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("the index stopped with an error: {error:#}"),
            Ok(Err(join)) => panic!("the index task failed: {join}"),
            Err(_) => {
                task.abort();
                let _ = task.await;
                panic!("the index did not stop within 5 s of its shutdown signal");
            }
        }
    }

    /// Starts the index again on the same port and the same SQLite file.
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "restart() of a running index");
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(3);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {error}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("could not bind {addr} again to restart the index: {error}"),
            }
        };
        self.serve(listener);
    }

    /// `GET /peers/{uuid}`: the status and the JSON body.
    pub async fn get_peer(&self, uuid: &str) -> (u16, Value) {
        let url = format!("{}/peers/{uuid}", self.url());
        let response = http_client()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("reading the index's answer");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {url} answered {status} with non-JSON {text:?}: {e}"));
        (status, body)
    }

    /// Registers the daemon whose state directory is `state` (UDP port `port`, no name) here,
    /// signed with its key as it would do itself: a peer of this index can then find a daemon
    /// that registered elsewhere.
    pub async fn list_daemon(&self, state: &std::path::Path, port: u16) {
        let key =
            peer_daemon::state::load_or_create_identity(state).expect("the daemon's identity");
        let public_key = key.public_key();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let message = proto::identity::register_message(&public_key, port, None, &[], timestamp);
        let request = proto::api::RegisterRequest {
            udp_port: port,
            name: None,
            public_key: Some(hex::encode(public_key)),
            timestamp: Some(timestamp),
            signature: Some(hex::encode(key.sign(&message))),
            candidates: Vec::new(),
        };
        let response = http_client()
            .post(format!("{}/register", self.url()))
            .json(&request)
            .send()
            .await
            .expect("registering at the index");
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    }
}

/// A client that does not keep connections alive, so stopping the index never waits on it.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("building an HTTP client")
}
