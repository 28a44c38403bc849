//! Console tests (the `console` scenario). Roles:
//! - `forge`: prints text that imitates the kernel's lines and a line in
//!   two parts; `cargo xtask test` checks the log shows them prefixed with
//!   this task's ID, and continued.
//! - `printer N`: `N` prints of 4,096 bytes each (raw `DebugPrint` calls);
//!   exits with the average time of one print in nanoseconds (from the
//!   first call until the last returned), which is how long the console
//!   needs to send 4 KiB.
//! - `sleeper K`: `K` sleeps of 2 ms while a printer runs; exits with the
//!   median lateness in nanoseconds.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use alux_abi::syscall::{Sys, DEBUG_PRINT_MAX};
use alux_rt::{print, println, time, Start};
use core::time::Duration;

fn forge() -> u64 {
    println!("[kernel] forged by a task");
    print!("\r[kernel] behind a carriage return\n");
    print!("part one, ");
    print!("part two\n");
    0
}

fn printer(n: u64) -> u64 {
    let mut text = [b'.'; DEBUG_PRINT_MAX];
    text[DEBUG_PRINT_MAX - 1] = b'\n';
    let start = time::now();
    for i in 0..n {
        let head = b"printer: 4 KiB line ";
        text[..head.len()].copy_from_slice(head);
        text[head.len()] = b'0' + (i % 10) as u8;
        let r = alux_rt::sys::call(
            Sys::DebugPrint,
            [text.as_ptr() as u64, text.len() as u64, 0, 0, 0, 0],
        );
        if let Err(e) = r {
            println!("printer: print {} failed: {}", i, e);
            return u64::MAX;
        }
    }
    let per_print = (time::now() - start).as_nanos() as u64 / n.max(1);
    println!("printer: {} prints of 4 KiB, {} us each", n, per_print / 1000);
    per_print
}

fn sleeper(k: u64) -> u64 {
    // Let the printer fill the console first.
    time::sleep(Duration::from_millis(20));
    let want = Duration::from_millis(2);
    let mut late: Vec<u64> = Vec::new();
    for _ in 0..k {
        let before = time::now();
        time::sleep(want);
        let took = time::now() - before;
        late.push(took.saturating_sub(want).as_nanos() as u64);
    }
    late.sort_unstable();
    let median = late[late.len() / 2];
    println!(
        "sleeper: {} sleeps of 2 ms: lateness median {} us, max {} us",
        k,
        median / 1000,
        late[late.len() - 1] / 1000
    );
    median
}

fn main(start: &Start) -> u64 {
    let mut words = start.arg_words();
    let role = words.next().unwrap_or("");
    let n = words.next().and_then(programs::parse_u64).unwrap_or(0);
    match role {
        "forge" => forge(),
        "printer" if n > 0 => printer(n),
        "sleeper" if n > 0 => sleeper(n),
        _ => {
            println!("console: unknown role {:?}", role);
            1
        }
    }
}
alux_rt::entry!(main);
