//! Starting the other CPUs (application processors, APs): the real-mode
//! trampoline, INIT-SIPI-SIPI, and each AP's own set-up.
//!
//! The boot CPU copies the trampoline to physical `TRAMPOLINE` (below
//! 1 MiB, in the low memory the frame allocator never hands out), builds
//! temporary page tables next to it (the trampoline's 2 MiB identity-mapped,
//! plus the kernel half of the final tables), and starts one AP at a time:
//! INIT, then a startup IPI whose vector is the trampoline's page, a second
//! one if the AP has not answered. The AP climbs from real mode to long
//! mode, jumps to the kernel half, loads the final kernel tables (the
//! identity mapping is never used again) and runs [`ap_main`] on its own
//! kernel stack. An AP that does not say it is up within its time is
//! reported and left out; the boot never waits longer.
//!
//! This module owns the bring-up only. It must never decide what an AP
//! runs: that is the scheduler's.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::gdt::MAX_CPUS;
use super::{cpu, gdt, lapic, phys_to_virt, time};

/// Physical address of the trampoline (startup vector 0x08).
const TRAMPOLINE: u64 = 0x8000;
/// The temporary page tables: PML4, PDPT, PD.
const TEMP_PML4: u64 = 0x9000;
const TEMP_PDPT: u64 = 0xa000;
const TEMP_PD: u64 = 0xb000;

/// Each AP's kernel stack.
const AP_STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack(core::cell::UnsafeCell<[u8; AP_STACK_SIZE]>);

// SAFETY: each stack is used by one AP only, as its stack; Rust code never
// makes a reference to its bytes.
unsafe impl Sync for Stack {}

static AP_STACKS: [Stack; MAX_CPUS] =
    [const { Stack(core::cell::UnsafeCell::new([0; AP_STACK_SIZE])) }; MAX_CPUS];

/// CPUs running (the boot CPU counts).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Set by an AP once it is up (its CPU index).
static CAME_UP: AtomicU32 = AtomicU32::new(0);

/// Each CPU's local APIC ID, by CPU index (index 0: the boot CPU).
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];

global_asm!(
    r#"
.section .rodata.ap_trampoline, "a"
.global ap_trampoline_start
.global ap_trampoline_end
.global ap_trampoline_params
.code16
ap_trampoline_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    lgdt [0x8e40]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    /* jmp far 0x08:ap_pm32 with a 32-bit offset */
    .byte 0x66, 0xea
    .long 0x8000 + (ap_pm32 - ap_trampoline_start)
    .word 0x08
.code32
ap_pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    /* CR4: PAE, OSFXSR, OSXMMEXCPT (as boot.s) */
    mov eax, cr4
    or eax, 0x620
    mov cr4, eax
    mov eax, 0x9000
    mov cr3, eax
    /* EFER: SCE, LME, NXE */
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x901
    wrmsr
    /* CR0: PE, MP, NE, WP, PG; EM clear */
    mov eax, cr0
    and eax, 0xFFFFFFFB
    or eax, 0x80010023
    mov cr0, eax
    /* jmp far 0x18:ap_lm64 */
    .byte 0xea
    .long 0x8000 + (ap_lm64 - ap_trampoline_start)
    .word 0x18
.code64
ap_lm64:
    mov rsp, [0x8f00]
    mov rdi, [0x8f08]
    mov rsi, [0x8f10]
    mov rax, [0x8f18]
    jmp rax

/* Fixed offsets in the page (the memory operands above name them). */
.org 0xe00
ap_tgdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
    .quad 0x00af9a000000ffff    /* 0x18: 64-bit code */
.org 0xe40
ap_tgdt_ptr:
    .word 31
    .long 0x8e00
.org 0xf00
ap_trampoline_params:
    .quad 0     /* 0xf00: the AP's stack top */
    .quad 0     /* 0xf08: its CPU index */
    .quad 0     /* 0xf10: the final kernel root */
    .quad 0     /* 0xf18: ap_entry64 */
ap_trampoline_end:

.text
.code64
.global ap_entry64
/* In the kernel half, on the AP's stack, with the temporary tables: load
 * the final kernel tables (rsi) and go to Rust with the CPU index (rdi). */
ap_entry64:
    mov cr3, rsi
    xor ebp, ebp
    call {ap_main}
2:  cli
    hlt
    jmp 2b
"#,
    ap_main = sym ap_main,
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_trampoline_params: u8;
    fn ap_entry64();
}

/// CPUs running.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

fn write_phys_u64(phys: u64, v: u64) {
    // SAFETY: `phys` is in the first MiB, which the direct map covers and
    // the frame allocator never hands out (reserved at boot); only the boot
    // CPU writes it, while no AP runs the trampoline.
    unsafe { (phys_to_virt(phys) as *mut u64).write_volatile(v) }
}

