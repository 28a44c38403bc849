//! `demo NAME THREADS ROUNDS`: several threads that do busy work and print
//! their progress; with preemption their lines interleave.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use alux_rt::{println, thread, Start};

fn busy(rounds: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..rounds {
        acc = core::hint::black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    acc
}

fn main(start: &Start) -> u64 {
    let mut words = start.arg_words();
    let name = String::from(words.next().unwrap_or("demo"));
    let threads = words.next().and_then(programs::parse_u64).unwrap_or(3);
    let rounds = words.next().and_then(programs::parse_u64).unwrap_or(4);
    let work = words.next().and_then(programs::parse_u64).unwrap_or(300_000);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let name = name.clone();
            thread::spawn(move || {
                for r in 0..rounds {
                    busy(work);
                    println!("{} thread {}: round {}/{}", name, t, r + 1, rounds);
                }
                t
            })
            .expect("thread spawn")
        })
        .collect();
    let mut ok = true;
    for (t, h) in handles.into_iter().enumerate() {
        ok &= h.join() == Some(t as u64);
    }
    println!("{}: all {} threads done", name, threads);
    if ok {
        0
    } else {
        1
    }
}
alux_rt::entry!(main);
