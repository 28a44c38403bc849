//! Basic IPC roles for the demos and QEMU scenarios: `ipc ROLE ARGS...`.
//!
//! Roles: `pong`, `ping TASK N`, `pong-sr`, `ping-sr TASK N`, `echo THREADS
//! PORTS [ns=ID]`, `client TASK NAME ROUNDS`, `client-ns NAME ROUNDS ns=ID`,
//! `refused TASK`, `watch TASK REASON`, `mortal CLIENTS`, `fan N ROUNDS`,
//! `fanclient TASK CONNS ROUNDS`, `timeouts TASK`, `handles TASK`, `closer`,
//! `exiter`, `closes CLOSER EXITER`, `flood TASK`, `holder`, `names-test
//! ns=ID`, `fast-server`, `fast-refusals TASK` (the `SendReceive` fast
//! path's refusals, with a receiver parked).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use alux_abi::ipc::{CloseReason, Events, Handle};
use alux_abi::syscall::Sys;
use alux_abi::{Error, TaskId};
use alux_rt::ipc::{self, Connection, Port};
use alux_rt::names::{self, NameError, NameService};
use alux_rt::sys::call;
use alux_rt::{println, thread, time, Start};
use core::time::Duration;

const LONG: Option<Duration> = Some(Duration::from_secs(60));

fn task_arg(s: Option<&str>) -> TaskId {
    TaskId::from_raw(s.and_then(programs::parse_u64).unwrap_or(0))
}

/// The ping message for round `i`: every byte depends on `i` and position.
fn ping_message(i: u64) -> [u8; 32] {
    let mut m = [0u8; 32];
    for (j, b) in m.iter_mut().enumerate() {
        *b = (i.wrapping_mul(31).wrapping_add(j as u64 * 7) >> (j % 8)) as u8;
    }
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

/// What the ponger answers: every byte plus one.
fn pong_of(m: &[u8]) -> [u8; 32] {
    let mut r = [0u8; 32];
    for (o, b) in r.iter_mut().zip(m) {
        *o = b.wrapping_add(1);
    }
    r
}

fn pong() -> u64 {
    let port = Port::new().expect("port");
    port.listen().expect("listen");
    let (conn, opened) = port.accept(LONG).expect("accept");
    println!("pong: client task {} (uid {}) connected", opened.peer_task, opened.peer_uid);
    let mut served = 0u64;
    // The first ping may have come with the open (see `Port::accept`).
    let mut first = Some(opened);
    loop {
        let r = match first.take().map_or_else(|| conn.wait(LONG), Ok) {
            Ok(r) => r,
            Err(e) => {
                println!("pong: wait failed: {}", e);
                return 1;
            }
        };
        if r.events.contains(Events::SIGNAL) {
            let m = conn.read().expect("read");
            if conn.send(&pong_of(m.bytes())).is_err() {
                break;
            }
            served += 1;
        }
        if r.events.contains(Events::PEER_CLOSED) {
            break;
        }
    }
    println!("pong: answered {} pings; client closed", served);
    0
}

fn ping(server: TaskId, n: u64) -> u64 {
    let conn = match ipc::connect(server, LONG) {
        Ok(c) => c,
        Err(e) => {
            println!("ping: connect to {} failed: {}", server, e);
            return 1;
        }
    };
    let start = time::now();
    for i in 0..n {
        let m = ping_message(i);
        let reply = match conn.call(&m, LONG) {
            Ok(r) => r,
            Err(e) => {
                println!("ping: message {} failed: {}", i, e);
                return 1;
            }
        };
        if reply.bytes() != pong_of(&m) {
            println!("ping: reply {} wrong: {:?}", i, reply.bytes());
            return 1;
        }
    }
    let took = time::now() - start;
    println!("ping: {} round trips, every byte checked, in {} ms", n, took.as_millis());
    0
}

/// `pong` with one `SendReceive` per answer: reply and wait for the next
/// ping in a single call.
fn pong_send_receive() -> u64 {
    let port = Port::new().expect("port");
    port.listen().expect("listen");
    let (conn, opened) = port.accept(LONG).expect("accept");
    let mut served = 0u64;
    let first = conn.after_open(&opened).expect("after open");
    let mut r = match first.map_or_else(|| ipc::receive(LONG), Ok) {
        Ok(r) => r,
        Err(e) => {
            println!("pong-sr: first receive failed: {}", e);
            return 1;
        }
    };
    while !r.events.contains(Events::PEER_CLOSED) {
        if r.handle != conn.handle() || !r.events.contains(Events::SIGNAL) {
            println!("pong-sr: unexpected event {:?}", r.events);
            return 1;
        }
        r = match ipc::send_receive(&conn, &pong_of(r.message.bytes())) {
            Ok(r) => r,
            Err(e) => {
                println!("pong-sr: send_receive failed: {}", e);
                return 1;
            }
        };
        served += 1;
    }
    println!("pong-sr: answered {} pings with SendReceive; client closed", served);
    0
}

/// `ping` with one `SendReceive` per round trip.
fn ping_send_receive(server: TaskId, n: u64) -> u64 {
    let conn = match ipc::connect(server, LONG) {
        Ok(c) => c,
        Err(e) => {
            println!("ping-sr: connect failed: {}", e);
            return 1;
        }
    };
    for i in 0..n {
        let m = ping_message(i);
        match ipc::send_receive(&conn, &m) {
            Ok(r) if r.handle == conn.handle() && r.message.bytes() == pong_of(&m) => {}
            other => {
                println!("ping-sr: round trip {} wrong: {:?}", i, other.map(|r| r.events));
                return 1;
            }
        }
    }
    println!("ping-sr: {} SendReceive round trips, every byte checked", n);
    0
}

/// An echo service: `threads` threads, each serving its own `ports` ports.
/// Answers `[thread index, request...]`; refuses uid 13. Registers as
/// `echo` with the name service if it has one.
fn echo(threads: u64, ports: u64, ns: Option<TaskId>) -> u64 {
    ipc::set_connect_permission(13, false).expect("deny uid 13");
    // The registration lives as long as this (main) thread's connection.
    let _registration = ns.map(|ns| {
        let names = NameService::connect(ns).expect("name service");
        names.register("echo").expect("register echo");
        names
    });
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            thread::spawn(move || {
                let mut mine: BTreeMap<Handle, Port> = BTreeMap::new();
                let mut conns: BTreeMap<Handle, Connection> = BTreeMap::new();
                for _ in 0..ports {
                    let p = Port::new().expect("port");
                    p.listen().expect("listen");
                    mine.insert(p.handle(), p);
                }
                loop {
                    let r = ipc::poll_all(None).expect("poll");
                    if r.events.contains(Events::OPENED) {
                        if let Some(p) = mine.remove(&r.handle) {
                            println!("echo thread {}: client task {} connected", t, r.peer_task);
                            conns.insert(r.handle, p.into_connection());
                            // Offer a fresh port in its place.
                            let p = Port::new().expect("port");
                            if p.listen().is_ok() {
                                mine.insert(p.handle(), p);
                            }
                        }
                    }
                    if r.events.contains(Events::SIGNAL) {
                        if let Some(c) = conns.get(&r.handle) {
                            let m = c.read().expect("read");
                            let mut reply = [0u8; 32];
                            reply[0] = t as u8;
                            let n = (m.len as usize).min(31);
                            reply[1..1 + n].copy_from_slice(&m.bytes()[..n]);
                            let _ = c.send(&reply[..1 + n]);
                        }
                    }
                    if r.events.contains(Events::PEER_CLOSED) {
                        conns.remove(&r.handle);
                    }
                }
            })
            .expect("echo thread")
        })
        .collect();
    for h in handles {
        h.join();
    }
    0
}

