//! Clients of the virtio-blk driver for the `blk-*` scenarios, and the
//! device-call checks of `blk-irq`. The first word picks the role:
//!
//! - `worker K THREADS ROUNDS ns=ID`: THREADS threads, each with its own
//!   connection and DMA buffer, write distinct patterns to scattered
//!   sectors of their own area (area `K * THREADS + t`), read them back and
//!   compare every byte; thread 0 of worker 0 also writes one large run and
//!   reads it back in pieces (and the other way round).
//! - `persist-write ns=ID` / `persist-read ns=ID`: the first boot writes a
//!   fixed set of patterns, the second reads them back (and zeros where
//!   nothing was written).
//! - `bad ns=ID`: every malformed request gets its status; the driver
//!   still serves afterwards. `unpriv ns=ID` (run unprivileged): refused.
//!   `readonly ns=ID`: on a read-only disk, writes and flushes refused.
//! - `hammer THREADS ns=ID`: writes until the driver dies; each thread must
//!   see `PEER_CLOSED` with `TaskKilled` on its connection.
//! - `irq N ns=ID`: N sequential requests; the kernel's interrupt count
//!   must grow by exactly N.
//! - `probe`: finds the disk's BAR and interrupt line (exit code: BAR
//!   address | line), for `hostile-dev`.
//! - `hostile-dev BAR_AND_LINE`: bad device calls of a privileged task get
//!   their documented errors; `unpriv-calls`: all `NotPrivileged`.
//! - `bench ns=ID`: the disk benchmarks (guest instructions per 4 KiB
//!   read, 4 KiB write and 64 KiB sequential read, idle time excluded).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use alux_abi::ipc::{CloseReason, Events};
use alux_abi::syscall::{Sys, DMA_ALLOC_MAX, MMIO_MAP_MAX};
use alux_abi::{Error, TaskId};
use alux_blk_proto::{Completion, Request, Status, REQUEST_LEN, SECTOR_SIZE};
use alux_rt::dev::DmaRegion;
use alux_rt::ipc::{self, Connection};
use alux_rt::names::{NameError, NameService};
use alux_rt::sys::call_raw;
use alux_rt::{println, Start};
use core::time::Duration;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
const SECTOR: usize = SECTOR_SIZE as usize;
/// Sectors each worker thread owns (its "area").
const AREA: u64 = 4096;

type Res<T> = Result<T, String>;

/// The driver's task, looked up by name (it may still be starting).
fn driver(start: &Start) -> Res<TaskId> {
    let ns = start.name_service().ok_or("no ns= argument")?;
    let ns = NameService::connect(ns).map_err(|e| format!("name service: {:?}", e))?;
    for _ in 0..600 {
        match ns.lookup("blk") {
            Ok(t) => return Ok(t),
            Err(NameError::NotFound) => alux_rt::time::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("lookup blk: {:?}", e)),
        }
    }
    Err("blk never registered".into())
}

/// One connection to the driver with its DMA buffer.
struct Disk {
    conn: Connection,
    buf: DmaRegion,
    next_tag: u64,
}

impl Disk {
    fn open(drv: TaskId, buf_len: usize) -> Res<Disk> {
        let conn = ipc::connect(drv, TIMEOUT).map_err(|e| format!("connect: {}", e))?;
        let buf = DmaRegion::alloc(buf_len).map_err(|e| format!("DmaAlloc: {}", e))?;
        Ok(Disk { conn, buf, next_tag: 1 })
    }

    /// Sends raw request bytes and returns the completion (one
    /// `SendReceive`: this thread's only end is this connection).
    fn raw(&mut self, bytes: &[u8]) -> Res<Completion> {
        let r = ipc::send_receive(&self.conn, bytes).map_err(|e| format!("call: {}", e))?;
        if r.handle != self.conn.handle() || !r.events.contains(Events::SIGNAL) {
            return Err(format!("unexpected {:?} on {:?}", r.events, r.handle));
        }
        Completion::decode(r.message.bytes()).map_err(|e| format!("bad completion: {:?}", e))
    }

