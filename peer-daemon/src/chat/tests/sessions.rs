//! The session list is published when it changes, and only then.

use super::*;

fn labels(lines: &[SessionLine]) -> Vec<(String, bool, usize)> {
    lines
        .iter()
        .map(|l| (l.label.clone(), l.active, l.unread))
        .collect()
}

#[test]
fn the_session_list_is_published_only_when_it_changes() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    let alice = net.id(0);
    let published = |net: &ChatNet| net.nodes[1].published.len();
    assert_eq!(published(&net), 1, "once at the start");
    assert_eq!(
        labels(&net.nodes[1].published[0]),
        [("#lobby".into(), true, 0)]
    );

    // A first private message opens a session with one unread message.
    net.type_line(0, &format!("/msg {} one", net.id(1)));
    net.run_to_idle();
    assert_eq!(published(&net), 2);
    assert_eq!(
        labels(net.nodes[1].published.last().unwrap()),
        [("#lobby".into(), true, 0), ("@alice".into(), false, 1)]
    );
    // More traffic that changes nothing the list shows publishes nothing.
    net.type_line(1, "/peers");
    net.type_line(1, "/sessions");
    net.type_line(1, "hello lobby");
    net.run_to_idle();
    assert_eq!(published(&net), 2);
    net.type_line(1, "/sw alice");
    assert_eq!(
        labels(net.nodes[1].published.last().unwrap()),
        [("#lobby".into(), false, 0), ("@alice".into(), true, 0)]
    );
    // In the active session, messages are not unread.
    let before = published(&net);
    net.type_line(0, &format!("/msg {} two", net.id(1)));
    net.run_to_idle();
    assert_eq!(published(&net), before);
    // Saying something in a private session goes to that peer.
    net.type_line(1, "back to you");
    net.run_to_idle();
    assert_eq!(
        net.texts(0).last(),
        Some(&(net.id(1), "back to you".to_owned()))
    );
    let _ = alice;
}
