//! A keyed registration may list candidates (where its peer may be reached besides `addr`),
//! covered by its signature: the index stores them, every lookup returns them as signed (from
//! the cache, from SQLite, after a restart), and a registration replaces them. Lists that are
//! forged, too long, repeated, pointing nowhere, or sent without a key are refused with a JSON
//! 4xx and store nothing.

mod common;

use axum::http::StatusCode;
use common::{
    TestApp, assert_client_error, keyed_registration, keyed_registration_with, owner_request,
    signature_header, test_app, unix_now,
};
use proto::api::{Candidate, CandidateKind, MAX_CANDIDATES};
use proto::identity::{Identity, uuid_for_key};
use serde_json::{Value, json};

fn candidate(kind: CandidateKind, addr: &str) -> Candidate {
    Candidate {
        kind,
        addr: addr.parse().unwrap(),
    }
}

/// What a daemon behind a NAT lists: its LAN address, its address outside the NAT, a relay.
fn gathered() -> Vec<Candidate> {
    vec![
        candidate(CandidateKind::Host, "192.0.2.10:4000"),
        candidate(CandidateKind::Srflx, "198.51.100.20:61000"),
        candidate(CandidateKind::Relay, "203.0.113.5:49152"),
        candidate(CandidateKind::Host, "[2001:db8::10]:4000"),
    ]
}

/// The candidates of a record as JSON carries them (none: the field is absent).
fn listed(record: &Value) -> Vec<Candidate> {
    match record.get("candidates") {
        None => Vec::new(),
        Some(list) => serde_json::from_value(list.clone()).unwrap(),
    }
}

async fn register_with(
    app: &TestApp,
    id: &Identity,
    name: Option<&str>,
    candidates: &[Candidate],
    timestamp: u64,
) -> (StatusCode, Value) {
    let body = keyed_registration_with(id, 4000, name, candidates, timestamp);
    app.register(body.to_string()).await
}

#[tokio::test]
async fn candidates_round_trip_through_every_lookup() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let uuid = uuid_for_key(&alice.public_key()).to_string();
    let now = unix_now();
    let (status, registered) = register_with(&app, &alice, Some("alice"), &gathered(), now).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!(listed(&registered), gathered());
    // Old clients keep reading addr: the observed IP and the declared port, as before.
    assert_eq!(registered["addr"], "203.0.113.7:4000");
    assert_eq!(
        registered["candidates"][1],
        json!({"kind": "srflx", "addr": "198.51.100.20:61000"})
    );

    // By UUID (the cache), by name (SQLite) and in a room's member list (SQLite).
    let (status, by_uuid) = app.lookup(&uuid).await;
    assert_eq!(status, StatusCode::OK, "{by_uuid}");
    assert_eq!(listed(&by_uuid), gathered());
    let (status, by_name) = app.get("/peers?name=alice").await;
    assert_eq!(status, StatusCode::OK, "{by_name}");
    assert_eq!(listed(&by_name), gathered());
    let joined = common::rooms::signed(&app, "PUT", "lobby", &alice, now).await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    assert_eq!(listed(&joined.body["members"][0]), gathered());
    let (status, room) = app.get("/rooms/lobby").await;
    assert_eq!(status, StatusCode::OK, "{room}");
    assert_eq!(listed(&room["members"][0]), gathered());
    for record in [&by_uuid, &by_name, &room["members"][0]] {
        assert_eq!(record["addr"], "203.0.113.7:4000");
        assert!(record.get("ice_servers").is_none(), "{record}");
    }

    // Lookups by UUID come from the in-memory copy, which holds the candidates too: a change
    // another program makes behind the index's back does not show there.
    sqlx::query("UPDATE peers SET candidates = NULL WHERE uuid = $1")
        .bind(&uuid)
        .execute(&app.service.state().pool)
        .await
        .unwrap();
    // (A replica on PostgreSQL answers from its cache only once it hears its own pings, so
    // right after start-up it may read the database: this part is SQLite's.)
    if !common::on_postgres() {
        assert_eq!(
            listed(&app.lookup(&uuid).await.1),
            gathered(),
            "from the cache"
        );
    }
    assert!(
        app.get("/peers?name=alice")
            .await
            .1
            .get("candidates")
            .is_none()
    );

    // A heartbeat keeps them (the row's, which the heartbeat copies to the cache).
    let register = keyed_registration_with(&alice, 4000, Some("alice"), &gathered(), now + 1);
    assert_eq!(
        app.register(register.to_string()).await.0,
        StatusCode::CREATED
    );
    let heartbeat = format!("/peers/{uuid}/heartbeat");
    let auth = signature_header(&alice, "POST", &heartbeat, b"", now + 2);
    let beat = app
        .send(owner_request("POST", &heartbeat, "", Some(&auth)))
        .await;
    assert_eq!(beat.status, StatusCode::OK, "{}", beat.body);
    assert_eq!(listed(&beat.body), gathered());
    assert_eq!(listed(&app.lookup(&uuid).await.1), gathered());
    assert_eq!(listed(&app.get("/peers?name=alice").await.1), gathered());
}

#[tokio::test]
async fn a_registration_replaces_the_list() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let uuid = uuid_for_key(&alice.public_key()).to_string();
    let now = unix_now();
    assert_eq!(
        register_with(&app, &alice, None, &gathered(), now).await.0,
        StatusCode::CREATED
    );
    // The relay allocation was lost and a new one made: the new list replaces the old.
    let moved = vec![
        candidate(CandidateKind::Host, "192.0.2.10:4000"),
        candidate(CandidateKind::Relay, "203.0.113.5:49999"),
    ];
    let (status, answer) = register_with(&app, &alice, None, &moved, now + 1).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(listed(&answer), moved);
    assert_eq!(listed(&app.lookup(&uuid).await.1), moved);
    // A registration listing none clears them: the field disappears.
    let (status, answer) = register_with(&app, &alice, None, &[], now + 2).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (_, found) = app.lookup(&uuid).await;
    assert!(found.get("candidates").is_none(), "{found}");
    assert!(answer.get("candidates").is_none(), "{answer}");
    // A keyless record never has any.
    let (keyless, _) = app.register_keyless(5000).await;
    assert!(app.lookup(&keyless).await.1.get("candidates").is_none());
}

