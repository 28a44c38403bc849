//! Host tests: unit tests, model-based property tests against a
//! `VecDeque`, a hostile peer writing garbage, and an exhaustive search
//! of the interleavings of the waiting protocol.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

mod interleave;

/// A region in a `Vec`. An access outside it, or a u64 access that is
/// not aligned, panics: that is how the tests see the ring step out of
/// the region.
pub(crate) struct VecMem {
    bytes: Mutex<Vec<u8>>,
}

impl VecMem {
    pub(crate) fn new(len: usize) -> VecMem {
        VecMem { bytes: Mutex::new(vec![0; len]) }
    }

    pub(crate) fn with_bytes(bytes: Vec<u8>) -> VecMem {
        VecMem { bytes: Mutex::new(bytes) }
    }

    /// What the peer (or the test) writes behind the ring's back.
    pub(crate) fn poke(&self, offset: usize, v: u64) {
        self.bytes.lock().unwrap()[offset..offset + 8].copy_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn peek(&self, offset: usize) -> u64 {
        let b = self.bytes.lock().unwrap();
        u64::from_le_bytes(b[offset..offset + 8].try_into().unwrap())
    }

    fn poke_bytes(&self, offset: usize, data: &[u8]) {
        self.bytes.lock().unwrap()[offset..offset + data.len()].copy_from_slice(data);
    }
}

impl SharedMem for VecMem {
    fn len(&self) -> usize {
        self.bytes.lock().unwrap().len()
    }
    fn load_u64(&self, offset: usize) -> u64 {
        assert_eq!(offset % 8, 0, "unaligned load");
        self.peek(offset)
    }
    fn store_u64(&self, offset: usize, v: u64) {
        assert_eq!(offset % 8, 0, "unaligned store");
        self.poke(offset, v)
    }
    fn fence(&self) {}
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        out.copy_from_slice(&self.bytes.lock().unwrap()[offset..offset + out.len()]);
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.poke_bytes(offset, data)
    }
}

fn ring(cap: usize) -> (VecMem, Writer, Reader) {
    let len = HEADER_SIZE + cap;
    (VecMem::new(len), Writer::new(len).unwrap(), Reader::new(len).unwrap())
}

fn wrote(written: usize, must_signal: bool) -> WriteOutcome {
    WriteOutcome { written, must_signal, must_wait: false }
}

const WRITE_WAIT: WriteOutcome = WriteOutcome { written: 0, must_signal: false, must_wait: true };
const READ_WAIT: ReadOutcome = ReadOutcome { n: 0, must_wait: true, must_signal_writer: false };

fn got(n: usize, must_signal_writer: bool) -> ReadOutcome {
    ReadOutcome { n, must_wait: false, must_signal_writer }
}

#[test]
fn region_needs_a_data_area() {
    assert_eq!(Writer::new(0).unwrap_err(), Error::RegionTooSmall);
    assert_eq!(Reader::new(HEADER_SIZE).unwrap_err(), Error::RegionTooSmall);
    assert_eq!(Writer::new(HEADER_SIZE + 1).unwrap().capacity(), 1);
    assert_eq!(Writer::new(HEADER_SIZE + 3).unwrap().max_message(), None);
    assert_eq!(Writer::new(HEADER_SIZE + 4).unwrap().max_message(), Some(0));
    assert_eq!(Writer::new(HEADER_SIZE + 4096).unwrap().max_message(), Some(4092));
    let (mem, mut w, _) = ring(3);
    assert_eq!(w.send(&mem, b"").unwrap_err(), Error::TooLarge);
}

#[test]
fn stream_wraps_around_an_odd_capacity() {
    let (mem, mut w, mut r) = ring(10);
    let mut buf = [0u8; 16];
    assert_eq!(w.write(&mem, b"abcdefg").unwrap(), wrote(7, false));
    assert_eq!(r.read(&mem, &mut buf).unwrap(), got(7, false));
    assert_eq!(&buf[..7], b"abcdefg");
    // Bytes 7..14 of the stream: three at the end of the area, four at
    // its start.
    assert_eq!(w.write(&mem, b"hijklmnopqrstu").unwrap(), wrote(10, false));
    assert_eq!(mem.peek(HEAD), 17);
    assert_eq!(r.read(&mem, &mut buf[..4]).unwrap(), got(4, false));
    assert_eq!(&buf[..4], b"hijk");
    assert_eq!(r.read(&mem, &mut buf).unwrap(), got(6, false));
    assert_eq!(&buf[..6], b"lmnopq");
    assert_eq!(mem.peek(TAIL), 17);
}

