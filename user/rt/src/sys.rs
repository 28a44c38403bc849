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

/// The 16 XMM registers, low quadword first in each.
pub type Vectors = [[u64; 2]; 16];

/// Issues call `nr` like [`call_wide`], with XMM0–XMM15 loaded from `v`
/// just before `syscall` and stored back into `v` just after it: a test
/// of the kernel's promise that no call changes a thread's vector
/// registers (whatever happens meanwhile: a switch, another task's
/// thread running, a fault elsewhere). Returns `rax` and the six result
/// registers. Used by the `fpu` program.
#[inline(never)]
pub fn call_wide_keeping_vectors(nr: u64, a: [u64; 6], v: &mut Vectors) -> (u64, [u64; 6]) {
    let rax: u64;
    let [mut rdi, mut rsi, mut rdx, mut r10, mut r8, mut r9] = a;
    let p = v.as_mut_ptr();
    // SAFETY: as for `call_raw`; `p` points at 256 writable bytes (`v`),
    // kept in r12, which `syscall` and the kernel preserve; every XMM
    // register is declared clobbered.
    unsafe {
        asm!(
            "movdqu xmm0, [r12]", "movdqu xmm1, [r12 + 16]",
            "movdqu xmm2, [r12 + 32]", "movdqu xmm3, [r12 + 48]",
            "movdqu xmm4, [r12 + 64]", "movdqu xmm5, [r12 + 80]",
            "movdqu xmm6, [r12 + 96]", "movdqu xmm7, [r12 + 112]",
            "movdqu xmm8, [r12 + 128]", "movdqu xmm9, [r12 + 144]",
            "movdqu xmm10, [r12 + 160]", "movdqu xmm11, [r12 + 176]",
            "movdqu xmm12, [r12 + 192]", "movdqu xmm13, [r12 + 208]",
            "movdqu xmm14, [r12 + 224]", "movdqu xmm15, [r12 + 240]",
            "syscall",
            "movdqu [r12], xmm0", "movdqu [r12 + 16], xmm1",
            "movdqu [r12 + 32], xmm2", "movdqu [r12 + 48], xmm3",
            "movdqu [r12 + 64], xmm4", "movdqu [r12 + 80], xmm5",
            "movdqu [r12 + 96], xmm6", "movdqu [r12 + 112], xmm7",
            "movdqu [r12 + 128], xmm8", "movdqu [r12 + 144], xmm9",
            "movdqu [r12 + 160], xmm10", "movdqu [r12 + 176], xmm11",
            "movdqu [r12 + 192], xmm12", "movdqu [r12 + 208], xmm13",
            "movdqu [r12 + 224], xmm14", "movdqu [r12 + 240], xmm15",
            inlateout("rax") nr => rax,
            inlateout("rdi") rdi,
            inlateout("rsi") rsi,
            inlateout("rdx") rdx,
            inlateout("r10") r10,
            inlateout("r8") r8,
            inlateout("r9") r9,
            inout("r12") p => _,
            lateout("rcx") _,
            lateout("r11") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        );
    }
    (rax, [rdi, rsi, rdx, r10, r8, r9])
}

/// Loads XMM0–XMM15 from `v`, runs `rounds` iterations of an empty loop
/// (long enough to be preempted and to see interrupts), and stores the
/// registers back: they must come back unchanged through every
/// interrupt return.
#[inline(never)]
pub fn spin_keeping_vectors(rounds: u64, v: &mut Vectors) {
    let p = v.as_mut_ptr();
    // SAFETY: only registers and the 256 bytes of `v` are touched.
    unsafe {
        asm!(
            "movdqu xmm0, [r12]", "movdqu xmm1, [r12 + 16]",
            "movdqu xmm2, [r12 + 32]", "movdqu xmm3, [r12 + 48]",
            "movdqu xmm4, [r12 + 64]", "movdqu xmm5, [r12 + 80]",
            "movdqu xmm6, [r12 + 96]", "movdqu xmm7, [r12 + 112]",
            "movdqu xmm8, [r12 + 128]", "movdqu xmm9, [r12 + 144]",
            "movdqu xmm10, [r12 + 160]", "movdqu xmm11, [r12 + 176]",
            "movdqu xmm12, [r12 + 192]", "movdqu xmm13, [r12 + 208]",
            "movdqu xmm14, [r12 + 224]", "movdqu xmm15, [r12 + 240]",
            "2:",
            "sub {n}, 1",
            "jnz 2b",
            "movdqu [r12], xmm0", "movdqu [r12 + 16], xmm1",
            "movdqu [r12 + 32], xmm2", "movdqu [r12 + 48], xmm3",
            "movdqu [r12 + 64], xmm4", "movdqu [r12 + 80], xmm5",
            "movdqu [r12 + 96], xmm6", "movdqu [r12 + 112], xmm7",
            "movdqu [r12 + 128], xmm8", "movdqu [r12 + 144], xmm9",
            "movdqu [r12 + 160], xmm10", "movdqu [r12 + 176], xmm11",
            "movdqu [r12 + 192], xmm12", "movdqu [r12 + 208], xmm13",
            "movdqu [r12 + 224], xmm14", "movdqu [r12 + 240], xmm15",
            n = inout(reg) rounds.max(1) => _,
            inout("r12") p => _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack),
        );
    }
}

/// Loads XMM0–XMM15 from `v` and writes to address 0: the page fault kills
/// the task with its vector registers full (a test that they never reach
/// another thread).
pub fn fault_with_vectors(v: &Vectors) -> ! {
    let p = v.as_ptr();
    // SAFETY: deliberately faults; nothing after the store runs.
    unsafe {
        asm!(
            "movdqu xmm0, [r12]", "movdqu xmm1, [r12 + 16]",
            "movdqu xmm2, [r12 + 32]", "movdqu xmm3, [r12 + 48]",
            "movdqu xmm4, [r12 + 64]", "movdqu xmm5, [r12 + 80]",
            "movdqu xmm6, [r12 + 96]", "movdqu xmm7, [r12 + 112]",
            "movdqu xmm8, [r12 + 128]", "movdqu xmm9, [r12 + 144]",
            "movdqu xmm10, [r12 + 160]", "movdqu xmm11, [r12 + 176]",
            "movdqu xmm12, [r12 + 192]", "movdqu xmm13, [r12 + 208]",
            "movdqu xmm14, [r12 + 224]", "movdqu xmm15, [r12 + 240]",
            "mov qword ptr [0], 1",
            "ud2",
            in("r12") p,
            options(noreturn, nostack),
        );
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

/// The CPU the caller runs on (its index) and how many CPUs run threads.
pub fn cpu_info() -> Result<(u32, u32), Error> {
    let [cpu, count, ..] = call(Sys::CpuInfo, [0; 6])?;
    Ok((cpu as u32, count as u32))
}

/// Runs `thread` (of this task) only on CPU `cpu`, or on any CPU (`None`).
/// `InvalidArgument` if there is no such CPU.
pub fn thread_set_cpu(thread: ThreadId, cpu: Option<u32>) -> Result<(), Error> {
    let cpu = cpu.map_or(alux_abi::syscall::CPU_ANY, u64::from);
    call(Sys::ThreadSetCpu, [thread.raw(), cpu, 0, 0, 0, 0]).map(|_| ())
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
