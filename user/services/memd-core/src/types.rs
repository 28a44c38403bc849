//! Plain data of the memd policy: names of frames, slots, I/O tags and
//! faults, permissions, kill reasons, errors, configuration, counters, and
//! the [`Host`] trait through which the policy acts on the world.
//!
//! This module owns only definitions and pure helpers: it must never hold
//! state or make a policy decision.

use alux_abi::TaskId;

/// Bytes in a page (and in a pool frame).
pub const PAGE_SIZE: u64 = 4096;
/// Disk sectors (512 bytes) in one swap slot: one page.
pub const SECTORS_PER_SLOT: u64 = 8;
/// The first address no unprivileged task can use: the kernel's end of user
/// pointers (everything at or above it is the kernel half or non-canonical).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// A frame of memd's pool, by index `0..pool_frames`. The kernel refuses any
/// index outside the pool; memd never names a physical address to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame(pub u32);

/// A swap slot: sectors `[swap_start + 8 × slot, swap_start + 8 × slot + 8)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub u32);

impl Slot {
    /// The slot's first sector, counted from the start of the swap area.
    pub const fn first_sector(self) -> u64 {
        self.0 as u64 * SECTORS_PER_SLOT
    }
}

/// Names one disk request until its completion comes back. Packs the frame
/// index (low 32 bits) and a sequence number (high 32 bits, never 0), so a
/// stale or invented tag is recognised and refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u64);

impl Tag {
    pub(crate) const fn new(frame: Frame, seq: u32) -> Tag {
        Tag(((seq as u64) << 32) | frame.0 as u64)
    }
    /// The frame the request owns.
    pub const fn frame(self) -> Frame {
        Frame(self.0 as u32)
    }
}

/// The kernel's name for one blocked fault (carries a generation in the
/// kernel; memd only passes it back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(pub u64);

/// The access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Exec,
}

/// Permissions of a reserved range. Read is always granted (x86 has no
/// write-only or execute-only pages); write and execute never together
/// (W^X, as the kernel enforces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perms(u8);

impl Perms {
    /// Read only.
    pub const R: Perms = Perms(0);
    /// Read and write.
    pub const RW: Perms = Perms(Self::WRITE);
    /// Read and execute.
    pub const RX: Perms = Perms(Self::EXEC);
    /// Bit: writable (the same value as `alux_abi::map_flags::WRITE`).
    pub const WRITE: u8 = 1;
    /// Bit: executable (the same value as `alux_abi::map_flags::EXEC`).
    pub const EXEC: u8 = 2;

    /// Decodes `WRITE`/`EXEC` bits; `None` for undefined bits or W+X.
    pub const fn from_bits(bits: u64) -> Option<Perms> {
        if bits & !3 != 0 || bits == 3 {
            None
        } else {
            Some(Perms(bits as u8))
        }
    }
    /// The bits (`WRITE`, `EXEC`).
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Writable.
    pub const fn write(self) -> bool {
        self.0 & Self::WRITE != 0
    }
    /// Executable.
    pub const fn exec(self) -> bool {
        self.0 & Self::EXEC != 0
    }
    /// Whether `access` is allowed.
    pub const fn allows(self, access: Access) -> bool {
        match access {
            Access::Read => true,
            Access::Write => self.write(),
            Access::Exec => self.exec(),
        }
    }
}

/// How a never-touched page of a range starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Init {
    /// Zero-filled on first touch.
    Zero,
    /// Content given at spawn ([`crate::Memd::populate`]); a page of the
    /// range that was never given content starts zero-filled (an ELF
    /// segment's tail beyond its file bytes).
    Image,
}

/// The accessed and dirty bits of one mapping, as the kernel's `PageBits`
/// and `PageUnmap` report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PageBits {
    /// The page was read or written since the bit was last cleared.
    pub accessed: bool,
    /// The page was written since it was mapped.
    pub dirty: bool,
}

/// Why memd told the kernel to kill a faulting task. Codes are stable (the
/// daemon logs them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KillReason {
    /// An access to the first page (null pointers).
    NullPage = 1,
    /// An address in the kernel half or non-canonical.
    KernelAddress = 2,
    /// No reserved range holds the address.
    Unreserved = 3,
    /// A write to a range without write permission.
    WriteReadOnly = 4,
    /// An instruction fetch from a range without execute permission.
    ExecNonExec = 5,
    /// Reading the page back from swap failed.
    SwapReadFailed = 6,
    /// No frame can be freed for the page: the pool is full of pages that
    /// cannot be written to swap (swap full, or the disk keeps failing).
    OutOfMemory = 7,
    /// The kernel refused to map the page (e.g. out of page-table memory).
    MapFailed = 8,
    /// memd does not know the task (it was never announced with `TaskNew`).
    UnknownTask = 9,
    /// The task is already being killed; its other threads get this.
    TaskDying = 10,
}

