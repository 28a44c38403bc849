//! x86_64 4-level page-table logic over an abstract physical memory.
//!
//! This module owns the *format* and the walking of page tables: mapping and
//! unmapping 4 KiB user pages, translating addresses, validating user
//! pointers, tearing down a user half and creating a new root that shares the
//! kernel half. It reaches tables only through [`TableMemory`], so it must
//! never dereference physical memory itself, never flush the TLB (the caller
//! does, after [`unmap`] or a permission change), and never modify or free
//! anything in the kernel half (PML4 entries 256..512, shared by every
//! address space) once built. The kernel half is built once, at boot, before
//! any address space exists, by [`build_kernel_root`] from the
//! [`kernel_regions`] plan (W^X: text read-execute, read-only data, no-execute
//! data and direct map); after that only [`translate`] and
//! [`for_each_mapping`] read it.
//!
//! User space is the lower canonical half, `[0, USER_END)`, mapped with
//! 4 KiB pages only. Every table this module creates is an intermediate table
//! of the lower half with entry flags `PRESENT | WRITABLE | USER`; the leaf
//! entry alone decides the page's permissions.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// Size of a page (and of a page table) in bytes.
pub const PAGE_SIZE: u64 = 4096;

/// Number of entries in a page table.
pub const ENTRIES: usize = 512;

/// Index of the first root (PML4) entry belonging to the kernel half.
pub const KERNEL_FIRST_ENTRY: usize = 256;

/// Exclusive end of the user half: user addresses are `[0, USER_END)`.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// The highest page-aligned user address.
pub const LAST_USER_PAGE: u64 = USER_END - PAGE_SIZE;

/// Bits of an entry holding the physical address of the next table or page.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

const SIZE_1G: u64 = 1 << 30;
const SIZE_2M: u64 = 1 << 21;

/// Access to the physical memory holding page tables.
///
/// The kernel implements it over its direct map; tests over a `HashMap`.
/// Table addresses are physical, 4 KiB aligned.
pub trait TableMemory {
    /// Entry `index` (`0..512`) of the table at physical address `table`.
    fn read(&self, table: u64, index: usize) -> u64;
    /// Sets entry `index` (`0..512`) of the table at physical address `table`.
    fn write(&mut self, table: u64, index: usize, entry: u64);
    /// A zeroed frame for a new table, or `None` when memory is exhausted.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Gives back a table frame obtained from [`alloc_table`](Self::alloc_table).
    fn free_table(&mut self, table: u64);
}

/// The flag bits of a page-table entry (every bit outside [`ADDR_MASK`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PageFlags(u64);

impl PageFlags {
    /// The entry is valid.
    pub const PRESENT: PageFlags = PageFlags(1 << 0);
    /// Writes are allowed (if set at every level of the walk).
    pub const WRITABLE: PageFlags = PageFlags(1 << 1);
    /// User mode may access the page (if set at every level of the walk).
    pub const USER: PageFlags = PageFlags(1 << 2);
    /// Writes go through the cache (with [`CACHE_DISABLE`](Self::CACHE_DISABLE):
    /// uncached, for device memory).
    pub const WRITE_THROUGH: PageFlags = PageFlags(1 << 3);
    /// The page is not cached.
    pub const CACHE_DISABLE: PageFlags = PageFlags(1 << 4);
    /// The CPU set it: the page was read or written (cleared by software).
    pub const ACCESSED: PageFlags = PageFlags(1 << 5);
    /// The CPU set it: the page was written.
    pub const DIRTY: PageFlags = PageFlags(1 << 6);
    /// Software bit: the page maps device memory, which the task does not
    /// own as RAM (its frame is never freed or counted as the task's).
    pub const DEVICE: PageFlags = PageFlags(1 << 9);
    /// In a PDPT or PD entry: the entry maps a 1 GiB or 2 MiB page. (In a
    /// 4 KiB leaf this bit is PAT, which [`map`] refuses.)
    pub const HUGE: PageFlags = PageFlags(1 << 7);
    /// The TLB entry survives address-space switches (kernel pages).
    pub const GLOBAL: PageFlags = PageFlags(1 << 8);
    /// Instruction fetches are forbidden (if set at any level of the walk).
    pub const NO_EXECUTE: PageFlags = PageFlags(1 << 63);

    /// No flag set.
    pub const fn empty() -> Self {
        PageFlags(0)
    }

    /// The flags of a raw entry: every bit outside [`ADDR_MASK`].
    pub const fn from_entry(entry: u64) -> Self {
        PageFlags(entry & !ADDR_MASK)
    }

    /// Flags from raw bits; `None` if any bit lies inside [`ADDR_MASK`].
    pub const fn from_bits(bits: u64) -> Option<Self> {
        if bits & ADDR_MASK == 0 {
            Some(PageFlags(bits))
        } else {
            None
        }
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: PageFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `self` with the flags of `other` added.
    pub const fn union(self, other: PageFlags) -> Self {
        PageFlags(self.0 | other.0)
    }

    /// `self` without the flags of `other`.
    pub const fn difference(self, other: PageFlags) -> Self {
        PageFlags(self.0 & !other.0)
    }
}

impl BitOr for PageFlags {
    type Output = PageFlags;
    fn bitor(self, rhs: PageFlags) -> PageFlags {
        self.union(rhs)
    }
}

impl BitOrAssign for PageFlags {
    fn bitor_assign(&mut self, rhs: PageFlags) {
        *self = self.union(rhs);
    }
}

impl BitAnd for PageFlags {
    type Output = PageFlags;
    fn bitand(self, rhs: PageFlags) -> PageFlags {
        PageFlags(self.0 & rhs.0)
    }
}

impl Not for PageFlags {
    type Output = PageFlags;
    /// The complement within the flag bits (never sets address bits).
    fn not(self) -> PageFlags {
        PageFlags(!self.0 & !ADDR_MASK)
    }
}

/// Why a mapping operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapError {
    /// The virtual address is not canonical (bits 63..47 differ).
    NonCanonical(u64),
    /// The virtual address is canonical but in the kernel half.
    NotUserAddress(u64),
    /// The virtual address is not 4 KiB aligned.
    Misaligned(u64),
    /// The physical address is not 4 KiB aligned or exceeds 52 bits.
    BadPhysAddress(u64),
    /// The flags hold address bits or [`PageFlags::HUGE`] (PAT in a leaf).
    InvalidFlags(PageFlags),
    /// A page is already mapped at the virtual address.
    AlreadyMapped(u64),
    /// No page is mapped at the virtual address.
    NotMapped(u64),
    /// A huge (1 GiB or 2 MiB) entry covers the virtual address; this module
    /// only manages 4 KiB user pages.
    HugePage(u64),
    /// A new page table could not be allocated.
    OutOfMemory,
    /// A kernel mapping was asked for outside the kernel half.
    NotKernelAddress(u64),
    /// The kernel image layout is not in order (see [`KernelImage`]).
    BadLayout,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::NonCanonical(va) => write!(f, "virtual address {va:#x} is not canonical"),
            MapError::NotUserAddress(va) => {
                write!(f, "virtual address {va:#x} is not in the user half")
            }
            MapError::Misaligned(va) => {
                write!(f, "virtual address {va:#x} is not 4 KiB aligned")
            }
            MapError::BadPhysAddress(pa) => {
                write!(f, "physical address {pa:#x} is not 4 KiB aligned or exceeds 52 bits")
            }
            MapError::InvalidFlags(fl) => {
                write!(f, "page flags {:#x} are invalid for a 4 KiB user page", fl.bits())
            }
            MapError::AlreadyMapped(va) => {
                write!(f, "a page is already mapped at {va:#x}")
            }
            MapError::NotMapped(va) => write!(f, "no page is mapped at {va:#x}"),
            MapError::HugePage(va) => {
                write!(f, "a huge page entry covers {va:#x}")
            }
            MapError::OutOfMemory => write!(f, "out of memory for a new page table"),
            MapError::NotKernelAddress(va) => {
                write!(f, "virtual address {va:#x} is not in the kernel half")
            }
            MapError::BadLayout => write!(f, "the kernel image layout is not in order"),
        }
    }
}

/// Whether `va` is canonical (bits 63..47 all equal).
pub const fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == (1 << 17) - 1
}

/// Whether `va` lies in the user half `[0, USER_END)`.
pub const fn is_user_address(va: u64) -> bool {
    va < USER_END
}

/// The four table indices of `va`: PML4, PDPT, PD, PT.
const fn indices(va: u64) -> [usize; 4] {
    [
        ((va >> 39) & 0x1ff) as usize,
        ((va >> 30) & 0x1ff) as usize,
        ((va >> 21) & 0x1ff) as usize,
        ((va >> 12) & 0x1ff) as usize,
    ]
}

const fn present(entry: u64) -> bool {
    entry & PageFlags::PRESENT.0 != 0
}

const fn huge(entry: u64) -> bool {
    entry & PageFlags::HUGE.0 != 0
}

const fn table_entry_bits() -> u64 {
    PageFlags::PRESENT.0 | PageFlags::WRITABLE.0 | PageFlags::USER.0
}

fn check_user_page(va: u64) -> Result<(), MapError> {
    if !is_canonical(va) {
        Err(MapError::NonCanonical(va))
    } else if !is_user_address(va) {
        Err(MapError::NotUserAddress(va))
    } else if !va.is_multiple_of(PAGE_SIZE) {
        Err(MapError::Misaligned(va))
    } else {
        Ok(())
    }
}

