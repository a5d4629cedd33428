//! A peer that moved (restarted on another address, changed networks) stops answering where we
//! send: after `RELOOK_AFTER` the core asks where it is now, and the answer moves the path. A
//! peer that answers is never asked about again. Every peer that spoke to us is reported as a
//! contact, with the key it proved.

use super::*;
use crate::chat::{RELOOK_AFTER, RELOOK_EVERY};

/// Node `i` restarts at `addr`: a fresh core (a new incarnation), its record updated.
fn restart_elsewhere(net: &mut ChatNet, i: usize, addr: SocketAddr) {
    let config = SecureConfig {
        endpoint: proto::Config {
            deadline: DEADLINE,
            ..proto::Config::default()
        },
        seed: [i as u8 + 200; 32],
    };
    let endpoint = SecureEndpoint::new(identity(i), 2, config);
    let name = net.nodes[i].name.clone();
    net.nodes[i].core = ChatCore::new(endpoint, name, net.instant());
    net.nodes[i].addr = addr;
    net.list(i);
    net.clear(i);
}

fn lookups_of(net: &ChatNet, i: usize, peer: Uuid) -> usize {
    net.nodes[i]
        .asked
        .iter()
        .filter(|r| **r == IndexRequest::Lookup(peer))
        .count()
}

#[test]
fn a_peer_that_moved_is_looked_up_again_and_reached_where_it_is_now() {
    let mut net = ChatNet::listed(&[Some("alice"), Some("bob")]);
    let bob = net.id(1);
    net.teach(0, 1);
    net.type_line(0, &format!("/msg {bob} one"));
    net.run_for(2 * SEC);
    assert_eq!(net.texts(1), [(net.id(0), "one".to_owned())]);
    net.run_for(RELOOK_EVERY);
    assert_eq!(
        lookups_of(&net, 0, bob),
        0,
        "bob answers: never asked about"
    );
    let contact = net.nodes[0].contacts.last().expect("bob is a contact");
    assert_eq!(contact.uuid, bob);
    assert_eq!(contact.public_key, identity(1).public_key());

    restart_elsewhere(&mut net, 1, SocketAddr::from(([192, 0, 2, 99], 4999)));
    net.clear(0);
    net.type_line(0, &format!("/msg {bob} two"));
    net.run_for(RELOOK_AFTER - SEC);
    assert_eq!(lookups_of(&net, 0, bob), 0, "too early");
    net.run_for(10 * SEC);
    assert_eq!(
        lookups_of(&net, 0, bob),
        1,
        "looked up once it did not answer"
    );
    assert_eq!(net.texts(1), [(net.id(0), "two".to_owned())]);
    let delivered = net
        .shown(0)
        .any(|e| matches!(e, UiEvent::Delivered { to: Some(to), .. } if *to == bob));
    assert!(delivered, "no receipt: {:?}", net.nodes[0].shown);
    assert_eq!(
        net.nodes[0].core.endpoint().peer_addr(&bob),
        Some(SocketAddr::from(([192, 0, 2, 99], 4999)))
    );
}
