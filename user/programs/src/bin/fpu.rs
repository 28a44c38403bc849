//! Vector-state isolation: no thread ever sees another thread's x87/SSE
//! registers, and no path back to user mode changes a thread's own.
//!
//! Modes (the first argument word):
//! - `STEPS` (a number): two threads do long floating-point computations
//!   that stay in vector registers across preemption; each result must
//!   equal the same computation done alone beforehand, bit for bit.
//! - `calls ROUNDS`: three threads each load a pattern of their own into
//!   all 16 XMM registers and make a system call (`Yield`, which switches
//!   to another thread; `SelfInfo`; `Clock`; an unknown number; `Receive`
//!   that times out at once), or spin with them loaded while interrupts
//!   come; every register must come back unchanged (system call returns,
//!   `sysretq` and `iretq`, with and without a switch; interrupt returns).
//! - `serve`, then `client TASK ROUNDS`: two tasks answer each other with
//!   `SendReceive` (the client every other round with `Send` then
//!   `Receive`), each call made with the caller's pattern in the XMM
//!   registers: the kernel hands the message straight to the other task's
//!   thread, which must find its own registers, and every reply byte is
//!   checked.
//! - `fault`: loads a pattern into every XMM register and writes to
//!   address 0; the task dies of the page fault with its registers full,
//!   while the threads of the modes above check theirs.
#![no_std]
#![no_main]

extern crate alloc;

use alux_abi::ipc::{Events, MESSAGE_MAX};
use alux_abi::syscall::{pack_message, Received, Sys};
use alux_abi::TaskId;
use alux_rt::ipc::{self, Port};
use alux_rt::sys::{self, Vectors};
use alux_rt::{println, thread, Start};
use core::time::Duration;

const LONG: Option<Duration> = Some(Duration::from_secs(60));

#[inline(never)]
fn compute(seed: f64, steps: u64) -> f64 {
    let (mut a, mut b, mut c, mut d) = (seed, seed * 0.5, seed + 1.25, -seed);
    for i in 0..steps {
        let x = i as f64 * 1e-7;
        a = a * 0.999_999_7 + x;
        b = b * 1.000_000_1 - a * 1e-9;
        c = (c + b) * 0.5 + seed;
        d = d * 0.75 + c * 0.25 - x;
    }
    a + b * 2.0 + c * 3.0 + d * 4.0
}

/// The pattern of thread `tag` in round `round`: every word differs from
/// every other thread's and round's.
fn pattern(tag: u64, round: u64) -> Vectors {
    let mut v = [[0u64; 2]; 16];
    for (r, reg) in v.iter_mut().enumerate() {
        for (h, w) in reg.iter_mut().enumerate() {
            *w = tag << 56 | (round & 0xff_ffff) << 24 | (r as u64) << 8 | h as u64 | 0x80;
        }
    }
    v
}

fn computations(steps: u64) -> u64 {
    let expected = [compute(1.5, steps), compute(-7.25, steps)];
    let t1 = thread::spawn(move || compute(1.5, steps)).expect("spawn");
    let t2 = thread::spawn(move || compute(-7.25, steps)).expect("spawn");
    let got = [t1.join().unwrap_or(f64::NAN), t2.join().unwrap_or(f64::NAN)];
    let ok = got[0].to_bits() == expected[0].to_bits() && got[1].to_bits() == expected[1].to_bits();
    println!(
        "fpu: expected {:?}, got {:?}: {}",
        expected,
        got,
        if ok { "equal" } else { "DIFFERENT" }
    );
    if ok {
        0
    } else {
        1
    }
}