    /// Sends a request (its tag replaced by a fresh one) and checks the
    /// completion carries that tag.
    fn submit(&mut self, mut r: Request) -> Res<Completion> {
        r.tag = self.next_tag.wrapping_mul(0x9e37_79b9) ^ 0x55;
        self.next_tag += 1;
        let c = self.raw(&r.encode())?;
        if c.tag != r.tag {
            return Err(format!("completion tag {:#x} for request {:#x}", c.tag, r.tag));
        }
        Ok(c)
    }

    /// Reads or writes `sectors` at `first` from/to buffer offset `off`.
    fn io(&mut self, write: bool, first: u64, sectors: u32, off: usize) -> Res<()> {
        let phys = self.buf.phys() + off as u64;
        let r = if write {
            Request::write(0, first, sectors, phys)
        } else {
            Request::read(0, first, sectors, phys)
        };
        let c = self.submit(r)?;
        if c.status != Status::Ok || c.sectors != sectors {
            return Err(format!(
                "{} {}+{}: {} ({} sectors)",
                if write { "write" } else { "read" },
                first,
                sectors,
                c.status,
                c.sectors
            ));
        }
        Ok(())
    }

    fn expect(&mut self, what: &str, bytes: &[u8], want: Status) -> Res<()> {
        let c = self.raw(bytes)?;
        if c.status != want {
            return Err(format!("{}: got {}, want {}", what, c.status, want));
        }
        println!("blk: {} -> {}", what, c.status);
        Ok(())
    }
}

/// The byte at `i` of sector `s` under `seed`.
fn pattern(seed: u64, s: u64, i: usize) -> u8 {
    let x = (s ^ seed.rotate_left(17)).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ (i as u64 * 0x9e37);
    (x >> 24) as u8 ^ i as u8
}

fn fill(d: &mut Disk, off: usize, seed: u64, first: u64, sectors: u32) {
    let mut sec = [0u8; SECTOR];
    for k in 0..sectors as u64 {
        for (i, b) in sec.iter_mut().enumerate() {
            *b = pattern(seed, first + k, i);
        }
        d.buf.write(off + k as usize * SECTOR, &sec);
    }
}

fn verify(d: &Disk, off: usize, seed: Option<u64>, first: u64, sectors: u32) -> Res<()> {
    let mut sec = [0u8; SECTOR];
    for k in 0..sectors as u64 {
        d.buf.read(off + k as usize * SECTOR, &mut sec);
        for (i, &b) in sec.iter().enumerate() {
            let want = seed.map_or(0, |s| pattern(s, first + k, i));
            if b != want {
                return Err(format!("sector {} byte {}: {:#x}, want {:#x}", first + k, i, b, want));
            }
        }
    }
    Ok(())
}

/// Writes then reads back `rounds` scattered requests of 1..=16 sectors in
/// area `area`, verifying every byte.
fn scattered(drv: TaskId, area: u64, rounds: u64) -> Res<u64> {
    let mut d = Disk::open(drv, 16 * SECTOR)?;
    let mut rng = programs::Rng::new(area + 1);
    let base = area * AREA;
    let seed = 0x1000 + area;
    let mut done = Vec::new();
    for _ in 0..rounds {
        let n = (rng.next_u64() % 16 + 1) as u32;
        let first = base + rng.next_u64() % (AREA - 16);
        fill(&mut d, 0, seed, first, n);
        d.io(true, first, n, 0)?;
        done.push((first, n));
    }
    // Later writes may overlap earlier ones: all writes use one pattern
    // per sector (not per request), so every read must match it.
    for &(first, n) in &done {
        d.buf.fill(0, n as usize * SECTOR, 0xee);
        d.io(false, first, n, 0)?;
        verify(&d, 0, Some(seed), first, n)?;
    }
    Ok(done.len() as u64 * 2)
}

