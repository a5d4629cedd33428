//! The writer survives the database failing under it: a full disk is answered with 507 JSON and
//! `/readyz` 503, and writes go through again once space is freed, without a restart (the same
//! for a write lock another program holds too long, with 503); a database file deleted or
//! replaced while the index runs makes `/readyz` 503 and no write is acknowledged into it (it
//! would be lost at the next restart).
//!
//! The disk-full test mounts a 1 MB tmpfs, so it needs root (or CAP_SYS_ADMIN); without it, it
//! prints `SKIP: …` and returns.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::extract::connect_info::MockConnectInfo;
use axum::http::{StatusCode, header};
use common::{Answer, TestApp, eventually};
use index_service::{Config, Service};
use serde_json::json;

/// A tmpfs mounted on a fresh directory, unmounted (lazily, so files still open do not stop
/// it) when dropped, also when the test fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "1m"), or says why not.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The index on the database at `db`, with rate limits off (the test writes as fast as it can
/// from one address).
async fn open(db: &Path) -> TestApp {
    let mut config = Config::for_database(format!("sqlite://{}", db.display()));
    config.write_rate_per_sec = 0.0;
    config.read_rate_per_sec = 0.0;
    // A write waits up to the 5 s busy timeout for a lock; on a loaded machine that wait plus
    // scheduling delays can pass the default 10 s request timeout, whose 503 is not the one
    // these tests look for.
    config.request_timeout = Duration::from_secs(60);
    let service = Service::open(config).await.unwrap();
    let client: SocketAddr = common::CLIENT.parse().unwrap();
    TestApp {
        router: service.app().layer(MockConnectInfo(client)),
        service,
        dir: tempfile::tempdir().unwrap(),
    }
}

async fn register(app: &TestApp, port: u16) -> Answer {
    app.send(
        axum::http::Request::post("/register")
            .header(header::CONTENT_TYPE, "application/json")
            .body(json!({ "udp_port": port }).to_string().into())
            .unwrap(),
    )
    .await
}

fn fill(path: &PathBuf, bytes: usize) {
    std::fs::write(path, vec![0x5a; bytes]).unwrap();
}

#[tokio::test]
async fn a_full_disk_is_507_then_writes_recover_without_restart() {
    let tmpfs = match Tmpfs::mount("1m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            common::skip(&format!(
                "a_full_disk_is_507_then_writes_recover_without_restart: {why}"
            ));
            return;
        }
    };
    // Space the test can give back later.
    let filler = tmpfs.path().join("filler");
    fill(&filler, 256 * 1024);
    let app = open(&tmpfs.path().join("index.db")).await;

    let mut stored = Vec::new();
    let full = loop {
        let answer = register(&app, 4000).await;
        if answer.status != StatusCode::CREATED {
            break answer;
        }
        stored.push(answer.body["uuid"].as_str().unwrap().to_owned());
        assert!(stored.len() < 100_000, "a 1 MB disk never filled up");
    };
    assert!(
        !stored.is_empty(),
        "nothing was stored before the disk filled"
    );
    assert_eq!(
        full.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "a full disk is 507: {}",
        full.body
    );
    let error = full.body["error"].as_str().unwrap();
    assert!(error.contains("disk is full"), "{error}");
    assert!(full.headers.contains_key(header::RETRY_AFTER));

    // Not ready while writes fail, and it says why.
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("disk is full"),
        "{body}"
    );
    // Still full: still refused, still 507 (not the stuck-transaction error of a broken writer).
    let again = register(&app, 4001).await;
    assert_eq!(
        again.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        again.body
    );
    let metrics = app.service.state().metrics.render();
    assert!(
        metrics.contains("index_db_write_failures_total{cause=\"full\"}")
            && metrics.contains("index_db_writable 0"),
        "{metrics}"
    );
    // Lookups keep working meanwhile.
    let (status, _) = app.get(&format!("/peers/{}", stored[0])).await;
    assert_eq!(status, StatusCode::OK);

    // Free the space: without any client writing, the index becomes ready again by itself.
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(60), "/readyz to turn 200", || async {
        (app.get("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let answer = register(&app, 4002).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        app.service
            .state()
            .metrics
            .render()
            .contains("index_db_writable 1")
    );

    // Everything acknowledged before (and after) is there, also after a restart.
    let uuid = answer.body["uuid"].as_str().unwrap().to_owned();
    let TestApp { service, .. } = app;
    service.shutdown().await;
    let app = open(&tmpfs.path().join("index.db")).await;
    for uuid in stored.iter().chain([&uuid]) {
        let (status, body) = app.get(&format!("/peers/{uuid}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{uuid} acknowledged but lost: {body}"
        );
    }
    app.service.shutdown().await;
}

#[tokio::test]
async fn a_deleted_or_replaced_database_file_is_not_ready_and_takes_no_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("index.db");
    let app = open(&db).await;
    assert_eq!(register(&app, 4000).await.status, StatusCode::CREATED);
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);

    std::fs::remove_file(&db).unwrap();
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("deleted or replaced"),
        "{body}"
    );
    // Acknowledging this would be a lie: the file is gone, and so would the record be at the
    // next restart.
    let answer = register(&app, 4001).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("deleted or replaced"),
        "{}",
        answer.body
    );

    // Another file at the same path is not the database the index opened either.
    fill(&db, 4096);
    assert_eq!(app.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        register(&app, 4002).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let metrics = app.service.state().metrics.render();
    assert!(
        metrics.contains("index_db_write_failures_total{cause=\"replaced\"}"),
        "{metrics}"
    );
    app.service.shutdown().await;
}

#[tokio::test]
async fn a_database_locked_by_another_program_is_503_then_recovers() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("index.db");
    let app = open(&db).await;
    assert_eq!(register(&app, 4000).await.status, StatusCode::CREATED);

    // Another program (say, an operator's sqlite3 shell) takes the write lock and keeps it
    // past the writer's 5 s busy timeout.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let answer = register(&app, 4001).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    let error = answer.body["error"].as_str().unwrap();
    assert!(error.contains("locked by another program"), "{error}");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // The lock goes: the index is ready again without a restart, and writes go through.
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    eventually(Duration::from_secs(60), "/readyz to turn 200", || async {
        (app.get("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let answer = register(&app, 4002).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    app.service.shutdown().await;
}
