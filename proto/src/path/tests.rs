//! Unit tests of path selection: ranking, probing rounds and their bounds, failover,
//! keep-alives and hostile addresses, driven on a virtual clock.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, last], 4000))
}

const HOST: u8 = 1;
const SRFLX: u8 = 2;
const RELAY: u8 = 3;

/// Paths with our own relay and the peer's host, server-reflexive and relay addresses.
fn three(t0: Instant) -> Paths {
    let mut p = Paths::default();
    p.set_own_relay(t0, true);
    p.learn(t0, addr(HOST), PathKind::Host);
    p.learn(t0, addr(SRFLX), PathKind::Direct);
    p.learn(t0, addr(RELAY), PathKind::Relay);
    p
}

/// Runs every timer of `p` from `from` to `end`, touching the conversation every `touch`
/// (if any); returns every probe that fell due, with its time since `t0`.
fn drive(
    p: &mut Paths,
    t0: Instant,
    from: Duration,
    end: Duration,
    touch: Option<Duration>,
) -> Vec<(Duration, SocketAddr)> {
    let mut probes = Vec::new();
    let mut now = t0 + from;
    let mut next_touch = touch.map(|_| now);
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 1_000_000, "paths timers never settle");
        if let Some(t) = next_touch
            && t <= now
        {
            p.touch(now);
            next_touch = Some(t + touch.unwrap());
        }
        if p.poll_timeout().is_some_and(|t| t <= now) {
            p.handle_timeout(now);
        }
        while let Some(probe) = p.pop_due() {
            probes.push((now - t0, probe.addr));
        }
        let next = [p.poll_timeout(), next_touch].into_iter().flatten().min();
        match next {
            Some(t) if t <= t0 + end => {
                assert!(t >= now, "a timer in the past: {:?}", now - t);
                // A timer that is due now but did nothing would spin: step past it.
                now = if t == now { now + MS } else { t };
            }
            _ => return probes,
        }
    }
}

