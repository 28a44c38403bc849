//! Shared memory through memd, between two tasks connected by basic IPC
//! (`docs/shared-memory.md`). Run as a pair, `server MODE …` and
//! `client MODE …`, with `ns=ID`; the server registers `shm-MODE`:
//!
//! - `stream MIB`: a channel whose rings hold 64 KiB each; MIB MiB go each
//!   way at once, from one thread per side, every word checked against
//!   its generator and a checksum of each direction compared at the end.
//! - `pressure MIB`: the same, and every 4 MiB the client fills 24 MiB of
//!   its own memory while the server waits, so memd (booted with a small
//!   pool) evicts the idle ring: the client sees from memd's counters that
//!   shared pages left memory, and the stream goes on through swap-ins.
//! - `kill`: the client writes forever; the server reads, registers
//!   `shm-kill-reading` once it has 1 MiB, and must see the end of the
//!   stream (peer closed) with every word it got right when the client
//!   is killed.
//! - `garbage`: the client writes impossible counters into the ring the
//!   server reads; the server must get `Corrupt` and stay well.
//! - `bench` (in `cargo xtask bench`): the client measures a plain copy
//!   of 4 MiB with the ring's copy routine, then streams 4 MiB eight times
//!   with 4 KiB and with 64 KiB writes (guest instructions per KiB, both
//!   tasks' instructions counted, until the server says it has it all);
//!   the server measures 32-byte messages sent while it sleeps in its
//!   receive (the doorbell path).
//! - `negotiate`: every answer of the negotiation: a lone request times
//!   out; mismatched lengths; both ends asking; asking again; and a third
//!   task (`third negotiate`) naming the pair's connection, an unknown one,
//!   and its own with no answer.
#![no_std]
#![no_main]

extern crate alloc;

use alux_abi::ipc::Events;
use alux_memd_proto::Status;
use alux_rt::ipc::{self, Connection, Port};
use alux_rt::names::{NameError, NameService};
use alux_rt::shm::{Channel, ChannelError, ShareError, SharedRegion};
use alux_rt::{println, Start, TaskId};
use core::time::Duration;

/// Two 64 KiB rings, each with its 128-byte header, in whole pages.
const REGION: usize = 2 * (64 * 1024 + 128);
const WAIT: Duration = Duration::from_secs(20);
const CHUNK: usize = 4096;

type R = Result<(), &'static str>;

fn word(seed: u64, i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed
}

fn fill(buf: &mut [u8; CHUNK], seed: u64, first_word: u64) {
    for (k, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&word(seed, first_word + k as u64).to_le_bytes());
    }
}

/// One direction's end-to-end checksum, folded word by word.
fn fold(sum: u64, w: u64) -> u64 {
    (sum ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(29)
}

fn lookup(ns: &NameService, name: &str) -> Option<TaskId> {
    for _ in 0..20_000 {
        match ns.lookup(name) {
            Ok(t) => return Some(t),
            Err(NameError::NotFound) => alux_rt::time::sleep(Duration::from_millis(1)),
            Err(_) => return None,
        }
    }
    None
}

/// The server's end: one port pushed, `name` registered, one client taken.
fn serve(ns: &NameService, name: &str) -> Result<Connection, &'static str> {
    let port = Port::new().map_err(|_| "port")?;
    port.listen().map_err(|_| "listen")?;
    ns.register(name).map_err(|_| "register")?;
    port.accept(Some(WAIT)).map(|(c, _)| c).map_err(|_| "accept")
}

fn connect(ns: &NameService, name: &str) -> Result<Connection, &'static str> {
    let t = lookup(ns, name).ok_or("no server")?;
    ipc::connect(t, Some(WAIT)).map_err(|_| "connect")
}

