//! Device access for privileged drivers: I/O port grants (the TSS I/O
//! bitmap), device memory mapped uncached, and DMA memory (physically
//! contiguous RAM whose physical address the driver learns).
//!
//! It owns the checks these calls make: privilege, ranges the kernel keeps
//! for itself, exclusive claims between tasks, and the per-task page limit.
//! It must never hand a task RAM through `MmioMap`, a port the kernel
//! drives, or a range another task holds; and everything granted goes back
//! when the task ends (`Kernel::end_task`).

use crate::sched::Kernel;
use alloc::vec;
use alloc::vec::Vec;
use alux_abi::{Error, TaskId};
use kernel::claims::{ClaimError, IoBitmap, Range};
use kernel::frame::MemoryRegion;
use kernel::paging::{PageFlags, PAGE_SIZE};
use kernel::pins::PinError;
use kernel::syscall::SysResult;

/// The ports the kernel drives itself, which no task may be granted: the
/// 8259 PICs (masked for good), the PIT (TSC calibration), the PC speaker
/// gate, the CMOS/NMI-mask index, COM1 (the console) and QEMU's exit port.
pub fn kernel_ports() -> Vec<Range> {
    vec![
        Range::new(0x20, 0x22),
        Range::new(0x40, 0x44),
        Range::new(0x61, 0x62),
        Range::new(0x70, 0x72),
        Range::new(0xa0, 0xa2),
        Range::new(0xf4, 0xf5),
        Range::new(0x3f8, 0x400),
    ]
}

/// The physical ranges `MmioMap` refuses: everything the firmware's memory
/// map describes (RAM, ACPI tables, firmware), so that only device windows
/// remain, and the interrupt controllers the kernel drives (`kernel_mmio`:
/// the local APIC and I/O APIC pages).
pub fn device_memory_forbidden(memory: &[MemoryRegion], kernel_mmio: &[u64]) -> Vec<Range> {
    let mut v: Vec<Range> =
        memory.iter().map(|r| Range::new(r.base, r.base.saturating_add(r.length))).collect();
    v.extend(kernel_mmio.iter().map(|&a| {
        let page = a & !(PAGE_SIZE - 1);
        Range::new(page, page + PAGE_SIZE)
    }));
    v
}

fn claim_error(e: ClaimError) -> Error {
    match e {
        ClaimError::Empty => Error::InvalidArgument,
        ClaimError::Kernel | ClaimError::Other => Error::InUse,
        ClaimError::OutOfMemory => Error::OutOfMemory,
        ClaimError::Limit => Error::LimitReached,
    }
}

fn require_privileged(k: &Kernel, task: TaskId) -> Result<(), Error> {
    match k.task(task) {
        Some(t) if t.privileged => Ok(()),
        _ => Err(Error::NotPrivileged),
    }
}

/// `IoPortGrant`: lets `task` use ports `first..first + count`.
pub fn io_port_grant(k: &mut Kernel, task: TaskId, first: u16, count: u32) -> SysResult {
    require_privileged(k, task)?;
    let range = Range::new(first as u64, first as u64 + count as u64);
    let new_record = k.ports.claim(range, task).map_err(claim_error)?;
    let t = k.task_mut(task).ok_or(Error::NoSuchTask)?;
    if t.io_ports.is_none() {
        match IoBitmap::deny_all() {
            Some(b) => t.io_ports = Some(b),
            None => {
                if new_record {
                    k.ports.release(range, task);
                }
                return Err(Error::OutOfMemory);
            }
        }
    }
    let t = k.task_mut(task).ok_or(Error::NoSuchTask)?;
    if let Some(map) = t.io_ports.as_mut() {
        map.allow(range);
    }
    let threads = t.threads.clone();
    for id in threads {
        if let Some(th) = k.thread_mut(id) {
            th.io = true;
        }
    }
    // The caller goes on running without a switch: load its new bitmap now.
    k.forget_io(task);
    k.switch_io(Some(task));
    Ok([0; 4])
}

/// Maps `pages` physically contiguous frames from `phys` at `base` in
/// `task` (a guard page follows them); on success the task's counters take
/// `owned` pages and `cost` charged frames. On failure nothing stays
/// mapped (and no frame is freed).
fn map_run(
    k: &mut Kernel,
    task: TaskId,
    base: u64,
    phys: u64,
    pages: u64,
    flags: PageFlags,
    (owned, cost): (u64, usize),
) -> Result<u64, Error> {
    let (t, frames) = k.task_and_frames(task).ok_or(Error::NoSuchTask)?;
    let space = t.space.as_mut().ok_or(Error::NoSuchTask)?;
    for i in 0..pages {
        if let Err(e) = space.map_frame(frames, base + i * PAGE_SIZE, phys + i * PAGE_SIZE, flags) {
            for j in 0..i {
                let _ = space.unmap(frames, base + j * PAGE_SIZE);
            }
            let root = space.root();
            k.shootdown(root);
            return Err(e);
        }
    }
    t.pages += owned as usize;
    t.charged += cost;
    debug_assert_eq!(t.charged, t.pages + space.table_frames(), "tables_needed was exact");
    t.next_map = base + (pages + 1) * PAGE_SIZE;
    Ok(base)
}

