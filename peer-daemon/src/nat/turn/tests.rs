//! The gatherer in virtual time against a scripted server: the exchanges a real coturn
//! cannot be made to produce on demand (forged answers to pending requests, lost Refreshes,
//! an hour of backoff).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun_codec::MessageClass;
use stun_codec::rfc5389::attributes::{ErrorCode, Nonce, Realm, Username, XorMappedAddress};
use stun_codec::rfc5766::attributes::{Lifetime, XorRelayAddress};
use stun_codec::rfc5766::methods::{ALLOCATE, CREATE_PERMISSION, REFRESH};

use super::msg::{self, Attribute, Auth, Msg};
use super::*;

fn server() -> SocketAddr {
    "192.0.2.1:3478".parse().unwrap()
}
fn relayed() -> SocketAddr {
    "192.0.2.1:50000".parse().unwrap()
}
fn mapped() -> SocketAddr {
    "198.51.100.7:4000".parse().unwrap()
}

fn creds(username: &str) -> TurnCredentials {
    TurnCredentials {
        username: username.into(),
        password: "pw".into(),
    }
}

fn turn(username: &str) -> Vec<ServerConfig> {
    vec![ServerConfig {
        addr: server(),
        turn: Some(creds(username)),
    }]
}

fn server_auth(username: &str, password: &str) -> Auth {
    Auth {
        username: Username::new(username.into()).unwrap(),
        realm: Realm::new("peerlink".into()).unwrap(),
        nonce: Nonce::new("n1".into()).unwrap(),
        password: password.into(),
    }
}

/// The next datagram the gatherer sends, decoded; it must go to the server.
fn take(gatherer: &mut Gatherer) -> Msg {
    let (to, bytes) = gatherer.poll_transmit().expect("a request");
    assert_eq!(to, server());
    msg::decode(&bytes).expect("our own request decodes")
}

fn username(request: &Msg) -> Option<String> {
    request
        .get_attribute::<Username>()
        .map(|u| u.name().to_owned())
}

fn answer(
    request: &Msg,
    class: MessageClass,
    attrs: Vec<Attribute>,
    auth: Option<&Auth>,
) -> Vec<u8> {
    let id = *request.transaction_id().as_bytes();
    msg::encode(class, request.method(), id, attrs, auth, true).unwrap()
}

fn events(gatherer: &mut Gatherer) -> Vec<GatherEvent> {
    std::iter::from_fn(|| gatherer.poll_event()).collect()
}

/// A gatherer that went through the 401 challenge and holds an allocation.
fn allocated(now: Instant) -> Gatherer {
    let mut g = Gatherer::new(now, [1; 32]);
    g.set_servers(now, turn("1:alice"));
    let first = take(&mut g);
    assert_eq!(first.method(), ALLOCATE);
    assert_eq!(username(&first), None, "the first Allocate is unsigned");
    let challenge = answer(
        &first,
        MessageClass::ErrorResponse,
        vec![
            ErrorCode::new(401, "Unauthorized".into()).unwrap().into(),
            Realm::new("peerlink".into()).unwrap().into(),
            Nonce::new("n1".into()).unwrap().into(),
        ],
        None,
    );
    assert_eq!(
        g.handle_datagram(now, server(), &challenge),
        Incoming::Consumed
    );
    let signed = take(&mut g);
    assert_eq!(username(&signed).as_deref(), Some("1:alice"));
    let success = vec![
        XorRelayAddress::new(relayed()).into(),
        XorMappedAddress::new(mapped()).into(),
        Lifetime::from_u32(600).into(),
    ];
    // A forged success (signed with another password) is counted and changes nothing.
    let forged = answer(
        &signed,
        MessageClass::SuccessResponse,
        success.clone(),
        Some(&server_auth("1:alice", "guess")),
    );
    g.handle_datagram(now, server(), &forged);
    assert_eq!(g.stats().malformed, 1);
    assert_eq!(g.relayed(), None);
    // Unsigned, too.
    let unsigned = answer(
        &signed,
        MessageClass::SuccessResponse,
        success.clone(),
        None,
    );
    g.handle_datagram(now, server(), &unsigned);
    assert_eq!(g.stats().malformed, 2);
    assert_eq!(g.relayed(), None);
    let good = answer(
        &signed,
        MessageClass::SuccessResponse,
        success,
        Some(&server_auth("1:alice", "pw")),
    );
    g.handle_datagram(now, server(), &good);
    assert_eq!(
        events(&mut g),
        vec![
            GatherEvent::Reflexive(Some(mapped())),
            GatherEvent::Relayed(Some(relayed()))
        ]
    );
    // A permission for our own relay IP follows at once.
    let permission = take(&mut g);
    assert_eq!(permission.method(), CREATE_PERMISSION);
    let peers: Vec<_> = permission
        .attributes()
        .filter_map(|a| match a {
            Attribute::XorPeerAddress(p) => Some(p.address().ip()),
            _ => None,
        })
        .collect();
    assert_eq!(peers, vec![relayed().ip()]);
    let ok = answer(
        &permission,
        MessageClass::SuccessResponse,
        vec![],
        Some(&server_auth("1:alice", "pw")),
    );
    g.handle_datagram(now, server(), &ok);
    assert!(g.poll_transmit().is_none());
    g
}

