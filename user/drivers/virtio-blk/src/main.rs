//! The virtio-blk driver task: finds the disk on the PCI bus, sets it up
//! through the virtio 1.x PCI transport, and serves the block protocol
//! (`alux-blk-proto`) to clients over basic IPC, registered with the name
//! service as `blk`.
//!
//! It owns the device while it lives: one request queue, the interrupt
//! line's kernel end, and a pin on every client buffer the device may
//! touch. It never waits on a client: a single thread receives requests
//! and interrupts and answers each connection with one completion per
//! request. Everything a client sends and everything the device writes
//! back is checked; a bad request gets its status, a hostile device entry
//! fails its request, and nothing a client does crashes the driver.
//!
//! One request is in flight per connection (a connection's buffer holds
//! one message); a client wanting several opens several connections, at
//! most [`PER_TASK`] per task and [`MAX_CONNECTIONS`] in all.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use alux_abi::ipc::{info_flags, Events, Handle};
use alux_abi::TaskId;
use alux_blk_proto::{Checked, Completion, Limits, Operation, Request, Status, SECTOR_SIZE};
use alux_pci::ConfigAccess;
use alux_rt::dev::Mmio;
use alux_rt::dev::{DmaRegion, Interrupt, IoPorts, Pin};
use alux_rt::ipc::{self, Connection, Listener};
use alux_rt::names::{NameError, NameService};
use alux_rt::{println, Start};
use alux_virtio_pci::{Regs, SetupError, Structures, Transport};
use alux_virtq::{AddError, Buffer, Layout, RingMemory, SplitQueue, UsedError};

/// Connections served at once (each may have one request in flight).
const MAX_CONNECTIONS: usize = 64;
/// Connections one client task may hold.
const PER_TASK: usize = 16;
/// Ports kept in the listen queue.
const LISTEN_PORTS: usize = 8;
/// Largest request: what one `DmaAlloc` can give a client (2 MiB).
const MAX_SECTORS: u32 = (alux_abi::syscall::DMA_ALLOC_MAX as u64 / SECTOR_SIZE) as u32;

/// virtio-blk feature bits (virtio 1.x §5.2.3).
mod feature {
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const VERSION_1: u64 = alux_virtio_pci::F_VERSION_1;
}

/// virtio-blk request types and status bytes.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const S_OK: u8 = 0;
const S_UNSUPP: u8 = 2;
/// What the status byte holds until the device writes it.
const S_UNSET: u8 = 0xff;

/// The header/status slab: per connection slot, a 16-byte request header
/// at `16 * slot` and a status byte at `STATUS_BASE + slot`.
const STATUS_BASE: usize = 16 * MAX_CONNECTIONS;

/// Configuration space through the granted `0xcf8`/`0xcfc` ports.
struct CamPorts(IoPorts);

impl ConfigAccess for CamPorts {
    fn read32(&mut self, address: alux_pci::Address, offset: u8) -> u32 {
        self.0.out32(alux_pci::CAM_ADDRESS_PORT, alux_pci::cam_address(address, offset));
        self.0.in32(alux_pci::CAM_DATA_PORT)
    }
    fn write32(&mut self, address: alux_pci::Address, offset: u8, value: u32) {
        self.0.out32(alux_pci::CAM_ADDRESS_PORT, alux_pci::cam_address(address, offset));
        self.0.out32(alux_pci::CAM_DATA_PORT, value)
    }
}

/// The BAR holding the virtio structures, as `alux-virtio-pci` reaches it.
struct Bar(Mmio);

impl Regs for Bar {
    fn read8(&self, o: usize) -> u8 {
        self.0.read8(o)
    }
    fn read16(&self, o: usize) -> u16 {
        self.0.read16(o)
    }
    fn read32(&self, o: usize) -> u32 {
        self.0.read32(o)
    }
    fn write8(&self, o: usize, v: u8) {
        self.0.write8(o, v)
    }
    fn write16(&self, o: usize, v: u16) {
        self.0.write16(o, v)
    }
    fn write32(&self, o: usize, v: u32) {
        self.0.write32(o, v)
    }
}

/// The ring area, as `alux-virtq` reaches it.
struct Rings(DmaRegion);