/// Maps the 4 KiB user page at `va` to the frame at `pa` in the address
/// space rooted at `root`.
///
/// The leaf entry is `pa | flags | PRESENT | USER`; pass
/// [`PageFlags::WRITABLE`] and/or [`PageFlags::NO_EXECUTE`] as needed.
/// Missing intermediate tables are created with `PRESENT | WRITABLE | USER`.
/// On any error nothing is changed: in particular, tables created by this
/// call are freed again if a later allocation fails. No TLB flush is needed
/// after mapping a previously unmapped page.
pub fn map<M: TableMemory + ?Sized>(
    mem: &mut M,
    root: u64,
    va: u64,
    pa: u64,
    flags: PageFlags,
) -> Result<(), MapError> {
    check_user_page(va)?;
    if pa & !ADDR_MASK != 0 {
        return Err(MapError::BadPhysAddress(pa));
    }
    if flags.0 & ADDR_MASK != 0 || flags.contains(PageFlags::HUGE) {
        return Err(MapError::InvalidFlags(flags));
    }
    let idx = indices(va);
    // Check first, so that a failure never leaves new tables behind.
    let (mut table, mut depth) = descend(mem, root, va)?;
    if depth == 3 && present(mem.read(table, idx[3])) {
        return Err(MapError::AlreadyMapped(va));
    }
    // Create the missing tables from `depth` down; remember them to undo.
    let mut created: [(u64, usize, u64); 3] = [(0, 0, 0); 3];
    let mut count = 0;
    while depth < 3 {
        let Some(new) = mem.alloc_table() else {
            for &(parent, index, child) in created[..count].iter().rev() {
                mem.write(parent, index, 0);
                mem.free_table(child);
            }
            return Err(MapError::OutOfMemory);
        };
        mem.write(table, idx[depth], new | table_entry_bits());
        created[count] = (table, idx[depth], new);
        count += 1;
        table = new;
        depth += 1;
    }
    let leaf = pa | flags.0 | PageFlags::PRESENT.0 | PageFlags::USER.0;
    mem.write(table, idx[3], leaf);
    Ok(())
}

/// How many page tables mapping the `pages` 4 KiB pages from `va` would
/// create in the address space rooted at `root`: the PDPTs, PDs and PTs
/// the range needs and the space lacks. A read-only walk, so callers can
/// charge every frame a mapping takes before making it. `va` must be
/// page-aligned; the range must stay in the user half.
pub fn tables_needed<M: TableMemory + ?Sized>(mem: &M, root: u64, va: u64, pages: u64) -> usize {
    if pages == 0 {
        return 0;
    }
    let last = va + (pages - 1) * PAGE_SIZE;
    let mut n = 0;
    // One step per 2 MiB region (one PT); the PDPT and PD of a region are
    // counted once, when the first region under them is seen.
    let mut region = va & !(SIZE_2M - 1);
    let mut counted_pdpt = u64::MAX;
    let mut counted_pd = u64::MAX;
    while region <= last {
        // A huge entry on the way: `map` refuses the page, so it creates
        // nothing.
        let depth = descend(mem, root, region).map_or(3, |(_, depth)| depth);
        // Tables missing from `depth` down: a PDPT (depth 0), a PD (depth
        // <= 1) and a PT (depth <= 2).
        if depth == 0 && region >> 39 != counted_pdpt {
            counted_pdpt = region >> 39;
            n += 1;
        }
        if depth <= 1 && region >> 30 != counted_pd {
            counted_pd = region >> 30;
            n += 1;
        }
        if depth <= 2 {
            n += 1;
        }
        region += SIZE_2M;
    }
    n
}

/// Unmaps the 4 KiB user page at `va` and returns the physical address of
/// its frame, which the caller now owns.
///
/// Intermediate tables are kept even when they become empty;
/// [`destroy_user_half`] reclaims them. The caller must flush the TLB entry
/// for `va` (and shoot it down on other CPUs using this address space).
pub fn unmap<M: TableMemory + ?Sized>(mem: &mut M, root: u64, va: u64) -> Result<u64, MapError> {
    let (table, index, leaf) = present_leaf(mem, root, va)?;
    mem.write(table, index, 0);
    Ok(leaf & ADDR_MASK)
}

/// The page table, index and entry of the present 4 KiB leaf mapping the
/// user page `va`.
fn present_leaf<M: TableMemory + ?Sized>(
    mem: &M,
    root: u64,
    va: u64,
) -> Result<(u64, usize, u64), MapError> {
    check_user_page(va)?;
    let (table, depth) = descend(mem, root, va)?;
    let index = indices(va)[3];
    let leaf = if depth == 3 { mem.read(table, index) } else { 0 };
    if !present(leaf) {
        return Err(MapError::NotMapped(va));
    }
    Ok((table, index, leaf))
}

/// Follows the present entries from `root` toward the page table of `va`:
/// the deepest table reached and its depth (3 when the page table exists,
/// 0 when only the root does). A huge entry on the way is `HugePage`. The
/// one walk of `map`, `tables_needed` and `present_leaf`. Always inlined:
/// every `PageMap` walks it, and out of line it cost about 15 instructions
/// per page of `memd_fault_zero`.
#[inline(always)]
fn descend<M: TableMemory + ?Sized>(mem: &M, root: u64, va: u64) -> Result<(u64, usize), MapError> {
    let idx = indices(va);
    let mut table = root;
    for (depth, &index) in idx[..3].iter().enumerate() {
        let entry = mem.read(table, index);
        if !present(entry) {
            return Ok((table, depth));
        }
        if depth > 0 && huge(entry) {
            return Err(MapError::HugePage(va));
        }
        table = entry & ADDR_MASK;
    }
    Ok((table, 3))
}

/// Clears `clear` in the leaf entry mapping the user page `va` and returns
/// the flags it had (so a pager can read and reset the accessed bit). Only
/// [`PageFlags::ACCESSED`] and [`PageFlags::DIRTY`] may be cleared: the
/// rest of the entry is the kernel's. The caller must flush the TLB entry
/// for `va`, or the CPU may not set the bit again.
pub fn clear_leaf_flags<M: TableMemory + ?Sized>(
    mem: &mut M,
    root: u64,
    va: u64,
    clear: PageFlags,
) -> Result<PageFlags, MapError> {
    if !PageFlags::ACCESSED.union(PageFlags::DIRTY).contains(clear) {
        return Err(MapError::InvalidFlags(clear));
    }
    let (table, index, leaf) = present_leaf(mem, root, va)?;
    if leaf & clear.0 != 0 {
        mem.write(table, index, leaf & !clear.0);
    }
    Ok(PageFlags::from_entry(leaf))
}

/// Frees the page tables on the path to `va` that no longer map anything,
/// bottom up (page table, then page directory, then PDPT; never the root),
/// clearing the entries that pointed to them. Call it after [`unmap`] so a
/// map/unmap loop over fresh addresses cannot pile up empty tables. Returns
/// how many tables were freed. The caller must flush the TLB for `va` (an
/// `invlpg` of the address also drops the paging-structure caches for it).
pub fn prune<M: TableMemory + ?Sized>(mem: &mut M, root: u64, va: u64) -> usize {
    if check_user_page(va).is_err() {
        return 0;
    }
    let idx = indices(va);
    // The tables on the path: path[0] = root, path[d] = table at depth d.
    let mut path = [root; 4];
    for depth in 0..3 {
        let entry = mem.read(path[depth], idx[depth]);
        if !present(entry) || (depth > 0 && huge(entry)) {
            return 0;
        }
        path[depth + 1] = entry & ADDR_MASK;
    }
    let mut freed = 0;
    for depth in (1..4).rev() {
        let table = path[depth];
        if (0..ENTRIES).any(|i| mem.read(table, i) != 0) {
            break;
        }
        mem.write(path[depth - 1], idx[depth - 1], 0);
        mem.free_table(table);
        freed += 1;
    }
    freed
}

/// Translates `va` (any half) to the physical address it maps to, offset
/// included, with the *effective* flags of the walk: the leaf's flags, except
/// that [`PageFlags::WRITABLE`] and [`PageFlags::USER`] are kept only if set
/// at every level, and [`PageFlags::NO_EXECUTE`] is added if set at any
/// level. 1 GiB and 2 MiB entries end the walk (their flags keep
/// [`PageFlags::HUGE`]). `None` if `va` is non-canonical or not mapped.
pub fn translate<M: TableMemory + ?Sized>(mem: &M, root: u64, va: u64) -> Option<(u64, PageFlags)> {
    if !is_canonical(va) {
        return None;
    }
    let idx = indices(va);
    let and_bits = PageFlags::WRITABLE.0 | PageFlags::USER.0;
    let mut and_flags = and_bits;
    let mut nx = 0;
    let mut table = root;
    for (depth, &index) in idx.iter().enumerate() {
        let entry = mem.read(table, index);
        if !present(entry) {
            return None;
        }
        and_flags &= entry;
        nx |= entry & PageFlags::NO_EXECUTE.0;
        let page_size = match depth {
            1 if huge(entry) => SIZE_1G,
            2 if huge(entry) => SIZE_2M,
            3 => PAGE_SIZE,
            _ => {
                table = entry & ADDR_MASK;
                continue;
            }
        };
        let base = entry & ADDR_MASK & !(page_size - 1);
        let flags = (entry & !ADDR_MASK & !and_bits) | and_flags | nx;
        return Some((base | (va & (page_size - 1)), PageFlags(flags)));
    }
    None
}

/// [`translate`] of a user address whose page user mode may read: the
/// physical address and the walk's effective flags where `va` is in the
/// user half and every level is present and user-accessible, else `None`
/// (what `translate` then a `PRESENT | USER` check answer for `va <
/// USER_END`). One unrolled pass for the system call fast paths.
#[inline]
pub fn user_translate<M: TableMemory + ?Sized>(
    mem: &M,
    root: u64,
    va: u64,
) -> Option<(u64, PageFlags)> {
    const NEED: u64 = PageFlags::PRESENT.0 | PageFlags::USER.0;
    if va >= USER_END {
        return None;
    }
    let [i4, i3, i2, i1] = indices(va);
    let e4 = mem.read(root, i4);
    if e4 & NEED != NEED {
        return None;
    }
    let e3 = mem.read(e4 & ADDR_MASK, i3);
    if e3 & NEED != NEED {
        return None;
    }
    // Only a present entry's address is followed.
    let (leaf, size, all, any) = if huge(e3) {
        (e3, SIZE_1G, e4 & e3, e4 | e3)
    } else {
        let e2 = mem.read(e3 & ADDR_MASK, i2);
        if e2 & NEED != NEED {
            return None;
        }
        if huge(e2) {
            (e2, SIZE_2M, e4 & e3 & e2, e4 | e3 | e2)
        } else {
            let e1 = mem.read(e2 & ADDR_MASK, i1);
            (e1, PAGE_SIZE, e4 & e3 & e2 & e1, e4 | e3 | e2 | e1)
        }
    };
    if all & NEED != NEED {
        return None;
    }
    let and_bits = PageFlags::WRITABLE.0 | PageFlags::USER.0;
    let flags =
        (leaf & !ADDR_MASK & !and_bits) | (all & and_bits) | (any & PageFlags::NO_EXECUTE.0);
    Some((leaf & ADDR_MASK & !(size - 1) | (va & (size - 1)), PageFlags(flags)))
}

