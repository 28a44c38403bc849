//! Exclusive claims on ranges of a device resource (I/O ports, physical
//! device memory): who may use which range, and the ranges no task may
//! ever have because the kernel uses them or because they are RAM.
//!
//! This module owns only the bookkeeping and its rules: a range is granted
//! whole to one owner or not at all, never overlaps the kernel's ranges or
//! another owner's claim, and everything an owner holds goes back at once
//! when it ends. It must never program hardware or map memory: the kernel
//! does that after a claim succeeds, and undoes the claim if it fails.

use alloc::vec::Vec;

/// Why a claim is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// The range is empty or wraps around.
    Empty,
    /// Part of the range is the kernel's (or RAM).
    Kernel,
    /// Part of the range is another owner's.
    Other,
    /// No memory for the record.
    OutOfMemory,
    /// The owner holds as many claims as it may.
    Limit,
}

/// Most claims (distinct ranges) one owner holds of one kind: far more than
/// a driver needs, and a bound on the kernel memory and the scans claims
/// cost.
pub const CLAIMS_PER_OWNER: usize = 64;

/// A half-open range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First unit (port, byte address).
    pub start: u64,
    /// One past the last.
    pub end: u64,
}

impl Range {
    /// The range `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Range { start, end }
    }

    fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// The claims on one kind of resource.
pub struct Claims<O> {
    /// Ranges nobody may claim.
    forbidden: Vec<Range>,
    /// Most records one owner may hold.
    per_owner: usize,
    /// Granted ranges and their owners.
    granted: Vec<(Range, O)>,
}

impl<O: Copy + Eq> Claims<O> {
    /// No claim yet; `forbidden` lists what may never be claimed.
    pub fn new(forbidden: Vec<Range>) -> Self {
        Claims { forbidden, granted: Vec::new(), per_owner: CLAIMS_PER_OWNER }
    }

    /// Gives `range` to `owner`. A range the owner already holds whole
    /// (or a part of one) is granted again without a new record, so
    /// repeating a grant is harmless. Returns whether a new record was
    /// made (which [`release`](Self::release) undoes).
    pub fn claim(&mut self, range: Range, owner: O) -> Result<bool, ClaimError> {
        if range.start >= range.end {
            return Err(ClaimError::Empty);
        }
        if self.forbidden.iter().any(|f| f.overlaps(&range)) {
            return Err(ClaimError::Kernel);
        }
        let mut inside_own = false;
        for (r, o) in &self.granted {
            if r.overlaps(&range) {
                if *o != owner {
                    return Err(ClaimError::Other);
                }
                inside_own |= r.start <= range.start && range.end <= r.end;
            }
        }
        if inside_own {
            return Ok(false);
        }
        if self.granted.iter().filter(|(_, o)| *o == owner).count() >= self.per_owner {
            return Err(ClaimError::Limit);
        }
        self.granted.try_reserve(1).map_err(|_| ClaimError::OutOfMemory)?;
        self.granted.push((range, owner));
        Ok(true)
    }

    /// Takes back the record of exactly `range` held by `owner` (undoing a
    /// claim whose use failed); returns whether there was one.
    pub fn release(&mut self, range: Range, owner: O) -> bool {
        match self.granted.iter().position(|&(r, o)| r == range && o == owner) {
            Some(i) => {
                self.granted.swap_remove(i);
                if self.granted.is_empty() {
                    self.granted = Vec::new();
                }
                true
            }
            None => false,
        }
    }

    /// Gives back everything `owner` holds; returns how many claims.
    pub fn release_all(&mut self, owner: O) -> usize {
        let before = self.granted.len();
        self.granted.retain(|(_, o)| *o != owner);
        if self.granted.is_empty() {
            self.granted = Vec::new();
        }
        before - self.granted.len()
    }

    /// The ranges `owner` holds.
    pub fn ranges_of(&self, owner: O) -> impl Iterator<Item = Range> + '_ {
        self.granted.iter().filter(move |(_, o)| *o == owner).map(|(r, _)| *r)
    }

    /// The owner of `unit`, if it is claimed.
    pub fn owner_of(&self, unit: u64) -> Option<O> {
        self.granted.iter().find(|(r, _)| r.start <= unit && unit < r.end).map(|(_, o)| *o)
    }

    /// Whether `unit` is forbidden.
    pub fn is_forbidden(&self, unit: u64) -> bool {
        self.forbidden.iter().any(|r| r.start <= unit && unit < r.end)
    }

    /// How many claims are held.
    pub fn len(&self) -> usize {
        self.granted.len()
    }

    /// Whether no claim is held.
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }
}

/// The I/O permission bitmap of one task, as the TSS holds it: one bit per
/// port, set when the port is denied.
#[derive(Clone, PartialEq, Eq)]
pub struct IoBitmap(Vec<u8>);

/// Bytes of an I/O permission bitmap: 65,536 ports, one bit each.
pub const IO_BITMAP_BYTES: usize = 8192;

