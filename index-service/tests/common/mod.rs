//! Shared by the index's integration tests: a service on a real SQLite file in a tempdir,
//! driven through `oneshot`, and signing helpers for keyed records.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use index_service::db::{Clock, ManualClock};
use index_service::{Config, Service};
use proto::api::Candidate;
use proto::identity::{self, Identity};
use serde_json::Value;
use tower::ServiceExt;

pub mod mailbox;
pub mod names;
pub mod raw;
pub mod rooms;
pub mod running;

/// The client address every `oneshot` request appears to come from.
pub const CLIENT: &str = "203.0.113.7:40000";

pub struct TestApp {
    pub router: axum::Router,
    pub service: Service,
    pub dir: tempfile::TempDir,
}

/// An answer: status, headers and the body parsed as JSON (`Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// The database of a test's index, one per `dir`: a SQLite file in it, or, when
/// `INDEX_TEST_BACKEND=postgres`, a fresh database named after `dir` on the PostgreSQL server
/// `INDEX_TEST_POSTGRES` names (e.g. `postgres://postgres@127.0.0.1:5433`; `.ci/run` starts
/// one and runs the suite a second time so).
pub fn database_url(dir: &tempfile::TempDir) -> String {
    match std::env::var("INDEX_TEST_BACKEND").as_deref() {
        Ok("postgres") => {
            let server = postgres_server()
                .expect("INDEX_TEST_BACKEND=postgres needs INDEX_TEST_POSTGRES=postgres://…");
            postgres_database(&server, &database_name(dir))
        }
        Ok("sqlite") | Ok("") | Err(_) => sqlite_url(dir),
        Ok(other) => panic!("INDEX_TEST_BACKEND={other}: give sqlite or postgres"),
    }
}

/// Whether the suite runs on PostgreSQL ([`database_url`]).
pub fn on_postgres() -> bool {
    std::env::var("INDEX_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// A fresh database on the `INDEX_TEST_POSTGRES` server for a test that needs PostgreSQL
/// whatever the suite runs on (replicas), named after `dir`; `None` (the caller skips, saying
/// so) without a server.
pub fn postgres_url(dir: &tempfile::TempDir) -> Option<String> {
    postgres_server().map(|server| postgres_database(&server, &database_name(dir)))
}

/// A SQLite file in `dir`, whatever `INDEX_TEST_POSTGRES` says: for tests of SQLite itself.
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("index.db").display())
}

/// The PostgreSQL server the tests run on (`INDEX_TEST_POSTGRES`), if any.
pub fn postgres_server() -> Option<String> {
    std::env::var("INDEX_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| url.trim_end_matches('/').to_owned())
}

fn database_name(dir: &tempfile::TempDir) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.path().hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    format!("t_{:016x}", hasher.finish())
}

/// `server`'s database `name` (created if missing), as a URL.
pub fn postgres_database(server: &str, name: &str) -> String {
    let (admin, create) = (format!("{server}/postgres"), name.to_owned());
    // The callers may be inside a runtime, which must not block: a thread with its own.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::{Connection, Executor};
            let mut admin = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("INDEX_TEST_POSTGRES: cannot connect to {admin}: {e}"));
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&create)
                    .fetch_optional(&mut admin)
                    .await
                    .unwrap();
            if exists.is_none() {
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "CREATE DATABASE {create} TEMPLATE template0"
                    )))
                    .await
                    .unwrap();
            }
        });
    })
    .join()
    .unwrap();
    format!("{server}/{name}")
}

pub async fn test_app() -> TestApp {
    test_app_with(|_| {}).await
}

pub async fn test_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    test_app_on(Clock::System, tweak).await
}

/// A test app whose index reads the returned clock for every expiry: the test moves it past a
/// TTL (`clock.advance(…)`) instead of sleeping.
pub async fn test_app_with_clock(tweak: impl FnOnce(&mut Config)) -> (TestApp, ManualClock) {
    let clock = ManualClock::starting_now();
    (test_app_on(clock.clone().into(), tweak).await, clock)
}

async fn test_app_on(clock: Clock, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_database(database_url(&dir));
    tweak(&mut config);
    let service = Service::open_with_clock(config, clock).await.unwrap();
    let client: SocketAddr = CLIENT.parse().unwrap();
    TestApp {
        router: service.app().layer(MockConnectInfo(client)),
        service,
        dir,
    }
}

