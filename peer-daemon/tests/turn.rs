//! The STUN/TURN gatherer against a real coturn on loopback: reflexive and relayed addresses,
//! two gatherers talking relay to relay, and a server that refuses, is silent, or sends
//! garbage. Each test starts its own coturn (SKIP when `turnserver` is not installed).

#[path = "turn/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{Coturn, Node, Report};
use peer_daemon::nat::turn::{GatherConfig, GatherEvent, Incoming};

/// Two gatherers allocated on `coturn`, with their relayed addresses.
async fn pair(coturn: &Coturn) -> (Node, SocketAddr, Node, SocketAddr) {
    let mut a = Node::start(vec![coturn.turn("alice")]).await;
    let mut b = Node::start(vec![coturn.turn("bob")]).await;
    let relayed_a = a.relayed().await;
    let relayed_b = b.relayed().await;
    (a, relayed_a, b, relayed_b)
}

#[tokio::test]
async fn stun_binding_reports_the_sockets_own_address() {
    let Some(coturn) = Coturn::start(&[]) else {
        return;
    };
    let mut node = Node::start(vec![coturn.stun()]).await;
    assert_eq!(
        node.reflexive().await,
        node.addr,
        "on loopback there is no NAT"
    );
    // A STUN-only server gives no allocation, and keeps quiet about it.
    let later = node.collect(Duration::from_millis(500)).await;
    assert!(later.is_empty(), "unexpected reports: {later:?}");
    let snapshot = node.snapshot().await;
    assert_eq!(snapshot.relayed, None);
    assert_eq!(snapshot.stats.allocations, 0);
    assert_eq!(snapshot.stats.malformed + snapshot.stats.unexpected, 0);
}

#[tokio::test]
async fn two_gatherers_talk_relay_to_relay_both_ways() {
    let Some(coturn) = Coturn::start(&[]) else {
        return;
    };
    let (mut a, relayed_a, mut b, relayed_b) = pair(&coturn).await;
    for relayed in [relayed_a, relayed_b] {
        assert_eq!(relayed.ip(), coturn.addr.ip());
        let (min, max) = coturn.relay_ports;
        assert!(
            (min..=max).contains(&relayed.port()),
            "{relayed} outside the relay range"
        );
    }
    assert_ne!(relayed_a, relayed_b);
    assert_eq!(a.snapshot().await.reflexive, Some(a.addr));

    // The first datagram goes as a Send indication (and starts a ChannelBind)...
    let data = b"hello from a".to_vec();
    let sent = a.send(relayed_b, &data).await.expect("A has an allocation");
    let (got, wire) = b.relayed_from(relayed_a).await;
    assert_eq!(got, data);
    let send_overhead = sent - data.len();
    let data_overhead = wire - data.len();
    let back = b"and hello from b".to_vec();
    b.send(relayed_a, &back).await.expect("B has an allocation");
    assert_eq!(a.relayed_from(relayed_b).await.0, back);

    // ... later ones as ChannelData, once the channel is bound; both ways.
    let mut channel_out = None;
    let mut channel_in = None;
    for round in 0..50u32 {
        let data = format!("round {round}").into_bytes();
        let sent = a.send(relayed_b, &data).await.unwrap();
        let (got, wire) = b.relayed_from(relayed_a).await;
        assert_eq!(got, data);
        let back = format!("answer {round}").into_bytes();
        b.send(relayed_a, &back).await.unwrap();
        let (got_back, wire_back) = a.relayed_from(relayed_b).await;
        assert_eq!(got_back, back);
        if sent - data.len() == 4 && wire_back - back.len() == 4 && wire - data.len() == 4 {
            channel_out = Some(sent - data.len());
            channel_in = Some(wire - data.len());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "overhead per relayed datagram: Send indication {send_overhead} B out, Data indication \
         {data_overhead} B in; ChannelData {channel_out:?} B out, {channel_in:?} B in"
    );
    assert_eq!(channel_out, Some(4), "the channel never took over");
    assert_eq!(channel_in, Some(4));
    let stats = a.snapshot().await.stats;
    assert_eq!(stats.allocations, 1);
    assert_eq!(
        stats.malformed + stats.unexpected + stats.errors,
        0,
        "{stats:?}"
    );
    assert!(stats.relayed_in >= 2 && stats.relayed_out >= 2, "{stats:?}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_spinning() {
    let Some(coturn) = Coturn::start(&[]) else {
        return;
    };
    let mut server = coturn.turn("mallory");
    server.turn.as_mut().unwrap().password = "not the password".into();
    let mut node = Node::start(vec![server]).await;
    let why = node.trouble().await;
    assert!(why.contains("refused the credentials"), "{why}");
    // The default backoff starts at 2 s and doubles: a handful of tries in 5 s, not a storm,
    // and the same trouble is not repeated.
    let later = node.collect(Duration::from_secs(5)).await;
    assert!(later.is_empty(), "unexpected reports: {later:?}");
    let snapshot = node.snapshot().await;
    assert_eq!(snapshot.relayed, None);
    assert_eq!(snapshot.stats.allocations, 0);
    assert!(
        (4..=8).contains(&snapshot.stats.requests),
        "requests {:?}",
        snapshot.stats
    );
}

#[tokio::test]
async fn a_silent_server_gives_trouble_after_bounded_retries() {
    // A socket that never answers stands for a server that is down.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = GatherConfig {
        rto: Duration::from_millis(20),
        max_sends: 6,
        min_backoff: Duration::from_secs(1),
        ..GatherConfig::default()
    };
    let server = peer_daemon::nat::turn::ServerConfig {
        addr: silent.local_addr().unwrap(),
        turn: Some(peer_daemon::nat::turn::TurnCredentials {
            username: "1:nobody".into(),
            password: "x".into(),
        }),
    };
    let mut node = Node::with_config(vec![server], config).await;
    let why = node.trouble().await;
    assert!(why.contains("did not answer"), "{why}");
    assert_eq!(node.snapshot().await.stats.requests, 6);
    // Over the next 3 s: one more round after the 1 s backoff (given up 2.26 s after the
    // first), the next only 2 s later.
    let later = node.collect(Duration::from_millis(3000)).await;
    assert!(later.is_empty(), "the same trouble again: {later:?}");
    let stats = node.snapshot().await.stats;
    assert_eq!(stats.requests, 12, "{stats:?}");
    assert_eq!(stats.timeouts, 2, "{stats:?}");
    let mut buf = [0; 2048];
    let mut received = 0;
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(10), silent.recv_from(&mut buf)).await
    {
        received += 1;
    }
    assert_eq!(received, 12, "datagrams that reached the silent server");
}