impl RingMemory for Rings {
    fn read16(&self, o: usize) -> u16 {
        self.0.read16(o)
    }
    fn read32(&self, o: usize) -> u32 {
        self.0.read32(o)
    }
    fn write16(&mut self, o: usize, v: u16) {
        self.0.write16(o, v)
    }
    fn write32(&mut self, o: usize, v: u32) {
        self.0.write32(o, v)
    }
    fn write64(&mut self, o: usize, v: u64) {
        self.0.write64(o, v)
    }
    fn fence(&self) {
        self.0.fence()
    }
}

/// Where a connection's request is.
enum Job {
    /// No request.
    Idle,
    /// Accepted, waiting for room in the queue (buffer pinned).
    Waiting(Checked, Option<Pin>),
    /// On the device under this head descriptor.
    InFlight { request: Request, head: u16, _pin: Option<Pin> },
}

struct Client {
    /// `None` once the client closed while its request was on the device.
    conn: Option<Connection>,
    task: TaskId,
    privileged: bool,
    job: Job,
}

struct Driver {
    dev: Transport<Bar>,
    queue: SplitQueue,
    rings: Rings,
    slab: DmaRegion,
    limits: Limits,
    features: u64,
    /// Connection slots; slot `i` owns header `i` of the slab.
    clients: Vec<Option<Client>>,
    by_handle: BTreeMap<Handle, usize>,
    /// Head descriptor -> slot.
    owner: Vec<u16>,
    /// Slots with a request waiting for queue room, oldest first.
    waiting: VecDeque<usize>,
    completions: u64,
    interrupts: u64,
    /// Most requests on the device at once so far.
    most_in_flight: u16,
    /// Completions not yet sent: `(slot, completion)`.
    replies: Vec<(usize, Completion)>,
}

fn setup(start: &Start) -> Result<(Driver, Interrupt, alux_pci::Address), &'static str> {
    let ports = IoPorts::grant(alux_pci::CAM_ADDRESS_PORT, 8).map_err(|_| "no PCI ports")?;
    let mut cam = CamPorts(ports);
    let f = alux_pci::enumerate(&mut cam)
        .find(|f| f.header.vendor_id == 0x1af4 && f.header.device_id == 0x1042)
        .or_else(|| {
            // A transitional device that also speaks virtio 1.x.
            alux_pci::enumerate(&mut cam)
                .find(|f| f.header.vendor_id == 0x1af4 && f.header.device_id == 0x1001)
        })
        .ok_or("no virtio-blk device")?;
    // Before the device may touch memory: if this task dies, the kernel
    // stops the device's DMA before freeing the rings and client pins.
    let a = f.address;
    alux_rt::dev::claim_device(a.bus(), a.device(), a.function())
        .map_err(|_| "the device is claimed by another driver")?;
    let bars = alux_pci::bars(&mut cam, f.address, &f.header).map_err(|e| {
        println!("virtio-blk {}: {}", f.address, e);
        "cannot read the BARs"
    })?;
    let mut caps = Vec::new();
    for c in alux_pci::capabilities(&mut cam, f.address, &f.header) {
        match c {
            Ok(alux_pci::Capability { kind: alux_pci::CapabilityKind::Virtio(v), .. }) => {
                caps.push(v)
            }
            Ok(_) => {}
            Err(e) => {
                println!("virtio-blk {}: {}", f.address, e);
                return Err("malformed capability list");
            }
        }
    }
    let s = Structures::locate(caps, &bars).map_err(|e| {
        println!("virtio-blk {}: {:?}", f.address, e);
        "no usable virtio structures"
    })?;
    // The BAR is decoded and the device may master the bus before it is
    // used; INTx stays enabled (our interrupts come through it).
    alux_pci::update_command(
        &mut cam,
        f.address,
        alux_pci::regs::COMMAND_MEMORY | alux_pci::regs::COMMAND_BUS_MASTER,
        alux_pci::regs::COMMAND_INTX_DISABLE,
    );
    let len = usize::try_from(s.bar_size).map_err(|_| "BAR too large")?;
    let bar = Mmio::map(s.bar_phys, len).map_err(|e| {
        println!("virtio-blk {}: MmioMap {:#x}+{:#x}: {}", f.address, s.bar_phys, len, e);
        "cannot map the BAR"
    })?;
    let mut dev = Transport::new(Bar(bar), s);
    // virtio §3.1.1: reset, acknowledge, driver, features, queue, DRIVER_OK.
    let features = dev.negotiate(feature::FLUSH | feature::RO | feature::BLK_SIZE).map_err(
        |e: SetupError| {
            println!("virtio-blk {}: {:?}", f.address, e);
            "feature negotiation failed"
        },
    )?;
    let max = dev.queue_max(0);
    let size = [256u16, 128, 64, 32, 16, 8, 4, 2, 1].into_iter().find(|&s| s <= max);
    let layout = size.and_then(Layout::new).ok_or("no usable queue 0")?;
    let rings = DmaRegion::alloc(layout.total()).map_err(|_| "no DMA memory for the rings")?;
    let slab = DmaRegion::alloc(STATUS_BASE + MAX_CONNECTIONS).map_err(|_| "no DMA memory")?;
    let base = rings.phys();
    dev.setup_queue(
        0,
        layout.size(),
        base + layout.descriptors() as u64,
        base + layout.avail() as u64,
        base + layout.used() as u64,
    )
    .map_err(|_| "queue set-up failed")?;
    let capacity = dev.device_read64(0).ok_or("no capacity")?;
    let line = {
        let h = alux_pci::Header::read(&mut cam, f.address).map_err(|_| "header")?;
        h.interrupt_line
    };
    let irq = Interrupt::open(line).map_err(|e| {
        println!("virtio-blk: interrupt line {}: {}", line, e);
        "cannot open the interrupt line"
    })?;
    dev.driver_ok();
    let read_only = features & feature::RO != 0;
    let mut names = alloc::string::String::new();
    for (bit, name) in [
        (feature::VERSION_1, "VERSION_1"),
        (feature::FLUSH, "FLUSH"),
        (feature::RO, "RO"),
        (feature::BLK_SIZE, "BLK_SIZE"),
    ] {
        if features & bit != 0 {
            names.push(' ');
            names.push_str(name);
        }
    }
    println!(
        "virtio-blk {}: {} sectors ({} MiB), features{}, queue {}, irq {}, task {}",
        f.address,
        capacity,
        capacity / 2048,
        names,
        layout.size(),
        line,
        start.task
    );
    let mut clients = Vec::new();
    clients.resize_with(MAX_CONNECTIONS, || None);
    Ok((
        Driver {
            dev,
            queue: SplitQueue::new(layout),
            rings: Rings(rings),
            slab,
            limits: Limits { capacity, max_sectors: MAX_SECTORS, read_only },
            features,
            clients,
            by_handle: BTreeMap::new(),
            owner: alloc::vec![u16::MAX; layout.size() as usize],
            waiting: VecDeque::new(),
            completions: 0,
            interrupts: 0,
            most_in_flight: 0,
            replies: Vec::new(),
        },
        irq,
        f.address,
    ))
}

