//! memd's protocol: every message round-trips, encodings are canonical
//! (decoding then encoding gives the same bytes back), and any bytes of
//! any length decode or give a defined error, never a panic.

use alux_memd_proto::*;
use proptest::prelude::*;

fn group() -> impl Strategy<Value = StatsGroup> {
    proptest::sample::select(StatsGroup::ALL.to_vec())
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u64>(), 0u64..4).prop_map(|(len, f)| Request::Reserve {
            len,
            flags: ReserveFlags::from_bits(f).unwrap()
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(addr, len)| Request::Release { addr, len }),
        group().prop_map(|group| Request::Stats { group }),
        any::<[u64; 3]>().prop_map(|[conn, len, wait_ms]| Request::ShareRequest {
            conn,
            len,
            wait_ms
        }),
        any::<u64>().prop_map(|conn| Request::ShareWithdraw { conn }),
        any::<u64>().prop_map(|addr| Request::ShareRelease { addr }),
    ]
}

fn reply() -> impl Strategy<Value = Result<Reply, Status>> {
    prop_oneof![
        any::<u64>().prop_map(|addr| Ok(Reply::Reserved { addr })),
        Just(Ok(Reply::Released)),
        (group(), any::<[u64; 3]>()).prop_map(|(group, values)| Ok(Reply::Stats { group, values })),
        (any::<u64>(), any::<u64>(), 0u8..2).prop_map(|(addr, len, side)| Ok(Reply::Shared {
            addr,
            len,
            side
        })),
        Just(Ok(Reply::ShareWithdrawn)),
        Just(Ok(Reply::ShareReleased)),
        proptest::sample::select(Status::ALL.to_vec()).prop_map(Err),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn requests_round_trip(seq in any::<u32>(), req in request()) {
        let b = encode_request(seq, &req);
        prop_assert_eq!(decode_request(&b), Ok((seq, req)));
    }

    #[test]
    fn replies_round_trip(seq in any::<u32>(), op in 1u8..7, r in reply()) {
        let (b, op) = match r {
            Ok(reply) => (encode_reply(seq, &reply), reply.opcode()),
            Err(s) => (encode_error(seq, op, s), op),
        };
        prop_assert_eq!(decode_reply(&b), Ok(ReplyMsg { seq, op, result: r }));
    }

    #[test]
    fn any_32_bytes_decode_canonically_or_fail_defined(b in any::<[u8; 32]>()) {
        if let Ok((seq, req)) = decode_request(&b) {
            prop_assert_eq!(encode_request(seq, &req), b, "request encoding is canonical");
        } else {
            let e = decode_request(&b).unwrap_err();
            // The error answer is itself a valid reply carrying the status.
            let r = decode_reply(&error_reply(&b, e)).unwrap();
            prop_assert_eq!(r.result, Err(e.status()));
            prop_assert_eq!(r.op, b[0]);
            prop_assert_eq!(r.seq, u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
        }
        if let Ok(m) = decode_reply(&b) {
            let again = match m.result {
                Ok(reply) => encode_reply(m.seq, &reply),
                Err(s) => encode_error(m.seq, m.op, s),
            };
            prop_assert_eq!(again, b, "reply encoding is canonical");
        }
    }

    #[test]
    fn any_length_decodes_or_fails_defined(b in proptest::collection::vec(any::<u8>(), 0..80)) {
        let r = decode_request(&b);
        if b.len() != MESSAGE_LEN {
            prop_assert_eq!(r, Err(DecodeError::BadLength(b.len())));
            prop_assert_eq!(decode_reply(&b), Err(DecodeError::BadLength(b.len())));
            let e = decode_reply(&error_reply(&b, DecodeError::BadLength(b.len()))).unwrap();
            prop_assert_eq!(e.result, Err(Status::BadLength));
        }
    }

    #[test]
    fn near_valid_requests_are_refused(seq in any::<u32>(), req in request(), byte in 1usize..32, bit in 0u8..8) {
        // Flip one bit outside the opcode: the result is the same request
        // with another argument, or a defined error; never a panic.
        let mut b = encode_request(seq, &req);
        b[byte] ^= 1 << bit;
        match decode_request(&b) {
            Ok((s, r)) => prop_assert!(s != seq || r != req),
            Err(e) => prop_assert!(matches!(e, DecodeError::BadReserved | DecodeError::BadArgument)),
        }
    }
}

#[test]
fn layout_is_stable() {
    let b =
        encode_request(0x0102_0304, &Request::Reserve { len: 0x2000, flags: ReserveFlags::WRITE });
    let mut want = [0u8; 32];
    want[0] = 1;
    want[4..8].copy_from_slice(&[4, 3, 2, 1]);
    want[8..16].copy_from_slice(&0x2000u64.to_le_bytes());
    want[16] = 1;
    assert_eq!(b, want);
    let r = encode_error(7, op::RELEASE, Status::NotReserved);
    assert_eq!(&r[..8], &[2, 0, 4, 0, 7, 0, 0, 0]);
    assert!(r[8..].iter().all(|&x| x == 0));
    let s = encode_reply(9, &Reply::Stats { group: StatsGroup::Caller, values: [1, 2, 3] });
    assert_eq!(&s[..8], &[3, 5, 0, 0, 9, 0, 0, 0]);
}

#[test]
fn status_codes_are_stable_and_distinct() {
    let codes: Vec<u16> = Status::ALL.iter().map(|s| s.code()).collect();
    assert_eq!(codes, (1..=19).collect::<Vec<_>>());
    for s in Status::ALL {
        assert_eq!(Status::from_code(s.code()), Some(s));
    }
    assert_eq!(Status::from_code(0), None);
    assert_eq!(Status::from_code(20), None);
    let mut b = encode_error(1, op::RESERVE, Status::Dying);
    b[2] = 200;
    assert_eq!(decode_reply(&b), Err(DecodeError::UnknownStatus(200)));
}

#[test]
fn shared_memory_layout_is_stable() {
    let b = encode_request(5, &Request::ShareRequest { conn: 0x11, len: 0x1_0000, wait_ms: 250 });
    assert_eq!(&b[..8], &[4, 0, 0, 0, 5, 0, 0, 0]);
    assert_eq!(b[8..16], 0x11u64.to_le_bytes());
    assert_eq!(b[16..24], 0x1_0000u64.to_le_bytes());
    assert_eq!(b[24..32], 250u64.to_le_bytes());
    let r = encode_reply(5, &Reply::Shared { addr: 0x1000_0000_1000, len: 0x1_0000, side: 1 });
    assert_eq!(&r[..8], &[4, 0, 0, 0, 5, 0, 0, 0]);
    assert_eq!(r[24..32], 1u64.to_le_bytes());
    // A side other than 0 or 1, or a nonzero unused word, is refused.
    let mut bad = r;
    bad[24] = 2;
    assert_eq!(decode_reply(&bad), Err(DecodeError::BadReserved));
    let mut w = encode_request(6, &Request::ShareWithdraw { conn: 3 });
    w[20] = 1;
    assert_eq!(decode_request(&w), Err(DecodeError::BadReserved));
    let e = encode_error(5, op::SHARE_REQUEST, Status::TimedOut);
    assert_eq!(&e[..4], &[4, 0, 18, 0]);
}

#[test]
fn unknown_opcodes_are_refused() {
    for opcode in [0u8, 7, 255] {
        let mut b = [0u8; 32];
        b[0] = opcode;
        assert_eq!(decode_request(&b), Err(DecodeError::UnknownOpcode(opcode)));
        assert_eq!(decode_reply(&b), Err(DecodeError::UnknownOpcode(opcode)));
    }
}