#[test]
fn empty_calls_do_nothing() {
    let (mem, mut w, mut r) = ring(4);
    assert_eq!(w.write(&mem, b"").unwrap(), wrote(0, false));
    assert_eq!(r.read(&mem, &mut []).unwrap(), got(0, false));
    assert_eq!(mem.peek(READER_WAIT), 0);
    assert_eq!(mem.peek(WRITER_WAIT), 0);
}

#[test]
fn reader_waits_only_when_empty_and_is_signalled_once_per_wait() {
    let (mem, mut w, mut r) = ring(8);
    let mut buf = [0u8; 8];
    assert_eq!(r.read(&mem, &mut buf).unwrap(), READ_WAIT);
    assert_eq!(mem.peek(READER_WAIT), 1);
    // The first write after the reader went to sleep signals, the next
    // ones do not (the reader has not run yet).
    assert_eq!(w.write(&mem, b"ab").unwrap(), wrote(2, true));
    assert_eq!(w.write(&mem, b"cd").unwrap(), wrote(2, false));
    assert_eq!(r.read(&mem, &mut buf).unwrap(), got(4, false));
    assert_eq!(mem.peek(READER_WAIT), 0);
    // A busy stream: no waits, no signals.
    for _ in 0..20 {
        assert_eq!(w.write(&mem, b"xyz").unwrap(), wrote(3, false));
        assert_eq!(r.read(&mem, &mut buf).unwrap(), got(3, false));
    }
    // A new wait has a new number, and is signalled again.
    assert_eq!(r.read(&mem, &mut buf).unwrap(), READ_WAIT);
    assert_eq!(mem.peek(READER_WAIT), 2);
    // A spurious wake-up: still empty, wait again under a new number.
    assert_eq!(r.read(&mem, &mut buf).unwrap(), READ_WAIT);
    assert_eq!(mem.peek(READER_WAIT), 3);
    assert_eq!(w.write(&mem, b"e").unwrap(), wrote(1, true));
    assert_eq!(r.read(&mem, &mut buf).unwrap(), got(1, false));
}

#[test]
fn writer_waits_only_when_full_and_is_signalled_once_per_wait() {
    let (mem, mut w, mut r) = ring(4);
    let mut buf = [0u8; 1];
    assert_eq!(w.write(&mem, b"abcdef").unwrap(), wrote(4, false));
    assert_eq!(w.write(&mem, b"ef").unwrap(), WRITE_WAIT);
    assert_eq!(mem.peek(WRITER_WAIT), 1);
    assert_eq!(r.read(&mem, &mut buf).unwrap(), got(1, true));
    assert_eq!(r.read(&mem, &mut buf).unwrap(), got(1, false));
    assert_eq!(w.write(&mem, b"ef").unwrap(), wrote(2, false));
    assert_eq!(mem.peek(WRITER_WAIT), 0);
    assert_eq!(w.send(&mem, b"").unwrap(), WRITE_WAIT);
    assert_eq!(mem.peek(WRITER_WAIT), 2);
}