impl Driver {
    /// Slots in use (connections, and closed ones whose request is still
    /// on the device).
    fn used_slots(&self) -> usize {
        self.clients.iter().filter(|c| c.is_some()).count()
    }

    /// A connection was opened: give it a slot, or close it if the client
    /// task holds too many.
    fn open(&mut self, conn: Connection) {
        let Ok(info) = conn.info() else { return };
        let task = info.peer_task_id();
        let held = self.clients.iter().flatten().filter(|c| c.task == task).count();
        let Some(slot) = self.clients.iter().position(|c| c.is_none()) else { return };
        if held >= PER_TASK {
            return; // dropping `conn` closes it
        }
        let privileged = info.flags & info_flags::PEER_PRIVILEGED != 0;
        self.by_handle.insert(conn.handle(), slot);
        self.clients[slot] = Some(Client { conn: Some(conn), task, privileged, job: Job::Idle });
    }

    /// The client of `handle` closed its end.
    fn closed(&mut self, handle: Handle) {
        let Some(slot) = self.by_handle.remove(&handle) else { return };
        let Some(c) = self.clients[slot].as_mut() else { return };
        c.conn = None;
        match core::mem::replace(&mut c.job, Job::Idle) {
            // On the device: the slot (and the pin) wait for the completion.
            j @ Job::InFlight { .. } => c.job = j,
            // Not yet on the device: forget it (drops the pin).
            Job::Waiting(..) | Job::Idle => {
                self.waiting.retain(|&s| s != slot);
                self.clients[slot] = None;
            }
        }
    }

    /// Queues `completion` for the client in `slot`; the main loop sends
    /// it (the last one together with its next receive).
    fn answer(&mut self, slot: usize, completion: Completion) {
        self.replies.push((slot, completion));
    }

