//! Kernel entry and exit: the per-CPU block, the IDT, the interrupt and
//! exception stubs, the `syscall` entry and the one return-to-user path.
//!
//! Every entry from user mode saves the thread's general registers into the
//! current thread's [`Context`] (through the per-CPU block), then calls into
//! Rust on a kernel stack. Every return to user mode goes through
//! `return_to_user`, which restores whichever thread is current then: a
//! context switch is just changing the per-CPU pointers.
//!
//! # Vector state
//!
//! No entry saves the x87/SSE registers. The CPU's vector registers belong
//! to one context at a time, `fpu_owner` in the per-CPU block (0: they hold
//! nothing anybody needs):
//!
//! - In user mode the owner is always the running thread's context.
//! - Kernel Rust uses SSE nearly everywhere (the compiler copies structs
//!   through XMM registers; the prebuilt `core` does too), so before it
//!   runs, the owner's registers must be saved. Interrupts and exceptions
//!   from user mode and the general system call path save them at once
//!   ([`release_vectors`]: clear TS, save the owner's, owner 0).
//! - System calls that take a fast path must not touch them. As a
//!   guard, every `syscall` entry sets CR0.TS (one `mov cr0`): kernel code
//!   that touches an x87/SSE register before the registers were released
//!   traps (#NM, vector 7) before it changes anything, and the #NM stub,
//!   pure assembly, releases them and lets the instruction run again. So
//!   correctness never depends on what the compiler emits; only speed
//!   does (a trap costs about 40 instructions more than the eager save).
//! - `return_to_user` clears TS and, if the owner is not the context it
//!   returns to, saves the owner's registers (if any) and restores the
//!   returning context's: the one place a switch between threads moves
//!   vector state. A thread that blocks and comes back with nobody else's
//!   vector code in between pays nothing.
//! - A freed context stops being the owner (`forget_context`).
//!
//! So no thread ever runs with another's vector registers, and user code
//! never runs with TS set: there is no lazy restore in user mode, hence no
//! speculative window onto a previous owner's registers (the "LazyFP"
//! problem, CVE-2018-3665). Saves and restores use `xsaveopt`/`xrstor`
//! (x87 and SSE components only) when CPUID reports XSAVE, else
//! `fxsave`/`fxrstor`. See docs/decisions.md, "Vector state".
//!
//! Our own IDT type is used rather than the `x86_64` crate's: that one types
//! each vector's handler for the `x86-interrupt` ABI (nightly only), while
//! here all 256 vectors share one uniform assembly stub.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::context::{Context, Regs, Selectors, TrapFrame, USER_CS, USER_SS};
use super::cpu::wrmsr;
use super::gdt::{IST_CRITICAL, IST_GENERAL, MAX_CPUS};
use alux_abi::{TaskId, ThreadId, Uid};
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// Per-CPU data, reached from assembly through `gs` (offsets below).
#[repr(C)]
pub struct PerCpu {
    self_ptr: AtomicU64,
    user_rsp_scratch: AtomicU64,
    kernel_stack_top: AtomicU64,
    current_regs: AtomicU64,
    current_regs_end: AtomicU64,
    current_fpu: AtomicU64,
    may_sysret: AtomicU64,
    /// The `FpuArea` whose thread's vector state the CPU's registers hold
    /// (0: nobody's).
    fpu_owner: AtomicU64,
    /// CR0 with TS set: loaded on every entry from user mode.
    cr0_guard: AtomicU64,
    /// 1: save with `xsaveopt` and restore with `xrstor`; 0: `fxsave` and
    /// `fxrstor`.
    fpu_xsave: AtomicU64,
    /// Who runs on this CPU (`set_current_identity`): the thread's raw ID,
    /// its task's, and the task's uid with its `task_flags` above bit 32.
    /// The fast paths read them instead of looking the thread up.
    thread: AtomicU64,
    task: AtomicU64,
    ident: AtomicU64,
    /// This CPU's index (0: the boot CPU), for `cpu_index`.
    index: AtomicU64,
    /// Nonzero: the scheduler must choose again at this CPU's next
    /// dispatch (kept here, not in the kernel state, so that the fast
    /// paths test it with one instruction). Written under the kernel lock.
    resched: AtomicU64,
    /// The context whose thread's DS/ES/FS/GS this CPU holds (0: no live
    /// thread's). The kernel itself never loads these registers, so they
    /// keep the values of the last thread that ran here in user mode.
    selector_owner: AtomicU64,
}