#[tokio::test]
async fn garbage_and_forged_answers_change_nothing() {
    use stun_codec::rfc5389::attributes::XorMappedAddress;
    use stun_codec::rfc5389::methods::BINDING;
    use stun_codec::rfc5766::methods::DATA;
    use stun_codec::{Message, MessageClass, MessageEncoder, TransactionId};
    let encode = |message: Message<stun_codec::rfc5389::Attribute>| {
        use bytecodec::EncodeExt;
        MessageEncoder::new().encode_into_bytes(message).unwrap()
    };

    let Some(coturn) = Coturn::start(&[]) else {
        return;
    };
    let (mut a, relayed_a, mut b, relayed_b) = pair(&coturn).await;
    let before = a.snapshot().await;

    let mut forged_binding = Message::new(
        MessageClass::SuccessResponse,
        BINDING,
        TransactionId::new([0x55; 12]),
    );
    forged_binding.add_attribute(XorMappedAddress::new("203.0.113.7:9".parse().unwrap()));
    let data_without_peer =
        Message::new(MessageClass::Indication, DATA, TransactionId::new([1; 12]));
    let mut junk = vec![0u8; 100];
    junk[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    let malformed = [
        junk,
        vec![0; 1600],
        encode(data_without_peer),
        vec![0x40, 0x00, 0x00, 0x10, 1, 2],
    ];
    for bytes in malformed {
        assert_eq!(a.inject(coturn.addr, bytes).await, Incoming::Consumed);
    }
    let unexpected = [encode(forged_binding), vec![0x4a, 0xbc, 0x00, 0x01, 7]];
    for bytes in unexpected {
        assert_eq!(a.inject(coturn.addr, bytes).await, Incoming::Consumed);
    }
    // From anywhere else, it is not the gatherer's business.
    assert_eq!(
        a.inject("127.0.0.1:9".parse().unwrap(), vec![0; 30]).await,
        Incoming::NotOurs
    );
    // A stranger's datagram on the real socket reaches the caller as a peer's.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.send_to(b"hi", a.addr).await.unwrap();
    let from = stranger.local_addr().unwrap();
    a.wait_for("the stranger's datagram", |r| match r {
        Report::Peer { from: f, data } if *f == from && data == b"hi" => Some(()),
        _ => None,
    })
    .await;

    let after = a.snapshot().await;
    assert_eq!(
        after.stats.malformed,
        before.stats.malformed + 4,
        "{:?}",
        after.stats
    );
    assert_eq!(
        after.stats.unexpected,
        before.stats.unexpected + 2,
        "{:?}",
        after.stats
    );
    assert_eq!(after.reflexive, before.reflexive);
    assert_eq!(after.relayed, before.relayed);
    // And the relay still works.
    a.send(relayed_b, b"still here").await.unwrap();
    assert_eq!(b.relayed_from(relayed_a).await.0, b"still here");
    let events: Vec<_> = a
        .seen
        .iter()
        .filter(|r| {
            matches!(
                r,
                Report::Event(GatherEvent::Trouble(_) | GatherEvent::Relayed(None))
            )
        })
        .collect();
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn new_credentials_keep_the_allocation_and_stale_nonces_are_renewed() {
    // Nonces go stale after 2 s: every later signed request meets a 438 first.
    let Some(coturn) = Coturn::start(&["--stale-nonce=2"]) else {
        return;
    };
    // A's first credentials expire in 2 s; the index hands it new ones meanwhile.
    let mut a = Node::start(vec![coturn.turn_expiring("alice", 2)]).await;
    let mut b = Node::start(vec![coturn.turn("bob")]).await;
    let relayed_a = a.relayed().await;
    let relayed_b = b.relayed().await;
    a.set_servers(vec![coturn.turn("alice-renewed")]);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // The first datagram to B starts a ChannelBind: signed with the credentials the allocation
    // was made with (coturn refuses another username on an allocation), after a 438.
    let mut channel = false;
    for round in 0..50u32 {
        let data = format!("after renewal {round}").into_bytes();
        let sent = a.send(relayed_b, &data).await.unwrap();
        assert_eq!(b.relayed_from(relayed_a).await.0, data);
        if sent - data.len() == 4 {
            channel = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = a.snapshot().await;
    assert!(
        channel,
        "the ChannelBind never succeeded: {:?}",
        snapshot.stats
    );
    assert_eq!(snapshot.relayed, Some(relayed_a), "the allocation was kept");
    assert_eq!(snapshot.stats.allocations, 1);
    assert_eq!(snapshot.stats.malformed, 0, "{:?}", snapshot.stats);
    assert!(
        snapshot.stats.errors >= 1,
        "no stale nonce was met: {:?}",
        snapshot.stats
    );
    let bad: Vec<_> = a
        .seen
        .iter()
        .filter(|r| {
            matches!(
                r,
                Report::Event(GatherEvent::Trouble(_) | GatherEvent::Relayed(None))
            )
        })
        .collect();
    assert!(bad.is_empty(), "{bad:?}\ncoturn:\n{}", coturn.log());
}

#[tokio::test]
async fn right_credentials_after_wrong_ones_allocate_at_once() {
    let Some(coturn) = Coturn::start(&[]) else {
        return;
    };
    let mut wrong = coturn.turn("carol");
    wrong.turn.as_mut().unwrap().password = "wrong".into();
    let mut node = Node::start(vec![wrong]).await;
    assert!(node.trouble().await.contains("refused the credentials"));
    let asked = tokio::time::Instant::now();
    node.set_servers(vec![coturn.turn("carol")]);
    node.relayed().await;
    // Well before the 2 s backoff would have let it try again.
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn a_peer_the_server_refuses_costs_one_request_not_one_per_datagram() {
    // coturn refuses relaying to these addresses (nobody we know owns them).
    let Some(coturn) = Coturn::start(&["--denied-peer-ip=192.0.2.0-192.0.2.255"]) else {
        return;
    };
    let mut a = Node::start(vec![coturn.turn("alice")]).await;
    let relayed = a.relayed().await;
    let before = a.snapshot().await.stats;
    let stranger: SocketAddr = "192.0.2.7:4000".parse().unwrap();
    for _ in 0..20 {
        a.send(stranger, b"anyone there?")
            .await
            .expect("wrapped all the same");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = a.snapshot().await.stats;
    eprintln!("refused peer: before {before:?}, after {after:?}");
    assert_eq!(
        after.errors,
        before.errors + 1,
        "one refused ChannelBind: {after:?}"
    );
    assert_eq!(after.requests, before.requests + 1, "{after:?}");
    assert_eq!(after.malformed, 0, "coturn signs its refusals: {after:?}");
    assert_eq!(
        a.snapshot().await.relayed,
        Some(relayed),
        "the allocation is unharmed"
    );
}
