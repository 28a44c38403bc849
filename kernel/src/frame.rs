//! Physical frame allocation.
//!
//! This module owns the bookkeeping of which 4 KiB physical frames are free,
//! allocated or unavailable, built from the boot memory map (an e820-like list
//! of regions). It hands out and takes back physical *addresses* only: it must
//! never touch the memory it manages (zeroing a frame is the caller's job,
//! through the direct map), and it never hands out a frame that lies outside
//! a usable region or inside a reservation.
//!
//! The state lives in two bitmaps of `u64` words covering frames `0` up to the
//! end of the highest usable region:
//!
//! * `available`: the frame is managed (inside a usable region, not reserved);
//! * `used`: the frame cannot be handed out (allocated, or not available).
//!
//! A search hint (the lowest word that may hold a free frame) keeps
//! allocation amortised fast: words below the hint are known to be full.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Size of a physical frame in bytes.
pub const FRAME_SIZE: u64 = 4096;

/// Physical memory at or above this address is ignored (not managed), which
/// bounds the bitmaps to 8 MiB each whatever the memory map claims.
pub const MAX_MANAGED_ADDRESS: u64 = 1 << 38;

const BITS: usize = u64::BITS as usize;

/// What a region of the boot memory map may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// RAM the kernel may allocate from.
    Usable,
    /// Anything else (firmware, ACPI, MMIO holes, bad memory...).
    Reserved,
}

impl RegionKind {
    /// The kind of a PVH/e820 memory map entry type: type 1 (RAM) is usable,
    /// every other type (reserved, ACPI, NVS, unusable, unknown) is not.
    pub const fn from_e820(kind: u32) -> Self {
        if kind == 1 {
            RegionKind::Usable
        } else {
            RegionKind::Reserved
        }
    }
}

/// One entry of the boot memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryRegion {
    /// Physical address of the first byte.
    pub base: u64,
    /// Length in bytes (the end saturates at `u64::MAX`).
    pub length: u64,
    /// Whether the region may be allocated from.
    pub kind: RegionKind,
}

impl MemoryRegion {
    /// A region of `length` bytes at `base`.
    pub const fn new(base: u64, length: u64, kind: RegionKind) -> Self {
        MemoryRegion { base, length, kind }
    }

    /// The exclusive end address, saturating at `u64::MAX`.
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }
}

/// Why a frame could not be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// The address is not a multiple of [`FRAME_SIZE`].
    Misaligned(u64),
    /// The frame is outside managed memory: beyond the bitmap, in a
    /// non-usable region, or reserved.
    NotManaged(u64),
    /// The frame is managed but not currently allocated.
    DoubleFree(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::Misaligned(a) => {
                write!(f, "physical address {a:#x} is not 4 KiB aligned")
            }
            FrameError::NotManaged(a) => write!(
                f,
                "physical frame {a:#x} is not managed memory (outside usable RAM or reserved)"
            ),
            FrameError::DoubleFree(a) => {
                write!(f, "physical frame {a:#x} is already free (double free)")
            }
        }
    }
}

/// A bitmap allocator of 4 KiB physical frames.
///
/// Invariants: a frame is counted in [`total`](Self::total) iff its
/// `available` bit is set; it is counted in [`used`](Self::used) iff both its
/// `available` and `used` bits are set; every word below `hint` of `used` is
/// full.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    available: Vec<u64>,
    used: Vec<u64>,
    frames: usize,
    total: usize,
    allocated: usize,
    hint: usize,
}

/// Frame index range `[first, last)` covering only whole frames of
/// `[start, end)`: start rounded up, end rounded down.
fn inner_frames(start: u64, end: u64) -> (usize, usize) {
    let first = start.div_ceil(FRAME_SIZE);
    let last = end / FRAME_SIZE;
    (first as usize, last.max(first) as usize)
}

/// Frame index range `[first, last)` touching any byte of `[start, end)`:
/// start rounded down, end rounded up.
fn outer_frames(start: u64, end: u64) -> (usize, usize) {
    let first = start / FRAME_SIZE;
    let last = end.div_ceil(FRAME_SIZE);
    (first as usize, last.max(first) as usize)
}

fn bit(words: &[u64], frame: usize) -> bool {
    words[frame / BITS] & (1 << (frame % BITS)) != 0
}