/// One 1 MiB run written at once and read back in 128 KiB pieces, then
/// written in pieces and read back at once.
fn large_run(drv: TaskId, first: u64) -> Res<()> {
    const RUN: u32 = 2048;
    const PIECE: u32 = 256;
    let mut d = Disk::open(drv, RUN as usize * SECTOR)?;
    fill(&mut d, 0, 7, first, RUN);
    d.io(true, first, RUN, 0)?;
    d.buf.fill(0, RUN as usize * SECTOR, 0);
    for p in 0..RUN / PIECE {
        d.io(false, first + (p * PIECE) as u64, PIECE, (p * PIECE) as usize * SECTOR)?;
    }
    verify(&d, 0, Some(7), first, RUN)?;
    fill(&mut d, 0, 8, first, RUN);
    for p in 0..RUN / PIECE {
        d.io(true, first + (p * PIECE) as u64, PIECE, (p * PIECE) as usize * SECTOR)?;
    }
    d.buf.fill(0, RUN as usize * SECTOR, 0);
    d.io(false, first, RUN, 0)?;
    verify(&d, 0, Some(8), first, RUN)?;
    println!("blk: 1 MiB run at sector {} written and read back both ways", first);
    Ok(())
}

fn worker(start: &Start, k: u64, threads: u64, rounds: u64) -> Res<()> {
    let drv = driver(start)?;
    let mut handles = Vec::new();
    for t in 0..threads {
        let area = k * threads + t;
        let h = alux_rt::thread::spawn(move || scattered(drv, area, rounds))
            .map_err(|e| format!("thread: {}", e))?;
        handles.push(h);
    }
    if k == 0 {
        // Past every worker's areas.
        large_run(drv, 64 * AREA)?;
    }
    let mut total = 0;
    for h in handles {
        total += h.join().ok_or("a thread died")??;
    }
    println!("blk: worker {}: {} requests by {} threads verified", k, total, threads);
    Ok(())
}

/// The persistence set: scattered sectors and one run.
const PERSIST: &[(u64, u32)] =
    &[(0, 1), (1, 7), (999, 3), (65_536, 64), (200_000, 16), (524_287, 1)];

fn persist(start: &Start, write: bool) -> Res<()> {
    let drv = driver(start)?;
    let mut d = Disk::open(drv, 64 * SECTOR)?;
    for &(first, n) in PERSIST {
        if write {
            fill(&mut d, 0, 0xb007, first, n);
            d.io(true, first, n, 0)?;
        } else {
            d.buf.fill(0, n as usize * SECTOR, 0xee);
            d.io(false, first, n, 0)?;
            verify(&d, 0, Some(0xb007), first, n)?;
        }
    }
    if write {
        let c = d.submit(Request::flush(0))?;
        if c.status != Status::Ok {
            return Err(format!("flush: {}", c.status));
        }
    } else {
        // Never written: zeros.
        d.buf.fill(0, 8 * SECTOR, 0xee);
        d.io(false, 300_000, 8, 0)?;
        verify(&d, 0, None, 300_000, 8)?;
    }
    println!("blk: {} {} extents", if write { "wrote" } else { "read back" }, PERSIST.len());
    Ok(())
}

