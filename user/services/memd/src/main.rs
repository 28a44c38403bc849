//! memd, the memory daemon: every page of every unprivileged task is one of
//! its pool frames. It fills new tasks from their ELF images, serves their
//! page faults (zero-filled, from the image, or from swap), answers their
//! requests for address space over basic IPC (`alux-memd-proto`), and pages
//! to the disk through the block driver (`alux-blk-proto`), handing it pool
//! frames' physical addresses.
//!
//! This binary is the thin loop around the policy: every decision is
//! `alux-memd-core`'s, and this file only turns kernel events and messages
//! into its calls and its [`Host`] requests into system calls and disk
//! messages. It never waits on a client: it waits only in its one
//! `Receive`, and bounds what it queues for the disk (one request per disk
//! connection).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use alux_abi::ipc::{Events, Handle};
use alux_abi::pager::{access, page_bits, verdict, PagerEvent, Pool};
use alux_abi::{Error, TaskId};
use alux_blk_proto as blk;
use alux_memd_core::{
    Access, Config, ConnEnds, End, FaultId, FaultOutcome, Frame, Host, Init, IoKind, IoRequest,
    KillReason, MapRefused, Memd, PageBits, Perms, Populate, ShareAsk, Tag, Withdrawal,
};
use alux_memd_proto::{self as proto, Reply, Request, Stats, StatsGroup, Status};
use alux_rt::ipc::{self, Connection, Listener};
use alux_rt::{pager, println, Start};

/// Ports kept in the listen queue: each client thread takes one.
const PORTS: usize = 16;
/// Connections to the block driver: requests in flight at most.
const DISK_LINKS: usize = 8;
/// Where a paged task's main stack and start page are (the kernel's
/// layout, `kernel/src/task.rs`).
const STACK_TOP: u64 = 0x0000_7fff_fff0_0000;
const MAIN_STACK: u64 = 128 * 1024;
const PAGE: u64 = 4096;
/// How soon the policy's clock runs again when it asks to (`needs_tick`):
/// pages just mapped for faults must be touched by their threads first.
const TICK: core::time::Duration = core::time::Duration::from_millis(1);

/// The kernel and the disk, as the policy sees them.
struct World {
    pool: Pool,
    /// Faults met by a system call (they get `ERROR`, not a kill, when the
    /// policy refuses them: the call fails with `BadAddress`).
    syscall_faults: BTreeSet<u64>,
    /// Disk connections and the request each carries.
    disk: Vec<(Connection, Option<IoRequest>)>,
    /// First sector of the swap area.
    swap_start: u64,
}

impl World {
    fn frame_ptr(&self, frame: Frame) -> *mut u8 {
        (self.pool.window + frame.0 as u64 * PAGE) as *mut u8
    }
}

fn bits(b: u64) -> PageBits {
    PageBits { accessed: b & page_bits::ACCESSED != 0, dirty: b & page_bits::DIRTY != 0 }
}

impl Host for World {
    fn map(&mut self, task: TaskId, va: u64, frame: Frame, perms: Perms) -> Result<(), MapRefused> {
        pager::map(task, va, frame.0 as u64, perms.bits() as u64).map_err(|_| MapRefused)
    }

    fn unmap(&mut self, task: TaskId, va: u64) -> PageBits {
        // If the kernel cannot tell (the task is gone), keep the data.
        pager::unmap(task, va).map_or(PageBits { accessed: true, dirty: true }, |(_, b)| bits(b))
    }

    fn bits(&mut self, task: TaskId, va: u64, clear: bool) -> PageBits {
        pager::bits(task, va, clear)
            .map_or(PageBits { accessed: true, dirty: true }, |(_, b)| bits(b))
    }

    fn resume(&mut self, fault: FaultId) {
        self.syscall_faults.remove(&fault.0);
        let _ = pager::resolve(fault.0, verdict::RESUME);
    }

    fn kill(&mut self, task: TaskId, fault: FaultId, reason: KillReason) {
        println!("memd: task {} refused a page: {:?}", task, reason);
        let how = if self.syscall_faults.remove(&fault.0) { verdict::ERROR } else { verdict::KILL };
        let _ = pager::resolve(fault.0, how);
    }

