//! The alux IPC object model: tasks, threads, ports, listen queues,
//! connections and kernel ends, as a deterministic state machine the kernel
//! drives under its lock.
//!
//! The crate owns every rule of basic IPC (see `docs/ipc.md`). It never
//! blocks, reads a clock, touches hardware or uses `unsafe`: an operation
//! returns its result, or [`Outcome::Block`] telling the kernel to park the
//! caller until a deadline, and queues the parked threads it wakes (with
//! their [`Completion`]) for the kernel to take with [`Ipc::take_wakeup`].
//! Errors are the shared [`alux_abi::Error`]; the user-visible encodings
//! (handles, events, records) live in [`alux_abi::ipc`].
//!
//! Costs: signal delivery and `poll_all` are O(1) in the ends a thread holds
//! (per-thread intrusive FIFO ready lists) and allocation-free once the slab
//! has grown; an explicit `poll` is O(set size).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

mod audit;
mod ipc;
mod list;
mod objects;
pub mod quota;
mod slab;
mod types;

pub use alux_abi::ipc::{
    CloseReason, ConnState, ConnectionEnds, ConnectionInfo, Events, Handle, Message, Ready,
};
pub use alux_abi::Error;
pub use ipc::{Ipc, MAX_ID_INDEX};
pub use types::{
    Completion, Deadline, KernelEndId, Limits, Outcome, PollFast, ReceiveFast, SendReceive, Woken,
};

/// Bytes of kernel memory one connection costs in the end slab: its two end
/// slots (a kernel end also takes two: the task's and the kernel's side).
/// Slab growth slack comes on top (the slab's capacity stays below
/// `max(4, 4 × slots in use)`; free slots are linked through themselves).
pub const BYTES_PER_CONNECTION: usize = 2 * core::mem::size_of::<objects::End>();

// The documented bound (docs/ipc.md): a connection costs at most 256 bytes.
const _: () = assert!(BYTES_PER_CONNECTION <= 256);

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    #[test]
    fn record_sizes_stay_small() {
        // docs/ipc.md states these bounds.
        assert!(size_of::<crate::objects::End>() <= 128);
        assert!(size_of::<crate::objects::Thread>() <= 100);
        assert!(size_of::<crate::objects::Task>() <= 100);
    }
}