/// The first page of `[va, va + len)` that user mode may not access as
/// asked (read, or write if `write`), and whether it was present at all;
/// `None` if every page allows the access. Like [`user_range_ok`], which
/// only says yes or no, but naming the page, so that a paged task's missing
/// page can be brought in and the access tried again. A range outside the
/// user half answers its first byte's page, not present.
pub fn first_denied_page<M: TableMemory + ?Sized>(
    mem: &M,
    root: u64,
    va: u64,
    len: u64,
    write: bool,
) -> Option<(u64, bool)> {
    let first = va & !(PAGE_SIZE - 1);
    let Some(end) = va.checked_add(len.max(1)) else { return Some((first, false)) };
    if end > USER_END || !is_user_address(va) {
        return Some((first, false));
    }
    let mut need = PageFlags::PRESENT | PageFlags::USER;
    if write {
        need |= PageFlags::WRITABLE;
    }
    let last = (end - 1) & !(PAGE_SIZE - 1);
    let mut page = first;
    loop {
        match translate(mem, root, page) {
            Some((_, flags)) if flags.contains(need) => {}
            Some(_) => return Some((page, true)),
            None => return Some((page, false)),
        }
        if page == last {
            return None;
        }
        page += PAGE_SIZE;
    }
}

/// Whether user code may access `[va, va + len)` — with writes if `write` —
/// in the address space rooted at `root`; the kernel calls this before
/// copying from or to a user pointer.
///
/// True only if the range does not overflow, ends at or below [`USER_END`],
/// and every page it touches is mapped with effective flags
/// `PRESENT | USER` (and `WRITABLE` if `write`). A zero-length range is
/// valid iff `va` is a user address (`va < USER_END`, null included): it
/// touches no page and nothing will be copied.
pub fn user_range_ok<M: TableMemory + ?Sized>(
    mem: &M,
    root: u64,
    va: u64,
    len: u64,
    write: bool,
) -> bool {
    if len == 0 {
        return is_user_address(va);
    }
    let Some(end) = va.checked_add(len) else {
        return false;
    };
    if end > USER_END {
        return false;
    }
    let mut need = PageFlags::PRESENT | PageFlags::USER;
    if write {
        need |= PageFlags::WRITABLE;
    }
    let last = (end - 1) & !(PAGE_SIZE - 1);
    let mut page = va & !(PAGE_SIZE - 1);
    loop {
        match translate(mem, root, page) {
            Some((_, flags)) if flags.contains(need) => {}
            _ => return false,
        }
        if page == last {
            return true;
        }
        page += PAGE_SIZE;
    }
}

/// Tears down the user half of the address space rooted at `root`.
///
/// Calls `free_frame` once per present 4 KiB leaf entry of the lower half
/// (with the frame's physical address; the callback decides what freeing
/// means, e.g. for shared frames), frees every lower-half table through
/// [`TableMemory::free_table`] and zeroes root entries `0..256`. The root
/// itself and the kernel half are left untouched. Huge lower-half entries,
/// which [`map`] never creates, are cleared without calling `free_frame`.
/// The caller must flush the TLB if this address space is live.
pub fn destroy_user_half<M: TableMemory + ?Sized>(
    mem: &mut M,
    root: u64,
    free_frame: &mut dyn FnMut(u64),
) {
    for i in 0..KERNEL_FIRST_ENTRY {
        let entry = mem.read(root, i);
        if present(entry) {
            destroy_table(mem, entry & ADDR_MASK, 1, free_frame);
        }
        if entry != 0 {
            mem.write(root, i, 0);
        }
    }
}

/// Frees the table at `table` (level 1 = PDPT, 2 = PD, 3 = PT) and
/// everything below it.
fn destroy_table<M: TableMemory + ?Sized>(
    mem: &mut M,
    table: u64,
    level: usize,
    free_frame: &mut dyn FnMut(u64),
) {
    for i in 0..ENTRIES {
        let entry = mem.read(table, i);
        if !present(entry) {
            continue;
        }
        if level == 3 {
            free_frame(entry & ADDR_MASK);
        } else if !huge(entry) {
            destroy_table(mem, entry & ADDR_MASK, level + 1, free_frame);
        }
    }
    mem.free_table(table);
}

/// Allocates a new root (PML4) table whose kernel half (entries
/// `256..512`) is copied from `kernel_root` and whose user half is empty.
///
/// Free it with [`destroy_user_half`] followed by
/// [`TableMemory::free_table`] on the root.
pub fn new_root<M: TableMemory + ?Sized>(mem: &mut M, kernel_root: u64) -> Result<u64, MapError> {
    let root = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
    for i in 0..KERNEL_FIRST_ENTRY {
        // `alloc_table` promises a zeroed frame; make sure of the user half.
        if mem.read(root, i) != 0 {
            mem.write(root, i, 0);
        }
    }
    for i in KERNEL_FIRST_ENTRY..ENTRIES {
        let entry = mem.read(kernel_root, i);
        mem.write(root, i, entry);
    }
    Ok(root)
}

/// Number of 4 KiB pages mapped in the user half of the address space rooted
/// at `root` (a huge entry counts as the 4 KiB pages it covers).
pub fn user_half_mapped_pages<M: TableMemory + ?Sized>(mem: &M, root: u64) -> usize {
    fn count<M: TableMemory + ?Sized>(mem: &M, table: u64, level: usize) -> usize {
        let mut pages = 0;
        for i in 0..ENTRIES {
            let entry = mem.read(table, i);
            if !present(entry) {
                continue;
            }
            pages += match level {
                3 => 1,
                1 if huge(entry) => ENTRIES * ENTRIES,
                2 if huge(entry) => ENTRIES,
                _ => count(mem, entry & ADDR_MASK, level + 1),
            };
        }
        pages
    }
    (0..KERNEL_FIRST_ENTRY)
        .map(|i| mem.read(root, i))
        .filter(|&e| present(e))
        .map(|e| count(mem, e & ADDR_MASK, 1))
        .sum()
}

/// How many pages of each size a kernel mapping used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageCount {
    /// 4 KiB pages.
    pub small: usize,
    /// 2 MiB pages.
    pub large: usize,
}

/// First address of the kernel half.
pub const KERNEL_HALF_START: u64 = 0xffff_8000_0000_0000;

/// The leaf flags [`map_kernel`] accepts besides the implied `PRESENT`.
const KERNEL_LEAF_FLAGS: u64 =
    PageFlags::WRITABLE.0 | PageFlags::NO_EXECUTE.0 | PageFlags::GLOBAL.0;

/// Maps `[va, va + len)` to `[pa, pa + len)` in the kernel half of the table
/// rooted at `root`, for the kernel's own use (never `USER`). Leaves get
/// `flags | PRESENT`; `flags` may hold only `WRITABLE`, `NO_EXECUTE` and
/// `GLOBAL`. A 2 MiB page is used wherever `va` and `pa` are both 2 MiB
/// aligned and the whole 2 MiB lies in the range, 4 KiB pages elsewhere.
/// Missing tables are created with `PRESENT | WRITABLE` (the leaf alone
/// decides the permissions).
///
/// Only for building the kernel half at boot, before any address space
/// copies it: on an error, what was already mapped stays (the kernel stops
/// on any error there).
pub fn map_kernel<M: TableMemory + ?Sized>(
    mem: &mut M,
    root: u64,
    va: u64,
    pa: u64,
    len: u64,
    flags: PageFlags,
) -> Result<PageCount, MapError> {
    if !is_canonical(va) {
        return Err(MapError::NonCanonical(va));
    }
    if va < KERNEL_HALF_START {
        return Err(MapError::NotKernelAddress(va));
    }
    if !va.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned(va));
    }
    if va.checked_add(len).is_none() {
        return Err(MapError::NonCanonical(va));
    }
    let pa_end = pa.checked_add(len).ok_or(MapError::BadPhysAddress(pa))?;
    if pa & !ADDR_MASK != 0 || pa_end > ADDR_MASK + 1 {
        return Err(MapError::BadPhysAddress(pa));
    }
    if flags.0 & !KERNEL_LEAF_FLAGS != 0 {
        return Err(MapError::InvalidFlags(flags));
    }
    let mut count = PageCount::default();
    let mut off = 0;
    while off < len {
        let (v, p) = (va + off, pa + off);
        let idx = indices(v);
        if v.is_multiple_of(SIZE_2M) && p.is_multiple_of(SIZE_2M) && len - off >= SIZE_2M {
            let pd = kernel_table(mem, root, v, 2)?;
            if present(mem.read(pd, idx[2])) {
                return Err(MapError::AlreadyMapped(v));
            }
            mem.write(pd, idx[2], p | flags.0 | PageFlags::PRESENT.0 | PageFlags::HUGE.0);
            count.large += 1;
            off += SIZE_2M;
        } else {
            let pt = kernel_table(mem, root, v, 3)?;
            if present(mem.read(pt, idx[3])) {
                return Err(MapError::AlreadyMapped(v));
            }
            mem.write(pt, idx[3], p | flags.0 | PageFlags::PRESENT.0);
            count.small += 1;
            off += PAGE_SIZE;
        }
    }
    Ok(count)
}

/// The table at depth `depth` (2 = page directory, 3 = page table) on the
/// path to kernel address `va`, created (supervisor, writable) if missing.
fn kernel_table<M: TableMemory + ?Sized>(
    mem: &mut M,
    root: u64,
    va: u64,
    depth: usize,
) -> Result<u64, MapError> {
    let idx = indices(va);
    let mut table = root;
    for (d, &index) in idx[..depth].iter().enumerate() {
        let entry = mem.read(table, index);
        table = if !present(entry) {
            let new = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
            mem.write(table, index, new | PageFlags::PRESENT.0 | PageFlags::WRITABLE.0);
            new
        } else if d > 0 && huge(entry) {
            return Err(MapError::HugePage(va));
        } else {
            entry & ADDR_MASK
        };
    }
    Ok(table)
}