    fn zero(&mut self, frame: Frame) {
        // SAFETY: `frame` is a pool frame (the policy names only those), and
        // the whole pool is mapped read-write at `window` for this task
        // alone; no reference to it exists in this program.
        unsafe { core::ptr::write_bytes(self.frame_ptr(frame), 0, PAGE as usize) }
    }

    fn copy_in(&mut self, frame: Frame, offset: usize, bytes: &[u8]) {
        let n = bytes.len().min(PAGE as usize - offset.min(PAGE as usize));
        // SAFETY: as for `zero`; `offset + n` stays inside the frame.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.frame_ptr(frame).add(offset), n)
        }
    }

    fn submit(&mut self, req: IoRequest) -> Result<(), IoRequest> {
        // The policy hands over at most `max_io` (the connections) at once,
        // so a connection is free.
        self.send(req)
    }
}

impl World {
    /// Sends `req` on a free disk connection (there is one).
    fn send(&mut self, req: IoRequest) -> Result<(), IoRequest> {
        let Some(link) = self.disk.iter_mut().find(|(_, r)| r.is_none()) else { return Err(req) };
        let sector = self.swap_start + req.slot.first_sector();
        let phys = self.pool.phys + req.frame.0 as u64 * PAGE;
        let sectors = (PAGE / blk::SECTOR_SIZE) as u32;
        let m = match req.kind {
            IoKind::Write => blk::Request::write(req.tag.0, sector, sectors, phys),
            IoKind::Read => blk::Request::read(req.tag.0, sector, sectors, phys),
        };
        match link.0.send(&m.encode()) {
            Ok(()) => {
                link.1 = Some(req);
                Ok(())
            }
            Err(_) => Err(req),
        }
    }
}

/// Fills a new task from its image: each segment's pages get the image's
/// bytes (the tail of a segment and its `.bss` start zero-filled), the main
/// stack is reserved, and the start page is given a frame for the kernel
/// to write the start information into.
fn fill(memd: &mut Memd, w: &mut World, task: TaskId, image_len: u64) -> Result<(), Error> {
    let mut image = Vec::new();
    image.try_reserve_exact(image_len as usize).map_err(|_| {
        println!("memd: no room for an image of {} bytes", image_len);
        Error::OutOfMemory
    })?;
    image.resize(image_len as usize, 0);
    let mut off = 0;
    while off < image_len {
        let n = (image_len - off).min(alux_abi::syscall::SPAWN_READ_MAX as u64);
        pager::spawn_read(task, off, &mut image[off as usize..(off + n) as usize])?;
        off += n;
    }
    let plan = alux_elf::plan(&image).map_err(|_| Error::BadImage)?;
    let policy = |e| {
        println!("memd: filling task {}: {:?}", task, e);
        Error::OutOfMemory
    };
    for seg in &plan.segments {
        let perms = match (seg.writable, seg.executable) {
            (true, _) => Perms::RW,
            (false, true) => Perms::RX,
            (false, false) => Perms::R,
        };
        let first = seg.vaddr & !(PAGE - 1);
        let end = (seg.vaddr + seg.mem_size).next_multiple_of(PAGE);
        memd.reserve_at(task, first, end - first, perms, Init::Image).map_err(policy)?;
        let (file_start, file_end) = (seg.vaddr, seg.vaddr + seg.file_size);
        let mut page = first;
        while page < end {
            let lo = page.max(file_start);
            let hi = (page + PAGE).min(file_end);
            if lo < hi {
                let mut bytes = [0u8; PAGE as usize];
                let src = (seg.file_offset + (lo - seg.vaddr)) as usize;
                let at = (lo - page) as usize;
                bytes[at..at + (hi - lo) as usize]
                    .copy_from_slice(&image[src..src + (hi - lo) as usize]);
                populate(memd, w, task, page, &bytes[..at + (hi - lo) as usize])?;
            }
            page += PAGE;
        }
    }
    memd.reserve_at(task, STACK_TOP - MAIN_STACK, MAIN_STACK, Perms::RW, Init::Zero)
        .map_err(policy)?;
    // The start page: the kernel writes into it at `SpawnFinish`.
    memd.reserve_at(task, STACK_TOP, PAGE, Perms::RW, Init::Image).map_err(policy)?;
    populate(memd, w, task, STACK_TOP, &[])?;
    Ok(())
}

