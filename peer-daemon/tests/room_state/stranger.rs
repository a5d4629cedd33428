//! A stranger (a daemon outside the room, and a peer of the test's own making with a signed
//! sync message) neither reads nor writes a room's state.

use super::*;
use crate::control::Api;

/// A peer driven by the test itself through the real protocol core: it speaks to daemons
/// like any peer does, but says only what the test makes it say.
struct Intruder {
    identity: Identity,
    endpoint: SecureEndpoint,
    socket: tokio::net::UdpSocket,
}

impl Intruder {
    async fn new() -> Intruder {
        let identity = Identity::from_secret(rand::random());
        let config = SecureConfig {
            endpoint: proto::Config::default(),
            seed: rand::random(),
        };
        let endpoint = SecureEndpoint::new(identity.clone(), 1, config);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binding the intruder's socket");
        Intruder {
            identity,
            endpoint,
            socket,
        }
    }

    fn uuid(&self) -> Uuid {
        self.identity.uuid()
    }

    /// Sends `message` to `to` at `addr` and runs the protocol until it is acknowledged
    /// (the daemon has taken it in), answering whatever the daemon sends meanwhile.
    async fn deliver(&mut self, to: Uuid, addr: SocketAddr, message: &ChatMessage) {
        let id: MsgId = self
            .endpoint
            .send(Instant::now(), to, addr, message.encode())
            .expect("the intruder's endpoint takes the message");
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let mut buf = vec![0; 64 * 1024];
        loop {
            let now = Instant::now();
            while let Some(transmit) = self.endpoint.poll_transmit(now) {
                self.socket
                    .send_to(&transmit.bytes, transmit.to)
                    .await
                    .expect("sending a datagram");
            }
            while let Some(event) = self.endpoint.poll_event() {
                match event {
                    Event::Delivered { id: done, .. } if done == id => return,
                    Event::Failed {
                        id: done, reason, ..
                    } if done == id => panic!("the intruder's message failed: {reason}"),
                    _ => {}
                }
            }
            assert!(
                now < deadline,
                "the intruder's message was not acknowledged within {EVENT_TIMEOUT:?}"
            );
            let wake = self
                .endpoint
                .poll_timeout()
                .map_or(deadline, |at| at.min(deadline));
            match tokio::time::timeout_at(wake.into(), self.socket.recv_from(&mut buf)).await {
                Ok(Ok((len, from))) => {
                    self.endpoint
                        .handle_datagram(Instant::now(), from, &buf[..len])
                }
                Ok(Err(error)) => panic!("the intruder's socket: {error}"),
                Err(_) => self.endpoint.handle_timeout(Instant::now()),
            }
        }
    }

    /// A sync message about `room` that carries `writes` as changes the intruder made and
    /// signed itself, exactly as a member's daemon would: valid in every respect but who
    /// sends it. Made by syncing the intruder's own state with a stand-in until a message
    /// carries the changes.
    fn signed_sync(&self, room: &str, writes: &[(&str, &str)]) -> ChatMessage {
        let mut author = RoomStates::new(self.identity.clone(), Limits::default());
        for (key, value) in writes {
            author
                .put(room, key, Some(value))
                .expect("the intruder's write is valid");
        }
        let stand_in = Identity::from_secret(rand::random());
        let mut receiver = RoomStates::new(stand_in.clone(), Limits::default());
        let now = Instant::now();
        for _ in 0..4 {
            let (sync, sigs) = author
                .generate(room, stand_in.uuid(), now)
                .expect("a sync message for the stand-in");
            let updates = receiver
                .receive(room, self.uuid(), now, &sync, &sigs)
                .expect("the stand-in takes the intruder's sync message");
            if updates.len() == writes.len() {
                return ChatMessage::State {
                    room: room.to_owned(),
                    sync,
                    sigs,
                };
            }
            if let Some((sync, sigs)) = receiver.generate(room, self.uuid(), now) {
                author
                    .receive(room, stand_in.uuid(), now, &sync, &sigs)
                    .expect("the intruder takes the stand-in's answer");
            }
        }
        panic!("no sync message carried the intruder's changes");
    }
}

