//! The chat client a person keeps using: honest index status, rooms reconciled when the index
//! returns, no ghosts at quit, history handed to the store, `/close`, `/nick`, `/me`, unread
//! scrollback and a restart that restores the sessions.

use super::*;
use crate::history::{Change, Delivery, SessionKind};

fn index_events(net: &ChatNet, i: usize) -> Vec<&'static str> {
    net.shown(i)
        .filter_map(|e| match e {
            UiEvent::Index { status, .. } => Some(*status),
            _ => None,
        })
        .collect()
}

#[test]
fn trouble_is_shown_once_and_the_return_once() {
    let mut net = ChatNet::registered(&[Some("alice")]);
    for _ in 0..3 {
        net.reply(0, IndexReply::Trouble("the index is unreachable".into()));
    }
    assert_eq!(index_events(&net, 0), ["offline"], "retries go on quietly");
    assert!(
        net.errors(0).is_empty(),
        "trouble is a status, not an error per retry"
    );
    net.reply(0, IndexReply::Online);
    net.reply(0, IndexReply::Online);
    assert_eq!(index_events(&net, 0), ["offline", "online"]);
}

#[test]
fn rooms_changed_while_the_index_was_away_are_reconciled_both_ways() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let alice = net.id(0);
    assert!(net.index.rooms["lobby"].contains(&alice));
    net.index.up = false;
    net.reply(0, IndexReply::Trouble("the index is unreachable".into()));
    net.type_line(0, "/join rust");
    net.type_line(0, "/leave lobby");
    net.run_to_idle();
    assert!(
        !net.index
            .rooms
            .get("rust")
            .is_some_and(|m| m.contains(&alice)),
        "the index was down"
    );
    assert!(net.index.rooms["lobby"].contains(&alice));
    assert!(
        net.shown(0)
            .any(|e| matches!(e, UiEvent::Left { room, peer: None, .. } if room == "lobby")),
        "leaving shows at once, index or not"
    );
    // The index comes back (a heartbeat goes through): both changes reach it.
    net.index.up = true;
    net.reply(0, IndexReply::Online);
    net.run_to_idle();
    assert!(
        net.index.rooms["rust"].contains(&alice),
        "joined while away"
    );
    assert!(
        !net.index.rooms["lobby"].contains(&alice),
        "left while away"
    );
    assert!(
        net.errors(0).iter().all(|e| !e.contains("lobby")),
        "{:?}",
        net.errors(0)
    );
}

#[test]
fn a_permanent_refusal_at_start_up_stops_the_daemon() {
    let mut net = ChatNet::new(&[Some("alice")]);
    net.reply(
        0,
        IndexReply::Fatal("the name alice is taken; choose another with --name".into()),
    );
    assert_eq!(
        net.nodes[0].exit.as_deref(),
        Some("the name alice is taken; choose another with --name")
    );
    assert!(net.nodes[0].core.quitting());
}

#[test]
fn quitting_says_bye_once_to_every_peer_and_they_drop_us_from_their_rooms() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob"), Some("carol")]);
    let alice = net.id(0);
    net.type_line(0, "/join rust");
    net.type_line(1, "/join rust");
    net.run_to_idle();
    net.type_line(0, "hello");
    net.run_to_idle();
    net.clear(1);
    net.type_line(0, "/quit");
    net.run_to_idle();
    assert!(net.nodes[0].quit);
    let offline: Vec<_> = net
        .shown(1)
        .filter(|e| matches!(e, UiEvent::PeerOffline { peer, .. } if *peer == alice))
        .collect();
    assert_eq!(offline.len(), 1, "{:?}", net.nodes[1].shown);
    assert!(
        matches!(offline[0], UiEvent::PeerOffline { name: Some(n), .. } if n == "alice"),
        "{offline:?}"
    );
    assert!(!net.nodes[1].core.roster.members("rust").contains(&alice));
    assert!(!net.nodes[1].core.roster.members("lobby").contains(&alice));
    assert!(
        !net.shown(1).any(|e| matches!(e, UiEvent::Left { .. })),
        "one line per peer, not one per room"
    );
    assert!(
        net.shown(2)
            .any(|e| matches!(e, UiEvent::PeerOffline { .. }))
    );
}