/// One thread of `calls`: `Err` names the first call after which a
/// register was wrong.
fn call_rounds(tag: u64, rounds: u64) -> Result<(), &'static str> {
    for i in 0..rounds {
        let want = pattern(tag, i);
        let mut v = want;
        let what = match i % 6 {
            0 | 5 => {
                let (rax, _) = sys::call_wide_keeping_vectors(Sys::Yield as u64, [0; 6], &mut v);
                if rax != 0 {
                    return Err("Yield failed");
                }
                "Yield"
            }
            1 => {
                sys::call_wide_keeping_vectors(Sys::SelfInfo as u64, [0; 6], &mut v);
                "SelfInfo"
            }
            2 => {
                sys::call_wide_keeping_vectors(Sys::Clock as u64, [0; 6], &mut v);
                "Clock"
            }
            3 => {
                let (rax, _) = sys::call_wide_keeping_vectors(0xfff, [0; 6], &mut v);
                if rax == 0 {
                    return Err("an unknown call succeeded");
                }
                "an unknown call"
            }
            _ => {
                // Nothing is pending: the receive times out at once.
                sys::call_wide_keeping_vectors(Sys::Receive as u64, [0; 6], &mut v);
                if i % 64 == 4 {
                    sys::spin_keeping_vectors(200_000, &mut v);
                    "a spin across interrupts"
                } else {
                    "Receive"
                }
            }
        };
        if v != want {
            println!("fpu: thread {} round {}: registers changed across {}", tag, i, what);
            return Err(what);
        }
    }
    Ok(())
}

fn calls(rounds: u64) -> u64 {
    let threads: alloc::vec::Vec<_> = (1..=3u64)
        .map(|tag| thread::spawn(move || call_rounds(tag, rounds).is_ok()).expect("spawn"))
        .collect();
    let ok = threads.into_iter().all(|t| t.join().unwrap_or(false));
    println!(
        "fpu: calls: 3 threads x {} calls: {}",
        rounds,
        if ok { "registers kept" } else { "CHANGED" }
    );
    (!ok) as u64
}

/// One `SendReceive` with `tag`'s pattern loaded: the reply, or why not.
fn exchange(handle: u64, tag: u64, round: u64, msg: &[u8; 32]) -> Result<Received, &'static str> {
    let want = pattern(tag, round);
    let mut v = want;
    let [w0, w1, w2, w3] = pack_message(msg);
    let args = [handle, MESSAGE_MAX as u64, w0, w1, w2, w3];
    let (rax, regs) = sys::call_wide_keeping_vectors(Sys::SendReceive as u64, args, &mut v);
    if v != want {
        println!("fpu: task {} round {}: registers changed across SendReceive", tag, round);
        return Err("registers changed");
    }
    if rax != 0 {
        return Err("SendReceive failed");
    }
    Received::decode(regs).ok_or("malformed reply")
}

/// `Send` then `Receive` (without a time limit), each with `tag`'s pattern
/// loaded: the `Send` fast path (the server waits in its receive) keeps
/// the caller's registers without a switch; the `Receive` blocks and comes
/// back after the server ran.
fn send_then_receive(
    handle: u64,
    tag: u64,
    round: u64,
    msg: &[u8; 32],
) -> Result<Received, &'static str> {
    let want = pattern(tag, round);
    let mut v = want;
    let [w0, w1, w2, w3] = pack_message(msg);
    let args = [handle, MESSAGE_MAX as u64, w0, w1, w2, w3];
    let (rax, _) = sys::call_wide_keeping_vectors(Sys::Send as u64, args, &mut v);
    if v != want {
        println!("fpu: task {} round {}: registers changed across Send", tag, round);
        return Err("registers changed");
    }
    if rax != 0 {
        return Err("Send failed");
    }
    let forever = [alux_abi::syscall::WAIT_FOREVER, 0, 0, 0, 0, 0];
    let (rax, regs) = sys::call_wide_keeping_vectors(Sys::Receive as u64, forever, &mut v);
    if v != want {
        println!("fpu: task {} round {}: registers changed across Receive", tag, round);
        return Err("registers changed");
    }
    if rax != 0 {
        return Err("Receive failed");
    }
    Received::decode(regs).ok_or("malformed reply")
}