#[test]
fn the_wait_recheck_sees_data_published_in_between() {
    // A peer that publishes a byte just as the reader announces its wait:
    // the re-check finds it, the reader does not wait and withdraws.
    struct Racy<'a>(&'a VecMem);
    impl SharedMem for Racy<'_> {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn load_u64(&self, offset: usize) -> u64 {
            self.0.load_u64(offset)
        }
        fn store_u64(&self, offset: usize, v: u64) {
            self.0.store_u64(offset, v);
            if offset == READER_WAIT && v != 0 {
                self.0.poke_bytes(HEADER_SIZE, b"z");
                self.0.poke(HEAD, 1);
            }
        }
        fn fence(&self) {}
        fn read_bytes(&self, offset: usize, out: &mut [u8]) {
            self.0.read_bytes(offset, out)
        }
        fn write_bytes(&self, offset: usize, data: &[u8]) {
            self.0.write_bytes(offset, data)
        }
    }
    let (mem, _, mut r) = ring(8);
    let mut buf = [0u8; 8];
    assert_eq!(r.read(&Racy(&mem), &mut buf).unwrap(), got(1, false));
    assert_eq!(buf[0], b'z');
    assert_eq!(mem.peek(READER_WAIT), 0);
}

#[test]
fn messages_are_whole_or_not_at_all() {
    let (mem, mut w, mut r) = ring(16);
    let mut buf = [0u8; 16];
    assert_eq!(w.send(&mem, b"hello").unwrap(), wrote(5, false));
    assert_eq!(w.send(&mem, b"world!").unwrap(), WRITE_WAIT);
    assert_eq!(r.recv(&mem, &mut buf[..4]).unwrap_err(), Error::BufferTooSmall { needed: 5 });
    assert_eq!(r.recv(&mem, &mut buf).unwrap(), got(5, true));
    assert_eq!(&buf[..5], b"hello");
    // Wraps: 9 bytes from position 9 of a 16-byte area.
    assert_eq!(w.send(&mem, b"world").unwrap(), wrote(5, false));
    assert_eq!(w.send(&mem, b"").unwrap(), wrote(0, false));
    assert_eq!(r.recv(&mem, &mut buf).unwrap(), got(5, false));
    assert_eq!(&buf[..5], b"world");
    assert_eq!(r.recv(&mem, &mut []).unwrap(), got(0, false));
    assert_eq!(r.recv(&mem, &mut buf).unwrap(), READ_WAIT);
    assert_eq!(w.send(&mem, &[7; 13]).unwrap_err(), Error::TooLarge);
    assert_eq!(w.send(&mem, &[7; 12]).unwrap(), wrote(12, true));
    assert_eq!(r.recv(&mem, &mut buf).unwrap(), got(12, false));
    assert_eq!(&buf[..12], &[7; 12]);
}

#[test]
fn reader_refuses_impossible_heads() {
    let cases: [(u64, Fault); 3] =
        [(3, Fault::Behind), (5 + 17, Fault::TooFarAhead), (u64::MAX, Fault::TooFarAhead)];
    for (head, fault) in cases {
        let (mem, mut w, mut r) = ring(16);
        let mut buf = [0u8; 8];
        w.write(&mem, b"12345").unwrap();
        assert_eq!(r.read(&mem, &mut buf).unwrap(), got(5, false));
        mem.poke(HEAD, head);
        assert_eq!(r.read(&mem, &mut buf).unwrap_err(), Error::Corrupt(fault));
        // Sticky: an honest-looking head does not revive the ring.
        mem.poke(HEAD, 5);
        assert_eq!(r.read(&mem, &mut buf).unwrap_err(), Error::Corrupt(fault));
        assert_eq!(r.recv(&mem, &mut buf).unwrap_err(), Error::Corrupt(fault));
        assert_eq!(r.read(&mem, &mut []).unwrap_err(), Error::Corrupt(fault));
    }
    // A head that goes back but stays at or above the tail.
    let (mem, mut w, mut r) = ring(16);
    w.write(&mem, b"12345").unwrap();
    assert_eq!(r.read(&mem, &mut [0; 2]).unwrap(), got(2, false));
    mem.poke(HEAD, 4);
    assert_eq!(r.read(&mem, &mut [0; 2]).unwrap_err(), Error::Corrupt(Fault::WentBack));
}