fn at(probes: &[(Duration, SocketAddr)], a: SocketAddr) -> Vec<Duration> {
    probes
        .iter()
        .filter(|(_, to)| *to == a)
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn relay_first_then_direct_then_host() {
    let t0 = Instant::now();
    let mut p = three(t0);
    assert_eq!(p.current(), Some((addr(RELAY), PathKind::Relay)));
    assert!(p.take_change());
    // An answer from the server-reflexive address: direct beats relay.
    p.heard(t0 + 50 * MS, addr(SRFLX), PathKind::Direct);
    assert_eq!(p.current(), Some((addr(SRFLX), PathKind::Direct)));
    assert!(p.take_change());
    // The relay still works; it does not take over again.
    p.heard(t0 + 60 * MS, addr(RELAY), PathKind::Relay);
    assert_eq!(p.current(), Some((addr(SRFLX), PathKind::Direct)));
    assert!(!p.take_change());
    // The same LAN beats everything.
    p.heard(t0 + 70 * MS, addr(HOST), PathKind::Direct);
    assert_eq!(p.current(), Some((addr(HOST), PathKind::Host)));
    assert!(p.take_change());
    p.heard(t0 + 80 * MS, addr(SRFLX), PathKind::Direct);
    assert_eq!(p.current(), Some((addr(HOST), PathKind::Host)));
    assert!(!p.take_change());
}

#[test]
fn equal_paths_never_flap() {
    let t0 = Instant::now();
    let mut p = Paths::default();
    p.set_own_relay(t0, true);
    p.learn(t0, addr(RELAY), PathKind::Relay);
    p.learn(t0, addr(10), PathKind::Direct);
    p.learn(t0, addr(11), PathKind::Direct);
    p.take_change();
    p.heard(t0 + MS, addr(11), PathKind::Direct);
    assert_eq!(p.current(), Some((addr(11), PathKind::Direct)));
    assert!(p.take_change());
    for i in 0..200u32 {
        let a = if i % 2 == 0 { addr(10) } else { addr(11) };
        p.heard(t0 + 2 * MS + i * MS, a, PathKind::Direct);
        assert_eq!(p.current().unwrap().0, addr(11), "flapped at {i}");
        assert!(!p.take_change());
    }
}

#[test]
fn a_peers_relay_is_no_path_without_a_relay_of_our_own() {
    let t0 = Instant::now();
    let mut p = Paths::default();
    p.learn(t0, addr(RELAY), PathKind::Relay);
    p.learn(t0, addr(SRFLX), PathKind::Direct);
    assert_ne!(
        p.current().map(|(_, k)| k),
        Some(PathKind::Relay),
        "chose a relay address we cannot reach"
    );
    // Once we have a relay of our own, it is the path until something direct answers.
    p.set_own_relay(t0, true);
    assert_eq!(p.current(), Some((addr(RELAY), PathKind::Relay)));
    // Losing it: back to an address we can reach.
    p.set_own_relay(t0 + SEC, false);
    assert_eq!(p.current(), Some((addr(SRFLX), PathKind::Direct)));
}

#[test]
fn a_round_is_five_probes_with_growing_gaps_and_never_to_the_relay() {
    let t0 = Instant::now();
    let mut p = three(t0);
    let probes = drive(&mut p, t0, Duration::ZERO, 60 * SEC, None);
    let gaps = [0, 100, 300, 700, 1500].map(|ms| ms * MS).to_vec();
    assert_eq!(at(&probes, addr(HOST)), gaps, "host");
    assert_eq!(at(&probes, addr(SRFLX)), gaps, "srflx");
    assert_eq!(at(&probes, addr(RELAY)), vec![], "relay");
    assert_eq!(probes.len(), 2 * PROBES_PER_ROUND as usize);
    // Inactive: no further rounds, no timers at all.
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn an_address_silent_for_three_rounds_is_never_probed_again() {
    let t0 = Instant::now();
    let mut p = three(t0);
    let probes = drive(&mut p, t0, Duration::ZERO, 600 * SEC, Some(10 * SEC));
    let max = usize::from(PROBES_PER_ROUND) * usize::from(MAX_SILENT_ROUNDS);
    for a in [addr(HOST), addr(SRFLX)] {
        let times = at(&probes, a);
        assert_eq!(times.len(), max, "{a}: {times:?}");
        // Rounds come ROUND_EVERY apart while active.
        assert!(times[max - 1] < 2 * ROUND_EVERY + 2 * SEC, "{times:?}");
    }
    assert_eq!(probes.len(), 2 * max);
    // Learned anew (a fresh record from the index): probed again, one round.
    let now = t0 + 600 * SEC;
    p.learn(now, addr(SRFLX), PathKind::Direct);
    let probes = drive(&mut p, t0, 600 * SEC, 602 * SEC, None);
    assert_eq!(
        at(&probes, addr(SRFLX)).len(),
        usize::from(PROBES_PER_ROUND)
    );
    assert_eq!(at(&probes, addr(HOST)), vec![]);
}

#[test]
fn a_peer_known_by_one_address_gets_no_probes_and_no_keepalives() {
    let t0 = Instant::now();
    let mut p = Paths::default();
    p.learn(t0, addr(SRFLX), PathKind::Direct);
    assert_eq!(p.current(), Some((addr(SRFLX), PathKind::Direct)));
    p.heard(t0, addr(SRFLX), PathKind::Direct);
    let probes = drive(&mut p, t0, Duration::ZERO, 600 * SEC, Some(5 * SEC));
    assert_eq!(probes, vec![]);
}

#[test]
fn failover_after_silence_to_the_relay_and_back_when_direct_answers() {
    let t0 = Instant::now();
    let mut p = three(t0);
    drive(&mut p, t0, Duration::ZERO, 2 * SEC, None);
    p.heard(t0 + 2 * SEC, addr(SRFLX), PathKind::Direct);
    p.take_change();
    assert_eq!(p.current().unwrap().0, addr(SRFLX));
    // Data goes out and nothing comes back.
    let sent = t0 + 3 * SEC;
    p.expecting(sent);
    // Probed three times over the failover time, so one loss does not move anything.
    for k in 1..=3 {
        let t = sent + FAILOVER_AFTER * k / 4;
        assert_eq!(p.poll_timeout(), Some(t));
        p.handle_timeout(t);
        assert_eq!(p.pop_due().map(|probe| probe.addr), Some(addr(SRFLX)));
        assert_eq!(p.pop_due(), None);
    }
    assert_eq!(p.poll_timeout(), Some(sent + FAILOVER_AFTER));
    p.handle_timeout(sent + FAILOVER_AFTER - MS);
    assert_eq!(p.current().unwrap().0, addr(SRFLX), "failed over too early");
    p.handle_timeout(sent + FAILOVER_AFTER);
    assert_eq!(p.current(), Some((addr(RELAY), PathKind::Relay)));
    assert!(p.take_change());
    // A new round probes the failed direct path (and the never-heard host).
    let probes = drive(&mut p, t0, 4 * SEC, 6 * SEC, None);
    assert_eq!(
        at(&probes, addr(SRFLX)).len(),
        usize::from(PROBES_PER_ROUND)
    );
    assert_eq!(at(&probes, addr(RELAY)), vec![]);
    // It answers again: direct once more.
    p.heard(t0 + 6 * SEC, addr(SRFLX), PathKind::Direct);
    assert_eq!(p.current(), Some((addr(SRFLX), PathKind::Direct)));
    assert!(p.take_change());
}

#[test]
fn failover_waits_three_round_trips_on_a_slow_path() {
    let t0 = Instant::now();
    let mut p = three(t0);
    p.heard(t0, addr(SRFLX), PathKind::Direct);
    p.rtt_sample(addr(SRFLX), 500 * MS);
    p.expecting(t0 + SEC);
    p.handle_timeout(t0 + SEC + FAILOVER_AFTER);
    assert_eq!(p.current().unwrap().0, addr(SRFLX));
    p.handle_timeout(t0 + SEC + 1500 * MS);
    assert_eq!(p.current().unwrap().0, addr(RELAY));
}

#[test]
fn the_relay_is_never_marked_failed() {
    let t0 = Instant::now();
    let mut p = three(t0);
    for i in 0..10 {
        let t = t0 + i * 5 * SEC;
        p.expecting(t);
        p.handle_timeout(t + FAILOVER_AFTER);
        assert_eq!(p.current(), Some((addr(RELAY), PathKind::Relay)));
    }
    assert!(
        p.addrs
            .iter()
            .all(|a| !a.failed || a.kind != PathKind::Relay)
    );
}

#[test]
fn keepalives_every_fifteen_seconds_while_active_only() {
    let t0 = Instant::now();
    let mut p = three(t0);
    drive(&mut p, t0, Duration::ZERO, 2 * SEC, None);
    let direct_at = t0 + 2 * SEC;
    p.heard(direct_at, addr(SRFLX), PathKind::Direct);
    p.touch(direct_at);
    // Every keep-alive is answered at once.
    let mut probes = Vec::new();
    let mut now = direct_at;
    while let Some(t) = p.poll_timeout() {
        assert!(t >= now && t < t0 + 3600 * SEC, "timer at {:?}", t - t0);
        now = t;
        p.handle_timeout(now);
        while let Some(probe) = p.pop_due() {
            probes.push((now - t0, probe.addr));
            if probe.addr == addr(SRFLX) {
                p.heard(now, addr(SRFLX), PathKind::Direct);
            }
        }
    }
    let keepalives = at(&probes, addr(SRFLX));
    assert!(!keepalives.is_empty());
    for pair in keepalives.windows(2) {
        assert_eq!(pair[1] - pair[0], KEEPALIVE_EVERY, "{keepalives:?}");
    }
    assert!(keepalives[0] - 2 * SEC <= KEEPALIVE_EVERY);
    // None after the conversation went quiet.
    let last = *keepalives.last().unwrap();
    assert!(last <= 2 * SEC + ACTIVE_FOR, "{last:?}");
    assert!(last + KEEPALIVE_EVERY >= 2 * SEC + ACTIVE_FOR, "{last:?}");
    // The direct path stayed current throughout.
    assert_eq!(p.current().unwrap().0, addr(SRFLX));
}

#[test]
fn unusable_addresses_are_ignored() {
    let t0 = Instant::now();
    let mut p = Paths::default();
    for a in [
        SocketAddr::from(([203, 0, 113, 9], 0)),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4000)),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 4000)),
        SocketAddr::from(([224, 0, 0, 1], 4000)),
        SocketAddr::from((IpAddr::V6("ff02::1".parse().unwrap()), 4000)),
    ] {
        p.learn(t0, a, PathKind::Direct);
        p.heard(t0, a, PathKind::Direct);
        assert_eq!(p.addrs(t0).count(), 0, "{a}");
        assert_eq!(p.current(), None, "{a}");
    }
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn a_flood_of_addresses_keeps_the_current_path() {
    let t0 = Instant::now();
    let mut p = three(t0);
    p.heard(t0, addr(SRFLX), PathKind::Direct);
    p.take_change();
    for i in 0..200u16 {
        let a = SocketAddr::from(([198, 51, 100, (i % 250) as u8], 5000 + i));
        p.learn(t0 + u32::from(i) * MS, a, PathKind::Direct);
        assert!(p.addrs.len() <= MAX_ADDRS);
    }
    assert_eq!(p.current(), Some((addr(SRFLX), PathKind::Direct)));
    assert!(!p.take_change());
    // Unanswered addresses are bounded too: each address gets one round per learning.
    let probes = drive(&mut p, t0, SEC, 10 * SEC, None);
    assert!(probes.len() <= MAX_ADDRS * usize::from(PROBES_PER_ROUND));
}