    /// Sends every queued completion but the last, and returns the last
    /// (its connection and bytes) for `SendReceive`.
    fn flush_replies(&mut self) -> Option<(usize, [u8; alux_blk_proto::COMPLETION_LEN])> {
        let last = self.replies.pop();
        for (slot, c) in self.replies.drain(..) {
            if let Some(Some(Client { conn: Some(conn), .. })) = self.clients.get(slot) {
                let _ = conn.send(&c.encode());
            }
        }
        last.map(|(slot, c)| (slot, c.encode()))
    }

    /// A message on the connection in `slot`.
    fn request(&mut self, slot: usize, bytes: &[u8]) {
        let Some(c) = self.clients[slot].as_ref() else { return };
        if !matches!(c.job, Job::Idle) {
            // A second request before the first's completion: the protocol
            // allows one; the in-flight one is answered, this one dropped.
            return;
        }
        let tag = bytes.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        if !c.privileged {
            self.answer(slot, Completion { tag, status: Status::NotPrivileged, sectors: 0 });
            return;
        }
        let checked = match Request::decode(bytes).and_then(|r| r.check(&self.limits)) {
            Ok(c) => c,
            Err(refusal) => return self.answer(slot, refusal.completion()),
        };
        let r = *checked.request();
        if r.op == Operation::Flush && self.features & feature::FLUSH == 0 {
            return self.answer(slot, checked.complete(Status::Unsupported));
        }
        let pin = if r.op == Operation::Flush {
            None
        } else {
            match Pin::new(r.buffer, r.bytes()) {
                Ok(p) => Some(p),
                Err(alux_rt::Error::LimitReached) => {
                    return self.answer(slot, checked.complete(Status::Busy))
                }
                Err(_) => return self.answer(slot, checked.complete(Status::BadBuffer)),
            }
        };
        if let Some(c) = self.clients[slot].as_mut() {
            c.job = Job::Waiting(checked, pin);
        }
        self.waiting.push_back(slot);
        self.submit_waiting();
    }

    /// Puts waiting requests on the device while the queue has room.
    fn submit_waiting(&mut self) {
        let mut notify = false;
        while let Some(&slot) = self.waiting.front() {
            let Some(c) = self.clients[slot].as_mut() else {
                self.waiting.pop_front();
                continue;
            };
            let Job::Waiting(checked, _) = &c.job else {
                self.waiting.pop_front();
                continue;
            };
            let r = *checked.request();
            let (kind, sector) = match r.op {
                Operation::Read => (T_IN, r.first_sector),
                Operation::Write => (T_OUT, r.first_sector),
                Operation::Flush => (T_FLUSH, 0),
            };
            let mut header = [0u8; 16];
            header[0..4].copy_from_slice(&kind.to_le_bytes());
            header[8..16].copy_from_slice(&sector.to_le_bytes());
            self.slab.write(16 * slot, &header);
            self.slab.write(STATUS_BASE + slot, &[S_UNSET]);
            let phys = self.slab.phys();
            let head = Buffer { phys: phys + 16 * slot as u64, len: 16, device_writes: false };
            let st =
                Buffer { phys: phys + (STATUS_BASE + slot) as u64, len: 1, device_writes: true };
            let data = Buffer {
                phys: r.buffer,
                len: r.bytes() as u32,
                device_writes: r.op == Operation::Read,
            };
            let added = if r.op == Operation::Flush {
                self.queue.add(&mut self.rings, &[head, st])
            } else {
                self.queue.add(&mut self.rings, &[head, data, st])
            };
            match added {
                Ok(h) => {
                    self.waiting.pop_front();
                    self.owner[h as usize] = slot as u16;
                    if let Job::Waiting(_, pin) = core::mem::replace(&mut c.job, Job::Idle) {
                        c.job = Job::InFlight { request: r, head: h, _pin: pin };
                    }
                    notify = true;
                }
                Err(AddError::Full) => break,
                Err(_) => {
                    self.waiting.pop_front();
                    c.job = Job::Idle;
                    let done = Completion { tag: r.tag, status: Status::IoError, sectors: 0 };
                    self.answer(slot, done);
                }
            }
        }
        let n = self.queue.in_flight();
        if n > self.most_in_flight {
            self.most_in_flight = n;
            if n.is_power_of_two() && n >= 2 {
                println!("virtio-blk: {} requests in flight", n);
            }
        }
        if notify && self.queue.needs_notify(&self.rings) {
            self.dev.notify(0);
        }
    }

