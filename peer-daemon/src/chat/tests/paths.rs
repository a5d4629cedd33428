//! Candidates travel with the chat: our own in every `hello` and in a `candidates` message when
//! they change, a peer's from its `hello` and from the index's record into the endpoint; the
//! endpoint's path changes come out as `path` events, and receipts say which path.

use proto::PathKind;
use proto::api::{Candidate, CandidateKind};

use super::*;

fn srflx(port: u16) -> Candidate {
    Candidate {
        kind: CandidateKind::Srflx,
        addr: SocketAddr::from(([198, 51, 100, 9], port)),
    }
}

fn known(net: &ChatNet, i: usize, j: usize) -> Vec<(SocketAddr, PathKind, bool)> {
    let now = net.instant();
    net.nodes[i].core.endpoint().path_addrs(now, &net.id(j))
}

#[test]
fn a_hello_carries_our_candidates_and_the_peer_learns_them() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob")]);
    let now = net.instant();
    net.nodes[0]
        .core
        .set_own_candidates(now, vec![srflx(5000)], false);
    net.teach(0, 1);
    net.type_line(0, &format!("/msg {} hi", net.id(1)));
    net.run_for(2 * SEC);
    assert_eq!(net.texts(1), [(net.id(0), "hi".to_owned())]);
    let learned = known(&net, 1, 0);
    assert!(
        learned
            .iter()
            .any(|(a, k, _)| *a == srflx(5000).addr && *k == PathKind::Direct),
        "bob did not learn alice's candidate from her hello: {learned:?}"
    );
    // Bob probes it (bounded), and it never answers: his path to alice stays where she is.
    let path = net.nodes[1].core.endpoint().path(&net.id(0));
    assert_eq!(path.map(|(a, _)| a), Some(net.nodes[0].addr));
}

#[test]
fn new_candidates_reach_the_peers_we_talk_to() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    net.type_line(0, &format!("/msg {} hi", net.id(1)));
    net.run_for(SEC);
    assert!(
        !known(&net, 0, 1)
            .iter()
            .any(|(a, ..)| *a == srflx(6000).addr)
    );
    let now = net.instant();
    net.nodes[1]
        .core
        .set_own_candidates(now, vec![srflx(6000)], false);
    net.flush();
    net.run_for(SEC);
    assert!(
        known(&net, 0, 1)
            .iter()
            .any(|(a, ..)| *a == srflx(6000).addr),
        "alice did not hear of bob's new candidate: {:?}",
        known(&net, 0, 1)
    );
    // The same list again is not news.
    let sent = net.nodes[1].core.endpoint().stats().datagrams;
    let now = net.instant();
    net.nodes[1]
        .core
        .set_own_candidates(now, vec![srflx(6000)], false);
    net.flush();
    net.run_for(SEC);
    assert_eq!(net.nodes[1].core.endpoint().stats().datagrams, sent);
}

#[test]
fn path_changes_are_shown_and_receipts_say_the_path() {
    let mut net = ChatNet::registered(&[Some("alice"), Some("bob")]);
    net.type_line(0, &format!("/msg {} hi", net.id(1)));
    net.run_for(SEC);
    let bob = net.id(1);
    let paths: Vec<_> = net
        .shown(0)
        .filter_map(|e| match e {
            // The name is there once the index vouched for it (not yet at the first contact).
            UiEvent::Path {
                peer, via, addr, ..
            } if *peer == bob => Some((*via, *addr)),
            _ => None,
        })
        .collect();
    assert_eq!(
        paths.first(),
        Some(&("direct", net.nodes[1].addr)),
        "{paths:?}"
    );
    let via: Vec<_> = net
        .shown(0)
        .filter_map(|e| match e {
            UiEvent::Delivered {
                to: Some(to), via, ..
            } if *to == bob => Some(*via),
            _ => None,
        })
        .collect();
    assert_eq!(via, [Some("direct")]);
}
