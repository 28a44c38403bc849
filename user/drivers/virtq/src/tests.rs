//! Host tests: a fake device that reads the rings as a real one would, a
//! model-based property test, and a hostile device.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};
use std::vec;
use std::vec::Vec;

/// Ring memory in a `Vec`, little-endian like the device's view.
struct VecMemory(Vec<u8>);

impl VecMemory {
    fn new(layout: Layout) -> Self {
        VecMemory(vec![0; layout.total()])
    }
    fn r16(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.0[o], self.0[o + 1]])
    }
    fn r32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.0[o..o + 4].try_into().unwrap())
    }
    fn r64(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.0[o..o + 8].try_into().unwrap())
    }
    fn w(&mut self, o: usize, b: &[u8]) {
        self.0[o..o + b.len()].copy_from_slice(b);
    }
}

impl RingMemory for VecMemory {
    fn read16(&self, o: usize) -> u16 {
        assert_eq!(o % 2, 0);
        self.r16(o)
    }
    fn read32(&self, o: usize) -> u32 {
        assert_eq!(o % 4, 0);
        self.r32(o)
    }
    fn write16(&mut self, o: usize, v: u16) {
        assert_eq!(o % 2, 0);
        self.w(o, &v.to_le_bytes())
    }
    fn write32(&mut self, o: usize, v: u32) {
        assert_eq!(o % 4, 0);
        self.w(o, &v.to_le_bytes())
    }
    fn write64(&mut self, o: usize, v: u64) {
        assert_eq!(o % 8, 0);
        self.w(o, &v.to_le_bytes())
    }
    fn fence(&self) {}
}

/// A device: takes chains from the available ring, keeps them pending,
/// completes them in any order the test picks.
struct FakeDevice {
    layout: Layout,
    last_avail: u16,
    used_idx: u16,
    pending: Vec<(u16, Vec<Buffer>)>,
}

impl FakeDevice {
    fn new(layout: Layout) -> Self {
        FakeDevice { layout, last_avail: 0, used_idx: 0, pending: Vec::new() }
    }

    /// Reads every newly available chain, walking the descriptors as the
    /// device does (bounded by the queue size).
    fn fetch(&mut self, mem: &VecMemory) {
        let avail = self.layout.avail();
        let idx = mem.r16(avail + 2);
        while self.last_avail != idx {
            let slot = avail + 4 + 2 * (self.last_avail % self.layout.size()) as usize;
            let head = mem.r16(slot);
            let mut d = head;
            let mut bufs = Vec::new();
            for _ in 0..self.layout.size() {
                let o = DESC_SIZE * d as usize;
                let flags = mem.r16(o + 12);
                bufs.push(Buffer {
                    phys: mem.r64(o),
                    len: mem.r32(o + 8),
                    device_writes: flags & DESC_F_WRITE != 0,
                });
                if flags & DESC_F_NEXT == 0 {
                    break;
                }
                d = mem.r16(o + 14);
                assert!(d < self.layout.size(), "link out of range");
            }
            self.pending.push((head, bufs));
            self.last_avail = self.last_avail.wrapping_add(1);
        }
    }

    /// Writes a raw used entry and bumps the used index.
    fn push_used(&mut self, mem: &mut VecMemory, id: u32, len: u32) {
        let used = self.layout.used();
        let e = used + 4 + 8 * (self.used_idx % self.layout.size()) as usize;
        mem.w(e, &id.to_le_bytes());
        mem.w(e + 4, &len.to_le_bytes());
        self.used_idx = self.used_idx.wrapping_add(1);
        mem.w(used + 2, &self.used_idx.to_le_bytes());
    }

    /// Completes pending chain number `i`, writing all its writable bytes.
    fn complete(&mut self, mem: &mut VecMemory, i: usize) -> (u16, u32) {
        let (head, bufs) = self.pending.remove(i);
        let len: u32 = bufs.iter().filter(|b| b.device_writes).map(|b| b.len).sum();
        self.push_used(mem, head as u32, len);
        (head, len)
    }
}

fn req(phys: u64, n: usize) -> Vec<Buffer> {
    (0..n)
        .map(|i| Buffer {
            phys: phys + 0x1000 * i as u64,
            len: 16 + i as u32,
            device_writes: i + 1 == n,
        })
        .collect()
}

#[test]
fn layout_matches_the_spec() {
    assert_eq!(Layout::new(0), None);
    assert_eq!(Layout::new(3), None);
    assert_eq!(Layout::new(512), None);
    let l = Layout::new(256).unwrap();
    assert_eq!(l.descriptors(), 0);
    assert_eq!(l.avail(), 4096);
    // 4096 + 6 + 512 = 4614, aligned to 4 = 4616
    assert_eq!(l.used(), 4616);
    assert_eq!(l.total(), 4616 + 6 + 2048);
    let l = Layout::new(1).unwrap();
    assert_eq!((l.avail(), l.used(), l.total()), (16, 24, 38));
}

