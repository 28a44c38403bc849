//! Basic IPC roles for the demos and QEMU scenarios: `ipc ROLE ARGS...`.
//!
//! Roles: `pong`, `ping TASK N`, `echo THREADS PORTS`, `client TASK NAME
//! ROUNDS`, `refused TASK`, `watch TASK REASON`, `mortal`, `fan N`,
//! `fanclient TASK CONNS ROUNDS`, `timeouts`, `closes`, `handles`, `flood
//! TASK`, `holder`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use alux_abi::ipc::{CloseReason, Events, Handle};
use alux_abi::{Error, TaskId};
use alux_rt::ipc::{self, Connection, Port};
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
    println!(
        "pong: client task {} (uid {}) connected",
        opened.peer_task, opened.peer_uid
    );
    let mut served = 0u64;
    loop {
        let r = match conn.wait(LONG) {
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
    println!(
        "ping: {} round trips, every byte checked, in {} ms",
        n,
        took.as_millis()
    );
    0
}

/// An echo service: `threads` threads, each serving its own `ports` ports.
/// Answers `[thread index, request...]`; refuses uid 13.
fn echo(threads: u64, ports: u64) -> u64 {
    ipc::set_connect_permission(13, false).expect("deny uid 13");
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
            println!(
                "refused: expected ConnectDenied, got {:?}",
                other.map(|c| c.handle())
            );
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

/// A service that accepts clients and then waits to be killed.
fn mortal(clients: u64) -> u64 {
    let mut conns = Vec::new();
    for _ in 0..clients {
        let p = Port::new().expect("port");
        p.listen().expect("listen");
        conns.push(p);
    }
    let mut opened = 0;
    while opened < clients {
        if let Ok(r) = ipc::poll_all(LONG) {
            if r.events.contains(Events::OPENED) {
                opened += 1;
            }
        }
    }
    println!(
        "mortal: {} clients connected; waiting to be killed",
        clients
    );
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
        "ping" => {
            let t = task_arg(w.next());
            ping(t, num(w.next(), 100))
        }
        "echo" => {
            let t = num(w.next(), 3);
            echo(t, num(w.next(), 2))
        }
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
        other => {
            println!("ipc: unknown role {}", other);
            2
        }
    }
}
alux_rt::entry!(main);
