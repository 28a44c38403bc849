//! The x86_64 hardware layer: boot, descriptor tables, entry stubs, the
//! local APIC timer, time keeping and the serial console.
//!
//! It owns every instruction that touches privileged CPU state. It must
//! never make policy decisions: traps and system calls are handed to the
//! architecture-neutral kernel (`sched`, `syscalls`, `traps`) as plain data.

pub mod context;
pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod ioapic;
pub mod lapic;
pub mod probe;
pub mod serial;
pub mod smp;
pub mod time;

core::arch::global_asm!(include_str!("boot.s"));

/// Virtual minus physical address of the kernel image (`linker.ld`).
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

/// Virtual address where all physical memory (the first 4 GiB) is mapped.
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// Physical memory the boot page tables direct-map.
pub const DIRECT_MAP_SIZE: u64 = 4 << 30;

/// The direct-map virtual address of a physical address.
#[inline]
pub fn phys_to_virt(phys: u64) -> u64 {
    DIRECT_MAP_BASE + phys
}