/// Puts bytes into a page of a task being filled, waiting for the disk if
/// the pool must make room first.
fn populate(
    memd: &mut Memd,
    w: &mut World,
    task: TaskId,
    va: u64,
    bytes: &[u8],
) -> Result<(), Error> {
    loop {
        match memd.populate(w, task, va, bytes) {
            Ok(Populate::Done) => return Ok(()),
            Ok(Populate::NoFrame) => {
                // A frame frees when the disk completes a write, or when
                // the clock finds one at its next tick.
                if !disk_progress(memd, w) {
                    if !memd.needs_tick() {
                        println!("memd: no frame for task {} and nothing will free one", task);
                        return Err(Error::OutOfMemory);
                    }
                    alux_rt::time::sleep(TICK);
                    memd.tick(w);
                }
            }
            Err(e) => {
                println!("memd: populating task {} at {:#x}: {:?}", task, va, e);
                return Err(Error::OutOfMemory);
            }
        }
    }
}

/// Waits for one disk completion and hands it to the policy; false if no
/// request is in flight (nothing will ever free a frame).
fn disk_progress(memd: &mut Memd, w: &mut World) -> bool {
    if w.disk.iter().all(|(_, r)| r.is_none()) {
        return false;
    }
    let handles: Vec<Handle> = w.disk.iter().map(|(c, _)| c.handle()).collect();
    let Ok(ready) = ipc::poll(&handles, None) else { return false };
    disk_completion(memd, w, ready.handle);
    true
}

fn disk_completion(memd: &mut Memd, w: &mut World, h: Handle) {
    let Some(i) = w.disk.iter().position(|(c, _)| c.handle() == h) else { return };
    let Ok(m) = w.disk[i].0.read() else { return };
    let Ok(c) = blk::Completion::decode(m.bytes()) else { return };
    match w.disk[i].1 {
        Some(req) if req.tag.0 == c.tag => {
            w.disk[i].1 = None;
            if c.status != blk::Status::Ok {
                println!(
                    "memd: disk {:?} of slot {} failed: {}",
                    req.kind,
                    req.slot.0,
                    c.status.name()
                );
            }
            if c.status == blk::Status::Busy {
                // The driver had no room: the request goes back to the
                // policy's queue, still owning its frame.
                let _ = memd.io_retry(Tag(c.tag));
            } else {
                let _ = memd.io_done(w, Tag(c.tag), c.status == blk::Status::Ok);
            }
        }
        // A late or foreign completion: not ours to act on.
        _ => {}
    }
}

fn access_of(bits: u64) -> Access {
    if bits & access::EXEC != 0 {
        Access::Exec
    } else if bits & access::WRITE != 0 {
        Access::Write
    } else {
        Access::Read
    }
}

fn pager_event(memd: &mut Memd, w: &mut World, e: PagerEvent) {
    match e {
        PagerEvent::Fault { fault, task, addr, access: bits, .. } => {
            let (va, how) = (addr & !(PAGE - 1), access_of(bits));
            if bits & access::SYSCALL != 0 {
                // A system call met the page: a range the task never
                // reserved makes the call fail (`BadAddress`, as without
                // memd), not the task die.
                if !memd.allows(task, va, how) {
                    let _ = pager::resolve(fault, verdict::ERROR);
                    return;
                }
                w.syscall_faults.insert(fault);
            }
            if let FaultOutcome::Killed(_) = memd.fault(w, task, FaultId(fault), va, how) {
                // `kill` told the kernel; nothing is left to do here.
            }
        }
        PagerEvent::TaskNew { task, quota_pages, image_len, .. } => {
            let result = match memd.task_new(task, quota_pages) {
                Ok(()) => fill(memd, w, task, image_len),
                Err(e) => {
                    println!("memd: task {} cannot be served: {:?}", task, e);
                    Err(Error::OutOfMemory)
                }
            };
            if let Err(e) = result {
                println!("memd: task {} not started: {}", task, e);
                // Whatever it was given goes back.
                let _ = memd.task_gone(w, task);
            }
            let _ = pager::spawn_finish(task, result.err());
        }
        PagerEvent::TaskGone { task } => {
            let _ = memd.task_gone(w, task);
        }
    }
}

