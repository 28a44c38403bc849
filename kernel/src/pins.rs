//! DMA pins: frames a driver has handed to a device, which must not be
//! reused while the device may still read or write them, even if the task
//! that owns them unmaps them or dies.
//!
//! This module owns only the bookkeeping: which owner pinned which frame
//! run, and which frames were let go by their owner while pinned (their
//! freeing is deferred to the last unpin). It must never free a frame
//! itself: it returns the frames that became free, and the kernel gives
//! them back to the frame allocator.

use alloc::vec::Vec;

/// Why a pin or unpin is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinError {
    /// The owner holds as many pins as it may.
    Limit,
    /// No memory for the record.
    OutOfMemory,
    /// No pin of exactly that run by that owner (unpin).
    NotPinned,
}

/// Most pins one owner may hold at once.
pub const PINS_PER_OWNER: usize = 256;

/// The pins of the whole system.
pub struct Pins<O> {
    /// `(owner, first frame address, frame count)`.
    pins: Vec<(O, u64, u64)>,
    /// Frames released by their owner while pinned.
    deferred: Vec<u64>,
}

impl<O: Copy + Eq> Default for Pins<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O: Copy + Eq> Pins<O> {
    /// No pin.
    pub const fn new() -> Self {
        Pins { pins: Vec::new(), deferred: Vec::new() }
    }

    /// Pins `count` frames from `first` (a frame address) for `owner`.
    pub fn pin(&mut self, owner: O, first: u64, count: u64) -> Result<(), PinError> {
        if self.pins.iter().filter(|p| p.0 == owner).count() >= PINS_PER_OWNER {
            return Err(PinError::Limit);
        }
        self.pins.try_reserve(1).map_err(|_| PinError::OutOfMemory)?;
        self.pins.push((owner, first, count));
        Ok(())
    }

    /// Whether any pin covers the frame at `frame`. Cheap when nothing is
    /// pinned: it is asked for every frame a task frees.
    #[inline]
    pub fn is_pinned(&self, frame: u64) -> bool {
        !self.pins.is_empty()
            && self.pins.iter().any(|&(_, first, n)| frame >= first && frame < first + n * 4096)
    }

    /// The owner of a pinned frame lets it go: it is freed at the last
    /// unpin. Returns false (and records nothing) if the frame is not
    /// pinned: the caller frees it now. Errors: no memory for the record
    /// (the caller must then leak the frame rather than free it).
    pub fn defer(&mut self, frame: u64) -> Result<bool, PinError> {
        if !self.is_pinned(frame) {
            return Ok(false);
        }
        self.deferred.try_reserve(1).map_err(|_| PinError::OutOfMemory)?;
        self.deferred.push(frame);
        Ok(true)
    }

    /// Removes `owner`'s pin of exactly this run; returns the frames that
    /// are now free to reuse.
    pub fn unpin(&mut self, owner: O, first: u64, count: u64) -> Result<Vec<u64>, PinError> {
        let i = self
            .pins
            .iter()
            .position(|&p| p == (owner, first, count))
            .ok_or(PinError::NotPinned)?;
        self.pins.swap_remove(i);
        Ok(self.settle())
    }

    /// Removes every pin of `owner` (it ended); returns the frames that are
    /// now free to reuse.
    pub fn release_owner(&mut self, owner: O) -> Vec<u64> {
        let before = self.pins.len();
        self.pins.retain(|p| p.0 != owner);
        if self.pins.len() == before {
            return Vec::new();
        }
        self.settle()
    }

    /// Deferred frames no pin covers any more.
    fn settle(&mut self) -> Vec<u64> {
        let mut free = Vec::new();
        let mut i = 0;
        while i < self.deferred.len() {
            let f = self.deferred[i];
            if self.is_pinned(f) {
                i += 1;
            } else {
                self.deferred.swap_remove(i);
                free.push(f);
            }
        }
        if self.pins.is_empty() {
            self.pins = Vec::new();
        }
        if self.deferred.is_empty() {
            self.deferred = Vec::new();
        }
        free
    }

    /// Pins held, and frames waiting for their last unpin.
    pub fn counts(&self) -> (usize, usize) {
        (self.pins.len(), self.deferred.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const F: u64 = 4096;

    #[test]
    fn a_pinned_frame_is_freed_at_the_last_unpin_only() {
        let mut p = Pins::new();
        p.pin('d', 10 * F, 2).unwrap();
        p.pin('e', 11 * F, 1).unwrap();
        assert!(p.is_pinned(10 * F) && p.is_pinned(11 * F) && !p.is_pinned(12 * F));
        // The client dies: both frames are deferred, frame 12 is not pinned.
        assert_eq!(p.defer(10 * F), Ok(true));
        assert_eq!(p.defer(11 * F), Ok(true));
        assert_eq!(p.defer(12 * F), Ok(false));
        assert_eq!(p.unpin('d', 10 * F, 2), Ok(vec![10 * F]), "11 is still pinned by e");
        assert_eq!(p.unpin('d', 10 * F, 2), Err(PinError::NotPinned));
        assert_eq!(p.release_owner('e'), vec![11 * F]);
        assert_eq!(p.counts(), (0, 0));
    }

    #[test]
    fn an_owner_has_a_limit() {
        let mut p = Pins::new();
        for i in 0..PINS_PER_OWNER as u64 {
            p.pin(1, i * F, 1).unwrap();
        }
        assert_eq!(p.pin(1, 0, 1), Err(PinError::Limit));
        assert_eq!(p.pin(2, 0, 1), Ok(()), "others are not limited by it");
    }

    proptest! {
        /// Against a model: a frame handed back (deferred or returned) is
        /// never pinned at that moment, every deferred frame comes back
        /// exactly once, and nothing is left once every pin is gone.
        #[test]
        fn frames_come_back_once_and_never_while_pinned(
            ops in proptest::collection::vec((0u8..3, 0u64..8, 1u64..4, 0u8..4), 0..120)
        ) {
            let mut p = Pins::new();
            let mut held: Vec<(u8, u64, u64)> = Vec::new();
            let mut released = std::collections::BTreeSet::new();
            let mut back = std::collections::BTreeSet::new();
            for (owner, first, n, op) in ops {
                match op {
                    0 => {
                        if p.pin(owner, first * F, n).is_ok() {
                            held.push((owner, first * F, n));
                        }
                    }
                    1 => {
                        let f = (first + n) * F;
                        if released.insert(f) && !p.defer(f).unwrap() {
                            back.insert(f);
                        }
                    }
                    2 => {
                        if let Some(i) = held.iter().position(|h| h.0 == owner) {
                            let (o, f, n) = held.swap_remove(i);
                            for x in p.unpin(o, f, n).unwrap() {
                                prop_assert!(!p.is_pinned(x));
                                prop_assert!(back.insert(x), "returned twice");
                            }
                        }
                    }
                    _ => {
                        held.retain(|h| h.0 != owner);
                        for x in p.release_owner(owner) {
                            prop_assert!(!p.is_pinned(x));
                            prop_assert!(back.insert(x), "returned twice");
                        }
                    }
                }
            }
            for (o, f, n) in held.drain(..) {
                for x in p.unpin(o, f, n).unwrap() {
                    prop_assert!(back.insert(x), "returned twice");
                }
            }
            prop_assert_eq!(back, released);
            prop_assert_eq!(p.counts(), (0, 0));
        }
    }
}
