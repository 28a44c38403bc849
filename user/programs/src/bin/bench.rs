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
//! switch); and for the SMP figures (`scenario=bench-smp`, booted with 1, 2
//! and 4 CPUs): `bench smp-server N` (N threads answering round trips, each
//! pinned where its client asks), `bench smp-client SERVER CONTROL N` (N
//! workers, each with a connection to a server thread and one to the
//! controller) and `bench smp-control CPUS` (places the workers and their
//! server threads on CPUs, starts runs and times them).
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

// ---------------------------------------------------------------- SMP

/// Round trips of each pair per timed run of the SMP pair figures: large
/// beside the two control messages per pair and run that start and end it.
const SMP_ROUNDS: u64 = 1000;
/// Pairs the SMP figures use at most.
const SMP_PAIRS: usize = 4;

/// Pins the calling thread to `cpu` (255: any CPU) and returns where it
/// then runs.
fn smp_pin(cpu: u8) -> Result<u8, Failed> {
    let target = (cpu != 255).then_some(u32::from(cpu));
    alux_rt::sys::thread_set_cpu(thread::current(), target).map_err(err("ThreadSetCpu"))?;
    let (now, _) = alux_rt::sys::cpu_info().map_err(err("CpuInfo"))?;
    if target.is_some_and(|t| t != now) {
        return Err(unexpected("CpuInfo", "not on the CPU just pinned to"));
    }
    Ok(now as u8)
}

/// One server thread: answers every request on its connection with
/// `SendReceive`; `p CPU` pins it first (answered with the CPU it is on).
fn smp_serve() -> Result<(), (&'static str, Failed)> {
    let name = "smp_server";
    let port = Port::new().map_err(|e| (name, err("PortCreate")(e)))?;
    port.listen().map_err(|e| (name, err("ListenPush")(e)))?;
    let (conn, opened) = port.accept(LONG).map_err(|(_, e)| (name, err("accept")(e)))?;
    // The first request may have come with the open: one poll reports all
    // of an end's events, so no further event would say so.
    let mut r = if opened.events.contains(Events::SIGNAL) {
        let m = conn.read().map_err(|e| (name, err("Read")(e)))?;
        Received {
            handle: conn.handle(),
            events: Events::SIGNAL,
            close_reason: None,
            peer_uid: opened.peer_uid,
            message: m,
        }
    } else {
        ipc::receive(None).map_err(|e| (name, err("Receive")(e)))?
    };
    loop {
        if r.events.contains(Events::PEER_CLOSED) {
            return Ok(());
        }
        if r.handle != conn.handle() || !r.events.contains(Events::SIGNAL) {
            return Err((name, unexpected("Receive", "not a request on its connection")));
        }
        let mut answer = r.message.data;
        if answer[0] == b'p' {
            answer[1] = smp_pin(answer[1]).map_err(|f| (name, f))?;
        }
        r = ipc::send_receive(&conn, &answer).map_err(|e| (name, err("SendReceive")(e)))?;
    }
}

fn smp_server(threads: u64) -> u64 {
    let handles: Vec<_> = (0..threads).map(|_| thread::spawn(smp_serve)).collect();
    let mut code = 0;
    for h in handles {
        match h.map(|h| h.join()) {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err((name, f)))) => {
                abort(name, f);
                code = 1;
            }
            _ => {
                println!("BENCH-ABORT name=smp_server call=ThreadCreate why=no server thread");
                code = 1;
            }
        }
    }
    code
}

/// A worker: a connection to a server thread (the pair) and one to the
/// controller, whose orders it carries out and answers: `c MINE THEIRS`
/// (pin itself and its server thread, warm up), `g ROUNDS` (that many
/// round trips), `t WHICH` (time one pair by itself and report
/// `ipc_rt_same_cpu_cpusN` or `ipc_rt_cross_cpu_cpusN`). `x` answers an
/// order that failed (its `BENCH-ABORT` line printed).
fn smp_worker(server: TaskId, control: TaskId) {
    let (Ok(data), Ok(ctl)) = (ipc::connect(server, LONG), ipc::connect(control, LONG)) else {
        println!("BENCH-ABORT name=smp_worker call=Connect why=no connection");
        return;
    };
    let count = alux_rt::sys::cpu_info().map_or(0, |(_, c)| c);
    let h = data.handle();
    let msg = [b's'; 32];
    let round_trip = || {
        let r = ipc::send_receive(&data, &msg).map_err(err("SendReceive"))?;
        check_reply("SendReceive", &r, h)
    };
    loop {
        let Ok(order) = ipc::receive(None) else {
            println!("BENCH-ABORT name=smp_worker call=Receive why=failed");
            return;
        };
        if order.handle != ctl.handle() || order.events.contains(Events::PEER_CLOSED) {
            // The controller is done (or something else woke us): end.
            return;
        }
        let o = order.message.data;
        let done = match o[0] {
            b'c' => (|| {
                let mine = smp_pin(o[1])?;
                let mut pin = [0u8; 32];
                pin[0] = b'p';
                pin[1] = o[2];
                let r = ipc::send_receive(&data, &pin).map_err(err("SendReceive"))?;
                check_reply("SendReceive", &r, h)?;
                if o[2] != 255 && r.message.data[1] != o[2] {
                    return Err(unexpected("SendReceive", "the server thread is not where asked"));
                }
                for _ in 0..WARM_UP {
                    round_trip()?;
                }
                Ok([b'c', mine, r.message.data[1]])
            })()
            .map_err(|f| abort("smp_configure", f)),
            b'g' => {
                let rounds = u64::from_le_bytes(o[8..16].try_into().expect("8 bytes"));
                (0..rounds)
                    .try_for_each(|_| round_trip())
                    .map(|()| [b'd', 0, 0])
                    .map_err(|f| abort("smp_pairs", f))
            }
            b't' => {
                let name = alloc::format!(
                    "ipc_rt_{}_cpu_cpus{}",
                    if o[1] == 0 { "same" } else { "cross" },
                    count
                );
                measure(&name, round_trip).map(|()| [b'd', 0, 0])
            }
            _ => Err(abort("smp_worker", unexpected("Receive", "an unknown order"))),
        };
        let answer = done.unwrap_or([b'x', 0, 0]);
        if ctl.send(&answer).is_err() {
            return;
        }
    }
}