/// Streams `bytes` each way at once on one thread; `between` runs every 4
/// MiB the side has sent (the pressure mode's memory hog). Returns the
/// checksums of what it sent and what it got.
fn stream(
    ch: &mut Channel<'_>,
    bytes: u64,
    seeds: (u64, u64),
    mut between: impl FnMut(u64) -> R,
) -> Result<(u64, u64), &'static str> {
    let (mut sent, mut got) = (0u64, 0u64);
    let (mut sum_tx, mut sum_rx) = (0u64, 0u64);
    let mut tx = [0u8; CHUNK];
    let mut rx = [0u8; CHUNK];
    let (mut tx_off, mut rx_fill) = (CHUNK, 0usize);
    while sent < bytes || got < bytes {
        let mut progress = false;
        if sent < bytes {
            if tx_off == CHUNK {
                fill(&mut tx, seeds.0, sent / 8);
                for w in tx.chunks_exact(8) {
                    sum_tx = fold(sum_tx, u64::from_le_bytes(w.try_into().unwrap()));
                }
                tx_off = 0;
            }
            let n = ch.try_write(&tx[tx_off..]).map_err(|_| "write failed")?;
            tx_off += n;
            sent += n as u64;
            progress |= n > 0;
            if n > 0 && sent.is_multiple_of(4 << 20) {
                between(sent)?;
            }
        }
        if got < bytes {
            let n = ch.try_read(&mut rx[rx_fill..]).map_err(|_| "read failed")?;
            rx_fill += n;
            progress |= n > 0;
            if rx_fill == CHUNK {
                let first = got / 8;
                for (k, w) in rx.chunks_exact(8).enumerate() {
                    let w = u64::from_le_bytes(w.try_into().unwrap());
                    if w != word(seeds.1, first + k as u64) {
                        println!("shmtest: word {} of the stream is {:#x}", first + k as u64, w);
                        return Err("a word came through wrong");
                    }
                    sum_rx = fold(sum_rx, w);
                }
                got += CHUNK as u64;
                rx_fill = 0;
            }
        }
        if !progress {
            if ch.is_closed() {
                return Err("the peer closed mid-stream");
            }
            ch.wait().map_err(|_| "wait failed")?;
        }
    }
    Ok((sum_tx, sum_rx))
}

/// Each side sends its two checksums over the connection after the
/// stream; each checks that what the other got is what it sent.
fn compare(conn: &Connection, sums: (u64, u64)) -> R {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&sums.0.to_le_bytes());
    m[8..].copy_from_slice(&sums.1.to_le_bytes());
    conn.send(&m).map_err(|_| "send sums")?;
    // Nothing but signals crossed the connection during the stream: a
    // 16-byte message is the peer's sums (it may have come already).
    loop {
        let p = conn.read().map_err(|_| "read")?;
        if p.len == 16 {
            let their_tx = u64::from_le_bytes(p.data[..8].try_into().unwrap());
            let their_rx = u64::from_le_bytes(p.data[8..16].try_into().unwrap());
            if their_tx != sums.1 || their_rx != sums.0 {
                return Err("checksums differ end to end");
            }
            return Ok(());
        }
        let r = conn.wait(Some(WAIT)).map_err(|_| "no sums from the peer")?;
        if r.events.contains(Events::PEER_CLOSED) && conn.read().map_err(|_| "read")?.len != 16 {
            return Err("the peer closed before its checksums");
        }
    }
}

fn shares() -> alux_memd_proto::Stats {
    alux_rt::mem::stats().unwrap_or_default()
}

