//! The I/O APICs, which turn device interrupt lines (GSIs) into interrupt
//! vectors: found through the MADT, every input masked at boot, and one
//! input programmed, masked or unmasked at a time for the kernel's
//! interrupt-line rules (`kernel::irq`).
//!
//! It owns the I/O APIC registers. It must never decide who owns a line or
//! when to unmask it: `irq_glue` does, and calls here to carry it out. The
//! registers are reached through an index/data pair, so every access runs
//! with interrupts off (in the kernel, or in an interrupt handler) on the
//! one CPU that programs them.

use super::phys_to_virt;
use alloc::vec::Vec;
use kernel::acpi::{Madt, Route};
use kernel::irq::redirection_entry;
use spin::Once;

const REG_VERSION: u32 = 0x01;
const REG_TABLE: u32 = 0x10;
const MASK_BIT: u32 = 1 << 16;

/// One I/O APIC: its registers' virtual address and how many inputs it has.
struct Chip {
    base: u64,
    pins: u32,
}

static CHIPS: Once<Vec<Chip>> = Once::new();

fn write(base: u64, reg: u32, value: u32) {
    // SAFETY: `base` is the direct-map address of an I/O APIC the MADT
    // lists (its register window is 32 bytes: select at 0, data at 0x10);
    // MMIO needs volatile accesses, in this order.
    unsafe {
        (base as *mut u32).write_volatile(reg);
        ((base + 0x10) as *mut u32).write_volatile(value);
    }
}

fn read(base: u64, reg: u32) -> u32 {
    // SAFETY: as for `write`.
    unsafe {
        (base as *mut u32).write_volatile(reg);
        ((base + 0x10) as *const u32).read_volatile()
    }
}

/// Finds the I/O APICs of `madt` and masks every input. Returns how many
/// inputs there are in all.
pub fn init(madt: &Madt) -> u32 {
    let chips = CHIPS.call_once(|| {
        madt.io_apics
            .iter()
            .filter(|a| (a.address as u64) < super::DIRECT_MAP_SIZE)
            .map(|a| {
                let base = phys_to_virt(a.address as u64);
                let pins = ((read(base, REG_VERSION) >> 16) & 0xff) + 1;
                Chip { base, pins }
            })
            .collect()
    });
    for chip in chips {
        for pin in 0..chip.pins {
            write(chip.base, REG_TABLE + 2 * pin, MASK_BIT);
            write(chip.base, REG_TABLE + 2 * pin + 1, 0);
        }
    }
    chips.iter().map(|c| c.pins).sum()
}

/// How many inputs I/O APIC `index` (in MADT order) has; 0 if unknown.
pub fn pins(index: usize) -> u32 {
    CHIPS.get().and_then(|c| c.get(index)).map_or(0, |c| c.pins)
}

/// Programs `route`'s input to raise `vector` on the local APIC
/// `destination`, masked or not.
pub fn program(route: &Route, vector: u8, destination: u8, masked: bool) {
    let Some(chip) = CHIPS.get().and_then(|c| c.get(route.io_apic)) else { return };
    if route.pin >= chip.pins {
        return;
    }
    let e = redirection_entry(vector, route.polarity, route.trigger, masked, destination);
    // High half (destination) first, so the input never fires at a stale
    // destination once the low half unmasks it.
    write(chip.base, REG_TABLE + 2 * route.pin + 1, (e >> 32) as u32);
    write(chip.base, REG_TABLE + 2 * route.pin, e as u32);
}

/// Masks or unmasks input `pin` of I/O APIC `io_apic`.
pub fn set_masked(io_apic: usize, pin: u32, masked: bool) {
    let Some(chip) = CHIPS.get().and_then(|c| c.get(io_apic)) else { return };
    if pin >= chip.pins {
        return;
    }
    let reg = REG_TABLE + 2 * pin;
    let low = read(chip.base, reg);
    let low = if masked { low | MASK_BIT } else { low & !MASK_BIT };
    write(chip.base, reg, low);
}
