//! Kernel memory: the heap, the direct-map implementation of the page-table
//! memory, and user address spaces (mapping, copying to and from user
//! memory, teardown).
//!
//! User memory is only ever touched through [`AddressSpace::copy_in`] and
//! [`AddressSpace::copy_out`], which check the whole range against the page
//! tables first and then copy through the direct map, so a bad user pointer
//! is an error, never a kernel fault.

use crate::arch::phys_to_virt;
use alux_abi::Error;
use core::cell::UnsafeCell;
use kernel::frame::FrameAllocator;
use kernel::paging::{self, PageFlags, TableMemory, PAGE_SIZE};
use kernel::syscall::UserSlice;
use linked_list_allocator::LockedHeap;

/// Size of the kernel heap.
pub const HEAP_SIZE: usize = 32 << 20;

#[repr(C, align(4096))]
struct HeapMemory(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the memory is handed to the allocator once, at boot, and only the
// allocator (behind its own lock) touches it afterwards.
unsafe impl Sync for HeapMemory {}

/// Not zeroed at boot and not loaded from the image: see `linker.ld`.
#[link_section = ".heap"]
static HEAP_MEMORY: HeapMemory = HeapMemory(UnsafeCell::new([0; HEAP_SIZE]));

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives the heap its memory. Called once, first thing at boot.
pub fn init_heap() {
    // SAFETY: called once before any allocation; the static is reserved for
    // the heap and lives forever.
    unsafe { HEAP.lock().init(HEAP_MEMORY.0.get() as *mut u8, HEAP_SIZE) }
}

/// Heap bytes in use.
pub fn heap_used() -> usize {
    HEAP.lock().used()
}

/// Page tables reached through the direct map, allocating from the frame
/// allocator and counting the tables it holds.
pub struct PhysTables<'a> {
    frames: &'a mut FrameAllocator,
    tables: &'a mut usize,
}

impl<'a> PhysTables<'a> {
    /// Tables allocated from `frames`, counted in `tables`.
    pub fn new(frames: &'a mut FrameAllocator, tables: &'a mut usize) -> Self {
        PhysTables { frames, tables }
    }
}

/// Read-only access to page tables (for walks that never allocate).
pub struct PhysTablesRead;

fn entry_ptr(table: u64, index: usize) -> *mut u64 {
    (phys_to_virt(table) + index as u64 * 8) as *mut u64
}

fn read_entry(table: u64, index: usize) -> u64 {
    assert!(index < 512);
    // SAFETY: `table` is the physical address of a page table (a frame the
    // kernel allocated, or a boot table), inside the direct map.
    unsafe { entry_ptr(table, index).read_volatile() }
}

/// Zeroes a physical frame.
pub fn zero_frame(frame: u64) {
    // SAFETY: `frame` is a frame the kernel owns (just allocated), inside
    // the direct map; nothing else refers to it yet.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame) as *mut u8, 0, PAGE_SIZE as usize) }
}

impl TableMemory for PhysTables<'_> {
    fn read(&self, table: u64, index: usize) -> u64 {
        read_entry(table, index)
    }
    fn write(&mut self, table: u64, index: usize, entry: u64) {
        assert!(index < 512);
        // SAFETY: as for `read_entry`; the kernel lock serialises writers.
        unsafe { entry_ptr(table, index).write_volatile(entry) }
    }
    fn alloc_table(&mut self) -> Option<u64> {
        let frame = self.frames.alloc()?;
        zero_frame(frame);
        *self.tables += 1;
        Some(frame)
    }
    fn free_table(&mut self, table: u64) {
        if self.frames.free(table).is_ok() {
            *self.tables -= 1;
        }
    }
}

/// Writes to existing page tables, never allocating (for changing the
/// bits of an entry in place).
struct PhysTablesInPlace;

