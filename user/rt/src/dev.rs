//! Device access for privileged drivers: granted I/O ports, mapped device
//! memory, DMA memory, pins on other tasks' frames, and interrupt lines.
//!
//! This module owns the runtime's only hardware-facing `unsafe` code: the
//! `in`/`out` instructions and volatile accesses to device and DMA memory.
//! Each handle type can be created only by the call that grants it
//! ([`IoPorts::grant`], [`Mmio::map`], [`DmaRegion::alloc`], [`Pin::new`],
//! [`Interrupt::open`]), and every access is checked against the granted
//! range, so safe code can reach nothing it was not given. It must never
//! hand out a Rust reference (`&[u8]`, `&mut T`) over memory a device can
//! write: all such memory is read and written by volatile copies.
//!
//! The kernel's checks stay the real boundary (an unprivileged task gets
//! `NotPrivileged` from every call here); these types keep a driver from
//! faulting itself.

use crate::sys::call;
use alux_abi::syscall::Sys;
use alux_abi::Error;
use core::ptr;
use core::sync::atomic::{fence, Ordering};

/// A range of I/O ports granted to this task by `IoPortGrant`.
#[derive(Debug)]
pub struct IoPorts {
    first: u16,
    count: u32,
}

impl IoPorts {
    /// Asks the kernel for ports `first..first + count`: `InvalidArgument`
    /// for an empty or wrapping range, `NotPrivileged`, `InUse` for a port
    /// the kernel drives or another task holds.
    pub fn grant(first: u16, count: u32) -> Result<IoPorts, Error> {
        call(Sys::IoPortGrant, [first as u64, count as u64, 0, 0, 0, 0])?;
        Ok(IoPorts { first, count })
    }

    /// The first port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// Whether `port..port + width` lies inside the grant.
    fn check(&self, port: u16, width: u32) {
        let start = port as u32;
        let first = self.first as u32;
        assert!(
            start >= first && start + width <= first + self.count,
            "port {port:#x} outside the grant"
        );
    }

    /// Reads a byte from `port` (panics outside the grant).
    pub fn in8(&self, port: u16) -> u8 {
        self.check(port, 1);
        let v: u8;
        // SAFETY: the kernel granted this port to the task (checked above),
        // so `in` cannot fault; it touches no memory.
        unsafe {
            core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nostack, nomem))
        };
        v
    }

    /// Reads 16 bits from `port`.
    pub fn in16(&self, port: u16) -> u16 {
        self.check(port, 2);
        let v: u16;
        // SAFETY: as for `in8`.
        unsafe {
            core::arch::asm!("in ax, dx", in("dx") port, out("ax") v, options(nostack, nomem))
        };
        v
    }

    /// Reads 32 bits from `port`.
    pub fn in32(&self, port: u16) -> u32 {
        self.check(port, 4);
        let v: u32;
        // SAFETY: as for `in8`.
        unsafe {
            core::arch::asm!("in eax, dx", in("dx") port, out("eax") v, options(nostack, nomem))
        };
        v
    }

    /// Writes a byte to `port`.
    pub fn out8(&self, port: u16, v: u8) {
        self.check(port, 1);
        // SAFETY: as for `in8`; a device may act on the write, which is the
        // driver's business, not memory safety's.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nostack, nomem))
        };
    }

    /// Writes 16 bits to `port`.
    pub fn out16(&self, port: u16, v: u16) {
        self.check(port, 2);
        // SAFETY: as for `out8`.
        unsafe {
            core::arch::asm!("out dx, ax", in("dx") port, in("ax") v, options(nostack, nomem))
        };
    }

    /// Writes 32 bits to `port`.
    pub fn out32(&self, port: u16, v: u32) {
        self.check(port, 4);
        // SAFETY: as for `out8`.
        unsafe {
            core::arch::asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, nomem))
        };
    }
}

/// Device memory mapped into this task by `MmioMap`: uncached, read-write,
/// never executable. It stays mapped until the task ends (the kernel does
/// not unmap device pages), so the handle has no `Drop`.
#[derive(Debug)]
pub struct Mmio {
    base: *mut u8,
    phys: u64,
    len: usize,
}

impl Mmio {
    /// Maps `len` bytes of device memory at physical `phys` (page-aligned):
    /// `InvalidArgument` for a bad range, `NotPrivileged`, `InUse` for RAM,
    /// firmware tables, the interrupt controllers or another task's claim.
    pub fn map(phys: u64, len: usize) -> Result<Mmio, Error> {
        let [addr, ..] = call(Sys::MmioMap, [phys, len as u64, 0, 0, 0, 0])?;
        Ok(Mmio { base: addr as *mut u8, phys, len })
    }

