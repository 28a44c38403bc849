//! A virtio split virtqueue (virtio 1.x, §2.7) for a driver whose buffers
//! are named by physical address: a client's DMA buffer goes to the device
//! without being mapped into the driver or copied.
//!
//! The crate owns the ring format and its index arithmetic: where the
//! descriptor table, the available ring and the used ring lie, which
//! descriptors are free, which chains are in flight, and the checks on
//! what the device writes back. It never touches hardware or allocates:
//! the rings live in memory reached through [`RingMemory`] (a DMA region
//! in the driver, a `Vec` in the tests), and notifying the device is the
//! caller's business ([`SplitQueue::needs_notify`] says whether to).
//!
//! The device is untrusted. The queue keeps its own copy of every chain
//! it published (links, lengths, which parts the device may write) and
//! never reads a descriptor back; from the used ring it reads only the
//! index and each entry's `id`/`len`, copied once and then checked: an
//! `id` that is not the head of a chain in flight, a length larger than
//! the chain's device-writable part, or a used index that runs ahead of
//! what is in flight is reported as a [`UsedError`], never trusted, and
//! never panics. After a runaway index the queue stops taking completions
//! ([`SplitQueue::is_broken`]): the driver should fail what is in flight
//! and reset the device.
//!
//! Memory ordering (the driver writes descriptors and ring entries, the
//! device writes the used ring): the available index is written after a
//! fence that follows the descriptors and the ring entry; the used entries
//! are read after a fence that follows the read of the used index.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;

/// The largest queue this crate drives (the driver takes the smaller of
/// this and the device's maximum).
pub const MAX_QUEUE_SIZE: u16 = 256;

/// Descriptor flag: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer (else it reads it).
pub const DESC_F_WRITE: u16 = 2;
/// Used-ring flag: the device asks not to be notified.
pub const USED_F_NO_NOTIFY: u16 = 1;

/// Size of one descriptor.
pub const DESC_SIZE: usize = 16;

/// The memory holding the rings, as the driver reaches it. Offsets are
/// from the start of the ring area ([`Layout::total`] bytes); accesses are
/// naturally aligned. Implementations must make each access a single
/// volatile access of that width.
pub trait RingMemory {
    /// Reads 16 bits at `offset`.
    fn read16(&self, offset: usize) -> u16;
    /// Reads 32 bits at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes 16 bits at `offset`.
    fn write16(&mut self, offset: usize, v: u16);
    /// Writes 32 bits at `offset`.
    fn write32(&mut self, offset: usize, v: u32);
    /// Writes 64 bits at `offset`.
    fn write64(&mut self, offset: usize, v: u64);
    /// Orders earlier accesses before later ones, as the device sees them.
    fn fence(&self);
}

/// Where the three parts of a queue of `size` entries lie in one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    size: u16,
    avail: usize,
    used: usize,
    total: usize,
}

impl Layout {
    /// The layout for `size` entries: `None` unless `size` is a power of
    /// two from 1 to [`MAX_QUEUE_SIZE`].
    pub const fn new(size: u16) -> Option<Layout> {
        if size == 0 || size > MAX_QUEUE_SIZE || !size.is_power_of_two() {
            return None;
        }
        let n = size as usize;
        let avail = DESC_SIZE * n;
        // flags, idx, ring[n], used_event
        let avail_end = avail + 4 + 2 * n + 2;
        let used = (avail_end + 3) & !3;
        // flags, idx, ring[n] of (id, len), avail_event
        let total = used + 4 + 8 * n + 2;
        Some(Layout { size, avail, used, total })
    }

    /// Entries in the queue.
    pub const fn size(&self) -> u16 {
        self.size
    }

    /// Offset of the descriptor table (always 0).
    pub const fn descriptors(&self) -> usize {
        0
    }

    /// Offset of the available ring ("driver area").
    pub const fn avail(&self) -> usize {
        self.avail
    }

    /// Offset of the used ring ("device area").
    pub const fn used(&self) -> usize {
        self.used
    }

    /// Bytes the three parts take.
    pub const fn total(&self) -> usize {
        self.total
    }
}

/// One buffer of a request, named by its physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Physical address the device uses.
    pub phys: u64,
    /// Length in bytes.
    pub len: u32,
    /// The device writes it (else it only reads it).
    pub device_writes: bool,
}

/// Why [`SplitQueue::add`] refused a request; nothing was published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// No buffers were given.
    Empty,
    /// Fewer free descriptors than buffers: wait for completions.
    Full,
    /// The queue stopped after the device broke it.
    Broken,
}

/// A completed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// The head descriptor [`SplitQueue::add`] returned for it.
    pub head: u16,
    /// Bytes the device says it wrote into the device-writable buffers
    /// (checked: at most their total length).
    pub written: u32,
}

/// A used-ring entry or index the device should not have written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsedError {
    /// The entry names no chain in flight (out of range, not a head, or
    /// already completed); it was skipped.
    BadId(u32),
    /// The entry names chain `head` but claims more bytes written than its
    /// device-writable buffers hold. The chain is completed (freed); the
    /// driver should fail its request.
    BadLength {
        /// The chain's head.
        head: u16,
        /// The length the device claimed.
        len: u32,
    },
    /// The used index claims more completions than chains in flight; the
    /// queue is broken from now on.
    IndexRunaway {
        /// The used index the device wrote.
        index: u16,
    },
}

