//! The tasks of the SMP scenarios (issue 12: every CPU runs user threads),
//! started by init's `smp-stress`, `smp-shootdown` and `smp-kill`. Every
//! role first checks that `CpuInfo` counts as many CPUs as the machine has
//! (`cpus=N`, which `cargo xtask` puts on the kernel command line and init
//! passes on), and pins threads with `ThreadSetCpu`. A role that finds
//! something wrong prints `smptest ROLE: FAIL: why` and ends with an exit
//! code init does not expect.
//!
//! Roles:
//! - `stress-server PAIRS ROUNDS`: PAIRS threads, each answering one
//!   connection for ROUNDS round trips with `SendReceive`, every byte of
//!   every request checked; exits with the number of round trips served.
//! - `stress-client SERVER PAIRS ROUNDS FIRST`: PAIRS threads (pairs FIRST
//!   onwards), each connected to one thread of SERVER, ROUNDS round trips
//!   each with every byte of every reply checked. By its number a pair
//!   crosses CPUs (client and server pinned to different CPUs), shares one
//!   (both pinned to the same), is free (neither pinned) or wanders (the
//!   client moves to the next CPU every 4,096 rounds). Exits with the number
//!   of round trips done.
//! - `churn`: creates threads in batches of four (pinned by themselves, by
//!   the main thread while they run, or not at all), each checking its CPU
//!   and ending with `ThreadExit(code)`, joined from another thread, until
//!   killed.
//! - `victim`: on every CPU a spinner, a thread blocked in `Receive` and a
//!   sleeper, until killed.
//! - `shootdown MODE UNMAP_CPU READER_MASK ITERATION init=ID`: readers
//!   pinned to the CPUs of READER_MASK read one page in a tight loop while
//!   the main thread, pinned to UNMAP_CPU, has it unmapped and its frame
//!   filled with other data. MODE `kernel` (a privileged task, its memory
//!   the kernel's): `MemUnmap`, then `DmaAlloc` until the same frame comes
//!   back (it tells the physical address). MODE `memd` (a paged task): the
//!   page goes back to memd (`Release`, so memd's `PageUnmap`, from memd's
//!   CPU) and a new page is reserved and touched, which memd backs with the
//!   frame it freed last (its free list is a stack). A reader must fault at
//!   its own word of the page; one that reads anything but the page's old
//!   value ends the task with `SAW_OTHER + reader`.
//! - `cpuinfo foreign=THREAD`: `CpuInfo` and `ThreadSetCpu`: pinning
//!   oneself, a running and a blocked thread, and every refusal.
//! - `witness MODE init=ID` and `kill-victim MODE witness=ID exit_cpu=E`:
//!   the victim runs a spinner and a thread blocked in `SendReceive` on every
//!   CPU, the spinners' heartbeats in memory shared with the witness; then
//!   init kills the victim (`kill`), or the victim's main thread on CPU E
//!   calls `TaskExit` (`task-exit`), or every thread ends with `ThreadExit`
//!   (`thread-exit`). The witness checks every connection closes with the
//!   right reason and no heartbeat moves afterwards.
//! - `timing idle=TASK`: on every CPU in turn, then on all at once, then
//!   with a spinner beside each: `Sleep`, `Poll`, `Receive` and `Connect`
//!   with timeouts last at least what was asked and not absurdly longer,
//!   and the thread wakes on its own CPU.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use alux_abi::ipc::{CloseReason, Events, Handle};
use alux_abi::syscall::{Received, Sys};
use alux_abi::{Error, TaskId, ThreadId};
use alux_rt::ipc::{self, Connection, Port};
use alux_rt::shm::SharedRegion;
use alux_rt::sys::{self, call};
use alux_rt::{println, task, thread, time, Start};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

/// Generous: everything runs under full emulation, with other tasks
/// competing for the CPUs.
const LONG: Option<Duration> = Some(Duration::from_secs(60));

type Outcome = Result<u64, String>;

/// The number of CPUs that run threads, checked against the machine's
/// (`cpus=N`): every CPU QEMU was given must run threads.
fn cpu_count(start: &Start) -> Result<u32, String> {
    let want = start.arg_value("cpus").ok_or("no cpus=N argument")?;
    let (cpu, count) = sys::cpu_info().map_err(|e| format!("CpuInfo: {}", e))?;
    if u64::from(count) != want {
        return Err(format!(
            "CpuInfo counts {} CPU(s) that run threads, but the machine has {}: every CPU must run threads (issue 12)",
            count, want
        ));
    }
    if cpu >= count {
        return Err(format!("CpuInfo says this is CPU {} of {}", cpu, count));
    }
    Ok(count)
}

/// The CPU the caller runs on now.
fn this_cpu() -> Result<u32, String> {
    sys::cpu_info().map(|(cpu, _)| cpu).map_err(|e| format!("CpuInfo: {}", e))
}

/// Pins the calling thread to `cpu`; it must be there when the call returns.
fn pin_self(cpu: u32) -> Result<(), String> {
    sys::thread_set_cpu(thread::current(), Some(cpu))
        .map_err(|e| format!("ThreadSetCpu(self, {}): {}", cpu, e))?;
    match this_cpu()? {
        now if now == cpu => Ok(()),
        now => Err(format!(
            "ThreadSetCpu(self, {}) returned, but CpuInfo then said CPU {}: a thread moves at once",
            cpu, now
        )),
    }
}

/// Checks that the calling thread still runs on `cpu`.
fn still_on(cpu: u32, when: &str) -> Result<(), String> {
    match this_cpu()? {
        now if now == cpu => Ok(()),
        now => Err(format!("pinned to CPU {}, but on CPU {} {}", cpu, now, when)),
    }
}

/// Ends the whole task at once with `code` after printing why: the first
/// failure of any thread stops the task, so its peers see it closed.
fn fail_task(role: &str, code: u64, why: &str) -> ! {
    println!("smptest {}: FAIL: {}", role, why);
    task::exit(code)
}

/// A word in memory other threads or tasks write too.
///
/// # Safety
/// `addr` must be 8-aligned and stay mapped while the reference is used.
unsafe fn word<'a>(addr: usize) -> &'a AtomicU64 {
    // SAFETY: the caller's promise.
    unsafe { &*(addr as *const AtomicU64) }
}