fn set_bit(words: &mut [u64], frame: usize, value: bool) {
    let mask = 1u64 << (frame % BITS);
    if value {
        words[frame / BITS] |= mask;
    } else {
        words[frame / BITS] &= !mask;
    }
}

impl FrameAllocator {
    /// An allocator managing the whole frames of every usable region.
    ///
    /// Regions may be unsorted and may overlap. Usable regions are shrunk to
    /// whole frames (base rounded up, end rounded down); non-usable regions
    /// win over usable ones and are widened to whole frames, so a frame that
    /// any non-usable region touches is never handed out. Memory at or above
    /// [`MAX_MANAGED_ADDRESS`] is ignored.
    pub fn new(regions: &[MemoryRegion]) -> Self {
        let limit = MAX_MANAGED_ADDRESS / FRAME_SIZE;
        let frames = regions
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(|r| inner_frames(r.base, r.end()))
            .map(|(first, last)| (first as u64, (last as u64).min(limit)))
            .filter(|(first, last)| first < last)
            .map(|(_, last)| last)
            .max()
            .unwrap_or(0) as usize;
        let words = frames.div_ceil(BITS);
        let mut this = FrameAllocator {
            available: vec![0; words],
            used: vec![u64::MAX; words],
            frames,
            total: 0,
            allocated: 0,
            hint: 0,
        };
        for r in regions.iter().filter(|r| r.kind == RegionKind::Usable) {
            let (first, last) = inner_frames(r.base, r.end());
            for frame in first..last.min(frames) {
                set_bit(&mut this.available, frame, true);
                set_bit(&mut this.used, frame, false);
            }
        }
        for r in regions.iter().filter(|r| r.kind != RegionKind::Usable) {
            let (first, last) = outer_frames(r.base, r.end());
            for frame in first..last.min(frames) {
                set_bit(&mut this.available, frame, false);
                set_bit(&mut this.used, frame, true);
            }
        }
        this.total = this.available.iter().map(|w| w.count_ones() as usize).sum();
        this
    }

    /// Removes every frame touching `[start, end)` from the pool (start
    /// rounded down, end rounded up): the kernel image, boot modules, the low
    /// 1 MiB, page tables built by the boot code...
    ///
    /// Reserved frames are no longer counted in [`total`](Self::total) and
    /// can never be allocated or freed. A frame in the range that is
    /// currently allocated is handed over to the reservation: it leaves
    /// [`used`](Self::used) as well, and freeing it later fails with
    /// [`FrameError::NotManaged`]. Parts of the range outside managed memory
    /// and empty ranges (`end <= start`) are ignored.
    pub fn reserve(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        let (first, last) = outer_frames(start, end);
        for frame in first..last.min(self.frames) {
            if bit(&self.available, frame) {
                set_bit(&mut self.available, frame, false);
                self.total -= 1;
                if bit(&self.used, frame) {
                    self.allocated -= 1;
                } else {
                    set_bit(&mut self.used, frame, true);
                }
            }
        }
    }

