//! `churn N`: creates and joins N threads one after another, checking each
//! one's result.
#![no_std]
#![no_main]

use alux_rt::{println, thread, Start};

fn main(start: &Start) -> u64 {
    let n = start.arg_words().next().and_then(programs::parse_u64).unwrap_or(1000);
    for i in 0..n {
        let h = match thread::spawn(move || i * 3) {
            Ok(h) => h,
            Err(e) => {
                println!("churn: spawn {} failed: {}", i, e);
                return 1;
            }
        };
        if h.join() != Some(i * 3) {
            println!("churn: thread {} returned a wrong value", i);
            return 1;
        }
    }
    println!("churn: {} threads created and joined", n);
    0
}
alux_rt::entry!(main);