#[test]
fn messages_and_their_outcomes_go_to_the_store() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let (alice, bob) = (net.id(0), net.id(1));
    net.type_line(0, &format!("/msg {bob} hi bob"));
    net.type_line(0, "/me waves");
    net.run_to_idle();
    let lines: Vec<_> = net.nodes[0]
        .stored
        .iter()
        .filter_map(|c| match c {
            Change::Line(line) => Some(line.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].session, SessionKind::Private(bob));
    assert_eq!((lines[0].from, lines[0].text.as_str()), (None, "hi bob"));
    assert_eq!(lines[0].delivery, Delivery::Queued);
    assert!(lines[1].action && lines[1].session == SessionKind::Room("lobby".into()));
    let outcome = net.nodes[0].stored.iter().find_map(|c| match c {
        Change::Outcome { id, delivery } if *id == lines[0].id => Some(delivery.clone()),
        _ => None,
    });
    assert!(
        matches!(outcome, Some(Delivery::Delivered { total: None, .. })),
        "{outcome:?}"
    );
    // Bob's store holds what he received, under the name the index vouches for.
    let received: Vec<_> = net.nodes[1]
        .stored
        .iter()
        .filter_map(|c| match c {
            Change::Line(line) => Some(line.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0].from, Some(alice));
    assert_eq!(received[0].name.as_deref(), Some("alice"));
    assert_eq!(received[0].delivery, Delivery::Received);
    assert!(received[1].action && received[1].text == "waves");
    assert!(net.shown(1).any(
        |e| matches!(e, UiEvent::Message { action: true, text, id, .. } if text == "waves" && *id == received[1].id)
    ));
    // Ids never repeat, ours and received ones alike.
    let mut ids: Vec<u64> = received.iter().map(|l| l.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2);
}

#[test]
fn close_keeps_the_other_numbers_and_lobby_rejoins() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob"), Some("carol")]);
    let (bob, carol) = (net.id(1), net.id(2));
    net.type_line(0, &format!("/dm {bob}"));
    net.type_line(0, &format!("/dm {carol}"));
    net.run_to_idle();
    let numbers = |net: &ChatNet| -> Vec<(usize, String)> {
        net.nodes[0]
            .published
            .last()
            .unwrap()
            .iter()
            .map(|s| (s.n, s.label.clone()))
            .collect()
    };
    assert_eq!(
        numbers(&net),
        [
            (0, "#lobby".into()),
            (1, "@bob".into()),
            (2, "@carol".into())
        ]
    );
    net.type_line(0, "/close 1");
    assert_eq!(numbers(&net), [(0, "#lobby".into()), (2, "@carol".into())]);
    net.type_line(0, "/close");
    assert!(
        net.errors(0).is_empty(),
        "closing the active private session: {:?}",
        net.errors(0)
    );
    assert_eq!(numbers(&net), [(0, "#lobby".into())]);
    net.type_line(0, "/close lobby");
    assert!(net.errors(0).last().unwrap().contains("/leave"));
    // `/lobby` after leaving the lobby joins it again instead of pretending.
    net.type_line(0, "/join rust");
    net.type_line(0, "/leave lobby");
    net.run_to_idle();
    net.type_line(0, "/lobby");
    net.run_to_idle();
    assert!(net.nodes[0].core.roster.in_room("lobby"));
    let last_info = net
        .shown(0)
        .filter_map(|e| match e {
            UiEvent::Info { message } => Some(message.clone()),
            _ => None,
        })
        .last();
    assert_eq!(last_info.as_deref(), Some("now talking in #lobby"));
}

#[test]
fn nick_registers_first_and_peers_learn_the_name_from_the_index() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let alice = net.id(0);
    net.type_line(0, "hello");
    net.run_to_idle();
    net.type_line(0, "/nick carol");
    assert_eq!(net.nodes[0].renames, ["carol"]);
    // The index takes it (the driver's registration would), and answers.
    net.index.records.get_mut(&alice).unwrap().name = Some("carol".into());
    net.run_for(2 * SEC);
    net.reply(0, IndexReply::Renamed(Ok("carol".into())));
    net.run_to_idle();
    assert!(net.shown(0).any(
        |e| matches!(e, UiEvent::Renamed { peer: None, name: Some(n), old: Some(o) } if n == "carol" && o == "alice")
    ));
    assert!(
        net.shown(1).any(|e| matches!(e,
            UiEvent::Renamed { peer: Some(p), old: Some(o), name: Some(n) }
                if *p == alice && o == "alice" && n == "carol")),
        "{:?}",
        net.nodes[1].shown
    );
    // A refusal keeps the name, and says so.
    net.type_line(0, "/nick bob");
    net.reply(
        0,
        IndexReply::Renamed(Err("the name bob is taken by another key".into())),
    );
    assert!(net.errors(0).last().unwrap().contains("you stay carol"));
    // No renaming while the index is away: it vouches for names.
    net.reply(0, IndexReply::Trouble("the index is unreachable".into()));
    net.type_line(0, "/nick dave");
    assert_eq!(net.nodes[0].renames, ["carol", "bob"]);
    assert!(net.errors(0).last().unwrap().contains("unreachable"));
}