impl TableMemory for PhysTablesInPlace {
    fn read(&self, table: u64, index: usize) -> u64 {
        read_entry(table, index)
    }
    fn write(&mut self, table: u64, index: usize, entry: u64) {
        assert!(index < 512);
        // SAFETY: as for `PhysTables::write`: a page table in the direct
        // map, written under the kernel lock.
        unsafe { entry_ptr(table, index).write_volatile(entry) }
    }
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
    fn free_table(&mut self, _: u64) {}
}

impl TableMemory for PhysTablesRead {
    fn read(&self, table: u64, index: usize) -> u64 {
        read_entry(table, index)
    }
    fn write(&mut self, _: u64, _: usize, _: u64) {
        unreachable!("read-only walk")
    }
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
    fn free_table(&mut self, _: u64) {}
}

/// A user address space: a PML4 whose upper half is the kernel's.
pub struct AddressSpace {
    root: u64,
    tables: usize,
}

impl AddressSpace {
    /// A new, empty address space.
    pub fn new(frames: &mut FrameAllocator, kernel_root: u64) -> Result<Self, Error> {
        let mut tables = 0;
        let root = paging::new_root(&mut PhysTables { frames, tables: &mut tables }, kernel_root)
            .map_err(|_| Error::OutOfMemory)?;
        Ok(AddressSpace { root, tables })
    }

    /// Frames its page tables use, the root included.
    pub fn table_frames(&self) -> usize {
        self.tables
    }

    fn tables<'a>(&'a mut self, frames: &'a mut FrameAllocator) -> PhysTables<'a> {
        PhysTables { frames, tables: &mut self.tables }
    }

    /// The physical address of the PML4 (for CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps a fresh zeroed frame at `va`; returns the frame.
    pub fn map_new(
        &mut self,
        frames: &mut FrameAllocator,
        va: u64,
        flags: PageFlags,
    ) -> Result<u64, Error> {
        let frame = frames.alloc().ok_or(Error::OutOfMemory)?;
        zero_frame(frame);
        if let Err(e) = self.map_frame(frames, va, frame, flags) {
            let _ = frames.free(frame);
            return Err(e);
        }
        Ok(frame)
    }

    /// Maps an existing frame at `va`.
    pub fn map_frame(
        &mut self,
        frames: &mut FrameAllocator,
        va: u64,
        frame: u64,
        flags: PageFlags,
    ) -> Result<(), Error> {
        let root = self.root;
        paging::map(&mut self.tables(frames), root, va, frame, flags).map_err(|e| match e {
            paging::MapError::OutOfMemory => Error::OutOfMemory,
            _ => Error::InvalidArgument,
        })
    }

