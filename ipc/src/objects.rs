//! The records the object model is made of: ends, threads and tasks.
//!
//! This module owns their layout and nothing else: no record here changes
//! another, and none knows the rules of IPC (those live in `crate::ipc`).
//! It must never hold pointers between records, only slab indices.

use alloc::boxed::Box;
use alloc::vec::Vec;

use alux_abi::ipc::MESSAGE_MAX;
use alux_abi::{TaskId, ThreadId, Uid};

use crate::list::{Links, List, NIL};

/// What an end slot currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndState {
    /// The slot is free (or retired).
    Free,
    /// A port, not in the listen queue.
    Port,
    /// A port in its task's listen queue.
    Queued,
    /// One end of a live connection.
    Connected,
    /// One end of a connection whose peer is closed. `buf` holds the
    /// peer's last data (this end's own buffer is dead: nobody can read it).
    PeerGone,
    /// The kernel's side of a kernel end (no owning thread).
    KernelSide,
}

/// `End::flags`: this end was a port (the peer connected to it).
pub(crate) const F_SERVER: u8 = 1;
/// `End::flags`: the connection's far side is the kernel.
pub(crate) const F_KERNEL: u8 = 2;
/// `End::flags`: the owner is parked in a poll whose set names this end.
pub(crate) const F_IN_WAIT_SET: u8 = 4;

/// One end slot. The kernel memory of a connection is two of these.
#[derive(Clone, Debug)]
pub(crate) struct End {
    /// Generation of the current (or last) occupant; 0 = never used.
    pub(crate) gen: u64,
    pub(crate) state: EndState,
    /// Pending `Events` bits; non-zero exactly when the end is on its
    /// owner's ready list (or the kernel ready list for a kernel side).
    pub(crate) pending: u8,
    /// `F_*` bits.
    pub(crate) flags: u8,
    /// `CloseReason` code once the peer is gone, else 0.
    pub(crate) close_reason: u8,
    /// Bytes in `buf`.
    pub(crate) len: u8,
    pub(crate) peer_uid: Uid,
    /// Owning thread slot (`NIL` for a kernel side).
    pub(crate) owner: u32,
    /// Owning task slot (`NIL` for a kernel side).
    pub(crate) task: u32,
    /// The peer end slot while connected, else `NIL`.
    pub(crate) peer: u32,
    /// Kernel-end kind, 0 for task-to-task connections.
    pub(crate) kernel_kind: u32,
    pub(crate) peer_task: TaskId,
    pub(crate) conn_id: u64,
    /// Writes to `buf` so far.
    pub(crate) seq: u64,
    /// When the end joined its ready list (FIFO order for explicit polls).
    pub(crate) ready_stamp: u64,
    /// Links on the owner's ready list (or the kernel ready list).
    pub(crate) ready: Links,
    /// Links on the owner's list of ends.
    pub(crate) owned: Links,
    /// Links on the task's listen queue.
    pub(crate) queue: Links,
    /// This end's outgoing buffer (see `EndState::PeerGone`).
    pub(crate) buf: [u8; MESSAGE_MAX],
}

impl End {
    /// A free slot with generation `gen`.
    pub(crate) const fn free(gen: u64) -> End {
        End {
            gen,
            state: EndState::Free,
            pending: 0,
            flags: 0,
            close_reason: 0,
            len: 0,
            peer_uid: 0,
            owner: NIL,
            task: NIL,
            peer: NIL,
            kernel_kind: 0,
            peer_task: TaskId::from_raw(0),
            conn_id: 0,
            seq: 0,
            ready_stamp: 0,
            ready: Links::UNLINKED,
            owned: Links::UNLINKED,
            queue: Links::UNLINKED,
            buf: [0; MESSAGE_MAX],
        }
    }

    /// True if the slot holds an end.
    pub(crate) fn live(&self) -> bool {
        self.state != EndState::Free
    }
}

/// Selects `End::ready`.
pub(crate) fn ready_links(e: &mut End) -> &mut Links {
    &mut e.ready
}
/// Selects `End::owned`.
pub(crate) fn owned_links(e: &mut End) -> &mut Links {
    &mut e.owned
}
/// Selects `End::queue`.
pub(crate) fn queue_links(e: &mut End) -> &mut Links {
    &mut e.queue
}
/// Selects `Thread::waiter`.
pub(crate) fn waiter_links(t: &mut Thread) -> &mut Links {
    &mut t.waiter
}

/// What a parked thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not parked.
    None,
    /// `poll_all`: any of its ends.
    PollAll,
    /// `receive`: any of its ends, and the ready end's peer buffer.
    Receive,
    /// `poll`: the ends in `Thread::wait_set` (flagged `F_IN_WAIT_SET`).
    PollSet,
    /// A blocking connect to this task slot (on its `waiters` list).
    Connect(u32),
}

/// A thread slot, indexed by `ThreadId::index()`.
#[derive(Debug)]
pub(crate) struct Thread {
    pub(crate) id: ThreadId,
    pub(crate) live: bool,
    /// Its task slot.
    pub(crate) task: u32,
    /// Every end it owns.
    pub(crate) owned: List,
    /// Its ends with pending events, oldest first.
    pub(crate) ready: List,
    pub(crate) wait: Wait,
    /// End slots of a parked explicit poll (capacity reused).
    pub(crate) wait_set: Vec<u32>,
    /// Links on a task's connect-waiter list.
    pub(crate) waiter: Links,
}

impl Thread {
    /// An empty slot.
    pub(crate) fn vacant() -> Thread {
        Thread {
            id: ThreadId::from_raw(0),
            live: false,
            task: NIL,
            owned: List::EMPTY,
            ready: List::EMPTY,
            wait: Wait::None,
            wait_set: Vec::new(),
            waiter: Links::UNLINKED,
        }
    }
}

/// Words in a connect-permission bitmap: one bit per uid.
pub(crate) const BITMAP_WORDS: usize = alux_abi::ids::UID_COUNT / 64;

/// A task slot, indexed by `TaskId::index()`.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) id: TaskId,
    pub(crate) live: bool,
    pub(crate) uid: Uid,
    pub(crate) privileged: bool,
    /// Live ends its threads own.
    pub(crate) ends: u32,
    /// Its live thread slots.
    pub(crate) threads: Vec<u32>,
    /// Its listen queue of ports, oldest first.
    pub(crate) queue: List,
    /// Threads of other tasks blocked in connect to it, oldest first.
    pub(crate) waiters: List,
    /// Denied uids, one bit each; `None` (nobody denied) until the first
    /// denial, so a task that never denies costs no 8 KiB.
    pub(crate) denied: Option<Box<[u64]>>,
}

impl Task {
    /// An empty slot.
    pub(crate) fn vacant() -> Task {
        Task {
            id: TaskId::from_raw(0),
            live: false,
            uid: 0,
            privileged: false,
            ends: 0,
            threads: Vec::new(),
            queue: List::EMPTY,
            waiters: List::EMPTY,
            denied: None,
        }
    }

    /// True if `uid` may connect.
    pub(crate) fn allows(&self, uid: Uid) -> bool {
        match &self.denied {
            None => true,
            Some(bits) => bits[uid as usize / 64] & (1 << (uid % 64)) == 0,
        }
    }
}
