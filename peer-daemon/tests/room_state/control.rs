//! The control API reads and writes room state, and says what it refuses.

use super::*;

pub(crate) struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    /// From `daemon`'s `control` event (printed before `registered`, so in its backlog).
    pub(crate) async fn of(daemon: &mut Daemon) -> Api {
        let control = daemon.expect("control", |_| true, EVENT_TIMEOUT).await;
        let addr = control["addr"].as_str().expect("an address");
        let token_file = control["token_file"].as_str().expect("a token file");
        let token = std::fs::read_to_string(token_file).expect("reading the control token");
        Api {
            base: format!("http://{addr}"),
            token: token.trim().to_owned(),
            client: http_client(),
        }
    }

    /// `method path` with an optional JSON body: the status and the JSON answer.
    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(
                method.parse().expect("a method"),
                format!("{}{path}", self.base),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("reading the answer");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} answered {status} with {text:?}: {e}"));
        (status, value)
    }

    /// Like [`Api::call`], expecting a JSON error `{"error": "..."}` with `status`.
    #[track_caller]
    pub(crate) fn refused<'a>(
        &'a self,
        method: &'a str,
        path: &'a str,
        body: Option<Value>,
        status: u16,
    ) -> impl std::future::Future<Output = String> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let (got, answer) = self.call(method, path, body).await;
            assert_eq!(got, status, "{caller}: {method} {path}: {answer}");
            answer["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{caller}: {method} {path}: no error text: {answer}"))
                .to_owned()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_reads_writes_and_refuses_room_state() {
    let index = Index::start().await;
    let control = ["--control", "127.0.0.1:0"];
    let mut alice = Daemon::spawn_with_args(&index.url(), "alice", &control).await;
    let mut bob = Daemon::spawn_with_args(&index.url(), "bob", &control).await;
    let (alice_api, bob_api) = (Api::of(&mut alice).await, Api::of(&mut bob).await);
    join_all(&mut [&mut alice, &mut bob]).await;
    let garden = format!("/rooms/{ROOM}/state");

    // A PUT on alice is a change on bob.
    let (status, put) = alice_api
        .call(
            "PUT",
            &format!("{garden}/topic"),
            Some(json!({ "value": "set over http" })),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    let alice_id = alice.uuid.to_string();
    assert_eq!(
        put,
        json!({
            "room": ROOM, "key": "topic", "value": "set over http",
            "author": alice_id, "author_name": "alice",
        })
    );
    let changed = bob
        .expect("state", |v| v["key"] == "topic", EVENT_TIMEOUT)
        .await;
    assert_eq!(
        changed,
        json!({
            "event": "state", "room": ROOM, "key": "topic", "value": "set over http",
            "author": alice_id, "author_name": "alice", "reason": "changed",
        })
    );
    let (status, got) = bob_api.call("GET", &format!("{garden}/topic"), None).await;
    assert_eq!((status, &got), (200, &put), "bob's GET of the topic");
    let (status, list) = bob_api.call("GET", &garden, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["room"], ROOM, "{list}");
    assert_eq!(
        state_from(&list["entries"]),
        State::from([("topic".to_owned(), by(&alice, "set over http"))])
    );

    // The longest value there may be goes through; what the API refuses goes nowhere.
    let longest = "v".repeat(Limits::default().value);
    let (status, put) = alice_api
        .call(
            "PUT",
            &format!("{garden}/long"),
            Some(json!({ "value": longest })),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    let long = format!("{garden}/long");
    let too_long = Some(json!({ "value": "v".repeat(Limits::default().value + 1) }));
    let error = alice_api.refused("PUT", &long, too_long, 413).await;
    assert!(error.contains("1024"), "{error}");
    let value = || Some(json!({ "value": "x" }));
    alice_api
        .refused("PUT", &format!("{garden}/bad%20key"), value(), 400)
        .await;
    let key = "k".repeat(Limits::default().key + 1);
    alice_api
        .refused("PUT", &format!("{garden}/{key}"), value(), 400)
        .await;
    alice_api
        .refused("PUT", "/rooms/Not!A!Room/state/k", value(), 400)
        .await;
    let error = alice_api
        .refused("PUT", "/rooms/elsewhere/state/k", value(), 404)
        .await;
    assert!(error.contains("not in #elsewhere"), "{error}");
    alice_api
        .refused("GET", "/rooms/elsewhere/state", None, 404)
        .await;
    let error = alice_api
        .refused("GET", &format!("{garden}/nope"), None, 404)
        .await;
    assert!(error.contains("nope"), "{error}");
    // A body that is not JSON.
    let response = alice_api
        .client
        .put(format!("{}{garden}/k", alice_api.base))
        .bearer_auth(&alice_api.token)
        .body("x")
        .send()
        .await
        .expect("PUT without a JSON body");
    assert_eq!(response.status(), 415);
    let answer: Value = response.json().await.expect("a JSON error");
    assert!(answer["error"].is_string(), "{answer}");

    // DELETE: bob hears the topic go. Everything alice did in between that was refused would
    // have reached bob before it, in order: only the long value did.
    let (status, deleted) = alice_api
        .call("DELETE", &format!("{garden}/topic"), None)
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["value"], Value::Null, "{deleted}");
    let gone = bob
        .expect(
            "state",
            |v| v["key"] == "topic" && v["value"].is_null(),
            EVENT_TIMEOUT,
        )
        .await;
    assert_eq!(gone["reason"], "changed", "{gone}");
    let shown: Vec<Value> = bob
        .backlog_events()
        .filter(|v| v["event"] == "state")
        .cloned()
        .collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert_eq!(
        (&shown[0]["key"], shown[0]["value"].as_str().map(str::len)),
        (&json!("long"), Some(Limits::default().value)),
        "{shown:#?}"
    );
    let (status, list) = bob_api.call("GET", &garden, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        state_from(&list["entries"]),
        State::from([("long".to_owned(), by(&alice, &longest))])
    );
    // Unsetting what is not set is done too, and changes nothing.
    let (status, _) = alice_api
        .call("DELETE", &format!("{garden}/nope"), None)
        .await;
    assert_eq!(status, 200);
}