// ---------------------------------------------------------------- stress

/// Word `w` of the request of round `round` of pair `pair`: every bit
/// depends on all three.
fn request_word(pair: u64, round: u64, w: u64) -> u64 {
    let mut x = pair.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ round.wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ (w + 1).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^ (x >> 32)
}

fn request(pair: u64, round: u64) -> [u8; 32] {
    let mut m = [0u8; 32];
    for (w, chunk) in m.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&request_word(pair, round, w as u64).to_le_bytes());
    }
    m
}

/// The server's answer to a request: every byte inverted and mixed with
/// its position.
fn reply(req: &[u8; 32]) -> [u8; 32] {
    let mut r = [0u8; 32];
    for (j, (o, b)) in r.iter_mut().zip(req).enumerate() {
        *o = !*b ^ (j as u8).wrapping_mul(37);
    }
    r
}

/// A message on `h`: a signal with 32 bytes, not a close or another end.
fn check_reply(r: &Received, h: Handle) -> Result<(), String> {
    if r.handle != h {
        return Err(format!("an event ({:?}) on another end", r.events));
    }
    if r.events.contains(Events::PEER_CLOSED) {
        return Err(format!("the peer closed ({:?})", r.close_reason));
    }
    if !r.events.contains(Events::SIGNAL) || r.message.len != 32 {
        return Err(format!("events {:?}, {} bytes", r.events, r.message.len));
    }
    Ok(())
}

/// How pair `pair` places its two threads on `n` CPUs: `(client, server)`
/// pins, and whether the client wanders.
fn placement(pair: u64, n: u32) -> (Option<u32>, Option<u32>, bool) {
    let c = (pair % u64::from(n)) as u32;
    match pair % 4 {
        0 => (Some(c), Some((c + 1) % n), false),
        1 => (Some(c), Some(c), false),
        2 => (None, None, false),
        _ => (Some(c), None, true),
    }
}

/// Config message: `C`, the server's pin (255: none), the pair, the rounds.
fn config(pair: u64, rounds: u64, server_pin: Option<u32>) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = b'C';
    m[1] = server_pin.map_or(255, |c| c as u8);
    m[8..16].copy_from_slice(&pair.to_le_bytes());
    m[16..24].copy_from_slice(&rounds.to_le_bytes());
    m
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn serve_pair(rounds: u64) -> Outcome {
    let port = Port::new().map_err(|e| format!("PortCreate: {}", e))?;
    port.listen().map_err(|e| format!("ListenPush: {}", e))?;
    let (conn, opened) = port.accept(LONG).map_err(|(_, e)| format!("accept: {}", e))?;
    let h = conn.handle();
    // The client's config may have come with the connection.
    let first = if opened.events.contains(Events::SIGNAL) {
        conn.read().map_err(|e| format!("Read: {}", e))?.data
    } else {
        let r = ipc::receive(LONG).map_err(|e| format!("Receive: {}", e))?;
        if r.handle != h || !r.events.contains(Events::SIGNAL) {
            return Err(format!("no config from the client: {:?}", r.events));
        }
        r.message.data
    };
    let pair = u64_at(&first, 8);
    if first[0] != b'C' || u64_at(&first, 16) != rounds {
        return Err(format!("bad config {:02x?}", first));
    }
    let pin = (first[1] != 255).then_some(u32::from(first[1]));
    if let Some(c) = pin {
        pin_self(c).map_err(|e| format!("pair {} server: {}", pair, e))?;
    }
    let mut ack = [0u8; 32];
    ack[0] = b'A';
    ack[1] = this_cpu()? as u8;
    let mut r = ipc::send_receive(&conn, &ack).map_err(|e| format!("SendReceive: {}", e))?;
    let what = |round: u64| format!("pair {} server, round {}", pair, round);
    for round in 0..rounds {
        check_reply(&r, h).map_err(|e| format!("{}: {}", what(round), e))?;
        let want = request(pair, round);
        if r.message.data != want {
            return Err(format!(
                "{}: request {:02x?}, expected {:02x?}",
                what(round),
                r.message.data,
                want
            ));
        }
        if let Some(c) = pin {
            if round % 1024 == 0 {
                still_on(c, &what(round))?;
            }
        }
        r = ipc::send_receive(&conn, &reply(&want))
            .map_err(|e| format!("{}: SendReceive: {}", what(round), e))?;
    }
    // The client closes once it has the last reply.
    if !r.events.contains(Events::PEER_CLOSED) || r.handle != h {
        return Err(format!(
            "pair {} server: after the last round {:?}, not a close",
            pair, r.events
        ));
    }
    Ok(rounds)
}

fn client_pair(server: TaskId, pair: u64, rounds: u64, n: u32) -> Outcome {
    let (mine, theirs, wanders) = placement(pair, n);
    let mut cpu = mine.unwrap_or(0);
    if let Some(c) = mine {
        pin_self(c).map_err(|e| format!("pair {} client: {}", pair, e))?;
    }
    let conn = ipc::connect(server, LONG).map_err(|e| format!("pair {} connect: {}", pair, e))?;
    let h = conn.handle();
    let ack = ipc::send_receive(&conn, &config(pair, rounds, theirs))
        .map_err(|e| format!("pair {} config: {}", pair, e))?;
    check_reply(&ack, h).map_err(|e| format!("pair {} config: {}", pair, e))?;
    if ack.message.data[0] != b'A' || theirs.is_some_and(|c| u32::from(ack.message.data[1]) != c) {
        return Err(format!(
            "pair {}: the server answered {:02x?} (wanted it on CPU {:?})",
            pair,
            &ack.message.data[..2],
            theirs
        ));
    }
    for round in 0..rounds {
        if wanders && round > 0 && round % 4096 == 0 {
            cpu = (cpu + 1) % n;
            pin_self(cpu).map_err(|e| format!("pair {} client, round {}: {}", pair, round, e))?;
        }
        if mine.is_some() && round % 1024 == 0 {
            still_on(cpu, "")
                .map_err(|e| format!("pair {} client, round {}: {}", pair, round, e))?;
        }
        let req = request(pair, round);
        let r = ipc::send_receive(&conn, &req)
            .map_err(|e| format!("pair {} round {}: SendReceive: {}", pair, round, e))?;
        check_reply(&r, h).map_err(|e| format!("pair {} client, round {}: {}", pair, round, e))?;
        if r.message.data != reply(&req) {
            return Err(format!(
                "pair {} round {}: reply {:02x?}, expected {:02x?}",
                pair,
                round,
                r.message.data,
                reply(&req)
            ));
        }
    }
    Ok(rounds)
}

