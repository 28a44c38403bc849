//! Benchmarks, run by `cargo xtask bench` under `-icount shift=0`, where the
//! TSC counts guest instructions (user and kernel together). Prints one
//! `BENCH name=... median=... min=... max=... runs=...` line per result.
//!
//! Every timed call's result is checked (a round trip must come back as a
//! signal on the benchmark's own connection): a failed call is never timed
//! as a finished operation. The first failure prints one
//! `BENCH-ABORT name=... call=... why=...` line and the program exits with
//! status 1, which fails the `bench` scenario and `cargo xtask bench`.
//!
//! Roles: `bench server` (answers round trips), `bench client TASK`
//! (round trip and signal-to-waiter), `bench local` (null call, thread
//! switch).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use alux_abi::ipc::{Events, Handle};
use alux_abi::syscall::{Received, Sys};
use alux_abi::{Error, TaskId};
use alux_rt::ipc::{self, Port};
use alux_rt::sys::call;
use alux_rt::{println, thread, Start};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

const RUNS: usize = 31;
const PER_RUN: u64 = 200;
const WARM_UP: u64 = 10;
const LONG: Option<Duration> = Some(Duration::from_secs(120));

fn tsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter (allowed in ring 3).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A timed step that did not do what is timed: the call and why.
struct Failed {
    call: &'static str,
    why: Why,
}

