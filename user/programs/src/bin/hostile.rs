//! Calls every system call number with garbage arguments, then a table of
//! known-bad arguments, and checks every answer against the documented one
//! (never a crash, never an undocumented error, nothing left behind). Runs
//! unprivileged.
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

/// The handle errors every call that takes a handle may give.
const HANDLE: [Error; 3] = [Error::BadHandle, Error::StaleHandle, Error::WrongThread];

/// What a known call may answer to garbage from this task (unprivileged,
/// holding no IPC end, no child and no other thread), from
/// `docs/syscalls.md`: the errors it documents, and whether it may succeed.
/// Calls that may succeed and create something say so in `garbage_loop`,
/// which frees it at once.
fn allowed(sys: Sys) -> (&'static [Error], bool) {
    use Error::*;
    const WRITE: [Error; 7] =
        [MessageTooLong, BadAddress, BadHandle, StaleHandle, WrongThread, NotConnected, PeerClosed];
    const SEND: [Error; 6] =
        [MessageTooLong, BadHandle, StaleHandle, WrongThread, NotConnected, PeerClosed];
    match sys {
        // Any range of this task's readable memory (or none) may print.
        Sys::DebugPrint => (&[InvalidArgument, BadAddress], true),
        // The entry is always a kernel address here: it must fail.
        Sys::ThreadCreate => (&[BadAddress, InvalidArgument, LimitReached], false),
        // Never called (they do not return); listed to keep the match whole.
        Sys::ThreadExit | Sys::TaskExit => (&[], false),
        Sys::Yield | Sys::Sleep | Sys::Clock | Sys::SelfInfo => (&[], true),
        Sys::Spawn => (&[BadAddress, NotPrivileged, InvalidArgument], false),
        Sys::TaskWait => (&[InvalidArgument, NoSuchTask, NotPrivileged, TimedOut], false),
        Sys::TaskKill => (&[NoSuchTask, NotPrivileged], false),
        // Succeeds only into this task's own writable memory.
        Sys::KernelStats => (&[BadAddress], true),
        Sys::Shutdown => (&[NotPrivileged], false),
        // A paged task's memory is memd's: the kernel refuses.
        Sys::MemMap => (&[InvalidArgument, OutOfMemory, NotPrivileged], true),
        Sys::MemUnmap => (&[InvalidArgument, BadAddress], false),
        Sys::ThreadJoin => (&[NoSuchThread, InvalidArgument, TimedOut], false),
        Sys::CpuInfo => (&[], true),
        // Succeeds only on this thread (its own ID) with a real CPU.
        Sys::ThreadSetCpu => (&[NoSuchThread, InvalidArgument], true),
        Sys::PortCreate => (&[LimitReached], true),
        Sys::ListenPush => {
            (&[BadHandle, StaleHandle, WrongThread, AlreadyQueued, WrongKind, QueueFull], false)
        }
        Sys::ListenWithdraw => (&[BadHandle, StaleHandle, WrongThread, NotQueued], false),
        Sys::Connect => {
            (&[Busy, NoSuchTask, SelfConnect, ConnectDenied, LimitReached, NoPortAvailable], true)
        }
        Sys::Write | Sys::WriteSignal => (&WRITE, false),
        Sys::Read | Sys::ConnectionInfo => {
            (&[BadAddress, BadHandle, StaleHandle, WrongThread, NotConnected], false)
        }
        Sys::Signal => (&[BadHandle, StaleHandle, WrongThread, NotConnected, PeerClosed], false),
        Sys::Poll => (
            &[InvalidArgument, BadAddress, BadHandle, StaleHandle, WrongThread, Busy, TimedOut],
            false,
        ),
        Sys::PollOne => (&[BadHandle, StaleHandle, WrongThread, Busy, TimedOut], false),
        // This thread has no end, so nothing can be ready.
        Sys::PollAll | Sys::Receive => (&[Busy, TimedOut], false),
        Sys::Close => (&HANDLE, false),
        Sys::SetConnectPermission => (&[InvalidArgument], true),
        Sys::KernelEndOpen => (&[InvalidArgument, NotPrivileged], false),
        Sys::ConnectionQuery => (&[BadAddress, NotPrivileged, NoSuchConnection], false),
        Sys::Send => (&SEND, false),
        Sys::SendReceive => (
            &[MessageTooLong, BadHandle, StaleHandle, WrongThread, NotConnected, PeerClosed, Busy],
            false,
        ),
        // Device calls: this task is unprivileged; a bad range may be
        // refused before privilege is checked.
        Sys::IoPortGrant
        | Sys::MmioMap
        | Sys::DmaAlloc
        | Sys::DmaPin
        | Sys::DmaUnpin
        | Sys::DeviceClaim => (&[InvalidArgument, NotPrivileged], false),
        // Pager calls: this task is not the pager.
        Sys::PagerAttach
        | Sys::PagerNext
        | Sys::PageMap
        | Sys::PageUnmap
        | Sys::PageBits
        | Sys::FaultResolve
        | Sys::SpawnRead
        | Sys::SpawnFinish => (&[InvalidArgument, BadAddress, NotPrivileged], false),
    }
}