#[test]
fn nonces_are_unique() {
    let t0 = Instant::now();
    let mut p = three(t0);
    let mut nonces = std::collections::HashSet::new();
    let mut now = t0;
    while let Some(t) = p.poll_timeout() {
        now = now.max(t);
        p.handle_timeout(now);
        while let Some(probe) = p.pop_due() {
            assert!(nonces.insert(probe.nonce), "nonce {} twice", probe.nonce);
        }
    }
    assert_eq!(nonces.len(), 2 * usize::from(PROBES_PER_ROUND));
}

#[test]
fn data_on_another_path_checks_the_current_one() {
    let t0 = Instant::now();
    let mut p = three(t0);
    drive(&mut p, t0, Duration::ZERO, 2 * SEC, None);
    p.heard(t0 + 2 * SEC, addr(SRFLX), PathKind::Direct);
    p.take_change();
    // The peer's data comes through the relay: one probe on the current path, no more
    // while it is outstanding.
    let now = t0 + 3 * SEC;
    p.check_current(now);
    p.check_current(now + MS);
    let probe = p.pop_due().expect("a probe of the current path");
    assert_eq!(probe.addr, addr(SRFLX));
    assert_eq!(p.pop_due(), None);
    // Unanswered: the path fails and the relay takes over.
    p.handle_timeout(now + FAILOVER_AFTER);
    assert_eq!(p.current(), Some((addr(RELAY), PathKind::Relay)));
    // Answered instead: nothing changes.
    let mut q = three(t0);
    q.heard(t0, addr(SRFLX), PathKind::Direct);
    q.check_current(now);
    q.heard(now + 20 * MS, addr(SRFLX), PathKind::Direct);
    q.handle_timeout(now + FAILOVER_AFTER);
    assert_eq!(q.current().unwrap().0, addr(SRFLX));
    // On the relay there is nothing to check.
    let mut r = three(t0);
    r.check_current(now);
    assert_eq!(r.pop_due(), None);
}