#[test]
fn writer_refuses_impossible_tails() {
    let cases: [(u64, Fault); 3] =
        [(12, Fault::TooFarAhead), (u64::MAX, Fault::TooFarAhead), (2, Fault::WentBack)];
    for (tail, fault) in cases {
        let (mem, mut w, mut r) = ring(16);
        w.write(&mem, b"0123456789").unwrap();
        r.read(&mem, &mut [0; 3]).unwrap();
        assert_eq!(w.write(&mem, b"a").unwrap(), wrote(1, false));
        mem.poke(TAIL, tail);
        assert_eq!(w.write(&mem, b"a").unwrap_err(), Error::Corrupt(fault));
        mem.poke(TAIL, 3);
        assert_eq!(w.send(&mem, b"a").unwrap_err(), Error::Corrupt(fault));
        assert_eq!(w.write(&mem, b"").unwrap_err(), Error::Corrupt(fault));
    }
    // A tail more than the capacity behind the head (only a peer that
    // wrote to it and went back can cause this with a checked head).
    let (mem, mut w, _) = ring(4);
    w.write(&mem, b"abcd").unwrap();
    mem.poke(TAIL, 4);
    assert_eq!(w.write(&mem, b"abcd").unwrap(), wrote(4, false));
    mem.poke(TAIL, 3);
    assert_eq!(w.write(&mem, b"a").unwrap_err(), Error::Corrupt(Fault::Behind));
}

#[test]
fn reader_refuses_impossible_records() {
    let mut buf = [0u8; 64];
    // Fewer bytes than a length prefix.
    let (mem, _, mut r) = ring(16);
    mem.poke(HEAD, 3);
    assert_eq!(r.recv(&mem, &mut buf).unwrap_err(), Error::Corrupt(Fault::PartialHeader));
    // A length that can never fit, read once: the prefix is changed back
    // after the first look but the ring is already broken.
    let (mem, _, mut r) = ring(16);
    mem.poke_bytes(HEADER_SIZE, &u32::MAX.to_le_bytes());
    mem.poke(HEAD, 16);
    assert_eq!(r.recv(&mem, &mut buf).unwrap_err(), Error::Corrupt(Fault::RecordTooLong));
    mem.poke_bytes(HEADER_SIZE, &2u32.to_le_bytes());
    assert_eq!(r.recv(&mem, &mut buf).unwrap_err(), Error::Corrupt(Fault::RecordTooLong));
    let (mem, _, mut r) = ring(16);
    mem.poke_bytes(HEADER_SIZE, &13u32.to_le_bytes());
    mem.poke(HEAD, 16);
    assert_eq!(r.recv(&mem, &mut buf).unwrap_err(), Error::Corrupt(Fault::RecordTooLong));
    // A length beyond what was published.
    let (mem, _, mut r) = ring(16);
    mem.poke_bytes(HEADER_SIZE, &8u32.to_le_bytes());
    mem.poke(HEAD, 11);
    assert_eq!(r.recv(&mem, &mut buf).unwrap_err(), Error::Corrupt(Fault::RecordIncomplete));
}

/// Which side an operation runs.
#[derive(Clone, Copy, Debug)]
enum Op {
    Write(usize),
    Read(usize),
}

fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![(0..=max).prop_map(Op::Write), (0..=max).prop_map(Op::Read)],
        0..200,
    )
}

/// The doorbell as the model sees it: whether a side waits, and whether
/// its peer signalled it since it started to.
#[derive(Default)]
struct ModelBell {
    waiting: bool,
    signalled: bool,
}

