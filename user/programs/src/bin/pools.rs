//! Floods of the kernel's global pools, for the `ipc-flood` and `pools`
//! scenarios: `pools ROLE ARGS...`.
//!
//! A flooder first connects to init's gate (`GATE`, init's task ID), then
//! takes all it may of one pool and reports what it holds in one message on
//! the gate (four little-endian `u64`s, see each role). It keeps everything
//! until init closes the gate, then exits with 0. If it cannot even connect
//! to the gate, it exits with the connect error's code.
//!
//! Roles:
//! - `ends GATE SERVER WORKERS`: `WORKERS` threads each create ports until
//!   refused; worker 0 pushes its ports onto the listen queue until
//!   refused; then the main thread tries to connect to `SERVER`. Report:
//!   ends held (the gate's included), workers stopped by anything but
//!   `LimitReached`, the connect's error code (0 if it connected), and
//!   `pushed << 8 | push error code`.
//! - `threads GATE MAX`: starts up to `MAX` threads that sleep. Report:
//!   threads held (the main one included), the error code that stopped it
//!   (0 if none), 0, 0.
//! - `pages GATE`: maps 1 MiB pieces until refused, then single pages.
//!   Report: frames charged to the task (`KernelStats::caller_frames`), the
//!   two error codes, 0.
//! - `frames`: exits with 0 if the task is within the 16,384-frame cap
//!   (its image, stack, start page and page tables all counted).
//! - `cap`: fills the task up to the cap so that its last mapping needs a
//!   new page table: that mapping must be refused, and the task must end
//!   exactly at the cap, never above. Exits with 0 if so.
//! - `system SERVER`: what a system service does while the floods hold
//!   everything: threads, memory, ports, a connection to `SERVER`. Exits 0
//!   if all of it worked.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use alux_abi::syscall::map_flags;
use alux_abi::{Error, TaskId};
use alux_rt::ipc::{self, Connection, Port};
use alux_rt::{println, thread, Start};
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

const LONG: Option<Duration> = Some(Duration::from_secs(120));
/// Flood threads sleep until the task ends.
const FOREVER: Duration = Duration::from_secs(24 * 3600);

fn task_arg(s: Option<&str>) -> TaskId {
    TaskId::from_raw(s.and_then(programs::parse_u64).unwrap_or(0))
}

fn code(r: Result<(), Error>) -> u64 {
    r.err().map_or(0, Error::code)
}

/// Connects to the gate, runs `flood` (which returns the report), sends
/// the report, and holds everything until init closes the gate.
fn gated(gate: TaskId, flood: impl FnOnce() -> [u64; 4]) -> u64 {
    let conn: Connection = match ipc::connect(gate, LONG) {
        Ok(c) => c,
        Err(e) => {
            println!("pools: no gate: {}", e);
            return e.code();
        }
    };
    let report = flood();
    let mut bytes = [0u8; 32];
    for (chunk, v) in bytes.chunks_exact_mut(8).zip(report) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    if let Err(e) = conn.write_signal(&bytes) {
        println!("pools: report failed: {}", e);
        return 1;
    }
    // Hold until init closes the gate.
    match conn.wait(None) {
        Ok(_) => 0,
        Err(e) => {
            println!("pools: gate wait failed: {}", e);
            1
        }
    }
}

