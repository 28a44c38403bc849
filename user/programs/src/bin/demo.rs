//! `demo NAME THREADS ROUNDS`: several threads that do busy work and print
//! their progress; with preemption their lines interleave.
//!
//! `demo yield THREADS ROUNDS`: threads that only yield, each checking
//! after every yield that no other one fell behind: the run queue is round
//! robin, so a yield lets every other ready thread run before the caller
//! runs again. (A thread preempted between two yields loses a turn, so a
//! few turns of lag are allowed; one left out of the rotation falls
//! behind without bound.)
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use alux_rt::{println, thread, Start};
use core::sync::atomic::{AtomicU64, Ordering};

fn busy(rounds: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..rounds {
        acc = core::hint::black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    acc
}

/// Yield turns per thread, up to `MAX_YIELDERS` threads.
static TURNS: [AtomicU64; MAX_YIELDERS] = [const { AtomicU64::new(0) }; MAX_YIELDERS];
static STARTED: AtomicU64 = AtomicU64::new(0);
const MAX_YIELDERS: usize = 8;
/// Turns another thread may lag (each preemption between two yields costs
/// its thread one).
const MAX_LAG: u64 = 20;

/// `threads` threads yield `rounds` times each once all have started; a
/// thread that sees another more than `MAX_LAG` turns behind it fails
/// (exit 1). All run on CPU 0, so the order is one run queue's.
fn yielders(threads: usize, rounds: u64) -> u64 {
    let threads = threads.min(MAX_YIELDERS);
    let handles: Vec<_> = (0..threads)
        .map(|me| {
            thread::spawn(move || {
                let pinned = alux_rt::sys::self_info()
                    .and_then(|(_, thread, ..)| alux_rt::sys::thread_set_cpu(thread, Some(0)));
                if let Err(e) = pinned {
                    println!("yield thread {}: pinning to CPU 0: {:?}", me, e);
                    return 1;
                }
                STARTED.fetch_add(1, Ordering::Relaxed);
                while STARTED.load(Ordering::Relaxed) < threads as u64 {
                    alux_rt::time::yield_now();
                }
                for _ in 0..rounds {
                    alux_rt::time::yield_now();
                    let mine = TURNS[me].fetch_add(1, Ordering::Relaxed) + 1;
                    for (other, turns) in TURNS.iter().enumerate().take(threads) {
                        let theirs = turns.load(Ordering::Relaxed);
                        if mine > theirs + MAX_LAG {
                            println!(
                                "yield thread {}: turn {}, thread {} only at {}: not round robin",
                                me, mine, other, theirs
                            );
                            return 1;
                        }
                    }
                }
                0
            })
            .expect("thread spawn")
        })
        .collect();
    let failed = handles.into_iter().map(|h| h.join()).filter(|r| *r != Some(0)).count();
    println!("yield: {} threads x {} yields, {} failed", threads, rounds, failed);
    u64::from(failed != 0)
}

fn main(start: &Start) -> u64 {
    let mut words = start.arg_words();
    if start.arg_words().next() == Some("yield") {
        words.next();
        let threads = words.next().and_then(programs::parse_u64).unwrap_or(4);
        let rounds = words.next().and_then(programs::parse_u64).unwrap_or(1000);
        return yielders(threads as usize, rounds);
    }
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