    /// Finishes the request of the chain at `head` with a device status
    /// (or `None` when the device's entry for it was malformed).
    fn finish(&mut self, head: u16, device_status: Option<u8>) {
        let Some(&slot) = self.owner.get(head as usize) else { return };
        let slot = slot as usize;
        self.owner[head as usize] = u16::MAX;
        let Some(c) = self.clients.get_mut(slot).and_then(|c| c.as_mut()) else { return };
        let Job::InFlight { request, head: h, .. } = core::mem::replace(&mut c.job, Job::Idle)
        else {
            return;
        };
        debug_assert_eq!(h, head);
        self.completions += 1;
        // The job (and its pin) is dropped: the buffer is the client's again.
        let (status, sectors) = match device_status {
            Some(S_OK) => (Status::Ok, request.sectors),
            Some(S_UNSUPP) => (Status::Unsupported, 0),
            _ => (Status::IoError, 0),
        };
        if c.conn.is_none() {
            self.clients[slot] = None;
            return;
        }
        self.answer(slot, Completion { tag: request.tag, status, sectors });
    }

    /// The device interrupted: take every completion.
    fn interrupt(&mut self) {
        self.interrupts += 1;
        let _ = self.dev.isr();
        while let Some(used) = self.queue.pop_used(&self.rings) {
            match used {
                Ok(u) => {
                    let slot = self.owner.get(u.head as usize).copied().unwrap_or(u16::MAX);
                    let mut s = [S_UNSET];
                    if (slot as usize) < MAX_CONNECTIONS {
                        self.slab.read(STATUS_BASE + slot as usize, &mut s);
                    }
                    self.finish(u.head, Some(s[0]));
                }
                Err(UsedError::BadLength { head, len }) => {
                    println!("virtio-blk: device claimed {} bytes for chain {}", len, head);
                    self.finish(head, None);
                }
                Err(e) => println!("virtio-blk: bad used entry: {:?}", e),
            }
        }
        if self.queue.is_broken() {
            // The device broke the ring: fail everything on it and stop it.
            self.dev.fail();
            for head in 0..self.owner.len() as u16 {
                if self.queue.is_in_flight(head) {
                    self.finish(head, None);
                }
            }
        }
        self.submit_waiting();
    }
}

fn main(start: &Start) -> u64 {
    let (mut d, irq, _address) = match setup(start) {
        Ok(x) => x,
        Err(why) => {
            println!("virtio-blk: {}", why);
            return 1;
        }
    };
    // Register as `blk` once ready; the name lives as long as `_ns`.
    // A driver that died a moment ago may still hold the name: retry.
    let _ns = match start.name_service().map(NameService::connect) {
        Some(Ok(ns)) => {
            let mut tries = 0;
            loop {
                match ns.register("blk") {
                    Ok(()) => break Some(ns),
                    Err(NameError::Taken) if tries < 100 => {
                        tries += 1;
                        alux_rt::time::sleep(core::time::Duration::from_millis(50));
                    }
                    Err(e) => {
                        println!("virtio-blk: cannot register as blk: {:?}", e);
                        return 2;
                    }
                }
            }
        }
        _ => None,
    };
    println!("virtio-blk: ready");
    let mut listener = Listener::new();
    loop {
        if listener.len() < LISTEN_PORTS {
            // Only then count the slots: `used_slots` walks the whole
            // table, and the queue is full on almost every pass.
            listener.refill(LISTEN_PORTS.min(MAX_CONNECTIONS.saturating_sub(d.used_slots())));
        }
        // The last completion goes out with the next receive, in one call.
        let received = match d.flush_replies() {
            Some((slot, bytes)) => match d.clients.get(slot) {
                Some(Some(Client { conn: Some(conn), .. })) => ipc::send_receive(conn, &bytes),
                _ => ipc::receive(None),
            },
            None => ipc::receive(None),
        };
        let Ok(r) = received else { continue };
        if r.handle == irq.handle() {
            if r.events.contains(Events::SIGNAL) {
                d.interrupt();
                // The device stopped asserting when its ISR was read.
                let _ = irq.acknowledge();
            }
            continue;
        }
        if r.events.contains(Events::OPENED) {
            if let Some(conn) = listener.accept(r.handle) {
                d.open(conn);
            }
        }
        if r.events.contains(Events::SIGNAL) {
            if let Some(&slot) = d.by_handle.get(&r.handle) {
                d.request(slot, r.message.bytes());
            }
        }
        if r.events.contains(Events::PEER_CLOSED) {
            d.closed(r.handle);
        }
    }
}
alux_rt::entry!(main);