fn client(server: TaskId, name: &str, rounds: u64) -> u64 {
    let conn = match ipc::connect(server, LONG) {
        Ok(c) => c,
        Err(e) => {
            println!("client {}: connect failed: {}", name, e);
            return 1;
        }
    };
    let mut served_by = None;
    for i in 0..rounds {
        let mut msg = [0u8; 16];
        let text = name.as_bytes();
        let n = text.len().min(12);
        msg[..n].copy_from_slice(&text[..n]);
        msg[12..16].copy_from_slice(&(i as u32).to_le_bytes());
        let reply = match conn.call(&msg, LONG) {
            Ok(r) => r,
            Err(e) => {
                println!("client {}: call failed: {}", name, e);
                return 1;
            }
        };
        if reply.bytes()[1..] != msg {
            println!("client {}: wrong echo", name);
            return 1;
        }
        let t = reply.bytes()[0];
        if *served_by.get_or_insert(t) != t {
            println!(
                "client {}: served by threads {:?} and {}: conversation moved",
                name, served_by, t
            );
            return 1;
        }
    }
    println!(
        "client {}: {} replies, all from echo thread {}",
        name,
        rounds,
        served_by.unwrap_or(0)
    );
    0
}

fn refused(server: TaskId) -> u64 {
    match ipc::connect(server, LONG) {
        Err(Error::ConnectDenied) => {
            println!("refused: connect denied by the permission bitmap, as expected");
            0
        }
        other => {
            println!("refused: expected ConnectDenied, got {:?}", other.map(|c| c.handle()));
            1
        }
    }
}

fn reason_arg(s: Option<&str>) -> Option<CloseReason> {
    match s? {
        "closed" => Some(CloseReason::Closed),
        "thread" => Some(CloseReason::ThreadExited),
        "exited" => Some(CloseReason::TaskExited),
        "killed" => Some(CloseReason::TaskKilled),
        _ => None,
    }
}

/// Connects and waits until the peer closes; checks the reason.
fn watch(server: TaskId, want: Option<CloseReason>) -> u64 {
    let conn = match ipc::connect(server, LONG) {
        Ok(c) => c,
        Err(e) => {
            println!("watch: connect failed: {}", e);
            return 1;
        }
    };
    loop {
        match conn.wait(LONG) {
            Ok(r) if r.events.contains(Events::PEER_CLOSED) => {
                println!("watch: service closed the connection: {:?}", r.close_reason);
                if conn.send(b"x") != Err(Error::PeerClosed) {
                    println!("watch: write after close did not fail with PeerClosed");
                    return 1;
                }
                return if r.close_reason == want { 0 } else { 1 };
            }
            Ok(_) => continue,
            Err(e) => {
                println!("watch: wait failed: {}", e);
                return 1;
            }
        }
    }
}

