//! Spins forever without ever making a system call: only preemption can
//! take the CPU from it.
#![no_std]
#![no_main]

use alux_rt::Start;

fn main(_: &Start) -> u64 {
    let mut x = 0u64;
    loop {
        // SAFETY: a volatile write to a local keeps the loop from being
        // optimised away; the pointer is valid.
        unsafe { core::ptr::write_volatile(&mut x, x.wrapping_add(1)) };
    }
}
alux_rt::entry!(main);