const _: () = {
    assert!(core::mem::offset_of!(PerCpu, user_rsp_scratch) == 8);
    assert!(core::mem::offset_of!(PerCpu, kernel_stack_top) == 16);
    assert!(core::mem::offset_of!(PerCpu, current_regs) == 24);
    assert!(core::mem::offset_of!(PerCpu, current_regs_end) == 32);
    assert!(core::mem::offset_of!(PerCpu, current_fpu) == 40);
    assert!(core::mem::offset_of!(PerCpu, may_sysret) == 48);
    assert!(core::mem::offset_of!(PerCpu, fpu_owner) == 56);
    assert!(core::mem::offset_of!(PerCpu, cr0_guard) == 64);
    assert!(core::mem::offset_of!(PerCpu, fpu_xsave) == 72);
    assert!(core::mem::offset_of!(PerCpu, thread) == 80);
    assert!(core::mem::offset_of!(PerCpu, task) == 88);
    assert!(core::mem::offset_of!(PerCpu, ident) == 96);
    assert!(core::mem::offset_of!(PerCpu, index) == 104);
    assert!(core::mem::offset_of!(PerCpu, resched) == 112);
};

/// Each CPU's block, by CPU index.
static PER_CPU: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        self_ptr: AtomicU64::new(0),
        user_rsp_scratch: AtomicU64::new(0),
        kernel_stack_top: AtomicU64::new(0),
        current_regs: AtomicU64::new(0),
        current_regs_end: AtomicU64::new(0),
        current_fpu: AtomicU64::new(0),
        may_sysret: AtomicU64::new(0),
        fpu_owner: AtomicU64::new(0),
        cr0_guard: AtomicU64::new(0),
        fpu_xsave: AtomicU64::new(0),
        thread: AtomicU64::new(0),
        task: AtomicU64::new(0),
        ident: AtomicU64::new(0),
        index: AtomicU64::new(0),
        resched: AtomicU64::new(0),
        selector_owner: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// This CPU's block (through GS, which holds it in the kernel).