/// A service that accepts `clients` clients, tells each one "all
/// connected" (so whoever waits for that knows), then waits to be killed.
fn mortal(clients: u64) -> u64 {
    let mut ports: BTreeMap<Handle, Port> = BTreeMap::new();
    for _ in 0..clients {
        let p = Port::new().expect("port");
        p.listen().expect("listen");
        ports.insert(p.handle(), p);
    }
    let mut conns = Vec::new();
    while (conns.len() as u64) < clients {
        if let Ok(r) = ipc::poll_all(LONG) {
            if let Some(p) = ports.remove(&r.handle) {
                conns.push(p.into_connection());
            }
        }
    }
    for c in &conns {
        let _ = c.send(b"all connected");
    }
    println!("mortal: {} clients connected; waiting to be killed", clients);
    loop {
        time::sleep(Duration::from_secs(1));
    }
}

/// One thread serving `n` connections (ports pushed as the queue allows),
/// answering every request, until `n * rounds` requests were served.
fn fan(n: u64, rounds: u64) -> u64 {
    let mut ports: BTreeMap<Handle, Port> = BTreeMap::new();
    let mut conns: BTreeMap<Handle, (Connection, u64)> = BTreeMap::new();
    let mut created = 0;
    let mut served = 0;
    let refill = |ports: &mut BTreeMap<Handle, Port>, created: &mut u64| {
        while *created < n {
            let p = Port::new().expect("port");
            match p.listen() {
                Ok(()) => {
                    ports.insert(p.handle(), p);
                    *created += 1;
                }
                Err(Error::QueueFull) => break,
                Err(e) => panic!("listen: {}", e),
            }
        }
    };
    refill(&mut ports, &mut created);
    while served < n * rounds {
        let r = match ipc::poll_all(LONG) {
            Ok(r) => r,
            Err(e) => {
                println!("fan: poll failed after {} served: {}", served, e);
                return 1;
            }
        };
        if r.events.contains(Events::OPENED) {
            if let Some(p) = ports.remove(&r.handle) {
                conns.insert(r.handle, (p.into_connection(), 0));
            }
            refill(&mut ports, &mut created);
        }
        if r.events.contains(Events::SIGNAL) {
            if let Some((c, count)) = conns.get_mut(&r.handle) {
                let m = c.read().expect("read");
                c.send(&pong_of(m.bytes())).expect("reply");
                *count += 1;
                served += 1;
            }
        }
    }
    let min = conns.values().map(|c| c.1).min().unwrap_or(0);
    let max = conns.values().map(|c| c.1).max().unwrap_or(0);
    println!(
        "fan: one thread served {} connections, {} requests; each connection {}..{} times",
        conns.len(),
        served,
        min,
        max
    );
    if conns.len() as u64 == n && min == rounds && max == rounds {
        0
    } else {
        1
    }
}

/// Opens `conns` connections to `server` and sends `rounds` rounds of
/// requests on all of them at once, collecting every reply with poll_all.
fn fan_client(server: TaskId, conns: u64, rounds: u64) -> u64 {
    let mut all: BTreeMap<Handle, Connection> = BTreeMap::new();
    for _ in 0..conns {
        match ipc::connect(server, LONG) {
            Ok(c) => {
                all.insert(c.handle(), c);
            }
            Err(e) => {
                println!("fanclient: connect failed: {}", e);
                return 1;
            }
        }
    }
    for round in 0..rounds {
        for (h, c) in &all {
            c.send(&ping_message(h.raw() ^ round)).expect("send");
        }
        let mut pending = all.len();
        while pending > 0 {
            let r = match ipc::poll_all(LONG) {
                Ok(r) => r,
                Err(e) => {
                    println!("fanclient: round {}: {} replies missing: {}", round, pending, e);
                    return 1;
                }
            };
            if r.events.contains(Events::SIGNAL) {
                let c = &all[&r.handle];
                let m = c.read().expect("read");
                if m.bytes() != pong_of(&ping_message(r.handle.raw() ^ round)) {
                    println!("fanclient: wrong reply");
                    return 1;
                }
                pending -= 1;
            }
        }
    }
    println!("fanclient: {} connections x {} rounds answered", conns, rounds);
    0
}

fn check<T: core::fmt::Debug>(what: &str, got: Result<T, Error>, want: Error) -> bool {
    match got {
        Err(e) if e == want => {
            println!("  ok: {} -> {}", what, e);
            true
        }
        other => {
            println!("  WRONG: {} -> {:?}, expected {}", what, other, want);
            false
        }
    }
}