fn streaming(conn: &Connection, server: bool, mib: u64, pressure: bool) -> R {
    let mut ch = Channel::open(conn, REGION, WAIT).map_err(|e| {
        println!("shmtest: negotiation failed: {:?}", e);
        "negotiation failed"
    })?;
    if ch.side() != u8::from(server) {
        return Err("wrong side");
    }
    let pages = (ch.region().len() / 4096) as u64;
    let seeds = if server { (0x5e17, 0xc11e) } else { (0xc11e, 0x5e17) };
    let t0 = alux_rt::time::now();
    let mut evicted = 0u64;
    let mut hog: Option<&mut [u8]> = None;
    let between = |_sent: u64| -> R {
        if !pressure || server {
            return Ok(());
        }
        let mem = match hog.as_deref_mut() {
            Some(m) => m,
            None => {
                let p = alux_rt::mem::reserve(24 << 20, true).map_err(|_| "hog reserve")?;
                // SAFETY: memd reserved these 24 MiB for this task alone,
                // writable, and nothing else refers to them.
                hog = Some(unsafe { core::slice::from_raw_parts_mut(p, 24 << 20) });
                hog.as_deref_mut().unwrap()
            }
        };
        for (i, page) in mem.chunks_exact_mut(4096).enumerate() {
            page[0] = i as u8;
        }
        let s = shares();
        if s.shared_resident < pages {
            evicted += 1;
        }
        Ok(())
    };
    let sums = stream(&mut ch, mib << 20, seeds, between)?;
    let ms = (alux_rt::time::now() - t0).as_millis();
    compare(conn, sums)?;
    println!(
        "shmtest: {} MiB each way through {} KiB rings in {} ms, checksums {:#x}/{:#x} agree",
        mib,
        ch.capacity() / 1024,
        ms,
        sums.0,
        sums.1
    );
    if pressure && !server {
        let s = shares();
        println!(
            "shmtest: the ring was partly out of memory after {} of the hog's passes; memd has {} shared pages resident, {} in swap",
            evicted, s.shared_resident, s.shared_swapped
        );
        if evicted == 0 {
            return Err("the ring's pages never left memory");
        }
    }
    Ok(())
}

/// Waits for a 1-byte message from the peer (a step of the negotiation).
fn step_wait(conn: &Connection, seen: &mut u64) -> Result<u8, &'static str> {
    // The buffer first: a step may have come before this end was accepted,
    // its signal reported with the open (see `Port::accept`).
    loop {
        let m = conn.read().map_err(|_| "read")?;
        if m.seq != *seen && m.len == 1 {
            *seen = m.seq;
            return Ok(m.data[0]);
        }
        let r = conn.wait(Some(WAIT)).map_err(|_| "no step")?;
        if r.events.contains(Events::PEER_CLOSED) {
            let m = conn.read().map_err(|_| "read")?;
            if m.seq != *seen && m.len == 1 {
                *seen = m.seq;
                return Ok(m.data[0]);
            }
            return Err("peer closed");
        }
    }
}

fn refused(r: Result<SharedRegion, ShareError>, want: Status, what: &'static str) -> R {
    match r {
        Err(ShareError::Refused(s)) if s == want => {
            println!("shmtest: {}: refused {:?}", what, s);
            Ok(())
        }
        other => {
            println!("shmtest: {}: got {:?}, not {:?}", what, other.map(|r| r.addr() as u64), want);
            Err(what)
        }
    }
}

fn ask(conn: &Connection, len: usize, ms: u64) -> Result<SharedRegion, ShareError> {
    SharedRegion::negotiate(conn, len, Duration::from_millis(ms))
}

fn negotiate_client(conn: &Connection) -> R {
    let mut seen = 0;
    // 1. Alone: the server does not ask.
    refused(ask(conn, 16384, 200), Status::TimedOut, "a lone request")?;
    // 2. Mismatched lengths: the server asks for 32 KiB.
    conn.send(b"m").map_err(|_| "send")?;
    refused(ask(conn, 16384, 5000), Status::SizeMismatch, "mismatched lengths")?;
    // 3. Both ask for 64 KiB.
    conn.send(b"s").map_err(|_| "send")?;
    let r = ask(conn, 65536, 5000).map_err(|_| "both asking was refused")?;
    if r.side() != 0 || r.len() != 65536 {
        return Err("the region is not as asked");
    }
    // SAFETY: the region is mapped read-write in this task while `r` lives;
    // the peer reads these words only after our message.
    unsafe { (r.addr() as *mut u64).write_volatile(0xfeed_f00d) };
    conn.send(b"w").map_err(|_| "send")?;
    if step_wait(conn, &mut seen)? != b'b' {
        return Err("no answer from the server");
    }
    // SAFETY: as above; the server wrote this word before its message.
    let back = unsafe { (r.addr().add(8192) as *const u64).read_volatile() };
    if back != 0xbeef_cafe {
        return Err("the server's write did not come through");
    }
    println!("shmtest: one region, two tasks: each saw the other's write");
    // 4. Asking again while holding it.
    refused(ask(conn, 65536, 200), Status::AlreadyShared, "asking again")?;
    // The third task's turn; then the pair's region is released by both.
    conn.send(b"t").map_err(|_| "send")?;
    if step_wait(conn, &mut seen)? != b'd' {
        return Err("the third task's step did not end");
    }
    drop(r);
    Ok(())
}

