//! Handshake floods against [`proto::SecureEndpoint`] on the deterministic harness: under load
//! the responder answers HsInits with cookie replies (no Diffie-Hellman, no state), a real
//! initiator still gets through, an address flooding with valid cookies is held to its budget
//! without blocking others, and stale, forged or borrowed cookies are refused.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::flood::*;
use common::secure::*;
use proto::Event;
use proto::sim::{CLEAN, DEAD, MS, SEC};
use proto::wire::{self, Sealed};

/// Below the load threshold nothing changes: a crowd of new peers handshakes without a single
/// cookie reply or extra round trip.
#[test]
fn below_load_there_are_no_cookies() {
    let mut p = net(&[CLEAN, CLEAN], 20);
    let mut swarm = Swarm::new(&mut p, B, LOAD_INITS as usize - 4, |i| {
        addr(1, i as u8 + 1, 4000)
    });
    swarm.step(&mut p, B);
    swarm.step(&mut p, B);
    let stats = p.secure(B);
    assert_eq!(stats.handshakes, LOAD_INITS - 4, "{stats:?}");
    assert_eq!((stats.cookie_replies, stats.bad_cookies), (0, 0));
    p.send_to(A, B, b"hi".to_vec());
    p.run_for(SEC);
    assert_eq!(p.messages_from(B, A), [b"hi"]);
    assert_eq!(p.secure(B).cookie_replies, 0);
}

/// 2 000 valid HsInits per second from spoofed addresses for 6 s: once the load is noticed
/// (within the first 16) none of them costs a Diffie-Hellman, each gets one cookie reply no
/// larger than itself, and a real initiator arriving mid-flood gets its message through within
/// a few round trips.
#[test]
fn a_flood_costs_no_handshakes_and_a_real_peer_still_gets_through() {
    let mut p = net(&[CLEAN, CLEAN], 21);
    let pool = hs_inits(128);
    let (mut next, mut sent_at) = (0, None);
    for ms in 0..6000 {
        flood(&mut p, B, &pool, 2, &mut next);
        if ms == 2000 {
            p.send_to(A, B, b"through the flood".to_vec());
            sent_at = Some(p.time);
        }
        p.run_for(MS);
    }
    let a_addr = p.nodes[A].addr;
    let flooders = |to: SocketAddr| to != a_addr;
    let stats = p.secure(B);
    let expensive = responses_to(&p, B, flooders) as u64;
    assert!(
        expensive < LOAD_INITS,
        "{expensive} handshakes answered for the flood: {stats:?}"
    );
    // One more went to the real peer.
    assert_eq!(
        stats.cookie_replies,
        next as u64 - expensive + 1,
        "{stats:?}"
    );
    let replies = sent_to(&p, B, flooders);
    assert!(
        replies
            .iter()
            .all(|s| matches!(s, Sealed::HsResp { .. } | Sealed::CookieReply { .. }))
    );
    let biggest = p.nodes[B].sent.iter().map(|s| s.bytes.len()).max().unwrap();
    assert!(biggest <= pool[0].len(), "a {biggest}-byte answer");

    // The real peer: one cookie round trip, one handshake, delivered.
    let arrived = p.events(B, |at, _| Some(at));
    assert_eq!(p.messages_from(B, A), [b"through the flood"]);
    let took = arrived[0] - sent_at.unwrap();
    assert!(took <= 100 * MS, "delivered {took:?} after sending");
    assert_eq!(responses_to(&p, B, |to| to == a_addr), 1);
    assert_eq!(p.secure(A).bad_cookies, 0);
}

