//! Probes for the kernel's boot self-test: a write or an instruction fetch
//! that is meant to fault, and the page-fault handler's way to recover
//! from exactly that fault.
//!
//! It owns one "expected fault" slot. A probe arms it with the address of
//! the instruction that should fault and where to resume; the kernel-mode
//! page-fault handler ([`recover`]) resumes there only if the fault is at
//! that exact instruction while the slot is armed, and records the error
//! code and address. Every other kernel fault stays fatal. Only the boot
//! self-test (`selftest=wx` on the kernel command line) arms the slot,
//! before any user task exists: nothing a user task does can reach it.

use super::context::TrapFrame;
use core::sync::atomic::{AtomicU64, Ordering};

/// The expected fault. Field offsets are used by the probes' assembly.
#[repr(C)]
struct Expected {
    /// Address of the instruction that should fault; 0 when disarmed.
    rip: AtomicU64,
    /// Where to resume after it faulted.
    resume: AtomicU64,
    /// Bytes to pop off the stack when resuming (the return address a
    /// faulting `call` pushed).
    pop: AtomicU64,
    /// The fault's error code, once it happened.
    error: AtomicU64,
    /// The fault's address (CR2), once it happened.
    address: AtomicU64,
    /// 1 once the fault happened.
    hit: AtomicU64,
}

static EXPECTED: Expected = Expected {
    rip: AtomicU64::new(0),
    resume: AtomicU64::new(0),
    pop: AtomicU64::new(0),
    error: AtomicU64::new(0),
    address: AtomicU64::new(0),
    hit: AtomicU64::new(0),
};

/// A page fault a probe caught.
#[derive(Clone, Copy, Debug)]
pub struct Caught {
    /// The page-fault error code (bit 0 protection, 1 write, 4 fetch).
    pub error: u64,
    /// The faulting address.
    pub address: u64,
}

fn reset() {
    EXPECTED.hit.store(0, Ordering::SeqCst);
    EXPECTED.error.store(0, Ordering::SeqCst);
    EXPECTED.address.store(0, Ordering::SeqCst);
}

fn take() -> Option<Caught> {
    EXPECTED.rip.store(0, Ordering::SeqCst);
    (EXPECTED.hit.load(Ordering::SeqCst) == 1).then(|| Caught {
        error: EXPECTED.error.load(Ordering::SeqCst),
        address: EXPECTED.address.load(Ordering::SeqCst),
    })
}

/// Reads the byte at `addr` and writes it back unchanged; returns the page
/// fault this caused, or `None` if the write went through (harmlessly: the
/// byte is the same).
///
/// # Safety
/// `addr` must be mapped and readable in the kernel (a read fault there
/// would be fatal), and writing its own value back must be harmless if the
/// write succeeds.
pub unsafe fn write_faults(addr: u64) -> Option<Caught> {
    reset();
    EXPECTED.pop.store(0, Ordering::SeqCst);
    // SAFETY: the caller guarantees `addr` is readable and that writing its
    // byte back is harmless; if the write faults, `recover` resumes at `3:`
    // with every register as it was.
    unsafe {
        core::arch::asm!(
            "lea {t}, [rip + 3f]",
            "mov [{e} + 8], {t}",
            "lea {t}, [rip + 2f]",
            "mov [{e}], {t}",
            "movzx {t:e}, byte ptr [{a}]",
            "2:",
            "mov byte ptr [{a}], {t:l}",
            "3:",
            e = in(reg) &EXPECTED,
            a = in(reg) addr,
            t = out(reg) _,
            options(nostack),
        );
    }
    take()
}

/// Calls the code at `addr`, which must be a `ret` (0xc3); returns the page
/// fault the instruction fetch caused, or `None` if it executed.
///
/// # Safety
/// The byte at `addr` must be `0xc3`, so that executing it just returns.
pub unsafe fn fetch_faults(addr: u64) -> Option<Caught> {
    reset();
    EXPECTED.pop.store(8, Ordering::SeqCst);
    // SAFETY: the caller guarantees `addr` holds a `ret`, so if the fetch is
    // allowed the call returns at once; if it faults, `recover` resumes at
    // `3:` and drops the return address the call pushed; either way no
    // register changes. The asm pushes on the stack (no `nostack`), so the
    // compiler keeps the red zone free.
    unsafe {
        core::arch::asm!(
            "lea {t}, [rip + 3f]",
            "mov [{e} + 8], {t}",
            "mov [{e}], {a}",
            "call {a}",
            "3:",
            e = in(reg) &EXPECTED,
            a = in(reg) addr,
            t = out(reg) _,
        );
    }
    take()
}

/// Called by the kernel-mode exception handler for a page fault: if it is
/// the fault an armed probe expects, records it, makes `frame` resume after
/// the probe and returns true. Any other fault returns false (fatal).
pub fn recover(frame: &mut TrapFrame, address: u64) -> bool {
    let rip = EXPECTED.rip.load(Ordering::SeqCst);
    if rip == 0 || frame.rip != rip || frame.vector != 14 {
        return false;
    }
    EXPECTED.rip.store(0, Ordering::SeqCst);
    EXPECTED.error.store(frame.error, Ordering::SeqCst);
    EXPECTED.address.store(address, Ordering::SeqCst);
    EXPECTED.hit.store(1, Ordering::SeqCst);
    frame.rip = EXPECTED.resume.load(Ordering::SeqCst);
    frame.rsp += EXPECTED.pop.load(Ordering::SeqCst);
    true
}