#[test]
fn one_lost_answer_does_not_fail_a_path() {
    let t0 = Instant::now();
    let mut p = three(t0);
    p.heard(t0, addr(SRFLX), PathKind::Direct);
    p.take_change();
    p.expecting(t0 + SEC);
    p.handle_timeout(t0 + SEC + FAILOVER_AFTER / 4);
    assert!(p.pop_due().is_some());
    // The re-check is answered.
    p.heard(t0 + SEC + FAILOVER_AFTER / 3, addr(SRFLX), PathKind::Direct);
    p.handle_timeout(t0 + SEC + FAILOVER_AFTER);
    assert_eq!(p.current().unwrap().0, addr(SRFLX));
    assert!(!p.take_change());
    // A peer known by one address gets no re-checks: there is nothing to fail over to.
    let mut q = Paths::default();
    q.learn(t0, addr(SRFLX), PathKind::Direct);
    q.expecting(t0);
    assert_eq!(q.poll_timeout(), Some(t0 + FAILOVER_AFTER));
}

#[test]
fn a_peer_reflexive_address_counts_once_it_answers_a_probe() {
    let t0 = Instant::now();
    let mut p = three(t0);
    let prflx = addr(50);
    // Datagrams from it (a copy raced from elsewhere looks just the same) do not make it a
    // path, however many.
    for i in 0..10 {
        p.heard(t0 + i * MS, prflx, PathKind::Direct);
        assert_eq!(p.current(), Some((addr(RELAY), PathKind::Relay)));
    }
    assert!(p.addrs(t0).any(|(a, _, alive)| a == prflx && !alive));
    // It is probed, one round (not restarted by every datagram).
    let probes = drive(&mut p, t0, Duration::ZERO, 3 * SEC, None);
    assert_eq!(at(&probes, prflx).len(), usize::from(PROBES_PER_ROUND));
    // Its answer proves it.
    p.answered(t0 + 3 * SEC, prflx, PathKind::Direct);
    assert_eq!(p.current(), Some((prflx, PathKind::Direct)));
}

#[test]
fn sending_again_to_an_address_does_not_restart_its_probing() {
    let t0 = Instant::now();
    let mut p = three(t0);
    for i in 0..100 {
        p.sending_to(t0 + i * 100 * MS, addr(SRFLX), PathKind::Direct);
    }
    let probes = drive(&mut p, t0, Duration::ZERO, 20 * SEC, None);
    assert_eq!(
        at(&probes, addr(SRFLX)).len(),
        usize::from(PROBES_PER_ROUND)
    );
    // A new address is learned (and probed) as usual.
    p.sending_to(t0 + 20 * SEC, addr(60), PathKind::Direct);
    let probes = drive(&mut p, t0, 20 * SEC, 30 * SEC, None);
    assert_eq!(at(&probes, addr(60)).len(), usize::from(PROBES_PER_ROUND));
}
