//! The life of a hardware interrupt line handed to a user-space driver:
//! which kernel end owns each line, whether a delivered interrupt still
//! awaits the driver's acknowledgement, and what the kernel must do to the
//! interrupt controller at each step.
//!
//! The rule it keeps: a line is unmasked only while an end owns it and no
//! delivered interrupt is unacknowledged. So a level-triggered line cannot
//! storm (it stays masked from its delivery until the driver has served the
//! device and acknowledged), a line nobody owns stays masked, and closing
//! the end masks the line and forgets whatever was pending.
//!
//! This module owns only that state and its counters. It must never touch
//! the interrupt controller or the IPC core: every transition returns the
//! [`Action`] the kernel carries out, so the policy is tested on the host.
//! It also holds the pure encoding of an I/O APIC redirection entry.

use crate::acpi::{Polarity, Trigger};

/// The number of lines (GSIs) a driver may ask for: one byte's worth, the
/// range `kernel_end_kind::interrupt` encodes.
pub const LINES: usize = 256;

/// Why a line cannot be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// Another end owns the line.
    Busy,
    /// The line is beyond [`LINES`] or no interrupt controller input
    /// carries it.
    NoSuchLine,
}

/// What the kernel must do to the line's controller input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<E> {
    /// Nothing.
    None,
    /// Unmask the input.
    Unmask,
    /// Mask the input.
    Mask,
    /// Mask the input and signal this end (one interrupt delivered).
    MaskAndSignal(E),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State<E> {
    /// No end: masked.
    Free,
    /// Owned and unmasked, waiting for an interrupt.
    Armed(E),
    /// Owned, masked: an interrupt was delivered and not yet acknowledged.
    Delivered(E),
}

/// Every line's owner and state, and the counters.
pub struct Lines<E> {
    state: [State<E>; LINES],
    delivered: u64,
    spurious: u64,
}

impl<E: Copy + Eq> Default for Lines<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Copy + Eq> Lines<E> {
    /// Every line free (and so masked).
    pub const fn new() -> Self {
        Lines { state: [State::Free; LINES], delivered: 0, spurious: 0 }
    }

    /// Gives `line` to `end`. The kernel then unmasks the input (the
    /// returned action). `routable` says whether a controller input
    /// carries the line at all.
    pub fn open(&mut self, line: usize, end: E, routable: bool) -> Result<Action<E>, IrqError> {
        let slot = self.state.get_mut(line).ok_or(IrqError::NoSuchLine)?;
        if !routable {
            return Err(IrqError::NoSuchLine);
        }
        match slot {
            State::Free => {
                *slot = State::Armed(end);
                Ok(Action::Unmask)
            }
            _ => Err(IrqError::Busy),
        }
    }

    /// An interrupt arrived on `line`. An owned, armed line is delivered
    /// (masked, its end signalled); anything else is spurious and the line
    /// is masked so it cannot fire again.
    pub fn interrupt(&mut self, line: usize) -> Action<E> {
        match self.state.get(line).copied() {
            Some(State::Armed(end)) => {
                self.state[line] = State::Delivered(end);
                self.delivered += 1;
                Action::MaskAndSignal(end)
            }
            _ => {
                self.spurious += 1;
                Action::Mask
            }
        }
    }

    /// `end`, owner of `line`, acknowledges: if an interrupt was
    /// delivered, the line is armed and unmasked again; else nothing
    /// happens (an acknowledgement never unmasks a line twice or someone
    /// else's).
    pub fn ack(&mut self, line: usize, end: E) -> Action<E> {
        match self.state.get(line).copied() {
            Some(State::Delivered(owner)) if owner == end => {
                self.state[line] = State::Armed(end);
                Action::Unmask
            }
            _ => Action::None,
        }
    }

    /// `end` is closed (by its driver, or because the driver died): its
    /// line is masked and freed, and what was pending is dropped.
    pub fn close(&mut self, line: usize, end: E) -> Action<E> {
        match self.state.get(line).copied() {
            Some(State::Armed(owner) | State::Delivered(owner)) if owner == end => {
                self.state[line] = State::Free;
                Action::Mask
            }
            _ => Action::None,
        }
    }

    /// The end owning `line`, if any.
    pub fn owner(&self, line: usize) -> Option<E> {
        match self.state.get(line)? {
            State::Free => None,
            State::Armed(e) | State::Delivered(e) => Some(*e),
        }
    }

    /// Whether the controller input of `line` should be unmasked now.
    pub fn unmasked(&self, line: usize) -> bool {
        matches!(self.state.get(line), Some(State::Armed(_)))
    }

    /// Interrupts delivered to drivers so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Interrupts that arrived with no armed owner.
    pub fn spurious(&self) -> u64 {
        self.spurious
    }
}

