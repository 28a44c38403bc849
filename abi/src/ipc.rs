//! Basic IPC ABI types: handles, events, close reasons, the records IPC
//! calls fill in, kernel-end kinds and the limits user space can rely on.
//!
//! The semantics behind these encodings are in `docs/ipc.md`; the state
//! machine that implements them is the `alux-ipc` crate. This module owns
//! only plain data and pure encode/decode helpers: it must never hold state
//! or policy.

use crate::ids::{TaskId, ThreadId, Uid};

/// Bytes in each end's outgoing buffer: the most one `Write` carries.
pub const MESSAGE_MAX: usize = 32;

/// The task ID a kernel end reports as its peer. No real task has it: its
/// index is [`crate::ids::MAX_INDEX`] (65,535), which no table reaches (the
/// largest holds 16,384 slots).
pub const KERNEL_TASK: TaskId = TaskId::from_raw(u64::MAX);
/// The thread ID `ConnectionQuery` reports for the kernel side of a kernel
/// end.
pub const KERNEL_THREAD: ThreadId = ThreadId::from_raw(u64::MAX);
/// The uid a kernel end reports as its peer's.
pub const KERNEL_UID: Uid = 0;

/// Default bounds of the IPC object model. The kernel may configure others;
/// these are what it uses unless documented otherwise.
pub mod limits {
    /// Live ends one thread may own.
    pub const ENDS_PER_THREAD: usize = 1024;
    /// Live ends all threads of one task may own together.
    pub const ENDS_PER_TASK: usize = 4096;
    /// Ports one task's listen queue holds.
    pub const LISTEN_QUEUE_LEN: usize = 64;
    /// Live ends kernel-wide (including the kernel's side of kernel ends
    /// and retired end slots).
    pub const TOTAL_ENDS: usize = 1 << 14;
    /// Of `TOTAL_ENDS`, the ends only privileged tasks may create.
    pub const ENDS_RESERVED: usize = TOTAL_ENDS / 4;
    /// Ends the unprivileged tasks of one uid may own together.
    pub const ENDS_PER_UID: usize = ENDS_PER_TASK;
    /// Handles one explicit `Poll` may name.
    pub const POLL_SET_MAX: usize = 64;
}

crate::ids::generational_id!(
    /// Names one end of a connection (or a port) for the one thread that
    /// owns it. Packs a slot index (low 16 bits) and a generation (high 48
    /// bits, see [`crate::ids`]); generations start at 1, so the raw value
    /// 0 is never a valid handle.
    Handle,
    "h"
);

impl Handle {
    /// A value no end ever has.
    pub const NULL: Handle = Handle(0);
}

/// The events `Poll` reports for one end, a set of bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Events(u32);

impl Events {
    /// No event.
    pub const NONE: Events = Events(0);
    /// A client connected to this port: it is now a connected end.
    pub const OPENED: Events = Events(1);
    /// The peer signaled this end at least once since the last poll.
    pub const SIGNAL: Events = Events(2);
    /// The peer end is closed; the reason is in the poll result.
    pub const PEER_CLOSED: Events = Events(4);
    /// Every defined bit.
    pub const ALL: Events = Events(7);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Decodes bits; `None` if an undefined bit is set.
    pub const fn from_bits(bits: u32) -> Option<Events> {
        if bits & !Self::ALL.0 == 0 {
            Some(Events(bits))
        } else {
            None
        }
    }
    /// True if no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// True if every bit of `other` is set in `self`.
    pub const fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }
    /// The bits of both.
    pub const fn union(self, other: Events) -> Events {
        Events(self.0 | other.0)
    }
}

impl core::ops::BitOr for Events {
    type Output = Events;
    fn bitor(self, rhs: Events) -> Events {
        self.union(rhs)
    }
}

impl core::ops::BitOrAssign for Events {
    fn bitor_assign(&mut self, rhs: Events) {
        *self = self.union(rhs);
    }
}

crate::code_enum! {
    /// Why a connection closed, as its surviving end is told.
    pub enum CloseReason: u32 {
        /// The peer's owner closed its end (or, for a kernel end, the kernel
        /// closed its side).
        Closed = 1,
        /// The thread owning the peer end exited.
        ThreadExited = 2,
        /// The task owning the peer end exited normally.
        TaskExited = 3,
        /// The task owning the peer end was killed (or faulted).
        TaskKilled = 4,
    }
}

crate::code_enum! {
    /// The state `ConnectionInfo` reports.
    pub enum ConnState: u32 {
        /// Both ends are open.
        Connected = 1,
        /// The peer end is closed; this end still reads the peer's last data.
        PeerClosed = 2,
    }
}

/// Bits of `ConnectionInfo::flags`.
pub mod info_flags {
    /// This end was a port: the peer connected to this end's task.
    pub const SERVER: u32 = 1;
    /// The far side is the kernel (a kernel end).
    pub const KERNEL: u32 = 2;
    /// The peer is the kernel or a live privileged task: it may, for
    /// example, pass physical addresses to a driver.
    pub const PEER_PRIVILEGED: u32 = 4;
}