/// Rows of `room` in the `room_state` table of the store in `state_dir`, or `None` when
/// sqlite3 is not installed.
fn stored_rows(state_dir: &std::path::Path, room: &str) -> Option<usize> {
    let out = std::process::Command::new("sqlite3")
        .arg(state_dir.join("messages.db"))
        .arg(format!(
            "select count(*) from room_state where room = '{room}'"
        ))
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The control API of a daemon started with `--control 127.0.0.1:0`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_neither_reads_nor_writes_a_room_it_is_not_in() {
    let index = Index::start().await;
    let control = ["--control", "127.0.0.1:0"];
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let mut mallory = Daemon::spawn_with_args(&index.url(), "mallory", &control).await;
    let mallory_api = Api::of(&mut mallory).await;
    join_all(&mut [&mut alice, &mut bob]).await;
    alice.send_line("/topic members only").await;
    alice.send_line("/set secret 42").await;
    let expected: State = [
        ("topic".to_owned(), by(&alice, "members only")),
        ("secret".to_owned(), by(&alice, "42")),
    ]
    .into();
    wait_state(
        &mut bob,
        "holding alice's keys",
        |s| *s == expected,
        CONVERGE,
    )
    .await;

    // Mallory, in the lobby with them but never in the garden, sees none of it: not with
    // her commands (they act on her lobby), not through her control API.
    mallory.send_line("/state").await;
    let list = mallory.expect("state_list", |_| true, EVENT_TIMEOUT).await;
    assert_eq!(
        (&list["room"], &list["entries"]),
        (&json!("lobby"), &json!([])),
        "{list}"
    );
    mallory.send_line("/get secret").await;
    let secret = mallory
        .expect("state", |v| v["key"] == "secret", EVENT_TIMEOUT)
        .await;
    assert_eq!(
        (&secret["room"], &secret["value"]),
        (&json!("lobby"), &Value::Null),
        "{secret}"
    );
    let garden = format!("/rooms/{ROOM}/state");
    let error = mallory_api.refused("GET", &garden, None, 404).await;
    assert!(error.contains("not in #garden"), "{error}");
    mallory_api
        .refused("GET", &format!("{garden}/secret"), None, 404)
        .await;
    let put = Some(json!({ "value": "mallory was here" }));
    mallory_api
        .refused("PUT", &format!("{garden}/secret"), put, 404)
        .await;
    mallory_api
        .refused("DELETE", &format!("{garden}/topic"), None, 404)
        .await;
    // Nor did anything of the garden reach her store, while it reached alice's.
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let Some(rows) = stored_rows(alice.state().path(), ROOM) else {
            common::skip("sqlite3 is not installed: the stores' room_state rows were not checked");
            break;
        };
        if rows > 0 {
            assert_eq!(stored_rows(mallory.state().path(), ROOM), Some(0));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice stored none of the garden's state within {CONVERGE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A stranger that speaks the protocol itself sends alice and bob a sync message it made
    // and signed as a member would: they drop it and count it.
    let mut eve = Intruder::new().await;
    let forged = eve.signed_sync(ROOM, &[("secret", "forged"), ("intruder", "eve was here")]);
    let mut before = Vec::new();
    for daemon in [&mut alice, &mut bob] {
        before.push((state_counters(daemon).await, changes_shown(daemon)));
    }
    for daemon in [&alice, &bob] {
        eve.deliver(daemon.uuid, daemon.addr, &forged).await;
    }
    for (daemon, (before, shown)) in [&mut alice, &mut bob].into_iter().zip(&before) {
        // Delivered means taken in; the counter is read after that, so it shows.
        let after = state_counters(daemon).await;
        let mut wanted = before.clone();
        *wanted.get_mut("state.not_member").unwrap() += 1;
        assert_eq!(
            after, wanted,
            "{}: only state.not_member may move",
            daemon.name
        );
        assert_eq!(state_of(daemon).await, expected, "{}", daemon.name);
        assert_eq!(
            changes_shown(daemon),
            *shown,
            "{}: a state change was shown",
            daemon.name
        );
    }

    // The same message from the same peer once it has joined the room is taken: it was
    // refused for coming from a stranger, and for nothing else.
    eve.deliver(
        alice.uuid,
        alice.addr,
        &ChatMessage::Joined { room: ROOM.into() },
    )
    .await;
    eve.deliver(alice.uuid, alice.addr, &forged).await;
    let taken = alice
        .expect("state", |v| v["key"] == "intruder", EVENT_TIMEOUT)
        .await;
    assert_eq!(taken["author"], eve.uuid().to_string(), "{taken}");
    assert_eq!(taken["value"], "eve was here", "{taken}");
}