/// Runs the timers until `until`, answering nothing; gives the requests sent.
fn run_silent(g: &mut Gatherer, mut now: Instant, until: Instant) -> Vec<Msg> {
    let mut sent = Vec::new();
    while let Some(at) = g.poll_timeout() {
        if at > until {
            break;
        }
        assert!(at >= now, "a timer in the past: the gatherer would spin");
        now = at;
        g.handle_timeout(now);
        while let Some((_, bytes)) = g.poll_transmit() {
            sent.push(msg::decode(&bytes).unwrap());
        }
    }
    sent
}

#[test]
fn allocation_checks_integrity_and_ignores_unknown_answers() {
    let now = Instant::now();
    let mut g = allocated(now);
    assert_eq!(g.stats().allocations, 1);
    assert_eq!(g.stats().errors, 0, "the 401 challenge is not an error");
    // An answer to nothing we asked.
    let stray = msg::encode(
        MessageClass::SuccessResponse,
        stun_codec::rfc5389::methods::BINDING,
        [9; 12],
        vec![XorMappedAddress::new("203.0.113.1:1".parse().unwrap()).into()],
        None,
        true,
    )
    .unwrap();
    assert_eq!(g.handle_datagram(now, server(), &stray), Incoming::Consumed);
    assert_eq!(g.stats().unexpected, 1);
    assert_eq!(g.reflexive(), Some(mapped()));
    // Not from the server: not ours, not counted.
    let other: SocketAddr = "192.0.2.1:3479".parse().unwrap();
    assert_eq!(g.handle_datagram(now, other, &stray), Incoming::NotOurs);
    assert_eq!(g.stats().unexpected, 1);
}

#[test]
fn a_refresh_answered_437_loses_the_allocation_and_allocates_again() {
    let now = Instant::now();
    let mut g = allocated(now);
    let at = g.poll_timeout().unwrap();
    let sent = run_silent(&mut g, now, now + Duration::from_secs(541));
    let refresh = sent
        .iter()
        .find(|m| m.method() == REFRESH)
        .expect("a Refresh");
    let lost = answer(
        refresh,
        MessageClass::ErrorResponse,
        vec![
            ErrorCode::new(437, "Allocation Mismatch".into())
                .unwrap()
                .into(),
        ],
        Some(&server_auth("1:alice", "pw")),
    );
    assert!(at <= now + Duration::from_secs(541));
    g.handle_datagram(now + Duration::from_secs(541), server(), &lost);
    assert_eq!(
        events(&mut g)
            .into_iter()
            .filter(|e| matches!(e, GatherEvent::Relayed(_)))
            .collect::<Vec<_>>(),
        vec![GatherEvent::Relayed(None)]
    );
    let again = take(&mut g);
    assert_eq!(again.method(), ALLOCATE);
    assert_eq!(
        username(&again).as_deref(),
        Some("1:alice"),
        "signed at once"
    );
}