/// An I/O APIC redirection entry (both 32-bit halves): fixed delivery to
/// the local APIC `destination` in physical mode, on `vector`.
pub fn redirection_entry(
    vector: u8,
    polarity: Polarity,
    trigger: Trigger,
    masked: bool,
    destination: u8,
) -> u64 {
    let mut e = vector as u64; // bits 8-10 (delivery) and 11 (mode) zero
    if polarity == Polarity::Low {
        e |= 1 << 13;
    }
    if trigger == Trigger::Level {
        e |= 1 << 15;
    }
    if masked {
        e |= 1 << 16;
    }
    e | (destination as u64) << 56
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_line_is_unmasked_only_while_owned_and_unacknowledged_nothing() {
        let mut l = Lines::new();
        assert_eq!(l.open(11, 'a', true), Ok(Action::Unmask));
        assert!(l.unmasked(11));
        assert_eq!(l.interrupt(11), Action::MaskAndSignal('a'));
        assert!(!l.unmasked(11));
        // A second interrupt while masked is spurious (a level line that
        // the controller still raised): it is masked again, not delivered.
        assert_eq!(l.interrupt(11), Action::Mask);
        assert_eq!(l.ack(11, 'a'), Action::Unmask);
        assert_eq!(l.ack(11, 'a'), Action::None, "acknowledging twice unmasks nothing");
        assert_eq!(l.interrupt(11), Action::MaskAndSignal('a'));
        assert_eq!((l.delivered(), l.spurious()), (2, 1));
    }

    #[test]
    fn one_owner_per_line_and_only_it_acknowledges_or_closes() {
        let mut l = Lines::new();
        l.open(5, 1u32, true).unwrap();
        assert_eq!(l.open(5, 2, true), Err(IrqError::Busy));
        assert_eq!(l.open(5, 1, true), Err(IrqError::Busy));
        assert_eq!(l.open(LINES, 2, true), Err(IrqError::NoSuchLine));
        assert_eq!(l.open(6, 2, false), Err(IrqError::NoSuchLine));
        l.interrupt(5);
        assert_eq!(l.ack(5, 2), Action::None);
        assert_eq!(l.close(5, 2), Action::None);
        assert_eq!(l.owner(5), Some(1));
        // Closing drops the pending delivery and masks.
        assert_eq!(l.close(5, 1), Action::Mask);
        assert_eq!(l.owner(5), None);
        assert_eq!(l.interrupt(5), Action::Mask, "a closed line delivers nothing");
        assert_eq!(l.open(5, 2, true), Ok(Action::Unmask), "a freed line can be opened again");
    }

    #[test]
    fn redirection_entries_encode_each_field() {
        let e = redirection_entry(0x31, Polarity::Low, Trigger::Level, true, 3);
        assert_eq!(e & 0xff, 0x31);
        assert_eq!(e >> 56, 3);
        assert_ne!(e & (1 << 13), 0);
        assert_ne!(e & (1 << 15), 0);
        assert_ne!(e & (1 << 16), 0);
        let e = redirection_entry(0x40, Polarity::High, Trigger::Edge, false, 0);
        assert_eq!(e, 0x40);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Open(usize, u8),
        Interrupt(usize),
        Ack(usize, u8),
        Close(usize, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let line = 0usize..4;
        let end = 0u8..3;
        prop_oneof![
            (line.clone(), end.clone()).prop_map(|(l, e)| Op::Open(l, e)),
            line.clone().prop_map(Op::Interrupt),
            (line.clone(), end.clone()).prop_map(|(l, e)| Op::Ack(l, e)),
            (line, end).prop_map(|(l, e)| Op::Close(l, e)),
        ]
    }

    proptest! {
        /// Against a model of the hardware mask bit: the controller input
        /// is unmasked exactly while the line is armed, every delivery
        /// goes to the line's owner, and deliveries never outnumber
        /// acknowledgements by more than one per owned line.
        #[test]
        fn mask_bit_follows_the_rule(ops in proptest::collection::vec(op(), 0..200)) {
            let mut l = Lines::new();
            let mut hw_unmasked = [false; 4];
            let mut outstanding = [0u32; 4];
            for op in ops {
                let (line, action) = match op {
                    Op::Open(line, e) => (line, l.open(line, e, true).unwrap_or(Action::None)),
                    Op::Interrupt(line) => {
                        if !hw_unmasked[line] {
                            // A masked input raises nothing.
                            continue;
                        }
                        (line, l.interrupt(line))
                    }
                    Op::Ack(line, e) => (line, l.ack(line, e)),
                    Op::Close(line, e) => (line, l.close(line, e)),
                };
                match action {
                    Action::None => {}
                    Action::Unmask => { hw_unmasked[line] = true; outstanding[line] = 0; }
                    Action::Mask => { hw_unmasked[line] = false; outstanding[line] = 0; }
                    Action::MaskAndSignal(e) => {
                        prop_assert_eq!(l.owner(line), Some(e));
                        hw_unmasked[line] = false;
                        outstanding[line] += 1;
                    }
                }
                for i in 0..4 {
                    prop_assert_eq!(hw_unmasked[i], l.unmasked(i));
                    prop_assert!(outstanding[i] <= 1);
                }
            }
        }
    }
}
