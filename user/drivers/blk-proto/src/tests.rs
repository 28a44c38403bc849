//! Unit and property tests of the block protocol.

use proptest::prelude::*;

use crate::*;

const DISK: Limits = Limits { capacity: 1 << 20, max_sectors: 128, read_only: false };

#[test]
fn status_codes_are_stable() {
    // The wire codes, written out: changing one breaks every client.
    let expected = [
        (Status::Ok, 0),
        (Status::BadLength, 1),
        (Status::UnknownOperation, 2),
        (Status::ReservedNotZero, 3),
        (Status::ZeroCount, 4),
        (Status::TooManySectors, 5),
        (Status::OutOfRange, 6),
        (Status::MisalignedBuffer, 7),
        (Status::BadBuffer, 8),
        (Status::ReadOnly, 9),
        (Status::NotPrivileged, 10),
        (Status::Busy, 11),
        (Status::IoError, 12),
        (Status::Unsupported, 13),
    ];
    assert_eq!(expected.len(), Status::ALL.len());
    for (status, code) in expected {
        assert_eq!(status.code(), code);
        assert_eq!(Status::from_code(code), Some(status));
    }
    assert_eq!(Status::from_code(14), None);
    assert_eq!(Status::from_code(u32::MAX), None);
    assert_eq!(
        (Operation::Read.code(), Operation::Write.code(), Operation::Flush.code()),
        (1, 2, 3)
    );
}

