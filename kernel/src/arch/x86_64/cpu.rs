//! Small wrappers over privileged instructions: port I/O, MSRs, control
//! registers, halting and the QEMU exit device.

use core::arch::asm;

/// Writes a byte to an I/O port.
#[inline]
pub fn outb(port: u16, value: u8) {
    // SAFETY: port writes have no memory effects; the kernel only writes
    // ports of devices it owns (serial, PIC, PIT, debug-exit).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
#[inline]
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`; reads of the kernel's own devices.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Writes a 32-bit value to an I/O port.
#[inline]
pub fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a 32-bit value from an I/O port.
#[inline]
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Clears the Bus Master Enable bit of PCI function `bdf` (bus << 8 |
/// device << 3 | function) through configuration mechanism #1, so the
/// device stops reading and writing memory. The address register is saved
/// and restored: a driver may have been between its two accesses.
pub fn pci_stop_bus_master(bdf: u16) {
    const ADDRESS: u16 = 0xcf8;
    const DATA: u16 = 0xcfc;
    let saved = inl(ADDRESS);
    // The command register is the low half of dword 1 (offset 4); the
    // status register above it clears bits written as 1, so write 0 there.
    outl(ADDRESS, 0x8000_0000 | (bdf as u32) << 8 | 4);
    let command = inl(DATA) & 0xffff;
    outl(DATA, command & !(1 << 2));
    outl(ADDRESS, saved);
}

/// Reads a model-specific register.
#[inline]
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only architectural MSRs that exist on every x86_64 CPU are read.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    ((hi as u64) << 32) | lo as u64
}

/// Writes a model-specific register.
///
/// # Safety
/// The value must be valid for the MSR and keep the kernel's invariants
/// (e.g. the system call entry point must stay a valid stub).
#[inline]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller upholds the MSR-specific contract.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads a counter.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    ((hi as u64) << 32) | lo as u64
}

/// RFLAGS as the kernel runs now.
#[inline]
pub fn rflags() -> u64 {
    let v: u64;
    // SAFETY: pushfq/pop only read the flags through the kernel stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) v, options(nomem, preserves_flags)) }
    v
}

/// RFLAGS bits the entry stubs must have cleared before any Rust code runs:
/// DF (string instructions go up) and AC (SMAP stays in force).
pub const RFLAGS_KERNEL_CLEAR: u64 = (1 << 10) | (1 << 18);

/// Switches address space.
///
/// # Safety
/// `root` must be a valid PML4 whose upper half maps the kernel exactly as
/// the current one does.
#[inline]
pub unsafe fn write_cr3(root: u64) {
    // SAFETY: the caller guarantees the kernel stays mapped.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) }
}

/// The address space the CPU runs in: CR3, the physical address of its
/// PML4 (no PCID bits: PCIDs are not used).
#[inline]
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// The faulting address of the last page fault.
#[inline]
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Enables interrupts, waits for one, and disables them again. The kernel
/// otherwise always runs with interrupts off.
#[inline]
pub fn wait_for_interrupt() {
    // SAFETY: `sti; hlt` lets a pending interrupt run its (kernel-mode)
    // handler, which saves and restores every general register; `clobber_abi`
    // tells the compiler vector registers may change. `cli` restores the
    // interrupts-off invariant.
    unsafe { asm!("sti", "hlt", "cli", clobber_abi("C")) }
}

/// Which optional protections [`enable_protections`] turned on.
#[derive(Clone, Copy, Debug)]
pub struct Protections {
    /// CR4.SMEP: the kernel cannot execute user pages.
    pub smep: bool,
    /// CR4.SMAP: the kernel cannot touch user pages through user addresses.
    pub smap: bool,
    /// CR4.UMIP: `sgdt`, `sidt`, `sldt`, `str` and `smsw` fault in user mode.
    pub umip: bool,
}

/// Turns on the protections the CPU offers that cost the kernel nothing:
/// SMEP (the kernel never executes user pages), SMAP (it never touches
/// user pages directly: it copies through the direct map) and UMIP (user
/// code has no business reading descriptor-table addresses or CR0). Returns
/// which were enabled.
pub fn enable_protections() -> Protections {
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
    let on = Protections {
        smep: leaf7.ebx & (1 << 7) != 0,
        smap: leaf7.ebx & (1 << 20) != 0,
        umip: leaf7.ecx & (1 << 2) != 0,
    };
    let mut cr4 = read_cr4();
    for (wanted, bit) in [(on.smep, 20), (on.smap, 21), (on.umip, 11)] {
        if wanted {
            cr4 |= 1 << bit;
        }
    }
    // SAFETY: only bits the CPU reports as supported are set; the kernel
    // runs no user code in ring 0, reaches user memory only through the
    // direct map, and UMIP restricts only user mode, so none can fault it.
    unsafe { asm!("mov cr4, {}", in(reg) cr4, options(nostack, preserves_flags)) };
    on
}

/// CR4 as it is now.
#[inline]
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// CR0.TS: the next x87/SSE instruction raises #NM (see `entry.rs`,
/// "Vector state").
pub const CR0_TS: u64 = 1 << 3;

/// CR4.OSXSAVE: `xsave`, `xrstor` and `xsetbv` are enabled.
const CR4_OSXSAVE: u64 = 1 << 18;
/// XCR0 bits: the x87 and SSE state components.
const XCR0_X87_SSE: u64 = 0b11;

/// Enables XSAVE for the x87 and SSE components only (XCR0 = 3) if CPUID
/// reports both XSAVE (leaf 1, ECX bit 26) and XSAVEOPT (leaf 0xD
/// sub-leaf 1, EAX bit 0). Returns whether it did. Larger components (AVX
/// and up) stay disabled, so their instructions fault in user mode and
/// their state never needs saving: the save area stays 576 bytes
/// (`context::FPU_AREA_SIZE`). Without them the kernel keeps `fxsave`.
pub fn enable_xsave() -> bool {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 26) == 0 || core::arch::x86_64::__cpuid(0).eax < 0xd {
        return false;
    }
    if core::arch::x86_64::__cpuid_count(0xd, 1).eax & 1 == 0 {
        return false;
    }
    let cr4 = read_cr4() | CR4_OSXSAVE;
    // SAFETY: CPUID reports XSAVE, so CR4.OSXSAVE may be set and XCR0
    // written; the x87 bit is mandatory and SSE is present on every x86_64
    // CPU. No vector state is live yet (no thread has run).
    unsafe {
        asm!("mov cr4, {}", in(reg) cr4, options(nostack, preserves_flags));
        asm!(
            "xsetbv",
            in("ecx") 0u32,
            in("eax") XCR0_X87_SSE as u32,
            in("edx") (XCR0_X87_SSE >> 32) as u32,
            options(nostack, preserves_flags),
        );
    }
    true
}

/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// EFER.NXE: the no-execute bit of page-table entries is honoured.
pub const EFER_NXE: u64 = 1 << 11;
/// The EFER model-specific register.
pub const IA32_EFER: u32 = 0xc000_0080;

/// CR0 as it is now.
#[inline]
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Loads a null LDT: a selector with the table-indicator bit set then
/// faults, whatever the firmware or boot loader left in LDTR.
pub fn load_null_ldt() {
    // SAFETY: a null selector in LDTR is always valid and marks the LDT
    // unusable; nothing in the kernel uses LDT selectors.
    unsafe { asm!("lldt {0:x}", in(reg) 0u64, options(nomem, nostack, preserves_flags)) }
}

/// The LDT selector in LDTR (0 after [`load_null_ldt`]).
pub fn ldt_selector() -> u16 {
    let v: u16;
    // SAFETY: `sldt` only reads LDTR (allowed in ring 0 even with UMIP).
    unsafe { asm!("sldt {0:x}", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// The `isa-debug-exit` port: writing `v` ends QEMU with status `2v+1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Stops the machine. Under QEMU with `isa-debug-exit` the host sees
/// `2 * code + 1`; elsewhere the CPU halts forever.
pub fn exit_qemu(code: u64) -> ! {
    outl(DEBUG_EXIT_PORT, code as u32);
    loop {
        // SAFETY: halting with interrupts off stops this CPU for good.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
