//! Benchmarks, run by `cargo xtask bench` under `-icount shift=0`, where the
//! TSC counts guest instructions (user and kernel together). Prints one
//! `BENCH name=... median=... min=... max=... runs=...` line per result.
//!
//! Roles: `bench server` (answers round trips), `bench client TASK`
//! (round trip and signal-to-waiter), `bench local` (null call, thread
//! switch).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use alux_abi::ipc::Events;
use alux_abi::syscall::Sys;
use alux_abi::TaskId;
use alux_rt::ipc::{self, Port};
use alux_rt::sys::call;
use alux_rt::{println, thread, Start};
use core::time::Duration;

const RUNS: usize = 31;
const PER_RUN: u64 = 200;
const LONG: Option<Duration> = Some(Duration::from_secs(120));

fn tsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter (allowed in ring 3).
    unsafe { core::arch::x86_64::_rdtsc() }
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

/// Runs `f` `PER_RUN` times per run and reports the cost of one call.
fn measure(name: &str, mut f: impl FnMut()) {
    for _ in 0..10 {
        f();
    }
    let samples = (0..RUNS)
        .map(|_| {
            let t0 = tsc();
            for _ in 0..PER_RUN {
                f();
            }
            (tsc() - t0) / PER_RUN
        })
        .collect();
    report(name, samples);
}

fn server() -> u64 {
    let port = Port::new().expect("port");
    port.listen().expect("listen");
    let (conn, _) = port.accept(LONG).expect("accept");
    loop {
        let r = match ipc::receive(None) {
            Ok(r) => r,
            Err(_) => return 1,
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
                let m = conn.read().expect("read");
                conn.write_signal(&m.data).expect("reply");
                continue;
            }
            _ => {}
        }
        if buf[0] == b's' {
            // Answer and wait for the next request in one call.
            let mut next = ipc::send_receive(&conn, &buf);
            while let Ok(r) = next {
                if r.events.contains(Events::PEER_CLOSED) || r.message.data[0] != b's' {
                    break;
                }
                next = ipc::send_receive(&conn, &r.message.data);
            }
            match next {
                Ok(r) if !r.events.contains(Events::PEER_CLOSED) => {
                    // Fall back to the general loop with this request.
                    conn.send(&r.message.data).expect("reply");
                    continue;
                }
                _ => return 0,
            }
        }
        conn.send(&buf).expect("reply");
    }
}

fn client(server: TaskId) -> u64 {
    let conn = ipc::connect(server, LONG).expect("connect");
    let h = conn.handle();
    // Round trip: A writes and signals, B wakes, reads, writes and signals
    // back, A wakes and reads; here with Send and Receive, which carry the
    // 32 bytes in registers (write+signal; poll+read).
    let msg = [b'r'; 32];
    measure("ipc_round_trip", || {
        let _ = conn.send(&msg);
        let _ = ipc::receive(None);
    });
    // The same with one call per side: SendReceive.
    let msg = [b's'; 32];
    measure("ipc_round_trip_send_receive", || {
        let _ = ipc::send_receive(&conn, &msg);
    });
    // The same with the buffer calls on A's side: WriteSignal from memory,
    // PollAll, Read into memory (B answers with Receive, Read and
    // WriteSignal).
    let msg = [b'm'; 32];
    let mut out = [0u8; 32];
    measure("ipc_round_trip_buffer_calls", || {
        let _ = call(Sys::WriteSignal, [h.raw(), msg.as_ptr() as u64, 32, 0, 0, 0]);
        let _ = call(Sys::PollAll, [u64::MAX, 0, 0, 0, 0, 0]);
        let _ = call(Sys::Read, [h.raw(), out.as_mut_ptr() as u64, 0, 0, 0, 0]);
    });
    // One-way: from just before the signal to the waiting thread's return
    // from poll (the signaller then waits, as in a request).
    let mut probe = [0u8; 32];
    probe[0] = b'w';
    let samples = (0..RUNS * 4)
        .map(|_| {
            let t0 = tsc();
            conn.send(&probe).expect("send");
            conn.wait(LONG).expect("wait");
            let m = conn.read().expect("read");
            u64::from_le_bytes(m.data[1..9].try_into().expect("8 bytes")) - t0
        })
        .collect();
    report("signal_to_waiting_thread", samples);
    0
}

fn local() -> u64 {
    measure("null_syscall", || {
        let _ = call(Sys::SelfInfo, [0; 6]);
    });
    measure("unknown_syscall", || {
        let _ = alux_rt::sys::call_raw(9999, [0; 6]);
    });
    // Two threads of one task yielding to each other: each yield switches.
    let stop = alloc::sync::Arc::new(core::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let other = thread::spawn(move || {
        while !s2.load(core::sync::atomic::Ordering::Relaxed) {
            let _ = call(Sys::Yield, [0; 6]);
        }
    })
    .expect("thread");
    measure("yield_switch_pair", || {
        let _ = call(Sys::Yield, [0; 6]);
    });
    stop.store(true, core::sync::atomic::Ordering::Relaxed);
    other.join();
    0
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