/// Runs `f` on `count` threads (argument: the thread's index) and sums
/// what they return; the first failure ends the task with exit code 1.
fn on_threads(
    role: &'static str,
    count: u64,
    f: impl Fn(u64) -> Outcome + Send + Sync + 'static,
) -> Outcome {
    let f = Arc::new(f);
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let f = f.clone();
            thread::spawn(move || match f(i) {
                Ok(v) => v,
                Err(why) => fail_task(role, 1, &why),
            })
            .map_err(|e| format!("ThreadCreate: {}", e))
        })
        .collect::<Result<_, _>>()?;
    let mut total = 0;
    for h in handles {
        total += h.join().ok_or("a thread ended without its result")?;
    }
    Ok(total)
}

fn stress_server(pairs: u64, rounds: u64) -> Outcome {
    let total = on_threads("stress-server", pairs, move |_| serve_pair(rounds))?;
    println!(
        "smptest stress-server: {} pairs served {} round trips, every byte checked",
        pairs, total
    );
    Ok(total)
}

fn stress_client(start: &Start, server: TaskId, pairs: u64, rounds: u64, first: u64) -> Outcome {
    let n = cpu_count(start)?;
    let t0 = time::now();
    let total =
        on_threads("stress-client", pairs, move |i| client_pair(server, first + i, rounds, n))?;
    let ms = (time::now() - t0).as_millis().max(1) as u64;
    println!(
        "smptest stress-client: pairs {}..{} on {} CPUs: {} round trips, every byte checked, in {} ms ({} per second)",
        first,
        first + pairs,
        n,
        total,
        ms,
        total * 1000 / ms
    );
    Ok(total)
}

// ------------------------------------------------ churn and victims

/// A short spin in user mode.
fn spin(iterations: u64) {
    let mut x = 0u64;
    for i in 0..iterations {
        x = core::hint::black_box(x.wrapping_add(i));
    }
}

/// Threads created and ended in batches of four until the task is killed:
/// one in three pins itself, one is pinned by this thread while it runs,
/// one is free. Each ends with `ThreadExit(code)`; the main thread joins
/// it from wherever it runs and checks the code when the thread had not
/// ended before the join (a thread that is gone reports `NoSuchThread`).
fn churn(start: &Start) -> Outcome {
    let n = cpu_count(start)?;
    let mut next = 0u64;
    let mut codes_seen = 0u64;
    loop {
        let mut batch = Vec::new();
        for _ in 0..4 {
            next += 1;
            let i = next;
            let code = 10_000 + i;
            let target = (i % u64::from(n)) as u32;
            let moved = Arc::new(AtomicBool::new(false));
            let flag = moved.clone();
            let h = thread::spawn(move || {
                let fail = |why: String| fail_task("churn", 1, &format!("thread {}: {}", i, why));
                match i % 3 {
                    0 => {
                        if let Err(e) = pin_self(target) {
                            fail(e);
                        }
                        spin(5_000);
                        if let Err(e) = still_on(target, "after a spin") {
                            fail(e);
                        }
                    }
                    1 => {
                        // Pinned by the main thread while running: it must
                        // be on its CPU within an interrupt's time.
                        let t0 = time::now();
                        while !flag.load(Ordering::Acquire) {
                            if time::now() - t0 > Duration::from_secs(10) {
                                fail("never told it was pinned".into());
                            }
                            spin(100);
                        }
                        let t0 = time::now();
                        while this_cpu().unwrap_or(u32::MAX) != target {
                            if time::now() - t0 > Duration::from_secs(2) {
                                fail(format!("pinned to CPU {} but not there 2 s later", target));
                            }
                        }
                        spin(5_000);
                        if let Err(e) = still_on(target, "after a spin") {
                            fail(e);
                        }
                    }
                    _ => spin(5_000),
                }
                thread::exit(code)
            })
            .map_err(|e| format!("ThreadCreate: {}", e))?;
            if i % 3 == 1 {
                sys::thread_set_cpu(h.id(), Some(target))
                    .map_err(|e| format!("ThreadSetCpu(running thread, {}): {}", target, e))?;
                moved.store(true, Ordering::Release);
            }
            batch.push((h, code));
        }
        for (h, code) in batch {
            match call(Sys::ThreadJoin, [h.id().raw(), 10_000_000_000, 0, 0, 0, 0]) {
                Ok([got, ..]) if got == code => codes_seen += 1,
                Ok([got, ..]) => return Err(format!("ThreadJoin gave code {}, not {}", got, code)),
                Err(Error::NoSuchThread) => {}
                Err(e) => return Err(format!("ThreadJoin: {}", e)),
            }
            h.join();
        }
        if next.is_multiple_of(200) {
            println!("smptest churn: {} threads ended, {} exit codes checked", next, codes_seen);
        }
    }
}