fn bad(start: &Start) -> Res<()> {
    let drv = driver(start)?;
    let mut d = Disk::open(drv, 8 * SECTOR)?;
    let phys = d.buf.phys();
    let good = Request::read(0x7a6, 0, 1, phys).encode();
    let set = |at: usize, bytes: &[u8]| {
        let mut m = good;
        m[at..at + bytes.len()].copy_from_slice(bytes);
        m
    };
    d.expect("8-byte message", &good[..8], Status::BadLength)?;
    d.expect("31-byte message", &good[..31], Status::BadLength)?;
    d.expect("empty message", &[], Status::BadLength)?;
    d.expect("operation 0", &set(8, &[0]), Status::UnknownOperation)?;
    d.expect("operation 9", &set(8, &[9]), Status::UnknownOperation)?;
    d.expect("reserved byte", &set(9, &[1]), Status::ReservedNotZero)?;
    let flush_with_sectors = {
        let mut m = Request::flush(1).encode();
        m[12] = 1;
        m
    };
    d.expect("flush naming sectors", &flush_with_sectors, Status::ReservedNotZero)?;
    d.expect("zero sectors", &set(12, &0u32.to_le_bytes()), Status::ZeroCount)?;
    d.expect("4097 sectors", &set(12, &4097u32.to_le_bytes()), Status::TooManySectors)?;
    d.expect("u32::MAX sectors", &set(12, &u32::MAX.to_le_bytes()), Status::TooManySectors)?;
    d.expect("sector 2^40", &set(16, &(1u64 << 40).to_le_bytes()), Status::OutOfRange)?;
    d.expect("sector u64::MAX", &set(16, &u64::MAX.to_le_bytes()), Status::OutOfRange)?;
    // The image is 256 MiB: 524,288 sectors; the last one is fine, the
    // next one is not, and a run across the end is not either.
    d.expect("last sector", &set(16, &524_287u64.to_le_bytes()), Status::Ok)?;
    d.expect("past the end", &set(16, &524_288u64.to_le_bytes()), Status::OutOfRange)?;
    let across = {
        let mut m = set(16, &524_287u64.to_le_bytes());
        m[12..16].copy_from_slice(&2u32.to_le_bytes());
        m
    };
    d.expect("across the end", &across, Status::OutOfRange)?;
    d.expect("buffer + 1", &set(24, &(phys + 1).to_le_bytes()), Status::MisalignedBuffer)?;
    d.expect("buffer + 256", &set(24, &(phys + 256).to_le_bytes()), Status::MisalignedBuffer)?;
    d.expect("buffer 2^52", &set(24, &(1u64 << 52).to_le_bytes()), Status::BadBuffer)?;
    // Passes the protocol's checks, but is not RAM (QEMU's VGA window):
    // the driver's pin is refused.
    d.expect(
        "buffer in device memory",
        &set(24, &0xfd00_0000u64.to_le_bytes()),
        Status::BadBuffer,
    )?;
    // Garbage: every message gets a completion with its tag, never a crash.
    let mut rng = programs::Rng::new(0xbad);
    for i in 0..200u64 {
        let mut m = [0u8; REQUEST_LEN];
        for b in m.iter_mut() {
            *b = rng.next_u64() as u8;
        }
        m[..8].copy_from_slice(&i.to_le_bytes());
        // Mostly known operations, so that the later checks are reached;
        // the buffer is always past 2^52, so no garbage request ever
        // reaches the device (a random address could be anyone's memory).
        m[8] %= 5;
        m[31] |= 0x80;
        let len = (rng.next_u64() % 33) as usize;
        let c = d.raw(&m[..len])?;
        if len >= 8 && c.tag != i {
            return Err(format!("garbage {}: tag {:#x}", i, c.tag));
        }
    }
    println!("blk: 200 garbage messages answered");
    // Still serving, data intact.
    fill(&mut d, 0, 3, 4242, 8);
    d.io(true, 4242, 8, 0)?;
    d.buf.fill(0, 8 * SECTOR, 0);
    d.io(false, 4242, 8, 0)?;
    verify(&d, 0, Some(3), 4242, 8)?;
    let c = d.submit(Request::flush(0))?;
    println!("blk: flush -> {}", c.status);
    if c.status != Status::Ok {
        return Err(format!("flush: {}", c.status));
    }
    Ok(())
}

/// On a read-only disk: reads work, writes and flushes are refused.
fn readonly(start: &Start) -> Res<()> {
    let drv = driver(start)?;
    let mut d = Disk::open(drv, 8 * SECTOR)?;
    let phys = d.buf.phys();
    d.expect("write", &Request::write(1, 0, 8, phys).encode(), Status::ReadOnly)?;
    d.expect("flush", &Request::flush(2).encode(), Status::ReadOnly)?;
    d.expect("read", &Request::read(3, 0, 8, phys).encode(), Status::Ok)?;
    Ok(())
}

fn unpriv(start: &Start) -> Res<()> {
    let drv = driver(start)?;
    if DmaRegion::alloc(4096).err() != Some(Error::NotPrivileged) {
        return Err("DmaAlloc allowed to an unprivileged task".into());
    }
    let conn = ipc::connect(drv, TIMEOUT).map_err(|e| format!("connect: {}", e))?;
    // A physical address of someone else's memory.
    for r in [Request::read(5, 0, 8, 0x10_0000), Request::write(6, 0, 8, 0x20_0000)] {
        let m = conn.call(&r.encode(), TIMEOUT).map_err(|e| format!("call: {}", e))?;
        let c = Completion::decode(m.bytes()).map_err(|e| format!("{:?}", e))?;
        if c.status != Status::NotPrivileged || c.tag != r.tag {
            return Err(format!("unprivileged request answered {:?}", c));
        }
    }
    println!("blk: unprivileged client refused with NotPrivileged");
    Ok(())
}

