//! `cpustate ROLE N`: CPU state that is each thread's own and must never
//! show through to another thread.
//!
//! - `segs-set N`: loads its own DS, ES, FS and GS, then checks it keeps
//!   exactly them across N yields and a stretch of preemptions;
//! - `segs-check N`: checks its DS, ES, FS and GS stay null (a new thread's
//!   values) across N yields and a stretch of preemptions, while another
//!   task's thread runs `segs-set`;
//! - `segs-threads N`: both at once, in two threads of this task.
//!
//! Exits with 0 if every check held, 1 otherwise.
#![no_std]
#![no_main]

use alux_rt::{println, thread, time, Start};
use core::arch::asm;

/// DS, ES, FS, GS.
type Selectors = [u16; 4];

/// What `segs-set` loads: user data with RPL 3, user code (readable), user
/// data with RPL 0 and with RPL 2. All different, so a swap would show.
const SET: Selectors = [0x1b, 0x23, 0x18, 0x1a];
/// A new thread's selectors.
const NULL: Selectors = [0; 4];

/// Preemption stretch: long enough to span several 10 ms slices.
const SPIN: u64 = 4_000_000;

fn read() -> Selectors {
    let (ds, es, fs, gs): (u16, u16, u16, u16);
    // SAFETY: reading segment registers has no side effects.
    unsafe {
        asm!(
            "mov {0:x}, ds", "mov {1:x}, es", "mov {2:x}, fs", "mov {3:x}, gs",
            out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs,
            options(nomem, nostack, preserves_flags),
        )
    }
    [ds, es, fs, gs]
}

fn load(s: Selectors) {
    // SAFETY: every selector in `SET` is a user segment of the GDT (or
    // null); in 64-bit mode their bases are 0 and no limits apply, so
    // memory accesses are unchanged.
    unsafe {
        asm!(
            "mov ds, {0:x}", "mov es, {1:x}", "mov fs, {2:x}", "mov gs, {3:x}",
            in(reg) s[0], in(reg) s[1], in(reg) s[2], in(reg) s[3],
            options(nostack, preserves_flags),
        )
    }
}

/// Checks the selectors stay `want` across `n` yields (the `sysretq` path)
/// and `SPIN` iterations (preempted: the `iretq` path). Returns the number
/// of checks made, or the first wrong value seen.
fn keep(who: &str, want: Selectors, n: u64) -> Result<u64, Selectors> {
    let mut checks = 0;
    for _ in 0..n {
        time::yield_now();
        let got = read();
        if got != want {
            return Err(got);
        }
        checks += 1;
    }
    for i in 0..SPIN {
        let got = core::hint::black_box(read());
        if got != want {
            println!("cpustate: {} saw {:x?} at spin {}", who, got, i);
            return Err(got);
        }
        checks += 1;
    }
    Ok(checks)
}

fn set_and_keep(n: u64) -> bool {
    let before = read();
    if before != NULL {
        println!("cpustate: segs-set started with {:x?}, not null", before);
        return false;
    }
    load(SET);
    if read() != SET {
        println!("cpustate: loading {:x?} gave {:x?}", SET, read());
        return false;
    }
    match keep("segs-set", SET, n) {
        Ok(c) => {
            println!("cpustate: segs-set kept {:x?} through {} checks", SET, c);
            // Leave with null selectors: the result is printed either way.
            load(NULL);
            true
        }
        Err(got) => {
            load(NULL);
            println!("cpustate: segs-set lost its selectors: saw {:x?}", got);
            false
        }
    }
}

fn check_null(n: u64) -> bool {
    match keep("segs-check", NULL, n) {
        Ok(c) => {
            println!("cpustate: segs-check saw only null selectors in {} checks", c);
            true
        }
        Err(got) => {
            println!("cpustate: segs-check saw another thread's selectors {:x?}", got);
            false
        }
    }
}

fn main(start: &Start) -> u64 {
    let mut words = start.arg_words();
    let role = words.next().unwrap_or("");
    let n = words.next().and_then(programs::parse_u64).unwrap_or(1000);
    let ok = match role {
        "segs-set" => set_and_keep(n),
        "segs-check" => check_null(n),
        "segs-threads" => {
            let setter = thread::spawn(move || set_and_keep(n));
            let checked = check_null(n);
            match setter {
                Ok(t) => t.join() == Some(true) && checked,
                Err(e) => {
                    println!("cpustate: thread spawn: {}", e);
                    false
                }
            }
        }
        _ => {
            println!("cpustate: unknown role {:?}", role);
            false
        }
    };
    if ok {
        0
    } else {
        1
    }
}
alux_rt::entry!(main);
