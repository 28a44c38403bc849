//! Exercises memory a task gets from memd (or the kernel, when unpaged):
//!
//! - `touch MIB SEED`: fills MIB MiB of heap with a pattern distinct per
//!   page, reads it back in order and in a pseudo-random order; exits 0 if
//!   every word is right.
//! - `threads N`: N threads each fill and check 256 KiB of their own, all
//!   starting at once, so their first faults arrive together.
//! - `bad KIND`: makes one bad access and must die of it: `null`, `kernel`
//!   (an address in the kernel half), `unreserved`, `rotext` (a write to its
//!   own code), `execdata` (a jump into its heap).
//! - `quota`: asks memd for more than its quota; exits 0 on `OutOfMemory`.
//! - `syscall`: passes an unreserved pointer to a system call; exits 0 if
//!   the call fails with `BadAddress` and the task lives on.
//! - `hold MIB SEED ns=ID`: fills MIB MiB, registers `holder` with the name
//!   service, and waits to be killed (its pages out on the disk).
//! - `baseline`: exits 0 if memd holds no swap slot and no frame but this
//!   task's own: what every task before it had is back.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use alux_rt::{println, thread, Error, Start};

fn pattern(page: usize, word: usize, seed: u64) -> u64 {
    (page as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (word as u64) ^ seed
}

/// Fills `bytes` bytes of fresh heap and checks it twice; the number of
/// wrong words.
fn touch(bytes: usize, seed: u64) -> usize {
    let words = bytes / 8;
    let mut v: Vec<u64> = Vec::new();
    if v.try_reserve_exact(words).is_err() {
        println!("memtest: cannot allocate {} bytes", bytes);
        return usize::MAX;
    }
    for i in 0..words {
        v.push(pattern(i / 512, i % 512, seed));
    }
    let mut wrong = 0;
    for (i, w) in v.iter().enumerate() {
        if *w != pattern(i / 512, i % 512, seed) {
            wrong += 1;
        }
    }
    // A pseudo-random walk over the pages.
    let pages = words / 512;
    let mut x = seed | 1;
    for _ in 0..pages * 2 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let p = (x >> 33) as usize % pages.max(1);
        let i = p * 512 + (x as usize >> 7) % 512;
        if i < words && v[i] != pattern(p, i % 512, seed) {
            wrong += 1;
        }
    }
    wrong
}

/// `cargo xtask bench`'s paging figures (booted with `memd_pool=16`).
fn bench() -> u64 {
    use programs::measure::{busy_since, report, start, tsc};
    const PAGE: usize = 4096;
    let touch = |p: *mut u8, i: usize| {
        // SAFETY: `p` is a reservation of this task, and `i` pages past it
        // stay inside (checked by the callers' bounds).
        unsafe { p.add(i * PAGE).write_volatile(1) }
    };
    // Demand-zero faults: a fresh page at a time.
    let (runs, per_run) = (16, 64);
    let Ok(p) = alux_rt::mem::reserve(runs * per_run * PAGE, true) else { return 1 };
    let mut samples = Vec::new();
    for r in 0..runs {
        let t0 = tsc();
        for i in 0..per_run {
            touch(p, r * per_run + i);
        }
        samples.push((tsc() - t0) / per_run as u64);
    }
    report("memd_fault_zero", samples);
    // SAFETY: nothing uses the pages any more.
    let _ = unsafe { alux_rt::mem::release(p, runs * per_run * PAGE) };

    // Faults that must first push a dirty page to swap, then faults that
    // bring a page back: the kernel's idle time (the disk's waits) is
    // taken out.
    let Ok(st) = alux_rt::mem::stats() else { return 1 };
    let pages = st.frames_total as usize * 3;
    let Ok(p) = alux_rt::mem::reserve(pages * PAGE, true) else { return 1 };
    let mut evict = Vec::new();
    let chunk = 32;
    for c in 0..pages / chunk {
        let from = start();
        for i in 0..chunk {
            touch(p, c * chunk + i);
        }
        // Once the pool is full, every fresh page costs an eviction.
        if c * chunk > st.frames_total as usize + 256 {
            evict.push(busy_since(from).0 / chunk as u64);
        }
    }
    report("memd_fault_evict", evict);
    // The first pages written are on swap now: read them back.
    let mut swap_in = Vec::new();
    for c in 0..31 {
        let from = start();
        for i in 0..16 {
            // SAFETY: inside the reservation.
            unsafe { core::ptr::read_volatile(p.add((c * 16 + i) * PAGE)) };
        }
        swap_in.push(busy_since(from).0 / 16);
    }
    report("memd_fault_swap_in", swap_in);
    let after = alux_rt::mem::stats().map(|s| (s.faults_swap, s.pages_out)).unwrap_or((0, 0));
    println!("memtest: bench done; {} faults from swap, {} pages out in all", after.0, after.1);
    0
}