/// Writes until the driver dies; the connection must close with
/// `TaskKilled`.
/// Returns the requests sent and whether one was waiting for its
/// completion when the driver died.
fn hammer_thread(drv: TaskId, t: u64) -> Res<(u64, bool)> {
    let conn = ipc::connect(drv, TIMEOUT).map_err(|e| format!("connect: {}", e))?;
    let buf = DmaRegion::alloc(16 * SECTOR).map_err(|e| format!("DmaAlloc: {}", e))?;
    let mut sent = 0u64;
    loop {
        let r = Request::write(sent, t * AREA + sent % 1000, 16, buf.phys());
        if conn.send(&r.encode()).is_err() {
            break;
        }
        sent += 1;
        let ready = conn.wait(TIMEOUT).map_err(|e| format!("wait: {}", e))?;
        if ready.events.contains(Events::PEER_CLOSED) {
            if ready.close_reason != Some(CloseReason::TaskKilled) {
                return Err(format!("closed with {:?}", ready.close_reason));
            }
            // Make sure the buffer is given back only now.
            drop(buf);
            return Ok((sent, true));
        }
    }
    let info = conn.info().map_err(|e| format!("info: {}", e))?;
    if info.reason() != Some(CloseReason::TaskKilled) {
        return Err(format!("closed with {:?}", info.reason()));
    }
    Ok((sent, false))
}

fn hammer(start: &Start, threads: u64) -> Res<()> {
    let drv = driver(start)?;
    let mut handles = Vec::new();
    for t in 0..threads {
        handles.push(
            alux_rt::thread::spawn(move || hammer_thread(drv, t))
                .map_err(|e| format!("thread: {}", e))?,
        );
    }
    println!("blk: hammering with {} connections", threads);
    let (mut total, mut cut) = (0, 0);
    for h in handles {
        let (sent, waiting) = h.join().ok_or("a thread died")??;
        total += sent;
        cut += waiting as u64;
    }
    println!(
        "blk: {} requests sent; every connection closed with TaskKilled, {} with a request in flight",
        total, cut
    );
    if cut == 0 {
        return Err("no request was in flight when the driver died".into());
    }
    Ok(())
}

fn irq(start: &Start, n: u64) -> Res<()> {
    let drv = driver(start)?;
    let mut d = Disk::open(drv, 8 * SECTOR)?;
    // One request first, so that nothing from earlier is still pending.
    d.io(false, 0, 8, 0)?;
    let before = alux_rt::sys::kernel_stats().map_err(|e| format!("{}", e))?.interrupts;
    for i in 0..n {
        d.io(i % 2 == 0, 10_000 + i * 8, 8, 0)?;
    }
    let after = alux_rt::sys::kernel_stats().map_err(|e| format!("{}", e))?.interrupts;
    println!("blk: {} completions, {} interrupts delivered", n, after - before);
    if after - before != n {
        return Err(format!("{} interrupts for {} completions", after - before, n));
    }
    Ok(())
}

/// PCI configuration space through ports this task was granted.
struct Cam(alux_rt::dev::IoPorts);

impl alux_pci::ConfigAccess for Cam {
    fn read32(&mut self, a: alux_pci::Address, off: u8) -> u32 {
        self.0.out32(0xcf8, alux_pci::cam_address(a, off));
        self.0.in32(0xcfc)
    }
    fn write32(&mut self, a: alux_pci::Address, off: u8, v: u32) {
        self.0.out32(0xcf8, alux_pci::cam_address(a, off));
        self.0.out32(0xcfc, v)
    }
}