    /// Allocates a frame and returns its physical address, or `None` when no
    /// frame is free. The frame's contents are unspecified.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.allocated == self.total {
            return None;
        }
        while self.hint < self.used.len() {
            let word = self.used[self.hint];
            if word != u64::MAX {
                let frame = self.hint * BITS + (!word).trailing_zeros() as usize;
                // Bits past `frames` in the last word stay set, so `frame`
                // is always a real, available frame.
                debug_assert!(frame < self.frames && bit(&self.available, frame));
                set_bit(&mut self.used, frame, true);
                self.allocated += 1;
                return Some(frame as u64 * FRAME_SIZE);
            }
            self.hint += 1;
        }
        None
    }

    /// Allocates `count` physically contiguous frames (for device DMA) and
    /// returns the first one's address, or `None` if no such run is free.
    /// The search is first fit from the lowest free frame, linear in the
    /// frames scanned: DMA buffers are allocated rarely, by drivers. Each
    /// frame is freed on its own with [`free`](Self::free).
    pub fn alloc_contiguous(&mut self, count: usize) -> Option<u64> {
        if count == 0 || count > self.free_count() {
            return None;
        }
        let mut run_start = self.hint * BITS;
        let mut frame = run_start;
        while frame < self.frames {
            if bit(&self.used, frame) {
                run_start = frame + 1;
            } else if frame + 1 - run_start == count {
                for f in run_start..=frame {
                    set_bit(&mut self.used, f, true);
                }
                self.allocated += count;
                return Some(run_start as u64 * FRAME_SIZE);
            }
            frame += 1;
        }
        None
    }

    /// Returns the frame at `addr` to the pool.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Misaligned(addr));
        }
        let frame = addr / FRAME_SIZE;
        if frame >= self.frames as u64 || !bit(&self.available, frame as usize) {
            return Err(FrameError::NotManaged(addr));
        }
        let frame = frame as usize;
        if !bit(&self.used, frame) {
            return Err(FrameError::DoubleFree(addr));
        }
        set_bit(&mut self.used, frame, false);
        self.allocated -= 1;
        self.hint = self.hint.min(frame / BITS);
        Ok(())
    }

    /// Whether the frame at `addr` is managed and currently allocated.
    pub fn is_allocated(&self, addr: u64) -> bool {
        let frame = addr / FRAME_SIZE;
        addr.is_multiple_of(FRAME_SIZE)
            && frame < self.frames as u64
            && bit(&self.available, frame as usize)
            && bit(&self.used, frame as usize)
    }

    /// Frames allocated by [`alloc`](Self::alloc) and not freed (nor
    /// reserved since).
    pub fn used(&self) -> usize {
        self.allocated
    }

    /// Managed frames: whole frames of usable regions, minus reservations.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Frames that [`alloc`](Self::alloc) can still hand out.
    pub fn free_count(&self) -> usize {
        self.total - self.allocated
    }

    /// The exclusive end of the physical range the bitmaps cover (the end of
    /// the highest usable frame, capped at [`MAX_MANAGED_ADDRESS`]).
    pub fn managed_end(&self) -> u64 {
        self.frames as u64 * FRAME_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const MIB: u64 = 1 << 20;

    fn usable(base: u64, length: u64) -> MemoryRegion {
        MemoryRegion::new(base, length, RegionKind::Usable)
    }

    fn reserved(base: u64, length: u64) -> MemoryRegion {
        MemoryRegion::new(base, length, RegionKind::Reserved)
    }

    fn drain(a: &mut FrameAllocator) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(f) = a.alloc() {
            out.push(f);
        }
        out
    }

    #[test]
    fn empty_map_has_nothing() {
        let mut a = FrameAllocator::new(&[]);
        assert_eq!((a.total(), a.used(), a.free_count()), (0, 0, 0));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.free(0), Err(FrameError::NotManaged(0)));
        assert_eq!(a.managed_end(), 0);
    }

    #[test]
    fn only_reserved_regions_manage_nothing() {
        let a = FrameAllocator::new(&[reserved(0, 16 * MIB)]);
        assert_eq!(a.total(), 0);
        assert_eq!(a.managed_end(), 0);
    }

    #[test]
    fn counts_whole_frames_of_usable_regions() {
        let a = FrameAllocator::new(&[usable(0, 640 * 1024), usable(MIB, 127 * MIB)]);
        assert_eq!(a.total(), 160 + 127 * 256);
        assert_eq!(a.free_count(), a.total());
        assert_eq!(a.used(), 0);
        assert_eq!(a.managed_end(), 128 * MIB);
    }

    #[test]
    fn partial_frames_at_region_edges_are_ignored() {
        // [0x1800, 0x5800): only frames 0x2000, 0x3000 and 0x4000 are whole.
        let mut a = FrameAllocator::new(&[usable(0x1800, 0x4000)]);
        assert_eq!(a.total(), 3);
        let got: Vec<u64> = drain(&mut a);
        assert_eq!(got, vec![0x2000, 0x3000, 0x4000]);
        // A region smaller than a frame, or one that straddles a boundary
        // without containing a whole frame, contributes nothing.
        let a = FrameAllocator::new(&[usable(0x100, 0xe00), usable(0x1800, 0x1000)]);
        assert_eq!(a.total(), 0);
    }

    #[test]
    fn unsorted_overlapping_regions_count_once() {
        let a = FrameAllocator::new(&[
            usable(8 * MIB, 8 * MIB),
            usable(0, 4 * MIB),
            usable(2 * MIB, 8 * MIB), // overlaps both
            usable(MIB, MIB),         // wholly inside another
        ]);
        assert_eq!(a.total(), 16 * 256);
    }

    #[test]
    fn reserved_regions_win_over_usable_ones() {
        // The reserved region touches frames 0x2000..=0x3000 partially; both
        // are excluded even though a usable region covers them.
        let mut a = FrameAllocator::new(&[
            usable(0, 0x8000),
            reserved(0x2800, 0x1000),
            usable(0x2000, 0x2000),
        ]);
        assert_eq!(a.total(), 6);
        let got: HashSet<u64> = drain(&mut a).into_iter().collect();
        assert!(!got.contains(&0x2000) && !got.contains(&0x3000));
        assert_eq!(a.free(0x2000), Err(FrameError::NotManaged(0x2000)));
    }

    #[test]
    fn saturating_and_huge_regions_are_capped() {
        let a = FrameAllocator::new(&[usable(u64::MAX - 0x10_0000, u64::MAX)]);
        assert_eq!(a.total(), 0);
        assert_eq!(a.managed_end(), 0);
        let a = FrameAllocator::new(&[usable(MAX_MANAGED_ADDRESS - 2 * FRAME_SIZE, 1 << 40)]);
        assert_eq!(a.total(), 2);
        assert_eq!(a.managed_end(), MAX_MANAGED_ADDRESS);
    }

    #[test]
    fn e820_types() {
        assert_eq!(RegionKind::from_e820(1), RegionKind::Usable);
        for t in [0, 2, 3, 4, 5, 12, u32::MAX] {
            assert_eq!(RegionKind::from_e820(t), RegionKind::Reserved);
        }
        assert_eq!(usable(u64::MAX, 5).end(), u64::MAX);
    }

    #[test]
    fn reserve_removes_frames_from_the_pool() {
        let mut a = FrameAllocator::new(&[usable(0, 4 * MIB)]);
        a.reserve(0, MIB); // low 1 MiB
        a.reserve(0x20_0800, 0x20_1001); // touches 0x200000 and 0x201000
        a.reserve(0x30_0000, 0x30_0000); // empty
        a.reserve(0x30_0000, 0x10_0000); // reversed: empty
        a.reserve(3 * MIB, 100 * MIB); // runs past managed memory
        assert_eq!(a.total(), 2 * 256 - 2);
        let got: HashSet<u64> = drain(&mut a).into_iter().collect();
        assert_eq!(got.len(), a.total());
        assert!(got.iter().all(|&f| (MIB..3 * MIB).contains(&f)));
        assert!(!got.contains(&0x20_0000) && !got.contains(&0x20_1000));
        assert_eq!(a.free(0x1000), Err(FrameError::NotManaged(0x1000)));
        assert_eq!(a.free(0x20_1000), Err(FrameError::NotManaged(0x20_1000)));
        // Reserving twice changes nothing.
        let total = a.total();
        a.reserve(0, MIB);
        assert_eq!(a.total(), total);
    }

    #[test]
    fn reserving_an_allocated_frame_hands_it_over() {
        let mut a = FrameAllocator::new(&[usable(0, 0x4000)]);
        let f = a.alloc().unwrap();
        assert_eq!((a.used(), a.total()), (1, 4));
        a.reserve(f, f + 1);
        assert_eq!((a.used(), a.total(), a.free_count()), (0, 3, 3));
        assert!(!a.is_allocated(f));
        assert_eq!(a.free(f), Err(FrameError::NotManaged(f)));
        assert_eq!(drain(&mut a).len(), 3);
    }

    #[test]
    fn free_errors() {
        let mut a =
            FrameAllocator::new(&[usable(MIB, MIB), reserved(3 * MIB, MIB), usable(4 * MIB, MIB)]);
        let f = a.alloc().unwrap();
        assert_eq!(a.free(f + 1), Err(FrameError::Misaligned(f + 1)));
        assert_eq!(a.free(f + 0x800), Err(FrameError::Misaligned(f + 0x800)));
        assert_eq!(a.free(0), Err(FrameError::NotManaged(0))); // below usable
        assert_eq!(a.free(2 * MIB), Err(FrameError::NotManaged(2 * MIB))); // hole
        assert_eq!(a.free(3 * MIB), Err(FrameError::NotManaged(3 * MIB))); // reserved
        assert_eq!(a.free(5 * MIB), Err(FrameError::NotManaged(5 * MIB))); // past end
        assert_eq!(a.free(!0xfff_u64), Err(FrameError::NotManaged(!0xfff_u64)));
        assert_eq!(a.free(f + 0x1000), Err(FrameError::DoubleFree(f + 0x1000)));
        assert_eq!(a.free(f), Ok(()));
        assert_eq!(a.free(f), Err(FrameError::DoubleFree(f)));
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn errors_display_a_message() {
        let msgs = [
            FrameError::Misaligned(0x1234).to_string(),
            FrameError::NotManaged(0x5000).to_string(),
            FrameError::DoubleFree(0x6000).to_string(),
        ];
        assert!(msgs[0].contains("0x1234") && msgs[0].contains("aligned"));
        assert!(msgs[1].contains("0x5000") && msgs[1].contains("not managed"));
        assert!(msgs[2].contains("0x6000") && msgs[2].contains("double free"));
    }

    #[test]
    fn exhaustion_then_reuse() {
        let mut a = FrameAllocator::new(&[usable(0, 200 * FRAME_SIZE)]);
        let frames = drain(&mut a);
        assert_eq!(frames.len(), 200);
        assert_eq!(frames.iter().collect::<HashSet<_>>().len(), 200);
        assert!(frames.iter().all(|f| a.is_allocated(*f)));
        assert_eq!((a.used(), a.free_count()), (200, 0));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.alloc(), None);
        a.free(frames[137]).unwrap();
        a.free(frames[3]).unwrap();
        assert_eq!(a.free_count(), 2);
        let again: HashSet<u64> = [a.alloc().unwrap(), a.alloc().unwrap()].into();
        assert_eq!(again, [frames[3], frames[137]].into());
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn allocation_prefers_low_frames_after_free() {
        let mut a = FrameAllocator::new(&[usable(0, 1000 * FRAME_SIZE)]);
        for _ in 0..900 {
            a.alloc().unwrap();
        }
        a.free(5 * FRAME_SIZE).unwrap();
        assert_eq!(a.alloc(), Some(5 * FRAME_SIZE));
        assert_eq!(a.alloc(), Some(900 * FRAME_SIZE));
    }

    #[test]
    fn is_allocated_rejects_odd_addresses() {
        let mut a = FrameAllocator::new(&[usable(0, 0x2000)]);
        let f = a.alloc().unwrap();
        assert!(a.is_allocated(f));
        assert!(!a.is_allocated(f + 8));
        assert!(!a.is_allocated(0x1000));
        assert!(!a.is_allocated(0x10_0000));
    }

    #[test]
    fn empty_reservation_reserves_nothing() {
        let mut a = FrameAllocator::new(&[usable(0x40_0000, 0x10_0000)]);
        let total = a.total();
        a.reserve(0x41_0401, 0x41_0401);
        a.reserve(0x42_0000, 0x41_0000);
        assert_eq!(a.total(), total);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Alloc,
        Free(usize),
        FreeBogus(u64),
        Reserve(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::Alloc),
            4 => any::<usize>().prop_map(Op::Free),
            1 => (0u64..0x60_0000).prop_map(Op::FreeBogus),
            1 => (0u64..0x60_0000, 0u64..0x4000).prop_map(|(s, l)| Op::Reserve(s, s + l)),
        ]
    }

    fn region() -> impl Strategy<Value = MemoryRegion> {
        (0u64..0x50_0000, 0u64..0x10_0000, prop::bool::weighted(0.8)).prop_map(|(b, l, u)| {
            MemoryRegion::new(b, l, if u { RegionKind::Usable } else { RegionKind::Reserved })
        })
    }

    /// The frames a region map makes available, computed naively.
    fn model_available(regions: &[MemoryRegion]) -> HashSet<u64> {
        let mut set = HashSet::new();
        for r in regions.iter().filter(|r| r.kind == RegionKind::Usable) {
            let mut f = r.base.div_ceil(FRAME_SIZE) * FRAME_SIZE;
            while f + FRAME_SIZE <= r.end() {
                set.insert(f);
                f += FRAME_SIZE;
            }
        }
        for r in regions.iter().filter(|r| r.kind == RegionKind::Reserved) {
            set.retain(|&f| f + FRAME_SIZE <= r.base || f >= r.end());
        }
        set
    }

    #[test]
    fn contiguous_runs_skip_used_frames_and_free_one_by_one() {
        let mut a =
            FrameAllocator::new(&[MemoryRegion::new(0, 64 * FRAME_SIZE, RegionKind::Usable)]);
        let singles: Vec<u64> = (0..3).map(|_| a.alloc().unwrap()).collect();
        // Free the middle one: a hole of one frame that a run of 4 skips.
        a.free(singles[1]).unwrap();
        let run = a.alloc_contiguous(4).unwrap();
        assert_eq!(run, 3 * FRAME_SIZE);
        assert_eq!(a.used(), 2 + 4);
        for i in 0..4 {
            assert!(a.is_allocated(run + i * FRAME_SIZE));
        }
        assert_eq!(a.alloc_contiguous(1), Some(FRAME_SIZE), "the hole fits one");
        assert_eq!(a.alloc_contiguous(0), None);
        assert_eq!(a.alloc_contiguous(64), None, "more than is free");
        for i in 0..4 {
            a.free(run + i * FRAME_SIZE).unwrap();
        }
        assert_eq!(a.alloc_contiguous(61), Some(3 * FRAME_SIZE), "everything above the singles");
        assert_eq!(a.free_count(), 0);
    }

    proptest! {
        #[test]
        fn random_alloc_free_matches_a_model(
            regions in prop::collection::vec(region(), 0..8),
            ops in prop::collection::vec(op(), 0..400),
        ) {
            let mut a = FrameAllocator::new(&regions);
            let mut available = model_available(&regions);
            let mut allocated: HashSet<u64> = HashSet::new();
            let mut order: Vec<u64> = Vec::new();
            prop_assert_eq!(a.total(), available.len());
            for op in ops {
                match op {
                    Op::Alloc => match a.alloc() {
                        Some(f) => {
                            prop_assert!(available.contains(&f));
                            prop_assert!(allocated.insert(f), "frame {:#x} handed out twice", f);
                            order.push(f);
                        }
                        None => prop_assert_eq!(allocated.len(), available.len()),
                    },
                    Op::Free(i) if !order.is_empty() => {
                        let f = order.swap_remove(i % order.len());
                        allocated.remove(&f);
                        prop_assert_eq!(a.free(f), Ok(()));
                        prop_assert_eq!(a.free(f), Err(FrameError::DoubleFree(f)));
                    }
                    Op::Free(_) => {}
                    Op::FreeBogus(addr) => {
                        let expected = if !addr.is_multiple_of(FRAME_SIZE) {
                            Err(FrameError::Misaligned(addr))
                        } else if !available.contains(&addr) {
                            Err(FrameError::NotManaged(addr))
                        } else if !allocated.contains(&addr) {
                            Err(FrameError::DoubleFree(addr))
                        } else {
                            allocated.remove(&addr);
                            order.retain(|&f| f != addr);
                            Ok(())
                        };
                        prop_assert_eq!(a.free(addr), expected);
                    }
                    Op::Reserve(s, e) => {
                        a.reserve(s, e);
                        let touched = |f: u64| e > s && f < e && f + FRAME_SIZE > s;
                        available.retain(|&f| !touched(f));
                        allocated.retain(|&f| !touched(f));
                        order.retain(|&f| !touched(f));
                    }
                }
                prop_assert_eq!(a.total(), available.len());
                prop_assert_eq!(a.used(), allocated.len());
                prop_assert_eq!(a.free_count(), available.len() - allocated.len());
            }
            for &f in &allocated {
                prop_assert!(a.is_allocated(f));
            }
            // Everything left can still be handed out, exactly once.
            let rest: HashSet<u64> = drain(&mut a).into_iter().collect();
            prop_assert!(rest.is_disjoint(&allocated));
            prop_assert_eq!(rest.len() + allocated.len(), available.len());
        }
    }
}
