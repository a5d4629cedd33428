//! Any sequence of datagrams, from a few addresses, at any pace: a `SecureEndpoint` never
//! panics, and nothing it is fed makes it deliver a message (no datagram here carries a valid
//! session, and forging one is the attacker's whole problem). Sources span several IPs and
//! ports, and bursts of HsInits put it under load, so cookie replies, cookied HsInits, the
//! per-IP budgets and the half-open table are exercised too.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use proto::identity::Identity;
use proto::{Config, Event, SecureConfig, SecureEndpoint};

fuzz_target!(|data: &[u8]| {
    let mut endpoint = SecureEndpoint::new(
        Identity::from_secret([7; 32]),
        1,
        SecureConfig {
            endpoint: Config::default(),
            seed: [9; 32],
        },
    );
    let mut now = Instant::now();
    // Each record: 1 byte source (2 bits IP, 2 bits port), 1 byte milliseconds to wait, 2 bytes
    // length, the datagram.
    let mut rest = data;
    while rest.len() >= 4 {
        let ip = [127, 0, 0, 1 + (rest[0] >> 2) % 4];
        let from = SocketAddr::from((ip, 40_000 + u16::from(rest[0] % 4)));
        now += Duration::from_millis(u64::from(rest[1]));
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let (datagram, tail) = rest[4..].split_at(len);
        rest = tail;
        endpoint.handle_datagram(now, from, datagram);
        if endpoint.poll_timeout().is_some_and(|t| t <= now) {
            endpoint.handle_timeout(now);
        }
        while endpoint.poll_transmit(now).is_some() {}
        while let Some(event) = endpoint.poll_event() {
            assert!(
                !matches!(event, Event::Message { .. }),
                "a message from bytes nobody signed: {event:?}"
            );
        }
    }
});
