//! The capacity policy of the growable tables (the end slab and the task
//! and thread records): how far a `Vec` shrinks once its tail was cut off.
//!
//! This module owns only that arithmetic. It must never decide what may be
//! cut off (only free slots at the tail, see `crate::ipc`), and it must
//! never be called on a hot path: only where slots are freed.

use alloc::vec::Vec;

/// The smallest non-zero capacity kept, the one `Vec` growth starts with,
/// so that a table back at a small length has the capacity it had when it
/// first grew to it.
pub(crate) const MIN_KEPT: usize = 4;

/// The capacity `v` is shrunk to for its length `len`: 0 when empty, else
/// `len` rounded up to a power of two and at least [`MIN_KEPT`].
pub(crate) fn target(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len.next_power_of_two().max(MIN_KEPT)
    }
}

/// Gives memory back after `v` got shorter: frees it all when `v` is empty,
/// and shrinks it to [`target`] once at most a quarter of its slots are in
/// use. Between a shrink and the next one (or the next growth) the
/// length changes by a constant fraction of the capacity, so the copying
/// is amortised O(1) per slot freed, and a table oscillating around one
/// length never reallocates.
pub(crate) fn shrink<T>(v: &mut Vec<T>) {
    let (len, cap) = (v.len(), v.capacity());
    if len == 0 {
        if cap != 0 {
            *v = Vec::new();
        }
    } else if len <= cap / 4 {
        // A no-op when `cap` is already at most the target.
        v.shrink_to(target(len));
    }
}

/// The invariant [`shrink`] keeps (checked by the audit).
pub(crate) fn tight(len: usize, cap: usize) -> bool {
    if len == 0 {
        cap == 0
    } else {
        len > cap / 4 || cap <= target(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_with_hysteresis_and_frees_when_empty() {
        let mut v: Vec<u64> = Vec::new();
        for i in 0..1000 {
            v.push(i);
        }
        assert_eq!(v.capacity(), 1024);
        v.truncate(257);
        shrink(&mut v);
        assert_eq!(v.capacity(), 1024, "not down to a quarter yet");
        v.truncate(255);
        shrink(&mut v);
        assert_eq!(v.capacity(), 256);
        assert!(tight(v.len(), v.capacity()));
        v.truncate(3);
        shrink(&mut v);
        assert_eq!(v.capacity(), MIN_KEPT);
        v.truncate(1);
        shrink(&mut v);
        assert_eq!(v.capacity(), MIN_KEPT);
        assert!(tight(v.len(), v.capacity()));
        v.clear();
        shrink(&mut v);
        assert_eq!(v.capacity(), 0);
        assert!(tight(v.len(), v.capacity()));
    }
}

/// The free slots of a slab below its length, as a bitmap sized once for
/// the slab's largest length: allocation takes the *lowest* free slot, so
/// live objects pack at the bottom and the tail empties and can be cut
/// off, whatever order objects die in. (A list reused last-freed-first let
/// one long-lived object made during a burst sit high and pin the slab.)
#[derive(Debug, Default)]
pub(crate) struct FreeSlots {
    words: Vec<u64>,
    /// Set bits.
    len: usize,
    /// No word below this has a set bit.
    hint: usize,
}

impl FreeSlots {
    /// Makes room for slots `0..slots` (once; fallible).
    pub(crate) fn reserve(&mut self, slots: usize) -> Result<(), ()> {
        let n = slots.div_ceil(64);
        if self.words.len() < n {
            self.words.try_reserve_exact(n - self.words.len()).map_err(|_| ())?;
            self.words.resize(n, 0);
        }
        Ok(())
    }

    /// Marks slot `i` free.
    pub(crate) fn insert(&mut self, i: u32) {
        let (w, b) = (i as usize / 64, i % 64);
        debug_assert!(self.words[w] & (1 << b) == 0, "slot freed twice");
        self.words[w] |= 1 << b;
        self.len += 1;
        self.hint = self.hint.min(w);
    }

    /// Marks slot `i` used (or cut off).
    pub(crate) fn remove(&mut self, i: u32) {
        let (w, b) = (i as usize / 64, i % 64);
        debug_assert!(self.words[w] & (1 << b) != 0, "slot not free");
        self.words[w] &= !(1 << b);
        self.len -= 1;
    }

    /// Whether slot `i` is marked free.
    pub(crate) fn contains(&self, i: u32) -> bool {
        self.words.get(i as usize / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The lowest free slot. Amortised O(1): the hint only moves up past
    /// words found empty, and down when a slot below it is freed.
    pub(crate) fn lowest(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        while self.hint < self.words.len() {
            let w = self.words[self.hint];
            if w != 0 {
                return Some((self.hint * 64) as u32 + w.trailing_zeros());
            }
            self.hint += 1;
        }
        None
    }

    /// How many slots are free.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held (fixed once reserved).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.capacity() * core::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod free_slot_tests {
    use super::*;

    #[test]
    fn the_lowest_free_slot_comes_first_whatever_the_order_freed() {
        let mut f = FreeSlots::default();
        f.reserve(200).unwrap();
        assert_eq!(f.lowest(), None);
        for i in [150, 3, 70, 64, 199] {
            f.insert(i);
        }
        assert_eq!(f.len(), 5);
        assert_eq!(f.lowest(), Some(3));
        f.remove(3);
        assert_eq!(f.lowest(), Some(64));
        f.remove(64);
        f.insert(1);
        assert_eq!(f.lowest(), Some(1), "a lower slot freed later comes first");
        f.remove(1);
        assert_eq!(f.lowest(), Some(70));
        assert!(f.contains(150) && !f.contains(151));
        for i in [70, 150, 199] {
            f.remove(i);
        }
        assert_eq!((f.len(), f.lowest()), (0, None));
        assert_eq!(f.heap_bytes(), 4 * 8);
    }
}
