//! The index's real `run()` on a real listener, for tests of what only a socket shows
//! (malformed requests, connection limits, rate limits by client address).

use std::net::SocketAddr;
use std::time::Duration;

/// The index's real `run()` on 127.0.0.1:0 with a real SQLite file; stopped when dropped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Running {
    pub async fn start(tweak: impl FnOnce(&mut index_service::Config)) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut config = index_service::Config::for_database(super::database_url(&dir));
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(index_service::run(config, listener, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the index and waits for `run()` to return.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("run() returns after the shutdown")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