/// Poll and connect timeouts; `idle` is a task with an empty listen queue.
fn timeouts(idle: TaskId) -> u64 {
    let mut ok = true;
    let port = Port::new().expect("port");
    for (what, ms) in [("poll on a quiet port", 50u64), ("poll_all", 30)] {
        let t0 = time::now();
        let r = if what == "poll_all" {
            ipc::poll_all(Some(Duration::from_millis(ms)))
        } else {
            ipc::poll(&[port.handle()], Some(Duration::from_millis(ms)))
        };
        let took = time::now() - t0;
        ok &= check(what, r.map(|r| r.handle), Error::TimedOut);
        if took < Duration::from_millis(ms) {
            println!("  WRONG: {} returned after {:?}, before its {} ms timeout", what, took, ms);
            ok = false;
        } else {
            println!("  ok: {} waited {} ms for a {} ms timeout", what, took.as_millis(), ms);
        }
    }
    ok &= check(
        "poll without waiting",
        ipc::poll(&[port.handle()], Some(Duration::ZERO)).map(|r| r.handle),
        Error::TimedOut,
    );
    ok &= check(
        "connect without waiting, empty queue",
        ipc::connect(idle, Some(Duration::ZERO)).map(|c| c.handle()),
        Error::NoPortAvailable,
    );
    let t0 = time::now();
    ok &= check(
        "connect with 40 ms timeout, empty queue",
        ipc::connect(idle, Some(Duration::from_millis(40))).map(|c| c.handle()),
        Error::TimedOut,
    );
    let took = time::now() - t0;
    if took < Duration::from_millis(40) {
        println!("  WRONG: connect gave up after {:?}", took);
        ok = false;
    }
    if ok {
        0
    } else {
        1
    }
}

/// Every handle error, the empty queue and the other argument checks.
fn handles(idle: TaskId, me: TaskId) -> u64 {
    let mut ok = true;
    let port = Port::new().expect("port");
    let raw = port.handle();
    // A random number, and a handle whose slot exists with another generation.
    let random = Handle::from_raw(0x1357_9bdf_0246_8ace);
    ok &=
        check("random handle", call(Sys::Signal, [random.raw(), 0, 0, 0, 0, 0]), Error::BadHandle);
    ok &= check("null handle", call(Sys::Signal, [0, 0, 0, 0, 0, 0]), Error::BadHandle);
    let closed = Port::new().expect("port");
    let stale = closed.handle();
    drop(closed);
    ok &=
        check("stale handle", call(Sys::Signal, [stale.raw(), 0, 0, 0, 0, 0]), Error::StaleHandle);
    let other =
        thread::spawn(move || call(Sys::ListenPush, [raw.raw(), 0, 0, 0, 0, 0]).map(|_| ()))
            .expect("thread")
            .join()
            .expect("result");
    ok &= check("another thread's handle", other, Error::WrongThread);
    ok &= check(
        "read on a port nobody connected to",
        port.into_connection().read().map(|m| m.len),
        Error::NotConnected,
    );
    let p = Port::new().expect("port");
    p.listen().expect("listen");
    ok &= check("push twice", p.listen(), Error::AlreadyQueued);
    p.withdraw().expect("withdraw");
    ok &= check("withdraw an unqueued port", p.withdraw(), Error::NotQueued);
    ok &= check(
        "empty listen queue",
        ipc::connect(idle, Some(Duration::ZERO)).map(|c| c.handle()),
        Error::NoPortAvailable,
    );
    ok &= check(
        "connect to own task",
        ipc::connect(me, Some(Duration::ZERO)).map(|c| c.handle()),
        Error::SelfConnect,
    );
    ok &= check(
        "connect to no task",
        ipc::connect(TaskId::new(999, 7), Some(Duration::ZERO)).map(|c| c.handle()),
        Error::NoSuchTask,
    );
    let long = [0u8; 33];
    ok &= check(
        "33-byte write",
        call(Sys::Write, [p.handle().raw(), long.as_ptr() as u64, 33, 0, 0, 0]),
        Error::MessageTooLong,
    );
    ok &= check(
        "write from a kernel pointer",
        call(Sys::Write, [p.handle().raw(), 0xffff_8000_0000_0000, 8, 0, 0, 0]),
        Error::BadAddress,
    );
    ok &= check(
        "kernel end, unprivileged",
        ipc::open_kernel_end(1).map(|c| c.handle()),
        Error::NotPrivileged,
    );
    ok &= check("connection query, unprivileged", ipc::query_connection(1), Error::NotPrivileged);
    ok &= check(
        "permission for uid 65536",
        call(Sys::SetConnectPermission, [65536, 0, 0, 0, 0, 0]),
        Error::InvalidArgument,
    );
    let many = [p.handle(); 65];
    ok &= check(
        "poll set over the limit",
        call(Sys::Poll, [many.as_ptr() as u64, 65, 0, 0, 0, 0]),
        Error::InvalidArgument,
    );
    if ok {
        0
    } else {
        1
    }
}

/// A server whose three connections end three ways: closed, its thread
/// exits, its task is killed (by itself, once the client asks).
fn closer() -> u64 {
    let a = thread::spawn(|| {
        let p = Port::new().expect("port");
        p.listen().expect("listen");
        let (c, _) = p.accept(LONG).expect("accept");
        drop(c); // Closed
    })
    .expect("thread");
    a.join();
    let b = thread::spawn(|| {
        let p = Port::new().expect("port");
        p.listen().expect("listen");
        let (c, _) = p.accept(LONG).expect("accept");
        core::mem::forget(c);
        thread::exit(0); // ThreadExited
    })
    .expect("thread");
    b.join();
    let p = Port::new().expect("port");
    p.listen().expect("listen");
    let (c, opened) = p.accept(LONG).expect("accept");
    if !opened.events.contains(Events::SIGNAL) {
        let _ = c.wait(LONG); // the client's "now die"
    }
    let me = alux_rt::sys::self_info().expect("self").0;
    let _ = alux_rt::task::kill(me); // TaskKilled
    1
}

