//! The pager calls, for the memory daemon only (the kernel answers
//! `NotPrivileged` to every other task): attach, take events, map and unmap
//! pool frames in paged tasks, settle faults, fill spawns.

use alux_abi::pager::{PagerEvent, Pool};
use alux_abi::syscall::Sys;
use alux_abi::{Error, TaskId};

/// Becomes the pager: returns the doorbell end (a raw handle of this
/// thread) and where the pool lies.
pub fn attach() -> Result<(u64, Pool), Error> {
    let [end, window, frames, phys] = crate::sys::call(Sys::PagerAttach, [0; 6])?;
    Ok((end, Pool { window, frames, phys }))
}

/// The next event, or `None` when the queue is empty. An event the kernel
/// sends that this runtime cannot decode is `Err(InvalidArgument)`.
pub fn next() -> Result<Option<PagerEvent>, Error> {
    let (rax, words) = crate::sys::call_wide(Sys::PagerNext, [0; 6]);
    match rax {
        0 => PagerEvent::decode(words).map(Some).ok_or(Error::InvalidArgument),
        code => match Error::from_code(code) {
            Some(Error::TimedOut) => Ok(None),
            Some(e) => Err(e),
            None => Err(Error::UnknownSyscall),
        },
    }
}

/// Maps pool frame `frame` at `va` in `task` (`pager::page_flags`).
pub fn map(task: TaskId, va: u64, frame: u64, flags: u64) -> Result<(), Error> {
    crate::sys::call(Sys::PageMap, [task.raw(), va, frame, flags, 0, 0]).map(|_| ())
}

/// Unmaps the pool page at `va` in `task`: its frame and its
/// `pager::page_bits`.
pub fn unmap(task: TaskId, va: u64) -> Result<(u64, u64), Error> {
    let [frame, bits, ..] = crate::sys::call(Sys::PageUnmap, [task.raw(), va, 0, 0, 0, 0])?;
    Ok((frame, bits))
}

/// The frame and `pager::page_bits` of the pool page at `va` in `task`,
/// clearing its accessed bit if `clear`.
pub fn bits(task: TaskId, va: u64, clear: bool) -> Result<(u64, u64), Error> {
    let [frame, bits, ..] =
        crate::sys::call(Sys::PageBits, [task.raw(), va, clear as u64, 0, 0, 0])?;
    Ok((frame, bits))
}

/// Settles fault `fault` (`pager::verdict`).
pub fn resolve(fault: u64, verdict: u64) -> Result<(), Error> {
    crate::sys::call(Sys::FaultResolve, [fault, verdict, 0, 0, 0, 0]).map(|_| ())
}

/// Copies `dst.len()` bytes of `task`'s pending spawn image, from
/// `offset`, into `dst`.
pub fn spawn_read(task: TaskId, offset: u64, dst: &mut [u8]) -> Result<(), Error> {
    crate::sys::call(
        Sys::SpawnRead,
        [task.raw(), offset, dst.as_mut_ptr() as u64, dst.len() as u64, 0, 0],
    )
    .map(|_| ())
}

/// Starts `task` (`error` `None`) or fails its spawn with `error`.
pub fn spawn_finish(task: TaskId, error: Option<Error>) -> Result<(), Error> {
    let code = error.map_or(0, |e| e.code());
    crate::sys::call(Sys::SpawnFinish, [task.raw(), code, 0, 0, 0, 0]).map(|_| ())
}