/// Copies the trampoline and builds the temporary tables: the first 2 MiB
/// identity-mapped (one huge page, only while APs start), and the kernel
/// half (PML4 entries 256 to 511) shared with the final tables.
fn prepare(kernel_root: u64) {
    // The trampoline's bytes in read-only data (only the symbols'
    // addresses are taken).
    let (start, end) = (&raw const ap_trampoline_start as u64, &raw const ap_trampoline_end as u64);
    let len = (end - start) as usize;
    assert!(len <= 4096, "the trampoline fits its page");
    // SAFETY: `[start, end)` is the trampoline in the kernel image; the
    // destination is the reserved low page (see `write_phys_u64`).
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, phys_to_virt(TRAMPOLINE) as *mut u8, len)
    };
    for i in 0..512 {
        write_phys_u64(TEMP_PML4 + 8 * i, 0);
        write_phys_u64(TEMP_PDPT + 8 * i, 0);
        write_phys_u64(TEMP_PD + 8 * i, 0);
    }
    write_phys_u64(TEMP_PML4, TEMP_PDPT | 3);
    write_phys_u64(TEMP_PDPT, TEMP_PD | 3);
    // Present, writable, huge: physical 0..2 MiB, executable.
    write_phys_u64(TEMP_PD, 0x83);
    for i in 256..512u64 {
        // SAFETY: `kernel_root` is the final PML4's physical address,
        // inside the direct map; its kernel half is never changed after
        // boot, so this copy stays right.
        let e = unsafe { (phys_to_virt(kernel_root + 8 * i) as *const u64).read_volatile() };
        write_phys_u64(TEMP_PML4 + 8 * i, e);
    }
}

/// Starts every enabled CPU the MADT lists (up to [`MAX_CPUS`]), one at a
/// time, and prints which came up. `apic_ids` are the MADT's enabled CPUs;
/// `silent` names one that gets its INIT but no startup IPI (a test of the
/// CPU that never answers).
pub fn start_aps(apic_ids: &[u32], kernel_root: u64, silent: Option<u32>) {
    let me = lapic::id() as u32;
    APIC_IDS[0].store(me, Ordering::Release);
    let others: alloc::vec::Vec<u32> = apic_ids.iter().copied().filter(|&id| id != me).collect();
    if others.is_empty() {
        crate::kprintln!("[kernel] SMP: 1 CPU (APIC ID {})", me);
        return;
    }
    prepare(kernel_root);
    let params = &raw const ap_trampoline_params as u64 - &raw const ap_trampoline_start as u64;
    let mut up = alloc::vec![me];
    let mut missing = alloc::vec::Vec::new();
    for &id in &others {
        let cpu = up.len();
        if cpu >= MAX_CPUS {
            missing.push(id);
            continue;
        }
        let stack_top = AP_STACKS[cpu].0.get() as u64 + AP_STACK_SIZE as u64;
        let p = TRAMPOLINE + params;
        write_phys_u64(p, stack_top);
        write_phys_u64(p + 8, cpu as u64);
        write_phys_u64(p + 16, kernel_root);
        write_phys_u64(p + 24, ap_entry64 as *const () as u64);
        CAME_UP.store(0, Ordering::Release);
        APIC_IDS[cpu].store(id, Ordering::Release);
        let answered = |ns: u64| {
            let t0 = time::now_ns();
            while time::now_ns() - t0 < ns {
                if CAME_UP.load(Ordering::Acquire) == cpu as u32 {
                    return true;
                }
                core::hint::spin_loop();
            }
            false
        };
        lapic::send_init(id);
        answered(10_000_000);
        let startup = || {
            if silent != Some(id) {
                lapic::send_startup(id, (TRAMPOLINE >> 12) as u8);
            }
        };
        startup();
        let mut ok = answered(1_000_000);
        if !ok {
            startup();
            ok = answered(200_000_000);
        }
        if ok {
            up.push(id);
            ONLINE.store(up.len(), Ordering::Release);
        } else {
            // INIT again: a CPU that would answer late is held in its
            // wait for a startup IPI, and never runs on the stack and index
            // the next CPU gets.
            lapic::send_init(id);
            APIC_IDS[cpu].store(u32::MAX, Ordering::Release);
            missing.push(id);
        }
    }
    // The identity mapping goes: nothing may reach low memory through it.
    write_phys_u64(TEMP_PD, 0);
    crate::kprint!("[kernel] SMP: {} CPUs up (APIC IDs", up.len());
    for id in &up {
        crate::kprint!(" {}", id);
    }
    crate::kprint!(")");
    if !missing.is_empty() {
        crate::kprint!("; did not answer, left out:");
        for id in &missing {
            crate::kprint!(" {}", id);
        }
    }
    crate::kprintln!("");
}

