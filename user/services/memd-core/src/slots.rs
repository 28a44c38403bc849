//! The swap slot allocator: a bitmap over the slots of the swap area.
//!
//! This module owns only which slots are taken. It must never decide what a
//! slot holds or when it dies (that is `memd.rs`), and never touches the disk.

use alloc::vec;
use alloc::vec::Vec;

use crate::types::Slot;

/// A bitmap of swap slots with a rotating search hint (so writes spread
/// forward instead of reusing the first slot at once).
#[derive(Clone, Debug)]
pub(crate) struct Slots {
    bits: Vec<u64>,
    total: u32,
    used: u32,
    hint: u32,
}

impl Slots {
    pub(crate) fn new(total: u32) -> Slots {
        Slots { bits: vec![0; (total as usize).div_ceil(64)], total, used: 0, hint: 0 }
    }

    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    pub(crate) fn used(&self) -> u32 {
        self.used
    }

    pub(crate) fn is_used(&self, slot: Slot) -> bool {
        slot.0 < self.total && self.bits[slot.0 as usize / 64] & (1 << (slot.0 % 64)) != 0
    }

    /// Takes a free slot, or `None` when the area is full.
    pub(crate) fn alloc(&mut self) -> Option<Slot> {
        if self.used == self.total {
            return None;
        }
        let words = self.bits.len();
        let start = self.hint as usize / 64;
        for k in 0..=words {
            let w = (start + k) % words;
            let mut free = !self.bits[w];
            if k == 0 {
                // Bits below the hint are searched last (k == words).
                free &= u64::MAX << (self.hint % 64);
            }
            if w == words - 1 && !self.total.is_multiple_of(64) {
                free &= (1u64 << (self.total % 64)) - 1;
            }
            if free != 0 {
                let bit = free.trailing_zeros();
                self.bits[w] |= 1 << bit;
                self.used += 1;
                let slot = w as u32 * 64 + bit;
                self.hint = (slot + 1) % self.total;
                return Some(Slot(slot));
            }
        }
        None
    }

    /// Gives a slot back. Returns false (and changes nothing) if it was not
    /// taken: the caller's bookkeeping is wrong, which `audit` reports.
    pub(crate) fn free(&mut self, slot: Slot) -> bool {
        if !self.is_used(slot) {
            return false;
        }
        self.bits[slot.0 as usize / 64] &= !(1 << (slot.0 % 64));
        self.used -= 1;
        true
    }

    /// Every taken slot, in order.
    pub(crate) fn iter_used(&self) -> impl Iterator<Item = Slot> + '_ {
        (0..self.total).map(Slot).filter(|&s| self.is_used(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_until_full_then_free_and_reuse() {
        let mut s = Slots::new(70);
        let mut got = Vec::new();
        while let Some(x) = s.alloc() {
            got.push(x.0);
        }
        got.sort_unstable();
        assert_eq!(got, (0..70).collect::<Vec<_>>());
        assert_eq!(s.used(), 70);
        assert!(s.free(Slot(65)));
        assert!(!s.free(Slot(65)), "double free refused");
        assert!(!s.free(Slot(70)), "out of range refused");
        assert_eq!(s.alloc(), Some(Slot(65)));
        assert_eq!(s.alloc(), None);
    }

    #[test]
    fn empty_area_never_allocates() {
        let mut s = Slots::new(0);
        assert_eq!(s.alloc(), None);
        assert!(!s.free(Slot(0)));
    }

    #[test]
    fn hint_spreads_allocations() {
        let mut s = Slots::new(8);
        let a = s.alloc().unwrap();
        s.free(a);
        let b = s.alloc().unwrap();
        assert_ne!(a, b, "a freed slot is not reused at once while others are free");
    }
}
