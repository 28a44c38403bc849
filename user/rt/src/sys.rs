//! Raw system calls: the only place user space executes `syscall`. Every
//! function returns the shared [`Error`] on failure.

use alux_abi::syscall::Sys;
use alux_abi::{Error, TaskId, ThreadId};
use core::arch::asm;

/// Issues system call `nr` with up to six arguments; returns the four
/// result registers.
#[inline(always)]
pub fn call(nr: Sys, a: [u64; 6]) -> Result<[u64; 4], Error> {
    call_raw(nr as u64, a)
}

/// Like [`call`] with an arbitrary number (for tests of the kernel's
/// argument checking).
#[inline(always)]
pub fn call_raw(nr: u64, a: [u64; 6]) -> Result<[u64; 4], Error> {
    let (rax, rdi, rsi, rdx, r10): (u64, u64, u64, u64, u64);
    // SAFETY: `syscall` enters the kernel, which preserves every register
    // but the result registers and rcx/r11 (declared clobbered) and touches
    // only memory the arguments name, as the ABI documents.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => rax,
            inlateout("rdi") a[0] => rdi,
            inlateout("rsi") a[1] => rsi,
            inlateout("rdx") a[2] => rdx,
            inlateout("r10") a[3] => r10,
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if rax == 0 {
        Ok([rdi, rsi, rdx, r10])
    } else {
        Err(Error::from_code(rax).unwrap_or(Error::UnknownSyscall))
    }
}

/// Issues a call that returns six registers (`Receive`, `SendReceive`):
/// `rax` and `rdi, rsi, rdx, r10, r8, r9`.
#[inline(always)]
pub fn call_wide(nr: Sys, a: [u64; 6]) -> (u64, [u64; 6]) {
    let rax: u64;
    let [mut rdi, mut rsi, mut rdx, mut r10, mut r8, mut r9] = a;
    // SAFETY: as for `call_raw`; these calls return results in all six
    // argument registers (declared in-out) and touch no user memory.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as u64 => rax,
            inlateout("rdi") rdi,
            inlateout("rsi") rsi,
            inlateout("rdx") rdx,
            inlateout("r10") r10,
            inlateout("r8") r8,
            inlateout("r9") r9,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (rax, [rdi, rsi, rdx, r10, r8, r9])
}

/// `(task, thread, uid, flags)` of the caller.
pub fn self_info() -> Result<(TaskId, ThreadId, u64, u64), Error> {
    let [t, th, uid, flags] = call(Sys::SelfInfo, [0; 6])?;
    Ok((TaskId::from_raw(t), ThreadId::from_raw(th), uid, flags))
}

/// Kernel resource usage.
pub fn kernel_stats() -> Result<alux_abi::syscall::KernelStats, Error> {
    let mut s = alux_abi::syscall::KernelStats::default();
    call(Sys::KernelStats, [&mut s as *mut _ as u64, 0, 0, 0, 0, 0])?;
    Ok(s)
}

/// Stops the machine (privileged): code 0 reports success to the host.
pub fn shutdown(code: u64) -> Error {
    crate::io::flush();
    match call(Sys::Shutdown, [code, 0, 0, 0, 0, 0]) {
        Ok(_) => Error::InvalidArgument,
        Err(e) => e,
    }
}

/// Maps `len` bytes of zeroed memory (`map_flags`); returns its address.
pub fn mem_map(len: usize, flags: u64) -> Result<*mut u8, Error> {
    let [addr, ..] = call(Sys::MemMap, [len as u64, flags, 0, 0, 0, 0])?;
    Ok(addr as *mut u8)
}

/// Unmaps pages mapped by [`mem_map`].
///
/// # Safety
/// Nothing may use the memory afterwards.
pub unsafe fn mem_unmap(addr: *mut u8, len: usize) -> Result<(), Error> {
    call(Sys::MemUnmap, [addr as u64, len as u64, 0, 0, 0, 0]).map(|_| ())
}