#[inline(always)]
fn this() -> &'static PerCpu {
    let block: u64;
    // SAFETY: GS holds this CPU's per-CPU block in the kernel; one load of
    // its `self_ptr`.
    unsafe {
        core::arch::asm!(
            "mov {0}, gs:[0]",
            out(reg) block,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    // SAFETY: `init_cpu` set `self_ptr` to this CPU's entry of `PER_CPU`
    // (a static) before GS was pointed at it.
    unsafe { &*(block as *const PerCpu) }
}

/// The index of the CPU this runs on (0: the boot CPU), from its per-CPU
/// block: one load, always below `MAX_CPUS` (so indexing a per-CPU array
/// needs no bounds check).
#[inline(always)]
pub fn cpu_index() -> usize {
    let index: u64;
    // SAFETY: GS holds this CPU's per-CPU block in the kernel; one load.
    // `pure, nomem`: the value is fixed for the CPU once `init_cpu` wrote
    // it, and kernel code never moves to another CPU (it is never
    // preempted), so the compiler may reuse one load for a whole function.
    unsafe {
        core::arch::asm!(
            "mov {0}, gs:[104]",
            out(reg) index,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    index as usize & (MAX_CPUS - 1)
}

/// Makes `ctx` the context the next return to user mode restores, and the
/// one the next entry from user mode saves into.
///
/// At a switch to another thread it also swaps DS/ES/FS/GS: the CPU's
/// values go to the thread that loaded them, and `ctx`'s are loaded if
/// they differ, so no thread ever sees another's selectors.
#[inline(always)]
pub fn set_current_context(ctx: &mut Context) {
    let cpu = this();
    let me = ctx as *mut Context as u64;
    let owner = cpu.selector_owner.load(Ordering::Relaxed);
    if owner != me {
        let live = if owner != 0 {
            // SAFETY: `owner` is a live, boxed context: a context clears
            // every CPU's `selector_owner` when it is dropped
            // (`forget_context`), and contexts never move. Nothing else
            // refers to its selectors now: they are only touched by the CPU
            // that owns them, under the kernel lock.
            unsafe {
                let slot = &raw mut (*(owner as *mut Context)).selectors;
                Selectors::save(slot);
                *slot
            }
        } else {
            Selectors::read()
        };
        if live != ctx.selectors {
            // SAFETY: the kernel runs with interrupts off; `ctx.selectors`
            // are zeros (a new thread) or values read from the CPU while
            // that thread ran in user mode, so each is a selector user code
            // could load.
            unsafe { ctx.selectors.load() };
        }
        cpu.selector_owner.store(me, Ordering::Relaxed);
    }
    let regs = &raw mut ctx.regs as u64;
    cpu.current_regs.store(regs, Ordering::Relaxed);
    cpu.current_regs_end.store(regs + core::mem::size_of_val(&ctx.regs) as u64, Ordering::Relaxed);
    cpu.current_fpu.store(&raw mut ctx.fpu as u64, Ordering::Relaxed);
}

/// Saves the selectors this CPU holds into their thread's context and
/// forgets the owner: called before the CPU idles, so that another CPU
/// that loads that thread finds its selectors up to date.
pub fn park_selectors() {
    let cpu = this();
    let owner = cpu.selector_owner.swap(0, Ordering::Relaxed);
    if owner != 0 {
        // SAFETY: as in `set_current_context`: a live boxed context, whose
        // selectors only this CPU touches while it owns them, under the
        // kernel lock.
        unsafe { Selectors::save(&raw mut (*(owner as *mut Context)).selectors) };
    }
}

/// Records who runs on this CPU from now on (with
/// [`set_current_context`], whenever the scheduler loads a thread).
#[inline(always)]
pub fn set_current_identity(thread: ThreadId, task: TaskId, uid: Uid, flags: u32) {
    let cpu = this();
    cpu.thread.store(thread.raw(), Ordering::Relaxed);
    cpu.task.store(task.raw(), Ordering::Relaxed);
    cpu.ident.store(uid as u64 | (flags as u64) << 32, Ordering::Relaxed);
}

/// `thread` of a CPU whose thread another CPU stopped (`mark_stopped`).
const STOPPED: u64 = u64::MAX;

/// Records that CPU `cpu`'s thread was stopped by this one (under the
/// kernel lock, while `cpu` waits for it): its next system call finds
/// that out with [`current_stopped`] before it reads anything of the
/// thread.
pub fn mark_stopped(cpu: usize) {
    PER_CPU[cpu].thread.store(STOPPED, Ordering::Relaxed);
}

/// Whether this CPU's thread was stopped by another CPU (`mark_stopped`)
/// since it was loaded: one compare.
#[inline(always)]
pub fn current_stopped() -> bool {
    let thread: u64;
    // SAFETY: GS holds the per-CPU block in the kernel; one load.
    unsafe {
        core::arch::asm!("mov {0}, gs:[80]", out(reg) thread, options(nostack, readonly, preserves_flags))
    };
    thread == STOPPED
}

/// Whether this CPU must choose its thread again at its next dispatch.
#[inline(always)]
pub fn resched_pending() -> bool {
    let r: u64;
    // SAFETY: GS holds the per-CPU block in the kernel; one load.
    unsafe {
        core::arch::asm!("mov {0}, gs:[112]", out(reg) r, options(nostack, readonly, preserves_flags))
    };
    r != 0
}

/// Sets or clears CPU `cpu`'s "choose again" flag (under the kernel lock).
#[inline(always)]
pub fn set_resched(cpu: usize, on: bool) {
    PER_CPU[cpu].resched.store(on as u64, Ordering::Relaxed);
}

/// The thread that runs on this CPU, read from the per-CPU block through
/// GS (one load; [`current_identity`] has the rest).
#[inline(always)]
pub fn current_thread() -> ThreadId {
    let thread: u64;
    // SAFETY: GS holds the per-CPU block in the kernel; one plain load.
    unsafe {
        core::arch::asm!(
            "mov {0}, gs:[80]",
            out(reg) thread,
            options(nostack, readonly, preserves_flags),
        );
    }
    ThreadId::from_raw(thread)
}

/// Who runs on this CPU: its thread, its task, the task's uid and
/// `task_flags`, read from the per-CPU block through GS (no lookup).
#[inline(always)]
pub fn current_identity() -> (ThreadId, TaskId, Uid, u32) {
    let (thread, task, ident): (u64, u64, u64);
    // SAFETY: GS holds the per-CPU block in the kernel; three plain loads.
    unsafe {
        core::arch::asm!(
            "mov {0}, gs:[80]",
            "mov {1}, gs:[88]",
            "mov {2}, gs:[96]",
            out(reg) thread, out(reg) task, out(reg) ident,
            options(nostack, readonly, preserves_flags),
        );
    }
    (ThreadId::from_raw(thread), TaskId::from_raw(task), ident as Uid, (ident >> 32) as u32)
}

/// Writes a finished call's result registers (`rax, rdi, rsi, rdx, r10`)
/// into the current thread's saved context, with plain stores, and says
/// whether it may leave through `sysretq` (its return address is below
/// `USER_POINTER_END`; it entered by `syscall`). For the fast paths.
#[inline(always)]
pub fn finish_current_call(r: [u64; 5], user_pointer_end: u64) -> bool {
    let [rax, rdi, rsi, rdx, r10] = r;
    let rip: u64;
    // SAFETY: GS holds the per-CPU block in the kernel; `current_regs`
    // points at the current thread's live `Regs` (the caller holds the
    // kernel lock), whose result registers the call owns.
    unsafe {
        core::arch::asm!(
            "mov {p}, gs:[24]",
            "mov [{p} + {orax}], {rax}",
            "mov [{p} + {ordi}], {rdi}",
            "mov [{p} + {orsi}], {rsi}",
            "mov [{p} + {ordx}], {rdx}",
            "mov [{p} + {or10}], {r10}",
            "mov {rip}, [{p} + {orip}]",
            p = out(reg) _,
            rip = lateout(reg) rip,
            rax = in(reg) rax, rdi = in(reg) rdi, rsi = in(reg) rsi,
            rdx = in(reg) rdx, r10 = in(reg) r10,
            orax = const core::mem::offset_of!(Regs, rax),
            ordi = const core::mem::offset_of!(Regs, rdi),
            orsi = const core::mem::offset_of!(Regs, rsi),
            ordx = const core::mem::offset_of!(Regs, rdx),
            or10 = const core::mem::offset_of!(Regs, r10),
            orip = const core::mem::offset_of!(Regs, rip),
            options(nostack, preserves_flags),
        );
    }
    rip < user_pointer_end
}

/// [`finish_current_call`] for the calls that return six registers
/// (`rax`, then `rdi, rsi, rdx, r10, r8, r9`).
#[inline(always)]
pub fn finish_current_wide_call(r: [u64; 7], user_pointer_end: u64) -> bool {
    let [rax, rdi, rsi, rdx, r10, r8, r9] = r;
    let rip: u64;
    // SAFETY: as for `finish_current_call`: the current thread's live
    // `Regs`, whose result registers the call owns.
    unsafe {
        core::arch::asm!(
            "mov {p}, gs:[24]",
            "mov [{p} + {orax}], {rax}",
            "mov [{p} + {ordi}], {rdi}",
            "mov [{p} + {orsi}], {rsi}",
            "mov [{p} + {ordx}], {rdx}",
            "mov [{p} + {or10}], {r10}",
            "mov [{p} + {or8}], {r8}",
            "mov [{p} + {or9}], {r9}",
            "mov {rip}, [{p} + {orip}]",
            p = out(reg) _,
            rip = lateout(reg) rip,
            rax = in(reg) rax, rdi = in(reg) rdi, rsi = in(reg) rsi,
            rdx = in(reg) rdx, r10 = in(reg) r10, r8 = in(reg) r8, r9 = in(reg) r9,
            orax = const core::mem::offset_of!(Regs, rax),
            ordi = const core::mem::offset_of!(Regs, rdi),
            orsi = const core::mem::offset_of!(Regs, rsi),
            ordx = const core::mem::offset_of!(Regs, rdx),
            or10 = const core::mem::offset_of!(Regs, r10),
            or8 = const core::mem::offset_of!(Regs, r8),
            or9 = const core::mem::offset_of!(Regs, r9),
            orip = const core::mem::offset_of!(Regs, rip),
            options(nostack, preserves_flags),
        );
    }
    rip < user_pointer_end
}

/// The current thread's first two system call argument registers (`rdi,
/// rsi`), as [`current_args`] reads them, for the calls that take no more.
#[inline(always)]
pub fn current_args2() -> [u64; 2] {
    let (a0, a1): (u64, u64);
    // SAFETY: as for `current_args`: reads of the current thread's live
    // `Regs` through the per-CPU block.
    unsafe {
        core::arch::asm!(
            "mov {p}, gs:[24]",
            "mov {a0}, [{p} + {rdi}]",
            "mov {a1}, [{p} + {rsi}]",
            p = out(reg) _,
            a0 = out(reg) a0, a1 = out(reg) a1,
            rdi = const core::mem::offset_of!(Regs, rdi),
            rsi = const core::mem::offset_of!(Regs, rsi),
            options(nostack, readonly, preserves_flags),
        );
    }
    [a0, a1]
}

/// The current thread's six system call argument registers as saved by
/// `syscall_entry` (`rdi, rsi, rdx, r10, r8, r9`), read with plain loads
/// into general registers (never through a vector register: the fast
/// path runs before the vector registers are released).
#[inline(always)]
pub fn current_args() -> [u64; 6] {
    let (a0, a1, a2, a3, a4, a5): (u64, u64, u64, u64, u64, u64);
    // SAFETY: GS holds the per-CPU block in the kernel; `current_regs`
    // points at the current thread's live `Regs` (set by
    // `set_current_context`, under the kernel lock the caller holds), and
    // only reads are made.
    unsafe {
        core::arch::asm!(
            "mov {p}, gs:[24]",
            "mov {a0}, [{p} + {rdi}]",
            "mov {a1}, [{p} + {rsi}]",
            "mov {a2}, [{p} + {rdx}]",
            "mov {a3}, [{p} + {r10}]",
            "mov {a4}, [{p} + {r8}]",
            "mov {a5}, [{p} + {r9}]",
            p = out(reg) _,
            a0 = out(reg) a0, a1 = out(reg) a1, a2 = out(reg) a2,
            a3 = out(reg) a3, a4 = out(reg) a4, a5 = out(reg) a5,
            rdi = const core::mem::offset_of!(Regs, rdi),
            rsi = const core::mem::offset_of!(Regs, rsi),
            rdx = const core::mem::offset_of!(Regs, rdx),
            r10 = const core::mem::offset_of!(Regs, r10),
            r8 = const core::mem::offset_of!(Regs, r8),
            r9 = const core::mem::offset_of!(Regs, r9),
            options(nostack, readonly, preserves_flags),
        );
    }
    [a0, a1, a2, a3, a4, a5]
}

/// Called when a context is freed: if a CPU holds its selectors or its
/// vector registers, they belong to nobody now (the next return to user
/// mode loads the new thread's, and nothing saves into the freed memory).
/// Another CPU can hold them only while it is stopped in the kernel
/// without the lock (`sched`, "stopping a thread on another CPU"), having
/// released its vector registers already; it reads its selector owner
/// only under the lock, which the caller holds.
pub fn forget_context(ctx: &mut Context) {
    let me = ctx as *mut Context as u64;
    let fpu = &raw mut ctx.fpu as u64;
    for cpu in &PER_CPU {
        let _ = cpu.selector_owner.compare_exchange(me, 0, Ordering::Relaxed, Ordering::Relaxed);
        let _ = cpu.fpu_owner.compare_exchange(fpu, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Saves the user's vector registers into their owner's context if the CPU
/// holds them, and clears CR0.TS: from here on kernel code may use SSE.
/// The next return to user mode restores the returning thread's.
#[inline]
pub fn release_vectors() {
    // SAFETY: `fpu_release` only reads the per-CPU block through GS (the
    // kernel's base while in the kernel), clears CR0.TS and writes the
    // owner's `FpuArea`, a live context (`forget_context` clears the owner
    // before a context is freed). It clobbers only rax, rdx and rdi.
    unsafe {
        core::arch::asm!(
            "call fpu_release",
            out("rax") _,
            out("rdx") _,
            out("rdi") _,
        )
    }
}

/// Chooses how vector state is saved (`xsaveopt`/`xrstor` if the CPU has
/// XSAVE and XSAVEOPT, which [`super::cpu::enable_xsave`] then enabled for
/// the x87 and SSE components) and records CR0 with TS set, which every
/// entry from user mode loads. Called once at boot, after CR0 and CR4 took
/// their final values and before the first thread runs. Returns whether
/// XSAVE is used.
pub fn init_fpu() -> bool {
    let xsave = super::cpu::enable_xsave();
    let cpu = this();
    cpu.fpu_xsave.store(xsave as u64, Ordering::Relaxed);
    cpu.cr0_guard.store(super::cpu::read_cr0() | super::cpu::CR0_TS, Ordering::Relaxed);
    xsave
}

/// Restores the current context and enters user mode through `iretq`
/// (right for any saved context); never returns. Used once per CPU, for
/// the first thread it runs.
pub fn enter_user() -> ! {
    // SAFETY: `set_current_context` has pointed the per-CPU block at a live
    // context; `return_to_user` restores it and `iretq`s to ring 3. GS base
    // holds the per-CPU block, which `swapgs` parks for the next entry.
    unsafe { core::arch::asm!("xor eax, eax", "jmp return_to_user", options(noreturn)) }
}

#[derive(Clone, Copy)]
#[repr(C)]
struct IdtEntry {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

#[repr(C, align(16))]
struct Idt([IdtEntry; 256]);

static mut IDT: Idt = Idt([IdtEntry {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
}; 256]);

extern "C" {
    fn isr_stubs();
    fn syscall_entry();
}

/// Size of each vector's stub in `isr_stubs`.
const STUB_SIZE: u64 = 16;

/// Vectors that run on the critical IST stack.
fn is_critical(vector: usize) -> bool {
    matches!(vector, 2 | 8 | 18)
}

/// #NM, device not available: raised in the kernel by its first x87/SSE
/// instruction after an entry from user mode (CR0.TS). It runs on the
/// stack it interrupted (no IST): it may interrupt a handler already on
/// an IST stack, which a fresh IST stack would overwrite. It never comes
/// from user mode (TS is clear there); if it did, the CPU would use the
/// empty kernel stack of the TSS, which its stub alone uses.
const DEVICE_NOT_AVAILABLE: usize = 7;

/// Builds and loads the IDT, points `gs` at the boot CPU's per-CPU block
/// and programs its `syscall` MSRs. `kernel_stack_top` is the stack Rust
/// runs on after any entry from user mode.
pub fn init(kernel_stack_top: u64) {
    let base = isr_stubs as *const () as u64;
    let kernel_cs = {
        use x86_64::instructions::segmentation::Segment;
        x86_64::instructions::segmentation::CS::get_reg().0
    };
    // SAFETY: runs once at boot, before interrupts are enabled and before
    // any other reference to IDT exists.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    for (v, e) in idt.0.iter_mut().enumerate() {
        let addr = base + v as u64 * STUB_SIZE;
        *e = IdtEntry {
            offset_low: addr as u16,
            selector: kernel_cs,
            ist: if v == DEVICE_NOT_AVAILABLE {
                0
            } else if is_critical(v) {
                IST_CRITICAL
            } else {
                IST_GENERAL
            } as u8,
            type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            reserved: 0,
        };
    }
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is static and every entry points at a valid stub.
    unsafe { lidt(&ptr) };
    init_cpu(0, kernel_stack_top);
}

/// Sets up another CPU's entry: the boot CPU's IDT (complete before any AP
/// starts), its own per-CPU block in `gs`, and the `syscall` MSRs.
pub fn init_ap(cpu: usize, kernel_stack_top: u64) {
    // SAFETY: `init` built the IDT before the APs were started and nothing
    // changes it afterwards: a shared reference to read its address.
    let idt = unsafe { &*core::ptr::addr_of!(IDT) };
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is static and every entry points at a valid stub.
    unsafe { lidt(&ptr) };
    init_cpu(cpu, kernel_stack_top);
}

/// Points `gs` at CPU `cpu`'s block and programs its `syscall` MSRs.
fn init_cpu(cpu: usize, kernel_stack_top: u64) {
    let kernel_cs = {
        use x86_64::instructions::segmentation::Segment;
        x86_64::instructions::segmentation::CS::get_reg().0
    };
    let block = &PER_CPU[cpu];
    let percpu = block as *const PerCpu as u64;
    block.self_ptr.store(percpu, Ordering::Relaxed);
    block.index.store(cpu as u64, Ordering::Relaxed);
    block.kernel_stack_top.store(kernel_stack_top, Ordering::Relaxed);
    const IA32_GS_BASE: u32 = 0xc000_0101;
    const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
    const IA32_STAR: u32 = 0xc000_0081;
    const IA32_LSTAR: u32 = 0xc000_0082;
    const IA32_FMASK: u32 = 0xc000_0084;
    // sysret loads CS = STAR[63:48] + 16 and SS = STAR[63:48] + 8.
    let sysret_base = USER_SS - 8 - 3;
    debug_assert_eq!(sysret_base + 16 + 3, USER_CS);
    // SAFETY: GS base is the per-CPU block while in the kernel (user GS is
    // swapped in on exit); the STAR selectors match the GDT layout; LSTAR is
    // the syscall stub; FMASK clears IF, TF, DF, AC and NT on entry, so the
    // kernel runs with interrupts off.
    unsafe {
        wrmsr(IA32_GS_BASE, percpu);
        wrmsr(IA32_KERNEL_GS_BASE, 0);
        wrmsr(IA32_STAR, (sysret_base << 48) | ((kernel_cs as u64) << 32));
        wrmsr(IA32_LSTAR, syscall_entry as *const () as u64);
        wrmsr(IA32_FMASK, 0x4_4700);
    }
}

// The Rust side of the entries, implemented by the kernel proper.
extern "C" {
    /// Handles the system call saved in the current context (`number` is
    /// its `rax`). Returns 1 if the (possibly new) current context may
    /// return with `sysretq`.
    fn syscall_from_user(number: u64) -> u64;
    /// Handles an interrupt or exception from user mode.
    fn trap_from_user(frame: &TrapFrame) -> u64;
    /// Handles an interrupt or exception that interrupted the kernel.
    fn trap_from_kernel(frame: &mut TrapFrame);
}

global_asm!(
    r#"
.section .text.entry, "ax"

/* The general registers in `Regs`/`TrapFrame` order (r15 lowest). */
.macro PUSH_GPRS
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
.endm

.macro POP_GPRS
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
.endm

/* Saves the CPU's vector registers into the area at \area (clobbers rax
   and rdx). CR0.TS must be clear. */
.macro FPU_SAVE area
    cmp qword ptr gs:[72], 0
    je 81f
    mov eax, -1
    mov edx, -1
    xsaveopt64 [\area]
    jmp 82f
81: fxsave64 [\area]
82:
.endm

/* Loads the vector registers from the area at \area (clobbers rax and
   rdx). CR0.TS must be clear. */
.macro FPU_RESTORE area
    cmp qword ptr gs:[72], 0
    je 83f
    mov eax, -1
    mov edx, -1
    xrstor64 [\area]
    jmp 84f
83: fxrstor64 [\area]
84:
.endm
.global isr_stubs
.p2align 4
isr_stubs:
.set vector, 0
.rept 256
    .p2align 4
    .set has_error, 0
    .if vector < 32
        .set has_error, (0x60227d00 >> vector) & 1
    .endif
    .if has_error == 0
        push 0
    .endif
    push vector
    jmp isr_common
    .set vector, vector + 1
.endr

isr_common:
    /* An interrupt gate does not clear DF or AC, which user code may have
       set: Rust (and rep-string memcpy) needs DF clear, and AC set would
       switch SMAP off. The frame's RFLAGS keeps the user's values. */
    cld
    pushfq
    and qword ptr [rsp], ~0x40000
    popfq
    cmp qword ptr [rsp], 7
    je 5f
    test qword ptr [rsp + 24], 3
    jz 2f
    swapgs
    PUSH_GPRS
    /* The kernel's Rust uses SSE: save the thread's vector state first. */
    call fpu_release
    mov rdi, rsp
    mov rsp, gs:[16]
    call {trap_from_user}
    jmp return_to_user

2:  PUSH_GPRS
    mov rdi, rsp
    call {trap_from_kernel}
    POP_GPRS
    add rsp, 16
    iretq

/* #NM: the kernel touched a vector register with CR0.TS set. Save the
   owner's registers (if any) into its context; from now on the registers
   are the kernel's scratch until return_to_user restores a thread's. */
5:  test qword ptr [rsp + 24], 3
    jnz 6f
    push rax
    push rdx
    push rdi
    call fpu_release
    pop rdi
    pop rdx
    pop rax
    add rsp, 16
    iretq
/* From user mode (never: TS is clear there): the registers are the
   thread's own; let it go on. */
6:  clts
    add rsp, 16
    iretq

/* Clears CR0.TS and saves the vector registers into their owner's area,
   if any: they are the kernel's scratch from now on. Clobbers rax, rdx,
   rdi and the flags. */
.global fpu_release
fpu_release:
    clts
    mov rdi, gs:[56]
    test rdi, rdi
    jz 1f
    FPU_SAVE rdi
    mov qword ptr gs:[56], 0
1:  ret

.global syscall_entry
.p2align 4
syscall_entry:
    swapgs
    mov gs:[8], rsp
    mov rsp, gs:[32]
    push {user_ss}
    push qword ptr gs:[8]
    push r11
    push {user_cs}
    push rcx
    PUSH_GPRS
    mov rdi, rax
    /* CR0.TS: vector instructions trap until the registers are released. */
    mov rax, gs:[64]
    mov cr0, rax
    mov rsp, gs:[16]
    call {syscall_from_user}

/* rax = 1 if the current context may leave through sysretq. */
.global return_to_user
return_to_user:
    mov gs:[48], rax
    clts
    /* The returning context's vector state, unless the CPU holds it; the
       owner's saved first (both with one choice of instructions). */
    mov rdi, gs:[40]
    mov rsi, gs:[56]
    cmp rdi, rsi
    je 4f
    mov eax, -1
    mov edx, -1
    cmp qword ptr gs:[72], 0
    je 9f
    test rsi, rsi
    jz 8f
    xsaveopt64 [rsi]
8:  xrstor64 [rdi]
    jmp 7f
9:  test rsi, rsi
    jz 6f
    fxsave64 [rsi]
6:  fxrstor64 [rdi]
7:  mov gs:[56], rdi
4:  mov rsp, gs:[24]
    POP_GPRS
    cmp qword ptr gs:[48], 0
    jne 3f
    swapgs
    iretq
3:  mov rcx, [rsp]
    mov r11, [rsp + 16]
    mov rsp, [rsp + 24]
    swapgs
    sysretq
"#,
    trap_from_user = sym trap_from_user,
    trap_from_kernel = sym trap_from_kernel,
    syscall_from_user = sym syscall_from_user,
    user_ss = const USER_SS,
    user_cs = const USER_CS,
);