#[test]
fn unanswered_refreshes_lose_the_allocation() {
    let now = Instant::now();
    let mut g = allocated(now);
    let sent = run_silent(&mut g, now, now + Duration::from_secs(600));
    let refreshes = sent.iter().filter(|m| m.method() == REFRESH).count();
    assert_eq!(
        refreshes,
        3 * 6,
        "three Refreshes of six transmissions each"
    );
    assert!(events(&mut g).contains(&GatherEvent::Relayed(None)));
    assert_eq!(g.relayed(), None);
    assert!(
        sent.iter().any(|m| m.method() == ALLOCATE),
        "allocates again"
    );
}

#[test]
fn a_silent_server_is_retried_with_bounded_backoff() {
    let now = Instant::now();
    let mut g = Gatherer::new(now, [2; 32]);
    g.set_servers(now, turn("1:alice"));
    let _ = take(&mut g);
    let sent = run_silent(&mut g, now, now + Duration::from_secs(3600));
    let troubles: Vec<_> = events(&mut g)
        .into_iter()
        .filter(|e| matches!(e, GatherEvent::Trouble(_)))
        .collect();
    assert_eq!(troubles.len(), 1, "said once: {troubles:?}");
    // Rounds of six transmissions at most a minute apart: ~60 rounds in an hour.
    assert!(
        (300..=400).contains(&(sent.len() + 1)),
        "{} requests",
        sent.len() + 1
    );
}

#[test]
fn refused_credentials_back_off_and_new_ones_retry_at_once() {
    let now = Instant::now();
    let mut g = Gatherer::new(now, [3; 32]);
    g.set_servers(now, turn("1:alice"));
    let first = take(&mut g);
    let challenge = answer(
        &first,
        MessageClass::ErrorResponse,
        vec![
            ErrorCode::new(401, "Unauthorized".into()).unwrap().into(),
            Realm::new("peerlink".into()).unwrap().into(),
            Nonce::new("n1".into()).unwrap().into(),
        ],
        None,
    );
    g.handle_datagram(now, server(), &challenge);
    let signed = take(&mut g);
    let refused = answer(
        &signed,
        MessageClass::ErrorResponse,
        vec![ErrorCode::new(401, "Unauthorized".into()).unwrap().into()],
        None,
    );
    g.handle_datagram(now, server(), &refused);
    let troubles = events(&mut g);
    assert!(
        matches!(&troubles[..], [GatherEvent::Trouble(why)] if why.contains("refused the credentials")),
        "{troubles:?}"
    );
    assert!(g.poll_transmit().is_none(), "no immediate retry");
    assert!(g.poll_timeout().unwrap() >= now + Duration::from_secs(2));
    g.set_servers(now, turn("2:alice"));
    let retry = take(&mut g);
    assert_eq!(retry.method(), ALLOCATE);
}

#[test]
fn new_credentials_keep_the_allocation_until_it_is_made_again() {
    let now = Instant::now();
    let mut g = allocated(now);
    g.set_servers(now, turn("2:alice"));
    assert!(events(&mut g).is_empty());
    assert_eq!(g.relayed(), Some(relayed()));
    let sent = run_silent(&mut g, now, now + Duration::from_secs(541));
    let refresh = sent.iter().find(|m| m.method() == REFRESH).unwrap();
    assert_eq!(
        username(refresh).as_deref(),
        Some("1:alice"),
        "the allocation's own"
    );
    let lost = answer(
        refresh,
        MessageClass::ErrorResponse,
        vec![
            ErrorCode::new(437, "Allocation Mismatch".into())
                .unwrap()
                .into(),
        ],
        Some(&server_auth("1:alice", "pw")),
    );
    g.handle_datagram(now, server(), &lost);
    let again = take(&mut g);
    assert_eq!(again.method(), ALLOCATE);
    assert_eq!(
        username(&again).as_deref(),
        Some("2:alice"),
        "a new allocation, new ones"
    );
}