impl ModelBell {
    /// The peer made progress: it must signal iff we wait unsignalled.
    fn progress(&mut self) -> bool {
        let signal = self.waiting && !self.signalled;
        self.signalled |= signal;
        signal
    }
    fn wait(&mut self) {
        *self = ModelBell { waiting: true, signalled: false };
    }
    fn run(&mut self) {
        *self = ModelBell::default();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The byte stream against a `VecDeque`, with the doorbell's decisions
    /// against the model's.
    #[test]
    fn stream_matches_a_model(cap in 1usize..40, ops in ops(90)) {
        let (mem, mut w, mut r) = ring(cap);
        let mut model = VecDeque::new();
        let (mut rbell, mut wbell) = (ModelBell::default(), ModelBell::default());
        let mut next = 0u8;
        for op in ops {
            match op {
                Op::Write(len) => {
                    let data: Vec<u8> = (0..len).map(|i| next.wrapping_add(i as u8)).collect();
                    let out = w.write(&mem, &data).unwrap();
                    let n = len.min(cap - model.len());
                    prop_assert_eq!(out.written, n);
                    prop_assert_eq!(out.must_wait, len > 0 && n == 0);
                    if out.must_wait {
                        wbell.wait();
                    } else if len > 0 {
                        wbell.run();
                    }
                    prop_assert_eq!(out.must_signal, n > 0 && rbell.progress());
                    model.extend(&data[..n]);
                    next = next.wrapping_add(n as u8);
                }
                Op::Read(len) => {
                    let mut buf = vec![0u8; len];
                    let out = r.read(&mem, &mut buf).unwrap();
                    let n = len.min(model.len());
                    prop_assert_eq!(out.n, n);
                    prop_assert_eq!(out.must_wait, len > 0 && n == 0);
                    if out.must_wait {
                        rbell.wait();
                    } else if len > 0 {
                        rbell.run();
                    }
                    prop_assert_eq!(out.must_signal_writer, n > 0 && wbell.progress());
                    let want: Vec<u8> = model.drain(..n).collect();
                    prop_assert_eq!(&buf[..n], &want[..]);
                }
            }
            prop_assert_eq!(mem.peek(HEAD) - mem.peek(TAIL), model.len() as u64);
        }
    }

    /// The message variant against a `VecDeque` of records.
    #[test]
    fn messages_match_a_model(cap in 1usize..48, ops in ops(50)) {
        let (mem, mut w, mut r) = ring(cap);
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut used = 0;
        let mut next = 0u8;
        for op in ops {
            match op {
                Op::Write(len) => {
                    let data: Vec<u8> = (0..len).map(|i| next.wrapping_add(i as u8)).collect();
                    next = next.wrapping_add(1);
                    if len + RECORD_HEADER > cap {
                        prop_assert_eq!(w.send(&mem, &data).unwrap_err(), Error::TooLarge);
                        continue;
                    }
                    let out = w.send(&mem, &data).unwrap();
                    let fits = used + RECORD_HEADER + len <= cap;
                    prop_assert_eq!(out.must_wait, !fits);
                    prop_assert_eq!(out.written, if fits { len } else { 0 });
                    if fits {
                        used += RECORD_HEADER + len;
                        model.push_back(data);
                    }
                }
                Op::Read(len) => {
                    let mut buf = vec![0u8; len];
                    match (r.recv(&mem, &mut buf), model.front()) {
                        (Ok(out), None) => prop_assert_eq!(out, READ_WAIT),
                        (Err(e), Some(front)) => {
                            prop_assert!(front.len() > len);
                            prop_assert_eq!(e, Error::BufferTooSmall { needed: front.len() });
                        }
                        (Ok(out), Some(front)) => {
                            prop_assert!(!out.must_wait);
                            prop_assert_eq!(&buf[..out.n], &front[..]);
                            used -= RECORD_HEADER + front.len();
                            model.pop_front();
                        }
                        (Err(e), None) => prop_assert!(false, "error {:?} on an empty ring", e),
                    }
                }
            }
        }
    }

    /// A region full of garbage (header and data) left by the peer: every
    /// call of either side returns, within the region, with valid data or
    /// a defined error (`VecMem` panics on any access outside the region,
    /// and the ring has no loop that garbage could keep going).
    #[test]
    fn garbage_region_never_panics(
        cap in 1usize..40,
        data in prop::collection::vec(any::<u8>(), 40),
        head in counter(), tail in counter(), rw in any::<u64>(), ww in any::<u64>(),
        ops in ops(60),
    ) {
        let len = HEADER_SIZE + cap;
        let mut bytes = vec![0u8; len];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = data[i % data.len()];
        }
        let mem = VecMem::with_bytes(bytes);
        for (off, v) in [(HEAD, head), (TAIL, tail), (READER_WAIT, rw), (WRITER_WAIT, ww)] {
            mem.poke(off, v);
        }
        let (mut w, mut r) = (Writer::new(len).unwrap(), Reader::new(len).unwrap());
        for (i, op) in ops.into_iter().enumerate() {
            let mut buf = vec![0u8; if let Op::Read(n) = op { n } else { 0 }];
            match op {
                Op::Write(n) if i % 2 == 0 => check_write(w.write(&mem, &vec![1; n]), n, false)?,
                Op::Write(n) => check_write(w.send(&mem, &vec![1; n]), n, true)?,
                Op::Read(_) if i % 2 == 0 => check_read(r.read(&mem, &mut buf), buf.len(), cap)?,
                Op::Read(_) => check_read(r.recv(&mem, &mut buf), buf.len(), cap)?,
            }
        }
    }

