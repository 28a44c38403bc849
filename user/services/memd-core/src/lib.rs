//! The policy of memd, alux's memory daemon, as a deterministic state
//! machine driven by events: the ranges every unprivileged task reserved,
//! the state of each of its pages, the pool of frames memd owns, the swap
//! slots, the clock that chooses pages to evict, and the queue of faults
//! waiting for a frame. See `docs/memory.md`.
//!
//! The daemon feeds it events ([`Memd::task_new`], [`Memd::reserve`],
//! [`Memd::release`], [`Memd::populate`], [`Memd::fault`],
//! [`Memd::io_done`], [`Memd::io_retry`], [`Memd::task_gone`],
//! [`Memd::tick`], and for shared regions [`Memd::share_request`],
//! [`Memd::share_withdraw`], [`Memd::share_expire`],
//! [`Memd::share_release`]) and implements [`Host`], through
//! which the crate maps and unmaps frames, reads accessed/dirty bits,
//! resumes or kills faulting threads, fills frames, and submits disk
//! requests. The crate never blocks, never touches memory or hardware, and
//! never uses `unsafe`; a request owns its frame until its completion
//! comes back, so no error path can free a frame the disk still writes.
//! At most [`Config::max_io`] requests are at the disk at once; the rest
//! wait in memd with their frames pinned. [`Memd::audit`] checks every
//! invariant.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

mod audit;
mod memd;
mod share;
mod slots;
mod types;

pub use alux_abi::TaskId;
pub use memd::Memd;
pub use share::{ConnEnds, End, Granted, ShareAnswer, ShareAsk, ShareId, Withdrawal};
pub use types::{
    Access, Config, Counters, Error, FaultId, FaultOutcome, Frame, Host, Init, IoKind, IoRequest,
    KillReason, MapRefused, PageBits, PageView, Perms, Populate, Slot, Tag, TaskCounters,
    PAGE_SIZE, SECTORS_PER_SLOT, USER_END,
};

impl Memd {
    /// Checks every invariant: each frame is free (and on the free list,
    /// once) xor owned by one page that points back to it (or by a request
    /// whose page died); each request's frame and slot match its page's
    /// state; the slots taken are exactly the slots referenced, once each;
    /// per-task counts, reserved pages and quotas agree; no fault waits
    /// while a frame is free; the counters agree with the state.
    pub fn audit(&self) -> Result<(), &'static str> {
        audit::audit(self)
    }
}
