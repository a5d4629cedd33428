//! The chat experience end to end: three real daemons and the real index. Names, the lobby,
//! private sessions, named rooms with joins and leaves, and a room that outlives the index.

mod common;

use common::{Daemon, EVENT_TIMEOUT, Index};
use serde_json::Value;

/// Starts alice, bob and carol and waits until each knows the other two are in the lobby.
async fn three_in_the_lobby(index: &Index) -> (Daemon, Daemon, Daemon) {
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    alice
        .expect(
            "joined",
            |v| v["room"] == "lobby" && v.get("peer").is_none(),
            EVENT_TIMEOUT,
        )
        .await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    bob.expect(
        "joined",
        |v| v["room"] == "lobby" && v.get("peer").is_none(),
        EVENT_TIMEOUT,
    )
    .await;
    let mut carol = Daemon::spawn(&index.url(), "carol").await;
    carol
        .expect(
            "joined",
            |v| v["room"] == "lobby" && v["members"] == 2,
            EVENT_TIMEOUT,
        )
        .await;
    // The earlier members learn of each newcomer from the newcomer itself.
    for (d, others) in [
        (&mut alice, &["bob", "carol"][..]),
        (&mut bob, &["carol"][..]),
    ] {
        for &name in others {
            d.expect(
                "joined",
                |v| v["room"] == "lobby" && v["name"] == name,
                EVENT_TIMEOUT,
            )
            .await;
        }
    }
    (alice, bob, carol)
}

async fn lobby_message(to: &mut Daemon, from: &Daemon, text: &str) -> Value {
    let sender = from.uuid.to_string();
    to.expect(
        "message",
        |v| v["from"] == sender.as_str() && v["text"] == text && v["room"] == "lobby",
        EVENT_TIMEOUT,
    )
    .await
}

#[tokio::test]
async fn lobby_private_sessions_and_names() {
    let index = Index::start().await;
    let (mut alice, mut bob, mut carol) = three_in_the_lobby(&index).await;

    // A line without a slash goes to the active session: the lobby.
    alice.send_line("hello everyone").await;
    let delivered = alice
        .expect("delivered", |v| v["room"] == "lobby", EVENT_TIMEOUT)
        .await;
    assert_eq!(
        (delivered["delivered"].as_u64(), delivered["total"].as_u64()),
        (Some(2), Some(2)),
        "{delivered}"
    );
    let seen = lobby_message(&mut bob, &alice, "hello everyone").await;
    assert_eq!(seen["name"], "alice", "names are shown once known: {seen}");
    lobby_message(&mut carol, &alice, "hello everyone").await;

    // A private session by name reaches only its peer.
    alice.send_line("/fork bob").await;
    alice
        .expect(
            "info",
            |v| v["message"].as_str().is_some_and(|m| m.contains("@bob")),
            EVENT_TIMEOUT,
        )
        .await;
    alice.send_line("just for you, bob").await;
    let bob_id = bob.uuid.to_string();
    alice
        .expect("delivered", |v| v["to"] == bob_id.as_str(), EVENT_TIMEOUT)
        .await;
    let private = bob
        .expect(
            "message",
            |v| v["text"] == "just for you, bob",
            EVENT_TIMEOUT,
        )
        .await;
    assert!(private.get("room").is_none(), "{private}");
    assert_eq!(private["session"], alice.uuid.to_string().as_str());

    // /msg by name from anywhere, multi-line with a trailing backslash.
    carol.send_line("/msg alice two\\").await;
    carol.send_line("lines").await;
    let alice_id = alice.uuid.to_string();
    carol
        .expect("delivered", |v| v["to"] == alice_id.as_str(), EVENT_TIMEOUT)
        .await;
    alice
        .expect(
            "message",
            |v| v["text"] == "two\nlines" && v["name"] == "carol",
            EVENT_TIMEOUT,
        )
        .await;

    // Sessions list: alice has the lobby, @bob (active) and @carol (1 unread).
    alice.send_line("/sessions").await;
    let sessions = alice.expect("sessions", |_| true, EVENT_TIMEOUT).await;
    let list = sessions["sessions"].as_array().unwrap();
    let labels: Vec<&str> = list.iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["#lobby", "@bob", "@carol"], "{sessions}");
    assert_eq!(list[1]["active"], true);
    assert_eq!(list[2]["unread"], 1);

    // Carol never saw the private message to bob.
    assert!(
        carol
            .backlog_events()
            .all(|v| v["text"] != "just for you, bob"),
        "a private message leaked to a third peer"
    );

    // A second "alice" is refused by the index with a message saying how to fix it.
    let mut impostor = Daemon::spawn_unregistered(&index.url(), "Alice").await;
    let refusal = impostor
        .expect(
            "error",
            |v| v["message"].as_str().is_some_and(|m| m.contains("taken")),
            EVENT_TIMEOUT,
        )
        .await;
    assert!(
        refusal["message"].as_str().unwrap().contains("--name"),
        "{refusal}"
    );
    // No retry can fix a taken name: the daemon stops instead of retrying behind a prompt.
    let status = impostor.wait_exit(EVENT_TIMEOUT).await;
    assert!(
        !status.success(),
        "a taken name must stop the daemon: {status}"
    );
}

#[tokio::test]
async fn rooms_propagate_joins_and_survive_the_index() {
    let mut index = Index::start().await;
    let (mut alice, mut bob, mut carol) = three_in_the_lobby(&index).await;

    carol.send_line("/join rust").await;
    carol
        .expect(
            "joined",
            |v| v["room"] == "rust" && v.get("peer").is_none(),
            EVENT_TIMEOUT,
        )
        .await;
    alice.send_line("/join rust").await;
    alice
        .expect(
            "joined",
            |v| v["room"] == "rust" && v["members"] == 1,
            EVENT_TIMEOUT,
        )
        .await;
    carol
        .expect(
            "joined",
            |v| v["room"] == "rust" && v["name"] == "alice",
            EVENT_TIMEOUT,
        )
        .await;

    // Room messages go to room members only.
    alice.send_line("/sw rust").await;
    alice.send_line("borrowck question").await;
    let delivered = alice
        .expect("delivered", |v| v["room"] == "rust", EVENT_TIMEOUT)
        .await;
    assert_eq!(delivered["total"], 1, "{delivered}");
    carol
        .expect(
            "message",
            |v| v["room"] == "rust" && v["text"] == "borrowck question",
            EVENT_TIMEOUT,
        )
        .await;

    // The index goes away; the lobby keeps working with the members already known.
    index.stop().await;
    bob.send_line("index is down, still here?").await;
    let delivered = bob
        .expect("delivered", |v| v["room"] == "lobby", EVENT_TIMEOUT)
        .await;
    assert_eq!(delivered["delivered"], 2, "{delivered}");
    lobby_message(&mut alice, &bob, "index is down, still here?").await;
    lobby_message(&mut carol, &bob, "index is down, still here?").await;

    // Leaves propagate peer to peer, without the index.
    alice.send_line("/leave rust").await;
    carol
        .expect(
            "left",
            |v| v["room"] == "rust" && v["name"] == "alice",
            EVENT_TIMEOUT,
        )
        .await;
    carol.send_line("/sw rust").await;
    carol.send_line("anyone?").await;
    let lonely = carol
        .expect("delivered", |v| v["room"] == "rust", EVENT_TIMEOUT)
        .await;
    assert_eq!(lonely["total"], 0, "alice left: {lonely}");
}