#[tokio::test]
async fn candidates_survive_a_restart_and_garbage_reads_as_none() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let bob = Identity::from_secret([2; 32]);
    let alice_uuid = uuid_for_key(&alice.public_key()).to_string();
    let bob_uuid = uuid_for_key(&bob.public_key()).to_string();
    let now = unix_now();
    for id in [&alice, &bob] {
        let (status, body) = register_with(&app, id, None, &gathered(), now).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Another program writes something that is not a candidate list into bob's row.
    sqlx::query("UPDATE peers SET candidates = '[{\"kind\":\"wormhole\"}' WHERE uuid = $1")
        .bind(&bob_uuid)
        .execute(&app.service.state().pool)
        .await
        .unwrap();
    let TestApp {
        router,
        service,
        dir,
    } = app;
    drop(router);
    service.shutdown().await;

    let app = TestApp::reopen(dir).await;
    let (status, found) = app.lookup(&alice_uuid).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(listed(&found), gathered());
    assert_eq!(found["addr"], "203.0.113.7:4000");
    // The record is still served, without the list nobody signed.
    let (status, found) = app.lookup(&bob_uuid).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert!(found.get("candidates").is_none(), "{found}");
}

#[tokio::test]
async fn forged_candidates_are_401() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let now = unix_now();
    // Signed over one list, sent with another (a relay swapped for the attacker's address).
    let mut body = keyed_registration_with(&alice, 4000, None, &gathered(), now);
    body["candidates"][2]["addr"] = "198.51.100.66:49152".into();
    let (status, answer) = app.register(body.to_string()).await;
    assert_client_error(status, &answer, StatusCode::UNAUTHORIZED, "signature");
    // Signed without candidates, sent with some.
    let mut body = keyed_registration(&alice, 4000, None, now);
    body["candidates"] = serde_json::to_value(gathered()).unwrap();
    let (status, answer) = app.register(body.to_string()).await;
    assert_client_error(status, &answer, StatusCode::UNAUTHORIZED, "signature");
    // Signed with candidates, sent without them; and with the kinds changed.
    let mut body = keyed_registration_with(&alice, 4000, None, &gathered(), now);
    body.as_object_mut().unwrap().remove("candidates");
    let (status, answer) = app.register(body.to_string()).await;
    assert_client_error(status, &answer, StatusCode::UNAUTHORIZED, "signature");
    let mut body = keyed_registration_with(&alice, 4000, None, &gathered(), now);
    body["candidates"][0]["kind"] = "relay".into();
    let (status, answer) = app.register(body.to_string()).await;
    assert_client_error(status, &answer, StatusCode::UNAUTHORIZED, "signature");
    assert_eq!(app.peer_count().await, 0);
}

#[tokio::test]
async fn bad_lists_are_4xx_json_and_store_nothing() {
    let app = test_app().await;
    let alice = Identity::from_secret([1; 32]);
    let now = unix_now();
    let too_many: Vec<Candidate> = (1..=MAX_CANDIDATES as u16 + 1)
        .map(|port| candidate(CandidateKind::Host, &format!("192.0.2.10:{port}")))
        .collect();
    let twice = vec![
        candidate(CandidateKind::Relay, "203.0.113.5:49152"),
        candidate(CandidateKind::Host, "192.0.2.10:4000"),
        candidate(CandidateKind::Relay, "203.0.113.5:49152"),
    ];
    let mut cases = vec![(too_many, "at most 8"), (twice, "listed twice")];
    for bad in [
        "0.0.0.0:4000",
        "[::]:4000",
        "192.0.2.10:0",
        "224.0.0.1:4000",
        "[ff02::1]:4000",
        "255.255.255.255:4000",
    ] {
        let mut list = gathered();
        list.push(candidate(CandidateKind::Host, bad));
        cases.push((list, "cannot reach a peer"));
    }
    for (i, (list, says)) in cases.into_iter().enumerate() {
        // Properly signed: the index refuses the content, not the signature.
        let (status, answer) = register_with(&app, &alice, None, &list, now + i as u64).await;
        assert_client_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, says);
    }
    // What is not a candidate at all is refused before any signature is checked.
    for junk in [
        json!([{"kind": "prflx", "addr": "192.0.2.10:4000"}]),
        json!([{"kind": "host", "addr": "192.0.2.10"}]),
        json!([{"kind": "host"}]),
        json!("192.0.2.10:4000"),
        json!([null]),
    ] {
        let mut body = keyed_registration(&alice, 4000, None, now);
        body["candidates"] = junk.clone();
        let (status, answer) = app.register(body.to_string()).await;
        assert_client_error(
            status,
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "candidates",
        );
    }
    assert_eq!(app.peer_count().await, 0);

    // A keyless registration cannot carry candidates: nothing would vouch for them.
    let body = json!({"udp_port": 4000, "candidates": gathered()});
    let (status, answer) = app.register(body.to_string()).await;
    assert_client_error(
        status,
        &answer,
        StatusCode::BAD_REQUEST,
        "candidates need a keyed registration",
    );
    assert_eq!(app.peer_count().await, 0);
}
