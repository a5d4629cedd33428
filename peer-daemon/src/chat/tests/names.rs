//! Names come from the index: a peer's claim is shown as a claim, what it says waits while the
//! index is asked, and `/msg <name>` follows the index.

use proto::chat::ChatMessage;

use super::*;

/// The `(name, claimed_name, text)` of every message node `i` showed.
fn labelled(net: &ChatNet, i: usize) -> Vec<(Option<String>, Option<String>, String)> {
    net.shown(i)
        .filter_map(|e| match e {
            UiEvent::Message {
                name,
                claimed_name,
                text,
                ..
            } => Some((name.clone(), claimed_name.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_peer_is_shown_under_the_name_the_index_vouches_for() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob")]);
    net.index.latency = 300 * MS;
    net.teach(1, 0);
    net.type_line(1, &format!("/msg {} hi", net.id(0)));
    // Bob's hello and text arrive long before the index answers alice's question.
    net.run_for(100 * MS);
    assert!(
        net.nodes[0]
            .asked
            .contains(&IndexRequest::Verify(net.id(1)))
    );
    assert!(
        labelled(&net, 0).is_empty(),
        "held while the index is asked"
    );
    net.run_to_idle();
    assert_eq!(labelled(&net, 0), [(Some("bob".into()), None, "hi".into())]);
}

#[test]
fn an_impostor_is_shown_as_claiming_and_never_gets_the_name() {
    // Node 2 calls itself alice; the index knows it without a name (its claim was refused).
    let mut net = ChatNet::new(&[Some("alice"), Some("bob"), Some("alice")]);
    for i in 0..3 {
        net.register(i);
    }
    let impostor = net.id(2);
    net.index.records.get_mut(&impostor).unwrap().name = None;
    net.run_to_idle();
    net.type_line(2, &format!("/msg {} it is me, alice", net.id(1)));
    net.run_to_idle();
    assert_eq!(
        labelled(&net, 1),
        [(None, Some("alice".into()), "it is me, alice".into())]
    );
    // Bob's /msg alice goes where the index says, however often the impostor writes.
    for n in 0..3 {
        net.type_line(1, &format!("/msg alice number {n}"));
        net.run_to_idle();
    }
    assert_eq!(net.texts(0).len(), 3);
    assert!(net.texts(2).is_empty(), "nothing went to the impostor");
}

#[test]
fn held_events_go_out_unnamed_when_the_index_never_answers() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob")]);
    net.index.answers = false;
    let bob = net.id(1);
    net.teach(1, 0);
    net.type_line(1, &format!("/msg {} hi", net.id(0)));
    net.run_for(HOLD_LIMIT - SEC);
    assert!(
        labelled(&net, 0).is_empty(),
        "held while the index is asked"
    );
    net.run_for(2 * SEC);
    assert_eq!(labelled(&net, 0), [(None, Some("bob".into()), "hi".into())]);
    assert_eq!(net.texts(0), [(bob, "hi".to_owned())]);
}

#[test]
fn at_most_max_held_events_wait_for_the_index() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob")]);
    net.index.answers = false;
    let (alice, bob) = (net.id(0), net.id(1));
    let hello = ChatMessage::Hello {
        name: Some("bob".into()),
        rooms: Vec::new(),
        candidates: Vec::new(),
    };
    let now = net.instant();
    let core = &mut net.nodes[0].core;
    core.handle_event(proto::Event::Message {
        from: bob,
        data: hello.encode(),
    });
    for n in 0..MAX_HELD + 10 {
        let text = ChatMessage::Text {
            action: false,
            room: None,
            text: format!("{n}"),
        };
        core.handle_event(proto::Event::Message {
            from: bob,
            data: text.encode(),
        });
    }
    core.handle_timeout(now);
    net.run_for(MS);
    assert_eq!(
        net.texts(0).len(),
        10,
        "past the cap, events go out as they are"
    );
    net.run_for(HOLD_LIMIT);
    let texts = net.texts(0);
    assert_eq!(texts.len(), MAX_HELD + 10, "then the held ones");
    assert_eq!(texts[10], (bob, "0".to_owned()), "in the order they came");
    assert!(
        net.nodes[0]
            .core
            .poll_timeout()
            .is_none_or(|at| at > net.instant())
    );
    let _ = alice;
}

#[test]
fn a_name_moves_with_the_index() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob"), Some("carol")]);
    net.type_line(0, "/msg bob one");
    net.run_to_idle();
    // Bob's name now belongs to carol at the index; once alice's binding is stale, the
    // index is asked again and the name follows it.
    let (bob, carol) = (net.id(1), net.id(2));
    net.index.records.get_mut(&bob).unwrap().name = None;
    net.index.records.get_mut(&carol).unwrap().name = Some("bob".into());
    net.run_for(crate::chat::names::FRESH);
    net.type_line(0, "/msg bob two");
    net.run_to_idle();
    assert_eq!(net.texts(1).len(), 1);
    assert_eq!(net.texts(2), [(net.id(0), "two".to_owned())]);
    net.type_line(0, "/msg nobody x");
    net.run_to_idle();
    assert!(
        net.errors(0)
            .iter()
            .any(|e| e == "nobody called `nobody` is registered at the index")
    );
}