#[test]
fn requests_round_trip_in_any_order() {
    let layout = Layout::new(8).unwrap();
    let mut mem = VecMemory::new(layout);
    let mut q = SplitQueue::new(layout);
    let mut dev = FakeDevice::new(layout);
    let a = q.add(&mut mem, &req(0x10_0000, 3)).unwrap();
    let b = q.add(&mut mem, &req(0x20_0000, 3)).unwrap();
    assert_eq!(q.free_descriptors(), 2);
    assert_eq!(q.add(&mut mem, &req(0x30_0000, 3)), Err(AddError::Full));
    assert_eq!(q.add(&mut mem, &[]), Err(AddError::Empty));
    assert!(q.needs_notify(&mem));
    dev.fetch(&mem);
    assert_eq!(dev.pending.len(), 2);
    assert_eq!(dev.pending[0].1, req(0x10_0000, 3));
    assert_eq!(dev.pending[1].1, req(0x20_0000, 3));
    assert_eq!(q.pop_used(&mem), None);
    let (h, len) = dev.complete(&mut mem, 1);
    assert_eq!(h, b);
    assert_eq!(q.pop_used(&mem), Some(Ok(Used { head: b, written: len })));
    assert_eq!(q.pop_used(&mem), None);
    let c = q.add(&mut mem, &req(0x30_0000, 3)).unwrap();
    dev.fetch(&mem);
    dev.complete(&mut mem, 1);
    dev.complete(&mut mem, 0);
    assert_eq!(q.pop_used(&mem).unwrap().unwrap().head, c);
    assert_eq!(q.pop_used(&mem).unwrap().unwrap().head, a);
    assert_eq!(q.pop_used(&mem), None);
    assert_eq!(q.free_descriptors(), 8);
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn a_refused_add_writes_nothing() {
    let layout = Layout::new(4).unwrap();
    let mut mem = VecMemory::new(layout);
    let mut q = SplitQueue::new(layout);
    q.add(&mut mem, &req(0x1000, 3)).unwrap();
    let before = (mem.0.clone(), q.free_descriptors(), q.in_flight());
    assert_eq!(q.add(&mut mem, &req(0x2000, 2)), Err(AddError::Full));
    assert_eq!(q.add(&mut mem, &[]), Err(AddError::Empty));
    assert_eq!((mem.0.clone(), q.free_descriptors(), q.in_flight()), before);
}

#[test]
fn no_notify_flag_is_honoured() {
    let layout = Layout::new(4).unwrap();
    let mut mem = VecMemory::new(layout);
    let q = SplitQueue::new(layout);
    assert!(q.needs_notify(&mem));
    mem.w(layout.used(), &USED_F_NO_NOTIFY.to_le_bytes());
    assert!(!q.needs_notify(&mem));
}

#[test]
fn hostile_used_entries_are_reported_not_trusted() {
    let layout = Layout::new(8).unwrap();
    let mut mem = VecMemory::new(layout);
    let mut q = SplitQueue::new(layout);
    let mut dev = FakeDevice::new(layout);
    let a = q.add(&mut mem, &req(0x1000, 3)).unwrap();
    let b = q.add(&mut mem, &req(0x9000, 2)).unwrap();
    dev.fetch(&mem);
    // Out of range, then a descriptor that is not a head.
    dev.push_used(&mut mem, 8, 0);
    assert_eq!(q.pop_used(&mem), Some(Err(UsedError::BadId(8))));
    dev.push_used(&mut mem, u32::MAX, 0);
    assert_eq!(q.pop_used(&mem), Some(Err(UsedError::BadId(u32::MAX))));
    dev.push_used(&mut mem, a as u32 + 1, 0);
    assert_eq!(q.pop_used(&mem), Some(Err(UsedError::BadId(a as u32 + 1))));
    assert_eq!(q.in_flight(), 2);
    // Too long: more than the chain's writable bytes (the last buffer).
    let writable = req(0x1000, 3)[2].len;
    dev.push_used(&mut mem, a as u32, writable + 1);
    assert_eq!(q.pop_used(&mem), Some(Err(UsedError::BadLength { head: a, len: writable + 1 })));
    assert!(!q.is_in_flight(a));
    // A duplicate of a completed chain.
    dev.push_used(&mut mem, a as u32, 0);
    assert_eq!(q.pop_used(&mem), Some(Err(UsedError::BadId(a as u32))));
    // The good one still completes.
    dev.push_used(&mut mem, b as u32, 1);
    assert_eq!(q.pop_used(&mem), Some(Ok(Used { head: b, written: 1 })));
    assert_eq!(q.free_descriptors(), 8);
    // An index far ahead of what is in flight breaks the queue for good.
    let c = q.add(&mut mem, &req(0x1000, 1)).unwrap();
    mem.w(layout.used() + 2, &(dev.used_idx.wrapping_add(5)).to_le_bytes());
    assert!(matches!(q.pop_used(&mem), Some(Err(UsedError::IndexRunaway { .. }))));
    assert!(q.is_broken());
    assert_eq!(q.pop_used(&mem), None);
    assert!(q.is_in_flight(c));
    assert_eq!(q.add(&mut mem, &req(0x1000, 1)), Err(AddError::Broken));
}

#[test]
fn indices_wrap_past_u16() {
    let layout = Layout::new(2).unwrap();
    let mut mem = VecMemory::new(layout);
    let mut q = SplitQueue::new(layout);
    let mut dev = FakeDevice::new(layout);
    for i in 0..70_000u64 {
        let h = q.add(&mut mem, &req(i << 12, 2)).unwrap();
        dev.fetch(&mem);
        dev.complete(&mut mem, 0);
        assert_eq!(q.pop_used(&mem).unwrap().unwrap().head, h);
    }
    assert_eq!(q.free_descriptors(), 2);
}

#[derive(Clone, Debug)]
enum Op {
    /// Add a request of this many buffers (1..=4).
    Add(usize),
    /// The device fetches and completes pending request `i % pending`.
    Complete(usize),
    /// The driver pops everything.
    Pop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..=4).prop_map(Op::Add),
        any::<usize>().prop_map(Op::Complete),
        Just(Op::Pop),
    ]
}