#[test]
fn request_layout_is_fixed() {
    let m = Request::write(0x0102_0304_0506_0708, 0x1122, 8, 0x20_0000).encode();
    assert_eq!(&m[0..8], &[8, 7, 6, 5, 4, 3, 2, 1], "tag first, little-endian");
    assert_eq!(m[8], 2);
    assert_eq!(&m[9..12], &[0, 0, 0]);
    assert_eq!(&m[12..16], &[8, 0, 0, 0]);
    assert_eq!(&m[16..24], &[0x22, 0x11, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&m[24..32], &[0, 0, 0x20, 0, 0, 0, 0, 0]);
    let c = Completion { tag: 9, status: Status::OutOfRange, sectors: 3 }.encode();
    assert_eq!(c, [9, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 3, 0, 0, 0]);
}

#[test]
fn layout_errors_keep_the_tag() {
    let good = Request::read(77, 0, 1, 0x1000).encode();
    assert_eq!(Request::decode(&good[..31]), Err(Refusal { tag: 77, status: Status::BadLength }));
    assert_eq!(Request::decode(&good[..7]), Err(Refusal { tag: 0, status: Status::BadLength }));
    assert_eq!(Request::decode(&[]), Err(Refusal { tag: 0, status: Status::BadLength }));
    for op in [0u8, 4, 0xff] {
        let mut m = good;
        m[8] = op;
        assert_eq!(Request::decode(&m), Err(Refusal { tag: 77, status: Status::UnknownOperation }));
    }
    for at in 9..12 {
        let mut m = good;
        m[at] = 1;
        assert_eq!(Request::decode(&m), Err(Refusal { tag: 77, status: Status::ReservedNotZero }));
    }
}

fn refused(r: Request, limits: &Limits) -> Status {
    r.check(limits).map(|_| Status::Ok).unwrap_or_else(|e| e.status)
}

#[test]
fn every_bad_request_gets_its_status() {
    let cap = DISK.capacity;
    assert_eq!(refused(Request::read(1, 0, 0, 0x1000), &DISK), Status::ZeroCount);
    assert_eq!(refused(Request::read(1, 0, 129, 0x1000), &DISK), Status::TooManySectors);
    assert_eq!(refused(Request::read(1, cap, 1, 0x1000), &DISK), Status::OutOfRange);
    assert_eq!(refused(Request::read(1, cap - 1, 2, 0x1000), &DISK), Status::OutOfRange);
    assert_eq!(
        refused(Request::read(1, u64::MAX, 1, 0x1000), &DISK),
        Status::OutOfRange,
        "no overflow"
    );
    assert_eq!(refused(Request::read(1, 0, 1, 0x1001), &DISK), Status::MisalignedBuffer);
    assert_eq!(refused(Request::read(1, 0, 1, 0x1100), &DISK), Status::MisalignedBuffer);
    assert_eq!(refused(Request::read(1, 0, 1, PHYS_LIMIT), &DISK), Status::BadBuffer);
    assert_eq!(refused(Request::read(1, 0, 2, PHYS_LIMIT - 512), &DISK), Status::BadBuffer);
    assert_eq!(refused(Request::read(1, 0, 1, u64::MAX - 511), &DISK), Status::BadBuffer);
    let flush_with_range = Request { first_sector: 1, ..Request::flush(1) };
    assert_eq!(refused(flush_with_range, &DISK), Status::ReservedNotZero);
    let ro = Limits { read_only: true, ..DISK };
    assert_eq!(refused(Request::write(1, 0, 1, 0x1000), &ro), Status::ReadOnly);
    assert_eq!(refused(Request::flush(1), &ro), Status::ReadOnly);
    assert_eq!(refused(Request::read(1, 0, 1, 0x1000), &ro), Status::Ok);
}

#[test]
fn good_requests_pass_and_complete() {
    let last = Request::read(5, DISK.capacity - 128, 128, 0x20_0200).check(&DISK).unwrap();
    assert_eq!(last.buffer_range(), 0x20_0200..0x20_0200 + 128 * 512);
    assert_eq!(last.complete(Status::Ok), Completion { tag: 5, status: Status::Ok, sectors: 128 });
    assert_eq!(
        last.complete(Status::IoError),
        Completion { tag: 5, status: Status::IoError, sectors: 0 }
    );
    let flush = Request::flush(6).check(&DISK).unwrap();
    assert_eq!(flush.buffer_range(), 0..0);
    let refusal = Request::read(7, 0, 0, 0).check(&DISK).unwrap_err();
    assert_eq!(refusal.completion(), Completion { tag: 7, status: Status::ZeroCount, sectors: 0 });
}

#[test]
fn completion_decode_errors() {
    assert_eq!(Completion::decode(&[0; 15]), Err(BadCompletion::Length(15)));
    let mut m = Completion { tag: 3, status: Status::Ok, sectors: 1 }.encode();
    m[8] = 99;
    assert_eq!(Completion::decode(&m), Err(BadCompletion::UnknownStatus { tag: 3, code: 99 }));
}

fn any_op() -> impl Strategy<Value = Operation> {
    prop_oneof![Just(Operation::Read), Just(Operation::Write), Just(Operation::Flush)]
}

fn any_request() -> impl Strategy<Value = Request> {
    (any::<u64>(), any_op(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(
        |(tag, op, first_sector, sectors, buffer)| Request {
            tag,
            op,
            first_sector,
            sectors,
            buffer,
        },
    )
}

/// The checks, restated as one expression per status, in order.
fn model_check(r: &Request, l: &Limits) -> Status {
    let flush = r.op == Operation::Flush;
    if flush && (r.first_sector != 0 || r.sectors != 0 || r.buffer != 0) {
        Status::ReservedNotZero
    } else if r.op != Operation::Read && l.read_only {
        Status::ReadOnly
    } else if flush {
        Status::Ok
    } else if r.sectors == 0 {
        Status::ZeroCount
    } else if r.sectors > l.max_sectors {
        Status::TooManySectors
    } else if (r.first_sector as u128 + r.sectors as u128) > l.capacity as u128 {
        Status::OutOfRange
    } else if r.buffer & 511 != 0 {
        Status::MisalignedBuffer
    } else if r.buffer as u128 + r.sectors as u128 * 512 > 1u128 << 52 {
        Status::BadBuffer
    } else {
        Status::Ok
    }
}

proptest! {
    #[test]
    fn request_round_trips(r in any_request()) {
        prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn completion_round_trips(tag in any::<u64>(), code in 0..14u32, sectors in any::<u32>()) {
        let c = Completion { tag, status: Status::from_code(code).unwrap(), sectors };
        prop_assert_eq!(Completion::decode(&c.encode()), Ok(c));
    }

    /// Any bytes decode to a request that encodes back to them, or to a
    /// refusal that is not `Ok` and carries the tag bytes.
    #[test]
    fn any_bytes_decode_or_refuse(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        match Request::decode(&bytes) {
            Ok(r) => prop_assert_eq!(&r.encode()[..], &bytes[..]),
            Err(e) => {
                prop_assert_ne!(e.status, Status::Ok);
                let tag = if bytes.len() >= 8 { u64::from_le_bytes(bytes[..8].try_into().unwrap()) } else { 0 };
                prop_assert_eq!(e.tag, tag);
            }
        }
        let _ = Completion::decode(&bytes);
    }

    /// Any 32 bytes: decode, then check against any disk, gives exactly the
    /// model's status, and a passed request's range is on the disk.
    #[test]
    fn check_matches_model(
        bytes in proptest::array::uniform32(any::<u8>()),
        r in any_request(),
        capacity in any::<u64>(),
        max_sectors in any::<u32>(),
        read_only in any::<bool>(),
        small in any::<bool>(),
    ) {
        // Half the cases use small numbers, so the passing paths are hit.
        let (r, l) = if small {
            let r = Request {
                first_sector: r.first_sector % 4096,
                sectors: r.sectors % 300,
                buffer: (r.buffer % (1 << 53)) & !(if r.tag % 4 == 0 { 0 } else { 511 }),
                ..r
            };
            (r, Limits { capacity: capacity % 8192, max_sectors: max_sectors % 256, read_only })
        } else {
            (r, Limits { capacity, max_sectors, read_only })
        };
        for candidate in [Request::decode(&bytes), Ok(r)] {
            let Ok(req) = candidate else { continue };
            let got = req.check(&l);
            prop_assert_eq!(got.map(|_| Status::Ok).unwrap_or_else(|e| e.status), model_check(&req, &l));
            if let Ok(c) = got {
                prop_assert_eq!(c.request(), &req);
                if req.op != Operation::Flush {
                    prop_assert!(req.first_sector + req.sectors as u64 <= l.capacity);
                    prop_assert!(c.buffer_range().end <= PHYS_LIMIT);
                }
            } else if let Err(e) = got {
                prop_assert_eq!(e.tag, req.tag);
            }
        }
    }
}
