//! With `--turn-url` (and `--turn-secret` for TURN), every owner answer — registration, keyed or
//! keyless, heartbeat, update — carries `ice_servers`: the TURN URLs with fresh time-limited
//! credentials (TURN REST API: `<expiry>:<uuid>`, base64(HMAC-SHA1(secret, username))) and the
//! STUN URLs. Lookups never carry them; the secret appears in no answer and no log line; a
//! real coturn sharing the secret accepts the credentials and refuses forged or expired ones.

mod common;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{TestApp, owner_request, skip, test_app, test_app_with, unix_now};
use index_service::Config;
use index_service::ice::{parse_ice_urls, parse_secret, turn_credential, turn_username};
use proto::api::IceServer;
use proto::identity::{Identity, uuid_for_key};
use serde_json::{Value, json};

const SECRET: &str = "correct-horse-battery-staple";
const TTL: Duration = Duration::from_secs(3600);

fn with_servers(urls: &'static str, secret: Option<&'static str>) -> impl FnOnce(&mut Config) {
    move |config| {
        config.turn_urls = vec![parse_ice_urls(urls).unwrap()];
        config.turn_secret = secret.map(|s| parse_secret(s).unwrap());
        config.turn_credential_ttl = TTL;
    }
}

fn servers_of(record: &Value) -> Vec<IceServer> {
    serde_json::from_value(record["ice_servers"].clone()).unwrap_or_else(|e| {
        panic!("ice_servers of {record}: {e}");
    })
}

/// base64(HMAC-SHA1(secret, username)) as Python's standard library computes it: a second,
/// independent implementation. `None` (and a loud SKIP) without python3.
fn python_credential(secret: &str, username: &str) -> Option<String> {
    let script = "import hmac,hashlib,base64,sys\n\
                  print(base64.b64encode(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), \
                  hashlib.sha1).digest()).decode())";
    match Command::new("python3")
        .args(["-c", script, secret, username])
        .output()
    {
        Ok(output) if output.status.success() => {
            Some(String::from_utf8(output.stdout).unwrap().trim().to_owned())
        }
        _ => {
            skip("ice_servers: python3 is missing, the independent HMAC check did not run");
            None
        }
    }
}

/// Checks that `record` (the answer to the owner of `uuid`, sent between `before` and
/// `after`) carries the TURN entry with valid credentials for `uuid`, then the STUN entry.
fn assert_fresh_credentials(record: &Value, uuid: &str, before: u64, after: u64) {
    let servers = servers_of(record);
    assert_eq!(servers.len(), 2, "{record}");
    let turn = &servers[0];
    assert_eq!(turn.urls, ["turn:127.0.0.1:3478", "turn:192.0.2.1:3479"]);
    let username = turn.username.as_deref().expect("a TURN username");
    let (expiry, who) = username.split_once(':').expect("<expiry>:<uuid>");
    assert_eq!(who, uuid, "{username}");
    let expiry: u64 = expiry.parse().expect("expiry in Unix seconds");
    assert!(
        (before + TTL.as_secs()..=after + TTL.as_secs()).contains(&expiry),
        "expiry {expiry} is not now + {TTL:?} (now in {before}..={after})"
    );
    let credential = turn.credential.as_deref().expect("a TURN credential");
    if let Some(expected) = python_credential(SECRET, username) {
        assert_eq!(credential, expected, "credential of {username}");
    }
    let stun = &servers[1];
    assert_eq!(stun.urls, ["stun:127.0.0.1:3478"]);
    assert_eq!((&stun.username, &stun.credential), (&None, &None));
    assert!(!record.to_string().contains(SECRET), "{record}");
}

fn assert_no_servers(record: &Value) {
    assert!(record.get("ice_servers").is_none(), "{record}");
    assert!(!record.to_string().contains(SECRET), "{record}");
}

async fn configured() -> TestApp {
    test_app_with(with_servers(
        "turn:127.0.0.1,stun:127.0.0.1:3478,turn:192.0.2.1:3479?transport=udp",
        Some(SECRET),
    ))
    .await
}

