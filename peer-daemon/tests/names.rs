//! Names are facts from the index, not claims from peers: an impostor that registered as
//! `alice` at another index (where the name was free) introduces itself to bob as "alice"; bob
//! asks his own index, shows it as an unverified claim beside its UUID, and `/msg alice` always
//! reaches the real alice.

mod common;

use common::{Daemon, EVENT_TIMEOUT, Index};

#[tokio::test]
async fn an_impostor_claiming_a_name_cannot_receive_messages_for_it() {
    let index = Index::start().await;
    let mut alice = Daemon::spawn(&index.url(), "alice").await;
    let mut bob = Daemon::spawn(&index.url(), "bob").await;
    let (alice_id, bob_id) = (alice.uuid.to_string(), bob.uuid.to_string());

    // The impostor cannot have alice's name on bob's index (a taken name stops a daemon at
    // start-up), so it takes it on another one, where bob can be found too.
    let other = Index::start().await;
    other.list_daemon(bob.state().path(), bob.addr.port()).await;
    let mut impostor = Daemon::spawn(&other.url(), "alice").await;
    impostor.msg(&bob_id, "hi bob, it's alice, write me").await;
    let from_impostor = bob
        .expect(
            "message",
            |v| v["text"] == "hi bob, it's alice, write me",
            EVENT_TIMEOUT,
        )
        .await;
    let impostor_id = from_impostor["from"].as_str().expect("a sender").to_owned();
    assert_ne!(impostor_id, alice_id);
    assert!(
        from_impostor.get("name").is_none(),
        "a name the index did not vouch for is not shown as the name: {from_impostor}"
    );
    assert_eq!(
        from_impostor["claimed_name"], "alice",
        "the claim is shown as a claim: {from_impostor}"
    );

    // The real alice writes; her name is the index's fact.
    alice.msg(&bob_id, "hello bob, the real alice here").await;
    let from_alice = bob
        .expect(
            "message",
            |v| v["text"] == "hello bob, the real alice here",
            EVENT_TIMEOUT,
        )
        .await;
    assert_eq!(from_alice["from"], alice_id.as_str());
    assert_eq!(from_alice["name"], "alice", "{from_alice}");
    assert!(from_alice.get("claimed_name").is_none(), "{from_alice}");

    // The impostor speaks again after alice: still no say over where "alice" resolves.
    impostor.msg(&bob_id, "it's alice again").await;
    bob.expect(
        "message",
        |v| v["text"] == "it's alice again",
        EVENT_TIMEOUT,
    )
    .await;

    for n in 0..6 {
        let text = format!("check {n}");
        bob.msg("alice", &text).await;
        let delivered = bob.expect("delivered", |_| true, EVENT_TIMEOUT).await;
        assert_eq!(
            delivered["to"],
            alice_id.as_str(),
            "`/msg alice` #{n} went to {delivered}, not to the real alice {alice_id}"
        );
        alice
            .expect("message", |v| v["text"] == text.as_str(), EVENT_TIMEOUT)
            .await;
    }
    assert!(
        !impostor
            .backlog_events()
            .any(|v| v["event"] == "message" && v["from"] == bob_id.as_str()),
        "the impostor received something from bob"
    );

    // `/peers` lists both, each with its UUID; only alice has a name.
    bob.send_line("/peers").await;
    let peers = bob.expect("peers", |_| true, EVENT_TIMEOUT).await;
    let entry = |id: &str| {
        peers["peers"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["uuid"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {peers}"))
    };
    assert_eq!(entry(&alice_id)["name"], "alice");
    let shown = entry(&impostor_id);
    assert!(shown.get("name").is_none(), "{shown}");
    assert_eq!(shown["claimed_name"], "alice", "{shown}");
}
