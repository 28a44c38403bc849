//! The monotonic clock: the TSC, calibrated once against the PIT.
//!
//! Under `-icount shift=0` QEMU's TSC counts guest instructions, which the
//! benchmarks rely on; the clock then measures virtual time.

use super::cpu::{inb, outb, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_HZ: AtomicU64 = AtomicU64::new(1);
/// TSC ticks per nanosecond, times 2^32, rounded up (so that a duration
/// converted with it is never short).
static TSC_PER_NS_Q32: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Measures the TSC frequency over 10 ms of PIT channel 2.
pub fn init() {
    const PIT_HZ: u64 = 1_193_182;
    const COUNT: u64 = PIT_HZ / 100; // 10 ms
    let gate = inb(0x61);
    outb(0x61, (gate & !0x02) | 0x01); // gate on, speaker off
    outb(0x43, 0xb0); // channel 2, lobyte/hibyte, mode 0 (one-shot)
    outb(0x42, COUNT as u8);
    outb(0x42, (COUNT >> 8) as u8);
    let start = rdtsc();
    while inb(0x61) & 0x20 == 0 {}
    let end = rdtsc();
    outb(0x61, gate);
    let hz = ((end - start) * 100).max(1);
    TSC_HZ.store(hz, Ordering::Relaxed);
    TSC_PER_NS_Q32.store(((hz as u128) << 32).div_ceil(1_000_000_000) as u64, Ordering::Relaxed);
    TSC_AT_BOOT.store(start, Ordering::Relaxed);
}

/// TSC ticks per second.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// TSC ticks in `ns` nanoseconds: never fewer than the exact figure, and
/// more by under `2 + ns / 2^32` (two ticks, plus one per 4.3 s). A
/// multiplication, no division: timeouts are converted on the system call
/// fast paths.
#[inline]
pub fn ns_to_tsc(ns: u64) -> u128 {
    ((ns as u128 * TSC_PER_NS_Q32.load(Ordering::Relaxed) as u128) >> 32) + 1
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    let ticks = rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    (ticks as u128 * 1_000_000_000 / tsc_hz() as u128) as u64
}
