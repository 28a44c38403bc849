//! Calls every system call number with garbage arguments, then a table of
//! known-bad arguments, and checks the kernel answers each with an error
//! (never a crash). Runs unprivileged.
#![no_std]
#![no_main]

use alux_abi::syscall::Sys;
use alux_abi::Error;
use alux_rt::sys::call_raw;
use alux_rt::{println, Start};
use programs::Rng;

/// Pointer-like garbage: null, kernel, non-canonical, unmapped, edge values.
fn garbage(rng: &mut Rng) -> u64 {
    match rng.next_u64() % 8 {
        0 => 0,
        1 => 0xffff_8000_0000_0000 + (rng.next_u64() & 0xffff_f000),
        2 => 0x8000_0000_0000_0000 | rng.next_u64(),
        3 => 0x0000_7fff_ffff_f000 + (rng.next_u64() & 0xfff),
        4 => u64::MAX - (rng.next_u64() & 0xff),
        5 => rng.next_u64() & 0xffff,
        6 => 0xdead_0000 + (rng.next_u64() & 0xfff),
        _ => rng.next_u64(),
    }
}

fn main(start: &Start) -> u64 {
    let rounds = start.arg_words().next().and_then(programs::parse_u64).unwrap_or(20);
    let mut rng = Rng::new(0x5eed);
    let mut calls = 0u64;
    let mut errors = 0u64;
    for _ in 0..rounds {
        for nr in 0..64u64 {
            let mut a = [0u64; 6];
            for x in a.iter_mut() {
                *x = garbage(&mut rng);
            }
            match Sys::from_number(nr) {
                // Calls that would end this task or start code at a random
                // address are exercised only with arguments that must fail.
                Some(Sys::ThreadExit | Sys::TaskExit) => continue,
                Some(Sys::ThreadCreate) => a[0] = 0xffff_8000_0000_0000,
                Some(Sys::Sleep) => a[0] &= 0xffff,
                Some(Sys::ThreadJoin | Sys::TaskWait | Sys::Connect) => a[1] = 0,
                Some(Sys::Poll) => a[2] = 0,
                Some(Sys::PollAll | Sys::Receive) => a[0] = 0,
                _ => {}
            }
            calls += 1;
            if call_raw(nr, a).is_err() {
                errors += 1;
            }
        }
    }
    println!("hostile: {} garbage calls, {} answered with an error", calls, errors);

    let text = b"hostile";
    let here = text.as_ptr() as u64;
    let checks: &[(u64, [u64; 6], Error)] = &[
        (9999, [0; 6], Error::UnknownSyscall),
        (u64::MAX, [0; 6], Error::UnknownSyscall),
        (Sys::DebugPrint as u64, [0, 8, 0, 0, 0, 0], Error::BadAddress),
        (Sys::DebugPrint as u64, [0xffff_ffff_8000_0000, 8, 0, 0, 0, 0], Error::BadAddress),
        (Sys::DebugPrint as u64, [0x8000_0000_0000_0000, 8, 0, 0, 0, 0], Error::BadAddress),
        (Sys::DebugPrint as u64, [0xdead_0000, 8, 0, 0, 0, 0], Error::BadAddress),
        (Sys::DebugPrint as u64, [here, u64::MAX, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::DebugPrint as u64, [u64::MAX - 2, 4, 0, 0, 0, 0], Error::BadAddress),
        (Sys::KernelStats as u64, [here | 1, 0, 0, 0, 0, 0], Error::BadAddress),
        // Text is read-only: the kernel must refuse to write into it.
        (
            Sys::KernelStats as u64,
            [main as *const () as u64 & !7, 0, 0, 0, 0, 0],
            Error::BadAddress,
        ),
        (Sys::Spawn as u64, [here & !7, 0, 0, 0, 0, 0], Error::NotPrivileged),
        (Sys::Shutdown as u64, [0, 0, 0, 0, 0, 0], Error::NotPrivileged),
        (Sys::TaskKill as u64, [0x1234_5678_9abc, 0, 0, 0, 0, 0], Error::NoSuchTask),
        (Sys::TaskWait as u64, [0x1234_5678_9abc, 0, 0, 0, 0, 0], Error::NoSuchTask),
        (Sys::ThreadJoin as u64, [0x1234_5678_9abc, 0, 0, 0, 0, 0], Error::NoSuchThread),
        (Sys::ThreadCreate as u64, [0, 0x10000, 0, 0, 0, 0], Error::BadAddress),
        (Sys::ThreadCreate as u64, [0x10000, 0x10008, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemMap as u64, [0, 1, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemMap as u64, [u64::MAX, 1, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemMap as u64, [4096, 0xff, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemUnmap as u64, [0x40_0000, 4096, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemUnmap as u64, [0x1001, 4096, 0, 0, 0, 0], Error::InvalidArgument),
    ];
    let mut failed = 0;
    for (nr, args, want) in checks {
        let got = call_raw(*nr, *args);
        if got != Err(*want) {
            println!("hostile: call {} {:x?} answered {:?}, expected {:?}", nr, args, got, want);
            failed += 1;
        }
    }
    // Mapping and unmapping fresh 2 MiB ranges must not pile up page tables
    // (emptied tables are freed; they also count against the task's limit).
    let frames = || alux_rt::sys::kernel_stats().map(|s| s.caller_frames).unwrap_or(0);
    let mut after_first = 0;
    for round in 0..100 {
        let len = (2 << 20) - 4096;
        match alux_rt::sys::mem_map(len, 1) {
            // SAFETY: the range was just mapped for this loop and nothing
            // else uses it.
            Ok(p) => unsafe {
                let _ = alux_rt::sys::mem_unmap(p, len);
            },
            Err(e) => {
                println!("hostile: map/unmap round {} refused: {}", round, e);
                failed += 1;
                break;
            }
        }
        if round == 0 {
            after_first = frames();
        }
    }
    if frames() != after_first {
        println!(
            "hostile: map/unmap loop grew the task from {} to {} frames",
            after_first,
            frames()
        );
        failed += 1;
    }
    // Memory: a task cannot map more than its limit.
    let mut maps = 0;
    while alux_rt::sys::mem_map(16 << 20, 1).is_ok() {
        maps += 1;
        if maps > 64 {
            break;
        }
    }
    if maps > 4 {
        println!("hostile: mapped {} x 16 MiB, over the 64 MiB limit", maps);
        failed += 1;
    }
    println!(
        "hostile: {} targeted checks, {} wrong; memory limit stopped after {} maps",
        checks.len(),
        failed,
        maps
    );
    if failed == 0 {
        0
    } else {
        1
    }
}
alux_rt::entry!(main);