fn ends(server: TaskId, workers: u64) -> [u64; 4] {
    let held = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let queue = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for w in 0..workers {
        let (held, bad_w, queue, done_w) = (held.clone(), bad.clone(), queue.clone(), done.clone());
        let h = thread::spawn(move || {
            let (bad, done) = (bad_w, done_w);
            let mut ports = Vec::new();
            let stop = loop {
                match Port::new() {
                    Ok(p) => ports.push(p),
                    Err(e) => break e,
                }
            };
            held.fetch_add(ports.len() as u64, Ordering::SeqCst);
            if stop != Error::LimitReached {
                println!("pools: worker {} stopped by {}", w, stop);
                bad.fetch_add(1, Ordering::SeqCst);
            }
            if w == 0 {
                let mut pushed = 0u64;
                let mut err = 0;
                for p in &ports {
                    match p.listen() {
                        Ok(()) => pushed += 1,
                        Err(e) => {
                            err = e.code();
                            break;
                        }
                    }
                }
                queue.store(pushed << 8 | err, Ordering::SeqCst);
            }
            done.fetch_add(1, Ordering::SeqCst);
            // Keep the ports: they are this thread's and close with it.
            thread::sleep(FOREVER);
            drop(ports);
        });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                println!("pools: worker {} not started: {}", w, e);
                bad.fetch_add(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    while done.load(Ordering::SeqCst) < workers {
        thread::sleep(Duration::from_millis(1));
    }
    let connect = ipc::connect(server, Some(Duration::ZERO)).map(drop);
    // The gate, and each connection a thread opened to memd for its memory
    // (its heap, its stack): ends of this task like the others.
    let memd = alux_rt::mem::connections() as u64;
    let held = held.load(Ordering::SeqCst) + 1 + memd;
    println!(
        "pools: ends: holding {} (gate and {} to memd included); connect to the server: {:?}",
        held, memd, connect
    );
    core::mem::forget(handles);
    [held, bad.load(Ordering::SeqCst), code(connect), queue.load(Ordering::SeqCst)]
}

fn threads(max: u64) -> [u64; 4] {
    let mut n = 0u64;
    let mut err = 0;
    let mut handles = Vec::new();
    while n < max {
        match thread::spawn(|| thread::sleep(FOREVER)) {
            Ok(h) => {
                handles.push(h);
                n += 1;
            }
            Err(e) => {
                err = e.code();
                break;
            }
        }
    }
    println!("pools: threads: holding {} (main included); stopped by {}", n + 1, err);
    core::mem::forget(handles);
    [n + 1, err, 0, 0]
}

fn pages() -> [u64; 4] {
    const MIB: usize = 1 << 20;
    let big = loop {
        if let Err(e) = alux_rt::sys::mem_map(MIB, map_flags::WRITE) {
            break e;
        }
    };
    let small = loop {
        if let Err(e) = alux_rt::sys::mem_map(4096, map_flags::WRITE) {
            break e;
        }
    };
    let frames = alux_rt::sys::kernel_stats().map_or(0, |s| s.caller_frames);
    println!("pools: pages: {} frames charged; stopped by {} then {}", frames, big, small);
    [frames, big.code(), small.code(), 0]
}

/// Frames of memory one task may hold (`MAX_PAGES_PER_TASK`).
const CAP: u64 = 16 * 1024;
const PAGE: u64 = 4096;
const REGION: u64 = 2 << 20;

fn charged() -> u64 {
    alux_rt::sys::kernel_stats().map_or(u64::MAX, |s| s.caller_frames)
}

fn frames() -> u64 {
    let c = charged();
    println!("pools: frames: this task holds {} frames (cap {})", c, CAP);
    u64::from(c > CAP)
}

/// Maps `pages` pages; returns the address after the guard page.
fn map(pages: u64) -> Result<u64, Error> {
    let base = alux_rt::sys::mem_map((pages * PAGE) as usize, map_flags::WRITE)?;
    Ok(base as u64 + (pages + 1) * PAGE)
}

fn cap() -> u64 {
    // Close to the cap with 1 MiB pieces.
    let mut next = 0;
    while charged() + 2048 < CAP {
        match map(256) {
            Ok(n) => next = n,
            Err(e) => {
                println!("pools: cap: 1 MiB refused early: {}", e);
                return 1;
            }
        }
    }
    // Pad so that the next mapping starts a fresh 2 MiB region (no page
    // table there yet): the pad takes `d - 1` pages plus its guard page.
    let mut d = (REGION - next % REGION) / PAGE;
    if d < 2 {
        d += REGION / PAGE;
    }
    match map(d - 1) {
        Ok(n) if n % REGION == 0 => {}
        other => {
            println!("pools: cap: pad mapping gave {:?}", other);
            return 1;
        }
    }
    // Exactly the room left in pages, but the mapping needs a page table
    // too: it must be refused, and nothing may change.
    let before = charged();
    let room = CAP - before;
    let refused = map(room);
    if refused != Err(Error::OutOfMemory) || charged() != before {
        println!("pools: cap: mapping {} pages at {} of {}: {:?}", room, before, CAP, refused);
        return 1;
    }
    // One page fewer (or a few, if a directory is needed too) fits and
    // ends at the cap exactly.
    let mut fitted = None;
    for less in 1..4 {
        if map(room - less).is_ok() {
            fitted = Some(less);
            break;
        }
    }
    let after = charged();
    println!(
        "pools: cap: {} pages refused at {} frames; {:?} fewer fitted; now {} of {}",
        room, before, fitted, after, CAP
    );
    if fitted.is_none() || after != CAP || map(1) != Err(Error::OutOfMemory) {
        return 1;
    }
    0
}

/// Threads, memory, ports and a connection, all of which must work.
fn system(server: TaskId) -> u64 {
    let workers: Result<Vec<_>, Error> = (0..8u64).map(|i| thread::spawn(move || i * 2)).collect();
    let sum: Option<u64> = match workers {
        Ok(ws) => ws.into_iter().map(|w| w.join()).sum(),
        Err(e) => {
            println!("pools: system: threads refused: {}", e);
            return 1;
        }
    };
    if sum != Some(56) {
        println!("pools: system: threads returned {:?}", sum);
        return 1;
    }
    let mem = match alux_rt::sys::mem_map(8 << 20, map_flags::WRITE) {
        Ok(p) => p,
        Err(e) => {
            println!("pools: system: 8 MiB refused: {}", e);
            return 1;
        }
    };
    // SAFETY: the 8 MiB were just mapped writable for this task.
    unsafe {
        mem.write_volatile(1);
        mem.add((8 << 20) - 1).write_volatile(2);
    }
    let ports: Result<Vec<Port>, Error> = (0..64).map(|_| Port::new()).collect();
    if let Err(e) = ports {
        println!("pools: system: ports refused: {}", e);
        return 1;
    }
    match ipc::connect(server, LONG) {
        Ok(_) => {
            println!("pools: system: threads, 8 MiB, 64 ports and a connection: all granted");
            0
        }
        Err(e) => {
            println!("pools: system: connect refused: {}", e);
            1
        }
    }
}

fn main(start: &Start) -> u64 {
    let mut w = start.arg_words();
    match w.next().unwrap_or("") {
        "ends" => {
            let gate = task_arg(w.next());
            let server = task_arg(w.next());
            let workers = w.next().and_then(programs::parse_u64).unwrap_or(1);
            gated(gate, || ends(server, workers))
        }
        "threads" => {
            let gate = task_arg(w.next());
            let max = w.next().and_then(programs::parse_u64).unwrap_or(1);
            gated(gate, || threads(max))
        }
        "pages" => {
            let gate = task_arg(w.next());
            gated(gate, pages)
        }
        "system" => system(task_arg(w.next())),
        "frames" => frames(),
        "cap" => cap(),
        other => {
            println!("pools: unknown role {}", other);
            2
        }
    }
}
alux_rt::entry!(main);