/// One client thread's connection to memd.
struct Client {
    conn: Connection,
    /// The thread at the other end.
    end: End,
}

/// Share requests waiting for their answer: the token memd-core knows
/// them by, and where the answer goes.
struct Pending {
    next: u64,
    by_token: BTreeMap<u64, (Handle, u32)>,
}

/// The protocol status of a policy error.
fn status_of(e: alux_memd_core::Error) -> Status {
    use alux_memd_core::Error as E;
    match e {
        E::OutOfMemory => Status::OutOfMemory,
        E::NoSpace => Status::NoSpace,
        E::NotReserved | E::Overlap => Status::NotReserved,
        E::NoSuchTask => Status::NoSuchTask,
        E::Dying => Status::Dying,
        E::NoSuchConnection => Status::NoSuchConnection,
        E::NotAnEnd => Status::NotAnEnd,
        E::PeerNotServed => Status::PeerNotServed,
        E::AlreadyShared => Status::AlreadyShared,
        E::AlreadyAsked => Status::AlreadyAsked,
        E::SizeMismatch => Status::SizeMismatch,
        E::PeerFailed => Status::PeerFailed,
        E::TimedOut => Status::TimedOut,
        E::NotPending => Status::NotPending,
        E::InvalidArgument | E::TaskExists | E::AlreadyPresent | E::MapFailed | E::UnknownTag => {
            Status::InvalidArgument
        }
    }
}

/// Now, in the clock share deadlines use (ns since boot).
fn now_ns() -> u64 {
    alux_rt::time::now().as_nanos() as u64
}

/// A share request: memd-core answers it now or later, through
/// `send_answers`.
fn share_request(
    memd: &mut Memd,
    pending: &mut Pending,
    from: (Handle, End),
    seq: u32,
    (conn, len, wait_ms): (u64, u64, u64),
) -> Option<[u8; 32]> {
    if wait_ms == 0 || wait_ms > proto::MAX_SHARE_WAIT_MS {
        return Some(proto::encode_error(seq, proto::op::SHARE_REQUEST, Status::InvalidArgument));
    }
    // The kernel says who the ends are; the ID names one connection for
    // the kernel's lifetime, so the answer cannot change later.
    let ends = ipc::query_connection(conn).ok().map(|e| ConnEnds {
        client: End { task: TaskId::from_raw(e.client_task), thread: e.client_thread },
        server: End { task: TaskId::from_raw(e.server_task), thread: e.server_thread },
    });
    let token = pending.next;
    pending.next += 1;
    pending.by_token.insert(token, (from.0, seq));
    let deadline = now_ns().saturating_add(wait_ms * 1_000_000);
    let client = from.0.raw();
    memd.share_request(ShareAsk { token, client, from: from.1, conn, len, deadline }, ends);
    None
}

/// Sends memd-core's answers to share requests to the threads that asked.
/// A region granted on a connection that closed meanwhile (the peer's
/// request came before memd saw the close) is released at once: nobody in
/// that task knows where it is.
fn send_answers(
    memd: &mut Memd,
    w: &mut World,
    pending: &mut Pending,
    clients: &BTreeMap<Handle, Client>,
) {
    loop {
        let answers = memd.take_answers();
        if answers.is_empty() {
            return;
        }
        for a in answers {
            let Some((h, seq)) = pending.by_token.remove(&a.token) else { continue };
            let reply = match a.result {
                Ok(g) => {
                    let r = Reply::Shared { addr: g.addr, len: g.len, side: g.side };
                    proto::encode_reply(seq, &r)
                }
                Err(e) => proto::encode_error(seq, proto::op::SHARE_REQUEST, status_of(e)),
            };
            let sent = clients.get(&h).is_some_and(|c| c.conn.send(&reply).is_ok());
            if let (false, Ok(g)) = (sent, a.result) {
                let _ = memd.share_release(w, g.task, g.addr);
            }
        }
    }
}