/// Typed errors of memd's requests. The daemon maps them to protocol
/// status codes or kernel errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// A length, alignment, flag or address is out of range.
    InvalidArgument,
    /// The request would take the task past its quota.
    OutOfMemory,
    /// No free address range of that size in the task's reservation window.
    NoSpace,
    /// Some page of the range is not reserved (release), or is already
    /// reserved (reserve at a fixed address).
    NotReserved,
    /// The range overlaps a reserved one.
    Overlap,
    /// memd knows no such task.
    NoSuchTask,
    /// The task is already known.
    TaskExists,
    /// The task is being killed: no more requests.
    Dying,
    /// The page already has content (populate twice).
    AlreadyPresent,
    /// The kernel refused to map the page.
    MapFailed,
    /// No request in flight has this tag.
    UnknownTag,
    /// Shared memory: the connection is unknown or closed.
    NoSuchConnection,
    /// Shared memory: the asking thread is not an end of the connection.
    NotAnEnd,
    /// Shared memory: the other end is not a task memd serves (a privileged
    /// task, the kernel, or a task being killed).
    PeerNotServed,
    /// Shared memory: this end still maps a region shared on the
    /// connection.
    AlreadyShared,
    /// Shared memory: this end's earlier request on the connection still
    /// waits for the other end.
    AlreadyAsked,
    /// Shared memory: the two ends asked for different lengths.
    SizeMismatch,
    /// Shared memory: the other end could not take the region (its quota or
    /// address space), or it ended while this request waited.
    PeerFailed,
    /// Shared memory: the other end did not ask before the deadline.
    TimedOut,
    /// Shared memory: no request of this end waits on the connection.
    NotPending,
}

/// What kind of disk request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoKind {
    /// Frame to slot (swap-out).
    Write,
    /// Slot to frame (swap-in).
    Read,
}

/// One disk request. It owns its frame until its completion comes back
/// through [`crate::Memd::io_done`] (or a failed submission hands it back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoRequest {
    /// Names the request in its completion.
    pub tag: Tag,
    /// Read or write.
    pub kind: IoKind,
    /// The swap slot.
    pub slot: Slot,
    /// The pool frame (its physical address is the pool base + 4 KiB × index).
    pub frame: Frame,
}

/// The kernel refused a mapping (the task is gone, or out of page-table
/// memory): memd kills the fault's task or fails the spawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapRefused;

/// Everything memd does to the world. The daemon implements it with system
/// calls and messages to the disk driver; tests implement it with a fake
/// MMU, fake physical memory and a fake disk.
///
/// Calls are made synchronously from inside memd's event handlers; none may
/// call back into [`crate::Memd`].
pub trait Host {
    /// Maps pool frame `frame` at `va` (page aligned, user half, not
    /// mapped) in `task` with `perms` (`PageMap`).
    fn map(&mut self, task: TaskId, va: u64, frame: Frame, perms: Perms) -> Result<(), MapRefused>;
    /// Unmaps `va` in `task` and returns its bits (`PageUnmap`). If the
    /// kernel cannot tell (the task is gone), the answer must be
    /// `accessed` and `dirty`: the safe side, which keeps the data.
    fn unmap(&mut self, task: TaskId, va: u64) -> PageBits;
    /// Reads the bits of the mapping at `va`, clearing `accessed` if
    /// `clear` (`PageBits`; `dirty` is never cleared). Same rule as
    /// `unmap` when the kernel cannot tell.
    fn bits(&mut self, task: TaskId, va: u64, clear: bool) -> PageBits;
    /// Resumes the faulting thread: it retries its access.
    fn resume(&mut self, fault: FaultId);
    /// Kills the task of `fault` (`Faulted`), with memd's reason.
    fn kill(&mut self, task: TaskId, fault: FaultId, reason: KillReason);
    /// Fills a frame with zeros.
    fn zero(&mut self, frame: Frame);
    /// Copies `bytes` into `frame` at `offset` (`offset + len ≤ PAGE_SIZE`).
    fn copy_in(&mut self, frame: Frame, offset: usize, bytes: &[u8]);
    /// Hands a request to the disk driver. A refused submission hands the
    /// request back; memd then treats it as failed at once.
    fn submit(&mut self, req: IoRequest) -> Result<(), IoRequest>;
}