/// `Send` then `PollOne` (without a time limit), each with `tag`'s
/// pattern loaded: the poll parks through its fast path (the registers
/// saved, another thread run) and the server's answer wakes it; then the
/// answer is read (`Read`). The answer's bytes, or why not.
fn send_then_poll(
    handle: u64,
    tag: u64,
    round: u64,
    msg: &[u8; 32],
) -> Result<[u8; 32], &'static str> {
    let want = pattern(tag, round);
    let mut v = want;
    let [w0, w1, w2, w3] = pack_message(msg);
    let args = [handle, MESSAGE_MAX as u64, w0, w1, w2, w3];
    let (rax, _) = sys::call_wide_keeping_vectors(Sys::Send as u64, args, &mut v);
    if v != want || rax != 0 {
        println!(
            "fpu: task {} round {}: Send: rax {}, registers kept: {}",
            tag,
            round,
            rax,
            v == want
        );
        return Err("Send");
    }
    let forever = [handle, alux_abi::syscall::WAIT_FOREVER, 0, 0, 0, 0];
    let (rax, regs) = sys::call_wide_keeping_vectors(Sys::PollOne as u64, forever, &mut v);
    if v != want {
        println!("fpu: task {} round {}: registers changed across PollOne", tag, round);
        return Err("registers changed");
    }
    if rax != 0 || regs[0] != handle {
        return Err("PollOne failed");
    }
    let mut data = [0u8; 32];
    sys::call(Sys::Read, [handle, data.as_mut_ptr() as u64, 0, 0, 0, 0])
        .map_err(|_| "Read failed")?;
    Ok(data)
}

fn message(round: u64, salt: u8) -> [u8; 32] {
    let mut m = [0u8; 32];
    for (j, b) in m.iter_mut().enumerate() {
        *b = (round as u8).wrapping_mul(13).wrapping_add(j as u8 * 7) ^ salt;
    }
    m[..8].copy_from_slice(&round.to_le_bytes());
    m
}

fn serve() -> u64 {
    let port = Port::new().expect("port");
    port.listen().expect("listen");
    let (conn, opened) = port.accept(LONG).expect("accept");
    let h = conn.handle().raw();
    // The first request (it may have come with the open: `Port::accept`).
    let first = conn.after_open(&opened).expect("after open");
    let mut r = match first.map_or_else(|| ipc::receive(LONG), Ok) {
        Ok(r) => r,
        Err(e) => {
            println!("fpu: serve: receive: {}", e);
            return 1;
        }
    };
    let mut round = 0u64;
    loop {
        if r.events.contains(Events::PEER_CLOSED) {
            println!("fpu: serve: answered {} requests", round);
            return 0;
        }
        let mut reply = r.message.data;
        for b in reply.iter_mut() {
            *b = b.wrapping_add(1);
        }
        r = match exchange(h, 0x5e, round, &reply) {
            Ok(r) => r,
            Err(why) => {
                println!("fpu: serve: round {}: {}", round, why);
                return 1;
            }
        };
        round += 1;
    }
}

fn client(server: TaskId, rounds: u64) -> u64 {
    let conn = match ipc::connect(server, LONG) {
        Ok(c) => c,
        Err(e) => {
            println!("fpu: client: connect: {}", e);
            return 1;
        }
    };
    let h = conn.handle().raw();
    for i in 0..rounds {
        let m = message(i, 0x3c);
        let r = match i % 3 {
            0 => exchange(h, 0xc1, i, &m).map(|r| (r.handle.raw(), r.message.data)),
            1 => send_then_receive(h, 0xc1, i, &m).map(|r| (r.handle.raw(), r.message.data)),
            _ => send_then_poll(h, 0xc1, i, &m).map(|data| (h, data)),
        };
        let (handle, data) = match r {
            Ok(r) => r,
            Err(why) => {
                println!("fpu: client: round {}: {}", i, why);
                return 1;
            }
        };
        let mut want = m;
        for b in want.iter_mut() {
            *b = b.wrapping_add(1);
        }
        if handle != h || data != want {
            println!("fpu: client: round {}: wrong reply {:?}", i, data);
            return 1;
        }
    }
    println!(
        "fpu: client: {} round trips (SendReceive; Send and Receive; Send, PollOne and Read), registers and bytes checked",
        rounds
    );
    0
}

fn main(start: &Start) -> u64 {
    let mut words = start.arg_words();
    let first = words.next().unwrap_or("3000000");
    let mut number = || words.next().and_then(programs::parse_u64);
    match first {
        "calls" => calls(number().unwrap_or(3000)),
        "serve" => serve(),
        "client" => match (number(), number()) {
            (Some(server), Some(rounds)) => client(TaskId::from_raw(server), rounds),
            _ => 2,
        },
        "fault" => sys::fault_with_vectors(&pattern(0xfa, 0)),
        steps => computations(programs::parse_u64(steps).unwrap_or(3_000_000)),
    }
}
alux_rt::entry!(main);