/// Answers one client message; `None` when the answer comes later (a
/// share request waiting for the other end).
fn client_request(
    memd: &mut Memd,
    w: &mut World,
    pending: &mut Pending,
    from: (Handle, End),
    bytes: &[u8],
) -> Option<[u8; 32]> {
    let task = from.1.task;
    let (seq, req) = match proto::decode_request(bytes) {
        Ok(r) => r,
        Err(e) => return Some(proto::error_reply(bytes, e)),
    };
    let result = match req {
        Request::Reserve { len, flags } => match Perms::from_bits(flags.bits()) {
            None => Err(Status::InvalidArgument),
            Some(perms) => memd
                .reserve(task, len, perms)
                .map(|addr| Reply::Reserved { addr })
                .map_err(status_of),
        },
        Request::Release { addr, len } => {
            memd.release(w, task, addr, len).map(|()| Reply::Released).map_err(status_of)
        }
        Request::Stats { group } => {
            // Anyone may read memd's counters; the caller's own are zero for
            // a task memd does not serve.
            let c = memd.counters();
            let t = memd.task(task).unwrap_or_default();
            let [shares, shared_resident, shared_swapped] = memd.share_counts();
            let all = Stats {
                shares,
                shared_resident,
                shared_swapped,
                frames_total: c.frames_total,
                frames_free: c.frames_free,
                frames_io: c.frames_io,
                slots_total: c.slots_total,
                slots_used: c.slots_used,
                evictions: c.evictions,
                faults_zero: c.faults_zero,
                faults_swap: c.faults_swap,
                faults_minor: c.faults_minor,
                pages_out: c.pages_out,
                pages_in: c.pages_in,
                faults_killed: c.faults_killed,
                write_errors: c.write_errors,
                read_errors: c.read_errors,
                tasks: c.tasks,
                quota: t.quota,
                reserved: t.reserved,
                resident: t.resident,
            };
            let _: StatsGroup = group;
            Ok(Reply::Stats { group, values: all.group(group) })
        }
        Request::ShareRequest { conn, len, wait_ms } => {
            return share_request(memd, pending, from, seq, (conn, len, wait_ms));
        }
        Request::ShareWithdraw { conn } => match memd.share_withdraw(from.0.raw(), from.1, conn) {
            Ok(Withdrawal::Withdrawn(token)) => {
                // The withdrawn request gets no answer of its own.
                pending.by_token.remove(&token);
                Ok(Reply::ShareWithdrawn)
            }
            Ok(Withdrawal::TooLate(g)) => {
                Ok(Reply::Shared { addr: g.addr, len: g.len, side: g.side })
            }
            Err(e) => Err(status_of(e)),
        },
        Request::ShareRelease { addr } => {
            memd.share_release(w, task, addr).map(|()| Reply::ShareReleased).map_err(status_of)
        }
    };
    Some(match result {
        Ok(reply) => proto::encode_reply(seq, &reply),
        Err(status) => proto::encode_error(seq, req.opcode(), status),
    })
}

/// Connects to the block driver (`blk` in the name service), waiting up to
/// a second for it to register; `None` means no swap.
fn disk_links(start: &Start) -> Vec<(Connection, Option<IoRequest>)> {
    let Some(ns) = start.name_service() else { return Vec::new() };
    let mut tries = 0;
    let blk = loop {
        match alux_rt::names::NameService::connect(ns).and_then(|n| n.lookup("blk")) {
            Ok(t) => break t,
            Err(_) if tries < 1000 => {
                tries += 1;
                alux_rt::time::sleep(core::time::Duration::from_millis(1));
            }
            Err(_) => return Vec::new(),
        }
    };
    (0..DISK_LINKS).filter_map(|_| ipc::connect(blk, None).ok()).map(|c| (c, None)).collect()
}