    /// A peer that changes every counter and every length between any two
    /// loads (each load returns the next value of its script).
    #[test]
    fn a_peer_changing_values_under_our_feet_never_panics(
        cap in 1usize..40,
        script in prop::collection::vec(counter(), 1..64),
        ops in ops(60),
    ) {
        struct Shifty { mem: VecMem, script: Vec<u64>, at: Mutex<usize> }
        impl SharedMem for Shifty {
            fn len(&self) -> usize { self.mem.len() }
            fn load_u64(&self, offset: usize) -> u64 {
                assert_eq!(offset % 8, 0);
                let mut at = self.at.lock().unwrap();
                *at += 1;
                self.script[*at % self.script.len()]
            }
            fn store_u64(&self, offset: usize, v: u64) { self.mem.store_u64(offset, v) }
            fn fence(&self) {}
            fn read_bytes(&self, offset: usize, out: &mut [u8]) {
                // The prefix changes too: every byte is the script's next
                // value's low byte.
                let mut at = self.at.lock().unwrap();
                self.mem.read_bytes(offset, out);
                for b in out.iter_mut() {
                    *at += 1;
                    *b = self.script[*at % self.script.len()] as u8;
                }
            }
            fn write_bytes(&self, offset: usize, data: &[u8]) { self.mem.write_bytes(offset, data) }
        }
        let len = HEADER_SIZE + cap;
        let mem = Shifty { mem: VecMem::new(len), script, at: Mutex::new(0) };
        let (mut w, mut r) = (Writer::new(len).unwrap(), Reader::new(len).unwrap());
        for (i, op) in ops.into_iter().enumerate() {
            let mut buf = vec![0u8; if let Op::Read(n) = op { n } else { 0 }];
            match op {
                Op::Write(n) if i % 2 == 0 => check_write(w.write(&mem, &vec![1; n]), n, false)?,
                Op::Write(n) => check_write(w.send(&mem, &vec![1; n]), n, true)?,
                Op::Read(_) if i % 2 == 0 => check_read(r.read(&mem, &mut buf), buf.len(), cap)?,
                Op::Read(_) => check_read(r.recv(&mem, &mut buf), buf.len(), cap)?,
            }
        }
    }
}

/// Counter values a hostile peer would try: near zero, near the
/// capacity, huge, and anything.
fn counter() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..100, (u64::MAX - 100)..=u64::MAX, any::<u64>()]
}

fn check_write(
    res: Result<WriteOutcome, Error>,
    len: usize,
    whole: bool,
) -> Result<(), TestCaseError> {
    match res {
        Ok(out) => {
            prop_assert!(out.written <= len);
            prop_assert!(!whole || out.written == 0 || out.written == len);
            prop_assert!(!(out.must_wait && out.written > 0));
        }
        Err(Error::Corrupt(_) | Error::TooLarge) => {}
        Err(e) => prop_assert!(false, "unexpected {:?}", e),
    }
    Ok(())
}

fn check_read(
    res: Result<ReadOutcome, Error>,
    len: usize,
    cap: usize,
) -> Result<(), TestCaseError> {
    match res {
        Ok(out) => {
            prop_assert!(out.n <= len && out.n <= cap);
            prop_assert!(!(out.must_wait && out.n > 0));
        }
        Err(Error::BufferTooSmall { needed }) => prop_assert!(needed > len && needed <= cap),
        Err(Error::Corrupt(_)) => {}
        Err(e) => prop_assert!(false, "unexpected {:?}", e),
    }
    Ok(())
}
