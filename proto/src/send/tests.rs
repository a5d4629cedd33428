//! Unit tests of the send stream: the window, backoff, selective acks and expiry.

use super::*;

const MS: Duration = Duration::from_millis(1);
const TIMING: Timing = Timing {
    initial_rto: Duration::from_millis(100),
    min_rto: MS,
    max_rto: Duration::from_secs(2),
};

#[test]
fn fragments_respect_the_window_and_backoff_doubles() {
    let t0 = Instant::now();
    let mut tx = SendStream::default();
    tx.push(
        0,
        vec![7; MAX_FRAGMENT * 3 + 1],
        t0 + Duration::from_secs(30),
    );
    let mut sent = 0;
    while tx.next_fragment(t0, 2).is_some() {
        sent += 1;
    }
    assert_eq!(sent, 2, "window of two");
    assert_eq!(tx.next_timeout(&TIMING), Some(t0 + 100 * MS));
    let mut out = Vec::new();
    tx.on_timeout(t0 + 100 * MS, &TIMING, &mut out);
    assert_eq!(tx.rto(&TIMING), 200 * MS);
    let resent: Vec<u64> =
        std::iter::from_fn(|| tx.next_fragment(t0 + 100 * MS, 2).map(|f| f.seq)).collect();
    assert_eq!(resent, vec![0, 1]);
    tx.on_timeout(t0 + 300 * MS, &TIMING, &mut out);
    assert_eq!(tx.rto(&TIMING), 400 * MS);
    assert!(out.is_empty());
}

#[test]
fn selective_acks_trigger_fast_retransmit_and_delivery() {
    let t0 = Instant::now();
    let mut tx = SendStream::default();
    for id in 0..5 {
        tx.push(id, vec![id as u8], t0 + Duration::from_secs(30));
    }
    for _ in 0..5 {
        tx.next_fragment(t0, 10).unwrap();
    }
    let mut out = Vec::new();
    // Fragment 0 lost; 1..5 arrived but wait behind the gap: not delivered yet.
    tx.on_ack(t0 + 10 * MS, 0, &[(1, 5)], &mut out);
    assert!(out.is_empty());
    let again = tx.next_fragment(t0 + 10 * MS, 10).unwrap();
    assert_eq!((again.seq, again.payload), (0, &[0u8][..]));
    assert!(
        tx.next_fragment(t0 + 10 * MS, 10).is_none(),
        "held fragments are not resent"
    );
    tx.on_ack(t0 + 20 * MS, 5, &[], &mut out);
    let ids: Vec<MsgId> = out
        .iter()
        .map(|o| match o {
            Outcome::Delivered(id, rtt) if *rtt == 20 * MS => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    assert!(tx.is_idle());
}

#[test]
fn expiry_restarts_the_stream() {
    let t0 = Instant::now();
    let mut tx = SendStream::default();
    tx.push(0, vec![1], t0 + 50 * MS);
    tx.push(1, vec![2], t0 + 80 * MS);
    tx.next_fragment(t0, 10).unwrap();
    tx.next_fragment(t0, 10).unwrap();
    let mut out = Vec::new();
    tx.on_timeout(t0 + 50 * MS, &TIMING, &mut out);
    assert_eq!(out, vec![Outcome::Expired(0)]);
    assert_eq!(tx.stream, 1);
    let first = tx.next_fragment(t0 + 50 * MS, 10).unwrap();
    assert_eq!((first.seq, first.payload), (0, &[2u8][..]));
}