/// 300 real initiators behind one IP, all speaking cookies, against a responder: that IP gets
/// its burst and then its rate of handshakes, the rest is dropped; meanwhile a peer at another
/// IP connects at once.
#[test]
fn valid_cookies_from_one_ip_are_rate_limited_without_blocking_another() {
    let mut p = net(&[CLEAN, CLEAN], 22);
    let hog = IpAddr::V4(Ipv4Addr::new(10, 200, 9, 9));
    let mut swarm = Swarm::new(&mut p, B, 300, |i| SocketAddr::new(hog, 20_000 + i as u16));
    let mut sent_at = None;
    for ms in (0..4000).step_by(10) {
        swarm.step(&mut p, B);
        if ms == 500 {
            p.send_to(A, B, b"not starved".to_vec());
            sent_at = Some(p.time);
        }
        p.run_for(10 * MS);
    }
    let stats = p.secure(B);
    let hogged = responses_to(&p, B, |to| to.ip() == hog) as u64;
    // Before the load was noticed, then the burst and the rate for 4 s.
    let allowed = (LOAD_INITS - 1) + IP_BURST + IP_RATE * 4;
    assert!(
        hogged <= allowed,
        "{hogged} handshakes for one IP: {stats:?}"
    );
    assert!(stats.rate_limited >= 100, "{stats:?}");
    assert!(stats.cookie_replies >= 200, "{stats:?}");
    assert_eq!(stats.bad_cookies, 0, "{stats:?}");
    // The hog's initiators did use their cookies (the responder counts the rest as limited).
    let cookied = swarm
        .members
        .iter()
        .filter(|(_, ep)| ep.secure_stats().bad_cookies == 0);
    assert_eq!(cookied.count(), 300);

    assert_eq!(p.messages_from(B, A), [b"not starved"]);
    let a = p.nodes[A].id;
    let arrived = p.events(B, |at, e| match e {
        Event::Message { from, .. } if *from == a => Some(at),
        _ => None,
    })[0];
    let took = arrived - sent_at.unwrap();
    assert!(took <= 100 * MS, "delivered {took:?} after sending");
}

/// Under load: a random MAC, a valid cookied HsInit replayed from another address (port or
/// IP), and a cookie older than two secret lifetimes are refused (no handshake, a fresh cookie
/// reply); a cookie from the previous secret still works, and a forged or misbound cookie
/// reply does not make an initiator resend.
#[test]
fn stale_forged_and_borrowed_cookies_are_refused() {
    let mut p = net(&[CLEAN, CLEAN], 23);
    let pool = hs_inits(64);
    let mut next = 0;
    keep_busy(&mut p, B, &pool, &mut next);
    // One real initiator obtains a cookie; capture its cookied HsInit.
    let home = addr(7, 7, 7000);
    let mut swarm = Swarm::new(&mut p, B, 1, |_| home);
    let mark = p.nodes[B].sent.len();
    swarm.step(&mut p, B);
    assert!(matches!(
        p.sealed_sent(B, mark)[0],
        Sealed::CookieReply { .. }
    ));
    // Capture the cookied HsInit as it leaves (the swarm hands it over itself, so re-run it).
    let cookied = {
        let (_, ep) = &mut swarm.members[0];
        // The retry timer resends exactly the cookied message.
        let later = p.now() + 600 * MS;
        ep.handle_timeout(later);
        ep.poll_transmit(later).expect("a retry").bytes
    };
    let Ok(Sealed::HsInitCookie { sender, noise, mac }) = wire::decode_sealed(&cookied) else {
        panic!("the retry carries no cookie");
    };
    // Handshakes answered to anyone but the flood (which uses ports from 1000 up).
    let resps = |p: &SecureNet| responses_to(p, B, |to| to.port() >= 7000);

    let attempts: Vec<(SocketAddr, Vec<u8>)> = vec![
        // A random MAC.
        (
            home,
            wire::encode_sealed(&Sealed::HsInitCookie {
                sender,
                noise: noise.clone(),
                mac: [0xEE; 16],
            }),
        ),
        // The valid datagram from another port of the same IP, and from another IP.
        (addr(7, 7, 7001), cookied.clone()),
        (addr(7, 8, 7000), cookied.clone()),
        // Someone else's HsInit with this MAC.
        (
            home,
            wire::encode_sealed(&Sealed::HsInitCookie {
                sender,
                noise: pool[1][6..].to_vec(),
                mac,
            }),
        ),
    ];
    for (from, bytes) in attempts {
        p.void.insert(from);
        let (before, bad) = (resps(&p), p.secure(B).bad_cookies);
        let mark = p.nodes[B].sent.len();
        p.hand(B, from, &bytes);
        assert_eq!(resps(&p), before, "answered a bad cookie from {from}");
        assert_eq!(p.secure(B).bad_cookies, bad + 1);
        let answers = p.sealed_sent(B, mark);
        assert!(
            matches!(answers[..], [Sealed::CookieReply { .. }]),
            "{from}: {answers:?}"
        );
    }
    // The genuine one from its own address works…
    let before = resps(&p);
    p.hand(B, home, &cookied);
    assert_eq!(resps(&p), before + 1);
    // …still after the secret rotated once (121 s later)…
    p.time += 121 * SEC;
    keep_busy(&mut p, B, &pool, &mut next);
    p.hand(B, home, &cookied);
    assert_eq!(resps(&p), before + 2);
    // …but not after it rotated twice.
    p.time += 121 * SEC;
    keep_busy(&mut p, B, &pool, &mut next);
    let bad = p.secure(B).bad_cookies;
    p.hand(B, home, &cookied);
    assert_eq!(resps(&p), before + 2);
    assert_eq!(p.secure(B).bad_cookies, bad + 1);
}