    /// Unmaps the page at `va`, returning its frame, and frees the page
    /// tables that no longer map anything.
    pub fn unmap(&mut self, frames: &mut FrameAllocator, va: u64) -> Result<u64, Error> {
        let root = self.root;
        let mut tables = self.tables(frames);
        let frame = paging::unmap(&mut tables, root, va).map_err(|_| Error::InvalidArgument)?;
        paging::prune(&mut tables, root, va);
        // SAFETY: invalidating a TLB entry (and the paging-structure caches
        // for this address) has no memory effects; needed in case this
        // address space is the active one.
        unsafe { core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
        Ok(frame)
    }

    /// How many page tables mapping `pages` pages from `va` would create
    /// (see `paging::tables_needed`).
    pub fn tables_needed(&self, va: u64, pages: u64) -> usize {
        paging::tables_needed(&PhysTablesRead, self.root, va, pages)
    }

    /// Clears the accessed and/or dirty bits of the page at `va` and
    /// returns the flags it had; the TLB entry is flushed so the CPU sets
    /// them again.
    pub fn clear_leaf_flags(&mut self, va: u64, clear: PageFlags) -> Result<PageFlags, Error> {
        let old = paging::clear_leaf_flags(&mut PhysTablesInPlace, self.root, va, clear)
            .map_err(|_| Error::InvalidArgument)?;
        // SAFETY: as in `unmap`: invalidating a TLB entry has no memory
        // effects.
        unsafe { core::arch::asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
        Ok(old)
    }

    /// The frame and flags mapped at `va`.
    pub fn translate(&self, va: u64) -> Option<(u64, PageFlags)> {
        paging::translate(&PhysTablesRead, self.root, va)
    }

    /// Visits the range page piece by page piece as direct-map pointers,
    /// after checking the whole range is mapped with the needed access.
    fn for_each_piece(
        &self,
        range: UserSlice,
        write: bool,
        mut f: impl FnMut(*mut u8, usize, usize),
    ) -> Result<(), Error> {
        if range.is_empty() {
            return Ok(());
        }
        // The common case, a range inside one page, needs one walk.
        if range.addr() % PAGE_SIZE + range.len() <= PAGE_SIZE {
            let mut need = PageFlags::PRESENT | PageFlags::USER;
            if write {
                need |= PageFlags::WRITABLE;
            }
            return match self.translate(range.addr()) {
                Some((pa, flags)) if flags.contains(need) => {
                    if !kernel_may_copy(pa, flags) {
                        return Err(Error::BadAddress);
                    }
                    f(phys_to_virt(pa) as *mut u8, 0, range.len() as usize);
                    Ok(())
                }
                other => {
                    note_denied(range.addr() & !(PAGE_SIZE - 1), other.is_some(), write);
                    Err(Error::BadAddress)
                }
            };
        }
        if let Some((page, present)) =
            paging::first_denied_page(&PhysTablesRead, self.root, range.addr(), range.len(), write)
        {
            note_denied(page, present, write);
            return Err(Error::BadAddress);
        }
        // Every page first: nothing is copied if one is device memory.
        let last = (range.addr() + range.len() - 1) & !(PAGE_SIZE - 1);
        let mut page = range.addr() & !(PAGE_SIZE - 1);
        loop {
            match self.translate(page) {
                Some((pa, flags)) if kernel_may_copy(pa, flags) => {}
                _ => return Err(Error::BadAddress),
            }
            if page == last {
                break;
            }
            page += PAGE_SIZE;
        }
        let mut done = 0u64;
        while done < range.len() {
            let va = range.addr() + done;
            let in_page = (PAGE_SIZE - va % PAGE_SIZE).min(range.len() - done);
            let (pa, _) = self.translate(va).ok_or(Error::BadAddress)?;
            f(phys_to_virt(pa) as *mut u8, done as usize, in_page as usize);
            done += in_page;
        }
        Ok(())
    }

    /// Copies `dst.len()` bytes from user memory at `src`.
    pub fn copy_in(&self, src: UserSlice, dst: &mut [u8]) -> Result<(), Error> {
        if src.len() != dst.len() as u64 {
            return Err(Error::InvalidArgument);
        }
        self.for_each_piece(src, false, |p, off, n| {
            // SAFETY: `p` points at `n` mapped user bytes (checked above)
            // through the direct map; `dst[off..off + n]` is in bounds.
            unsafe { core::ptr::copy_nonoverlapping(p, dst[off..off + n].as_mut_ptr(), n) }
        })
    }

    /// Copies `src` into user memory at `dst`, which must be writable.
    pub fn copy_out(&self, dst: UserSlice, src: &[u8]) -> Result<(), Error> {
        if dst.len() != src.len() as u64 {
            return Err(Error::InvalidArgument);
        }
        self.for_each_piece(dst, true, |p, off, n| {
            // SAFETY: `p` points at `n` mapped, user-writable bytes through
            // the direct map; `src[off..off + n]` is in bounds.
            unsafe { core::ptr::copy_nonoverlapping(src[off..off + n].as_ptr(), p, n) }
        })
    }

    /// Frees every table and the root, and hands every frame mapped in the
    /// user half to `release`, which decides its fate (freed, kept because
    /// the task only borrowed it, or deferred while a device holds it).
    pub fn destroy(
        mut self,
        frames: &mut FrameAllocator,
        mut release: impl FnMut(&mut FrameAllocator, u64),
    ) {
        let mut to_free = alloc::vec::Vec::new();
        {
            let root = self.root;
            let mut tables = self.tables(frames);
            paging::destroy_user_half(&mut tables, root, &mut |f| to_free.push(f));
        }
        for f in to_free {
            release(frames, f);
        }
        let _ = frames.free(self.root);
    }
}

/// The 8-byte word at user address `va` (8-byte aligned) in the address
/// space whose PML4 is `root`, where [`AddressSpace::copy_in`] of those 8
/// bytes would succeed: `va` non-null and below the user pointer end, its
/// page present and user-accessible in the walk's effective flags, RAM in
/// the direct map. `None` where the copy would fail: the caller (a system
/// call fast path) then leaves the call to the general path, which copies
/// and reports the error, or has the pager bring a paged task's page in.
/// One walk, nothing noted, nothing copied to a buffer.
#[inline]
pub fn read_user_word(root: u64, va: u64) -> Option<u64> {
    if !va.is_multiple_of(8) || va == 0 || va > kernel::syscall::USER_POINTER_END - 8 {
        return None;
    }
    let (pa, flags) = paging::user_translate(&PhysTablesRead, root, va)?;
    if !kernel_may_copy(pa, flags) {
        return None;
    }
    // SAFETY: `pa` is RAM inside the direct map (checked just above),
    // mapped to user mode at `va`; 8-byte aligned, so the word does not
    // cross its page. A plain read of user data.
    Some(unsafe { (phys_to_virt(pa) as *const u64).read_volatile() })
}

/// Whether the kernel may copy a user page's bytes through the direct map:
/// RAM inside it. A driver's device memory (uncached, `MmioMap`) is never
/// read or written by the kernel on a task's behalf, and memory beyond the
/// direct map is not mapped there at all.
fn kernel_may_copy(pa: u64, flags: PageFlags) -> bool {
    !flags.contains(PageFlags::CACHE_DISABLE) && pa + PAGE_SIZE <= crate::arch::DIRECT_MAP_SIZE
}

/// The last user page a copy was refused, while a system call runs:
/// `page | 1` (valid) `| present << 1 | write << 2`, or 0. A paged task's
/// missing page becomes a fault for the pager and the call runs again
/// (`pager::syscall_fault`). One CPU: one slot (per-CPU with SMP).
static DENIED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn note_denied(page: u64, present: bool, write: bool) {
    let v = page | 1 | (present as u64) << 1 | (write as u64) << 2;
    DENIED.store(v, core::sync::atomic::Ordering::Relaxed);
}

/// Forgets the last refused page (at the start of a system call).
#[inline]
pub fn clear_denied() {
    DENIED.store(0, core::sync::atomic::Ordering::Relaxed);
}

/// The last user page a copy was refused since [`clear_denied`], and
/// whether it was present and the copy wrote.
pub fn take_denied() -> Option<(u64, bool, bool)> {
    let v = DENIED.swap(0, core::sync::atomic::Ordering::Relaxed);
    (v & 1 != 0).then_some((v & !(PAGE_SIZE - 1), v & 2 != 0, v & 4 != 0))
}

/// Copies a plain-old-data ABI record from user memory.
pub fn read_record<T: Copy + Default>(
    space: &AddressSpace,
    at: kernel::syscall::UserRef<T>,
) -> Result<T, Error> {
    let mut value = T::default();
    // SAFETY: `T` is one of the `#[repr(C)]` ABI records made of integers,
    // for which every byte pattern is valid; the slice covers exactly it.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(&mut value as *mut T as *mut u8, core::mem::size_of::<T>())
    };
    space.copy_in(at.slice(), bytes)?;
    Ok(value)
}

/// Copies a plain-old-data ABI record to user memory.
pub fn write_record<T: Copy>(space: &AddressSpace, at: UserSlice, value: &T) -> Result<(), Error> {
    // SAFETY: `T` is a `#[repr(C)]` ABI record of integers without padding,
    // so all its bytes are initialised.
    let bytes = unsafe {
        core::slice::from_raw_parts(value as *const T as *const u8, core::mem::size_of::<T>())
    };
    let at = UserSlice::new(at.addr(), bytes.len() as u64)?;
    space.copy_out(at, bytes)
}
