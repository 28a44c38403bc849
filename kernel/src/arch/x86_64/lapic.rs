//! The local APIC: its one-shot timer drives preemption and timeouts; the
//! legacy 8259 PICs are remapped and masked so they never interfere.

use super::cpu::{outb, rdmsr};
use super::phys_to_virt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Interrupt vector of the LAPIC timer.
pub const TIMER_VECTOR: u8 = 32;
/// Interrupt vector of spurious LAPIC interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_LVT_TIMER: u64 = 0x320;
const REG_TIMER_INITIAL: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;

static BASE: AtomicU64 = AtomicU64::new(0);
/// The registers' physical address.
static BASE_PHYS: AtomicU64 = AtomicU64::new(0);
/// Timer ticks (after the divide-by-16) per second.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per TSC tick, as a 32.32 fixed-point number.
static TICKS_PER_TSC: AtomicU64 = AtomicU64::new(0);

fn write(reg: u64, value: u32) {
    let addr = BASE.load(Ordering::Relaxed) + reg;
    // SAFETY: `addr` is a register of the LAPIC page, which the direct map
    // covers; MMIO needs a volatile access.
    unsafe { (addr as *mut u32).write_volatile(value) }
}

fn read(reg: u64) -> u32 {
    let addr = BASE.load(Ordering::Relaxed) + reg;
    // SAFETY: as for `write`.
    unsafe { (addr as *const u32).read_volatile() }
}

fn mask_legacy_pics() {
    // Remap to vectors 0x20..0x30 (so a stray IRQ is never taken for an
    // exception), then mask every line.
    for (port, value) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 0x20),
        (0xa1, 0x28),
        (0x21, 0x04),
        (0xa1, 0x02),
        (0x21, 0x01),
        (0xa1, 0x01),
        (0x21, 0xff),
        (0xa1, 0xff),
    ] {
        outb(port, value);
    }
}

/// Enables the LAPIC and calibrates its timer against the TSC.
pub fn init() {
    mask_legacy_pics();
    const IA32_APIC_BASE: u32 = 0x1b;
    let phys = rdmsr(IA32_APIC_BASE) & 0x000f_ffff_ffff_f000;
    BASE.store(phys_to_virt(phys), Ordering::Relaxed);
    BASE_PHYS.store(phys, Ordering::Relaxed);
    write(REG_TPR, 0);
    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32);
    write(REG_TIMER_DIVIDE, 0b0011); // divide by 16
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    write(REG_TIMER_INITIAL, u32::MAX);
    let window_ns = 10_000_000;
    let start = super::time::now_ns();
    while super::time::now_ns() - start < window_ns {}
    let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
    write(REG_TIMER_INITIAL, 0);
    let hz = (elapsed as u64 * 1_000_000_000 / window_ns).max(1);
    TIMER_HZ.store(hz, Ordering::Relaxed);
    TICKS_PER_TSC.store(
        ((hz as u128) << 32).div_ceil(super::time::tsc_hz() as u128) as u64,
        Ordering::Relaxed,
    );
}

/// Sets up an AP's own local APIC like the boot CPU's (the registers'
/// address and the timer's calibration are the same on every CPU).
pub fn init_ap() {
    write(REG_TPR, 0);
    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32);
    write(REG_TIMER_DIVIDE, 0b0011);
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    write(REG_TIMER_INITIAL, 0);
}

const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
/// ICR: the IPI is still being sent.
const ICR_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;

/// Sends an inter-processor interrupt: `low` is the ICR's low word, to the
/// CPU with local APIC ID `apic_id`. Waits until the APIC has sent it.
fn send_ipi_raw(apic_id: u32, low: u32) {
    write(REG_ICR_HIGH, apic_id << 24);
    write(REG_ICR_LOW, low);
    while read(REG_ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
}

/// The vector of the kernel's own inter-processor interrupt: "look at the
/// scheduler and at your request mailbox" (`arch::smp`).
pub const IPI_VECTOR: u8 = 0x3f;

/// A fixed interrupt with `vector` to the CPU with local APIC ID `apic_id`.
pub fn send_ipi(apic_id: u32, vector: u8) {
    send_ipi_raw(apic_id, vector as u32);
}

/// INIT to one CPU (it waits for a startup IPI).
pub fn send_init(apic_id: u32) {
    send_ipi_raw(apic_id, 0b101 << 8 | ICR_LEVEL_ASSERT);
}

/// A startup IPI: the CPU starts in real mode at `page << 12`.
pub fn send_startup(apic_id: u32, page: u8) {
    send_ipi_raw(apic_id, 0b110 << 8 | ICR_LEVEL_ASSERT | page as u32);
}

/// The calibrated timer frequency.
pub fn timer_hz() -> u64 {
    TIMER_HZ.load(Ordering::Relaxed)
}

/// Arms the one-shot timer to fire after `tsc_ticks` TSC ticks (a
/// multiplication, no division: this runs on context switches).
pub fn arm_timer_tsc(tsc_ticks: u64) {
    let ticks = ((tsc_ticks as u128 * TICKS_PER_TSC.load(Ordering::Relaxed) as u128) >> 32)
        .clamp(1, u32::MAX as u128);
    write(REG_LVT_TIMER, TIMER_VECTOR as u32);
    write(REG_TIMER_INITIAL, ticks as u32);
}

/// Signals the end of the interrupt being handled.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}

/// This CPU's local APIC ID (the destination of routed interrupts).
pub fn id() -> u8 {
    const REG_ID: u64 = 0x20;
    (read(REG_ID) >> 24) as u8
}

/// The physical address of the local APIC's registers.
pub fn base_phys() -> u64 {
    BASE_PHYS.load(Ordering::Relaxed)
}