#[tokio::test]
async fn owner_answers_carry_fresh_credentials_and_lookups_none() {
    let app = configured().await;
    let alice = Identity::from_secret([1; 32]);
    let alice_uuid = uuid_for_key(&alice.public_key()).to_string();

    let before = unix_now();
    let keyed = app.register_keyed(&alice, 4000, Some("alice")).await;
    assert_eq!(keyed.status, StatusCode::CREATED, "{}", keyed.body);
    assert_fresh_credentials(&keyed.body, &alice_uuid, before, unix_now());

    let before = unix_now();
    let (status, keyless) = app.register(json!({"udp_port": 5000}).to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{keyless}");
    let bob_uuid = keyless["uuid"].as_str().unwrap().to_owned();
    let token = keyless["token"].as_str().unwrap().to_owned();
    assert_fresh_credentials(&keyless, &bob_uuid, before, unix_now());
    let bearer = format!("Bearer {token}");

    // Heartbeat and update answers renew them.
    let before = unix_now();
    let path = format!("/peers/{bob_uuid}");
    let heartbeat = app
        .send(owner_request(
            "POST",
            &format!("{path}/heartbeat"),
            "",
            Some(&bearer),
        ))
        .await;
    assert_eq!(heartbeat.status, StatusCode::OK, "{}", heartbeat.body);
    assert_fresh_credentials(&heartbeat.body, &bob_uuid, before, unix_now());
    let update = app
        .send(owner_request(
            "PUT",
            &path,
            r#"{"udp_port": 5001}"#,
            Some(&bearer),
        ))
        .await;
    assert_eq!(update.status, StatusCode::OK, "{}", update.body);
    assert_fresh_credentials(&update.body, &bob_uuid, before, unix_now());

    // Nobody else gets them: lookups by UUID (cache and SQLite), by name, in rooms.
    for uuid in [&alice_uuid, &bob_uuid] {
        let (status, found) = app.lookup(uuid).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_no_servers(&found);
    }
    let (status, found) = app.get("/peers?name=alice").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_no_servers(&found);
    let joined = common::rooms::with_token(&app, "PUT", "lobby", &bob_uuid, &token).await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    assert_no_servers(&joined.body);
    let (_, room) = app.get("/rooms/lobby").await;
    assert_no_servers(&room);
}

#[tokio::test]
async fn without_servers_answers_are_as_before() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let keyed = app.register_keyed(&alice, 4000, None).await;
    assert_eq!(keyed.status, StatusCode::CREATED);
    assert_no_servers(&keyed.body);
    let (status, keyless) = app.register(json!({"udp_port": 5000}).to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_no_servers(&keyless);
    let heartbeat = app
        .send(owner_request(
            "POST",
            &format!("/peers/{}/heartbeat", keyless["uuid"].as_str().unwrap()),
            "",
            Some(&format!("Bearer {}", keyless["token"].as_str().unwrap())),
        ))
        .await;
    assert_eq!(heartbeat.status, StatusCode::OK);
    assert_no_servers(&heartbeat.body);
}

#[tokio::test]
async fn stun_only_needs_no_secret_and_hands_out_no_credentials() {
    let app = test_app_with(with_servers("stun:192.0.2.1", None)).await;
    let (status, record) = app.register(json!({"udp_port": 5000}).to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{record}");
    assert_eq!(
        record["ice_servers"],
        json!([{"urls": ["stun:192.0.2.1:3478"]}]),
        "no username or credential fields at all"
    );
}

/// A free UDP port on 127.0.0.1 (free when this returns; good enough for one test).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on 127.0.0.1.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit within `limit`; kills it and panics otherwise.
fn wait_for(child: &mut Reaped, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not finish in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_secret_appears_in_no_log_line_or_metric() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let secret = "zz-very-secret-token-zz";
    let mut index = Reaped(
        Command::new(env!("CARGO_BIN_EXE_index-service"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &common::database_url(&dir)])
            .args(["--turn-url", "turn:127.0.0.1:3478"])
            .env("INDEX_TURN_SECRET", secret)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let record: Value = loop {
        let attempt = client
            .post(format!("{base}/register"))
            .json(&json!({"udp_port": 4000}))
            .send()
            .await;
        if let Ok(response) = attempt {
            assert_eq!(response.status(), StatusCode::CREATED);
            break response.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the index did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(servers_of(&record).len(), 1);
    let uuid = record["uuid"].as_str().unwrap();
    let heartbeat = client
        .post(format!("{base}/peers/{uuid}/heartbeat"))
        .bearer_auth(record["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(heartbeat.status(), StatusCode::OK);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("index_"), "{metrics}");
    assert!(!metrics.contains(secret));
    let _ = Command::new("kill")
        .args(["-TERM", &index.0.id().to_string()])
        .status();
    wait_for(&mut index, Duration::from_secs(30), "the index's shutdown");
    let mut logs = String::new();
    for stream in [
        index.0.stdout.take().map(|s| Box::new(s) as Box<dyn Read>),
        index.0.stderr.take().map(|s| Box::new(s) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut stream = stream;
        stream.read_to_string(&mut logs).unwrap();
    }
    assert!(
        logs.contains("registered"),
        "debug logs were written: {logs}"
    );
    assert!(
        !logs.contains(secret),
        "the secret leaked into the log: {logs}"
    );
}

/// Sends STUN Binding requests to `server` until one is answered: coturn is then serving.
/// (20 bytes: type 0x0001, length 0, the magic cookie, a transaction id.)
fn wait_for_stun(server: SocketAddr, limit: Duration) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(b"peerlinktest");
    let deadline = Instant::now() + limit;
    let mut answer = [0u8; 512];
    while Instant::now() < deadline {
        let _ = socket.send_to(&request, server);
        if let Ok((n, _)) = socket.recv_from(&mut answer)
            && n >= 20
            && answer[..2] == [0x01, 0x01]
            && answer[8..20] == request[8..20]
        {
            return true;
        }
    }
    false
}

/// `turnutils_uclient` allocating relays on coturn at `port` with `username`/`password` and
/// relaying a few messages between two clients: its exit status and output.
fn uclient(port: u16, username: &str, password: &str) -> (bool, String) {
    let mut child = Reaped(
        Command::new("turnutils_uclient")
            .args(["-y", "-n", "3", "-m", "1", "-l", "64"])
            .args(["-u", username, "-w", password])
            .args(["-p", &port.to_string(), "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_for(&mut child, Duration::from_secs(60), "turnutils_uclient");
    let mut output = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    (status.success(), output)
}

/// How many messages `turnutils_uclient` says it received back through the relay.
fn received(output: &str) -> u64 {
    output
        .lines()
        .filter_map(|line| line.split("tot_recv_msgs=").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

fn tool_missing(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| Path::new(&dir).join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        skip(&format!(
            "ice_servers::coturn_accepts_the_credentials: `{tool}` is not installed (Debian package coturn)"
        ));
    }
    !found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_accepts_the_credentials() {
    if tool_missing("turnserver") || tool_missing("turnutils_uclient") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut turnserver = Reaped(
        Command::new("turnserver")
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint"])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--min-port", "49152", "--max-port", "65535"])
            .args([
                "--use-auth-secret",
                &format!("--static-auth-secret={SECRET}"),
            ])
            .args(["--realm", "peerlink.test", "--allow-loopback-peers"])
            .args(["--userdb", &dir.path().join("turndb").display().to_string()])
            .args([
                "--pidfile",
                &dir.path().join("turn.pid").display().to_string(),
            ])
            .args(["--log-file", "stdout", "--simple-log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ready = tokio::task::spawn_blocking(move || wait_for_stun(server, Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(
        ready,
        "coturn did not answer STUN on {server} (exited: {:?})",
        turnserver.0.try_wait()
    );

    let app = test_app_with(|config| {
        config.turn_urls = vec![parse_ice_urls(&format!("turn:127.0.0.1:{port}")).unwrap()];
        config.turn_secret = Some(parse_secret(SECRET).unwrap());
    })
    .await;
    let alice = Identity::from_secret([1; 32]);
    let answer = app.register_keyed(&alice, 4000, None).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let turn = servers_of(&answer.body).remove(0);
    assert_eq!(turn.urls, [format!("turn:127.0.0.1:{port}")]);
    let username = turn.username.unwrap();
    let password = turn.credential.unwrap();

    let (ok, output) = tokio::task::spawn_blocking({
        let (username, password) = (username.clone(), password.clone());
        move || uclient(port, &username, &password)
    })
    .await
    .unwrap();
    assert!(ok, "coturn refused the index's credentials:\n{output}");
    assert!(
        received(&output) > 0,
        "nothing came back through the relay:\n{output}"
    );

    // The check can fail: a credential made with another secret, and an expired username
    // signed with the right one, are refused.
    let forged = turn_credential(b"not-the-secret", &username);
    let uuid = uuid_for_key(&alice.public_key());
    let expired = turn_username(unix_now() - 60, uuid);
    let expired_password = turn_credential(SECRET.as_bytes(), &expired);
    for (user, pass, what) in [
        (username.clone(), forged, "a forged credential"),
        (expired, expired_password, "an expired username"),
    ] {
        let (ok, output) = tokio::task::spawn_blocking(move || uclient(port, &user, &pass))
            .await
            .unwrap();
        assert!(!ok, "coturn accepted {what}:\n{output}");
        assert_eq!(received(&output), 0, "{what}:\n{output}");
    }
}