#[test]
fn who_lists_you_as_you() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    net.type_line(0, "/who");
    net.run_to_idle();
    let members = net
        .shown(0)
        .find_map(|e| match e {
            UiEvent::Who { members, .. } => Some(members.clone()),
            _ => None,
        })
        .unwrap();
    let me: Vec<_> = members.iter().filter(|m| m.you).collect();
    assert_eq!(me.len(), 1, "{members:?}");
    assert_eq!(me[0].uuid, net.id(0));
    assert_eq!(me[0].name.as_deref(), Some("alice"));
    let text = UiEvent::Who {
        room: "lobby".into(),
        members,
    }
    .human()
    .unwrap();
    assert!(text.contains("you alice"), "{text}");
    assert!(!text.contains("not contacted yet") || text.matches("not contacted").count() == 1);
}

#[test]
fn switching_to_a_session_with_unread_messages_shows_them() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let (alice, bob) = (net.id(0), net.id(1));
    for text in ["one", "two", "three"] {
        net.type_line(0, &format!("/msg {bob} {text}"));
    }
    net.run_to_idle();
    net.type_line(1, "/sw alice");
    let (query, reason) = net.nodes[1].reads.last().cloned().expect("a history read");
    assert_eq!(reason, "unread");
    assert_eq!(query.session, Some(SessionKind::Private(alice)));
    assert_eq!((query.limit, query.before), (3, None));
    // Switching back and forth again shows nothing more: nothing is unread.
    net.type_line(1, "/lobby");
    net.type_line(1, "/sw alice");
    assert_eq!(net.nodes[1].reads.len(), 1);
}

#[test]
fn history_pages_back_from_where_it_stopped() {
    let mut net = ChatNet::registered(&[Some("alice")]);
    net.type_line(0, "/history 5");
    let (query, reason) = net.nodes[0].reads.last().cloned().unwrap();
    assert_eq!((reason, query.limit, query.before), ("requested", 5, None));
    let lobby = SessionKind::Room("lobby".into());
    net.nodes[0]
        .core
        .history_shown(lobby.clone(), Some(40), "requested");
    net.type_line(0, "/history");
    let (query, _) = net.nodes[0].reads.last().cloned().unwrap();
    assert_eq!(
        (query.limit, query.before),
        (command::HISTORY_PAGE, Some(40))
    );
    // The beginning reached: said, not asked again.
    net.nodes[0].core.history_shown(lobby, None, "requested");
    let reads = net.nodes[0].reads.len();
    net.type_line(0, "/history");
    assert_eq!(net.nodes[0].reads.len(), reads);
    assert!(net.shown(0).any(
        |e| matches!(e, UiEvent::Info { message } if message == "no earlier messages in #lobby")
    ));
}

#[test]
fn a_restart_restores_sessions_numbers_and_ids() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let bob = net.id(1);
    net.type_line(0, "/join rust");
    net.type_line(0, &format!("/dm {bob}"));
    net.run_to_idle();
    let saved = net.nodes[0]
        .stored
        .iter()
        .rev()
        .find_map(|c| match c {
            Change::Sessions(saved) => Some(saved.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(saved.sessions.len(), 3);
    // A new core for the same identity, restored from what was saved.
    let mut again = ChatNet::new(&[Some("alice"), Some("bob")]);
    again.nodes[0].core.restore(Some(saved.clone()), 500);
    again.flush();
    let (query, reason) = again.nodes[0].reads.last().cloned().unwrap();
    assert_eq!(reason, "restored");
    assert_eq!(query.session, Some(SessionKind::Private(bob)));
    assert_eq!(
        again.nodes[0].published.last().unwrap().len(),
        3,
        "the sessions are back"
    );
    again.register(0);
    again.run_to_idle();
    assert!(
        again.index.rooms["rust"].contains(&again.id(0)),
        "restored rooms are joined on the index"
    );
    again.type_line(0, "said after the restart");
    again.run_to_idle();
    let id = again.nodes[0].stored.iter().find_map(|c| match c {
        Change::Line(line) => Some(line.id),
        _ => None,
    });
    assert_eq!(id, Some(500), "ids go on from the saved ones");
}

#[test]
fn a_failed_join_checks_the_index_and_its_return_joins_the_room() {
    let mut net = ChatNet::registered(&[Some("alice")]);
    let alice = net.id(0);
    // The index went away unnoticed (no heartbeat since): the join fails.
    net.index.up = false;
    net.type_line(0, "/join rust");
    net.run_to_idle();
    assert_eq!(net.nodes[0].checks, 1, "a failure asks for a heartbeat now");
    // The heartbeat finds it away, then back.
    net.reply(0, IndexReply::Trouble("the index is unreachable".into()));
    net.index.up = true;
    net.reply(0, IndexReply::Online);
    net.run_to_idle();
    assert!(net.index.rooms["rust"].contains(&alice));
}