enum Why {
    /// The call returned an error.
    Error(Error),
    /// The call returned, but not what the benchmark counts.
    Unexpected(&'static str),
}

/// The benchmark was aborted (its `BENCH-ABORT` line is printed).
struct Aborted;

/// Maps a call's error to a [`Failed`] step.
fn err(call: &'static str) -> impl Fn(Error) -> Failed {
    move |e| Failed { call, why: Why::Error(e) }
}

fn unexpected(call: &'static str, what: &'static str) -> Failed {
    Failed { call, why: Why::Unexpected(what) }
}

/// A reply on the benchmark connection `h`: a signal, not a close and not
/// an event of another end.
fn check_reply(call: &'static str, r: &Received, h: Handle) -> Result<(), Failed> {
    if r.handle != h {
        return Err(unexpected(call, "an event on another end"));
    }
    if r.events.contains(Events::PEER_CLOSED) || !r.events.contains(Events::SIGNAL) {
        return Err(unexpected(call, "no reply signal (peer closed?)"));
    }
    Ok(())
}

fn abort(name: &str, f: Failed) -> Aborted {
    match f.why {
        Why::Error(e) => {
            println!("BENCH-ABORT name={} call={} why=error:{:?}", name, f.call, e)
        }
        Why::Unexpected(what) => {
            println!("BENCH-ABORT name={} call={} why={}", name, f.call, what)
        }
    }
    Aborted
}

fn report(name: &str, mut samples: Vec<u64>) {
    samples.sort_unstable();
    let median = samples[samples.len() / 2];
    println!(
        "BENCH name={} median={} min={} max={} runs={}",
        name,
        median,
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
}

/// Runs `f` `PER_RUN` times per run and reports the cost of one call;
/// stops at the first failed step.
fn measure(name: &str, mut f: impl FnMut() -> Result<(), Failed>) -> Result<(), Aborted> {
    for _ in 0..WARM_UP {
        f().map_err(|e| abort(name, e))?;
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t0 = tsc();
        for _ in 0..PER_RUN {
            f().map_err(|e| abort(name, e))?;
        }
        samples.push((tsc() - t0) / PER_RUN);
    }
    report(name, samples);
    Ok(())
}

/// Answers every request on one connection until the client closes it.
/// Exits with 1 (failing the scenario) if a call fails; the client then
/// sees the connection close and aborts too.
fn server() -> u64 {
    let port = Port::new().expect("port");
    port.listen().expect("listen");
    let (conn, opened) = port.accept(LONG).expect("accept");
    let fail = |call: &str, e: Error| {
        println!("BENCH-ABORT name=server call={} why=error:{:?}", call, e);
        1
    };
    // A request already received by the SendReceive loop below (or with
    // the open: see `Port::accept`).
    let mut pending: Option<Received> = match conn.after_open(&opened) {
        Ok(r) => r,
        Err(e) => return fail("Read", e),
    };
    loop {
        let r = match pending.take().map_or_else(|| ipc::receive(None), Ok) {
            Ok(r) => r,
            Err(e) => return fail("Receive", e),
        };
        if r.events.contains(Events::PEER_CLOSED) {
            return 0;
        }
        let mut buf = r.message.data;
        match buf[0] {
            // Signal-to-waiter probe: report when this thread woke.
            b'w' => buf[1..9].copy_from_slice(&tsc().to_le_bytes()),
            // Buffer-call round trip: answer through the memory calls.
            b'm' => {
                let m = match conn.read() {
                    Ok(m) => m,
                    Err(e) => return fail("Read", e),
                };
                if let Err(e) = conn.write_signal(&m.data) {
                    return fail("WriteSignal", e);
                }
                continue;
            }
            // Answer and wait for the next request in one call, while the
            // requests are SendReceive ones.
            b's' => loop {
                match ipc::send_receive(&conn, &buf) {
                    Err(e) => return fail("SendReceive", e),
                    Ok(r)
                        if r.message.data[0] == b's' && !r.events.contains(Events::PEER_CLOSED) =>
                    {
                        buf = r.message.data;
                    }
                    Ok(r) => {
                        pending = Some(r);
                        break;
                    }
                }
            },
            _ => {}
        }
        if pending.is_some() {
            continue;
        }
        if let Err(e) = conn.send(&buf) {
            return fail("Send", e);
        }
    }
}

fn client(server: TaskId) -> u64 {
    match client_benchmarks(server) {
        Ok(()) => 0,
        Err(Aborted) => 1,
    }
}

fn client_benchmarks(server: TaskId) -> Result<(), Aborted> {
    let conn = ipc::connect(server, LONG)
        .map_err(|e| abort("ipc_round_trip", Failed { call: "Connect", why: Why::Error(e) }))?;
    let h = conn.handle();
    // Round trip: A writes and signals, B wakes, reads, writes and signals
    // back, A wakes and reads; here with Send and Receive, which carry the
    // 32 bytes in registers (write+signal; poll+read).
    let msg = [b'r'; 32];
    measure("ipc_round_trip", || {
        conn.send(&msg).map_err(err("Send"))?;
        let r = ipc::receive(None).map_err(err("Receive"))?;
        check_reply("Receive", &r, h)
    })?;
    // The same with one call per side: SendReceive.
    let msg = [b's'; 32];
    measure("ipc_round_trip_send_receive", || {
        let r = ipc::send_receive(&conn, &msg).map_err(err("SendReceive"))?;
        check_reply("SendReceive", &r, h)
    })?;
    // The same with the buffer calls on A's side: WriteSignal from memory,
    // PollAll, Read into memory (B answers with Receive, Read and
    // WriteSignal).
    let msg = [b'm'; 32];
    let mut out = [0u8; 32];
    measure("ipc_round_trip_buffer_calls", || {
        call(Sys::WriteSignal, [h.raw(), msg.as_ptr() as u64, 32, 0, 0, 0])
            .map_err(err("WriteSignal"))?;
        let [handle, events, ..] =
            call(Sys::PollAll, [u64::MAX, 0, 0, 0, 0, 0]).map_err(err("PollAll"))?;
        if handle != h.raw() || events & u64::from(Events::SIGNAL.bits()) == 0 {
            return Err(unexpected("PollAll", "not a signal on the benchmark connection"));
        }
        let [len, ..] =
            call(Sys::Read, [h.raw(), out.as_mut_ptr() as u64, 0, 0, 0, 0]).map_err(err("Read"))?;
        if len != 32 {
            return Err(unexpected("Read", "the reply is not 32 bytes"));
        }
        Ok(())
    })?;
    // One-way: from just before the signal to the waiting thread's return
    // from poll (the signaller then waits, as in a request).
    let name = "signal_to_waiting_thread";
    let mut probe = [0u8; 32];
    probe[0] = b'w';
    let mut samples = Vec::with_capacity(RUNS * 4);
    for _ in 0..RUNS * 4 {
        let t0 = tsc();
        conn.send(&probe).map_err(|e| abort(name, err("Send")(e)))?;
        let r = conn.wait(LONG).map_err(|e| abort(name, err("Poll")(e)))?;
        if r.events.contains(Events::PEER_CLOSED) || !r.events.contains(Events::SIGNAL) {
            return Err(abort(name, unexpected("Poll", "no reply signal (peer closed?)")));
        }
        let m = conn.read().map_err(|e| abort(name, err("Read")(e)))?;
        if m.data[0] != b'w' {
            return Err(abort(name, unexpected("Read", "not the probe's answer")));
        }
        let mut woke = [0u8; 8];
        woke.copy_from_slice(&m.data[1..9]);
        samples.push(u64::from_le_bytes(woke).wrapping_sub(t0));
    }
    report(name, samples);
    Ok(())
}

fn local() -> u64 {
    match local_benchmarks() {
        Ok(()) => 0,
        Err(Aborted) => 1,
    }
}

fn local_benchmarks() -> Result<(), Aborted> {
    measure("null_syscall", || call(Sys::SelfInfo, [0; 6]).map(|_| ()).map_err(err("SelfInfo")))?;
    measure("unknown_syscall", || match alux_rt::sys::call_raw(9999, [0; 6]) {
        Err(Error::UnknownSyscall) => Ok(()),
        Err(e) => Err(Failed { call: "9999", why: Why::Error(e) }),
        Ok(_) => Err(unexpected("9999", "an unknown number succeeded")),
    })?;
    yield_pair()
}

/// Two threads of one task yielding to each other. One timed iteration is
/// this thread's yield, a switch to the other thread, its yield, and a
/// switch back: two yields and two thread switches. The kernel's switch
/// count proves the switches happened.
fn yield_pair() -> Result<(), Aborted> {
    let name = "yield_switch_pair";
    static STOP: AtomicBool = AtomicBool::new(false);
    static OTHER_FAILED: AtomicU64 = AtomicU64::new(0);
    let other = thread::spawn(|| {
        while !STOP.load(Ordering::Relaxed) {
            if call(Sys::Yield, [0; 6]).is_err() {
                OTHER_FAILED.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .map_err(|e| abort(name, err("ThreadCreate")(e)))?;
    let switches = || alux_rt::sys::kernel_stats().map(|s| s.switches);
    let before = switches();
    let timed = measure(name, || call(Sys::Yield, [0; 6]).map(|_| ()).map_err(err("Yield")));
    let after = switches();
    STOP.store(true, Ordering::Relaxed);
    other.join();
    timed?;
    let (Ok(before), Ok(after)) = (before, after) else {
        return Err(abort(name, unexpected("KernelStats", "no switch count")));
    };
    if OTHER_FAILED.load(Ordering::Relaxed) != 0 {
        return Err(abort(name, unexpected("Yield", "the other thread's yield failed")));
    }
    // Timer ticks may add switches, never remove them.
    let iterations = WARM_UP + RUNS as u64 * PER_RUN;
    if after - before < 2 * iterations {
        return Err(abort(name, unexpected("Yield", "fewer than two switches per iteration")));
    }
    Ok(())
}

fn main(start: &Start) -> u64 {
    let mut w = start.arg_words();
    match w.next() {
        Some("server") => server(),
        Some("client") => {
            client(TaskId::from_raw(w.next().and_then(programs::parse_u64).unwrap_or(0)))
        }
        Some("local") => local(),
        _ => 2,
    }
}
alux_rt::entry!(main);