fn main(start: &Start) -> u64 {
    let (end, pool) = match pager::attach() {
        Ok(x) => x,
        Err(e) => {
            println!("memd: cannot attach as the pager: {}", e);
            return 1;
        }
    };
    // Say we are here: spawners wait for this name before they start
    // unprivileged tasks, which from now on are all paged by memd. The
    // name lives as long as this connection.
    let _name = start.name_service().and_then(|ns| {
        let n = alux_rt::names::NameService::connect(ns).ok()?;
        n.register("memd").ok()?;
        Some(n)
    });
    let disk = if start.arg_value("swap_mib") == Some(0) { Vec::new() } else { disk_links(start) };
    // The whole default disk of `cargo xtask run` (1 GiB); requests past a
    // smaller disk's end fail, and their pages stay in memory.
    let swap_mib = start.arg_value("swap_mib").unwrap_or(1024);
    let swap_slots = if disk.is_empty() { 0 } else { (swap_mib << 20) / PAGE };
    let mut cfg = Config::new(pool.frames as u32, swap_slots as u32);
    // One request per disk connection: the policy queues the rest.
    cfg.max_io = disk.len().max(1) as u32;
    // A task may reserve 1 GiB unless its spawner says less: with swap,
    // more than the guest's RAM.
    cfg.default_quota = (1 << 30) / PAGE;
    let Ok(mut memd) = Memd::new(cfg) else {
        println!("memd: cannot set up the policy");
        return 1;
    };
    if swap_slots == 0 {
        println!("memd: pool of {} frames ({} MiB); no swap", pool.frames, pool.frames >> 8);
    } else {
        println!(
            "memd: pool of {} frames ({} MiB); swap {} MiB on blk",
            pool.frames,
            pool.frames >> 8,
            swap_mib
        );
    }
    let mut w = World {
        pool,
        syscall_faults: BTreeSet::new(),
        disk,
        swap_start: start.arg_value("swap_start").unwrap_or(0),
    };
    let mut listener = Listener::new();
    let mut clients: BTreeMap<Handle, Client> = BTreeMap::new();
    let mut pending = Pending { next: 1, by_token: BTreeMap::new() };
    let end = Handle::from_raw(end);
    loop {
        // Deadlines pass whether or not memd's receive ever times out.
        if memd.next_deadline().is_some_and(|d| d <= now_ns()) {
            memd.share_expire(now_ns());
        }
        send_answers(&mut memd, &mut w, &mut pending, &clients);
        listener.refill(PORTS);
        let tick = memd.needs_tick().then_some(TICK);
        let expiry = memd
            .next_deadline()
            .map(|d| core::time::Duration::from_nanos(d.saturating_sub(now_ns())));
        let timeout = match (tick, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let r = match ipc::receive(timeout) {
            Ok(r) => r,
            Err(Error::TimedOut) => {
                memd.share_expire(now_ns());
                if memd.needs_tick() {
                    memd.tick(&mut w);
                }
                continue;
            }
            Err(_) => continue,
        };
        if r.handle == end {
            // The doorbell: take every event the kernel queued.
            while let Ok(Some(e)) = pager::next() {
                pager_event(&mut memd, &mut w, e);
            }
            continue;
        }
        if w.disk.iter().any(|(c, _)| c.handle() == r.handle) {
            disk_completion(&mut memd, &mut w, r.handle);
            continue;
        }
        if r.events.contains(Events::OPENED) {
            if let Some(conn) = listener.accept(r.handle) {
                // The client's thread, for share requests: its end of the
                // connection it names must be that thread's.
                let end = conn
                    .info()
                    .and_then(|i| ipc::query_connection(i.conn_id))
                    .map(|e| End { task: TaskId::from_raw(e.client_task), thread: e.client_thread })
                    .unwrap_or(End { task: TaskId::from_raw(0), thread: 0 });
                clients.insert(r.handle, Client { conn, end });
            }
        }
        if r.events.contains(Events::SIGNAL) {
            if let Some(c) = clients.get(&r.handle) {
                let from = (r.handle, c.end);
                let reply =
                    client_request(&mut memd, &mut w, &mut pending, from, r.message.bytes());
                if let Some(reply) = reply {
                    let _ = c.conn.send(&reply);
                }
            }
        }
        if r.events.contains(Events::PEER_CLOSED) && clients.contains_key(&r.handle) {
            // The thread ended (or gave up this connection): the share
            // requests it carried go unanswered; regions stay the task's.
            memd.share_forget(r.handle.raw());
            pending.by_token.retain(|_, (h, _)| *h != r.handle);
        }
        if r.events.contains(Events::PEER_CLOSED) && clients.remove(&r.handle).is_some() {
            // Renew the queued ports: ones made while many ends were live
            // sit high in the kernel's end table and would keep it from
            // shrinking back.
            listener.renew();
        }
    }
}

alux_rt::entry!(main);
