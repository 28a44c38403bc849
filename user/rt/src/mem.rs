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
use alux_memd_proto::{
    decode_reply, encode_request, Reply, Request, ReserveFlags, Stats, StatsGroup, Status,
};
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
/// (the one with its sequence number: a late reply to an earlier request is
/// skipped).
pub(crate) fn ask(req: Request) -> Result<Result<Reply, Status>, Error> {
    let pager = pager().ok_or(Error::InvalidArgument)?;
    let h = connection(pager)?;
    let seq = TAG.fetch_add(1, Ordering::Relaxed) as u32;
    let m = encode_request(seq, &req);
    let [a, b, c, d] = alux_abi::syscall::pack_message(&m);
    if let Err(e) = crate::sys::call(alux_abi::syscall::Sys::Send, [h, m.len() as u64, a, b, c, d])
    {
        forget(h);
        return Err(e);
    }
    loop {
        let handles = [h];
        let [_, info, ..] = crate::sys::call(
            alux_abi::syscall::Sys::Poll,
            [handles.as_ptr() as u64, 1, alux_abi::syscall::WAIT_FOREVER, 0, 0, 0],
        )?;
        let mut data = [0u8; alux_abi::ipc::MESSAGE_MAX];
        let [len, ..] = crate::sys::call(
            alux_abi::syscall::Sys::Read,
            [h, data.as_mut_ptr() as u64, 0, 0, 0, 0],
        )?;
        if let Ok(r) = decode_reply(&data[..len as usize]) {
            if r.seq == seq {
                return Ok(r.result);
            }
        }
        if info & alux_abi::ipc::Events::PEER_CLOSED.bits() as u64 != 0 {
            // memd closed this connection: the next request opens another.
            forget(h);
            let _ = crate::sys::call(alux_abi::syscall::Sys::Close, [h, 0, 0, 0, 0, 0]);
            return Err(Error::PeerClosed);
        }
    }
}

/// Sends any request to memd on the calling thread's connection and
/// waits for its answer: memd's own reply, undecoded into an error (for
/// tests and tools; programs use the typed calls).
///
/// # Safety
/// A `Release` or `ShareRelease` must name memory nothing uses any more
/// (as [`release`] requires): memd may hand the range out again.
pub unsafe fn ask_raw(req: Request) -> Result<Result<Reply, Status>, Error> {
    ask(req)
}

/// Drops the table's record of connection `h`.
fn forget(h: u64) {
    for (t, hh) in THREADS.iter().zip(HANDLES.iter()) {
        if hh.load(Ordering::Acquire) == h {
            t.store(0, Ordering::Release);
        }
    }
}

fn status_error(s: Status) -> Error {
    match s {
        Status::OutOfMemory | Status::NoSpace => Error::OutOfMemory,
        Status::NoSuchTask | Status::Dying => Error::NotPrivileged,
        _ => Error::InvalidArgument,
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
    let flags = if write { ReserveFlags::WRITE } else { ReserveFlags::READ };
    match ask(Request::Reserve { len: len as u64, flags })? {
        Ok(Reply::Reserved { addr }) => Ok(addr as *mut u8),
        Ok(_) => Err(Error::InvalidArgument),
        Err(s) => Err(status_error(s)),
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
    match ask(Request::Release { addr: addr as u64, len: len as u64 })? {
        Ok(Reply::Released) => Ok(()),
        Ok(_) => Err(Error::InvalidArgument),
        Err(s) => Err(status_error(s)),
    }
}

/// memd's counters (the caller's own in `quota`, `reserved`, `resident`).
pub fn stats() -> Result<Stats, Error> {
    let mut all = Stats::default();
    for group in StatsGroup::ALL {
        match ask(Request::Stats { group })? {
            Ok(Reply::Stats { group: g, values }) if g == group => all.set_group(group, values),
            Ok(_) => return Err(Error::InvalidArgument),
            Err(s) => return Err(status_error(s)),
        }
    }
    Ok(all)
}
