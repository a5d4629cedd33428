//! The driver's bookkeeping, exercised without the loop: no index answers, no peers.

use super::*;
use crate::output::WriteSink;

async fn driver() -> Driver {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a loopback socket");
    let udp = Udp::new(socket).expect("a batching socket");
    // Lookups are spawned but never awaited here; the tests hand in their answers.
    let index = IndexClient::new("http://127.0.0.1:9").expect("an index client");
    let out = Output::new(true, WriteSink(Vec::new()));
    Driver::new(
        Identity::from_secret([1; 32]),
        Some("alice".into()),
        udp,
        index,
        out,
        proto::Config::default(),
    )
}

fn record(peer: Uuid, addr: SocketAddr) -> PeerRecord {
    PeerRecord {
        uuid: peer,
        addr: addr.to_string(),
        name: None,
        public_key: None,
        registered_at: "2026-01-01T00:00:00Z".into(),
        last_seen: None,
        ttl_secs: None,
        token: None,
    }
}

/// The user ids of the messages handed to the endpoint, in the order it numbered them.
fn sent_in_order(driver: &Driver) -> Vec<u64> {
    let mut tags: Vec<(MsgId, u64)> = driver
        .tags
        .iter()
        .filter_map(|(&id, tag)| match tag {
            Tag::Direct(user) => Some((id, *user)),
            _ => None,
        })
        .collect();
    tags.sort_unstable();
    tags.into_iter().map(|(_, user)| user).collect()
}

#[tokio::test]
async fn a_message_never_overtakes_one_waiting_for_a_lookup() {
    let mut driver = driver().await;
    let bob = Identity::from_secret([2; 32]).uuid();
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("an address");

    driver.send_payload(bob, b"first".to_vec(), Tag::Direct(1));
    assert_eq!(driver.waiting[&bob].len(), 1, "no address yet: it waits");
    // While the lookup is out, the address arrives another way (a room listing, say).
    driver.cache.insert(bob, addr, Duration::from_secs(60));
    driver.send_payload(bob, b"second".to_vec(), Tag::Direct(2));
    assert_eq!(
        driver.waiting[&bob].len(),
        2,
        "the second message went out ahead of the first"
    );

    driver.on_lookup(
        bob,
        Ok(Some(Lookup {
            record: record(bob, addr),
            max_age: None,
        })),
    );
    assert!(driver.waiting.is_empty());
    assert_eq!(sent_in_order(&driver), [1, 2]);

    // With nothing waiting, the known address is used at once.
    driver.send_payload(bob, b"third".to_vec(), Tag::Direct(3));
    assert!(driver.waiting.is_empty());
    assert_eq!(sent_in_order(&driver), [1, 2, 3]);
}

#[tokio::test]
async fn a_message_by_name_never_overtakes_one_waiting_for_that_name() {
    let mut driver = driver().await;
    let bob = Identity::from_secret([2; 32]).uuid();
    let by_name = || crate::command::PeerRef::Name("bob".into());

    driver.with_peer(by_name(), NameAction::Msg("first".into()));
    assert_eq!(
        driver.waiting_names["bob"].len(),
        1,
        "unknown name: it waits"
    );
    // While the index is asked, a room listing from the index names bob.
    let now = std::time::Instant::now();
    driver
        .chat
        .vouch(bob, Some("bob"), now, std::time::Duration::from_secs(60));
    driver.with_peer(by_name(), NameAction::Msg("second".into()));
    assert_eq!(
        driver.waiting_names["bob"].len(),
        2,
        "the second message went out ahead of the first"
    );
}
