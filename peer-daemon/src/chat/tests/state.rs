//! Shared room state between chat cores in virtual time: concurrent writes converge, a
//! partition heals, non-members neither read nor write, and what was stored comes back.

use super::*;
use crate::chat::SetError;
use crate::output::StateLine;

/// Node `i`'s view of `room`'s state: (key, value, author).
fn state(net: &ChatNet, i: usize, room: &str) -> Vec<(String, String, Uuid)> {
    net.nodes[i]
        .core
        .state_read(room, None)
        .expect("a member")
        .into_iter()
        .map(
            |StateLine {
                 key, value, author, ..
             }| (key, value.unwrap(), author.unwrap()),
        )
        .collect()
}

/// The `state` events node `i` showed: (key, value, author, reason).
fn changes(net: &ChatNet, i: usize) -> Vec<(String, Option<String>, Option<Uuid>, &'static str)> {
    net.shown(i)
        .filter_map(|e| match e {
            UiEvent::State {
                key,
                value,
                author,
                reason,
                ..
            } => Some((key.clone(), value.clone(), *author, *reason)),
            _ => None,
        })
        .collect()
}

fn in_rust(names: &[Option<&str>]) -> ChatNet {
    let mut net = ChatNet::registered(names);
    for i in 0..names.len() {
        net.type_line(i, "/join rust");
    }
    net.run_for(5 * SEC);
    net
}

#[test]
fn concurrent_writes_converge_with_their_signers_as_authors() {
    let mut net = in_rust(&[Some("alice"), Some("bob"), Some("carol")]);
    for (i, who) in ["alice", "bob", "carol"].iter().enumerate() {
        net.type_line(i, &format!("/set from-{who} {who} was here"));
        net.type_line(i, &format!("/topic {who}'s topic"));
    }
    net.run_for(5 * SEC);
    let alice = state(&net, 0, "rust");
    assert_eq!(alice, state(&net, 1, "rust"));
    assert_eq!(alice, state(&net, 2, "rust"));
    assert_eq!(alice.len(), 4, "{alice:?}");
    for (i, who) in ["alice", "bob", "carol"].iter().enumerate() {
        let entry = alice
            .iter()
            .find(|(k, ..)| *k == format!("from-{who}"))
            .unwrap();
        assert_eq!(entry.2, net.id(i), "{who}'s key is signed by {who}");
    }
    let topic = alice.iter().find(|(k, ..)| k == "topic").unwrap();
    let writer = (0..3).find(|i| net.id(*i) == topic.2).unwrap();
    assert_eq!(
        topic.1,
        format!("{}'s topic", ["alice", "bob", "carol"][writer])
    );
    // Bob heard of alice's key as a change by alice.
    assert!(changes(&net, 1).contains(&(
        "from-alice".into(),
        Some("alice was here".into()),
        Some(net.id(0)),
        "changed"
    )));
}

#[test]
fn a_partition_heals_and_keeps_both_sides_writes() {
    let mut net = in_rust(&[Some("alice"), Some("bob"), Some("carol")]);
    net.type_line(0, "/set before 1");
    net.run_for(5 * SEC);
    assert_eq!(state(&net, 2, "rust").len(), 1);
    net.cut = vec![2];
    net.type_line(0, "/set alice-side 1");
    net.type_line(1, "/set shared bob");
    net.type_line(2, "/set carol-side 1");
    net.type_line(2, "/set shared carol");
    // Long enough for every send to carol (and hers) to be given up.
    net.run_for(3 * DEADLINE);
    assert_eq!(state(&net, 0, "rust"), state(&net, 1, "rust"));
    assert_ne!(state(&net, 0, "rust"), state(&net, 2, "rust"));
    net.cut.clear();
    let healed = net.now;
    // A fresh round follows a given-up send within STALL_AFTER; anti-entropy within
    // ROUND_EVERY even if nothing was sent.
    net.run_for(crate::roomstate::STALL_AFTER + 2 * SEC);
    let alice = state(&net, 0, "rust");
    assert_eq!(alice, state(&net, 1, "rust"));
    assert_eq!(
        alice,
        state(&net, 2, "rust"),
        "healed within {:?}",
        net.now - healed
    );
    let keys: Vec<&str> = alice.iter().map(|(k, ..)| k.as_str()).collect();
    assert_eq!(keys, ["alice-side", "before", "carol-side", "shared"]);
}