/// Where the parts of the kernel image lie, as the linker script lays them
/// out: virtual addresses, 4 KiB aligned, each part starting where the
/// previous ends: text `[text, rodata)`, read-only data `[rodata, data)`,
/// writable data (`.data`, `.bss` with the boot stack, the heap)
/// `[data, end)`. `virt_offset` is virtual minus physical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// First byte of `.text`.
    pub text: u64,
    /// First byte of the read-only data (end of text).
    pub rodata: u64,
    /// First byte of the writable data (end of read-only data).
    pub data: u64,
    /// End of the image (the heap included).
    pub end: u64,
    /// Virtual minus physical address of every image byte.
    pub virt_offset: u64,
}

/// One range of the kernel half with its permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRegion {
    /// What it is, for the boot log.
    pub name: &'static str,
    /// First virtual address.
    pub va: u64,
    /// First physical address.
    pub pa: u64,
    /// Length in bytes (may be 0).
    pub len: u64,
    /// Leaf flags besides `PRESENT`.
    pub flags: PageFlags,
}

impl KernelRegion {
    /// `rwx`-style permissions, for the boot log.
    pub fn permissions(&self) -> &'static str {
        let w = self.flags.contains(PageFlags::WRITABLE);
        let x = !self.flags.contains(PageFlags::NO_EXECUTE);
        match (w, x) {
            (false, false) => "r--",
            (true, false) => "rw-",
            (false, true) => "r-x",
            (true, true) => "rwx",
        }
    }
}

/// The kernel half's plan, W^X: the image's text read-execute, its
/// read-only data read-only, its writable data read-write; then the direct
/// map of physical `[0, direct_size)` at `direct_base`, read-write and
/// no-execute, except the alias of the image's text and read-only data,
/// which is read-only (so that no writable alias of kernel code exists).
/// Every region is no-execute but the text.
pub fn kernel_regions(
    image: &KernelImage,
    direct_base: u64,
    direct_size: u64,
) -> Result<[KernelRegion; 6], MapError> {
    let i = image;
    let aligned = [i.text, i.rodata, i.data, i.end, direct_base, direct_size]
        .iter()
        .all(|a| a.is_multiple_of(PAGE_SIZE));
    let ordered = i.text < i.rodata && i.rodata <= i.data && i.data < i.end;
    if !(aligned && ordered) {
        return Err(MapError::BadLayout);
    }
    let Some(text_pa) = i.text.checked_sub(i.virt_offset) else {
        return Err(MapError::BadLayout);
    };
    let (data_pa, end_pa) = (i.data - i.virt_offset, i.end - i.virt_offset);
    if end_pa > direct_size || i.text < KERNEL_HALF_START {
        return Err(MapError::BadLayout);
    }
    let rw = PageFlags::WRITABLE | PageFlags::NO_EXECUTE;
    let region =
        |name, va: u64, pa, end: u64, flags| KernelRegion { name, va, pa, len: end - va, flags };
    let d = |pa: u64| direct_base + pa;
    Ok([
        region("text", i.text, text_pa, i.rodata, PageFlags::empty()),
        region("rodata", i.rodata, i.rodata - i.virt_offset, i.data, PageFlags::NO_EXECUTE),
        region("data, bss, heap", i.data, data_pa, i.end, rw),
        region("direct map", d(0), 0, d(text_pa), rw),
        region(
            "direct map of text, rodata",
            d(text_pa),
            text_pa,
            d(data_pa),
            PageFlags::NO_EXECUTE,
        ),
        region("direct map", d(data_pa), data_pa, d(direct_size), rw),
    ])
}

/// Allocates a root and maps `regions` into it (see [`map_kernel`]); the
/// user half stays empty. Returns the root and the pages each region used.
pub fn build_kernel_root<M: TableMemory + ?Sized, const N: usize>(
    mem: &mut M,
    regions: &[KernelRegion; N],
) -> Result<(u64, [PageCount; N]), MapError> {
    let root = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
    let mut counts = [PageCount::default(); N];
    for (r, count) in regions.iter().zip(counts.iter_mut()) {
        *count = map_kernel(mem, root, r.va, r.pa, r.len, r.flags)?;
    }
    Ok((root, counts))
}

/// Calls `f(va, pa, size, flags)` for every present leaf (4 KiB, 2 MiB or
/// 1 GiB) of the tables rooted at `root`, in address order, with the
/// effective flags of the walk (as [`translate`] gives them) and `va` sign
/// extended.
pub fn for_each_mapping<M: TableMemory + ?Sized>(
    mem: &M,
    root: u64,
    f: &mut dyn FnMut(u64, u64, u64, PageFlags),
) {
    fn walk<M: TableMemory + ?Sized>(
        mem: &M,
        table: u64,
        depth: usize,
        va: u64,
        (and_flags, nx): (u64, u64),
        f: &mut dyn FnMut(u64, u64, u64, PageFlags),
    ) {
        let shift = 39 - 9 * depth as u64;
        for i in 0..ENTRIES {
            let entry = mem.read(table, i);
            if !present(entry) {
                continue;
            }
            let mut v = va | ((i as u64) << shift);
            if depth == 0 && i >= KERNEL_FIRST_ENTRY {
                v |= 0xffff_0000_0000_0000;
            }
            let walk_flags = (and_flags & entry, nx | (entry & PageFlags::NO_EXECUTE.0));
            if depth == 3 || (depth > 0 && huge(entry)) {
                let size = 1u64 << shift;
                let and_bits = PageFlags::WRITABLE.0 | PageFlags::USER.0;
                let flags = (entry & !ADDR_MASK & !and_bits) | walk_flags.0 | walk_flags.1;
                f(v, entry & ADDR_MASK & !(size - 1), size, PageFlags(flags));
            } else {
                walk(mem, entry & ADDR_MASK, depth + 1, v, walk_flags, f);
            }
        }
    }
    let and_bits = PageFlags::WRITABLE.0 | PageFlags::USER.0;
    walk(mem, root, 0, 0, (and_bits, 0), f);
}

