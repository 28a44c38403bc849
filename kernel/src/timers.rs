//! The set of armed deadlines: `(deadline, thread)` pairs, earliest first.
//!
//! A sorted `Vec`, earliest first. IPC deadlines are mostly generous
//! timeouts that are cancelled long before they pass (the reply comes), so
//! the deadline armed last is usually the latest, and the one cancelled
//! first: both happen at the end of the `Vec`, with no search and nothing
//! moved. A deadline that passes leaves from the front, and one armed or
//! cancelled inside moves the entries after it. The room is reserved
//! ahead: the kernel reserves one entry per live thread when it creates
//! the thread ([`TimerSet::reserve`], which can fail with the heap), and a
//! thread has at most one deadline, so arming a deadline never allocates
//! and cannot fail. This module owns only that order and that room; it
//! must never read a clock or wake anyone.

use alloc::vec::Vec;

/// Armed deadlines of type `(D, T)`, ordered by `D` then `T`.
pub struct TimerSet<D, T> {
    /// Sorted earliest first.
    entries: Vec<(D, T)>,
}

impl<D: Ord + Copy, T: Ord + Copy> Default for TimerSet<D, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Ord + Copy, T: Ord + Copy> TimerSet<D, T> {
    /// An empty set holding no memory.
    pub const fn new() -> Self {
        TimerSet { entries: Vec::new() }
    }

    /// Makes room for `n` entries in all; `Err` if the heap cannot grow.
    pub fn reserve(&mut self, n: usize) -> Result<(), alloc::collections::TryReserveError> {
        self.entries.try_reserve(n.saturating_sub(self.entries.len()))
    }

    /// Gives back room beyond `n` entries (never below the entries held).
    pub fn trim(&mut self, n: usize) {
        let keep = n.max(self.entries.len());
        if keep == 0 {
            self.entries = Vec::new();
        } else if self.entries.capacity() > keep {
            self.entries.shrink_to(keep);
        }
    }

    /// Arms a deadline. Allocates only if the room reserved is used up
    /// (which the kernel's one-entry-per-thread reservation rules out).
    #[inline]
    pub fn insert(&mut self, deadline: D, id: T) {
        let key = (deadline, id);
        if self.entries.last().is_none_or(|last| *last < key) {
            // The latest yet: the common case, no search.
            self.entries.push(key);
        } else {
            self.insert_sorted(key);
        }
    }

    #[inline(never)]
    fn insert_sorted(&mut self, key: (D, T)) {
        let at = self.entries.partition_point(|e| *e < key);
        if self.entries.get(at) != Some(&key) {
            self.entries.insert(at, key);
        }
    }

    /// Disarms a deadline, if armed.
    #[inline]
    pub fn remove(&mut self, deadline: D, id: T) {
        let key = (deadline, id);
        if self.entries.last() == Some(&key) {
            // The latest: the common case, no search.
            self.entries.pop();
        } else {
            self.remove_sorted(key);
        }
    }

    #[inline(never)]
    fn remove_sorted(&mut self, key: (D, T)) {
        let at = self.entries.partition_point(|e| *e < key);
        if self.entries.get(at) == Some(&key) {
            self.entries.remove(at);
        }
    }

    /// The earliest deadline.
    #[inline]
    pub fn first(&self) -> Option<(D, T)> {
        self.entries.first().copied()
    }

    /// Armed deadlines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries the set has room for.
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn reserved_room_is_never_outgrown() {
        let mut t = TimerSet::new();
        t.reserve(3).unwrap();
        let cap = t.capacity();
        t.insert(5u64, 1u32);
        t.insert(2, 2);
        t.insert(9, 3);
        assert_eq!(t.capacity(), cap);
        assert_eq!(t.first(), Some((2, 2)));
        t.remove(2, 2);
        assert_eq!(t.first(), Some((5, 1)));
        t.remove(5, 1);
        t.remove(9, 3);
        t.trim(0);
        assert_eq!(t.capacity(), 0);
    }

    proptest::proptest! {
        #[test]
        fn matches_a_btree_set(ops in proptest::collection::vec((proptest::bool::ANY, 0u64..20, 0u32..5), 0..200)) {
            let mut t = TimerSet::new();
            let mut m = BTreeSet::new();
            for (insert, d, id) in ops {
                if insert {
                    t.insert(d, id);
                    m.insert((d, id));
                } else {
                    t.remove(d, id);
                    m.remove(&(d, id));
                }
                proptest::prop_assert_eq!(t.first(), m.first().copied());
                proptest::prop_assert_eq!(t.len(), m.len());
                proptest::prop_assert!(t.entries.iter().eq(m.iter()), "sorted, earliest first");
            }
        }
    }
}