/// A server that accepts one client and exits normally.
fn exiter() -> u64 {
    let p = Port::new().expect("port");
    p.listen().expect("listen");
    let (c, opened) = p.accept(LONG).expect("accept");
    if !opened.events.contains(Events::SIGNAL) {
        let _ = c.wait(LONG);
    }
    // Keep the end open: the task's exit must close it (dropping it here
    // would close it first, with reason Closed).
    core::mem::forget(c);
    0 // TaskExited
}

fn expect_close(c: &Connection, want: CloseReason) -> bool {
    loop {
        match c.wait(LONG) {
            Ok(r) if r.events.contains(Events::PEER_CLOSED) => {
                let info = c.info().expect("info");
                let good = r.close_reason == Some(want) && info.reason() == Some(want);
                println!(
                    "  {}: peer closed: {:?} (info: {:?})",
                    if good { "ok" } else { "WRONG" },
                    r.close_reason,
                    info.reason()
                );
                let read_ok = c.read().is_ok();
                let write_fails = c.send(b"late") == Err(Error::PeerClosed);
                if !read_ok || !write_fails {
                    println!(
                        "  WRONG: after close: read ok {}, write fails {}",
                        read_ok, write_fails
                    );
                    return false;
                }
                return good;
            }
            Ok(_) => continue,
            Err(e) => {
                println!("  WRONG: waiting for a close: {}", e);
                return false;
            }
        }
    }
}

fn closes(closer: TaskId, exiter: TaskId) -> u64 {
    let mut ok = true;
    let c1 = ipc::connect(closer, LONG).expect("connect 1");
    ok &= expect_close(&c1, CloseReason::Closed);
    let c2 = ipc::connect(closer, LONG).expect("connect 2");
    ok &= expect_close(&c2, CloseReason::ThreadExited);
    let c3 = ipc::connect(closer, LONG).expect("connect 3");
    c3.send(b"now die").expect("send");
    ok &= expect_close(&c3, CloseReason::TaskKilled);
    let c4 = ipc::connect(exiter, LONG).expect("connect 4");
    c4.send(b"now exit").expect("send");
    ok &= expect_close(&c4, CloseReason::TaskExited);
    if ok {
        0
    } else {
        1
    }
}