    /// The physical address of the first byte.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty (never, once mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of `offset..offset + size`, which must be aligned to
    /// `size` and inside the mapping (panics otherwise).
    fn at(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len)
                && offset.is_multiple_of(size),
            "MMIO access at {offset:#x} outside the mapping"
        );
        self.base.wrapping_add(offset)
    }

    /// Reads a byte at `offset`.
    pub fn read8(&self, offset: usize) -> u8 {
        // SAFETY: `at` checked the byte is inside the mapping, which lives
        // as long as the task.
        unsafe { ptr::read_volatile(self.at(offset, 1)) }
    }

    /// Reads 16 bits at `offset` (aligned).
    pub fn read16(&self, offset: usize) -> u16 {
        // SAFETY: inside the mapping and aligned (checked by `at`).
        unsafe { ptr::read_volatile(self.at(offset, 2) as *const u16) }
    }

    /// Reads 32 bits at `offset` (aligned).
    pub fn read32(&self, offset: usize) -> u32 {
        // SAFETY: as for `read16`.
        unsafe { ptr::read_volatile(self.at(offset, 4) as *const u32) }
    }

    /// Writes a byte at `offset`.
    pub fn write8(&self, offset: usize, v: u8) {
        // SAFETY: inside the mapping (checked by `at`); device memory is
        // never a Rust object, so no reference is invalidated.
        unsafe { ptr::write_volatile(self.at(offset, 1), v) }
    }

    /// Writes 16 bits at `offset` (aligned).
    pub fn write16(&self, offset: usize, v: u16) {
        // SAFETY: as for `write8`, and aligned.
        unsafe { ptr::write_volatile(self.at(offset, 2) as *mut u16, v) }
    }

    /// Writes 32 bits at `offset` (aligned).
    pub fn write32(&self, offset: usize, v: u32) {
        // SAFETY: as for `write16`.
        unsafe { ptr::write_volatile(self.at(offset, 4) as *mut u32, v) }
    }
}

/// Physically contiguous, zeroed RAM from `DmaAlloc`, mapped into this task
/// and shareable with a device by its physical address. A device may write
/// it at any time, so it is reached only by volatile copies, never by a
/// reference. Dropping the region unmaps it and frees its frames: the
/// owner must make sure no device still uses it (or pin it).
#[derive(Debug)]
pub struct DmaRegion {
    base: *mut u8,
    phys: u64,
    len: usize,
}

// SAFETY: the region is plain memory owned by this handle; moving the
// handle to another thread moves that ownership, and all accesses are
// volatile copies through `&self`/`&mut self`.
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    /// Allocates `len` bytes (rounded up to pages, at most 2 MiB):
    /// `InvalidArgument` for 0 or too much, `NotPrivileged`, `OutOfMemory`.
    pub fn alloc(len: usize) -> Result<DmaRegion, Error> {
        let [addr, phys, ..] = call(Sys::DmaAlloc, [len as u64, 0, 0, 0, 0, 0])?;
        let len = len.next_multiple_of(alux_abi::syscall::PAGE_SIZE);
        Ok(DmaRegion { base: addr as *mut u8, phys, len })
    }

    /// The physical address of byte 0 (what a device is given).
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "DMA access at {offset:#x}+{size} outside the region"
        );
        self.base.wrapping_add(offset)
    }

    /// Copies `out.len()` bytes from `offset` into `out`.
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        let src = self.at(offset, out.len());
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `at` checked `offset..offset + out.len()` is inside
            // the mapping; a volatile read of a byte a device may write.
            *b = unsafe { ptr::read_volatile(src.add(i)) };
        }
    }

    /// Copies `data` to `offset`.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        let dst = self.at(offset, data.len());
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as for `read`.
            unsafe { ptr::write_volatile(dst.add(i), *b) };
        }
    }

    /// Fills `offset..offset + len` with `byte`.
    pub fn fill(&mut self, offset: usize, len: usize, byte: u8) {
        let dst = self.at(offset, len);
        for i in 0..len {
            // SAFETY: as for `read`.
            unsafe { ptr::write_volatile(dst.add(i), byte) };
        }
    }

    /// Reads a little-endian `u16` at `offset` (aligned: one access).
    pub fn read16(&self, offset: usize) -> u16 {
        assert!(offset.is_multiple_of(2), "unaligned");
        // SAFETY: inside the region (checked by `at`) and aligned; the
        // region is page-aligned, so `offset` alignment is the address's.
        unsafe { ptr::read_volatile(self.at(offset, 2) as *const u16) }
    }

    /// Reads a little-endian `u32` at `offset` (aligned).
    pub fn read32(&self, offset: usize) -> u32 {
        assert!(offset.is_multiple_of(4), "unaligned");
        // SAFETY: as for `read16`.
        unsafe { ptr::read_volatile(self.at(offset, 4) as *const u32) }
    }

    /// Writes a `u16` at `offset` (aligned).
    pub fn write16(&mut self, offset: usize, v: u16) {
        assert!(offset.is_multiple_of(2), "unaligned");
        // SAFETY: as for `read16`.
        unsafe { ptr::write_volatile(self.at(offset, 2) as *mut u16, v) }
    }

    /// Writes a `u32` at `offset` (aligned).
    pub fn write32(&mut self, offset: usize, v: u32) {
        assert!(offset.is_multiple_of(4), "unaligned");
        // SAFETY: as for `read16`.
        unsafe { ptr::write_volatile(self.at(offset, 4) as *mut u32, v) }
    }

    /// Writes a `u64` at `offset` (aligned).
    pub fn write64(&mut self, offset: usize, v: u64) {
        assert!(offset.is_multiple_of(8), "unaligned");
        // SAFETY: as for `read16`.
        unsafe { ptr::write_volatile(self.at(offset, 8) as *mut u64, v) }
    }

    /// Orders this CPU's earlier accesses to the region before its later
    /// ones, as seen by a device (a full fence: x86 needs it only to order
    /// earlier stores before later loads).
    pub fn fence(&self) {
        fence(Ordering::SeqCst);
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        // SAFETY: the handle owned the mapping and is going away; nothing
        // else in this task refers to it (no references are ever handed
        // out). Whether a device still uses it is the owner's duty (docs).
        let _ = unsafe { crate::sys::mem_unmap(self.base, self.len) };
    }
}