/// `MmioMap`: maps device memory `[phys, phys + len)` into `task`,
/// uncached, read-write, never executable.
pub fn mmio_map(k: &mut Kernel, task: TaskId, phys: u64, len: u64) -> SysResult {
    require_privileged(k, task)?;
    let pages = len / PAGE_SIZE;
    let range = Range::new(phys, phys + len);
    let new_record = k.mmio.claim(range, task).map_err(claim_error)?;
    // Device pages are not the task's RAM: only their page tables count.
    let (base, cost) = match k.charge_run(task, 0, pages) {
        Ok(c) => c,
        Err(e) => {
            if new_record {
                k.mmio.release(range, task);
            }
            return Err(e);
        }
    };
    let flags = PageFlags::PRESENT
        | PageFlags::USER
        | PageFlags::WRITABLE
        | PageFlags::NO_EXECUTE
        | PageFlags::CACHE_DISABLE
        | PageFlags::WRITE_THROUGH
        | PageFlags::DEVICE;
    match map_run(k, task, base, phys, pages, flags, (0, cost)) {
        Ok(addr) => Ok([addr, 0, 0, 0]),
        Err(e) => {
            k.uncharge(task, cost);
            if new_record {
                k.mmio.release(range, task);
            }
            Err(e)
        }
    }
}

/// `DmaAlloc`: maps `len` bytes of zeroed, physically contiguous RAM into
/// `task`; returns its address and physical address. The frames are the
/// task's like any it maps: counted against its limit, freed by
/// `MemUnmap` or when it ends.
pub fn dma_alloc(k: &mut Kernel, task: TaskId, len: u64) -> SysResult {
    require_privileged(k, task)?;
    let pages = len / PAGE_SIZE;
    let (base, cost) = k.charge_run(task, pages, pages)?;
    let Some(phys) = k.frames.alloc_contiguous(pages as usize) else {
        k.uncharge(task, cost);
        return Err(Error::OutOfMemory);
    };
    for i in 0..pages {
        crate::mm::zero_frame(phys + i * PAGE_SIZE);
    }
    let flags = PageFlags::PRESENT | PageFlags::USER | PageFlags::WRITABLE | PageFlags::NO_EXECUTE;
    match map_run(k, task, base, phys, pages, flags, (pages, cost)) {
        Ok(addr) => Ok([addr, phys, 0, 0]),
        Err(e) => {
            k.uncharge(task, cost);
            for i in 0..pages {
                let _ = k.frames.free(phys + i * PAGE_SIZE);
            }
            Err(e)
        }
    }
}

/// `DmaPin`: keeps `frames` frames from `first` out of reuse for `task`'s
/// device. `task` must have claimed a device (`DeviceClaim`). Every frame
/// must be allocated RAM (a task's or the kernel's).
pub fn dma_pin(k: &mut Kernel, task: TaskId, first: u64, frames: u64) -> SysResult {
    require_privileged(k, task)?;
    // Only a driver that claimed its device pins: so when it dies, the
    // device is stopped before its pins end (`stop_devices`).
    if k.devices.ranges_of(task).next().is_none() {
        return Err(Error::NotPrivileged);
    }
    if (0..frames).any(|i| !k.frames.is_allocated(first + i * PAGE_SIZE)) {
        return Err(Error::BadAddress);
    }
    k.pins.pin(task, first, frames).map_err(|e| match e {
        PinError::Limit => Error::LimitReached,
        _ => Error::OutOfMemory,
    })?;
    Ok([0; 4])
}

/// `DmaUnpin`: ends `task`'s pin of exactly this run; frames their owner
/// let go meanwhile are freed now.
pub fn dma_unpin(k: &mut Kernel, task: TaskId, first: u64, frames: u64) -> SysResult {
    require_privileged(k, task)?;
    let free = k.pins.unpin(task, first, frames).map_err(|_| Error::InvalidArgument)?;
    for f in free {
        let _ = k.frames.free(f);
    }
    Ok([0; 4])
}

/// Maps `pages` contiguous frames from `phys` (not the task's RAM: device
/// memory, or the pager's pool) at a fresh address of `task`, charging only
/// the page tables; returns the address.
pub fn map_frames(
    k: &mut Kernel,
    task: TaskId,
    phys: u64,
    pages: u64,
    flags: PageFlags,
) -> Result<u64, Error> {
    let (base, cost) = k.charge_run(task, 0, pages)?;
    map_run(k, task, base, phys, pages, flags, (0, cost)).inspect_err(|_| k.uncharge(task, cost))
}

/// `DeviceClaim`: `task` drives PCI function `bdf`; one driver per function.
pub fn device_claim(k: &mut Kernel, task: TaskId, bdf: u16) -> SysResult {
    require_privileged(k, task)?;
    let unit = bdf as u64;
    k.devices.claim(Range::new(unit, unit + 1), task).map_err(claim_error)?;
    Ok([0; 4])
}

/// `task` is ending: every PCI function it claimed stops bus mastering
/// (its DMA) before the kernel frees its memory and its pins, and the
/// claims go.
pub fn stop_devices(k: &mut Kernel, task: TaskId) {
    for r in k.devices.ranges_of(task) {
        for bdf in r.start..r.end {
            crate::arch::cpu::pci_stop_bus_master(bdf as u16);
        }
    }
    k.devices.release_all(task);
}
