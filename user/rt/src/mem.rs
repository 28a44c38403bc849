//! Where this task's memory comes from: the memory daemon (memd) if the
//! task is paged (its start information names memd), else the kernel
//! (`MemMap`, for privileged tasks and tasks started before memd).
//!
//! memd is asked over basic IPC (`alux-memd-proto`). IPC is thread-local,
//! so each thread that asks opens its own connection to memd the first
//! time, kept in a fixed table (no allocation: the heap itself grows
//! through here). A connection closes with its thread.

use alux_abi::syscall::map_flags;
use alux_abi::{Error, TaskId};
use alux_memd_proto::{flags, Reply, Request, Status};
use core::sync::atomic::{AtomicU64, Ordering};

/// memd's task, or 0 when the kernel gives this task its memory.
static PAGER: AtomicU64 = AtomicU64::new(0);
/// The next request tag.
static TAG: AtomicU64 = AtomicU64::new(1);

/// Threads' connections to memd: `(raw thread ID, raw handle)`, 0 when
/// free. As many as a task may have threads.
const SLOTS: usize = 256;
static THREADS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static HANDLES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// Records who gives this task memory (called once at start).
pub(crate) fn init(pager_task: u64) {
    PAGER.store(pager_task, Ordering::Relaxed);
}

/// memd's task, if this task is paged.
pub fn pager() -> Option<TaskId> {
    match PAGER.load(Ordering::Relaxed) {
        0 => None,
        t => Some(TaskId::from_raw(t)),
    }
}

/// The calling thread's connection to memd, opened on first use.
fn connection(pager: TaskId) -> Result<u64, Error> {
    let me = crate::sys::self_info()?.1.raw();
    let start = (me as usize ^ (me >> 32) as usize) % SLOTS;
    let mut free = None;
    for i in 0..SLOTS {
        let s = (start + i) % SLOTS;
        match THREADS[s].load(Ordering::Acquire) {
            t if t == me => return Ok(HANDLES[s].load(Ordering::Acquire)),
            0 if free.is_none() => free = Some(s),
            _ => {}
        }
    }
    let [h, ..] = crate::sys::call(
        alux_abi::syscall::Sys::Connect,
        [pager.raw(), alux_abi::syscall::WAIT_FOREVER, 0, 0, 0, 0],
    )?;
    // A full table (threads that ended leave their slot behind) takes over
    // the slot the hash names: that thread, if alive, connects again.
    let s = free.unwrap_or(start);
    HANDLES[s].store(h, Ordering::Release);
    THREADS[s].store(me, Ordering::Release);
    Ok(h)
}

/// How many connections to memd this task's threads hold (each is an IPC
/// end, counted in the task's and its uid's share like any other).
pub fn connections() -> usize {
    THREADS.iter().filter(|t| t.load(Ordering::Relaxed) != 0).count()
}

/// Sends `req` on the calling thread's connection and waits for its reply
/// (the one with its tag: a late reply to an earlier request is skipped).
fn ask(req: Request) -> Result<Reply, Error> {
    let pager = pager().ok_or(Error::InvalidArgument)?;
    let h = connection(pager)?;
    let m = req.encode();
    let [a, b, c, d] = alux_abi::syscall::pack_message(&m);
    crate::sys::call(alux_abi::syscall::Sys::Send, [h, m.len() as u64, a, b, c, d])?;
    loop {
        let handles = [h];
        crate::sys::call(
            alux_abi::syscall::Sys::Poll,
            [handles.as_ptr() as u64, 1, alux_abi::syscall::WAIT_FOREVER, 0, 0, 0],
        )?;
        let mut data = [0u8; alux_abi::ipc::MESSAGE_MAX];
        let [len, ..] = crate::sys::call(
            alux_abi::syscall::Sys::Read,
            [h, data.as_mut_ptr() as u64, 0, 0, 0, 0],
        )?;
        if let Some(r) = Reply::decode(&data[..len as usize]) {
            if r.tag == req.tag() {
                return Ok(r);
            }
        }
    }
}

fn status_error(s: Status) -> Error {
    match s {
        Status::Ok => Error::InvalidArgument,
        Status::OutOfMemory | Status::NoSpace => Error::OutOfMemory,
        Status::UnknownTask => Error::NotPrivileged,
        Status::BadRequest | Status::InvalidArgument | Status::NotReserved => {
            Error::InvalidArgument
        }
    }
}

/// Reserves `len` bytes of zero-filled memory, writable if `write`
/// (never executable); returns its address. memd backs it page by page
/// when first touched.
pub fn reserve(len: usize, write: bool) -> Result<*mut u8, Error> {
    let Some(_) = pager() else {
        let f = if write { map_flags::WRITE } else { 0 };
        return crate::sys::mem_map(len, f);
    };
    let tag = TAG.fetch_add(1, Ordering::Relaxed);
    let f = if write { flags::WRITE } else { 0 };
    let r = ask(Request::Reserve { tag, len: len as u64, flags: f })?;
    match r.status {
        Status::Ok => Ok(r.a as *mut u8),
        s => Err(status_error(s)),
    }
}

/// Gives back memory from [`reserve`].
///
/// # Safety
/// Nothing may use the memory afterwards.
pub unsafe fn release(addr: *mut u8, len: usize) -> Result<(), Error> {
    if pager().is_none() {
        // SAFETY: the caller's promise, passed on.
        return unsafe { crate::sys::mem_unmap(addr, len) };
    }
    let tag = TAG.fetch_add(1, Ordering::Relaxed);
    let len = (len as u64).next_multiple_of(alux_memd_proto::PAGE_SIZE);
    let r = ask(Request::Release { tag, addr: addr as u64, len })?;
    match r.status {
        Status::Ok => Ok(()),
        s => Err(status_error(s)),
    }
}

/// memd's counters `first` and `first + 1` (`alux_memd_proto::counter`).
pub fn stats(first: u8) -> Result<(u64, u64), Error> {
    let tag = TAG.fetch_add(1, Ordering::Relaxed);
    let r = ask(Request::Stats { tag, first })?;
    match r.status {
        Status::Ok => Ok((r.a, r.b)),
        s => Err(status_error(s)),
    }
}