impl TestApp {
    /// An index on the database at `url` (which other indexes may share: replicas).
    pub async fn on(url: &str) -> TestApp {
        let service = Service::open(Config::for_database(url)).await.unwrap();
        let client: SocketAddr = CLIENT.parse().unwrap();
        TestApp {
            router: service.app().layer(MockConnectInfo(client)),
            service,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The service again on the database in `dir`, as after a restart.
    pub async fn reopen(dir: tempfile::TempDir) -> TestApp {
        let service = Service::open(Config::for_database(database_url(&dir)))
            .await
            .unwrap();
        let client: SocketAddr = CLIENT.parse().unwrap();
        TestApp {
            router: service.app().layer(MockConnectInfo(client)),
            service,
            dir,
        }
    }

    /// Sends `request`; every answer but a 204 must be JSON.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        if status == StatusCode::NO_CONTENT {
            assert!(bytes.is_empty());
            return Answer {
                status,
                headers,
                body: Value::Null,
            };
        }
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "every answer is JSON; got {status} {:?}",
            String::from_utf8_lossy(&bytes)
        );
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap(),
        }
    }

    pub async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let answer = self.send(request).await;
        (answer.status, answer.body)
    }

    pub async fn register(&self, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::post("/register")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap();
        self.call(request).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// `GET /peers/{uuid}`.
    pub async fn lookup(&self, uuid: &str) -> (StatusCode, Value) {
        self.get(&format!("/peers/{uuid}")).await
    }

    /// How many records the database holds, live or expired: what a refused write must not
    /// have changed.
    pub async fn peer_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM peers")
            .fetch_one(&self.service.state().pool)
            .await
            .unwrap()
    }

    /// A keyless registration; returns (uuid, token).
    pub async fn register_keyless(&self, udp_port: u16) -> (String, String) {
        let (status, record) = self
            .register(serde_json::json!({ "udp_port": udp_port }).to_string())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{record}");
        (
            record["uuid"].as_str().unwrap().to_owned(),
            record["token"].as_str().unwrap().to_owned(),
        )
    }

    /// A signed registration of `id`.
    pub async fn register_keyed(&self, id: &Identity, udp_port: u16, name: Option<&str>) -> Answer {
        let body = keyed_registration(id, udp_port, name, unix_now());
        self.send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The body of a keyed registration signed at `timestamp`.
pub fn keyed_registration(
    id: &Identity,
    udp_port: u16,
    name: Option<&str>,
    timestamp: u64,
) -> Value {
    keyed_registration_with(id, udp_port, name, &[], timestamp)
}

/// The body of a keyed registration listing `candidates`, signed at `timestamp`.
pub fn keyed_registration_with(
    id: &Identity,
    udp_port: u16,
    name: Option<&str>,
    candidates: &[Candidate],
    timestamp: u64,
) -> Value {
    let key = id.public_key();
    let message = identity::register_message(&key, udp_port, name, candidates, timestamp);
    let signature = id.sign(&message);
    let mut body = serde_json::json!({
        "udp_port": udp_port,
        "public_key": hex::encode(key),
        "timestamp": timestamp,
        "signature": hex::encode(signature),
    });
    if let Some(name) = name {
        body["name"] = name.into();
    }
    if !candidates.is_empty() {
        body["candidates"] = serde_json::to_value(candidates).unwrap();
    }
    body
}

/// `Authorization: Signature …` for `method path body` signed by `id` at `timestamp`.
pub fn signature_header(
    id: &Identity,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> String {
    let signature = id.sign(&identity::owner_message(method, path, body, timestamp));
    format!("Signature {timestamp}.{}", hex::encode(signature))
}

/// An owner request with an optional `Authorization` value.
pub fn owner_request(
    method: &str,
    path: &str,
    body: &str,
    authorization: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if !body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(authorization) = authorization {
        builder = builder.header(header::AUTHORIZATION, authorization);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

/// An owner request that must be refused: method, path, body, `Authorization`, the expected
/// status, and what the error must mention.
pub type Attempt<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<String>,
    StatusCode,
    &'a str,
);

/// Sends every attempt and checks its refusal; a 401 must also name the accepted schemes in
/// `WWW-Authenticate`.
pub async fn assert_refused(app: &TestApp, attempts: Vec<Attempt<'_>>) {
    for (method, path, body, authorization, expected, mentions) in attempts {
        let answer = app
            .send(owner_request(method, path, body, authorization.as_deref()))
            .await;
        assert_client_error(answer.status, &answer.body, expected, mentions);
        if expected == StatusCode::UNAUTHORIZED {
            assert!(
                answer.headers.contains_key(header::WWW_AUTHENTICATE),
                "{method} {path}: a 401 names the accepted schemes"
            );
        }
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn assert_client_error(status: StatusCode, body: &Value, expected: StatusCode, mentions: &str) {
    assert_eq!(status, expected, "{body}");
    let error = body["error"].as_str().expect("error string");
    assert!(
        error.contains(mentions),
        "`{error}` should mention `{mentions}`"
    );
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