/// The identity of a connection, as `ConnectionInfo` fills it in for one
/// end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ConnectionInfo {
    /// The connection's ID, unique for the kernel's lifetime and the same at
    /// both ends.
    pub conn_id: u64,
    /// The peer's task (raw `TaskId`; `KERNEL_TASK` for a kernel end).
    pub peer_task: u64,
    /// The peer task's uid (widened from `Uid`).
    pub peer_uid: u32,
    /// A `ConnState` code.
    pub state: u32,
    /// A `CloseReason` code, 0 while connected.
    pub close_reason: u32,
    /// `info_flags`.
    pub flags: u32,
    /// The kernel-end kind for a kernel end, else 0.
    pub kernel_kind: u32,
    /// Always 0.
    pub reserved: u32,
}

impl ConnectionInfo {
    /// The peer task as an ID.
    pub const fn peer_task_id(&self) -> TaskId {
        TaskId::from_raw(self.peer_task)
    }
    /// The state, decoded.
    pub const fn conn_state(&self) -> Option<ConnState> {
        ConnState::from_code(self.state)
    }
    /// The close reason, decoded (`None` while connected).
    pub const fn reason(&self) -> Option<CloseReason> {
        CloseReason::from_code(self.close_reason)
    }
}

/// The two ends of a live connection, as the privileged `ConnectionQuery`
/// fills them in. The client is the side that called `Connect` (or the task
/// side of a kernel end); the server is the side whose port was taken (or
/// `KERNEL_TASK`/`KERNEL_THREAD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ConnectionEnds {
    /// The connection's ID.
    pub conn_id: u64,
    /// The client's task (raw `TaskId`).
    pub client_task: u64,
    /// The client end's owning thread (raw `ThreadId`).
    pub client_thread: u64,
    /// The server's task (raw `TaskId`).
    pub server_task: u64,
    /// The server end's owning thread (raw `ThreadId`).
    pub server_thread: u64,
}

/// A snapshot of one end's outgoing buffer, as `Read` returns it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// The buffer; bytes past `len` are zero.
    pub data: [u8; MESSAGE_MAX],
    /// How many bytes the last write stored.
    pub len: u8,
    /// How many writes the buffer has seen: a reader that saw the same
    /// sequence number before saw the same data.
    pub seq: u64,
}

impl Message {
    /// The written bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// What a successful `Poll`/`PollAll` returns: one end and the events it
/// had, which the poll cleared. Its register encoding is
/// `crate::syscall::encode_ready`/`decode_ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The end.
    pub handle: Handle,
    /// Its events (never empty).
    pub events: Events,
    /// The connection's ID.
    pub conn_id: u64,
    /// The peer's task: with `OPENED`, the client that just connected.
    pub peer_task: TaskId,
    /// The peer task's uid.
    pub peer_uid: Uid,
    /// Set when `events` holds `PEER_CLOSED`.
    pub close_reason: Option<CloseReason>,
}

/// Kinds of kernel ends (`KernelEndOpen`'s argument). The low 8 bits are
/// the kind; the next 8 bits its detail (the interrupt line). At most one
/// end of each kind value is open at a time.
pub mod kernel_end_kind {
    /// Page faults of unprivileged tasks, for the memory daemon.
    pub const PAGE_FAULTS: u32 = 1;
    /// One hardware interrupt line, for a driver: use [`interrupt`].
    pub const INTERRUPT: u32 = 2;

    /// The kind value for interrupt line `line`.
    pub const fn interrupt(line: u8) -> u32 {
        INTERRUPT | ((line as u32) << 8)
    }

    /// True if `kind` is a value `KernelEndOpen` accepts.
    pub const fn is_valid(kind: u32) -> bool {
        match kind & 0xff {
            PAGE_FAULTS => kind == PAGE_FAULTS,
            INTERRUPT => kind >> 16 == 0,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_packs_index_and_generation() {
        let h = Handle::new(9, 4);
        assert_eq!((h.index(), h.generation()), (9, 4));
        assert_eq!(Handle::from_raw(h.raw()), h);
        assert_eq!(Handle::NULL.generation(), 0);
    }

    #[test]
    fn events_bits() {
        let e = Events::OPENED | Events::PEER_CLOSED;
        assert!(e.contains(Events::OPENED) && !e.contains(Events::SIGNAL));
        assert_eq!(Events::from_bits(e.bits()), Some(e));
        assert_eq!(Events::from_bits(8), None);
        assert!(Events::NONE.is_empty());
    }

    #[test]
    fn close_reason_round_trips() {
        for r in [
            CloseReason::Closed,
            CloseReason::ThreadExited,
            CloseReason::TaskExited,
            CloseReason::TaskKilled,
        ] {
            assert_eq!(CloseReason::from_code(r.code()), Some(r));
        }
        assert_eq!(CloseReason::from_code(0), None);
        assert_eq!(CloseReason::from_code(5), None);
    }

    #[test]
    fn kernel_end_kinds() {
        assert!(kernel_end_kind::is_valid(kernel_end_kind::PAGE_FAULTS));
        assert!(kernel_end_kind::is_valid(kernel_end_kind::interrupt(11)));
        assert!(!kernel_end_kind::is_valid(0));
        assert!(!kernel_end_kind::is_valid(kernel_end_kind::PAGE_FAULTS | 0x100));
        assert!(!kernel_end_kind::is_valid(3));
    }

    #[test]
    fn records_have_fixed_layouts() {
        assert_eq!(core::mem::size_of::<ConnectionInfo>(), 40);
        assert_eq!(core::mem::size_of::<ConnectionEnds>(), 40);
    }
}