fn probe() -> Res<u64> {
    let ports = alux_rt::dev::IoPorts::grant(0xcf8, 8).map_err(|e| format!("ports: {}", e))?;
    let mut cam = Cam(ports);
    let f = alux_pci::enumerate(&mut cam)
        .find(|f| f.header.vendor_id == 0x1af4 && matches!(f.header.device_id, 0x1001 | 0x1042))
        .ok_or("no virtio-blk")?;
    let bars = alux_pci::bars(&mut cam, f.address, &f.header).map_err(|e| format!("{}", e))?;
    // The largest memory BAR holds the virtio structures (QEMU: BAR 4).
    let bar = bars
        .iter()
        .flatten()
        .filter_map(|b| match *b {
            alux_pci::Bar::Memory { address, size, .. } if address != 0 => Some((size, address)),
            _ => None,
        })
        .max()
        .ok_or("no memory BAR")?
        .1;
    println!("blk: disk at {}: BAR {:#x}, line {}", f.address, bar, f.header.interrupt_line);
    Ok(bar | f.header.interrupt_line as u64)
}

fn check(what: &str, got: Result<[u64; 4], Error>, want: Error) -> Res<()> {
    match got {
        Err(e) if e == want => {
            println!("blk: {} -> {}", what, e);
            Ok(())
        }
        other => Err(format!("{}: got {:?}, want {:?}", what, other, want)),
    }
}

fn grant(first: u64, count: u64) -> Result<[u64; 4], Error> {
    call_raw(Sys::IoPortGrant as u64, [first, count, 0, 0, 0, 0])
}
fn mmio(phys: u64, len: u64) -> Result<[u64; 4], Error> {
    call_raw(Sys::MmioMap as u64, [phys, len, 0, 0, 0, 0])
}
fn dma(len: u64) -> Result<[u64; 4], Error> {
    call_raw(Sys::DmaAlloc as u64, [len, 0, 0, 0, 0, 0])
}
fn kernel_end(kind: u32) -> Result<[u64; 4], Error> {
    call_raw(Sys::KernelEndOpen as u64, [kind as u64, 0, 0, 0, 0, 0])
}

fn hostile_dev(bar_and_line: u64) -> Res<()> {
    use alux_abi::ipc::kernel_end_kind::interrupt;
    let bar = bar_and_line & !0xfff;
    let line = (bar_and_line & 0xff) as u8;
    let ports: &[(&str, u64, u64, Error)] = &[
        ("ports 0x20-0x21 (PIC)", 0x20, 2, Error::InUse),
        ("port 0xa1 (PIC)", 0xa1, 1, Error::InUse),
        ("ports 0x40-0x43 (PIT)", 0x40, 4, Error::InUse),
        ("port 0x61", 0x61, 1, Error::InUse),
        ("ports 0x70-0x71 (CMOS)", 0x70, 2, Error::InUse),
        ("port 0xf4 (exit)", 0xf4, 1, Error::InUse),
        ("COM1", 0x3f8, 8, Error::InUse),
        ("a range over COM1", 0x300, 0x200, Error::InUse),
        ("every port", 0, 0x10000, Error::InUse),
        ("PCI ports (the driver's)", 0xcf8, 8, Error::InUse),
        ("0 ports", 0x100, 0, Error::InvalidArgument),
        ("wrapping", 0xffff, 2, Error::InvalidArgument),
        ("port 0x10000", 0x10000, 1, Error::InvalidArgument),
    ];
    for &(what, first, count, want) in ports {
        check(what, grant(first, count), want)?;
    }
    let maps: &[(&str, u64, u64, Error)] = &[
        ("RAM at 0", 0, 4096, Error::InUse),
        ("RAM at 1 MiB", 0x10_0000, 0x10_0000, Error::InUse),
        ("the LAPIC page", 0xfee0_0000, 4096, Error::InUse),
        ("the I/O APIC page", 0xfec0_0000, 4096, Error::InUse),
        ("the disk's BAR (the driver's)", bar, 4096, Error::InUse),
        ("unaligned", 0xfd00_0010, 4096, Error::InvalidArgument),
        ("0 bytes", 0xfd00_0000, 0, Error::InvalidArgument),
        ("too long", 0xfd00_0000, MMIO_MAP_MAX as u64 + 4096, Error::InvalidArgument),
        ("past physical memory", 1 << 52, 4096, Error::InvalidArgument),
        ("wrapping", !0xfff, 8192, Error::InvalidArgument),
    ];
    for &(what, phys, len, want) in maps {
        check(&format!("MmioMap {}", what), mmio(phys, len), want)?;
    }
    check("DmaAlloc 0", dma(0), Error::InvalidArgument)?;
    check("DmaAlloc 2 MiB + 1", dma(DMA_ALLOC_MAX as u64 + 1), Error::InvalidArgument)?;
    check("DmaAlloc u64::MAX", dma(u64::MAX), Error::InvalidArgument)?;
    check(
        &format!("interrupt line {} (the driver's)", line),
        kernel_end(interrupt(line)),
        Error::Busy,
    )?;
    check("interrupt line 200", kernel_end(interrupt(200)), Error::InvalidArgument)?;
    // What is allowed still works, and a second claim of it is refused.
    let r = DmaRegion::alloc(8192).map_err(|e| format!("DmaAlloc: {}", e))?;
    if r.phys() % 4096 != 0 || r.len() != 8192 {
        return Err("DmaAlloc gave an unaligned region".into());
    }
    drop(r);
    Ok(())
}

