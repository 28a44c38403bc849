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
