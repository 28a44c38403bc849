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