impl IoBitmap {
    /// Every port denied; `None` if there is no memory for it.
    pub fn deny_all() -> Option<Self> {
        let mut v = Vec::new();
        v.try_reserve_exact(IO_BITMAP_BYTES).ok()?;
        v.resize(IO_BITMAP_BYTES, 0xff);
        Some(IoBitmap(v))
    }

    /// The bitmap's bytes, as the TSS holds them.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Allows the ports of `range` (which must lie in `0..65536`).
    pub fn allow(&mut self, range: Range) {
        for port in range.start..range.end.min(1 << 16) {
            self.0[(port / 8) as usize] &= !(1 << (port % 8));
        }
    }

    /// Whether `port` is allowed.
    pub fn allows(&self, port: u16) -> bool {
        self.0[port as usize / 8] & (1 << (port % 8)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn claims_are_exclusive_and_forbidden_ranges_stay_the_kernels() {
        let mut c = Claims::new(vec![Range::new(0x3f8, 0x400), Range::new(0x20, 0x22)]);
        assert_eq!(c.claim(Range::new(0xcf8, 0xd00), 1), Ok(true));
        assert_eq!(c.claim(Range::new(0xcfc, 0xcfd), 2), Err(ClaimError::Other));
        assert_eq!(c.claim(Range::new(0x3f0, 0x3f9), 2), Err(ClaimError::Kernel));
        assert_eq!(c.claim(Range::new(0x21, 0x21), 2), Err(ClaimError::Empty));
        assert_eq!(c.claim(Range::new(0xcfc, 0xd00), 1), Ok(false), "again, inside its own");
        assert_eq!(c.len(), 1);
        assert_eq!(c.claim(Range::new(0xc000, 0xc040), 1), Ok(true));
        assert_eq!(c.owner_of(0xc03f), Some(1));
        assert_eq!(c.ranges_of(1).count(), 2);
        assert_eq!(c.ranges_of(2).count(), 0);
        assert_eq!(c.owner_of(0xc040), None);
        assert_eq!(c.release_all(1), 2);
        assert!(c.is_empty());
        for i in 0..CLAIMS_PER_OWNER as u64 {
            assert_eq!(c.claim(Range::new(0x1000 + 2 * i, 0x1001 + 2 * i), 3), Ok(true));
        }
        assert_eq!(c.claim(Range::new(0x9000, 0x9001), 3), Err(ClaimError::Limit));
        assert_eq!(c.release_all(3), CLAIMS_PER_OWNER);
        assert_eq!(c.claim(Range::new(0xcfc, 0xcfd), 2), Ok(true), "free again");
        assert!(c.release(Range::new(0xcfc, 0xcfd), 2));
        assert!(!c.release(Range::new(0xcfc, 0xcfd), 2), "only once");
        assert!(c.is_empty());
    }

    #[test]
    fn io_bitmap_allows_exactly_its_ranges() {
        let mut b = IoBitmap::deny_all().unwrap();
        assert_eq!(b.bytes().len(), IO_BITMAP_BYTES);
        b.allow(Range::new(0xcf8, 0xd00));
        b.allow(Range::new(0xffff, 0x1_0000));
        assert!(b.allows(0xcf8) && b.allows(0xcff) && b.allows(0xffff));
        assert!(!b.allows(0xcf7) && !b.allows(0xd00) && !b.allows(0x3f8));
    }

    proptest! {
        /// Against a model (an owner per unit; fewer operations than the
        /// per-owner record limit): every successful claim
        /// covers only free or own units outside the forbidden ranges, and
        /// a refused one changes nothing.
        #[test]
        fn claims_match_a_unit_model(
            ops in proptest::collection::vec((0u64..64, 0u64..16, 0u8..3, any::<bool>()), 0..60)
        ) {
            let forbidden = Range::new(10, 14);
            let mut c = Claims::new(vec![forbidden]);
            let mut model: [Option<u8>; 80] = [None; 80];
            for (start, len, owner, release) in ops {
                if release {
                    c.release_all(owner);
                    for m in model.iter_mut() {
                        if *m == Some(owner) {
                            *m = None;
                        }
                    }
                    continue;
                }
                let range = Range::new(start, start + len);
                let units = start..start + len;
                let expect = if len == 0 {
                    Err(ClaimError::Empty)
                } else if units.clone().any(|u| forbidden.start <= u && u < forbidden.end) {
                    Err(ClaimError::Kernel)
                } else if units.clone().any(|u| model[u as usize].is_some_and(|o| o != owner)) {
                    Err(ClaimError::Other)
                } else {
                    Ok(())
                };
                prop_assert_eq!(c.claim(range, owner).map(|_| ()), expect);
                if expect.is_ok() {
                    for u in units {
                        model[u as usize] = Some(owner);
                    }
                }
                for u in 0..80u64 {
                    prop_assert_eq!(c.owner_of(u), model[u as usize]);
                }
            }
        }
    }
}
