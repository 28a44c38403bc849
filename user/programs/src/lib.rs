//! Helpers shared by the alux user programs.
#![no_std]

extern crate alloc;

/// Parses a decimal number argument.
pub fn parse_u64(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// A simple deterministic pseudo-random generator (xorshift64*), for tests
/// that need garbage without a source of entropy.
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Measuring in guest instructions (`cargo xtask bench`), with the time the
/// guest idles while a device works taken out: the kernel counts the TSC
/// ticks it spends halted (`KernelStats::idle_tsc`), and a measurement
/// subtracts what that count grew by (`docs/benchmarks.md`).
pub mod measure {
    use alloc::vec::Vec;

    /// The time-stamp counter (guest instructions under `-icount`).
    pub fn tsc() -> u64 {
        // SAFETY: rdtsc only reads the time-stamp counter (allowed in ring
        // 3).
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// The kernel's idle count so far (0 if it cannot be read, which the
    /// benchmarks then report as the whole elapsed time).
    pub fn idle() -> u64 {
        alux_rt::sys::kernel_stats().map_or(0, |s| s.idle_tsc)
    }

    /// A point to measure from: `(idle, tsc)`, the idle count read first
    /// so that its own call falls outside the measurement.
    pub fn start() -> (u64, u64) {
        let i = idle();
        (i, tsc())
    }

    /// Busy instructions since `from` (a [`start`]), and whether the kernel
    /// idled meanwhile (the operation really waited for its device).
    pub fn busy_since(from: (u64, u64)) -> (u64, bool) {
        let t = tsc();
        let i = idle();
        let idled = i - from.0;
        ((t - from.1).saturating_sub(idled), idled > 0)
    }

    /// Prints one `BENCH` line: median, min and max of `samples`.
    pub fn report(name: &str, mut samples: Vec<u64>) {
        if samples.is_empty() {
            alux_rt::println!("BENCH-ABORT name={} call=none why=no samples", name);
            return;
        }
        samples.sort_unstable();
        alux_rt::println!(
            "BENCH name={} median={} min={} max={} runs={}",
            name,
            samples[samples.len() / 2],
            samples[0],
            samples[samples.len() - 1],
            samples.len()
        );
    }
}