proptest! {
    /// Against a model: every request the driver adds reaches the device
    /// with exactly its buffers, every completion comes back once with the
    /// head and length the device gave, in the device's order, and the
    /// descriptor count is conserved.
    #[test]
    fn queue_matches_a_model(size_log in 0u32..=5, ops in proptest::collection::vec(op(), 1..300)) {
        let layout = Layout::new(1 << size_log).unwrap();
        let mut mem = VecMemory::new(layout);
        let mut q = SplitQueue::new(layout);
        let mut dev = FakeDevice::new(layout);
        let mut added: BTreeMap<u16, Vec<Buffer>> = BTreeMap::new();
        let mut completed: VecDeque<(u16, u32)> = VecDeque::new();
        let mut descs_used = 0usize;
        let mut serial = 0u64;
        for op in ops {
            match op {
                Op::Add(n) => {
                    serial += 1;
                    let bufs = req(serial << 20, n);
                    match q.add(&mut mem, &bufs) {
                        Ok(h) => {
                            prop_assert!(added.insert(h, bufs).is_none(), "head reused while in flight");
                            descs_used += n;
                        }
                        Err(AddError::Full) => prop_assert!(n > layout.size() as usize - descs_used),
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::Complete(i) => {
                    dev.fetch(&mem);
                    if !dev.pending.is_empty() {
                        let i = i % dev.pending.len();
                        let (head, bufs) = dev.pending[i].clone();
                        prop_assert_eq!(Some(&bufs), added.get(&head));
                        completed.push_back(dev.complete(&mut mem, i));
                    }
                }
                Op::Pop => {
                    while let Some(r) = q.pop_used(&mem) {
                        let u = r.unwrap();
                        let (head, len) = completed.pop_front().unwrap();
                        prop_assert_eq!((u.head, u.written), (head, len));
                        descs_used -= added.remove(&head).unwrap().len();
                    }
                    prop_assert!(completed.is_empty());
                }
            }
            prop_assert_eq!(q.free_descriptors() as usize, layout.size() as usize - descs_used);
            prop_assert_eq!(q.in_flight() as usize, added.len());
        }
    }

    /// Whatever the device writes into the used ring, popping never panics,
    /// never reports a chain that is not in flight, and ends.
    #[test]
    fn garbage_used_ring_never_panics(
        adds in 0usize..8,
        garbage in proptest::collection::vec(any::<u8>(), 8 * 8 + 6),
    ) {
        let layout = Layout::new(8).unwrap();
        let mut mem = VecMemory::new(layout);
        let mut q = SplitQueue::new(layout);
        let mut heads = Vec::new();
        for i in 0..adds {
            heads.push(q.add(&mut mem, &req(i as u64 * 0x1000, 1)).unwrap());
        }
        let used = layout.used();
        mem.w(used, &garbage[..]);
        let mut steps = 0;
        while let Some(r) = q.pop_used(&mem) {
            steps += 1;
            prop_assert!(steps <= 8 + 1);
            if let Ok(u) = r {
                prop_assert!(heads.contains(&u.head));
                heads.retain(|h| *h != u.head);
            }
        }
        prop_assert_eq!(q.in_flight() as usize, heads.len());
    }
}