fn negotiate_server(ns: &NameService, conn: &Connection) -> R {
    let mut seen = 0;
    if step_wait(conn, &mut seen)? != b'm' {
        return Err("expected the mismatch step");
    }
    refused(ask(conn, 32768, 5000), Status::SizeMismatch, "mismatched lengths (server)")?;
    if step_wait(conn, &mut seen)? != b's' {
        return Err("expected the share step");
    }
    let r = ask(conn, 65536, 5000).map_err(|_| "both asking was refused (server)")?;
    if r.side() != 1 {
        return Err("the server's side is not 1");
    }
    if step_wait(conn, &mut seen)? != b'w' {
        return Err("expected the client's write");
    }
    // SAFETY: mapped read-write while `r` lives; the client wrote it
    // before its message.
    if unsafe { (r.addr() as *const u64).read_volatile() } != 0xfeed_f00d {
        return Err("the client's write did not come through");
    }
    // SAFETY: as above.
    unsafe { (r.addr().add(8192) as *mut u64).write_volatile(0xbeef_cafe) };
    conn.send(b"b").map_err(|_| "send")?;
    if step_wait(conn, &mut seen)? != b't' {
        return Err("expected the third task's step");
    }
    // The third task gets the pair's connection ID and must be refused.
    let third = serve(ns, "shm-negotiate-3")?;
    let id = conn.info().map_err(|_| "info")?.conn_id;
    third.send(&id.to_le_bytes()).map_err(|_| "send to third")?;
    let mut seen3 = 0;
    if step_wait(&third, &mut seen3)? != b'k' {
        return Err("the third task failed");
    }
    conn.send(b"d").map_err(|_| "send")?;
    drop(r);
    Ok(())
}

fn negotiate_third(conn: &Connection) -> R {
    let mut id = [0u8; 8];
    loop {
        conn.wait(Some(WAIT)).map_err(|_| "no ID")?;
        let m = conn.read().map_err(|_| "read")?;
        if m.len == 8 {
            id.copy_from_slice(&m.data[..8]);
            break;
        }
    }
    let pair = u64::from_le_bytes(id);
    let raw = |conn_id: u64| {
        let req =
            alux_memd_proto::Request::ShareRequest { conn: conn_id, len: 65536, wait_ms: 100 };
        // SAFETY: a share request releases nothing.
        match unsafe { alux_rt::mem::ask_raw(req) } {
            Ok(Err(s)) => Err(ShareError::Refused(s)),
            Ok(Ok(_)) => Ok(()),
            Err(e) => Err(ShareError::Sys(e)),
        }
    };
    let check = |r: Result<(), ShareError>, want: Status, what: &'static str| match r {
        Err(ShareError::Refused(s)) if s == want => {
            println!("shmtest: {}: refused {:?}", what, s);
            Ok(())
        }
        other => {
            println!("shmtest: {}: got {:?}, not {:?}", what, other, want);
            Err(what)
        }
    };
    check(raw(pair), Status::NotAnEnd, "a third task naming the pair's connection")?;
    check(raw(u64::MAX - 7), Status::NoSuchConnection, "a connection that does not exist")?;
    refused(ask(conn, 0, 100), Status::InvalidArgument, "a zero length")?;
    refused(ask(conn, 65536, 100), Status::TimedOut, "its own connection, the server silent")?;
    conn.send(b"k").map_err(|_| "send")?;
    Ok(())
}

