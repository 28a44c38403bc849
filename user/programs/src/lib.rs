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
/// guest would idle while a device works taken out: a low-cost spinner
/// thread keeps the CPU busy and counts its rounds, and the rounds' own
/// instructions are subtracted (`docs/benchmarks.md`).
pub mod measure {
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicU64, Ordering};
    use core::time::Duration;

    static SPINS: AtomicU64 = AtomicU64::new(0);

    /// The time-stamp counter (guest instructions under `-icount`).
    pub fn tsc() -> u64 {
        // SAFETY: rdtsc only reads the time-stamp counter (allowed in ring
        // 3).
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// The spinner's body: run it on a thread of its own. It yields every
    /// round, so a woken thread runs at once.
    pub fn spinner() {
        loop {
            SPINS.fetch_add(1, Ordering::Relaxed);
            alux_rt::time::yield_now();
        }
    }

    /// Spinner rounds so far.
    pub fn spins() -> u64 {
        SPINS.load(Ordering::Relaxed)
    }

    /// Guest instructions per spinner round, in thousandths: measured over
    /// a sleep during which only the spinner runs.
    pub fn calibrate() -> u64 {
        while spins() == 0 {
            alux_rt::time::yield_now();
        }
        let (s0, t0) = (spins(), tsc());
        alux_rt::time::sleep(Duration::from_millis(20));
        let (s1, t1) = (spins(), tsc());
        (t1 - t0) * 1000 / (s1 - s0).max(1)
    }

    /// Instructions between `(s0, t0)` and now, without the spinner's.
    pub fn busy_since(s0: u64, t0: u64, per_spin: u64) -> u64 {
        let (s1, t1) = (spins(), tsc());
        ((t1 - t0) * 1000).saturating_sub((s1 - s0) * per_spin) / 1000
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