fn smp_client(server: TaskId, control: TaskId, workers: u64) -> u64 {
    let handles: Vec<_> =
        (0..workers).map(|_| thread::spawn(move || smp_worker(server, control))).collect();
    for h in handles {
        match h {
            Ok(h) => {
                h.join();
            }
            Err(_) => return 1,
        }
    }
    0
}

/// Sends `order` to the worker on `conn` and waits for its answer (the
/// only one that can come: the other workers wait for orders).
fn order(conn: &ipc::Connection, order: &[u8]) -> Result<[u8; 32], Aborted> {
    conn.send(order).map_err(|e| abort("smp_control", err("Send")(e)))?;
    let r = ipc::receive(None).map_err(|e| abort("smp_control", err("Receive")(e)))?;
    if r.handle != conn.handle() || r.events.contains(Events::PEER_CLOSED) {
        return Err(abort("smp_control", unexpected("Receive", "no answer from the worker")));
    }
    if r.message.data[0] == b'x' {
        // The worker printed why.
        return Err(Aborted);
    }
    Ok(r.message.data)
}

/// Pins worker `conn` to `mine` and its server thread to `theirs`.
fn place(conn: &ipc::Connection, mine: u32, theirs: u32) -> Result<(), Aborted> {
    let a = order(conn, &[b'c', mine as u8, theirs as u8])?;
    if a[0] != b'c' || u32::from(a[1]) != mine || u32::from(a[2]) != theirs {
        return Err(abort("smp_control", unexpected("place", "a thread is not where asked")));
    }
    Ok(())
}

/// One timed run of the first `pairs` workers: each gets `g ROUNDS`, and
/// the run ends with the last `d`. Returns clock ticks per round trip.
fn pairs_run(conns: &[ipc::Connection], rounds: u64) -> Result<u64, Aborted> {
    let mut go = [0u8; 16];
    go[0] = b'g';
    go[8..16].copy_from_slice(&rounds.to_le_bytes());
    let t0 = tsc();
    for c in conns {
        c.send(&go).map_err(|e| abort("smp_control", err("Send")(e)))?;
    }
    for _ in conns {
        let r = ipc::receive(None).map_err(|e| abort("smp_control", err("Receive")(e)))?;
        if r.events.contains(Events::PEER_CLOSED) || r.message.data[0] != b'd' {
            return Err(abort("smp_control", unexpected("Receive", "a worker failed its run")));
        }
    }
    Ok((tsc() - t0) / (rounds * conns.len() as u64))
}

fn smp_control(cpus: u64) -> u64 {
    match smp_benchmarks(cpus) {
        Ok(()) => 0,
        Err(Aborted) => 1,
    }
}

/// The SMP figures of a machine of `cpus` CPUs: one pair on one CPU, one
/// pair across two CPUs (with 2 or more), and 1, 2 and 4 pairs each pinned
/// to CPU `pair % cpus`, all at once.
fn smp_benchmarks(cpus: u64) -> Result<(), Aborted> {
    let name = "smp_control";
    let (_, count) = alux_rt::sys::cpu_info().map_err(|e| abort(name, err("CpuInfo")(e)))?;
    if u64::from(count) != cpus {
        println!(
            "BENCH-ABORT name={} call=CpuInfo why=counts {} CPUs running threads, the machine has {}",
            name, count, cpus
        );
        return Err(Aborted);
    }
    smp_pin(0).map_err(|f| abort(name, f))?;
    let mut conns = Vec::new();
    for _ in 0..SMP_PAIRS {
        let port = Port::new().map_err(|e| abort(name, err("PortCreate")(e)))?;
        port.listen().map_err(|e| abort(name, err("ListenPush")(e)))?;
        let (c, _) = port.accept(LONG).map_err(|(_, e)| abort(name, err("accept")(e)))?;
        conns.push(c);
    }
    place(&conns[0], 0, 0)?;
    order(&conns[0], &[b't', 0])?;
    if count >= 2 {
        place(&conns[0], 0, 1)?;
        order(&conns[0], &[b't', 1])?;
    }
    for pairs in [1usize, 2, 4] {
        for (i, c) in conns[..pairs].iter().enumerate() {
            let cpu = i as u32 % count;
            place(c, cpu, cpu)?;
        }
        pairs_run(&conns[..pairs], SMP_ROUNDS)?;
        let samples =
            (0..RUNS).map(|_| pairs_run(&conns[..pairs], SMP_ROUNDS)).collect::<Result<_, _>>()?;
        let plural = if pairs > 1 { "s" } else { "" };
        report(&alloc::format!("ipc_rt_{}pair{}_cpus{}", pairs, plural, count), samples);
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
        Some("smp-server") => smp_server(w.next().and_then(programs::parse_u64).unwrap_or(0)),
        Some("smp-client") => {
            let mut num = || TaskId::from_raw(w.next().and_then(programs::parse_u64).unwrap_or(0));
            let (server, control, workers) = (num(), num(), num());
            smp_client(server, control, workers.raw())
        }
        Some("smp-control") => smp_control(w.next().and_then(programs::parse_u64).unwrap_or(0)),
        _ => 2,
    }
}
alux_rt::entry!(main);