/// The reader of `kill`: reads until the stream ends.
fn kill_reader(ns: &NameService, conn: &Connection) -> R {
    let mut ch = Channel::open(conn, REGION, WAIT).map_err(|_| "negotiation failed")?;
    let mut buf = [0u8; CHUNK];
    let (mut got, mut fill_, mut told) = (0u64, 0usize, None);
    loop {
        let n = match ch.read(&mut buf[fill_..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(ChannelError::PeerClosed) => break,
            Err(_) => return Err("read failed"),
        };
        fill_ += n;
        if fill_ == CHUNK {
            for (k, w) in buf.chunks_exact(8).enumerate() {
                if u64::from_le_bytes(w.try_into().unwrap()) != word(7, got / 8 + k as u64) {
                    return Err("a word came through wrong");
                }
            }
            got += CHUNK as u64;
            fill_ = 0;
        }
        if got >= 1 << 20 && told.is_none() {
            told = Some(ns.register("shm-kill-reading").map_err(|_| "register")?);
        }
    }
    println!("shmtest: the writer died after {} KiB; every word read was right", got / 1024);
    if got < 1 << 20 {
        return Err("the stream ended before the writer was killed");
    }
    Ok(())
}

fn kill_writer(conn: &Connection) -> R {
    let mut ch = Channel::open(conn, REGION, WAIT).map_err(|_| "negotiation failed")?;
    let mut buf = [0u8; CHUNK];
    let mut i = 0u64;
    loop {
        fill(&mut buf, 7, i * (CHUNK as u64 / 8));
        ch.write_all(&buf).map_err(|_| "write failed")?;
        i += 1;
    }
}

fn garbage_server(conn: &Connection) -> R {
    let mut ch = Channel::open(conn, REGION, WAIT).map_err(|_| "negotiation failed")?;
    let mut buf = [0u8; 64];
    match ch.read(&mut buf) {
        Err(ChannelError::Corrupt(f)) => {
            println!("shmtest: the peer's garbage was seen: {:?}", f);
        }
        other => {
            println!("shmtest: garbage read gave {:?}", other);
            return Err("garbage was not refused");
        }
    }
    // The error sticks, and the task's own memory is fine.
    if !matches!(ch.read(&mut buf), Err(ChannelError::Corrupt(_))) {
        return Err("the error did not stick");
    }
    if buf.iter().any(|&b| b != 0) {
        return Err("garbage reached the buffer");
    }
    Ok(())
}

fn garbage_client(conn: &Connection) -> R {
    let ch = Channel::open(conn, REGION, WAIT).map_err(|_| "negotiation failed")?;
    // The ring the server reads is this side's (0) first half: its `head`
    // claims far more bytes than the ring holds.
    // SAFETY: the region is mapped read-write while `ch` lives.
    unsafe { (ch.region().addr() as *mut u64).write_volatile(u64::MAX / 3) };
    conn.signal().map_err(|_| "signal")?;
    // Stay until the server is done.
    let _ = conn.wait(Some(WAIT));
    Ok(())
}

const BENCH_RUNS: usize = 8;
const BENCH_BYTES: usize = 4 << 20;
const BENCH_SIZES: [usize; 2] = [4096, 65536];
const BENCH_PINGS: usize = 32;

fn bench_client(conn: &Connection) -> R {
    use programs::measure::{report, tsc};
    let mut ch = Channel::open(conn, REGION, WAIT).map_err(|_| "negotiation failed")?;
    let src: alloc::vec::Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
    let mut dst = alloc::vec![0u8; 65536];
    let mut plain = alloc::vec::Vec::new();
    for _ in 0..BENCH_RUNS {
        let t0 = tsc();
        for _ in 0..BENCH_BYTES / 65536 {
            // SAFETY: both buffers are 64 KiB of this task's own memory.
            unsafe { alux_rt::shm::copy_to_foreign(src.as_ptr(), dst.as_mut_ptr(), 65536) };
        }
        plain.push((tsc() - t0) / (BENCH_BYTES as u64 / 1024));
    }
    if dst != src {
        return Err("the plain copy is wrong");
    }
    report("shm_copy_plain", plain);
    let mut seen = conn.read().map_err(|_| "read")?.seq;
    for size in BENCH_SIZES {
        let mut samples = alloc::vec::Vec::new();
        for _ in 0..BENCH_RUNS {
            let t0 = tsc();
            for _ in 0..BENCH_BYTES / size {
                ch.write_all(&src[..size]).map_err(|_| "write failed")?;
            }
            // The server says when it has read everything.
            loop {
                let m = conn.read().map_err(|_| "read")?;
                if m.seq != seen && m.len == 1 {
                    seen = m.seq;
                    break;
                }
                conn.wait(Some(WAIT)).map_err(|_| "no word from the server")?;
            }
            samples.push((tsc() - t0) / (BENCH_BYTES as u64 / 1024));
        }
        report(if size == 4096 { "shm_stream_4k" } else { "shm_stream_64k" }, samples);
    }
    for _ in 0..BENCH_PINGS {
        // The server is asleep in its receive by now.
        alux_rt::time::sleep(Duration::from_millis(2));
        let mut m = [0u8; 32];
        m[..8].copy_from_slice(&tsc().to_le_bytes());
        ch.send(&m).map_err(|_| "send failed")?;
    }
    // Stay until the server has its last message.
    let _ = conn.wait(Some(WAIT));
    Ok(())
}

fn bench_server(conn: &Connection) -> R {
    use programs::measure::{report, tsc};
    let mut ch = Channel::open(conn, REGION, WAIT).map_err(|_| "negotiation failed")?;
    let mut buf = alloc::vec![0u8; 65536];
    for _ in 0..BENCH_SIZES.len() * BENCH_RUNS {
        let mut left = BENCH_BYTES;
        while left > 0 {
            let n = buf.len().min(left);
            left -= ch.read(&mut buf[..n]).map_err(|_| "read failed")?;
        }
        conn.send(b"d").map_err(|_| "send")?;
    }
    let mut samples = alloc::vec::Vec::new();
    for _ in 0..BENCH_PINGS {
        let mut m = [0u8; 32];
        let n = ch.recv(&mut m).map_err(|_| "recv failed")?;
        let t1 = tsc();
        if n != 32 {
            return Err("a ping of the wrong length");
        }
        samples.push(t1 - u64::from_le_bytes(m[..8].try_into().unwrap()));
    }
    report("shm_doorbell_32b", samples);
    Ok(())
}

fn main(start: &Start) -> u64 {
    let mut w = start.arg_words();
    let (role, mode) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
    let n = w.next().and_then(programs::parse_u64).unwrap_or(16);
    let Some(ns) = start.name_service().and_then(|t| NameService::connect(t).ok()) else {
        println!("shmtest: no name service");
        return 2;
    };
    let name = match mode {
        "stream" => "shm-stream",
        "pressure" => "shm-pressure",
        "kill" => "shm-kill",
        "garbage" => "shm-garbage",
        "negotiate" => "shm-negotiate",
        "bench" => "shm-bench",
        _ => return 2,
    };
    let conn = match role {
        "server" => serve(&ns, name),
        "client" => connect(&ns, name),
        "third" => connect(&ns, "shm-negotiate-3"),
        _ => return 2,
    };
    let conn = match conn {
        Ok(c) => c,
        Err(why) => {
            println!("shmtest: {} {}: {}", role, mode, why);
            return 1;
        }
    };
    let r = match (role, mode) {
        ("server", "stream") | ("client", "stream") => streaming(&conn, role == "server", n, false),
        ("server", "pressure") | ("client", "pressure") => {
            streaming(&conn, role == "server", n, true)
        }
        ("server", "kill") => kill_reader(&ns, &conn),
        ("client", "kill") => kill_writer(&conn),
        ("server", "garbage") => garbage_server(&conn),
        ("client", "garbage") => garbage_client(&conn),
        ("server", "negotiate") => negotiate_server(&ns, &conn),
        ("client", "negotiate") => negotiate_client(&conn),
        ("third", "negotiate") => negotiate_third(&conn),
        ("server", "bench") => bench_server(&conn),
        ("client", "bench") => bench_client(&conn),
        _ => Err("unknown role"),
    };
    match r {
        Ok(()) => 0,
        Err(why) => {
            println!("shmtest: {} {}: {}", role, mode, why);
            1
        }
    }
}
alux_rt::entry!(main);