/// memd's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Frames in the pool.
    pub pool_frames: u32,
    /// Slots in the swap area (0: no swap).
    pub swap_slots: u32,
    /// Eviction starts when fewer frames than this are free.
    pub low_water: u32,
    /// Eviction goes on until this many frames are free or on their way
    /// (writes in flight).
    pub high_water: u32,
    /// Requests handed to the disk at once (the connections the daemon
    /// holds to the driver: one request in flight per connection); more
    /// wait in memd's queue, their frames pinned already.
    pub max_io: u32,
    /// Quota of a task whose spawner gave none (pages).
    pub default_quota: u64,
    /// Where [`crate::Memd::reserve`] places ranges: `[window_start,
    /// window_end)`, page aligned.
    pub window_start: u64,
    /// End of the reservation window.
    pub window_end: u64,
    /// Fault-around: a fault served with a zero-filled page also zero-fills
    /// and maps up to this many following pages of the same range that
    /// have no content yet, while the pool stays above `high_water` (0:
    /// off). They are ordinary resident pages (clean zero pages, evictable
    /// without I/O); the quota is unchanged, since it counts reserved
    /// pages.
    pub fault_around: u32,
}

impl Config {
    /// A configuration with the default watermarks (1/32 and 1/16 of the
    /// pool, at least 1 and 2), 16 requests at the disk, quota (64 MiB),
    /// window (`0x1000_0000_0000..0x7000_0000_0000`) and fault-around (7
    /// pages: a fault maps up to 32 KiB).
    pub const fn new(pool_frames: u32, swap_slots: u32) -> Config {
        let low = if pool_frames / 32 > 1 { pool_frames / 32 } else { 1 };
        let high = if pool_frames / 16 > 2 { pool_frames / 16 } else { 2 };
        Config {
            pool_frames,
            swap_slots,
            low_water: low,
            high_water: high,
            max_io: 16,
            default_quota: (64 << 20) / PAGE_SIZE,
            window_start: 0x0000_1000_0000_0000,
            window_end: 0x0000_7000_0000_0000,
            fault_around: 7,
        }
    }
}

/// memd's counters (what `Stats` reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames in the pool.
    pub frames_total: u64,
    /// Frames on the free list.
    pub frames_free: u64,
    /// Frames pinned by a disk request.
    pub frames_io: u64,
    /// Slots in the swap area.
    pub slots_total: u64,
    /// Slots holding (or about to hold) a page.
    pub slots_used: u64,
    /// Faults served with a zero-filled frame.
    pub faults_zero: u64,
    /// Pages zero-filled and mapped by fault-around, after a fault on a
    /// page before them (not faults: counted apart from `faults_zero`).
    pub prefaulted: u64,
    /// Faults served by reading the page from swap.
    pub faults_swap: u64,
    /// Faults served without I/O or zeroing (page already in memory).
    pub faults_minor: u64,
    /// Faults answered with a kill.
    pub faults_killed: u64,
    /// Pages written to swap (successfully).
    pub pages_out: u64,
    /// Pages read from swap (successfully).
    pub pages_in: u64,
    /// Pages taken out of memory by the clock (written, or dropped clean).
    pub evictions: u64,
    /// Failed swap writes.
    pub write_errors: u64,
    /// Failed swap reads.
    pub read_errors: u64,
    /// Known tasks.
    pub tasks: u64,
    /// Faults waiting for a free frame.
    pub waiting: u64,
}

/// One task's accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCounters {
    /// The task's quota (pages it may reserve).
    pub quota: u64,
    /// Pages reserved.
    pub reserved: u64,
    /// Pages holding a frame (resident or under I/O).
    pub resident: u64,
    /// Pages holding a swap slot.
    pub swapped: u64,
    /// The task was told to die and waits for `task_gone`.
    pub dying: bool,
}

/// The result of [`crate::Memd::fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The thread was resumed.
    Resumed,
    /// The task was killed.
    Killed(KillReason),
    /// The fault waits (for I/O in flight, or a free frame); it is answered
    /// by a later event.
    Waiting,
}

/// The result of [`crate::Memd::populate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Populate {
    /// The page holds the bytes and is mapped.
    Done,
    /// No frame is free now; eviction was started. Call again after the next
    /// `io_done` (the caller keeps the bytes).
    NoFrame,
}

/// A read-only view of one page's state (see [`crate::Memd::page`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageView {
    /// In `frame`; `slot` is kept for it (its copy valid unless `dirty`).
    Resident {
        /// The frame.
        frame: Frame,
        /// The slot kept for it.
        slot: Option<Slot>,
        /// The frame differs from the slot (or from zeros, with no slot).
        dirty: bool,
        /// Mapped in its task.
        mapped: bool,
    },
    /// Only in swap.
    Swapped {
        /// The slot.
        slot: Slot,
    },
    /// Being written to swap.
    Out {
        /// The frame the write owns.
        frame: Frame,
        /// The slot written.
        slot: Slot,
        /// Faults waiting for it.
        waiters: usize,
    },
    /// Being read from swap.
    In {
        /// The frame the read owns.
        frame: Frame,
        /// The slot read.
        slot: Slot,
        /// Faults waiting for it.
        waiters: usize,
    },
}
