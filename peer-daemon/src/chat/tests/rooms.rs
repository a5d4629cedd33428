//! Joins and leaves spread to the members directly, and the lists show what the index and the
//! peers said.

use super::*;

/// A `joined` event: room, peer, name, members.
type Join = (String, Option<Uuid>, Option<String>, Option<usize>);

/// Node `i`'s `joined` events outside the lobby.
fn joined(net: &ChatNet, i: usize) -> Vec<Join> {
    net.shown(i)
        .filter_map(|e| match e {
            UiEvent::Joined { room, .. } if room == "lobby" => None,
            UiEvent::Joined {
                room,
                peer,
                name,
                members,
                ..
            } => Some((room.clone(), *peer, name.clone(), *members)),
            _ => None,
        })
        .collect()
}

#[test]
fn joins_and_leaves_reach_the_members() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let (alice, bob) = (net.id(0), net.id(1));
    net.type_line(0, "/join rust");
    net.run_to_idle();
    assert_eq!(joined(&net, 0), [("rust".into(), None, None, Some(0))]);
    net.type_line(1, "/join rust");
    net.run_to_idle();
    assert_eq!(joined(&net, 1), [("rust".into(), None, None, Some(1))]);
    // Alice hears of bob from bob himself, under the name the index vouches for.
    assert!(
        joined(&net, 0).contains(&("rust".into(), Some(bob), Some("bob".into()), None)),
        "{:?}",
        joined(&net, 0)
    );
    assert_eq!(net.nodes[0].core.roster.members("rust"), [bob]);
    net.type_line(1, "/leave rust");
    net.run_to_idle();
    assert!(net.nodes[0].core.roster.members("rust").is_empty());
    let left = net.shown(0).any(
        |e| matches!(e, UiEvent::Left { room, peer: Some(p), .. } if room == "rust" && *p == bob),
    );
    assert!(left, "alice saw bob leave");
    assert!(
        net.shown(1)
            .any(|e| matches!(e, UiEvent::Left { room, peer: None, .. } if room == "rust")),
        "bob saw his own leave confirmed"
    );
    assert!(!net.index.rooms["rust"].contains(&bob) && net.index.rooms["rust"].contains(&alice));
}

#[test]
fn joining_before_registering_joins_on_the_index_once_registered() {
    let mut net = ChatNet::new(&[Some("alice"), Some("bob")]);
    net.type_line(0, "/join rust");
    assert_eq!(joined(&net, 0), [("rust".into(), None, None, Some(0))]);
    assert!(
        net.nodes[0].asked.is_empty(),
        "nobody to ask before registering"
    );
    net.register(0);
    net.run_to_idle();
    assert!(net.index.rooms["rust"].contains(&net.id(0)));
    assert!(net.index.rooms["lobby"].contains(&net.id(0)));
}

#[test]
fn who_and_rooms_list_what_the_index_says_or_what_is_known_here() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    net.type_line(1, "/join rust");
    net.run_to_idle();
    net.type_line(0, "/who rust");
    net.type_line(0, "/rooms");
    net.run_to_idle();
    let who: Vec<Vec<Option<String>>> = net
        .shown(0)
        .filter_map(|e| match e {
            UiEvent::Who { members, .. } => Some(
                members
                    .iter()
                    .filter(|m| !m.you)
                    .map(|m| m.name.clone())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(who, [vec![Some("bob".to_owned())]]);
    let rooms: Vec<(String, usize, bool)> = net
        .shown(0)
        .filter_map(|e| match e {
            UiEvent::Rooms { rooms } => Some(
                rooms
                    .iter()
                    .map(|r| (r.room.clone(), r.members, r.joined))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        rooms,
        [("lobby".into(), 2, true), ("rust".into(), 1, false)]
    );

    net.index.up = false;
    net.clear(0);
    net.type_line(0, "/who lobby");
    net.run_to_idle();
    let errors = net.errors(0);
    assert!(
        errors[0].ends_with("showing the members known here"),
        "{errors:?}"
    );
    assert!(
        net.shown(0)
            .any(|e| matches!(e, UiEvent::Who { members, .. } if members.len() == 2 && members.iter().any(|m| m.you))),
        "bob and you"
    );
}

#[test]
fn commands_that_make_no_sense_say_what_to_do() {
    let mut net = ChatNet::registered(&[Some("alice")]);
    net.command(
        0,
        Command::RoomMsg {
            room: "nowhere".into(),
            text: "x".into(),
        },
    );
    net.type_line(0, "/join Not_A_Room");
    net.type_line(0, "/leave nowhere");
    net.type_line(0, &format!("/msg {} me", net.id(0)));
    net.type_line(0, "/switch 9");
    let errors = net.errors(0);
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors[0].contains("/join nowhere first"));
    assert!(errors[1].contains("is not a room name"));
    assert!(errors[2].contains("not in #nowhere"));
    assert!(errors[3].contains("own UUID"));
    assert!(errors[4].contains("/sessions lists them"));
}
