//! The local control API end to end: a real daemon started with `--control 127.0.0.1:0`, the
//! real index, and a second daemon that receives what a script sends through the API.

mod clients;
#[path = "../common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;

use clients::{Controlled, EventStream};
use common::{Daemon, EVENT_TIMEOUT, Index, http_client};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_sends_lists_sessions_and_streams_events() {
    let index = Index::start().await;
    let mut alice = Controlled::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;

    // The daemon announces where the API listens and where the token is.
    let control = alice.expect("control", |_| true, EVENT_TIMEOUT).await;
    let addr: std::net::SocketAddr = control["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("ip:port");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{control}");
    let token_file = std::path::PathBuf::from(control["token_file"].as_str().expect("token_file"));
    assert_eq!(token_file, alice.state.path().join("control.token"));
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the token must be readable by its owner only"
    );
    let token = std::fs::read_to_string(&token_file)
        .expect("reading the token")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64, "32 random bytes in hex: {token:?}");
    let base = format!("http://{addr}");
    let client = http_client();

    // Without the token (or with another one) nothing is answered but 401, as JSON.
    for (method, path) in [
        ("GET", "/sessions"),
        ("GET", "/events"),
        ("POST", "/send"),
        ("GET", "/nowhere"),
    ] {
        for bearer in [None, Some("0".repeat(64))] {
            let mut request = client.request(method.parse().unwrap(), format!("{base}{path}"));
            if let Some(bearer) = &bearer {
                request = request.bearer_auth(bearer);
            }
            let response = request
                .json(&json!({ "to": bob.uuid, "text": "sneaky" }))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 401, "{method} {path} with {bearer:?}");
            let body: Value = response.json().await.expect("a JSON error");
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("control.token")),
                "{body}"
            );
        }
    }
    // The stream is open before anything is sent, so it sees what follows. (No overall
    // timeout on this client: the stream is meant to stay open.)
    let response = reqwest::Client::new()
        .get(format!("{base}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /events");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut events = EventStream::new(response);

    let get_sessions = || async {
        client
            .get(format!("{base}/sessions"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET /sessions")
            .json::<Value>()
            .await
            .expect("GET /sessions answers JSON")
    };
    let sessions = get_sessions().await;
    assert_eq!(
        sessions,
        json!({ "sessions": [{ "n": 0, "label": "#lobby", "active": true, "unread": 0 }] })
    );

    // A private message to bob, by UUID.
    let send = |body: Value| {
        client
            .post(format!("{base}/send"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let response = send(json!({ "to": bob.uuid, "text": "hello from a script" }))
        .await
        .expect("POST /send");
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "queued": true })
    );
    let sender = alice.uuid.to_string();
    bob.expect(
        "message",
        |v| v["from"] == sender.as_str() && v["text"] == "hello from a script",
        EVENT_TIMEOUT,
    )
    .await;
    let receiver = bob.uuid.to_string();
    let delivered = events
        .expect(
            |name, v| name == "failed" || name == "delivered" && v["to"] == receiver.as_str(),
            EVENT_TIMEOUT,
        )
        .await;
    assert_eq!(delivered["event"], "delivered", "{delivered}");
    assert!(
        delivered["rtt_ms"].as_f64().is_some_and(|rtt| rtt >= 0.0),
        "{delivered}"
    );
    // `--json` on stdout is unchanged by the API.
    alice
        .expect("delivered", |v| v["to"] == receiver.as_str(), EVENT_TIMEOUT)
        .await;

    // A room message: bob is in the lobby (he said so when he answered alice).
    let response = send(json!({ "room": "lobby", "text": "hello, room" }))
        .await
        .expect("POST /send");
    assert_eq!(response.status(), 202);
    bob.expect(
        "message",
        |v| v["text"] == "hello, room" && v["room"] == "lobby",
        EVENT_TIMEOUT,
    )
    .await;
    let counted = events
        .expect(
            |name, v| (name == "delivered" || name == "failed") && v["room"] == "lobby",
            EVENT_TIMEOUT,
        )
        .await;
    assert_eq!(counted["event"], "delivered", "{counted}");
    assert_eq!(
        (counted["delivered"].as_u64(), counted["total"].as_u64()),
        (Some(1), Some(1)),
        "{counted}"
    );

    // An incoming private message opens a session, listed with its unread count.
    bob.msg(alice.uuid, "hello alice").await;
    events
        .expect(
            |name, v| name == "message" && v["text"] == "hello alice",
            EVENT_TIMEOUT,
        )
        .await;
    let sessions = get_sessions().await;
    assert_eq!(
        sessions["sessions"][1],
        json!({ "n": 1, "label": "@bob", "active": false, "unread": 1 }),
        "{sessions}"
    );

    // The history: what was said in the private session with bob, both ways, oldest first,
    // with the delivery state; paging back with `before`.
    let history = |query: String| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let response = client
                .get(format!("{base}/history?{query}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("GET /history");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, private) = history(format!("peer={}", bob.uuid)).await;
    assert_eq!(status, 200, "{private}");
    let lines = private["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2, "{private}");
    assert_eq!(lines[0]["text"], "hello from a script");
    assert_eq!(lines[0]["state"], "delivered", "{private}");
    assert!(lines[0].get("from").is_none(), "ours: {private}");
    assert_eq!(lines[1]["text"], "hello alice");
    assert_eq!(lines[1]["from"], bob.uuid.to_string(), "{private}");
    assert_eq!(lines[1]["state"], "received");
    let (_, older) = history(format!("peer={}&before={}", bob.uuid, lines[1]["id"])).await;
    assert_eq!(older["lines"].as_array().map(Vec::len), Some(1), "{older}");
    let (_, room) = history("room=%23lobby&limit=5".into()).await;
    assert_eq!(room["lines"][0]["text"], "hello, room", "{room}");
    assert_eq!(room["lines"][0]["delivered"], 1, "{room}");
    for bad in [
        "room=a&peer=b",
        "limit=0",
        "limit=x",
        "peer=bob",
        "before=-1",
        "what=1",
    ] {
        let (status, answer) = history(bad.into()).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"].is_string(), "{bad}: {answer}");
    }

    // Requests that cannot be carried out say why, as JSON 4xx, and queue nothing.
    let sent_before = alice.seen_count("sent");
    for (body, status) in [
        (
            json!({ "to": bob.uuid, "room": "lobby", "text": "both" }),
            400,
        ),
        (json!({ "text": "neither" }), 400),
        (json!({ "room": "Not A Room!", "text": "x" }), 400),
        (json!({ "to": bob.uuid, "text": "" }), 400),
        (json!({ "to": bob.uuid }), 422),
    ] {
        let response = send(body.clone()).await.expect("POST /send");
        assert_eq!(response.status(), status, "{body}");
        let answer: Value = response.json().await.expect("a JSON error");
        assert!(answer["error"].is_string(), "{body} -> {answer}");
    }
    let response = client
        .post(format!("{base}/send"))
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    // A room this daemon is not in is refused by the daemon, on the event stream.
    let response = send(json!({ "room": "elsewhere", "text": "x" }))
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let refused = events
        .expect(|name, _| name == "error", EVENT_TIMEOUT)
        .await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("#elsewhere")),
        "{refused}"
    );
    // Everything alice printed before that error is on hand now.
    alice
        .expect("error", |v| v == &refused, EVENT_TIMEOUT)
        .await;
    assert_eq!(
        alice.seen_count("sent"),
        sent_before,
        "the refused requests sent nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_only_listens_on_loopback() {
    let state = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_peer-daemon"))
        .args([
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "0.0.0.0:0",
            "--state-dir",
        ])
        .arg(state.path())
        .env_remove("PEER_CONTROL")
        .env("PEER_NO_MDNS", "1")
        .env("PEER_NO_DHT", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("running peer-daemon");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(!state.path().join("control.token").exists());
}
