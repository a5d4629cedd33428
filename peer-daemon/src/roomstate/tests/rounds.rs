//! The sync between members when messages are lost, damaged or go round in circles.

use super::*;

#[test]
fn no_flipped_byte_gets_a_forged_value_in_or_panics() {
    let (alice_id, mut alice) = member(1);
    alice.put("r", "topic", Some("the real one")).unwrap();
    alice.put("r", "other", Some("also real")).unwrap();
    let (bob_id, mut bob) = member(2);
    let now = Instant::now();
    let (a, b) = (alice_id.uuid(), bob_id.uuid());
    let (hello, hello_sigs) = bob.generate("r", a, now).unwrap();
    alice.receive("r", b, now, &hello, &hello_sigs).unwrap();
    let (data, sigs) = alice.generate("r", b, now).unwrap();
    let honest = {
        let mut fresh = member(2).1;
        fresh.receive("r", a, now, &data, &sigs).unwrap();
        fresh.entries("r")
    };
    assert_eq!(honest.len(), 2);
    let mut refused = BTreeMap::new();
    for (which, bytes) in [(0, &data), (1, &sigs)] {
        for at in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let (mut data, mut sigs) = (data.clone(), sigs.clone());
                [&mut data, &mut sigs][which][at] ^= bit;
                let mut fresh = member(2).1;
                match fresh.receive("r", a, now, &data, &sigs) {
                    // Flips in what no signature covers (heads, bloom filter) may pass, and a
                    // change Automerge cannot read is left out; a changed change never gets in.
                    Ok(_) => assert!(
                        fresh
                            .entries("r")
                            .iter()
                            .all(|entry| honest.contains(entry)),
                        "byte {at} of {which}: {:?}",
                        fresh.entries("r")
                    ),
                    Err(reason) => *refused.entry(reason).or_insert(0) += 1,
                }
            }
        }
    }
    assert!(refused.contains_key(&Reject::Signature), "{refused:?}");
    assert!(refused.contains_key(&Reject::Malformed), "{refused:?}");
}

/// Exchanges between `a` and `b` about `room` at `now`, `turns` at most; whether they went
/// quiet.
fn settle(
    a: (&mut RoomStates, Uuid),
    b: (&mut RoomStates, Uuid),
    now: Instant,
    turns: usize,
) -> bool {
    let ((a, a_id), (b, b_id)) = (a, b);
    for _ in 0..turns {
        let mut quiet = true;
        if let Some((data, sigs)) = a.generate("r", b_id, now) {
            let _ = b.receive("r", a_id, now, &data, &sigs);
            quiet = false;
        }
        if let Some((data, sigs)) = b.generate("r", a_id, now) {
            let _ = a.receive("r", b_id, now, &data, &sigs);
            quiet = false;
        }
        if quiet {
            return true;
        }
    }
    false
}

#[test]
fn what_a_lost_message_carried_is_offered_again() {
    let (alice_id, mut alice) = member(1);
    let (carol_id, mut carol) = member(3);
    let (a, c) = (alice_id.uuid(), carol_id.uuid());
    alice.put("r", "before", Some("1")).unwrap();
    let t0 = Instant::now();
    assert!(settle((&mut alice, a), (&mut carol, c), t0, 20));
    // Both write while cut off; the messages that carried the writes are lost and given up.
    alice.put("r", "alice.during", Some("1")).unwrap();
    carol.put("r", "carol.during", Some("1")).unwrap();
    assert!(alice.generate("r", c, t0).is_some());
    assert!(carol.generate("r", a, t0).is_some());
    alice.failed(c, t0);
    carol.failed(a, t0);
    // Carol's fresh round comes first and reaches alice before hers is due.
    let later = t0 + STALL_AFTER;
    assert_eq!(carol.due("r", &[a], later), [a]);
    carol.restart("r", a);
    assert!(
        settle((&mut carol, c), (&mut alice, a), later, 20),
        "the exchange goes quiet"
    );
    assert_eq!(values(&alice, "r"), values(&carol, "r"));
    assert_eq!(values(&carol, "r").len(), 3);
}

#[test]
fn an_exchange_going_round_in_circles_pauses_and_starts_afresh() {
    let (alice_id, mut alice) = member(1);
    let (carol_id, mut carol) = member(3);
    let (a, c) = (alice_id.uuid(), carol_id.uuid());
    alice.put("r", "before", Some("1")).unwrap();
    let t0 = Instant::now();
    assert!(settle((&mut alice, a), (&mut carol, c), t0, 20));
    // Alice's message is lost without her hearing of it (so her sync state still counts its
    // changes as sent), and carol starts a fresh round: Automerge alone would go round in
    // circles, carol asking, alice answering without the changes.
    alice.put("r", "alice.during", Some("1")).unwrap();
    assert!(alice.generate("r", c, t0).is_some());
    carol.restart("r", a);
    assert!(
        settle((&mut carol, c), (&mut alice, a), t0, 40),
        "the circle is broken"
    );
    assert!(carol.get("r", "alice.during").is_none());
    assert!(carol.counters().sent + alice.counters().sent < 30);
    // The side that paused starts afresh once STALL_AFTER has passed.
    let later = t0 + STALL_AFTER;
    let due = alice.due("r", &[c], later);
    let due_carol = carol.due("r", &[a], later);
    assert!(due == [c] || due_carol == [a], "{due:?} {due_carol:?}");
    if due == [c] {
        alice.restart("r", c);
    } else {
        carol.restart("r", a);
    }
    assert!(settle((&mut alice, a), (&mut carol, c), later, 20));
    assert_eq!(values(&alice, "r"), values(&carol, "r"));
}