/// The kernel's object counts and this task's memory.
fn counts() -> Option<[u64; 5]> {
    let s = alux_rt::sys::kernel_stats().ok()?;
    Some([s.tasks, s.threads, s.ipc_ends, s.frames_used, s.caller_frames])
}
const COUNT_NAMES: [&str; 5] = ["tasks", "threads", "IPC ends", "frames", "this task's frames"];

/// Calls every number below 96 and some random ones with garbage, checking
/// each answer: an unknown number gives exactly `UnknownSyscall`; a known
/// call gives an error it documents, or succeeds only where it may. What a
/// success creates (a port, a connection, a mapping) is freed at once, so
/// afterwards the kernel's object counts and this task's frames must be
/// what they were: nothing the loop did left an object behind. Returns the
/// number of wrong answers.
fn garbage_loop(rounds: u64, me: u64) -> u64 {
    let mut rng = Rng::new(0x5eed);
    let (mut calls, mut errors, mut wrong) = (0u64, 0u64, 0u64);
    let Some(before) = counts() else {
        println!("hostile: KernelStats failed");
        return 1;
    };
    for _ in 0..rounds {
        // Every number below 96, then eight random ones (no heap here: the
        // first allocation would map the heap and grow the task).
        let mut numbers = [0u64; 104];
        for (i, n) in numbers.iter_mut().enumerate() {
            *n = if i < 96 { i as u64 } else { garbage(&mut rng) };
        }
        for nr in numbers {
            let mut a = [0u64; 6];
            for x in a.iter_mut() {
                *x = garbage(&mut rng);
            }
            let sys = Sys::from_code(nr);
            match sys {
                // Calls that would end this task or start code at a random
                // address are exercised only with arguments that must fail.
                Some(Sys::ThreadExit | Sys::TaskExit) => continue,
                Some(Sys::ThreadCreate) => a[0] = 0xffff_8000_0000_0000,
                Some(Sys::Sleep) => a[0] &= 0xffff,
                Some(Sys::ThreadJoin | Sys::TaskWait | Sys::Connect) => a[1] = 0,
                Some(Sys::Poll) => a[2] = 0,
                Some(Sys::PollOne) => a[1] = 0,
                Some(Sys::PollAll | Sys::Receive) => a[0] = 0,
                Some(Sys::TaskKill) if a[0] == me => a[0] ^= 1 << 40,
                _ => {}
            }
            calls += 1;
            let got = call_raw(nr, a);
            errors += u64::from(got.is_err());
            let Some(sys) = sys else {
                if got != Err(Error::UnknownSyscall) {
                    println!("hostile: unknown number {:#x} answered {:?}", nr, got);
                    wrong += 1;
                }
                continue;
            };
            let (errs, may_succeed) = allowed(sys);
            match got {
                Err(e) if errs.contains(&e) => {}
                Ok(r) if may_succeed => {
                    // Free what the call created; the freeing must work.
                    let freed = match sys {
                        Sys::PortCreate | Sys::Connect => {
                            call_raw(Sys::Close as u64, [r[0], 0, 0, 0, 0, 0]).map(|_| ())
                        }
                        Sys::MemMap => {
                            let len = a[0].div_ceil(4096) * 4096;
                            call_raw(Sys::MemUnmap as u64, [r[0], len, 0, 0, 0, 0]).map(|_| ())
                        }
                        _ => Ok(()),
                    };
                    if let Err(e) = freed {
                        println!(
                            "hostile: {:?} {:x?} made something it cannot free: {}",
                            sys, a, e
                        );
                        wrong += 1;
                    }
                }
                _ => {
                    println!("hostile: {:?} {:x?} answered {:?}", sys, a, got);
                    wrong += 1;
                }
            }
        }
    }
    match counts() {
        Some(after) => {
            for i in 0..before.len() {
                if after[i] != before[i] {
                    println!(
                        "hostile: {} went from {} to {} over the garbage calls",
                        COUNT_NAMES[i], before[i], after[i]
                    );
                    wrong += 1;
                }
            }
        }
        None => {
            println!("hostile: KernelStats failed");
            wrong += 1;
        }
    }
    println!(
        "hostile: {} garbage calls, {} answered with an error, {} wrong answers; kernel objects and task memory unchanged: {}",
        calls,
        errors,
        wrong,
        wrong == 0
    );
    wrong
}

