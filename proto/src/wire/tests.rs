//! Codec tests: known encodings, every refusal, and round trips of arbitrary values.

use super::*;
use proptest::prelude::*;

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    let data = (
        arb_uuid(),
        arb_uuid(),
        1..u64::MAX,
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..=MAX_FRAGMENT),
    )
        .prop_map(|(from, to, from_inc, to_inc, stream, seq, last, payload)| {
            Packet::Data(Data {
                from,
                to,
                from_inc,
                to_inc,
                stream,
                seq,
                last,
                payload,
            })
        });
    let ack = (
        arb_uuid(),
        arb_uuid(),
        1..u64::MAX,
        any::<u64>(),
        any::<u32>(),
        0..u64::MAX / 2,
        proptest::collection::vec((1..1000u64, 1..1000u64), 0..MAX_ACK_RANGES),
    )
        .prop_map(|(from, to, from_inc, to_inc, stream, cumulative, gaps)| {
            // Build increasing, non-overlapping ranges above `cumulative` from (gap, len) pairs.
            let mut at = cumulative;
            let ranges = gaps
                .into_iter()
                .map(|(gap, len)| {
                    let start = at + gap;
                    at = start + len;
                    (start, at)
                })
                .collect();
            Packet::Ack(Ack {
                from,
                to,
                from_inc,
                to_inc,
                stream,
                cumulative,
                ranges,
            })
        });
    prop_oneof![data, ack]
}

fn arb_sealed() -> impl Strategy<Value = Sealed> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..1000);
    prop_oneof![
        (any::<u32>(), bytes()).prop_map(|(sender, noise)| Sealed::HsInit { sender, noise }),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(sender, receiver, noise)| {
            Sealed::HsResp {
                sender,
                receiver,
                noise,
            }
        }),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(sender, receiver, noise)| {
            Sealed::HsFinal {
                sender,
                receiver,
                noise,
            }
        }),
        (
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 16..1000)
        )
            .prop_map(|(receiver, counter, ciphertext)| Sealed::Transport {
                receiver,
                counter,
                ciphertext
            }),
        any::<u32>().prop_map(|index| Sealed::UnknownSession { index }),
        (
            any::<u32>(),
            any::<[u8; COOKIE_NONCE_LEN]>(),
            any::<[u8; SEALED_COOKIE_LEN]>()
        )
            .prop_map(|(receiver, nonce, cookie)| Sealed::CookieReply {
                receiver,
                nonce,
                cookie
            }),
        (any::<u32>(), bytes(), any::<[u8; COOKIE_LEN]>())
            .prop_map(|(sender, noise, mac)| Sealed::HsInitCookie { sender, noise, mac }),
    ]
}

proptest! {
    #[test]
    fn decode_inverts_encode(packet in arb_packet()) {
        let bytes = encode(&packet);
        prop_assert!(bytes.len() <= MAX_DATAGRAM);
        prop_assert_eq!(decode(&bytes), Ok(packet));
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = decode(&bytes);
        let _ = decode_sealed(&bytes);
    }

    #[test]
    fn decode_sealed_inverts_encode(sealed in arb_sealed()) {
        prop_assert_eq!(decode_sealed(&encode_sealed(&sealed)), Ok(sealed));
    }

    #[test]
    fn decode_never_panics_on_mutated_packets(
        packet in arb_packet(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = encode(&packet);
        for (at, byte) in flips {
            let i = at % bytes.len();
            bytes[i] ^= byte;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = decode(&bytes);
    }
}

#[test]
fn refuses_what_it_cannot_read() {
    assert_eq!(decode(&[]), Err(DecodeError::Truncated));
    assert_eq!(decode(&[2, TYPE_DATA]), Err(DecodeError::Version(2)));
    assert_eq!(
        decode(&[VERSION, 0x7f]),
        Err(DecodeError::UnknownType(0x7f))
    );
    assert_eq!(
        decode(&[VERSION, TYPE_DATA, 1, 2, 3]),
        Err(DecodeError::Truncated)
    );
    assert_eq!(decode(&[0; MAX_DATAGRAM + 1]), Err(DecodeError::TooLong));
}

#[test]
fn cookie_datagrams_have_fixed_shapes() {
    let reply = encode_sealed(&Sealed::CookieReply {
        receiver: 0x0102_0304,
        nonce: [7; COOKIE_NONCE_LEN],
        cookie: [9; SEALED_COOKIE_LEN],
    });
    assert_eq!(reply.len(), 62);
    assert_eq!(&reply[..6], &[VERSION, TYPE_COOKIE_REPLY, 1, 2, 3, 4]);
    for len in 0..reply.len() {
        assert_eq!(
            decode_sealed(&reply[..len]),
            Err(DecodeError::Truncated),
            "{len}"
        );
    }
    let longer = [&reply[..], &[0]].concat();
    assert_eq!(
        decode_sealed(&longer),
        Err(DecodeError::Malformed("trailing bytes after cookie reply"))
    );
    let init = encode_sealed(&Sealed::HsInitCookie {
        sender: 5,
        noise: vec![1; 192],
        mac: [2; COOKIE_LEN],
    });
    assert_eq!(init.len(), 6 + 192 + COOKIE_LEN);
    assert_eq!(init[1], TYPE_HS_INIT_COOKIE);
    assert_eq!(&init[init.len() - COOKIE_LEN..], &[2; COOKIE_LEN]);
    // The shortest cookied init has no Noise bytes at all; shorter is truncated.
    assert!(decode_sealed(&init[..6 + COOKIE_LEN]).is_ok());
    assert_eq!(
        decode_sealed(&init[..6 + COOKIE_LEN - 1]),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn full_fragment_fits_the_mtu() {
    let packet = Packet::Data(Data {
        from: Uuid::nil(),
        to: Uuid::nil(),
        from_inc: 1,
        to_inc: 0,
        stream: 0,
        seq: 0,
        last: true,
        payload: vec![0xff; MAX_FRAGMENT],
    });
    assert_eq!(encode(&packet).len() + TRANSPORT_OVERHEAD, MAX_DATAGRAM);
}