/// The driver's side of one split virtqueue.
#[derive(Clone, Debug)]
pub struct SplitQueue {
    layout: Layout,
    /// First free descriptor (meaningless when `free == 0`).
    free_head: u16,
    /// Free descriptors.
    free: u16,
    /// The driver's own copy of each descriptor's `next` link (free list
    /// and chains alike); never read back from shared memory.
    next: [u16; MAX_QUEUE_SIZE as usize],
    /// For a chain head in flight: its number of descriptors; else 0.
    chain_len: [u16; MAX_QUEUE_SIZE as usize],
    /// For a chain head in flight: bytes of its device-writable buffers.
    writable: [u32; MAX_QUEUE_SIZE as usize],
    /// Chains in flight.
    in_flight: u16,
    /// Next available index the driver publishes.
    avail_idx: u16,
    /// Next used index the driver reads.
    last_used: u16,
    broken: bool,
}

impl SplitQueue {
    /// A queue over zeroed ring memory laid out by `layout`: every
    /// descriptor free, both indices 0. The memory must stay zeroed until
    /// the device is told where it is.
    pub fn new(layout: Layout) -> SplitQueue {
        let mut next = [0u16; MAX_QUEUE_SIZE as usize];
        for (i, n) in next.iter_mut().enumerate().take(layout.size as usize) {
            *n = (i as u16 + 1) % layout.size;
        }
        SplitQueue {
            layout,
            free_head: 0,
            free: layout.size,
            next,
            chain_len: [0; MAX_QUEUE_SIZE as usize],
            writable: [0; MAX_QUEUE_SIZE as usize],
            in_flight: 0,
            avail_idx: 0,
            last_used: 0,
            broken: false,
        }
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Free descriptors.
    pub fn free_descriptors(&self) -> u16 {
        self.free
    }

    /// Chains published and not yet completed.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// Whether chain `head` is in flight.
    pub fn is_in_flight(&self, head: u16) -> bool {
        head < self.layout.size && self.chain_len[head as usize] != 0
    }

    /// Whether the device broke the queue (a runaway used index).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Publishes one request made of `buffers` (device-readable ones
    /// first, as virtio requires) and returns its head descriptor, which
    /// names it in [`SplitQueue::pop_used`]. Nothing is written on error.
    pub fn add<M: RingMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        buffers: &[Buffer],
    ) -> Result<u16, AddError> {
        if self.broken {
            return Err(AddError::Broken);
        }
        if buffers.is_empty() {
            return Err(AddError::Empty);
        }
        if buffers.len() > self.free as usize {
            return Err(AddError::Full);
        }
        let head = self.free_head;
        let mut d = head;
        let mut writable = 0u32;
        for (i, b) in buffers.iter().enumerate() {
            let last = i + 1 == buffers.len();
            let off = self.layout.descriptors() + DESC_SIZE * d as usize;
            let mut flags = if b.device_writes { DESC_F_WRITE } else { 0 };
            if !last {
                flags |= DESC_F_NEXT;
            }
            if b.device_writes {
                writable = writable.saturating_add(b.len);
            }
            mem.write64(off, b.phys);
            mem.write32(off + 8, b.len);
            mem.write16(off + 12, flags);
            mem.write16(off + 14, if last { 0 } else { self.next[d as usize] });
            if !last {
                d = self.next[d as usize];
            }
        }
        self.free_head = self.next[d as usize];
        self.free -= buffers.len() as u16;
        self.chain_len[head as usize] = buffers.len() as u16;
        self.writable[head as usize] = writable;
        self.in_flight += 1;
        let slot = self.layout.avail() + 4 + 2 * (self.avail_idx % self.layout.size) as usize;
        mem.write16(slot, head);
        // The descriptors and the ring entry before the index that
        // publishes them.
        mem.fence();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write16(self.layout.avail() + 2, self.avail_idx);
        Ok(head)
    }

    /// Whether the device wants a notification after [`SplitQueue::add`]
    /// (it has not set `USED_F_NO_NOTIFY`).
    pub fn needs_notify<M: RingMemory + ?Sized>(&self, mem: &M) -> bool {
        // The index published before the flag is read.
        mem.fence();
        mem.read16(self.layout.used()) & USED_F_NO_NOTIFY == 0
    }

    /// Takes the next completion from the used ring: `None` when there is
    /// none (or the queue is broken), else the completed request or what
    /// was wrong with the entry. Call until `None`.
    pub fn pop_used<M: RingMemory + ?Sized>(&mut self, mem: &M) -> Option<Result<Used, UsedError>> {
        if self.broken {
            return None;
        }
        let index = mem.read16(self.layout.used() + 2);
        if index == self.last_used {
            return None;
        }
        if index.wrapping_sub(self.last_used) > self.in_flight {
            self.broken = true;
            return Some(Err(UsedError::IndexRunaway { index }));
        }
        // The entry is read after the index that published it.
        mem.fence();
        let entry = self.layout.used() + 4 + 8 * (self.last_used % self.layout.size) as usize;
        let id = mem.read32(entry);
        let len = mem.read32(entry + 4);
        self.last_used = self.last_used.wrapping_add(1);
        if id >= self.layout.size as u32 || self.chain_len[id as usize] == 0 {
            return Some(Err(UsedError::BadId(id)));
        }
        let head = id as u16;
        let writable = self.writable[head as usize];
        self.release(head);
        if len > writable {
            return Some(Err(UsedError::BadLength { head, len }));
        }
        Some(Ok(Used { head, written: len }))
    }

    /// Puts chain `head` back on the free list.
    fn release(&mut self, head: u16) {
        let n = self.chain_len[head as usize];
        let mut tail = head;
        for _ in 1..n {
            tail = self.next[tail as usize];
        }
        self.next[tail as usize] = if self.free == 0 { head } else { self.free_head };
        self.free_head = head;
        self.free += n;
        self.chain_len[head as usize] = 0;
        self.writable[head as usize] = 0;
        self.in_flight -= 1;
    }
}