/// Sends memd 300 malformed messages of every length on a connection of
/// its own: each must get a reply memd's protocol decodes (an error status
/// for what is not a request), and memd must serve a real request after.
fn garbage() -> u64 {
    let Some(pager) = alux_rt::mem::pager() else { return 2 };
    let Ok(conn) = alux_rt::ipc::connect(pager, None) else { return 3 };
    let mut rng = programs::Rng::new(0x6d656d64);
    let (mut refused, mut served) = (0, 0);
    for i in 0..300 {
        let mut m = [0u8; 32];
        for b in m.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        if i % 3 == 0 {
            // A plausible opcode with garbage around it.
            m[0] = (i % 8) as u8;
        }
        let len = (rng.next_u64() % 33) as usize;
        let reply = match conn.call(&m[..len], Some(core::time::Duration::from_secs(5))) {
            Ok(r) => r,
            Err(e) => {
                println!("memtest: garbage #{}: no reply: {}", i, e);
                return 1;
            }
        };
        match alux_memd_proto::decode_reply(reply.bytes()) {
            Ok(r) if r.result.is_err() => refused += 1,
            Ok(_) => served += 1,
            Err(e) => {
                println!("memtest: garbage #{}: memd's reply does not decode: {:?}", i, e);
                return 1;
            }
        }
    }
    let after = alux_rt::mem::reserve(4096, true);
    println!(
        "memtest: 300 malformed messages: {} refused, {} happened to be requests; memd then serves: {}",
        refused,
        served,
        after.is_ok()
    );
    match after {
        Ok(p) => {
            // SAFETY: the page was just reserved for this task.
            unsafe { p.write_volatile(1) };
            0
        }
        Err(_) => 1,
    }
}

fn bad(kind: &str) -> u64 {
    // SAFETY (for each arm): deliberately invalid accesses; the task is
    // expected to die of them, which is what the scenario checks.
    unsafe {
        match kind {
            "null" => core::ptr::read_volatile(core::ptr::without_provenance::<u64>(8)),
            "kernel" => core::ptr::read_volatile(0xffff_8000_0000_1000 as *const u64),
            "unreserved" => core::ptr::read_volatile(0x3000_0000_0000 as *const u64),
            "rotext" => {
                let f = bad as *const u8 as *mut u8;
                core::ptr::write_volatile(f, 0xc3);
                0
            }
            "execdata" => {
                let v: Vec<u8> = alloc::vec![0xc3];
                let f: extern "C" fn() = core::mem::transmute(v.as_ptr());
                f();
                0
            }
            _ => 0,
        }
    };
    println!("memtest: bad access {} did not fault", kind);
    1
}

fn main(start: &Start) -> u64 {
    let mut w = start.arg_words();
    let mode = w.next().unwrap_or("touch");
    let mut num = |d| w.next().and_then(programs::parse_u64).unwrap_or(d);
    match mode {
        "touch" => {
            let mib = num(4) as usize;
            let seed = num(1);
            let wrong = touch(mib << 20, seed);
            if let Ok(st) = alux_rt::mem::stats() {
                println!(
                    "memtest: {} MiB checked; memd pool {} frames, {} free; faults: {} zero-filled, {} from swap; {} pages out",
                    mib, st.frames_total, st.frames_free, st.faults_zero, st.faults_swap, st.pages_out
                );
            }
            (wrong != 0) as u64
        }
        "threads" => {
            let n = num(16) as usize;
            let go = alloc::sync::Arc::new(core::sync::atomic::AtomicBool::new(false));
            let mut handles = Vec::new();
            for t in 0..n {
                let go = go.clone();
                match thread::spawn(move || {
                    while !go.load(core::sync::atomic::Ordering::Acquire) {
                        alux_rt::time::yield_now();
                    }
                    touch(256 << 10, t as u64 + 7)
                }) {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        println!("memtest: thread {}: {}", t, e);
                        return 1;
                    }
                }
            }
            go.store(true, core::sync::atomic::Ordering::Release);
            let wrong: usize = handles.into_iter().map(|h| h.join().unwrap_or(usize::MAX)).sum();
            println!("memtest: {} threads faulted together; {} wrong words", n, wrong);
            (wrong != 0) as u64
        }
        "bad" => bad(w.next().unwrap_or("")),
        "garbage" => garbage(),
        "bench" => bench(),
        "hold" => {
            let mib = num(24) as usize;
            let seed = num(5);
            let words = (mib << 20) / 8;
            let mut v: Vec<u64> = Vec::new();
            if v.try_reserve_exact(words).is_err() {
                return 1;
            }
            for i in 0..words {
                v.push(pattern(i / 512, i % 512, seed));
            }
            let Some(ns) = start.name_service() else { return 2 };
            let Ok(names) = alux_rt::names::NameService::connect(ns) else { return 3 };
            if names.register("holder").is_err() {
                return 4;
            }
            loop {
                thread::sleep(core::time::Duration::from_secs(3600));
            }
        }
        "baseline" => {
            let Ok(st) = alux_rt::mem::stats() else {
                println!("memtest: memd's counters cannot be read");
                return 1;
            };
            println!(
                "memtest: memd: {} of {} frames free, {} mine; {} swap slots used; {} shared regions",
                st.frames_free, st.frames_total, st.resident, st.slots_used, st.shares
            );
            (st.frames_free + st.resident != st.frames_total
                || st.slots_used != 0
                || st.shares != 0) as u64
        }
        "quota" => match alux_rt::mem::reserve(1 << 34, true) {
            Err(Error::OutOfMemory) => 0,
            other => {
                println!("memtest: reserving 16 GiB gave {:?}", other.map(|p| p as u64));
                1
            }
        },
        "syscall" => {
            // An address nobody reserved, in memd's reservation window.
            let r = alux_rt::sys::call(
                alux_abi::syscall::Sys::DebugPrint,
                [0x3000_0000_0000, 16, 0, 0, 0, 0],
            );
            if r == Err(Error::BadAddress) {
                0
            } else {
                println!("memtest: DebugPrint from an unreserved address gave {:?}", r);
                1
            }
        }
        _ => 2,
    }
}
alux_rt::entry!(main);