fn main(start: &Start) -> u64 {
    let rounds = start.arg_words().next().and_then(programs::parse_u64).unwrap_or(20);
    let me = start.task.raw();
    let mut failed = garbage_loop(rounds, me);

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
        // A port count whose sum with the first port overflows: refused
        // while decoding (it once panicked the debug kernel).
        (Sys::IoPortGrant as u64, [1, u64::MAX, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::IoPortGrant as u64, [0xffff, u64::MAX - 0xfffe, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemMap as u64, [u64::MAX, 1, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemMap as u64, [4096, 0xff, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemUnmap as u64, [0x40_0000, 4096, 0, 0, 0, 0], Error::InvalidArgument),
        (Sys::MemUnmap as u64, [0x1001, 4096, 0, 0, 0, 0], Error::InvalidArgument),
    ];
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
    // A paged task gets its memory from memd: the kernel's MemMap is
    // refused, and the loops below go through memd (`alux_rt::mem`).
    if alux_rt::mem::pager().is_some()
        && alux_rt::sys::mem_map(4096, 1) != Err(Error::NotPrivileged)
    {
        println!("hostile: MemMap of a paged task was not refused with NotPrivileged");
        failed += 1;
    }
    let mut after_first = 0;
    for round in 0..100 {
        let len = (2 << 20) - 4096;
        match alux_rt::mem::reserve(len, true) {
            // SAFETY: the range was just reserved for this loop and nothing
            // else uses it; its first page is touched so it is really there.
            Ok(p) => unsafe {
                p.write_volatile(1);
                let _ = alux_rt::mem::release(p, len);
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
    // Memory: a task cannot map more than its limit: the kernel's 64 MiB
    // cap, or (paged) the quota memd gives it.
    let limit = match alux_rt::mem::stats() {
        Ok(s) if alux_rt::mem::pager().is_some() => s.quota * 4096 / (16 << 20),
        _ => 4,
    };
    let mut maps = 0;
    while alux_rt::mem::reserve(16 << 20, true).is_ok() {
        maps += 1;
        if maps > limit + 2 {
            break;
        }
    }
    if maps > limit || maps == 0 {
        println!("hostile: mapped {} x 16 MiB; the limit allows {}", maps, limit);
        failed += 1;
    }
    println!(
        "hostile: {} targeted checks; {} wrong in all; memory limit stopped after {} maps",
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