/// Grabs every IPC resource it can: ports until the per-thread limit,
/// pushes until the queue is full, connections to `server` until refused.
fn flood(server: TaskId) -> u64 {
    let mut ports = Vec::new();
    let mut limit = None;
    for _ in 0..5000 {
        match Port::new() {
            Ok(p) => ports.push(p),
            Err(e) => {
                limit = Some(e);
                break;
            }
        }
    }
    let mut queued = 0;
    let mut full = None;
    for p in &ports {
        match p.listen() {
            Ok(()) => queued += 1,
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    drop(ports);
    let mut conns = Vec::new();
    let mut refused = None;
    for _ in 0..5000 {
        match ipc::connect(server, Some(Duration::ZERO)) {
            Ok(c) => conns.push(c),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    println!(
        "flood: ports stopped by {:?} after {}; queue stopped by {:?} after {}; connects stopped by {:?} after {}",
        limit, limit.map_or(0, |_| 1024), full, queued, refused, conns.len()
    );
    if limit == Some(Error::LimitReached) && full == Some(Error::QueueFull) && refused.is_some() {
        0
    } else {
        1
    }
}

/// Register, look up, collide, misspell, and release names; then send the
/// server raw malformed requests and check it refuses each and goes on.
fn names_test(ns: Option<TaskId>) -> u64 {
    let Some(ns) = ns else { return 2 };
    let me = alux_rt::sys::self_info().expect("self").0;
    let a = NameService::connect(ns).expect("connect");
    let b = NameService::connect(ns).expect("connect");
    let mut ok = true;
    let mut expect = |what: &str, good: bool| {
        println!("  {}: {}", if good { "ok" } else { "WRONG" }, what);
        ok &= good;
    };
    expect("register alpha", a.register("alpha") == Ok(()));
    expect("alpha is this task", b.lookup("alpha") == Ok(me));
    expect("alpha taken for another registration", b.register("alpha") == Err(NameError::Taken));
    expect("unknown name", b.lookup("nobody") == Err(NameError::NotFound));
    expect(
        "25-byte name refused",
        b.lookup("abcdefghijklmnopqrstuvwxy") == Err(NameError::BadName),
    );
    expect("24-byte name works", b.register("abcdefghijklmnopqrstuvwx") == Ok(()));
    expect("empty name refused", b.lookup("") == Err(NameError::BadName));
    drop(a);
    expect(
        "alpha released when its connection closed",
        b.lookup("alpha") == Err(NameError::NotFound),
    );
    expect("alpha can be registered again", b.register("alpha") == Ok(()));
    // Malformed requests, sent raw (the client library would refuse to
    // encode them): the server must answer each with BAD_REQUEST and go on.
    let raw = match ipc::connect(ns, LONG) {
        Ok(c) => c,
        Err(e) => {
            println!("  WRONG: raw connection to the name service: {}", e);
            return 1;
        }
    };
    let mut long = [0u8; 32];
    long[0] = names::OP_LOOKUP;
    long[1] = names::NAME_MAX as u8 + 1;
    long[2..].fill(b'a');
    let mut garbage = [0u8; 32];
    for (i, g) in garbage.iter_mut().enumerate() {
        *g = (i as u8).wrapping_mul(97).wrapping_add(0xc3);
    }
    let malformed: [(&str, &[u8]); 9] = [
        ("empty name (length 0)", &[names::OP_REGISTER, 0]),
        ("length field 25 with 30 bytes of name", &long),
        ("length field 255", &[names::OP_LOOKUP, 255, b'a', b'b']),
        ("unknown opcode 7", &[7, 5, b'a', b'l', b'p', b'h', b'a']),
        ("opcode 0", &[0, 5, b'a', b'l', b'p', b'h', b'a']),
        ("truncated: length 5, 2 name bytes", &[names::OP_LOOKUP, 5, b'a', b'l']),
        ("empty message", &[]),
        ("one byte", &[names::OP_LOOKUP]),
        ("32 garbage bytes", &garbage),
    ];
    for (what, req) in malformed {
        let got = match raw.call(req, LONG) {
            Ok(m) if m.len >= 1 => Some(m.data[0]),
            Ok(_) => None,
            Err(e) => {
                println!("  WRONG: {}: no answer: {}", what, e);
                ok = false;
                continue;
            }
        };
        let good = got == Some(names::STATUS_BAD_REQUEST);
        println!(
            "  {}: {} answered {:?} (bad request is {})",
            if good { "ok" } else { "WRONG" },
            what,
            got,
            names::STATUS_BAD_REQUEST
        );
        ok &= good;
    }
    // The server still serves, on the raw connection and on another.
    let mut good = [0u8; 32];
    good[0] = names::OP_LOOKUP;
    good[1] = 5;
    good[2..7].copy_from_slice(b"alpha");
    let after = raw.call(&good, LONG);
    let served = after
        .is_ok_and(|m| m.data[0] == names::STATUS_OK && m.data[8..16] == me.raw().to_le_bytes());
    println!(
        "  {}: well-formed lookup on the same raw connection after them",
        if served { "ok" } else { "WRONG" }
    );
    ok &= served;
    let c = NameService::connect(ns);
    let served = c.as_ref().is_ok_and(|c| c.lookup("alpha") == Ok(me));
    println!("  {}: a new client is served after them", if served { "ok" } else { "WRONG" });
    ok &= served;
    if ok {
        0
    } else {
        1
    }
}

/// The server of `fast-refusals`: two ports; answers every request on the
/// end it came on with the bytes plus one (`Send`), from a `Receive`
/// without a time limit, or with one after a request starting `T`; closes
/// the end of a request starting `X` instead of answering. Ends when both
/// connections are gone.
fn fast_server() -> u64 {
    let ports = [Port::new().expect("port"), Port::new().expect("port")];
    for p in &ports {
        p.listen().expect("listen");
    }
    let (mut closed, mut timed) = (0, false);
    while closed < 2 {
        let timeout = if timed { Some(Duration::from_secs(30)) } else { None };
        let r = match ipc::receive(timeout) {
            Ok(r) => r,
            Err(e) => {
                println!("fast-server: receive: {}", e);
                return 1;
            }
        };
        if r.events.contains(Events::PEER_CLOSED) {
            closed += 1;
            continue;
        }
        if !r.events.contains(Events::SIGNAL) {
            continue;
        }
        let m = r.message.data;
        timed = m[0] == b'T';
        if m[0] == b'X' {
            call(Sys::Close, [r.handle.raw(), 0, 0, 0, 0, 0]).expect("close");
            closed += 1;
            continue;
        }
        let [a, b, c, d] = alux_abi::syscall::pack_message(&pong_of(&m));
        if let Err(e) = call(Sys::Send, [r.handle.raw(), 32, a, b, c, d]) {
            println!("fast-server: send: {}", e);
            return 1;
        }
    }
    println!("fast-server: both connections closed");
    0
}

/// A raw `SendReceive` of `len` bytes of 0x55 on handle `h`: the error.
fn raw_send_receive(h: u64, len: u64) -> Option<Error> {
    let w = 0x5555_5555_5555_5555;
    let (rax, _) = alux_rt::sys::call_wide(Sys::SendReceive, [h, len, w, w, w, w]);
    Error::from_code(rax)
}

/// A raw `Send` of `len` bytes of 0x55 on handle `h`: the error.
fn raw_send(h: u64, len: u64) -> Option<Error> {
    let w = 0x5555_5555_5555_5555;
    call(Sys::Send, [h, len, w, w, w, w]).err()
}

/// A raw `Signal` on handle `h`: the error.
fn raw_signal(h: u64) -> Option<Error> {
    call(Sys::Signal, [h, 0, 0, 0, 0, 0]).err()
}

/// A raw `PollOne` of handle `h` with `timeout` ns: the error.
fn raw_poll_one(h: u64, timeout: u64) -> Option<Error> {
    call(Sys::PollOne, [h, timeout, 0, 0, 0, 0]).err()
}

/// A raw `Poll` of the `count` handles at `set` with `timeout` ns: the
/// error.
fn raw_poll(set: u64, count: u64, timeout: u64) -> Option<Error> {
    call(Sys::Poll, [set, count, timeout, 0, 0, 0]).err()
}

/// `SendReceive`, `Send` and `Signal` with the server's thread parked in a
/// receive, so that the fast path would apply but for one thing each time:
/// a handle never issued, a message too long, a port, another thread's
/// end, a stale end, a receiver with a deadline, an event already pending
/// for the caller, a closed peer; and `PollOne` and `Poll` of one end with
/// a bad, foreign or stale handle, an unreadable set, nothing ready and no
/// wait. Each must fail with the general path's error (and reach nobody)
/// or succeed as the general path would; a valid exchange after the
/// refusals proves the server saw none of them. A `Poll` of one end that
/// parks is woken by the server's `Send` (the poll fast paths).
fn fast_refusals(server: TaskId) -> u64 {
    match fast_refusal_steps(server) {
        Ok(()) => {
            println!("fast-refusals: every refusal answered as the general path does");
            0
        }
        Err(e) => {
            println!("fast-refusals: {}", e);
            1
        }
    }
}

fn fast_refusal_steps(server: TaskId) -> Result<(), String> {
    let c1 = ipc::connect(server, LONG).map_err(|e| format!("connect: {}", e))?;
    let c2 = ipc::connect(server, LONG).map_err(|e| format!("connect: {}", e))?;
    let exchange = |conn: &Connection, m: &[u8; 32]| -> Result<(), String> {
        let r = ipc::send_receive(conn, m).map_err(|e| format!("send_receive: {}", e))?;
        if r.handle != conn.handle() || r.message.data != pong_of(m) {
            return Err(format!("wrong answer {:?} to {:?}", r.message.data, m));
        }
        Ok(())
    };
    // Lets the server park in its receive again.
    let settle = || time::sleep(Duration::from_millis(2));
    exchange(&c1, &ping_message(0))?;
    let expect = |what: &str, got: Option<Error>, want: Error| -> Result<(), String> {
        if got == Some(want) {
            println!("fast-refusals: {}: {:?}", what, want);
            Ok(())
        } else {
            Err(format!("{}: expected {:?}, got {:?}", what, want, got))
        }
    };
    settle();
    let port = Port::new().map_err(|e| format!("port: {}", e))?;
    let h1 = c1.handle().raw();
    // Each refusal for `SendReceive`, then for `Send`.
    for (call, f) in [("SendReceive", raw_send_receive as fn(u64, u64) -> _), ("Send", raw_send)] {
        println!("fast-refusals: {}", call);
        expect("never issued", f(0x1234_5678, 4), Error::BadHandle)?;
        expect("33 bytes", f(h1, 33), Error::MessageTooLong)?;
        expect("a port", f(port.handle().raw(), 4), Error::NotConnected)?;
        let foreign = thread::spawn(move || f(h1, 4)).map_err(|e| format!("{}", e))?;
        expect("another thread's end", foreign.join().unwrap_or(None), Error::WrongThread)?;
    }
    println!("fast-refusals: Signal");
    expect("never issued", raw_signal(0x1234_5678), Error::BadHandle)?;
    expect("a port", raw_signal(port.handle().raw()), Error::NotConnected)?;
    let foreign = thread::spawn(move || raw_signal(h1)).map_err(|e| format!("{}", e))?;
    expect("another thread's end", foreign.join().unwrap_or(None), Error::WrongThread)?;
    println!("fast-refusals: PollOne and Poll of one end");
    let forever = u64::MAX;
    expect("never issued", raw_poll_one(0x1234_5678, forever), Error::BadHandle)?;
    let foreign = thread::spawn(move || raw_poll_one(h1, forever)).map_err(|e| format!("{}", e))?;
    expect("another thread's end", foreign.join().unwrap_or(None), Error::WrongThread)?;
    expect("nothing ready, no wait", raw_poll_one(h1, 0), Error::TimedOut)?;
    let bad = [0x1234_5678u64];
    expect("Poll: never issued", raw_poll(bad.as_ptr() as u64, 1, forever), Error::BadHandle)?;
    let mine = [h1, 0];
    let at = mine.as_ptr() as u64;
    expect("Poll: nothing ready, no wait", raw_poll(at, 1, 0), Error::TimedOut)?;
    expect("Poll: misaligned set", raw_poll(at + 4, 1, forever), Error::BadAddress)?;
    expect("Poll: unmapped set", raw_poll(0x10, 1, forever), Error::BadAddress)?;
    let kernel = 0xffff_8000_0000_0000;
    expect("Poll: set in the kernel half", raw_poll(kernel, 1, forever), Error::BadAddress)?;
    let h2 = c2.handle().raw();
    drop(c2);
    settle();
    expect("a closed end", raw_send_receive(h2, 4), Error::StaleHandle)?;
    expect("a closed end (Send)", raw_send(h2, 4), Error::StaleHandle)?;
    expect("a closed end (Signal)", raw_signal(h2), Error::StaleHandle)?;
    expect("a closed end (PollOne)", raw_poll_one(h2, forever), Error::StaleHandle)?;
    // The server saw none of it: the next answer is to the next request.
    exchange(&c1, &ping_message(1))?;
    // A `Poll` of one end parks (the set read from memory), and the
    // server's `Send` wakes it with the poll's registers.
    settle();
    let p = ping_message(8);
    c1.send(&p).map_err(|e| format!("send: {}", e))?;
    let r = ipc::poll(&[c1.handle()], LONG).map_err(|e| format!("poll: {}", e))?;
    let m = c1.read().map_err(|e| format!("read: {}", e))?;
    if r.handle != c1.handle() || !r.events.contains(Events::SIGNAL) || m.data != pong_of(&p) {
        return Err(format!("Poll of one end: {:?}, {:?}", r.events, m.data));
    }
    println!("fast-refusals: a Poll of one end woken by the answer");
    // A receiver parked with a deadline: the general path hands off.
    let mut t = ping_message(2);
    t[0] = b'T';
    exchange(&c1, &t)?;
    settle();
    exchange(&c1, &ping_message(3))?;
    // The same with `Send`, which wakes the receiver and drops its timer.
    exchange(&c1, &t)?;
    settle();
    let m = ping_message(7);
    c1.send(&m).map_err(|e| format!("send: {}", e))?;
    let r = ipc::receive(LONG).map_err(|e| format!("receive: {}", e))?;
    if r.message.data != pong_of(&m) {
        return Err(format!("Send to a receiver with a deadline: got {:?}", r.message.data));
    }
    // An event pending for the caller: it comes back at once, and the
    // request still reaches the server, whose answer comes next.
    let u = ping_message(4);
    c1.send(&u).map_err(|e| format!("send: {}", e))?;
    settle();
    let v = ping_message(5);
    let r = ipc::send_receive(&c1, &v).map_err(|e| format!("send_receive: {}", e))?;
    if r.message.data != pong_of(&u) {
        return Err(format!("pending event: got {:?}", r.message.data));
    }
    let r = ipc::receive(LONG).map_err(|e| format!("receive: {}", e))?;
    if r.message.data != pong_of(&v) {
        return Err(format!("request after a pending event: got {:?}", r.message.data));
    }
    println!("fast-refusals: pending event taken first, request answered after");
    // The server closes its end instead of answering.
    let mut x = ping_message(6);
    x[0] = b'X';
    let r = ipc::send_receive(&c1, &x).map_err(|e| format!("send_receive: {}", e))?;
    if !r.events.contains(Events::PEER_CLOSED) {
        return Err(format!("expected the peer's close, got {:?}", r.events));
    }
    expect("a closed peer", raw_send_receive(h1, 4), Error::PeerClosed)?;
    expect("a closed peer (Send)", raw_send(h1, 4), Error::PeerClosed)?;
    expect("a closed peer (Signal)", raw_signal(h1), Error::PeerClosed)?;
    Ok(())
}

/// Holds no ports; lives until killed (a target with an empty queue).
fn holder() -> u64 {
    loop {
        time::sleep(Duration::from_secs(1));
    }
}

fn main(start: &Start) -> u64 {
    let mut w = start.arg_words();
    let role = w.next().unwrap_or("");
    let num = |s: Option<&str>, d: u64| s.and_then(programs::parse_u64).unwrap_or(d);
    match role {
        "pong" => pong(),
        "pong-sr" => pong_send_receive(),
        "fast-server" => fast_server(),
        "fast-refusals" => fast_refusals(task_arg(w.next())),
        "ping-sr" => {
            let t = task_arg(w.next());
            ping_send_receive(t, num(w.next(), 100))
        }
        "ping" => {
            let t = task_arg(w.next());
            ping(t, num(w.next(), 100))
        }
        "echo" => {
            let t = num(w.next(), 3);
            echo(t, num(w.next(), 2), start.name_service())
        }
        "client-ns" => {
            let Some(ns) = start.name_service() else { return 2 };
            let name = w.next().unwrap_or("anon");
            let rounds = num(w.next(), 3);
            // The echo service starts alongside its clients: it may not
            // have registered yet. Ask again for up to five seconds.
            let mut tries = 0;
            let echo = loop {
                match NameService::connect(ns).and_then(|n| n.lookup("echo")) {
                    Ok(t) => break t,
                    Err(NameError::NotFound) if tries < 5000 => {
                        tries += 1;
                        alux_rt::time::sleep(core::time::Duration::from_millis(1));
                    }
                    Err(e) => {
                        println!("client {}: cannot find echo: {:?}", name, e);
                        return 1;
                    }
                }
            };
            println!("client {}: name service says echo is task {}", name, echo);
            client(echo, name, rounds)
        }
        "names-test" => names_test(start.name_service()),
        "client" => {
            let t = task_arg(w.next());
            let name = w.next().unwrap_or("anon");
            client(t, name, num(w.next(), 3))
        }
        "refused" => refused(task_arg(w.next())),
        "watch" => {
            let t = task_arg(w.next());
            watch(t, reason_arg(w.next()))
        }
        "mortal" => mortal(num(w.next(), 1)),
        "fan" => {
            let n = num(w.next(), 200);
            fan(n, num(w.next(), 3))
        }
        "fanclient" => {
            let t = task_arg(w.next());
            let c = num(w.next(), 50);
            fan_client(t, c, num(w.next(), 3))
        }
        "timeouts" => timeouts(task_arg(w.next())),
        "handles" => handles(task_arg(w.next()), start.task),
        "closer" => closer(),
        "exiter" => exiter(),
        "closes" => {
            let a = task_arg(w.next());
            closes(a, task_arg(w.next()))
        }
        "flood" => flood(task_arg(w.next())),
        "holder" => holder(),
        other => {
            println!("ipc: unknown role {}", other);
            2
        }
    }
}
alux_rt::entry!(main);