/// The first virtual address mapped both writable and executable in the
/// tables rooted at `root` (either half), or `None` if every page is W^X.
pub fn wx_violation<M: TableMemory + ?Sized>(mem: &M, root: u64) -> Option<u64> {
    let mut found = None;
    for_each_mapping(mem, root, &mut |va, _, _, flags| {
        if found.is_none()
            && flags.contains(PageFlags::WRITABLE)
            && !flags.contains(PageFlags::NO_EXECUTE)
        {
            found = Some(va);
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::Entry;
    use std::collections::{HashMap, HashSet};

    /// Page tables in a `HashMap`, with a frame budget and live-table count.
    struct Mem {
        tables: HashMap<u64, Box<[u64; ENTRIES]>>,
        next: u64,
        budget: usize,
        freed: Vec<u64>,
    }

    impl Mem {
        fn new() -> Self {
            Mem { tables: HashMap::new(), next: 0x10_0000, budget: usize::MAX, freed: Vec::new() }
        }
        fn live(&self) -> usize {
            self.tables.len()
        }
        fn root(&mut self) -> u64 {
            self.alloc_table().unwrap()
        }
    }

    impl TableMemory for Mem {
        fn read(&self, table: u64, index: usize) -> u64 {
            assert!(index < ENTRIES);
            self.tables.get(&table).expect("read of a non-table")[index]
        }
        fn write(&mut self, table: u64, index: usize, entry: u64) {
            assert!(index < ENTRIES);
            self.tables.get_mut(&table).expect("write to a non-table")[index] = entry;
        }
        fn alloc_table(&mut self) -> Option<u64> {
            if self.budget == 0 {
                return None;
            }
            self.budget -= 1;
            let t = self.next;
            self.next += PAGE_SIZE;
            self.tables.insert(t, Box::new([0; ENTRIES]));
            Some(t)
        }
        fn free_table(&mut self, table: u64) {
            self.tables.remove(&table).expect("free of a non-table");
            self.freed.push(table);
        }
    }

    const RW: PageFlags = PageFlags::WRITABLE;
    const RO: PageFlags = PageFlags::empty();
    const FRAME: u64 = 0x4000_0000;

    #[test]
    fn flags_basics() {
        let f = PageFlags::PRESENT | PageFlags::WRITABLE;
        assert!(f.contains(PageFlags::PRESENT));
        assert!(!f.contains(PageFlags::USER));
        assert!(f.contains(PageFlags::empty()));
        assert_eq!((f & PageFlags::WRITABLE), PageFlags::WRITABLE);
        assert_eq!(f.difference(PageFlags::PRESENT), PageFlags::WRITABLE);
        assert_eq!((!PageFlags::empty()).bits(), !ADDR_MASK);
        assert!(PageFlags::empty().is_empty());
        assert_eq!(PageFlags::from_entry(0x8000_0000_1234_5067).bits(), 0x8000_0000_0000_0067);
        assert_eq!(PageFlags::from_bits(0x1000), None);
        assert_eq!(
            PageFlags::from_bits(7),
            Some(PageFlags::PRESENT | PageFlags::WRITABLE | PageFlags::USER)
        );
        assert_eq!(PageFlags::NO_EXECUTE.bits(), 1 << 63);
        assert_eq!(PageFlags::HUGE.bits(), 0x80);
        assert_eq!(PageFlags::GLOBAL.bits(), 0x100);
    }

    #[test]
    fn canonical_and_user_checks() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(!is_canonical(0xffff_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(is_canonical(u64::MAX));
        assert!(is_user_address(LAST_USER_PAGE + 0xfff));
        assert!(!is_user_address(USER_END));
    }

    /// `tables_needed` is exactly what mapping the range then creates.
    #[test]
    fn tables_needed_is_exact() {
        let cases: [(u64, u64); 6] = [
            (0x40_1000, 1),
            (0x40_0000, 512),
            (0x5f_f000, 2),                // crosses a 2 MiB boundary
            (0x3fff_f000, 2),              // crosses a 1 GiB boundary
            (0x7f_ffff_f000, 2),           // crosses a 512 GiB boundary
            (0x1000_0000_0000, 16 * 1024), // MemMap's base, 64 MiB
        ];
        for (va, pages) in cases {
            let mut m = Mem::new();
            let root = m.root();
            // Something already mapped nearby, so some tables exist.
            map(&mut m, root, 0x40_0000, FRAME, RW).unwrap();
            let need = tables_needed(&m, root, va, pages);
            let before = m.live();
            for i in 0..pages {
                let page = va + i * PAGE_SIZE;
                if translate(&m, root, page).is_none() {
                    map(&mut m, root, page, FRAME, RW).unwrap();
                }
            }
            assert_eq!(m.live() - before, need, "{va:#x} × {pages}");
            assert_eq!(tables_needed(&m, root, va, pages), 0);
        }
    }

    #[test]
    fn map_translate_unmap_round_trip() {
        let mut m = Mem::new();
        let root = m.root();
        let va = 0x40_1000;
        map(&mut m, root, va, FRAME, RW).unwrap();
        assert_eq!(m.live(), 4);
        let (pa, fl) = translate(&m, root, va + 0x123).unwrap();
        assert_eq!(pa, FRAME + 0x123);
        assert_eq!(fl, PageFlags::PRESENT | PageFlags::USER | PageFlags::WRITABLE);
        assert_eq!(translate(&m, root, va + PAGE_SIZE), None);
        assert_eq!(translate(&m, root, va - 1), None);
        assert_eq!(user_half_mapped_pages(&m, root), 1);
        assert_eq!(unmap(&mut m, root, va), Ok(FRAME));
        assert_eq!(translate(&m, root, va), None);
        assert_eq!(user_half_mapped_pages(&m, root), 0);
        assert_eq!(unmap(&mut m, root, va), Err(MapError::NotMapped(va)));
        // The emptied tables are reused by the next mapping nearby.
        map(&mut m, root, va + PAGE_SIZE, FRAME, RO | PageFlags::NO_EXECUTE).unwrap();
        assert_eq!(m.live(), 4);
        let (_, fl) = translate(&m, root, va + PAGE_SIZE).unwrap();
        assert!(fl.contains(PageFlags::NO_EXECUTE) && !fl.contains(PageFlags::WRITABLE));
    }

    #[test]
    fn intermediate_tables_are_user_writable() {
        let mut m = Mem::new();
        let root = m.root();
        map(&mut m, root, 0x1000, FRAME, RO).unwrap();
        let pdpt = m.read(root, 0);
        assert_eq!(pdpt & !ADDR_MASK, 7);
        let pd = m.read(pdpt & ADDR_MASK, 0);
        assert_eq!(pd & !ADDR_MASK, 7);
        let pt = m.read(pd & ADDR_MASK, 0);
        assert_eq!(pt & !ADDR_MASK, 7);
        assert_eq!(m.read(pt & ADDR_MASK, 1), FRAME | 5);
    }

    #[test]
    fn map_errors() {
        let mut m = Mem::new();
        let root = m.root();
        let e = |m: &mut Mem, va, pa, fl| map(m, root, va, pa, fl);
        assert_eq!(e(&mut m, 0x1001, FRAME, RW), Err(MapError::Misaligned(0x1001)));
        assert_eq!(e(&mut m, USER_END, FRAME, RW), Err(MapError::NonCanonical(USER_END)));
        let k = 0xffff_8000_0000_0000;
        assert_eq!(e(&mut m, k, FRAME, RW), Err(MapError::NotUserAddress(k)));
        assert_eq!(e(&mut m, !0xfff_u64, FRAME, RW), Err(MapError::NotUserAddress(!0xfff_u64)));
        assert_eq!(e(&mut m, 0x1000, FRAME + 8, RW), Err(MapError::BadPhysAddress(FRAME + 8)));
        assert_eq!(e(&mut m, 0x1000, 1 << 52, RW), Err(MapError::BadPhysAddress(1 << 52)));
        assert_eq!(
            e(&mut m, 0x1000, FRAME, PageFlags::HUGE),
            Err(MapError::InvalidFlags(PageFlags::HUGE))
        );
        let bad = PageFlags(0x1000);
        assert_eq!(e(&mut m, 0x1000, FRAME, bad), Err(MapError::InvalidFlags(bad)));
        assert_eq!(m.live(), 1);
        e(&mut m, 0x1000, FRAME, RW).unwrap();
        assert_eq!(e(&mut m, 0x1000, FRAME + PAGE_SIZE, RO), Err(MapError::AlreadyMapped(0x1000)));
        assert_eq!(translate(&m, root, 0x1000).unwrap().0, FRAME);
    }

    #[test]
    fn unmap_errors() {
        let mut m = Mem::new();
        let root = m.root();
        assert_eq!(unmap(&mut m, root, 0x1234), Err(MapError::Misaligned(0x1234)));
        assert_eq!(unmap(&mut m, root, USER_END), Err(MapError::NonCanonical(USER_END)));
        assert_eq!(unmap(&mut m, root, !0xfff_u64), Err(MapError::NotUserAddress(!0xfff_u64)));
        assert_eq!(unmap(&mut m, root, 0x1000), Err(MapError::NotMapped(0x1000)));
        map(&mut m, root, 0x1000, FRAME, RW).unwrap();
        // Same PT, other entry; other PD entry; other PML4 entry.
        for va in [0x2000, 0x20_0000, 0x40_0000_0000, 0x80_0000_0000] {
            assert_eq!(unmap(&mut m, root, va), Err(MapError::NotMapped(va)));
        }
    }

    #[test]
    fn out_of_memory_leaves_nothing_behind() {
        for budget in 0..3 {
            let mut m = Mem::new();
            let root = m.root();
            m.budget = budget;
            assert_eq!(map(&mut m, root, 0x1000, FRAME, RW), Err(MapError::OutOfMemory));
            assert_eq!(m.live(), 1, "budget {budget}");
            assert!((0..ENTRIES).all(|i| m.read(root, i) == 0));
            assert_eq!(m.freed.len(), budget);
        }
        // With the PDPT already there, only the PD and PT are new.
        let mut m = Mem::new();
        let root = m.root();
        map(&mut m, root, 0x1000, FRAME, RW).unwrap();
        m.budget = 1;
        let va = 0x4000_0000; // PDPT index 1
        assert_eq!(map(&mut m, root, va, FRAME, RW), Err(MapError::OutOfMemory));
        assert_eq!(m.live(), 4);
        let pdpt = m.read(root, 0) & ADDR_MASK;
        assert_eq!(m.read(pdpt, 1), 0);
        m.budget = 2;
        map(&mut m, root, va, FRAME, RW).unwrap();
        assert_eq!(m.live(), 6);
        // An already-mapped page is reported even without memory.
        m.budget = 0;
        assert_eq!(map(&mut m, root, va, FRAME, RW), Err(MapError::AlreadyMapped(va)));
    }

    #[test]
    fn boundaries_of_the_user_half() {
        let mut m = Mem::new();
        let root = m.root();
        map(&mut m, root, LAST_USER_PAGE, FRAME, RW).unwrap();
        assert_eq!(m.read(root, 255) & !ADDR_MASK, 7);
        assert_eq!(translate(&m, root, USER_END - 1), Some((FRAME + 0xfff, PageFlags(7))));
        assert!(user_range_ok(&m, root, LAST_USER_PAGE, PAGE_SIZE, true));
        assert!(user_range_ok(&m, root, USER_END - 1, 1, true));
        assert!(!user_range_ok(&m, root, USER_END - 1, 2, false));
        assert!(!user_range_ok(&m, root, USER_END, 1, false));
        assert!(user_range_ok(&m, root, USER_END - 1, 0, false));
        assert!(!user_range_ok(&m, root, USER_END, 0, false));
        assert!(!user_range_ok(&m, root, 0xffff_8000_0000_0000, 0, false));
        assert_eq!(translate(&m, root, USER_END), None);
        assert_eq!(translate(&m, root, 0xffff_7fff_ffff_f000), None);
        assert_eq!(unmap(&mut m, root, LAST_USER_PAGE), Ok(FRAME));
    }

    #[test]
    fn user_range_ok_is_exact_at_page_boundaries() {
        let mut m = Mem::new();
        let root = m.root();
        let base = 0x7000_0000; // pages base, +1 (read-only), +2 (missing), +3
        map(&mut m, root, base, FRAME, RW).unwrap();
        map(&mut m, root, base + PAGE_SIZE, FRAME + PAGE_SIZE, RO).unwrap();
        map(&mut m, root, base + 3 * PAGE_SIZE, FRAME + 3 * PAGE_SIZE, RW).unwrap();
        let ok = |va, len, w| user_range_ok(&m, root, va, len, w);
        assert!(ok(base, PAGE_SIZE, true));
        assert!(ok(base, PAGE_SIZE + 1, false));
        assert!(!ok(base, PAGE_SIZE + 1, true)); // touches the read-only page
        assert!(ok(base + 0xfff, 1, true));
        assert!(!ok(base + 0xfff, 2, true));
        assert!(ok(base, 2 * PAGE_SIZE, false));
        assert!(!ok(base, 2 * PAGE_SIZE + 1, false)); // touches the hole
        assert!(!ok(base + 2 * PAGE_SIZE - 1, 2, false));
        assert!(ok(base + 3 * PAGE_SIZE, PAGE_SIZE, true));
        assert!(!ok(base + 3 * PAGE_SIZE, PAGE_SIZE + 1, true));
        assert!(!ok(base - 1, 1, false));
        assert!(!ok(base - 1, 2, false));
        assert!(ok(base + 10, 0, true)); // length 0: any user address
        assert!(ok(0, 0, true)); // null with length 0 is harmless
        assert!(!ok(0, 1, false));
        // Overflow of va + len.
        assert!(!ok(base, u64::MAX, false));
        assert!(!ok(u64::MAX, 1, false));
        assert!(!ok(u64::MAX, 0, false));
        assert!(!ok(base, USER_END, false));
    }

    #[test]
    fn user_range_ok_needs_user_and_write_at_every_level() {
        let mut m = Mem::new();
        let root = m.root();
        map(&mut m, root, 0x1000, FRAME, RW).unwrap();
        assert!(user_range_ok(&m, root, 0x1000, 8, true));
        // Strip WRITABLE from the PD entry: the leaf alone is not enough.
        let pdpt = m.read(root, 0) & ADDR_MASK;
        let pd_entry = m.read(pdpt, 0);
        m.write(pdpt, 0, pd_entry & !PageFlags::WRITABLE.bits());
        assert!(user_range_ok(&m, root, 0x1000, 8, false));
        assert!(!user_range_ok(&m, root, 0x1000, 8, true));
        assert!(!translate(&m, root, 0x1000).unwrap().1.contains(PageFlags::WRITABLE));
        // Strip USER from it: no user access at all.
        m.write(pdpt, 0, pd_entry & !PageFlags::USER.bits());
        assert!(!user_range_ok(&m, root, 0x1000, 8, false));
        // NO_EXECUTE at an upper level shows in the effective flags.
        m.write(pdpt, 0, pd_entry | PageFlags::NO_EXECUTE.bits());
        assert!(translate(&m, root, 0x1000).unwrap().1.contains(PageFlags::NO_EXECUTE));
        assert!(user_range_ok(&m, root, 0x1000, 8, true));
    }

    #[test]
    fn kernel_mapped_user_half_leaf_is_not_user_accessible() {
        // A supervisor-only leaf (written by hand) must fail the check.
        let mut m = Mem::new();
        let root = m.root();
        map(&mut m, root, 0x1000, FRAME, RW).unwrap();
        let pt = {
            let pdpt = m.read(root, 0) & ADDR_MASK;
            let pd = m.read(pdpt, 0) & ADDR_MASK;
            m.read(pd, 0) & ADDR_MASK
        };
        m.write(pt, 1, FRAME | 3);
        assert!(!user_range_ok(&m, root, 0x1000, 1, false));
    }

    /// A kernel half with a 1 GiB page, a 2 MiB page and a 4 KiB page.
    fn kernel_root(m: &mut Mem) -> u64 {
        let root = m.root();
        let pdpt = m.alloc_table().unwrap();
        let pd = m.alloc_table().unwrap();
        let pt = m.alloc_table().unwrap();
        let p_w = (PageFlags::PRESENT | PageFlags::WRITABLE).bits();
        m.write(root, 256, pdpt | p_w);
        m.write(root, 511, pdpt | p_w);
        m.write(pdpt, 0, 0x8000_0000 | p_w | PageFlags::HUGE.bits()); // 1 GiB
        m.write(pdpt, 1, pd | p_w);
        m.write(pd, 3, 0x20_0000 | p_w | PageFlags::HUGE.bits() | PageFlags::NO_EXECUTE.bits());
        m.write(pd, 4, pt | p_w);
        m.write(pt, 5, 0x1234_5000 | PageFlags::PRESENT.bits() | PageFlags::GLOBAL.bits());
        root
    }

    #[test]
    fn translate_handles_huge_pages_in_the_kernel_half() {
        let mut m = Mem::new();
        let root = kernel_root(&mut m);
        let k = 0xffff_8000_0000_0000u64;
        let (pa, fl) = translate(&m, root, k + 0x1234_5678).unwrap();
        assert_eq!(pa, 0x8000_0000 + 0x1234_5678);
        assert!(fl.contains(PageFlags::HUGE | PageFlags::WRITABLE));
        assert!(!fl.contains(PageFlags::USER));
        let two_m = k + (1 << 30) + 3 * (1 << 21);
        let (pa, fl) = translate(&m, root, two_m + 0x1_2345).unwrap();
        assert_eq!(pa, 0x20_0000 + 0x1_2345);
        assert!(fl.contains(PageFlags::HUGE | PageFlags::NO_EXECUTE));
        let four_k = k + (1 << 30) + 4 * (1 << 21) + 5 * PAGE_SIZE;
        let (pa, fl) = translate(&m, root, four_k + 0xabc).unwrap();
        assert_eq!(pa, 0x1234_5abc);
        assert_eq!(fl, PageFlags::PRESENT | PageFlags::GLOBAL);
        assert_eq!(translate(&m, root, four_k + PAGE_SIZE), None);
        assert_eq!(translate(&m, root, k + (2 << 30)), None);
        // The top of the address space (PML4 entry 511 aliases the same PDPT).
        assert_eq!(translate(&m, root, 0xffff_ff80_0000_0000).unwrap().0, 0x8000_0000);
        assert_eq!(translate(&m, root, 0x0000_8000_0000_0000), None);
        // Kernel pages never pass the user check.
        assert!(!user_range_ok(&m, root, k, 1, false));
    }

    #[test]
    fn huge_entries_in_the_user_half_are_refused() {
        let mut m = Mem::new();
        let root = m.root();
        map(&mut m, root, 0x1000, FRAME, RW).unwrap();
        let pdpt = m.read(root, 0) & ADDR_MASK;
        let huge_bits = (PageFlags::PRESENT | PageFlags::USER | PageFlags::HUGE).bits();
        m.write(pdpt, 1, 0x4000_0000 | huge_bits); // 1 GiB at 1 GiB
        let va = 0x4000_0000 + 0x5000;
        assert_eq!(map(&mut m, root, va, FRAME, RW), Err(MapError::HugePage(va)));
        assert_eq!(unmap(&mut m, root, va), Err(MapError::HugePage(va)));
        assert_eq!(translate(&m, root, va).unwrap().0, va);
        assert!(user_range_ok(&m, root, va, 10, false));
        assert_eq!(user_half_mapped_pages(&m, root), 1 + ENTRIES * ENTRIES);
        let mut frames = Vec::new();
        destroy_user_half(&mut m, root, &mut |f| frames.push(f));
        assert_eq!(frames, vec![FRAME]);
        assert_eq!(m.live(), 1);
    }

    #[test]
    fn destroy_frees_every_table_and_frame() {
        let mut m = Mem::new();
        let kroot = kernel_root(&mut m);
        let kernel_tables = m.live();
        let root = new_root(&mut m, kroot).unwrap();
        let kernel_entries: Vec<u64> = (0..ENTRIES).map(|i| m.read(kroot, i)).collect();
        let mut mapped = HashSet::new();
        let vas = [
            0x1000,
            0x2000,
            0x40_0000,
            0x7fff_f000,
            0x80_0000_0000,
            0x1234_5678_9000,
            LAST_USER_PAGE,
        ];
        for (n, va) in vas.into_iter().enumerate() {
            let pa = FRAME + n as u64 * PAGE_SIZE;
            map(&mut m, root, va, pa, RW).unwrap();
            mapped.insert(pa);
        }
        assert_eq!(user_half_mapped_pages(&m, root), vas.len());
        assert!(m.live() > kernel_tables + 1);
        let mut freed = Vec::new();
        destroy_user_half(&mut m, root, &mut |f| freed.push(f));
        assert_eq!(freed.len(), mapped.len());
        assert_eq!(freed.into_iter().collect::<HashSet<_>>(), mapped);
        assert_eq!(m.live(), kernel_tables + 1);
        assert!((0..KERNEL_FIRST_ENTRY).all(|i| m.read(root, i) == 0));
        for (i, &entry) in kernel_entries.iter().enumerate().skip(KERNEL_FIRST_ENTRY) {
            assert_eq!(m.read(root, i), entry);
        }
        assert_eq!(user_half_mapped_pages(&m, root), 0);
        // The kernel root is untouched and its tables are still translatable.
        assert_eq!(translate(&m, kroot, 0xffff_8000_0000_0000).unwrap().0, 0x8000_0000);
        // Destroying again is a no-op; the root can be reused and then freed.
        destroy_user_half(&mut m, root, &mut |_| panic!("no frame left"));
        map(&mut m, root, 0x1000, FRAME, RW).unwrap();
        destroy_user_half(&mut m, root, &mut |_| {});
        m.free_table(root);
        assert_eq!(m.live(), kernel_tables);
    }

    #[test]
    fn new_root_shares_the_kernel_half() {
        let mut m = Mem::new();
        let kroot = kernel_root(&mut m);
        let root = new_root(&mut m, kroot).unwrap();
        assert_ne!(root, kroot);
        for i in 0..ENTRIES {
            let expected = if i < KERNEL_FIRST_ENTRY { 0 } else { m.read(kroot, i) };
            assert_eq!(m.read(root, i), expected);
        }
        let k = 0xffff_8000_0000_0000 + 0x42;
        assert_eq!(translate(&m, root, k), translate(&m, kroot, k));
        m.budget = 0;
        assert_eq!(new_root(&mut m, kroot), Err(MapError::OutOfMemory));
    }

    #[test]
    fn errors_display_a_message() {
        let cases = [
            (MapError::NonCanonical(0x8000_0000_0000), "not canonical"),
            (MapError::NotUserAddress(0xffff_8000_0000_0000), "user half"),
            (MapError::Misaligned(0x1001), "aligned"),
            (MapError::BadPhysAddress(0x1001), "physical"),
            (MapError::InvalidFlags(PageFlags::HUGE), "flags 0x80"),
            (MapError::AlreadyMapped(0x1000), "already mapped"),
            (MapError::NotMapped(0x1000), "no page"),
            (MapError::HugePage(0x1000), "huge"),
            (MapError::OutOfMemory, "out of memory"),
            (MapError::NotKernelAddress(0x1000), "kernel half"),
            (MapError::BadLayout, "layout"),
        ];
        for (e, needle) in cases {
            let s = e.to_string();
            assert!(s.contains(needle), "{s:?} lacks {needle:?}");
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Map(u64, bool),
        Unmap(u64),
        Check(u64, u64, bool),
    }

    /// Pages clustered so that tables are shared, plus far-away ones.
    fn page() -> impl Strategy<Value = u64> {
        prop_oneof![
            (0u64..64).prop_map(|p| 0x40_0000 + p * PAGE_SIZE),
            (0u64..8).prop_map(|p| 0x7fff_ffe0_0000 - 4 * PAGE_SIZE + p * PAGE_SIZE),
            (0u64..(USER_END / PAGE_SIZE)).prop_map(|p| p * PAGE_SIZE),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (page(), any::<bool>()).prop_map(|(p, w)| Op::Map(p, w)),
            2 => page().prop_map(Op::Unmap),
            2 => (page(), 0u64..0x9000, 0u64..3 * PAGE_SIZE, any::<bool>())
                .prop_map(|(p, off, len, w)| Op::Check(p + off, len, w)),
        ]
    }

    #[test]
    fn clear_leaf_flags_resets_accessed_and_dirty_only() {
        let mut m = Mem::new();
        let root = m.root();
        map(&mut m, root, 0x40_0000, 0x5000, PageFlags::WRITABLE).unwrap();
        // The CPU sets the bits: mimic it on the leaf.
        let (_, f) = translate(&m, root, 0x40_0000).unwrap();
        assert!(!f.contains(PageFlags::ACCESSED));
        let pt = {
            let l1 = m.read(root, 0) & ADDR_MASK;
            let l2 = m.read(l1, 0) & ADDR_MASK;
            m.read(l2, 2) & ADDR_MASK
        };
        let leaf = m.read(pt, 0);
        m.write(pt, 0, leaf | PageFlags::ACCESSED.0 | PageFlags::DIRTY.0);
        let old = clear_leaf_flags(&mut m, root, 0x40_0000, PageFlags::ACCESSED).unwrap();
        assert!(old.contains(PageFlags::ACCESSED) && old.contains(PageFlags::DIRTY));
        let (pa, now) = translate(&m, root, 0x40_0000).unwrap();
        assert_eq!(pa, 0x5000);
        assert!(!now.contains(PageFlags::ACCESSED) && now.contains(PageFlags::DIRTY));
        assert!(now.contains(PageFlags::WRITABLE));
        assert_eq!(
            clear_leaf_flags(&mut m, root, 0x40_0000, PageFlags::WRITABLE),
            Err(MapError::InvalidFlags(PageFlags::WRITABLE))
        );
        assert_eq!(
            clear_leaf_flags(&mut m, root, 0x40_1000, PageFlags::ACCESSED),
            Err(MapError::NotMapped(0x40_1000))
        );
    }

    #[test]
    fn first_denied_page_names_the_page_and_whether_it_was_present() {
        let mut m = Mem::new();
        let root = m.root();
        let ro = PageFlags::empty();
        map(&mut m, root, 0x40_0000, 0x1000, ro).unwrap();
        map(&mut m, root, 0x40_1000, 0x2000, PageFlags::WRITABLE).unwrap();
        assert_eq!(first_denied_page(&m, root, 0x40_0010, 0x1ff0, false), None);
        assert_eq!(first_denied_page(&m, root, 0x40_0010, 10, true), Some((0x40_0000, true)));
        assert_eq!(first_denied_page(&m, root, 0x40_1ff0, 0x20, false), Some((0x40_2000, false)));
        assert_eq!(first_denied_page(&m, root, 0x40_1000, 0x1000, true), None);
        assert_eq!(
            first_denied_page(&m, root, USER_END - 8, 16, false),
            Some((USER_END - 4096, false))
        );
        assert_eq!(
            first_denied_page(&m, root, 0xffff_8000_0000_0000, 1, false),
            Some((0xffff_8000_0000_0000, false))
        );
    }

    proptest! {
        #[test]
        fn random_map_unmap_matches_a_model(ops in prop::collection::vec(op(), 0..200)) {
            let mut m = Mem::new();
            let root = m.root();
            let mut model: HashMap<u64, (u64, bool)> = HashMap::new();
            let mut next_frame = FRAME;
            for op in ops {
                match op {
                    Op::Map(va, w) => {
                        let pa = next_frame;
                        next_frame += PAGE_SIZE;
                        let r = map(&mut m, root, va, pa, if w { RW } else { RO });
                        match model.entry(va) {
                            Entry::Occupied(_) => {
                                prop_assert_eq!(r, Err(MapError::AlreadyMapped(va)));
                            }
                            Entry::Vacant(slot) => {
                                prop_assert_eq!(r, Ok(()));
                                slot.insert((pa, w));
                            }
                        }
                    }
                    Op::Unmap(va) => {
                        let r = unmap(&mut m, root, va);
                        match model.remove(&va) {
                            Some((pa, _)) => prop_assert_eq!(r, Ok(pa)),
                            None => prop_assert_eq!(r, Err(MapError::NotMapped(va))),
                        }
                    }
                    Op::Check(va, len, w) => {
                        let expected = if len == 0 {
                            va < USER_END
                        } else {
                            va.checked_add(len).is_some_and(|end| end <= USER_END)
                                && (va / PAGE_SIZE..=(va + len - 1) / PAGE_SIZE).all(|p| {
                                    model.get(&(p * PAGE_SIZE)).is_some_and(|&(_, pw)| pw || !w)
                                })
                        };
                        prop_assert_eq!(user_range_ok(&m, root, va, len, w), expected);
                    }
                }
            }
            prop_assert_eq!(user_half_mapped_pages(&m, root), model.len());
            for (&va, &(pa, w)) in &model {
                let (got, fl) = translate(&m, root, va + 7).unwrap();
                prop_assert_eq!(got, pa + 7);
                prop_assert_eq!(fl.contains(PageFlags::WRITABLE), w);
                prop_assert!(fl.contains(PageFlags::PRESENT | PageFlags::USER));
            }
            let mut freed = HashSet::new();
            destroy_user_half(&mut m, root, &mut |f| { assert!(freed.insert(f)); });
            let expected: HashSet<u64> = model.values().map(|&(pa, _)| pa).collect();
            prop_assert_eq!(freed, expected);
            prop_assert_eq!(m.live(), 1);
        }
    }

    proptest! {
        /// `user_translate` answers what `translate` and a user-read check
        /// answer, for any flags at any level (huge pages, supervisor-only
        /// or absent levels included) and any address.
        #[test]
        fn user_translate_is_translate_for_user_reads(
            va in 0u64..(1 << 48),
            flags in prop::array::uniform4(prop::sample::select(vec![
                0u64, 1, 3, 5, 7, 0x87, 0x85, 0x81, 0x17, 0x8000_0000_0000_0007,
            ])),
            other in any::<u64>(),
        ) {
            let mut m = Mem::new();
            let root = m.root();
            let (pdpt, pd, pt) = (m.alloc_table().unwrap(), m.alloc_table().unwrap(),
                m.alloc_table().unwrap());
            let [i4, i3, i2, i1] = indices(va);
            // An absent entry's address is no table: following it panics.
            let entry = |table: u64, f: u64| if f & 1 == 0 { 0xdead_0000 | f } else { table | f };
            m.write(root, i4, entry(pdpt, flags[0]));
            m.write(pdpt, i3, entry(pd, flags[1]));
            m.write(pd, i2, entry(pt, flags[2]));
            m.write(pt, i1, entry(FRAME, flags[3]));
            // The same path in the kernel half, user-accessible there.
            m.write(root, i4 | 256, entry(pdpt, flags[0]));
            let want = |va: u64| {
                if va >= USER_END {
                    return None;
                }
                translate(&m, root, va)
                    .filter(|(_, f)| f.contains(PageFlags::PRESENT | PageFlags::USER))
            };
            let kernel = va | 0xffff_8000_0000_0000;
            for a in [va, va ^ (other & 0xfff), va ^ (other & 0x1f_ffff), kernel, USER_END - 1] {
                prop_assert_eq!(user_translate(&m, root, a), want(a), "{:#x}", a);
            }
        }
    }

    #[test]
    fn prune_frees_emptied_tables_but_not_shared_ones() {
        let mut m = Mem::new();
        let root = m.alloc_table().unwrap();
        let base_tables = m.live();
        let rw = PageFlags::WRITABLE;
        map(&mut m, root, 0x40_0000, 0x1000, rw).unwrap();
        map(&mut m, root, 0x40_1000, 0x2000, rw).unwrap();
        assert_eq!(m.live(), base_tables + 3);
        unmap(&mut m, root, 0x40_0000).unwrap();
        // The page table still maps 0x40_1000: nothing to free.
        assert_eq!(prune(&mut m, root, 0x40_0000), 0);
        unmap(&mut m, root, 0x40_1000).unwrap();
        assert_eq!(prune(&mut m, root, 0x40_1000), 3);
        assert_eq!(m.live(), base_tables);
        assert_eq!(translate(&m, root, 0x40_1000), None);
        // A later map rebuilds the path.
        map(&mut m, root, 0x40_1000, 0x3000, rw).unwrap();
        assert_eq!(translate(&m, root, 0x40_1000).map(|t| t.0), Some(0x3000));
        // Nothing to prune on an unmapped or non-user address.
        assert_eq!(prune(&mut m, root, 0x7000_0000), 0);
        assert_eq!(prune(&mut m, root, 0xffff_8000_0000_0000), 0);
    }
}

#[cfg(test)]
mod kernel_half_tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Page tables in a `HashMap`, allocated from a counter.
    #[derive(Default)]
    struct Mem {
        tables: HashMap<u64, Box<[u64; ENTRIES]>>,
        next: u64,
        budget: Option<usize>,
    }

    impl TableMemory for Mem {
        fn read(&self, table: u64, index: usize) -> u64 {
            self.tables[&table][index]
        }
        fn write(&mut self, table: u64, index: usize, entry: u64) {
            self.tables.get_mut(&table).unwrap()[index] = entry;
        }
        fn alloc_table(&mut self) -> Option<u64> {
            if let Some(b) = self.budget.as_mut() {
                *b = b.checked_sub(1)?;
            }
            self.next += PAGE_SIZE;
            self.tables.insert(0x100_0000_0000 + self.next, Box::new([0; ENTRIES]));
            Some(0x100_0000_0000 + self.next)
        }
        fn free_table(&mut self, table: u64) {
            self.tables.remove(&table);
        }
    }

    const VMA: u64 = 0xffff_ffff_8000_0000;
    const DIRECT: u64 = 0xffff_8000_0000_0000;
    const GIB4: u64 = 4 << 30;
    const NX: PageFlags = PageFlags::NO_EXECUTE;
    const W: PageFlags = PageFlags::WRITABLE;

    /// The layout of a real build: text at 1 MiB + 36 KiB, a 32 MiB heap.
    fn image() -> KernelImage {
        KernelImage {
            text: VMA + 0x10_9000,
            rodata: VMA + 0x12_e000,
            data: VMA + 0x14_4000,
            end: VMA + 0x215_b000,
            virt_offset: VMA,
        }
    }

    /// Effective flags at `va`, `None` if unmapped.
    fn flags_at(m: &Mem, root: u64, va: u64) -> Option<PageFlags> {
        translate(m, root, va).map(|(_, f)| f)
    }

    fn writable(f: PageFlags) -> bool {
        f.contains(W)
    }
    fn executable(f: PageFlags) -> bool {
        !f.contains(NX)
    }

    #[test]
    fn the_plan_is_wx_and_covers_image_and_direct_map() {
        let img = image();
        let regions = kernel_regions(&img, DIRECT, GIB4).unwrap();
        let mut m = Mem::default();
        let (root, counts) = build_kernel_root(&mut m, &regions).unwrap();
        assert_eq!(wx_violation(&m, root), None);
        // The user half is empty: every address space copies only 256..512.
        assert!((0..KERNEL_FIRST_ENTRY).all(|i| m.read(root, i) == 0));
        // Text: read-execute; rodata: read-only; data: read-write, NX.
        for va in [img.text, img.rodata - 1] {
            let f = flags_at(&m, root, va).unwrap();
            assert!(executable(f) && !writable(f), "text {va:#x}: {f:?}");
        }
        for va in [img.rodata, img.data - 1] {
            let f = flags_at(&m, root, va).unwrap();
            assert!(!executable(f) && !writable(f), "rodata {va:#x}: {f:?}");
        }
        for va in [img.data, img.end - 1, img.end - 0x20_0000] {
            let f = flags_at(&m, root, va).unwrap();
            assert!(!executable(f) && writable(f), "data {va:#x}: {f:?}");
        }
        // Nothing of the image's 1 GiB window is mapped beyond the image.
        assert_eq!(translate(&m, root, img.text - 1), None);
        assert_eq!(translate(&m, root, img.end), None);
        assert_eq!(translate(&m, root, VMA), None);
        // The direct map: all of it NX, writable but for the image's code.
        let (pa, f) = translate(&m, root, DIRECT + 0x1234).unwrap();
        assert_eq!(pa, 0x1234);
        assert!(writable(f) && !executable(f));
        let text_alias = DIRECT + (img.text - VMA);
        let f = flags_at(&m, root, text_alias).unwrap();
        assert!(!writable(f) && !executable(f));
        let f = flags_at(&m, root, DIRECT + (img.data - VMA) - 1).unwrap();
        assert!(!writable(f) && !executable(f), "rodata alias");
        let f = flags_at(&m, root, DIRECT + (img.data - VMA)).unwrap();
        assert!(writable(f) && !executable(f), "data alias");
        let (pa, f) = translate(&m, root, DIRECT + GIB4 - 1).unwrap();
        assert_eq!(pa, GIB4 - 1);
        assert!(writable(f) && !executable(f));
        assert_eq!(translate(&m, root, DIRECT + GIB4), None);
        // Large pages wherever possible: 2048 in the direct map but the
        // first 2 MiB; 4 KiB pages around the image's unaligned parts.
        assert_eq!(counts[3].large + counts[4].large + counts[5].large, 2047);
        assert_eq!(counts[3].small + counts[4].small + counts[5].small, 512);
        assert_eq!(counts[0], PageCount { small: 0x25, large: 0 });
        assert_eq!(counts[2].large, 15);
        // Nothing is user-accessible, and every mapping is some region's.
        let mut bytes = 0;
        for_each_mapping(&m, root, &mut |va, pa, size, f| {
            assert!(!f.contains(PageFlags::USER));
            let r = regions.iter().find(|r| va >= r.va && va + size <= r.va + r.len).unwrap();
            assert_eq!(pa, r.pa + (va - r.va));
            assert_eq!(f.contains(W), r.flags.contains(W));
            assert_eq!(f.contains(NX), r.flags.contains(NX));
            bytes += size;
        });
        assert_eq!(bytes, regions.iter().map(|r| r.len).sum::<u64>());
    }

    #[test]
    fn wx_violation_finds_a_writable_executable_page() {
        let mut m = Mem::default();
        let root = m.alloc_table().unwrap();
        map_kernel(&mut m, root, VMA, 0, PAGE_SIZE, PageFlags::empty()).unwrap();
        map_kernel(&mut m, root, VMA + PAGE_SIZE, 0, PAGE_SIZE, W | NX).unwrap();
        assert_eq!(wx_violation(&m, root), None);
        map_kernel(&mut m, root, VMA + 0x20_0000, 0x20_0000, 0x20_0000, W).unwrap();
        assert_eq!(wx_violation(&m, root), Some(VMA + 0x20_0000));
        // A user page is checked too.
        let mut m = Mem::default();
        let root = m.alloc_table().unwrap();
        map(&mut m, root, 0x5000, 0x1000, W).unwrap();
        assert_eq!(wx_violation(&m, root), Some(0x5000));
        // NX on an upper level makes the leaf non-executable.
        let pdpt = m.read(root, 0);
        m.write(root, 0, pdpt | NX.bits());
        assert_eq!(wx_violation(&m, root), None);
    }

    #[test]
    fn map_kernel_errors() {
        let mut m = Mem::default();
        let root = m.alloc_table().unwrap();
        let e = |m: &mut Mem, va, pa, len, fl| map_kernel(m, root, va, pa, len, fl);
        assert_eq!(e(&mut m, 0x1000, 0, PAGE_SIZE, NX), Err(MapError::NotKernelAddress(0x1000)));
        let nc = 0x8000_0000_0000;
        assert_eq!(e(&mut m, nc, 0, PAGE_SIZE, NX), Err(MapError::NonCanonical(nc)));
        assert_eq!(e(&mut m, VMA + 8, 0, PAGE_SIZE, NX), Err(MapError::Misaligned(VMA + 8)));
        assert_eq!(e(&mut m, VMA, 0, 8, NX), Err(MapError::Misaligned(VMA)));
        assert_eq!(e(&mut m, VMA, 8, PAGE_SIZE, NX), Err(MapError::BadPhysAddress(8)));
        assert_eq!(e(&mut m, VMA, 1 << 52, PAGE_SIZE, NX), Err(MapError::BadPhysAddress(1 << 52)));
        assert_eq!(e(&mut m, !0xfff, 0, 0x2000, NX), Err(MapError::NonCanonical(!0xfff)));
        for bad in [PageFlags::USER, PageFlags::HUGE, PageFlags(0x1000)] {
            assert_eq!(e(&mut m, VMA, 0, PAGE_SIZE, bad), Err(MapError::InvalidFlags(bad)));
        }
        assert_eq!(m.tables.len(), 1);
        assert_eq!(e(&mut m, VMA, 0, 0, NX), Ok(PageCount::default()));
        // Overlaps: a 4 KiB page twice, a 2 MiB page over a page table, a
        // 4 KiB page under a 2 MiB page.
        e(&mut m, VMA, 0, PAGE_SIZE, NX).unwrap();
        assert_eq!(e(&mut m, VMA, 0, PAGE_SIZE, NX), Err(MapError::AlreadyMapped(VMA)));
        assert_eq!(e(&mut m, VMA, 0, 0x20_0000, NX), Err(MapError::AlreadyMapped(VMA)));
        let big = VMA + 0x20_0000;
        assert_eq!(e(&mut m, big, 0, 0x20_0000, NX), Ok(PageCount { small: 0, large: 1 }));
        assert_eq!(
            e(&mut m, big + 0x1000, 0, PAGE_SIZE, NX),
            Err(MapError::HugePage(big + 0x1000))
        );
        // Out of memory for a table.
        m.budget = Some(0);
        let far = DIRECT;
        assert_eq!(e(&mut m, far, 0, PAGE_SIZE, NX), Err(MapError::OutOfMemory));
        assert_eq!(build_kernel_root(&mut m, &[]), Err(MapError::OutOfMemory));
    }

    #[test]
    fn bad_layouts_are_refused() {
        let good = image();
        assert!(kernel_regions(&good, DIRECT, GIB4).is_ok());
        let cases = [
            KernelImage { text: good.text + 1, ..good },
            KernelImage { rodata: good.text, ..good },
            KernelImage { data: good.rodata - PAGE_SIZE, ..good },
            KernelImage { end: good.data, ..good },
            KernelImage { virt_offset: good.text + PAGE_SIZE, ..good },
            KernelImage { virt_offset: 0, ..good },
        ];
        for img in cases {
            assert_eq!(kernel_regions(&img, DIRECT, GIB4), Err(MapError::BadLayout), "{img:?}");
        }
        // The image must lie inside the direct map (its alias is carved out).
        assert_eq!(kernel_regions(&good, DIRECT, 0x100_0000), Err(MapError::BadLayout));
        assert_eq!(kernel_regions(&good, DIRECT + 8, GIB4), Err(MapError::BadLayout));
    }

    #[test]
    fn permissions_strings() {
        let r = kernel_regions(&image(), DIRECT, GIB4).unwrap();
        let p: Vec<&str> = r.iter().map(|r| r.permissions()).collect();
        assert_eq!(p, ["r-x", "r--", "rw-", "rw-", "r--", "rw-"]);
        let rwx = KernelRegion { flags: W, ..r[0] };
        assert_eq!(rwx.permissions(), "rwx");
    }

    proptest! {
        /// Any page-aligned layout gives exactly the planned permissions on
        /// every page, and never a writable executable one.
        #[test]
        fn random_layouts_map_exactly(
            text_pa in 1u64..0x400,
            sizes in (1u64..0x600, 0u64..0x600, 1u64..0x1200),
        ) {
            let text = VMA + text_pa * PAGE_SIZE;
            let rodata = text + sizes.0 * PAGE_SIZE;
            let data = rodata + sizes.1 * PAGE_SIZE;
            let img = KernelImage { text, rodata, data, end: data + sizes.2 * PAGE_SIZE, virt_offset: VMA };
            let regions = kernel_regions(&img, DIRECT, GIB4).unwrap();
            let mut m = Mem::default();
            let (root, _) = build_kernel_root(&mut m, &regions).unwrap();
            prop_assert_eq!(wx_violation(&m, root), None);
            for r in &regions {
                for va in [r.va, r.va + r.len / 2, r.va + r.len - 1] {
                    if r.len == 0 {
                        continue;
                    }
                    let (pa, f) = translate(&m, root, va).unwrap();
                    prop_assert_eq!(pa, r.pa + (va - r.va));
                    prop_assert_eq!(f.contains(W), r.flags.contains(W));
                    prop_assert_eq!(f.contains(NX), r.flags.contains(NX));
                }
            }
            prop_assert_eq!(translate(&m, root, text - 1), None);
            prop_assert_eq!(translate(&m, root, img.end), None);
        }
    }
}