#[test]
fn a_member_that_was_away_gets_the_state_when_it_joins() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    net.type_line(0, "/join rust");
    net.run_for(2 * SEC);
    net.type_line(0, "/topic all about rust");
    net.run_for(2 * SEC);
    net.type_line(1, "/join rust");
    net.run_for(3 * SEC);
    assert_eq!(state(&net, 1, "rust"), state(&net, 0, "rust"));
    // Leaving and joining again shows the topic at once.
    net.type_line(1, "/leave rust");
    net.run_for(2 * SEC);
    net.clear(1);
    net.type_line(1, "/join rust");
    net.run_for(2 * SEC);
    assert_eq!(
        changes(&net, 1).first(),
        Some(&(
            "topic".into(),
            Some("all about rust".into()),
            Some(net.id(0)),
            "joined"
        ))
    );
}

#[test]
fn rooms_without_state_cost_nothing() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    net.type_line(0, "/join rust");
    net.type_line(1, "/join rust");
    net.run_for(60 * SEC);
    for i in 0..2 {
        assert_eq!(net.nodes[i].core.state_counters().sent, 0);
    }
}

#[test]
fn non_members_neither_read_nor_write() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob"), Some("mallory")]);
    net.type_line(0, "/join rust");
    net.type_line(1, "/join rust");
    net.run_for(3 * SEC);
    net.type_line(0, "/set secret plans");
    net.run_for(3 * SEC);
    assert_eq!(state(&net, 1, "rust").len(), 1);
    let mallory = net.id(2);
    assert_eq!(
        net.nodes[2].core.state_read("rust", None),
        Err(SetError::NotInRoom("rust".into()))
    );
    assert_eq!(
        net.nodes[2].core.state_counters().received,
        0,
        "nothing was sent to mallory"
    );
    // Mallory writes a state of her own for the room and sends it as a member would.
    let mut forged = crate::roomstate::RoomStates::new(identity(2), Default::default());
    forged.put("rust", "topic", Some("mallory rules")).unwrap();
    let (sync, sigs) = forged.generate("rust", net.id(0), net.instant()).unwrap();
    let message = proto::chat::ChatMessage::State {
        room: "rust".into(),
        sync,
        sigs,
    };
    let alice = net.id(0);
    net.nodes[2]
        .core
        .send_chat(alice, &message, super::super::delivery::Tag::Quiet);
    net.run_for(3 * SEC);
    assert_eq!(net.nodes[0].core.state_counters().not_member, 1);
    assert!(
        state(&net, 0, "rust")
            .iter()
            .all(|(_, _, who)| *who != mallory)
    );
    // Writing to it from outside says why not.
    let now = net.instant();
    assert_eq!(
        net.nodes[2]
            .core
            .state_put(now, "rust", "topic", Some("mine")),
        Err(SetError::NotInRoom("rust".into()))
    );
    // The lobby is a room of its own: what mallory sets there stays there.
    net.type_line(2, "/set topic mine");
    net.run_for(3 * SEC);
    assert_eq!(state(&net, 0, "lobby").len(), 1);
    assert!(state(&net, 0, "rust").iter().all(|(k, ..)| k == "secret"));
}

#[test]
fn what_was_stored_comes_back() {
    let mut net = in_rust(&[Some("alice"), Some("bob")]);
    for i in 0..20 {
        net.type_line(0, &format!("/set k{i} v{i}"));
    }
    net.type_line(1, "/set from-bob yes");
    net.run_for(3 * SEC);
    let pieces: crate::roomstate::Pieces = net.nodes[0]
        .stored
        .iter()
        .filter_map(|c| match c {
            crate::history::Change::RoomState(saved) if saved.room == "rust" => {
                Some((saved.data.clone(), saved.sigs.clone()))
            }
            _ => None,
        })
        .collect();
    assert!(
        pieces.len() >= 21,
        "one piece per change at least: {}",
        pieces.len()
    );
    let mut again = ChatNet::new(&[Some("alice")]);
    again.nodes[0]
        .core
        .restore_state(vec![("rust".into(), pieces)]);
    again.type_line(0, "/join rust");
    again.run_for(SEC);
    assert_eq!(state(&again, 0, "rust"), state(&net, 0, "rust"));
    assert!(
        again.nodes[0]
            .stored
            .iter()
            .any(|c| matches!(c, crate::history::Change::RoomState(s) if s.replace)),
        "many pieces are stored again as one"
    );
}
