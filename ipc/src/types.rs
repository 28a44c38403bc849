//! The vocabulary between the IPC core and the kernel: limits, deadlines,
//! outcomes, completions and kernel-end IDs.
//!
//! This module owns only plain data. It must never interpret time: a
//! deadline is an opaque number that the kernel's timer compares.

use alux_abi::ipc::{limits, Handle, Message, Ready};
use alux_abi::{Error, ThreadId};

/// Bounds on the object model. Hitting one is an error for the caller only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Live ends one thread may own.
    pub ends_per_thread: usize,
    /// Live ends all threads of one task may own together.
    pub ends_per_task: usize,
    /// Ports one task's listen queue holds.
    pub listen_queue_len: usize,
    /// Live ends kernel-wide, including the kernel's side of kernel ends
    /// and retired slots. At most `2^16` (handle indices are 16 bits).
    pub total_ends: usize,
    /// Of `total_ends`, the ends only privileged tasks may create. A count,
    /// not a fraction: a smaller `total_ends` needs a smaller reserve, or
    /// unprivileged tasks get nothing.
    pub ends_reserved: usize,
    /// Ends the unprivileged tasks of one uid may own together.
    pub ends_per_uid: usize,
    /// Handles one explicit poll may name.
    pub poll_set_max: usize,
}

impl Default for Limits {
    /// The ABI defaults of [`alux_abi::ipc::limits`].
    fn default() -> Self {
        Limits {
            ends_per_thread: limits::ENDS_PER_THREAD,
            ends_per_task: limits::ENDS_PER_TASK,
            listen_queue_len: limits::LISTEN_QUEUE_LEN,
            total_ends: limits::TOTAL_ENDS,
            ends_reserved: limits::ENDS_RESERVED,
            ends_per_uid: limits::ENDS_PER_UID,
            poll_set_max: limits::POLL_SET_MAX,
        }
    }
}

/// How long a blocking call may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Never block: answer `TimedOut` (poll) or `NoPortAvailable` (connect)
    /// if nothing is ready.
    Now,
    /// Block until this time, on the kernel's clock (alux passes absolute TSC
    /// ticks); opaque to this crate, which only hands it back in
    /// [`Outcome::Block`].
    At(u64),
    /// Block without a time limit.
    Never,
}

impl Deadline {
    /// Converts a system call timeout (`0` = don't wait, `u64::MAX` = wait
    /// forever, else nanoseconds from `now`).
    pub const fn from_timeout(now: u64, timeout_ns: u64) -> Deadline {
        match timeout_ns {
            0 => Deadline::Now,
            u64::MAX => Deadline::Never,
            t => Deadline::At(now.saturating_add(t)),
        }
    }
}

/// The result of a call that may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The call finished with this value.
    Done(T),
    /// The caller is parked: the kernel must not run it until it takes a
    /// [`Completion`] for it from [`crate::Ipc::take_wakeup`] or
    /// [`crate::Ipc::timed_out`]. `deadline` is never [`Deadline::Now`].
    Block {
        /// When the kernel must call [`crate::Ipc::timed_out`].
        deadline: Deadline,
    },
}

/// What a parked thread wakes up with: the result of its blocked call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Its poll found an end with events.
    Polled(Ready),
    /// Its receive found an end with events; with that end's peer buffer.
    Received(Ready, Message),
    /// Its blocking connect got a port: the new end.
    Connected(Handle),
    /// Its call failed (e.g. `TimedOut`, or `ConnectDenied`/`NoSuchTask`
    /// for a blocking connect).
    Failed(Error),
}

/// What [`crate::Ipc::receive_fast`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveFast {
    /// An end had events: the caller's six result registers, laid out as
    /// `alux_abi::syscall::Received::encode` lays them out.
    Done([u64; 6]),
    /// Nothing was ready: the caller is parked in a receive without a time
    /// limit (as `receive` with `Deadline::Never` parks it).
    Parked,
}

/// What [`crate::Ipc::poll_fast`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollFast {
    /// The end had events (now taken): the caller's four result registers,
    /// laid out as `alux_abi::syscall::encode_ready` lays them out.
    Done([u64; 4]),
    /// Nothing was ready: the caller is parked on the one end (as `poll`
    /// parks it); the kernel arms its deadline.
    Parked,
}

/// The wait a fast `Send` or `Signal` ended ([`crate::Ipc::send_fast`],
/// [`crate::Ipc::signal_fast`]), with the woken thread's result registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Woken {
    /// Whether the thread waited in a receive (else in a poll of all its
    /// ends, or of a set naming the end).
    pub in_receive: bool,
    /// A receive's six result registers, laid out as
    /// `alux_abi::syscall::Received::encode` lays them out; for a poll,
    /// the first four are its result registers, laid out as
    /// `alux_abi::syscall::encode_ready`, and the last two are zero (a
    /// poll returns four registers and leaves the others alone).
    pub regs: [u64; 6],
}

/// What [`crate::Ipc::send_receive`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendReceive {
    /// The message went out and an event was already waiting for the
    /// caller: here it is, with its end's peer buffer. The caller runs on.
    Received(Ready, Message),
    /// The message went out and the caller is parked in a receive (without
    /// a time limit). `handoff` is the peer's thread if the message woke it
    /// from a receive: it is not queued as a wakeup, so the kernel can switch
    /// to it directly, giving it these registers.
    Parked {
        /// The woken receiver, what it receives, and its peer buffer.
        handoff: Option<(ThreadId, Ready, Message)>,
    },
}

/// Names the kernel's side of a kernel end. Only the kernel holds these;
/// they never reach user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelEndId(pub(crate) Handle);

impl KernelEndId {
    /// A raw value for the kernel's own tables.
    pub const fn raw(self) -> u64 {
        self.0.raw()
    }
    /// Reinterprets a value from [`KernelEndId::raw`].
    pub const fn from_raw(raw: u64) -> Self {
        KernelEndId(Handle::from_raw(raw))
    }
}