fn unpriv_calls() -> Res<()> {
    use alux_abi::ipc::kernel_end_kind::interrupt;
    check("IoPortGrant", grant(0x300, 8), Error::NotPrivileged)?;
    check("MmioMap", mmio(0xfd00_0000, 4096), Error::NotPrivileged)?;
    check("DmaAlloc", dma(4096), Error::NotPrivileged)?;
    check("KernelEndOpen(interrupt)", kernel_end(interrupt(11)), Error::NotPrivileged)?;
    // A port access without a grant faults: not tried here (it would end
    // the task); `IoPorts` cannot be made without the grant.
    Ok(())
}

// ---- disk benchmarks (`cargo xtask bench`; method in docs/benchmarks.md) ----

use programs::measure::{busy_since, start};

fn bench_kind(d: &mut Disk, name: &str, mut op: impl FnMut(&mut Disk, u64) -> Res<()>) -> Res<()> {
    const WARM_UP: u64 = 4;
    const SAMPLES: usize = 31;
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut i = 0u64;
    let mut tries = 0;
    while samples.len() < SAMPLES {
        tries += 1;
        if tries > 4 * SAMPLES + WARM_UP as usize {
            return Err(format!("{}: only {} of {} operations waited", name, samples.len(), tries));
        }
        let from = start();
        op(d, i)?;
        let (busy, waited) = busy_since(from);
        i += 1;
        // Only operations whose submitter really waited for the device.
        if i > WARM_UP && waited {
            samples.push(busy);
        }
    }
    programs::measure::report(name, samples);
    Ok(())
}

fn bench(start: &Start) -> Res<()> {
    let drv = driver(start)?;
    let mut d = Disk::open(drv, 64 * 1024)?;
    // Scattered 4 KiB blocks, as the Linux reference does.
    let block = |i: u64| (i.wrapping_mul(0x9e37_79b9) % 60_000) * 8;
    bench_kind(&mut d, "blk_read_4k", |d, i| d.io(false, block(i), 8, 0))?;
    bench_kind(&mut d, "blk_write_4k", |d, i| d.io(true, block(i), 8, 0))?;
    bench_kind(&mut d, "blk_read_64k_seq", |d, i| d.io(false, 100_000 + i * 128, 128, 0))?;
    Ok(())
}

fn main(start: &Start) -> u64 {
    let words: Vec<&str> = start.arg_words().filter(|w| !w.contains('=')).collect();
    let num = |i: usize, default: u64| words.get(i).and_then(|w| w.parse().ok()).unwrap_or(default);
    let result = match words.first().copied() {
        Some("worker") => worker(start, num(1, 0), num(2, 4), num(3, 16)),
        Some("persist-write") => persist(start, true),
        Some("persist-read") => persist(start, false),
        Some("bad") => bad(start),
        Some("unpriv") => unpriv(start),
        Some("readonly") => readonly(start),
        Some("hammer") => hammer(start, num(1, 4)),
        Some("irq") => irq(start, num(1, 50)),
        Some("probe") => match probe() {
            Ok(v) => return v,
            Err(e) => Err(e),
        },
        Some("hostile-dev") => hostile_dev(num(1, 0)),
        Some("unpriv-calls") => unpriv_calls(),
        Some("bench") => bench(start),
        other => Err(format!("unknown role {:?}", other)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            println!("blk: FAILED: {}", e);
            1
        }
    }
}
alux_rt::entry!(main);