#[test]
fn no_servers_means_idle() {
    let now = Instant::now();
    let mut g = allocated(now);
    g.set_servers(now, vec![]);
    assert_eq!(
        events(&mut g),
        vec![GatherEvent::Relayed(None), GatherEvent::Reflexive(None)]
    );
    assert_eq!(g.poll_timeout(), None);
    assert!(g.wrap(now, "192.0.2.9:1".parse().unwrap(), b"x").is_none());
    assert_eq!(
        g.handle_datagram(now, server(), b"anything"),
        Incoming::NotOurs
    );
}

#[test]
fn garbage_servers_are_dropped_from_the_list() {
    let now = Instant::now();
    let mut g = Gatherer::new(now, [4; 32]);
    let mut servers = vec![
        ServerConfig {
            addr: "0.0.0.0:3478".parse().unwrap(),
            turn: None,
        },
        ServerConfig {
            addr: "192.0.2.2:0".parse().unwrap(),
            turn: None,
        },
        ServerConfig {
            addr: "192.0.2.3:3478".parse().unwrap(),
            turn: Some(creds(&"x".repeat(10_000))),
        },
    ];
    servers.extend((0..100).map(|i| ServerConfig {
        addr: SocketAddr::new("192.0.2.10".parse().unwrap(), 1000 + i),
        turn: None,
    }));
    g.set_servers(now, servers);
    assert!(!g.is_server("0.0.0.0:3478".parse().unwrap()));
    assert!(!g.is_server("192.0.2.3:3478".parse().unwrap()));
    assert!(g.is_server("192.0.2.10:1000".parse().unwrap()));
    assert!(g.is_server("192.0.2.10:1007".parse().unwrap()));
    assert!(
        !g.is_server("192.0.2.10:1008".parse().unwrap()),
        "capped at {MAX_SERVERS}"
    );
}

#[test]
fn a_keepalive_notices_a_new_reflexive_address() {
    let now = Instant::now();
    let mut g = allocated(now);
    let at = g.poll_timeout().unwrap();
    assert!(
        at <= now + Duration::from_secs(20),
        "a keepalive within 20 s"
    );
    g.handle_timeout(at);
    let binding = take(&mut g);
    assert_eq!(binding.method(), stun_codec::rfc5389::methods::BINDING);
    let moved: SocketAddr = "198.51.100.7:4444".parse().unwrap();
    let answer = answer(
        &binding,
        MessageClass::SuccessResponse,
        vec![XorMappedAddress::new(moved).into()],
        None,
    );
    g.handle_datagram(at, server(), &answer);
    assert_eq!(events(&mut g), vec![GatherEvent::Reflexive(Some(moved))]);
    assert_eq!(g.relayed(), Some(relayed()), "the allocation stays");
}

#[test]
fn the_first_server_that_answers_is_used() {
    let now = Instant::now();
    let silent: SocketAddr = "203.0.113.1:3478".parse().unwrap();
    let mut g = Gatherer::new(now, [5; 32]);
    g.set_servers(
        now,
        vec![
            ServerConfig {
                addr: silent,
                turn: None,
            },
            ServerConfig {
                addr: server(),
                turn: None,
            },
        ],
    );
    let mut at = now;
    let request = loop {
        let (to, bytes) = match g.poll_transmit() {
            Some(sent) => sent,
            None => {
                at = g.poll_timeout().unwrap();
                g.handle_timeout(at);
                continue;
            }
        };
        if to == server() {
            break msg::decode(&bytes).unwrap();
        }
        assert_eq!(to, silent);
    };
    assert!(
        at >= now + Duration::from_secs(1),
        "after the first one gave up"
    );
    let answer = answer(
        &request,
        MessageClass::SuccessResponse,
        vec![XorMappedAddress::new(mapped()).into()],
        None,
    );
    g.handle_datagram(at, server(), &answer);
    let seen = events(&mut g);
    assert!(
        matches!(&seen[..], [GatherEvent::Trouble(why), GatherEvent::Reflexive(Some(m))]
            if why.contains("203.0.113.1:3478 did not answer") && *m == mapped()),
        "{seen:?}"
    );
    assert_eq!(g.server(), Some(server()));
    // The silent one's late answer is no longer looked at.
    assert_eq!(g.handle_datagram(at, silent, &answer), Incoming::Consumed);
    assert_eq!(g.stats().unexpected, 1);
}