/// On every CPU a spinner, a thread blocked in `Receive` on a port nobody
/// connects to, and a sleeper; the main thread sleeps. Only a kill ends it.
fn victim(start: &Start) -> Outcome {
    let n = cpu_count(start)?;
    let mut handles = Vec::new();
    for c in 0..n {
        handles.push(thread::spawn(move || {
            if let Err(e) = pin_self(c) {
                fail_task("victim", 3, &e);
            }
            loop {
                spin(1 << 20);
            }
        }));
        handles.push(thread::spawn(move || {
            if let Err(e) = pin_self(c) {
                fail_task("victim", 4, &e);
            }
            let _port = Port::new();
            let r = ipc::receive(None);
            fail_task(
                "victim",
                5,
                &format!("Receive with nobody connected returned {:?}", r.map(|r| r.events)),
            )
        }));
        handles.push(thread::spawn(move || {
            if let Err(e) = pin_self(c) {
                fail_task("victim", 6, &e);
            }
            loop {
                time::sleep(Duration::from_millis(2));
                if let Err(e) = still_on(c, "after a sleep") {
                    fail_task("victim", 7, &e);
                }
            }
        }));
    }
    for h in handles {
        h.map_err(|e| format!("ThreadCreate: {}", e))?;
    }
    loop {
        time::sleep(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------- shootdown

/// Exit codes of the shootdown task; init decodes them.
mod shoot {
    /// Reader `k` read something other than its page's value: `+ k`.
    pub const SAW_OTHER: u64 = 0x5ee0;
    /// Reader `k` could not be pinned: `+ k`.
    pub const PIN: u64 = 0x71e0;
    /// No reader faulted within 3 s of the unmap.
    pub const NO_FAULT: u64 = 0xa1;
    /// Anything else failed (printed).
    pub const SETUP: u64 = 0xa2;
}

/// Per-reader loop counts, published every 64 reads.
static READS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

fn shootdown(start: &Start) -> Outcome {
    let n = cpu_count(start)?;
    let words: Vec<&str> = start.arg_words().collect();
    let memd = match words.get(1).copied() {
        Some("memd") => true,
        Some("kernel") => false,
        other => return Err(format!("mode {:?}: want kernel or memd", other)),
    };
    let num = |i: usize| {
        words.get(i).copied().and_then(programs::parse_u64).ok_or("shootdown: bad arguments")
    };
    let (unmap_cpu, mask, iteration) = (num(2)? as u32, num(3)?, num(4)?);
    let init = TaskId::from_raw(start.arg_value("init").ok_or("no init=ID")?);
    let readers: Vec<u32> = (0..n).filter(|c| mask & (1 << c) != 0).collect();
    if unmap_cpu >= n || readers.is_empty() || readers.contains(&unmap_cpu) {
        return Err(format!("bad roles: unmap on {}, readers {:?}", unmap_cpu, readers));
    }
    if memd != alux_rt::mem::pager().is_some() {
        return Err(format!("mode memd is for a paged task: paged is {}", !memd));
    }
    pin_self(unmap_cpu)?;
    let conn = ipc::connect(init, LONG).map_err(|e| format!("connect to init: {}", e))?;
    // A fresh page; `phys` only when the kernel says it.
    let page = || -> Result<(u64, u64), String> {
        if memd {
            let a = alux_rt::mem::reserve(4096, true).map_err(|e| format!("reserve: {}", e))?;
            Ok((a as u64, 0))
        } else {
            let [a, p, ..] = call(Sys::DmaAlloc, [4096, 0, 0, 0, 0, 0])
                .map_err(|e| format!("DmaAlloc: {}", e))?;
            Ok((a, p))
        }
    };
    let fill = |a: u64, v: u64| {
        for i in 0..512 {
            // SAFETY: `a` is a page of this task's, mapped (or, with memd,
            // reserved: the first store faults it in) read-write.
            unsafe { word(a as usize + 8 * i) }.store(v, Ordering::Release);
        }
    };
    let (va, phys) = page()?;
    let old = 0x01d0_0000_0000_0000 | iteration;
    let new = 0x0e30_0000_0000_0000 | iteration;
    fill(va, old);
    for (k, &cpu) in readers.iter().enumerate() {
        let at = va as usize + 8 * k;
        thread::spawn(move || {
            if let Err(e) = pin_self(cpu) {
                fail_task("shootdown", shoot::PIN + k as u64, &e);
            }
            let p = at as *const u64;
            let mut reads = 0u64;
            loop {
                // SAFETY: the page is mapped until the main thread has it
                // unmapped; from then on this read must fault, which ends
                // the task (the point of the test).
                let v = unsafe { core::ptr::read_volatile(p) };
                if v != old {
                    fail_task(
                        "shootdown",
                        shoot::SAW_OTHER + k as u64,
                        &format!(
                            "reader {} on CPU {} read {:#x} at {:#x} after {} reads, not the page's {:#x}",
                            k, cpu, v, at, reads, old
                        ),
                    );
                }
                reads += 1;
                if reads.is_multiple_of(64) {
                    READS[k].store(reads, Ordering::Relaxed);
                }
            }
        })
        .map_err(|e| format!("ThreadCreate: {}", e))?;
    }
    // Every reader in its loop, its TLB entry for the page in use.
    let t0 = time::now();
    while readers.iter().enumerate().any(|(k, _)| READS[k].load(Ordering::Relaxed) < 4096) {
        if time::now() - t0 > Duration::from_secs(20) {
            return Err("the readers did not start reading within 20 s".into());
        }
        spin(1000);
    }
    // Tell init where the page is, and wait for its answer.
    let mut m = [0u8; 32];
    m[0] = b'U';
    m[1] = readers.len() as u8;
    m[8..16].copy_from_slice(&va.to_le_bytes());
    m[16..24].copy_from_slice(&phys.to_le_bytes());
    conn.call(&m, LONG).map_err(|e| format!("telling init: {}", e))?;
    // The frame again, with other data. Nothing may be allocated from here
    // on (until a failure is reported): memd reuses addresses, and a heap
    // growing into the old page's address would put other data there
    // legitimately.
    let mut m = [0u8; 32];
    if memd {
        // Reserved before the release, so at another address; touched
        // after it, so backed by the frame memd freed last: the old page's.
        let (a, _) = page()?;
        // SAFETY: only the readers use the page, and their next read must
        // fault.
        unsafe { alux_rt::mem::release(va as *mut u8, 4096) }
            .map_err(|e| format!("release: {}", e))?;
        fill(a, new);
        m[0] = b'M';
        m[8..16].copy_from_slice(&a.to_le_bytes());
    } else {
        // SAFETY: as above.
        unsafe { sys::mem_unmap(va as *mut u8, 4096) }.map_err(|e| format!("MemUnmap: {}", e))?;
        // Allocate until the frame comes back.
        m[0] = b'N';
        for tries in 1..=1024u64 {
            let (a, p) = page()?;
            fill(a, new);
            if p == phys {
                m[0] = b'R';
                m[8..16].copy_from_slice(&a.to_le_bytes());
                m[16..24].copy_from_slice(&tries.to_le_bytes());
                break;
            }
        }
    }
    if u64_at(&m, 8) == va {
        // Not a kernel fault: the test could not tell a stale TLB entry
        // from the page's address in use again.
        fail_task("shootdown", shoot::SETUP, "the new page got the old page's address");
    }
    let _ = conn.send(&m);
    // A reader faulting ends the task meanwhile; this is the failure.
    let t0 = time::now();
    while time::now() - t0 < Duration::from_secs(3) {
        time::sleep(Duration::from_millis(10));
    }
    fail_task(
        "shootdown",
        shoot::NO_FAULT,
        &format!("no reader faulted within 3 s after the unmap (then: {:?})", m[0] as char),
    )
}

// ---------------------------------------------------------------- cpuinfo

/// `CpuInfo` and `ThreadSetCpu` from every angle; every check that fails
/// is printed, and the role fails if any did.
fn cpuinfo(start: &Start) -> Outcome {
    let n = cpu_count(start)?;
    let foreign = ThreadId::from_raw(start.arg_value("foreign").ok_or("no foreign=THREAD")?);
    let me = thread::current();
    let mut wrong: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            println!("smptest cpuinfo: WRONG: {}", what);
            wrong.push(what);
        }
    };
    // This thread, pinned to each CPU in turn: there at once, and still
    // there after a yield and a sleep.
    for c in (0..n).chain((0..n).rev()) {
        check(pin_self(c).is_ok(), format!("pinning itself to CPU {}", c));
        time::yield_now();
        check(still_on(c, "").is_ok(), format!("still on CPU {} after a yield", c));
        time::sleep(Duration::from_millis(1));
        check(still_on(c, "").is_ok(), format!("still on CPU {} after a sleep", c));
        let (_, count) = sys::cpu_info().unwrap_or((0, 0));
        check(count == n, format!("CpuInfo's count changed to {} on CPU {}", count, c));
    }
    check(sys::thread_set_cpu(me, None).is_ok(), "unpinning itself (CPU_ANY)".into());
    // Threads that pin themselves, one per CPU, all at once.
    let selfs: Vec<_> = (0..n)
        .map(|c| {
            thread::spawn(move || -> Result<(), String> {
                pin_self(c)?;
                spin(20_000);
                still_on(c, "after a spin")?;
                time::sleep(Duration::from_millis(2));
                still_on(c, "after a sleep")
            })
        })
        .collect();
    for (c, h) in selfs.into_iter().enumerate() {
        let r = h
            .map_err(|e| format!("ThreadCreate: {}", e))
            .and_then(|h| h.join().unwrap_or_else(|| Err("ended without a result".into())));
        check(r.is_ok(), format!("a thread pinned to CPU {}: {:?}", c, r.err()));
    }
    moving_a_running_thread(n, &mut check)?;
    moving_a_blocked_thread(n, &mut check)?;
    // Refusals: no such CPU; not a live thread of this task.
    for bad in [n, n + 1, 255, 4095] {
        let got = sys::thread_set_cpu(me, Some(bad));
        check(got == Err(Error::InvalidArgument), format!("CPU {} of {}: {:?}", bad, n, got));
    }
    for raw in [u64::from(u32::MAX), 1 << 32, u64::MAX - 1] {
        let got = call(Sys::ThreadSetCpu, [me.raw(), raw, 0, 0, 0, 0]).map(|_| ());
        check(got == Err(Error::InvalidArgument), format!("cpu {:#x}: {:?}", raw, got));
    }
    let ended = thread::spawn(|| ()).map_err(|e| format!("ThreadCreate: {}", e))?;
    let stale = ended.id();
    ended.join();
    for (what, t) in [
        ("another task's thread", foreign),
        ("a thread that ended", stale),
        ("thread 0", ThreadId::from_raw(0)),
        ("a made-up thread", ThreadId::from_raw(0x1357_9bdf_0246_8ace)),
    ] {
        for cpu in [Some(0), None] {
            let got = sys::thread_set_cpu(t, cpu);
            check(got == Err(Error::NoSuchThread), format!("{} to {:?}: {:?}", what, cpu, got));
        }
    }
    check(sys::thread_set_cpu(me, None).is_ok(), "unpinning itself again".into());
    if wrong.is_empty() {
        println!("smptest cpuinfo: {} CPUs: every pin held, every refusal right", n);
        Ok(0)
    } else {
        Err(format!("{} check(s) failed: {}", wrong.len(), wrong.join("; ")))
    }
}

/// A thread spinning on one CPU, pinned by this thread to each CPU in turn:
/// it must get there within an interrupt's time (2 s is the sanity bound)
/// and stay. It publishes `(cpu + 1)` of every `CpuInfo` it makes.
fn moving_a_running_thread(n: u32, check: &mut impl FnMut(bool, String)) -> Result<(), String> {
    static SEEN: AtomicU64 = AtomicU64::new(0);
    static STOP: AtomicBool = AtomicBool::new(false);
    let spinner = thread::spawn(|| {
        while !STOP.load(Ordering::Relaxed) {
            let c = sys::cpu_info().map_or(0, |(c, _)| u64::from(c) + 1);
            SEEN.store(c, Ordering::Relaxed);
        }
    })
    .map_err(|e| format!("ThreadCreate: {}", e))?;
    for c in (0..n).chain(0..n) {
        let got = sys::thread_set_cpu(spinner.id(), Some(c));
        check(got.is_ok(), format!("pinning a running thread to CPU {}: {:?}", c, got));
        let t0 = time::now();
        while SEEN.load(Ordering::Relaxed) != u64::from(c) + 1 {
            if time::now() - t0 > Duration::from_secs(2) {
                break;
            }
            spin(200);
        }
        let arrived = SEEN.load(Ordering::Relaxed) == u64::from(c) + 1;
        check(arrived, format!("a running thread pinned to CPU {} was not there 2 s later", c));
        if arrived {
            // And it stays.
            for _ in 0..50 {
                spin(500);
                let s = SEEN.load(Ordering::Relaxed);
                if s != u64::from(c) + 1 {
                    check(false, format!("a thread pinned to CPU {} was seen on CPU {}", c, s - 1));
                    break;
                }
            }
        }
    }
    STOP.store(true, Ordering::Relaxed);
    spinner.join();
    Ok(())
}

/// A thread blocked in `ThreadJoin`, pinned meanwhile to a CPU: when the
/// thread it waits for ends, it wakes there.
fn moving_a_blocked_thread(n: u32, check: &mut impl FnMut(bool, String)) -> Result<(), String> {
    for c in 0..n {
        static GO: AtomicBool = AtomicBool::new(false);
        static JOINING: AtomicBool = AtomicBool::new(false);
        GO.store(false, Ordering::Release);
        JOINING.store(false, Ordering::Release);
        let awaited = thread::spawn(|| {
            while !GO.load(Ordering::Acquire) {
                time::sleep(Duration::from_millis(1));
            }
        })
        .map_err(|e| format!("ThreadCreate: {}", e))?;
        let id = awaited.id();
        let waiter = thread::spawn(move || -> Result<u32, String> {
            JOINING.store(true, Ordering::Release);
            match call(Sys::ThreadJoin, [id.raw(), 30_000_000_000, 0, 0, 0, 0]) {
                Ok(_) | Err(Error::NoSuchThread) => this_cpu(),
                Err(e) => Err(format!("ThreadJoin: {}", e)),
            }
        })
        .map_err(|e| format!("ThreadCreate: {}", e))?;
        while !JOINING.load(Ordering::Acquire) {
            time::sleep(Duration::from_millis(1));
        }
        // By now it waits in ThreadJoin.
        time::sleep(Duration::from_millis(5));
        let got = sys::thread_set_cpu(waiter.id(), Some(c));
        check(got.is_ok(), format!("pinning a blocked thread to CPU {}: {:?}", c, got));
        GO.store(true, Ordering::Release);
        let woke = waiter.join().unwrap_or_else(|| Err("no result".into()));
        awaited.join();
        check(woke == Ok(c), format!("a blocked thread pinned to CPU {} woke on {:?}", c, woke));
    }
    Ok(())
}

// ------------------------------------------------- kill, exit, witness

/// Layout of the region the witness shares with the victim (u64 words).
mod region {
    /// Word of the heartbeat of the spinner on CPU `c`: `HEARTBEAT + c`.
    pub const HEARTBEAT: usize = 0;
    /// `STATUS + c`: 0 not started, `c + 1` running on CPU c, `BAD` if it
    /// could not be pinned.
    pub const STATUS: usize = 16;
    /// Nonzero: spinners end with `ThreadExit` (mode `thread-exit`).
    pub const STOP: usize = 32;
    /// A spinner that could not be pinned.
    pub const BAD: u64 = 0xbad;
    /// Bytes.
    pub const LEN: usize = 4096;
}

/// The victim's modes, and the exit codes of the two exits.
const TASK_EXIT_CODE: u64 = 0x7e;
const LAST_THREAD_CODE: u64 = 0x7f;

fn spinner_code(c: u32) -> u64 {
    200 + u64::from(c)
}

fn blocker_code(c: u32) -> u64 {
    300 + u64::from(c)
}

/// Writes its heartbeat as fast as it can, in user mode only (no system
/// call), until killed; in `thread-exit` mode it also watches the stop word.
fn spinner(base: usize, c: u32, stop_on_flag: bool) -> ! {
    // SAFETY: the region stays mapped in this task until the task ends
    // (the main thread never releases it).
    let (hb, status, stop) = unsafe {
        (
            word(base + 8 * (region::HEARTBEAT + c as usize)),
            word(base + 8 * (region::STATUS + c as usize)),
            word(base + 8 * region::STOP),
        )
    };
    if let Err(e) = pin_self(c) {
        status.store(region::BAD, Ordering::Release);
        fail_task("kill-victim", 3, &e);
    }
    status.store(u64::from(c) + 1, Ordering::Release);
    let mut i = 0u64;
    loop {
        i += 1;
        hb.store(i, Ordering::Relaxed);
        if stop_on_flag && i.is_multiple_of(1024) && stop.load(Ordering::Acquire) != 0 {
            thread::exit(spinner_code(c));
        }
    }
}

/// Pinned to CPU `c`, connects to the witness and parks in `SendReceive`
/// with its `B` message; in `thread-exit` mode the witness's `X` wakes it
/// and it ends with `ThreadExit`.
fn blocker(witness: TaskId, c: u32) -> ! {
    if let Err(e) = pin_self(c) {
        fail_task("kill-victim", 4, &e);
    }
    let conn = match ipc::connect(witness, LONG) {
        Ok(conn) => conn,
        Err(e) => fail_task("kill-victim", 4, &format!("connect to the witness: {}", e)),
    };
    match ipc::send_receive(&conn, &[b'B', c as u8]) {
        Ok(r) if r.message.data[0] == b'X' && !r.events.contains(Events::PEER_CLOSED) => {
            if let Err(e) = still_on(c, "after waking") {
                fail_task("kill-victim", 4, &e);
            }
            thread::exit(blocker_code(c))
        }
        other => fail_task(
            "kill-victim",
            5,
            &format!("blocker on CPU {} woke with {:?}", c, other.map(|r| r.events)),
        ),
    }
}

fn kill_victim(start: &Start, mode: &str) -> Outcome {
    let n = cpu_count(start)?;
    let witness = TaskId::from_raw(start.arg_value("witness").ok_or("no witness=ID")?);
    let exit_cpu = start.arg_value("exit_cpu").ok_or("no exit_cpu=CPU")? as u32;
    pin_self(exit_cpu)?;
    let conn = ipc::connect(witness, LONG).map_err(|e| format!("connect: {}", e))?;
    conn.send(b"M").map_err(|e| format!("Send: {}", e))?;
    let shared = SharedRegion::negotiate(&conn, region::LEN, Duration::from_secs(60))
        .map_err(|e| format!("sharing a region with the witness: {:?}", e))?;
    let base = shared.addr() as usize;
    let stop_on_flag = mode == "thread-exit";
    let mut threads = Vec::new();
    for c in 0..n {
        let h = thread::spawn(move || spinner(base, c, stop_on_flag))
            .map_err(|e| format!("ThreadCreate: {}", e))?;
        threads.push((h.id(), spinner_code(c)));
        let h = thread::spawn(move || blocker(witness, c))
            .map_err(|e| format!("ThreadCreate: {}", e))?;
        threads.push((h.id(), blocker_code(c)));
    }
    // Wait for the witness's word.
    let r = loop {
        let r = ipc::receive(None).map_err(|e| format!("Receive: {}", e))?;
        if r.handle == conn.handle() {
            break r;
        }
    };
    if r.events.contains(Events::PEER_CLOSED) || r.message.data[0] != b'X' {
        return Err(format!("the witness said {:?} ({:?})", r.message.bytes(), r.events));
    }
    match mode {
        "task-exit" => {
            // Every other thread still spins or waits, on every CPU.
            still_on(exit_cpu, "before TaskExit")?;
            task::exit(TASK_EXIT_CODE)
        }
        "thread-exit" => {
            for (id, code) in threads {
                match call(Sys::ThreadJoin, [id.raw(), 30_000_000_000, 0, 0, 0, 0]) {
                    Ok([got, ..]) if got == code => {}
                    // Already gone: exit codes are not kept.
                    Err(Error::NoSuchThread) => {}
                    other => return Err(format!("ThreadJoin for code {}: {:?}", code, other)),
                }
            }
            // The last thread: the task ends with its code.
            core::mem::forget(shared);
            thread::exit(LAST_THREAD_CODE)
        }
        other => Err(format!("mode {} does not exit", other)),
    }
}

/// The witness's view of the victim's connections.
struct Victim {
    control: Option<Handle>,
    blockers: BTreeMap<Handle, u32>,
    conns: BTreeMap<Handle, Connection>,
    closed: BTreeMap<Handle, Option<CloseReason>>,
}

fn heartbeats(base: usize, n: u32) -> Vec<u64> {
    (0..n as usize)
        // SAFETY: the region stays mapped while `SharedRegion` lives.
        .map(|c| unsafe { word(base + 8 * (region::HEARTBEAT + c)) }.load(Ordering::Acquire))
        .collect()
}

/// Heartbeats must not move between two reads `gap` apart.
fn frozen(base: usize, n: u32, gap: Duration, when: &str) -> Result<(), String> {
    let h1 = heartbeats(base, n);
    time::sleep(gap);
    let h2 = heartbeats(base, n);
    for c in 0..n as usize {
        if h1[c] != h2[c] {
            return Err(format!(
                "the spinner on CPU {} still ran {}: its heartbeat went from {} to {} in {} ms",
                c,
                when,
                h1[c],
                h2[c],
                gap.as_millis()
            ));
        }
    }
    Ok(())
}

fn witness(start: &Start, mode: &str) -> Outcome {
    let n = cpu_count(start)?;
    let init = TaskId::from_raw(start.arg_value("init").ok_or("no init=ID")?);
    let want = match mode {
        "kill" => CloseReason::TaskKilled,
        "task-exit" => CloseReason::TaskExited,
        "thread-exit" => CloseReason::ThreadExited,
        other => return Err(format!("unknown mode {}", other)),
    };
    let mut ports: BTreeMap<Handle, Port> = BTreeMap::new();
    for _ in 0..=n {
        let p = Port::new().map_err(|e| format!("PortCreate: {}", e))?;
        p.listen().map_err(|e| format!("ListenPush: {}", e))?;
        ports.insert(p.handle(), p);
    }
    let mut v = Victim {
        control: None,
        blockers: BTreeMap::new(),
        conns: BTreeMap::new(),
        closed: BTreeMap::new(),
    };
    let mut shared = None;
    let t0 = time::now();
    let left = |t0: Duration| Some(Duration::from_secs(60).saturating_sub(time::now() - t0));
    // The victim's control connection (and the region on it) and a
    // blocker from every CPU.
    while v.control.is_none() || v.blockers.len() < n as usize || shared.is_none() {
        let r = ipc::receive(left(t0)).map_err(|e| format!("waiting for the victim: {}", e))?;
        if r.events.contains(Events::OPENED) {
            let p = ports.remove(&r.handle).ok_or("OPENED on an unknown end")?;
            v.conns.insert(r.handle, p.into_connection());
        }
        if r.events.contains(Events::PEER_CLOSED) {
            return Err(format!("a victim connection closed early: {:?}", r.close_reason));
        }
        if r.events.contains(Events::SIGNAL) {
            match r.message.data[0] {
                b'M' => {
                    v.control = Some(r.handle);
                    let conn = &v.conns[&r.handle];
                    let s = SharedRegion::negotiate(conn, region::LEN, Duration::from_secs(60))
                        .map_err(|e| format!("sharing a region with the victim: {:?}", e))?;
                    shared = Some(s);
                }
                b'B' => {
                    v.blockers.insert(r.handle, u32::from(r.message.data[1]));
                }
                other => return Err(format!("the victim said {:?}", other)),
            }
        }
    }
    let mut cpus: Vec<u32> = v.blockers.values().copied().collect();
    cpus.sort_unstable();
    if cpus != (0..n).collect::<Vec<_>>() {
        return Err(format!("blockers on CPUs {:?}", cpus));
    }
    let shared = shared.expect("negotiated");
    let base = shared.addr() as usize;
    // Every spinner on its CPU, its heartbeat moving.
    loop {
        if time::now() - t0 > Duration::from_secs(60) {
            return Err("the spinners did not all start within 60 s".into());
        }
        let status: Vec<u64> = (0..n as usize)
            // SAFETY: the region is mapped while `shared` lives.
            .map(|c| unsafe { word(base + 8 * (region::STATUS + c)) }.load(Ordering::Acquire))
            .collect();
        if status.contains(&region::BAD) {
            return Err("a spinner could not be pinned".into());
        }
        if status.iter().enumerate().all(|(c, &s)| s == c as u64 + 1) {
            let h1 = heartbeats(base, n);
            time::sleep(Duration::from_millis(5));
            let h2 = heartbeats(base, n);
            if h1.iter().zip(&h2).all(|(a, b)| a != b) {
                break;
            }
        } else {
            time::sleep(Duration::from_millis(2));
        }
    }
    // Ready: tell init, which kills the victim (mode `kill`) before it
    // answers.
    let to_init = ipc::connect(init, LONG).map_err(|e| format!("connect to init: {}", e))?;
    let go = to_init.call(b"R", LONG).map_err(|e| format!("asking init: {}", e))?;
    if go.bytes() != b"G" {
        return Err(format!("init answered {:?}", go.bytes()));
    }
    let control = v.control.expect("control connection");
    match mode {
        // TaskKill has returned: every spinner has left user mode for good.
        "kill" => frozen(base, n, Duration::from_millis(30), "after TaskKill returned")?,
        "task-exit" => {
            v.conns[&control].send(b"X").map_err(|e| format!("Send: {}", e))?;
        }
        _ => {
            // SAFETY: the region is mapped while `shared` lives.
            unsafe { word(base + 8 * region::STOP) }.store(1, Ordering::Release);
            for h in v.blockers.keys() {
                v.conns[h].send(b"X").map_err(|e| format!("Send: {}", e))?;
            }
            v.conns[&control].send(b"X").map_err(|e| format!("Send: {}", e))?;
        }
    }
    // Every connection of the victim closes, with the reason of its end.
    let t1 = time::now();
    while v.closed.len() < v.conns.len() {
        let r = ipc::receive(left(t1)).map_err(|e| {
            format!("{} of {} victim connections closed: {}", v.closed.len(), v.conns.len(), e)
        })?;
        if r.events.contains(Events::PEER_CLOSED) && v.conns.contains_key(&r.handle) {
            v.closed.insert(r.handle, r.close_reason);
        }
    }
    for (h, reason) in &v.closed {
        let ok = match mode {
            // The main thread is the task's last: its ends may say either.
            "thread-exit" if *h == control => {
                matches!(reason, Some(CloseReason::ThreadExited | CloseReason::TaskExited))
            }
            _ => *reason == Some(want),
        };
        if !ok {
            let whose = v
                .blockers
                .get(h)
                .map_or("the main thread".into(), |c| format!("the blocker on CPU {}", c));
            return Err(format!("{}'s connection closed with {:?}, not {:?}", whose, reason, want));
        }
    }
    // No spinner runs on: 10 ms for the last one to be stopped, then 30 ms
    // in which no heartbeat may move.
    time::sleep(Duration::from_millis(10));
    frozen(base, n, Duration::from_millis(30), "after its task ended")?;
    println!(
        "smptest witness: {}: {} spinners and {} blockers on {} CPUs stopped, every connection closed with {:?}",
        mode,
        n,
        v.blockers.len(),
        n,
        want
    );
    Ok(0)
}

// ---------------------------------------------------------------- timing

/// Longest a wait of 10 ms may take before it counts as absurd.
const SLACK: Duration = Duration::from_secs(2);

/// Each timed wait once, on the calling thread, which must be on `cpu`
/// before and after each.
fn timed_waits(cpu: u32, idle: TaskId) -> Result<(), String> {
    let port = Port::new().map_err(|e| format!("PortCreate: {}", e))?;
    let ms10 = Duration::from_millis(10);
    let mut waits: Vec<(&str, Duration)> = Vec::new();
    for (what, asked) in [
        ("Sleep(10 ms)", ms10),
        ("Sleep(1 ms)", Duration::from_millis(1)),
        ("Poll with a 10 ms timeout", ms10),
        ("Receive with a 10 ms timeout", ms10),
        ("Connect with a 10 ms timeout", ms10),
    ] {
        still_on(cpu, &format!("before {}", what))?;
        let t0 = time::now();
        let result = match what.as_bytes()[0] {
            b'S' => {
                time::sleep(asked);
                Err(Error::TimedOut)
            }
            b'P' => ipc::poll(&[port.handle()], Some(asked)).map(|_| ()),
            b'R' => ipc::receive(Some(asked)).map(|_| ()),
            _ => ipc::connect(idle, Some(asked)).map(|_| ()),
        };
        let took = time::now() - t0;
        if result != Err(Error::TimedOut) {
            return Err(format!("{} on CPU {}: {:?}, not TimedOut", what, cpu, result));
        }
        if took < asked || took > asked + SLACK {
            return Err(format!("{} on CPU {} took {} us", what, cpu, took.as_micros()));
        }
        still_on(cpu, &format!("after {}", what))?;
        waits.push((what, took));
    }
    let longest = waits.iter().map(|w| w.1).max().unwrap_or_default();
    println!(
        "smptest timing: CPU {}: sleeps and timeouts all on time (longest {} us)",
        cpu,
        longest.as_micros()
    );
    Ok(())
}

fn timing(start: &Start) -> Outcome {
    let n = cpu_count(start)?;
    let idle = TaskId::from_raw(start.arg_value("idle").ok_or("no idle=TASK")?);
    let on_cpu = move |c: u32| -> Outcome {
        pin_self(c)?;
        timed_waits(c, idle)?;
        Ok(0)
    };
    // One CPU at a time, the others idle.
    for c in 0..n {
        let h = thread::spawn(move || on_cpu(c)).map_err(|e| format!("ThreadCreate: {}", e))?;
        h.join().ok_or("no result")??;
    }
    // All at once.
    on_threads("timing", u64::from(n), move |c| on_cpu(c as u32))?;
    // All at once, each CPU also running a spinner.
    static STOP: AtomicBool = AtomicBool::new(false);
    let spinners: Vec<_> = (0..n)
        .map(|c| {
            thread::spawn(move || {
                if let Err(e) = pin_self(c) {
                    fail_task("timing", 1, &e);
                }
                while !STOP.load(Ordering::Relaxed) {
                    spin(1000);
                }
            })
            .map_err(|e| format!("ThreadCreate: {}", e))
        })
        .collect::<Result<_, _>>()?;
    let r = on_threads("timing", u64::from(n), move |c| on_cpu(c as u32));
    STOP.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join();
    }
    r?;
    Ok(0)
}

fn main(start: &Start) -> u64 {
    let words: Vec<&str> = start.arg_words().collect();
    let role = words.first().copied().unwrap_or("");
    let word = |i: usize| words.get(i).copied().unwrap_or("");
    let num = |i: usize| programs::parse_u64(word(i)).unwrap_or(0);
    let outcome = match role {
        "stress-server" => stress_server(num(1), num(2)),
        "stress-client" => stress_client(start, TaskId::from_raw(num(1)), num(2), num(3), num(4)),
        "churn" => churn(start),
        "victim" => victim(start),
        "shootdown" => shootdown(start),
        "cpuinfo" => cpuinfo(start),
        "witness" => witness(start, word(1)),
        "kill-victim" => kill_victim(start, word(1)),
        "timing" => timing(start),
        other => Err(format!("unknown role {:?}", other)),
    };
    match outcome {
        Ok(code) => code,
        Err(why) => {
            println!("smptest {}: FAIL: {}", role, why);
            if role == "shootdown" {
                shoot::SETUP
            } else {
                1
            }
        }
    }
}
alux_rt::entry!(main);