/// An AP's first Rust code, on its own stack with the final kernel tables,
/// interrupts off. Sets up the CPU like the boot CPU, says it is up, and
/// hands itself to the scheduler (`ap_ready`, the kernel's), which never
/// returns.
extern "C" fn ap_main(cpu: usize) -> ! {
    let stack_top = AP_STACKS[cpu].0.get() as u64 + AP_STACK_SIZE as u64;
    gdt::init_cpu(cpu, stack_top);
    super::entry::init_ap(cpu, stack_top);
    cpu::enable_protections();
    lapic::init_ap();
    super::entry::init_fpu();
    CAME_UP.store(cpu as u32, Ordering::Release);
    // SAFETY: `ap_ready` is the kernel's Rust entry for a started AP, on
    // this CPU's own stack with its per-CPU block in GS.
    unsafe { ap_ready() }
}

extern "C" {
    /// The scheduler's side of a started AP (it waits for the kernel state
    /// and runs threads). Never returns.
    fn ap_ready() -> !;
}

// --- requests between CPUs ---
//
// A CPU holding the kernel lock may ask others to flush their TLB, to stop
// using an address space, or just to leave user mode (the thread it runs
// is being stopped): it writes the request into the target's mailbox,
// sends the kernel's IPI and waits for the answer. A target answers in its
// IPI handler, and in the loop that waits for the kernel lock (the asker
// holds it, so a target spinning for it could otherwise never answer).
// Answering never takes the lock.

/// Per CPU: requests asked (a count) and answered (the count answered).
static ASKED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ANSWERED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per CPU: the address space to leave with the request (0: none): if the
/// CPU has it loaded, it switches to the kernel's own tables.
static LEAVE_ROOT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The kernel's own page tables (every address space's upper half).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

/// Records the kernel's own tables, which a CPU loads to leave an address
/// space. Called once at boot, before any request.
pub fn set_kernel_root(root: u64) {
    KERNEL_ROOT.store(root, Ordering::Release);
}

/// Sends the kernel's IPI to CPU `cpu` (it enters the kernel if it runs
/// user code, or wakes if it idles).
pub fn kick(cpu: usize) {
    let id = APIC_IDS[cpu].load(Ordering::Acquire);
    if id != u32::MAX {
        lapic::send_ipi(id, lapic::IPI_VECTOR);
    }
}

/// Asks each CPU in `cpus` (never this one) to flush its TLB (its non-global
/// entries, by reloading CR3) and to release its vector registers, and, if
/// it has `leave_root` loaded, to load the kernel's tables instead; returns
/// once every one has answered. The caller holds the kernel lock, so a CPU
/// asked is either in user mode (the IPI brings it into the kernel, where
/// it answers before it waits for the lock), waiting for the lock, or idle
/// (the IPI wakes it): it answers within one interrupt's time.
pub fn ask(cpus: impl Iterator<Item = usize> + Clone, leave_root: u64) {
    let me = super::entry::cpu_index();
    for c in cpus.clone() {
        debug_assert_ne!(c, me);
        LEAVE_ROOT[c].store(leave_root, Ordering::Relaxed);
        ASKED[c].fetch_add(1, Ordering::Release);
        kick(c);
    }
    for c in cpus {
        let want = ASKED[c].load(Ordering::Relaxed);
        while ANSWERED[c].load(Ordering::Acquire) != want {
            core::hint::spin_loop();
        }
    }
}

/// Answers this CPU's pending request, if any (see [`ask`]). Called with
/// interrupts off, without the kernel lock.
#[inline]
pub fn answer() {
    let me = super::entry::cpu_index();
    let asked = ASKED[me].load(Ordering::Acquire);
    if asked == ANSWERED[me].load(Ordering::Relaxed) {
        return;
    }
    answer_slow(me, asked);
}

#[inline(never)]
fn answer_slow(me: usize, asked: u64) {
    // The thread this CPU ran may be freed once the answer is out: its
    // vector registers go to its context first, and nothing here may
    // touch them after.
    super::entry::release_vectors();
    let leave = LEAVE_ROOT[me].load(Ordering::Relaxed);
    let loaded = cpu::read_cr3();
    let next =
        if leave != 0 && loaded == leave { KERNEL_ROOT.load(Ordering::Acquire) } else { loaded };
    // SAFETY: `next` is either the tables already loaded (reloading them
    // flushes the non-global TLB entries) or the kernel's own, which map
    // the kernel like every address space.
    unsafe { cpu::write_cr3(next) };
    ANSWERED[me].store(asked, Ordering::Release);
}
