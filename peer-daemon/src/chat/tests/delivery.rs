//! Messages reach peers in the order they were sent, also behind pending lookups, and the
//! user hears how each went.

use proto::sim::DEAD;

use super::*;

fn delivered(net: &ChatNet, i: usize) -> Vec<(u64, Option<usize>, Option<usize>)> {
    net.shown(i)
        .filter_map(|e| match e {
            UiEvent::Delivered {
                id,
                delivered,
                total,
                ..
            } => Some((*id, *delivered, *total)),
            _ => None,
        })
        .collect()
}

fn failed(net: &ChatNet, i: usize) -> Vec<(Option<u64>, String)> {
    net.shown(i)
        .filter_map(|e| match e {
            UiEvent::Failed { id, reason, .. } => Some((*id, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_private_message_is_looked_up_sent_and_delivered() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob")]);
    let bob = net.id(1);
    net.type_line(0, &format!("/msg {bob} hello"));
    assert_eq!(net.nodes[0].asked.last(), Some(&IndexRequest::Lookup(bob)));
    net.run_to_idle();
    assert_eq!(net.texts(1), [(net.id(0), "hello".to_owned())]);
    assert_eq!(delivered(&net, 0), [(0, None, None)]);
    // The address is known now: the next message needs no lookup.
    let asked = net.nodes[0].asked.len();
    net.type_line(0, &format!("/msg {bob} again"));
    net.run_to_idle();
    assert_eq!(net.nodes[0].asked.len(), asked, "no second lookup");
    assert_eq!(delivered(&net, 0).len(), 2);
}

#[test]
fn a_message_never_overtakes_one_waiting_for_a_lookup() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob")]);
    net.index.latency = 200 * MS;
    let (alice, bob) = (net.id(0), net.id(1));
    net.type_line(0, &format!("/msg {bob} first"));
    // While alice's lookup is out, bob writes to her: his address becomes known another way.
    net.teach(1, 0);
    net.type_line(1, &format!("/msg {alice} hi"));
    net.run_for(100 * MS);
    assert!(
        net.nodes[0].core.addr_of(&bob).is_some(),
        "bob reached alice"
    );
    assert!(net.texts(1).is_empty(), "alice's lookup is still out");
    net.type_line(0, &format!("/msg {bob} second"));
    net.run_to_idle();
    let texts: Vec<String> = net.texts(1).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        texts,
        ["first", "second"],
        "the second went out ahead of the first"
    );
}

#[test]
fn a_message_by_name_never_overtakes_one_waiting_for_that_name() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob"), Some("carol")]);
    let bob = net.id(1);
    net.index
        .rooms
        .entry("lobby".into())
        .or_default()
        .insert(bob);
    net.index.latency = 200 * MS;
    // A room listing is asked for, then the name: the listing vouches for bob while the
    // name is still being asked.
    net.type_line(0, "/who lobby");
    net.run_for(10 * MS);
    net.type_line(0, "/msg bob first");
    net.run_for(195 * MS);
    assert!(
        net.nodes[0]
            .core
            .roster
            .by_name("bob", net.instant())
            .is_some()
    );
    assert!(net.nodes[0].core.waiting_names.contains_key("bob"));
    net.type_line(0, "/msg bob second");
    net.run_to_idle();
    let texts: Vec<String> = net.texts(1).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["first", "second"]);
    assert_eq!(
        net.nodes[0]
            .asked
            .iter()
            .filter(|r| matches!(r, IndexRequest::Name(_)))
            .count(),
        1,
        "the second message rode on the first lookup"
    );
}

#[test]
fn a_room_message_reports_how_many_members_got_it() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob"), Some("carol"), Some("dave")]);
    for i in 0..4 {
        net.type_line(i, "/join rust");
        net.run_to_idle();
    }
    net.type_line(0, "hello rust");
    net.run_to_idle();
    for i in 1..4 {
        assert_eq!(net.texts(i), [(net.id(0), "hello rust".to_owned())]);
    }
    assert_eq!(delivered(&net, 0), [(0, Some(3), Some(3))]);

    // Dave can no longer answer: the next message reaches two of three, once the deadline
    // has passed for dave's copy.
    net.impair(3, DEAD);
    net.clear(0);
    net.type_line(0, "second");
    net.run_for(DEADLINE / 2);
    assert!(
        delivered(&net, 0).is_empty(),
        "not before dave's copy is settled"
    );
    net.run_to_idle();
    assert_eq!(delivered(&net, 0), [(1, Some(2), Some(3))]);
}

#[test]
fn a_room_message_nobody_gets_fails_with_a_reason() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    net.type_line(0, "/join rust");
    net.type_line(1, "/join rust");
    net.run_to_idle();
    net.impair(1, DEAD);
    net.type_line(0, "anyone?");
    net.run_to_idle();
    let failed = failed(&net, 0);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].1.starts_with("bob: "), "{failed:?}");
    // Alone in a room, a message is delivered to all zero members at once.
    net.type_line(0, "/join empty");
    net.run_to_idle();
    net.clear(0);
    net.type_line(0, "echo");
    assert_eq!(delivered(&net, 0), [(1, Some(0), Some(0))]);
}

#[test]
fn with_the_index_down_known_peers_still_chat_and_unknown_ones_fail_clearly() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob"), Some("carol")]);
    let (bob, carol) = (net.id(1), net.id(2));
    net.register(0);
    net.type_line(0, &format!("/msg {bob} before"));
    net.run_to_idle();
    net.index.up = false;
    net.type_line(0, &format!("/msg {bob} during"));
    net.type_line(0, &format!("/msg {carol} unknown"));
    net.type_line(0, "/msg dave who");
    net.type_line(0, "/join rust");
    net.run_to_idle();
    let texts: Vec<String> = net.texts(1).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["before", "during"], "bob's address was known");
    assert!(net.texts(2).is_empty());
    let failed = failed(&net, 0);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]
            .1
            .contains("could not look the peer up: could not reach the index")
    );
    let errors = net.errors(0);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("could not look `dave` up")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("#rust works with the members already known")),
        "{errors:?}"
    );
}

#[test]
fn quitting_says_goodbye_once_to_every_peer() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let alice = net.id(0);
    net.type_line(0, "/join rust");
    net.type_line(1, "/join rust");
    net.run_to_idle();
    net.clear(1);
    net.command(0, Command::Quit);
    assert!(net.nodes[0].quit);
    net.run_to_idle();
    let offline = net
        .shown(1)
        .filter(|e| matches!(e, UiEvent::PeerOffline { peer, .. } if *peer == alice))
        .count();
    assert_eq!(offline, 1);
    for room in ["lobby", "rust"] {
        assert!(!net.nodes[1].core.roster.members(room).contains(&alice));
    }
}
