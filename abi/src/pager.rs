//! The pager interface: what the kernel tells the memory daemon (memd) and
//! the words of the privileged calls memd answers with.
//!
//! The kernel queues [`PagerEvent`]s and rings memd's `PAGE_FAULTS` kernel
//! end as a doorbell when the queue stops being empty; memd takes them
//! one at a time with `PagerNext`, which returns an event's six words in
//! registers. See `docs/memory.md`.

use crate::{TaskId, ThreadId, Uid};

/// How a faulting access touched its page (bits of [`PagerEvent::Fault`]'s
/// `access`).
pub mod access {
    /// The access wrote.
    pub const WRITE: u64 = 1;
    /// The access fetched an instruction.
    pub const EXEC: u64 = 2;
    /// The page was present: the fault is a protection violation, not a
    /// missing page.
    pub const PRESENT: u64 = 4;
    /// The kernel met the page while carrying out a system call of the
    /// thread (copying its arguments or results), not the CPU: the call
    /// runs again once the page is there.
    pub const SYSCALL: u64 = 8;
}

/// Permissions of a page memd maps (`PageMap`'s `flags`). Read is implied;
/// `WRITE | EXEC` together is refused (W^X).
pub mod page_flags {
    /// Writable.
    pub const WRITE: u64 = 1;
    /// Executable.
    pub const EXEC: u64 = 2;
}

/// Bits `PageUnmap` and `PageBits` report from the page-table entry.
pub mod page_bits {
    /// The CPU read or wrote the page since the bit was last cleared.
    pub const ACCESSED: u64 = 1;
    /// The CPU wrote the page since it was mapped.
    pub const DIRTY: u64 = 2;
}

/// How memd settles a fault (`FaultResolve`'s `verdict`).
pub mod verdict {
    /// The page is there now: the thread retries its access.
    pub const RESUME: u64 = 0;
    /// The access is bad: the task dies `Faulted(PageFault, address)`.
    pub const KILL: u64 = 1;
    /// For a fault a system call met in the task's memory (`access::SYSCALL`):
    /// the call fails with `BadAddress`, as it would without a pager. For a
    /// fault of the CPU it is `KILL`.
    pub const ERROR: u64 = 2;
}

/// One thing the kernel tells memd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagerEvent {
    /// A thread of a paged task touched a page it may not: it waits until
    /// memd answers `FaultResolve(fault)`. `fault` is the thread's raw ID
    /// (a thread has at most one fault outstanding).
    Fault {
        /// The fault's ID, for `FaultResolve`.
        fault: u64,
        /// The task.
        task: TaskId,
        /// The thread.
        thread: ThreadId,
        /// The address it touched.
        addr: u64,
        /// `access` bits.
        access: u64,
    },
    /// `Spawn` created a paged task with an empty address space and waits
    /// for memd to fill it (`SpawnRead`, `PageMap`, then `SpawnFinish`).
    TaskNew {
        /// The new task.
        task: TaskId,
        /// Its uid.
        uid: Uid,
        /// Pages it may have, as the spawner asked (0: memd's default).
        quota_pages: u64,
        /// Length of its ELF image, readable with `SpawnRead`.
        image_len: u64,
        /// Length of its argument bytes (the kernel writes them with the
        /// start information at `SpawnFinish`).
        arg_len: u64,
    },
    /// A paged task ended. Its address space is gone: every pool frame it
    /// had mapped is memd's to reuse, and its faults are void.
    TaskGone {
        /// The task.
        task: TaskId,
    },
}

const FAULT: u64 = 1;
const TASK_NEW: u64 = 2;
const TASK_GONE: u64 = 3;

impl PagerEvent {
    /// The six words `PagerNext` returns.
    pub fn encode(&self) -> [u64; 6] {
        match *self {
            PagerEvent::Fault { fault, task, thread, addr, access } => {
                [FAULT | access << 8, fault, task.raw(), thread.raw(), addr, 0]
            }
            PagerEvent::TaskNew { task, uid, quota_pages, image_len, arg_len } => {
                [TASK_NEW | (uid as u64) << 8, task.raw(), quota_pages, image_len, arg_len, 0]
            }
            PagerEvent::TaskGone { task } => [TASK_GONE, task.raw(), 0, 0, 0, 0],
        }
    }

    /// Decodes `PagerNext`'s words; `None` for anything the kernel does not
    /// send.
    pub fn decode(w: [u64; 6]) -> Option<PagerEvent> {
        match w[0] & 0xff {
            FAULT if w[0] >> 8 <= 15 && w[5] == 0 => Some(PagerEvent::Fault {
                access: w[0] >> 8,
                fault: w[1],
                task: TaskId::from_raw(w[2]),
                thread: ThreadId::from_raw(w[3]),
                addr: w[4],
            }),
            TASK_NEW if w[0] >> 24 == 0 && w[5] == 0 => Some(PagerEvent::TaskNew {
                uid: (w[0] >> 8) as Uid,
                task: TaskId::from_raw(w[1]),
                quota_pages: w[2],
                image_len: w[3],
                arg_len: w[4],
            }),
            TASK_GONE if w[0] == TASK_GONE && w[2..] == [0; 4] => {
                Some(PagerEvent::TaskGone { task: TaskId::from_raw(w[1]) })
            }
            _ => None,
        }
    }
}

/// Where memd's pool lies, as `PagerAttach` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Where the whole pool is mapped in memd (read-write, never
    /// executable): frame `i` is at `window + i * 4096`.
    pub window: u64,
    /// How many frames it has.
    pub frames: u64,
    /// The physical address of frame 0 (frames are contiguous), for the
    /// disk driver.
    pub phys: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_refused() {
        let events = [
            PagerEvent::Fault {
                fault: 77,
                task: TaskId::new(3, 2),
                thread: ThreadId::new(9, 1),
                addr: 0x40_1000,
                access: access::WRITE | access::PRESENT,
            },
            PagerEvent::TaskNew {
                task: TaskId::new(4, 1),
                uid: 65535,
                quota_pages: 1024,
                image_len: 12345,
                arg_len: 17,
            },
            PagerEvent::TaskGone { task: TaskId::new(4, 1) },
        ];
        for e in events {
            assert_eq!(PagerEvent::decode(e.encode()), Some(e));
        }
        assert_eq!(PagerEvent::decode([0; 6]), None);
        assert_eq!(PagerEvent::decode([FAULT | 16 << 8, 0, 0, 0, 0, 0]), None);
        assert_eq!(PagerEvent::decode([TASK_GONE, 1, 1, 0, 0, 0]), None);
        assert_eq!(PagerEvent::decode([9, 0, 0, 0, 0, 0]), None);
    }
}