/// A pin on the frames of `[phys, phys + len)` (`DmaPin`): they are not
/// reused while the pin lasts, even if their owner unmaps them or dies.
/// A driver pins a client's buffer before a device may touch it and drops
/// the pin (`DmaUnpin`) when the device is done.
#[derive(Debug)]
pub struct Pin {
    phys: u64,
    len: u64,
}

impl Pin {
    /// Pins `[phys, phys + len)` (privileged): `InvalidArgument` for an
    /// empty or too long range, `BadAddress` unless every frame it touches
    /// is allocated RAM, `LimitReached` past the pin limit.
    pub fn new(phys: u64, len: u64) -> Result<Pin, Error> {
        call(Sys::DmaPin, [phys, len, 0, 0, 0, 0])?;
        Ok(Pin { phys, len })
    }

    /// The pinned range's start.
    pub fn phys(&self) -> u64 {
        self.phys
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = call(Sys::DmaUnpin, [self.phys, self.len, 0, 0, 0, 0]);
    }
}

/// An interrupt line delivered to this thread as signals on a kernel end.
///
/// Each interrupt masks the line and signals the end (message: the line
/// and the kernel's delivery count, two little-endian `u64`s); the line
/// stays masked until [`Interrupt::acknowledge`]. Dropping the handle
/// closes the end, which masks the line again.
#[derive(Debug)]
pub struct Interrupt {
    end: crate::ipc::Connection,
    line: u8,
}

impl Interrupt {
    /// Opens line `line` (ISA IRQ below 16, else GSI): `NotPrivileged`,
    /// `Busy` if another end has it, `InvalidArgument` if no I/O APIC input
    /// carries it.
    pub fn open(line: u8) -> Result<Interrupt, Error> {
        let end = crate::ipc::open_kernel_end(alux_abi::ipc::kernel_end_kind::interrupt(line))?;
        Ok(Interrupt { end, line })
    }

    /// The line.
    pub fn line(&self) -> u8 {
        self.line
    }

    /// The end's handle, to recognise its events in `receive`.
    pub fn handle(&self) -> alux_abi::ipc::Handle {
        self.end.handle()
    }

    /// Unmasks the line once the device has stopped asserting it.
    pub fn acknowledge(&self) -> Result<(), Error> {
        self.end.signal()
    }

    /// Decodes a delivery message: `(line, total deliveries)`.
    pub fn decode(message: &[u8]) -> Option<(u64, u64)> {
        let line = u64::from_le_bytes(message.get(0..8)?.try_into().ok()?);
        let count = u64::from_le_bytes(message.get(8..16)?.try_into().ok()?);
        Some((line, count))
    }
}

/// Tells the kernel this task drives PCI function `bus:device.function`
/// (`DeviceClaim`): when the task ends, the kernel stops the device's DMA
/// (clears Bus Master Enable) before it frees the task's memory and pins,
/// so the device never writes memory that is reused. One driver per
/// function: another task's claim is `InUse`.
pub fn claim_device(bus: u8, device: u8, function: u8) -> Result<(), Error> {
    call(Sys::DeviceClaim, [bus as u64, device as u64, function as u64, 0, 0, 0]).map(|_| ())
}