/// An initiator resends its HsInit at once on a genuine cookie reply, and ignores a forged
/// one, one sealed for another HsInit, and a replay of the genuine one.
#[test]
fn only_a_genuine_cookie_reply_makes_an_initiator_resend() {
    let mut p = net(&[DEAD, CLEAN], 24);
    p.send_to(A, B, b"hello".to_vec());
    p.run_for(MS);
    let (init, sender, noise) = match p.sealed_sent(A, 0).into_iter().next() {
        Some(Sealed::HsInit { sender, noise }) => (
            wire::encode_sealed(&Sealed::HsInit {
                sender,
                noise: noise.clone(),
            }),
            sender,
            noise,
        ),
        other => panic!("A began with {other:?}"),
    };
    // B under load answers A's HsInit (handed over directly) with a genuine cookie reply.
    let pool = hs_inits(64);
    let mut next = 0;
    keep_busy(&mut p, B, &pool, &mut next);
    let a_addr = p.nodes[A].addr;
    let mark = p.nodes[B].sent.len();
    p.hand(B, a_addr, &init);
    let genuine = p.nodes[B].sent[mark].bytes.clone();
    let Ok(Sealed::CookieReply { nonce, cookie, .. }) = wire::decode_sealed(&genuine) else {
        panic!("no cookie reply");
    };
    // A reply to another HsInit (another member of the pool) under A's index.
    let mark = p.nodes[B].sent.len();
    p.hand(B, a_addr, &pool[5]);
    let Ok(Sealed::CookieReply {
        nonce: other_nonce,
        cookie: other_cookie,
        ..
    }) = wire::decode_sealed(&p.nodes[B].sent[mark].bytes)
    else {
        panic!("no cookie reply");
    };
    let mut flipped = cookie;
    flipped[3] ^= 1;
    let fakes = [
        (nonce, flipped),
        (other_nonce, other_cookie),
        ([0; 24], [0; 32]),
    ];
    for (nonce, cookie) in fakes {
        let before = p.nodes[A].sent.len();
        let reply = Sealed::CookieReply {
            receiver: sender,
            nonce,
            cookie,
        };
        p.hand(A, p.nodes[B].addr, &wire::encode_sealed(&reply));
        assert_eq!(p.nodes[A].sent.len(), before, "A resent on a fake reply");
    }
    assert_eq!(p.secure(A).bad_cookies, 3);
    // The genuine reply: A resends at once, with a MAC over exactly its HsInit.
    let before = p.nodes[A].sent.len();
    p.hand(A, p.nodes[B].addr, &genuine);
    match &p.sealed_sent(A, before)[..] {
        [
            Sealed::HsInitCookie {
                sender: s,
                noise: n,
                ..
            },
        ] => {
            assert_eq!((*s, n), (sender, &noise));
        }
        other => panic!("A answered the cookie with {other:?}"),
    }
    // Replayed, it changes nothing.
    let before = p.nodes[A].sent.len();
    p.hand(A, p.nodes[B].addr, &genuine);
    assert_eq!(p.nodes[A].sent.len(), before);
}
