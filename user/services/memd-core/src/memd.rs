//! The memd state machine: tasks with their reserved ranges and pages, the
//! frame pool, the swap slots, the clock, and the queue of faults waiting
//! for a frame.
//!
//! This module owns every policy decision of memd: which page gets a frame,
//! which page leaves memory and how, which fault is resumed, waits or
//! kills. It acts only through [`Host`] and must never block, allocate a
//! frame the pool does not have, or free a frame a disk request still owns.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use alux_abi::TaskId;

use crate::share::{Offer, Share, ShareAnswer, ShareId};
use crate::slots::Slots;
use crate::types::*;

/// One reserved range of a task, keyed by its first page number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    pub(crate) end: u64,
    pub(crate) perms: Perms,
    pub(crate) init: Init,
    /// A shared range: its pages live in the share, and this task maps it
    /// as the share's side `.1`.
    pub(crate) share: Option<(ShareId, u8)>,
}

/// Where a page's content lives: a task's private pages, or a share's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Home {
    /// Page `n` is the task's page number `n`.
    Task(TaskId),
    /// Page `n` is the share's `n`-th page.
    Share(ShareId),
}

/// A fault parked on a page under I/O: answered when the I/O completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parked {
    pub(crate) fault: FaultId,
    pub(crate) task: TaskId,
    /// The mapping of the page the fault needs (0 for a private page).
    pub(crate) side: u8,
}

/// A page with content (a page of a reserved range that is absent from the
/// map has none yet: it starts as its range's `Init` says).
#[derive(Clone, Debug)]
pub(crate) enum Page {
    /// In pool frame `frame`, no I/O.
    Resident {
        frame: Frame,
        /// A swap slot kept for this page: its copy is valid unless `dirty`.
        slot: Option<Slot>,
        /// The frame differs from the slot's copy (or, with no slot, from a
        /// zero page).
        dirty: bool,
        /// Where it is mapped: bit `i` for mapping `i` (a private page has
        /// one mapping, 0; a shared page one per side).
        maps: u8,
        /// Mapped for a fault whose thread may not have run yet: the clock
        /// passes over it until it sees its accessed bit set (the thread
        /// touched it), so a page is never taken away before the access it
        /// was brought in for (which would livelock under pressure).
        fresh: bool,
        /// A swap write of it failed: the clock passes over it once.
        hold: bool,
    },
    /// Only in swap slot `slot`.
    Swapped { slot: Slot },
    /// Being written from `frame` to `slot`; faults wait in `waiters`.
    Out { frame: Frame, slot: Slot, waiters: Vec<Parked> },
    /// Being read from `slot` into `frame`; faults wait in `waiters`.
    In { frame: Frame, slot: Slot, waiters: Vec<Parked> },
}

impl Page {
    pub(crate) fn frame(&self) -> Option<Frame> {
        match *self {
            Page::Resident { frame, .. } | Page::Out { frame, .. } | Page::In { frame, .. } => {
                Some(frame)
            }
            Page::Swapped { .. } => None,
        }
    }
    pub(crate) fn slot(&self) -> Option<Slot> {
        match *self {
            Page::Resident { slot, .. } => slot,
            Page::Swapped { slot } | Page::Out { slot, .. } | Page::In { slot, .. } => Some(slot),
        }
    }
}

/// The pages of one home, with their counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Store {
    pub(crate) pages: BTreeMap<u64, Page>,
    /// Pages holding a frame (resident or under I/O).
    pub(crate) resident: u64,
    /// Pages holding a swap slot.
    pub(crate) swapped: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub(crate) quota: u64,
    pub(crate) reserved: u64,
    pub(crate) regions: BTreeMap<u64, Region>,
    pub(crate) store: Store,
    pub(crate) dying: bool,
}

impl Task {
    pub(crate) fn region(&self, vpn: u64) -> Option<Region> {
        self.region_at(vpn).map(|(_, r)| r)
    }
    /// The range holding `vpn`, with its first page.
    pub(crate) fn region_at(&self, vpn: u64) -> Option<(u64, Region)> {
        match self.regions.range(..=vpn).next_back() {
            Some((&s, r)) if r.end > vpn => Some((s, *r)),
            _ => None,
        }
    }
}

/// A disk request in flight, recorded on its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Io {
    pub(crate) tag: Tag,
    pub(crate) kind: IoKind,
    pub(crate) slot: Slot,
}

/// What a pool frame is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    /// On the free list.
    Free,
    /// Holds page `n` of `home`, with the disk request of that page.
    Page { home: Home, n: u64, io: Option<Io> },
    /// Owned by a request whose page died (released, or its task ended):
    /// freed with its slot when the completion comes back.
    Orphan { io: Io },
}

/// A fault waiting for a free frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiter {
    pub(crate) task: TaskId,
    pub(crate) fault: FaultId,
    pub(crate) va: u64,
    pub(crate) access: Access,
}

/// memd's whole policy state. See the crate documentation.
#[derive(Clone, Debug)]
pub struct Memd {
    pub(crate) cfg: Config,
    pub(crate) frames: Vec<Use>,
    pub(crate) free: Vec<u32>,
    pub(crate) slots: Slots,
    pub(crate) tasks: BTreeMap<TaskId, Task>,
    /// Regions two tasks share, by ID (see `share.rs`).
    pub(crate) shares: BTreeMap<ShareId, Share>,
    /// The shares by the connection they were negotiated on.
    pub(crate) by_conn: BTreeSet<(u64, ShareId)>,
    /// Share requests waiting for the other end (see `share.rs`).
    pub(crate) offers: Vec<Offer>,
    /// Answers to share requests, for the daemon to send.
    pub(crate) answers: Vec<ShareAnswer>,
    /// The next share ID.
    pub(crate) next_share: u64,
    pub(crate) waiters: VecDeque<Waiter>,
    pub(crate) hand: u32,
    pub(crate) seq: u32,
    /// Swap writes failed in a row (reset by a successful one).
    pub(crate) write_fail_streak: u32,
    pub(crate) writes_in_flight: u32,
    /// Requests memd owns (at the disk or queued).
    pub(crate) io_in_flight: u32,
    /// Requests handed to the disk and not completed.
    pub(crate) submitted: u32,
    /// Requests waiting for room at the disk (`max_io`), oldest first.
    pub(crate) queued: VecDeque<IoRequest>,
    pub(crate) c: Counters,
    /// The fault `fault` is answering, and how it was answered so far.
    pub(crate) watch: Option<(FaultId, FaultOutcome)>,
}

const fn vpn_of(va: u64) -> u64 {
    va / PAGE_SIZE
}
const fn va_of(vpn: u64) -> u64 {
    vpn * PAGE_SIZE
}

impl Memd {
    /// A memd with every frame free, every slot free and no task.
    /// `InvalidArgument` for an empty pool, watermarks out of order or
    /// larger than the pool, or a bad window.
    pub fn new(cfg: Config) -> Result<Memd, Error> {
        let window_ok = cfg.window_start.is_multiple_of(PAGE_SIZE)
            && cfg.window_end.is_multiple_of(PAGE_SIZE)
            && cfg.window_start >= PAGE_SIZE
            && cfg.window_start < cfg.window_end
            && cfg.window_end <= USER_END;
        if cfg.pool_frames == 0
            || cfg.max_io == 0
            || cfg.low_water == 0
            || cfg.low_water > cfg.high_water
            || cfg.high_water > cfg.pool_frames
            || !window_ok
        {
            return Err(Error::InvalidArgument);
        }
        let n = cfg.pool_frames;
        Ok(Memd {
            cfg,
            frames: alloc::vec![Use::Free; n as usize],
            // Popped from the end: frame 0 first.
            free: (0..n).rev().collect(),
            slots: Slots::new(cfg.swap_slots),
            tasks: BTreeMap::new(),
            shares: BTreeMap::new(),
            by_conn: BTreeSet::new(),
            offers: Vec::new(),
            answers: Vec::new(),
            next_share: 1,
            waiters: VecDeque::new(),
            hand: 0,
            seq: 0,
            write_fail_streak: 0,
            writes_in_flight: 0,
            io_in_flight: 0,
            submitted: 0,
            queued: VecDeque::new(),
            c: Counters {
                frames_total: n as u64,
                frames_free: n as u64,
                slots_total: cfg.swap_slots as u64,
                ..Counters::default()
            },
            watch: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        let mut c = self.c;
        c.frames_free = self.free.len() as u64;
        c.frames_io = self.io_in_flight as u64;
        c.slots_used = self.slots.used() as u64;
        c.tasks = self.tasks.len() as u64;
        c.waiting = self.waiters.len() as u64;
        c
    }

    /// One task's accounting, if memd knows it.
    pub fn task(&self, task: TaskId) -> Option<TaskCounters> {
        self.tasks.get(&task).map(|t| TaskCounters {
            quota: t.quota,
            reserved: t.reserved,
            resident: t.store.resident,
            swapped: t.store.swapped,
            dying: t.dying,
        })
    }

    /// The state of page `va` of `task` (`None`: no such task, or the page
    /// has no content yet).
    pub fn page(&self, task: TaskId, va: u64) -> Option<PageView> {
        let (home, n, side, _) = self.locate(task, vpn_of(va))?;
        let page = self.store(home)?.pages.get(&n)?;
        Some(match *page {
            Page::Resident { frame, slot, dirty, maps, .. } => {
                PageView::Resident { frame, slot, dirty, mapped: maps & (1 << side) != 0 }
            }
            Page::Swapped { slot } => PageView::Swapped { slot },
            Page::Out { frame, slot, ref waiters } => {
                PageView::Out { frame, slot, waiters: waiters.len() }
            }
            Page::In { frame, slot, ref waiters } => {
                PageView::In { frame, slot, waiters: waiters.len() }
            }
        })
    }

    /// Who holds `frame`: `Some((task, va))` for a page's frame (under I/O
    /// or not), `None` for a free frame, one whose page died while its
    /// request is in flight, or an index outside the pool.
    pub fn owner(&self, frame: Frame) -> Option<(TaskId, u64)> {
        match *self.frames.get(frame.0 as usize)? {
            Use::Page { home, n, .. } => {
                self.mappings(home, n).into_iter().flatten().next().map(|m| (m.task, m.va))
            }
            _ => None,
        }
    }

    /// Every place `frame` is mapped at while mapped: one for a private
    /// page, one per side still there for a shared page (mapped or not
    /// yet); empty for a free frame or an orphan.
    pub fn owners(&self, frame: Frame) -> Vec<(TaskId, u64)> {
        match self.frames.get(frame.0 as usize) {
            Some(&Use::Page { home, n, .. }) => {
                self.mappings(home, n).into_iter().flatten().map(|m| (m.task, m.va)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// No task, every frame free, every slot free, no request in flight.
    pub fn is_idle(&self) -> bool {
        self.tasks.is_empty()
            && self.shares.is_empty()
            && self.offers.is_empty()
            && self.free.len() == self.frames.len()
            && self.slots.used() == 0
            && self.io_in_flight == 0
            && self.waiters.is_empty()
    }

    /// The requests memd owns, at the disk or queued for it (for a daemon
    /// that must report them).
    pub fn in_flight(&self) -> impl Iterator<Item = IoRequest> + '_ {
        self.frames.iter().enumerate().filter_map(|(f, u)| {
            let io = match *u {
                Use::Page { io: Some(io), .. } | Use::Orphan { io } => io,
                _ => return None,
            };
            Some(IoRequest { tag: io.tag, kind: io.kind, slot: io.slot, frame: Frame(f as u32) })
        })
    }

    // ------------------------------------------------------------ tasks and ranges

    /// Whether `task` (known, not dying) reserved `va` with a permission
    /// that allows `access`: the daemon asks before sending a fault a
    /// system call met, so that a bad pointer fails the call instead of
    /// killing the task.
    pub fn allows(&self, task: TaskId, va: u64, access: Access) -> bool {
        match self.tasks.get(&task) {
            Some(t) if !t.dying => t.region(vpn_of(va)).is_some_and(|r| r.perms.allows(access)),
            _ => false,
        }
    }

    /// A new unprivileged task (`TaskNew`), with its quota in pages (0: the
    /// default quota).
    pub fn task_new(&mut self, task: TaskId, quota_pages: u64) -> Result<(), Error> {
        if self.tasks.contains_key(&task) {
            return Err(Error::TaskExists);
        }
        let quota = if quota_pages == 0 { self.cfg.default_quota } else { quota_pages };
        self.tasks.insert(
            task,
            Task {
                quota,
                reserved: 0,
                regions: BTreeMap::new(),
                store: Store::default(),
                dying: false,
            },
        );
        Ok(())
    }

    fn live_task(&mut self, task: TaskId) -> Result<&mut Task, Error> {
        match self.tasks.get_mut(&task) {
            None => Err(Error::NoSuchTask),
            Some(t) if t.dying => Err(Error::Dying),
            Some(t) => Ok(t),
        }
    }

    /// Pages of a byte length: nonzero and at most the window.
    fn pages_of(&self, len: u64) -> Result<u64, Error> {
        let window = (self.cfg.window_end - self.cfg.window_start) / PAGE_SIZE;
        let pages = len.div_ceil(PAGE_SIZE);
        if len == 0 || pages > window {
            return Err(Error::InvalidArgument);
        }
        Ok(pages)
    }

    /// Reserves `len` bytes (rounded up to pages) anywhere in the task's
    /// reservation window, with at least one unreserved guard page on each
    /// side, backed lazily (zero-filled on first touch). Counts against the
    /// quota at once: `OutOfMemory` past it, for this task only.
    pub fn reserve(&mut self, task: TaskId, len: u64, perms: Perms) -> Result<u64, Error> {
        let pages = self.pages_of(len)?;
        let window = (vpn_of(self.cfg.window_start), vpn_of(self.cfg.window_end));
        let t = self.live_task(task)?;
        if t.reserved + pages > t.quota {
            return Err(Error::OutOfMemory);
        }
        let cand = place(t, pages, window).ok_or(Error::NoSpace)?;
        t.regions.insert(cand, Region { end: cand + pages, perms, init: Init::Zero, share: None });
        t.reserved += pages;
        Ok(va_of(cand))
    }

    /// Reserves `[addr, addr + len)` exactly (image segments, the start-info
    /// page, the main stack at spawn). Page aligned, in the user half above
    /// the null page, not overlapping a reserved range; counts against the
    /// quota like `reserve`.
    pub fn reserve_at(
        &mut self,
        task: TaskId,
        addr: u64,
        len: u64,
        perms: Perms,
        init: Init,
    ) -> Result<(), Error> {
        if !addr.is_multiple_of(PAGE_SIZE)
            || len == 0
            || !(PAGE_SIZE..USER_END).contains(&addr)
            || len > USER_END - addr
        {
            return Err(Error::InvalidArgument);
        }
        let (s, pages) = (vpn_of(addr), len.div_ceil(PAGE_SIZE));
        if va_of(s + pages) > USER_END {
            return Err(Error::InvalidArgument);
        }
        let t = self.live_task(task)?;
        let overlaps = t.regions.range(..s + pages).next_back().is_some_and(|(_, r)| r.end > s);
        if overlaps {
            return Err(Error::Overlap);
        }
        if t.reserved + pages > t.quota {
            return Err(Error::OutOfMemory);
        }
        t.regions.insert(s, Region { end: s + pages, perms, init, share: None });
        t.reserved += pages;
        Ok(())
    }

    /// Releases `[addr, addr + len)` (page aligned start, length rounded up
    /// to pages), which must be entirely reserved (`NotReserved` otherwise,
    /// and nothing changes); it may cut ranges. Every page of it dies: its
    /// frame is unmapped and freed, its slot freed; a page under I/O leaves
    /// its frame and slot to the request, freed when it completes. Faults of
    /// the task on those pages are killed (`Unreserved`).
    pub fn release<H: Host>(
        &mut self,
        host: &mut H,
        task: TaskId,
        addr: u64,
        len: u64,
    ) -> Result<(), Error> {
        if !addr.is_multiple_of(PAGE_SIZE) || len == 0 || addr >= USER_END || len > USER_END - addr
        {
            return Err(Error::InvalidArgument);
        }
        let (s, e) = (vpn_of(addr), vpn_of(addr) + len.div_ceil(PAGE_SIZE));
        let t = self.live_task(task)?;
        // Check coverage first: nothing changes on error.
        let mut at = s;
        if let Some((_, r)) = t.regions.range(..=s).next_back() {
            if r.end > s {
                at = r.end;
            }
        }
        if at == s {
            return Err(Error::NotReserved);
        }
        for (&start, r) in t.regions.range(s + 1..e) {
            if at >= e {
                break;
            }
            if start != at {
                return Err(Error::NotReserved);
            }
            at = r.end;
        }
        if at < e {
            return Err(Error::NotReserved);
        }
        // A shared range goes whole or not at all.
        let mut shared = Vec::new();
        let first = t.regions.range(..=s).next_back().map(|(&k, _)| k).unwrap_or(s);
        for (&k, r) in t.regions.range(first..e) {
            if let Some((id, side)) = r.share {
                if k < s || r.end > e {
                    return Err(Error::InvalidArgument);
                }
                shared.push((id, side));
            }
        }
        // Cut the ranges.
        let first = t.regions.range(..=s).next_back().map(|(&k, _)| k).unwrap_or(s);
        let keys: Vec<u64> = t.regions.range(first..e).map(|(&k, _)| k).collect();
        for k in keys {
            let Some(r) = t.regions.remove(&k) else { continue };
            if k < s {
                t.regions.insert(k, Region { end: s, ..r });
            }
            if r.end > e {
                t.regions.insert(e, r);
            }
        }
        t.reserved -= e - s;
        // Kill the pages.
        let vpns: Vec<u64> = t.store.pages.range(s..e).map(|(&k, _)| k).collect();
        let mut killed = Vec::new();
        for vpn in vpns {
            killed.extend(self.drop_page(host, Home::Task(task), vpn, true));
        }
        for (id, side) in shared {
            killed.extend(self.detach(host, id, side, true));
        }
        let mut i = 0;
        while i < self.waiters.len() {
            let w = self.waiters[i];
            if w.task == task && (s..e).contains(&vpn_of(w.va)) {
                self.waiters.remove(i);
                killed.push(Parked { fault: w.fault, task, side: 0 });
            } else {
                i += 1;
            }
        }
        for p in killed {
            self.kill(host, p.task, p.fault, KillReason::Unreserved);
        }
        self.settle(host);
        Ok(())
    }

    /// Takes page `n` of `home` out of its store and gives back what it
    /// holds (see `release`), unmapping it first if `unmap`; returns the
    /// faults that waited on it.
    pub(crate) fn drop_page<H: Host>(
        &mut self,
        host: &mut H,
        home: Home,
        n: u64,
        unmap: bool,
    ) -> Vec<Parked> {
        let maps = self.mappings(home, n);
        let Some(st) = self.store_mut(home) else {
            return Vec::new();
        };
        let Some(page) = st.pages.remove(&n) else {
            return Vec::new();
        };
        if page.frame().is_some() {
            st.resident -= 1;
        }
        if page.slot().is_some() {
            st.swapped -= 1;
        }
        match page {
            Page::Resident { frame, slot, maps: mapped, .. } => {
                if unmap {
                    for (i, m) in maps.iter().enumerate() {
                        match m {
                            Some(m) if mapped & (1 << i) != 0 => {
                                host.unmap(m.task, m.va);
                            }
                            _ => {}
                        }
                    }
                }
                self.free_frame(frame);
                if let Some(slot) = slot {
                    self.slots.free(slot);
                }
                Vec::new()
            }
            Page::Swapped { slot } => {
                self.slots.free(slot);
                Vec::new()
            }
            Page::Out { frame, waiters, .. } | Page::In { frame, waiters, .. } => {
                if let Use::Page { io: Some(io), .. } = self.frames[frame.0 as usize] {
                    self.frames[frame.0 as usize] = Use::Orphan { io };
                }
                waiters
            }
        }
    }

    /// The task ended (`TaskGone`): its page tables are gone, so nothing is
    /// unmapped; every frame and slot it held comes back, except those of
    /// requests in flight, which come back with their completions. Its
    /// waiting faults are forgotten (their threads are gone).
    pub fn task_gone<H: Host>(&mut self, host: &mut H, task: TaskId) -> Result<(), Error> {
        let Some(t) = self.tasks.get(&task) else {
            return Err(Error::NoSuchTask);
        };
        let vpns: Vec<u64> = t.store.pages.keys().copied().collect();
        let shared: Vec<(ShareId, u8)> = t.regions.values().filter_map(|r| r.share).collect();
        for vpn in vpns {
            self.drop_page(host, Home::Task(task), vpn, false);
        }
        for (id, side) in shared {
            // Its own faults are gone with its threads.
            self.detach(host, id, side, false);
        }
        self.waiters.retain(|w| w.task != task);
        self.tasks.remove(&task);
        self.offers_task_gone(task);
        self.settle(host);
        Ok(())
    }
}

impl Memd {
    // ------------------------------------------------------------ spawn population

    /// Gives page `va` of `task` its initial content at spawn: takes a
    /// frame, fills it with `bytes` (zeros after them), and maps it with its
    /// range's permissions. The page must be in a range reserved with
    /// `Init::Image` (`InvalidArgument` otherwise) and have no content yet.
    /// With no free frame, starts eviction and answers `NoFrame`: call
    /// again after the next `io_done`. Faults waiting for a frame go first.
    /// `OutOfMemory` if no frame can come (nothing can leave memory, no
    /// request is in flight, no fresh page or dying task's frame will come
    /// back): the spawn fails. With `NoFrame` and no request in flight,
    /// call again after a tick.
    pub fn populate<H: Host>(
        &mut self,
        host: &mut H,
        task: TaskId,
        va: u64,
        bytes: &[u8],
    ) -> Result<Populate, Error> {
        if !va.is_multiple_of(PAGE_SIZE) || va >= USER_END || bytes.len() as u64 > PAGE_SIZE {
            return Err(Error::InvalidArgument);
        }
        let vpn = vpn_of(va);
        let t = self.live_task(task)?;
        match t.region(vpn) {
            None => return Err(Error::NotReserved),
            Some(r) if r.init != Init::Image || r.share.is_some() => {
                return Err(Error::InvalidArgument)
            }
            Some(_) => {}
        }
        if t.store.pages.contains_key(&vpn) {
            return Err(Error::AlreadyPresent);
        }
        let frame = match self.waiters.is_empty() {
            true => self.take_frame(),
            false => None,
        };
        let Some(frame) = frame else {
            // A spawn waits like a fault: evict now, even a page on its
            // second chance.
            if self.waiters.is_empty() && self.writes_in_flight == 0 {
                self.evict_one(host, true);
            }
            self.settle(host);
            if self.free.is_empty() && self.io_in_flight == 0 && !self.frames_will_return() {
                return Err(Error::OutOfMemory);
            }
            return Ok(Populate::NoFrame);
        };
        if (bytes.len() as u64) < PAGE_SIZE {
            host.zero(frame);
        }
        host.copy_in(frame, 0, bytes);
        let home = Home::Task(task);
        self.attach(home, vpn, frame, None, true);
        if self.map_page(host, home, vpn, 1, 0) & 1 == 0 {
            self.drop_page(host, home, vpn, false);
            self.settle(host);
            return Err(Error::MapFailed);
        }
        self.settle(host);
        Ok(Populate::Done)
    }

    // ------------------------------------------------------------ faults

    /// A page fault of `task` (`Fault` event): resumes it, kills it, or makes
    /// it wait for I/O or a frame (answered by a later event). Every fault
    /// is answered exactly once, unless its task ends first. A fault served
    /// with a zero page also maps up to [`Config::fault_around`] following
    /// pages of its range (see `fault_around`). A page of a shared range is
    /// mapped into every task that shares it, not only the faulting one.
    pub fn fault<H: Host>(
        &mut self,
        host: &mut H,
        task: TaskId,
        fault: FaultId,
        va: u64,
        access: Access,
    ) -> FaultOutcome {
        let out = self.serve(host, Waiter { task, fault, va, access });
        if out != FaultOutcome::Waiting {
            self.settle(host);
            return out;
        }
        // Rebalancing may answer it at once (a clean page dropped, or no
        // frame can ever come): report that.
        self.watch = Some((fault, FaultOutcome::Waiting));
        self.settle(host);
        self.watch.take().map_or(out, |(_, o)| o)
    }

    /// Notes how a fault was answered, for `fault`'s result.
    fn answered(&mut self, fault: FaultId, out: FaultOutcome) {
        if let Some((f, o)) = &mut self.watch {
            if *f == fault {
                *o = out;
            }
        }
    }

    fn resumed(&mut self, host: &mut impl Host, fault: FaultId) -> FaultOutcome {
        host.resume(fault);
        self.answered(fault, FaultOutcome::Resumed);
        FaultOutcome::Resumed
    }

    /// The fault decision, without rebalancing. When it gives the page a
    /// frame, the other faults queued for the same page follow it (they
    /// need no frame of their own any more).
    fn serve<H: Host>(&mut self, host: &mut H, w: Waiter) -> FaultOutcome {
        let free = self.free.len();
        let out = self.decide(host, w);
        if self.free.len() < free {
            // The same page, by this task or (a shared page) the other.
            let page = self.locate(w.task, vpn_of(w.va)).map(|(h, n, ..)| (h, n));
            let mut i = 0;
            while i < self.waiters.len() {
                let x = self.waiters[i];
                let same = (x.task == w.task && vpn_of(x.va) == vpn_of(w.va))
                    || (page.is_some()
                        && self.locate(x.task, vpn_of(x.va)).map(|(h, n, ..)| (h, n)) == page);
                if same {
                    self.waiters.remove(i);
                    self.decide(host, x);
                } else {
                    i += 1;
                }
            }
        }
        out
    }

    fn decide<H: Host>(&mut self, host: &mut H, w: Waiter) -> FaultOutcome {
        let Waiter { task, fault, va, access } = w;
        let Some(t) = self.tasks.get(&task) else {
            return self.kill(host, task, fault, KillReason::UnknownTask);
        };
        let vpn = vpn_of(va);
        let verdict = if t.dying {
            Err(KillReason::TaskDying)
        } else if va >= USER_END {
            Err(KillReason::KernelAddress)
        } else if va < PAGE_SIZE {
            Err(KillReason::NullPage)
        } else {
            match t.region(vpn) {
                None => Err(KillReason::Unreserved),
                Some(r) if !r.perms.allows(access) => Err(match access {
                    Access::Exec => KillReason::ExecNonExec,
                    _ => KillReason::WriteReadOnly,
                }),
                Some(_) => Ok(()),
            }
        };
        if let Err(reason) = verdict {
            return self.kill(host, task, fault, reason);
        }
        let Some((home, n, side, _)) = self.locate(task, vpn) else {
            return self.kill(host, task, fault, KillReason::Unreserved);
        };
        let me = 1u8 << side;
        let st = self.store_mut(home).expect("located homes exist");
        match st.pages.get_mut(&n) {
            None => {
                let Some(frame) = self.take_frame() else {
                    self.waiters.push_back(w);
                    return FaultOutcome::Waiting;
                };
                host.zero(frame);
                self.attach(home, n, frame, None, false);
                if self.map_page(host, home, n, ALL, me) & me == 0 {
                    return self.kill(host, task, fault, KillReason::MapFailed);
                }
                self.c.faults_zero += 1;
                let out = self.resumed(host, fault);
                if let Home::Task(_) = home {
                    self.fault_around(host, task, vpn);
                }
                out
            }
            Some(Page::Resident { maps, .. }) if *maps & me != 0 => {
                // Another thread's fault mapped it first.
                self.c.faults_minor += 1;
                self.resumed(host, fault)
            }
            Some(Page::Resident { .. }) => {
                if self.map_page(host, home, n, me, me) & me == 0 {
                    return self.kill(host, task, fault, KillReason::MapFailed);
                }
                self.c.faults_minor += 1;
                self.resumed(host, fault)
            }
            Some(Page::Out { waiters, .. }) | Some(Page::In { waiters, .. }) => {
                waiters.push(Parked { fault, task, side });
                FaultOutcome::Waiting
            }
            Some(&mut Page::Swapped { slot }) => {
                let Some(frame) = self.take_frame() else {
                    self.waiters.push_back(w);
                    return FaultOutcome::Waiting;
                };
                let st = self.store_mut(home).expect("located homes exist");
                st.resident += 1;
                st.pages.insert(
                    n,
                    Page::In { frame, slot, waiters: alloc::vec![Parked { fault, task, side }] },
                );
                let io = self.start_io(home, n, frame, IoKind::Read, slot);
                if self.submit(host, io) {
                    FaultOutcome::Waiting
                } else {
                    FaultOutcome::Killed(KillReason::SwapReadFailed)
                }
            }
        }
    }

    /// Fault-around, after a fault on page `vpn` was served with a zero
    /// page: zero-fills and maps up to `fault_around` following pages of
    /// the same range, stopping at the range's end, at the first page with
    /// content (resident, swapped, under I/O, or given at spawn), when a
    /// fault waits, or when taking a frame would bring the pool down to its
    /// high watermark: it never makes the clock evict. The pages are
    /// ordinary resident pages, clean (a zero page needs no write to
    /// leave) and not fresh (the clock may take them back first if the
    /// task never touches them). A refused mapping gives the frame back
    /// and stops; it is not the fault's error. Private ranges only.
    fn fault_around<H: Host>(&mut self, host: &mut H, task: TaskId, vpn: u64) {
        if self.cfg.fault_around == 0 {
            return;
        }
        let Some(t) = self.tasks.get(&task) else { return };
        let Some(r) = t.region(vpn) else { return };
        let end = r.end.min(vpn.saturating_add(1 + self.cfg.fault_around as u64));
        let home = Home::Task(task);
        for next in vpn + 1..end {
            if !self.waiters.is_empty() || self.free.len() <= self.cfg.high_water as usize {
                return;
            }
            let Some(t) = self.tasks.get(&task) else { return };
            if t.store.pages.contains_key(&next) {
                return;
            }
            let Some(frame) = self.take_frame() else { return };
            host.zero(frame);
            self.attach(home, next, frame, None, false);
            if self.map_page(host, home, next, 1, 0) == 0 {
                self.drop_page(host, home, next, false);
                return;
            }
            self.c.prefaulted += 1;
        }
    }

    // ------------------------------------------------------------ disk completions

    /// The completion of request `tag` (`ok`: the transfer happened). A
    /// write that failed keeps the page in memory (the clock passes over it
    /// once, then it is tried again); a read that failed kills the task of
    /// the faults waiting for it. A request whose page died frees its frame
    /// and slot now. `UnknownTag` (and no change) for a tag not in flight.
    pub fn io_done<H: Host>(&mut self, host: &mut H, tag: Tag, ok: bool) -> Result<(), Error> {
        if !self.at_disk(tag) {
            return Err(Error::UnknownTag);
        }
        self.submitted -= 1;
        self.complete(host, tag, ok)?;
        self.settle(host);
        Ok(())
    }

    /// The disk could not take request `tag` now (the driver answered
    /// `Busy`): it goes back to memd's queue, its frame still pinned, and
    /// is handed over again when a completion makes room (or at the next
    /// tick). `UnknownTag` for a tag not at the disk.
    pub fn io_retry(&mut self, tag: Tag) -> Result<(), Error> {
        if !self.at_disk(tag) {
            return Err(Error::UnknownTag);
        }
        let req = self.request(tag).ok_or(Error::UnknownTag)?;
        self.submitted -= 1;
        self.queued.push_back(req);
        Ok(())
    }

    fn complete<H: Host>(&mut self, host: &mut H, tag: Tag, ok: bool) -> Result<(), Error> {
        let f = tag.frame();
        let u = *self.frames.get(f.0 as usize).ok_or(Error::UnknownTag)?;
        let io = match u {
            Use::Page { io: Some(io), .. } | Use::Orphan { io } if io.tag == tag => io,
            _ => return Err(Error::UnknownTag),
        };
        self.io_in_flight -= 1;
        if io.kind == IoKind::Write {
            self.writes_in_flight -= 1;
        }
        match io.kind {
            IoKind::Write if ok => {
                self.c.pages_out += 1;
                self.write_fail_streak = 0;
            }
            IoKind::Write => {
                self.c.write_errors += 1;
                self.write_fail_streak += 1;
            }
            IoKind::Read if ok => self.c.pages_in += 1,
            IoKind::Read => self.c.read_errors += 1,
        }
        // The page the request belongs to (none: an orphan, its page died).
        let page = match u {
            Use::Page { home, n, .. } => self
                .store_mut(home)
                .and_then(|st| st.pages.get_mut(&n))
                .filter(|p| matches!(p, Page::Out { .. } | Page::In { .. }))
                .map(|_| (home, n)),
            _ => None,
        };
        let Some((home, n)) = page else {
            // (An owned frame always has an owner, but a corrupted state
            // gives the frame back rather than panicking.)
            self.slots.free(io.slot);
            self.free_frame(f);
            return Ok(());
        };
        self.frames[f.0 as usize] = Use::Page { home, n, io: None };
        let Some(st) = self.store_mut(home) else { return Ok(()) };
        let Some(page) = st.pages.get_mut(&n) else { return Ok(()) };
        let waiters = match page {
            Page::Out { waiters, .. } | Page::In { waiters, .. } => core::mem::take(waiters),
            _ => Vec::new(),
        };
        let resident = |slot, dirty, hold| Page::Resident {
            frame: f,
            slot,
            dirty,
            maps: 0,
            fresh: false,
            hold,
        };
        match (io.kind, ok) {
            (IoKind::Write, true) if waiters.is_empty() => {
                *page = Page::Swapped { slot: io.slot };
                st.resident -= 1;
                self.free_frame(f);
            }
            (IoKind::Write, true) => {
                *page = resident(Some(io.slot), false, false);
                self.finish(host, home, n, waiters, false);
            }
            (IoKind::Write, false) => {
                *page = resident(None, true, true);
                st.swapped -= 1;
                self.slots.free(io.slot);
                self.finish(host, home, n, waiters, false);
            }
            (IoKind::Read, true) => {
                *page = resident(Some(io.slot), false, false);
                self.finish(host, home, n, waiters, true);
            }
            (IoKind::Read, false) => {
                *page = Page::Swapped { slot: io.slot };
                st.resident -= 1;
                self.free_frame(f);
                for w in waiters {
                    self.kill(host, w.task, w.fault, KillReason::SwapReadFailed);
                }
            }
        }
        Ok(())
    }

    /// Maps a page that came back from I/O (into every task that shares
    /// it) and answers the faults that waited for it.
    fn finish<H: Host>(
        &mut self,
        host: &mut H,
        home: Home,
        n: u64,
        waiters: Vec<Parked>,
        swapped_in: bool,
    ) {
        if waiters.is_empty() {
            return;
        }
        let sides = waiters.iter().fold(0u8, |m, w| m | 1 << w.side);
        let maps = self.map_page(host, home, n, ALL, sides);
        for w in waiters {
            if maps & (1 << w.side) == 0 {
                self.kill(host, w.task, w.fault, KillReason::MapFailed);
                continue;
            }
            match swapped_in {
                true => self.c.faults_swap += 1,
                false => self.c.faults_minor += 1,
            }
            self.resumed(host, w.fault);
        }
    }

    // ------------------------------------------------------------ homes

    /// The store of `home`.
    pub(crate) fn store(&self, home: Home) -> Option<&Store> {
        match home {
            Home::Task(t) => self.tasks.get(&t).map(|t| &t.store),
            Home::Share(s) => self.shares.get(&s).map(|s| &s.store),
        }
    }

    pub(crate) fn store_mut(&mut self, home: Home) -> Option<&mut Store> {
        match home {
            Home::Task(t) => self.tasks.get_mut(&t).map(|t| &mut t.store),
            Home::Share(s) => self.shares.get_mut(&s).map(|s| &mut s.store),
        }
    }

    /// Where page `vpn` of `task` keeps its content: its home, its page
    /// number there, the mapping it is (0 for a private page, the side for
    /// a shared one), and its range.
    pub(crate) fn locate(&self, task: TaskId, vpn: u64) -> Option<(Home, u64, u8, Region)> {
        let (start, r) = self.tasks.get(&task)?.region_at(vpn)?;
        match r.share {
            None => Some((Home::Task(task), vpn, 0, r)),
            Some((id, side)) => Some((Home::Share(id), vpn - start, side, r)),
        }
    }

    /// The places page `n` of `home` is mapped at when mapped: mapping `i`
    /// is `[i]`, `None` where there is none (a private page has one).
    pub(crate) fn mappings(&self, home: Home, n: u64) -> [Option<Mapping>; 2] {
        match home {
            Home::Task(task) => {
                // (A page being released has lost its range already: its
                // mapping is still where it was, and only unmapped.)
                let perms = self.tasks.get(&task).and_then(|t| t.region(n)).map(|r| r.perms);
                [Some(Mapping { task, va: va_of(n), perms: perms.unwrap_or(Perms::R) }), None]
            }
            Home::Share(id) => match self.shares.get(&id) {
                None => [None, None],
                Some(s) => s.sides.map(|side| {
                    side.map(|x| Mapping { task: x.task, va: va_of(x.start + n), perms: Perms::RW })
                }),
            },
        }
    }

    /// Whether every task mapping `home` is dying (its end frees the
    /// frames without I/O).
    fn home_dying(&self, home: Home) -> bool {
        let dying = |t: &TaskId| self.tasks.get(t).is_none_or(|t| t.dying);
        match home {
            Home::Task(t) => dying(&t),
            Home::Share(id) => self
                .shares
                .get(&id)
                .is_none_or(|s| s.sides.iter().flatten().all(|x| dying(&x.task))),
        }
    }

    // ------------------------------------------------------------ frames, I/O, kills

    fn take_frame(&mut self) -> Option<Frame> {
        self.free.pop().map(Frame)
    }

    fn free_frame(&mut self, f: Frame) {
        self.frames[f.0 as usize] = Use::Free;
        self.free.push(f.0);
    }

    /// Makes a fresh frame page `n` of `home`, resident and unmapped.
    fn attach(&mut self, home: Home, n: u64, frame: Frame, slot: Option<Slot>, dirty: bool) {
        self.frames[frame.0 as usize] = Use::Page { home, n, io: None };
        let st = self.store_mut(home).expect("attach to a live home");
        st.resident += 1;
        st.pages
            .insert(n, Page::Resident { frame, slot, dirty, maps: 0, fresh: false, hold: false });
    }

    /// Maps a resident page, with its range's permissions, at those of its
    /// mappings in `want` where it is not mapped yet; returns the mappings
    /// it has afterwards (a mapping the kernel refused is left out). The
    /// page turns fresh if a mapping in `fresh_for` (those whose faulting
    /// threads must touch it first) was made: never for a mapping the
    /// kernel refused, whose thread is killed and will never touch it.
    fn map_page<H: Host>(
        &mut self,
        host: &mut H,
        home: Home,
        n: u64,
        want: u8,
        fresh_for: u8,
    ) -> u8 {
        let places = self.mappings(home, n);
        let Some(Page::Resident { frame, maps, fresh, .. }) =
            self.store_mut(home).and_then(|st| st.pages.get_mut(&n))
        else {
            return 0;
        };
        for (i, m) in places.iter().enumerate() {
            let bit = 1u8 << i;
            let Some(m) = m else { continue };
            if want & bit == 0 || *maps & bit != 0 {
                continue;
            }
            if host.map(m.task, m.va, *frame, m.perms).is_ok() {
                *maps |= bit;
                *fresh |= fresh_for & bit != 0;
            }
        }
        *maps
    }

    /// Records a request on its frame (pinning it) and returns it.
    fn start_io(
        &mut self,
        home: Home,
        n: u64,
        frame: Frame,
        kind: IoKind,
        slot: Slot,
    ) -> IoRequest {
        self.seq = self.seq.wrapping_add(1).max(1);
        let tag = Tag::new(frame, self.seq);
        self.frames[frame.0 as usize] = Use::Page { home, n, io: Some(Io { tag, kind, slot }) };
        self.io_in_flight += 1;
        if kind == IoKind::Write {
            self.writes_in_flight += 1;
        }
        IoRequest { tag, kind, slot, frame }
    }

    /// Hands a request to the host; a refused one fails at once. Returns
    /// whether it was accepted.
    /// Past `max_io` requests at the disk, it waits in `queued` (its frame
    /// already pinned) until a completion makes room.
    fn submit<H: Host>(&mut self, host: &mut H, req: IoRequest) -> bool {
        if self.submitted >= self.cfg.max_io {
            self.queued.push_back(req);
            return true;
        }
        self.hand_over(host, req)
    }

    fn hand_over<H: Host>(&mut self, host: &mut H, req: IoRequest) -> bool {
        match host.submit(req) {
            Ok(()) => {
                self.submitted += 1;
                true
            }
            Err(back) => {
                let done = self.complete(host, back.tag, false);
                debug_assert!(done.is_ok(), "a refused request is in flight");
                false
            }
        }
    }

    /// Hands queued requests to the disk while it has room. A queued
    /// request whose page died is cancelled without I/O.
    fn pump_io<H: Host>(&mut self, host: &mut H) {
        let mut i = 0;
        while i < self.queued.len() {
            let req = self.queued[i];
            match self.frames[req.frame.0 as usize] {
                Use::Orphan { io } if io.tag == req.tag => {
                    self.queued.remove(i);
                    self.io_in_flight -= 1;
                    if io.kind == IoKind::Write {
                        self.writes_in_flight -= 1;
                    }
                    self.slots.free(io.slot);
                    self.free_frame(req.frame);
                }
                _ => i += 1,
            }
        }
        while self.submitted < self.cfg.max_io {
            let Some(req) = self.queued.pop_front() else {
                break;
            };
            self.hand_over(host, req);
        }
    }

    /// The request `tag` as recorded on its frame, if memd owns it.
    pub(crate) fn request(&self, tag: Tag) -> Option<IoRequest> {
        let io = match *self.frames.get(tag.frame().0 as usize)? {
            Use::Page { io: Some(io), .. } | Use::Orphan { io } if io.tag == tag => io,
            _ => return None,
        };
        Some(IoRequest { tag, kind: io.kind, slot: io.slot, frame: tag.frame() })
    }

    /// Whether `tag` is a request at the disk (submitted, not queued).
    fn at_disk(&self, tag: Tag) -> bool {
        self.request(tag).is_some() && !self.queued.iter().any(|r| r.tag == tag)
    }

    pub(crate) fn kill<H: Host>(
        &mut self,
        host: &mut H,
        task: TaskId,
        fault: FaultId,
        reason: KillReason,
    ) -> FaultOutcome {
        host.kill(task, fault, reason);
        self.answered(fault, FaultOutcome::Killed(reason));
        self.c.faults_killed += 1;
        if let Some(t) = self.tasks.get_mut(&task) {
            t.dying = true;
        }
        FaultOutcome::Killed(reason)
    }

    // ------------------------------------------------------------ eviction

    /// After every event: serve waiting faults while frames are free, and
    /// evict until the watermarks (and the waiting faults) are satisfied.
    /// If the waiting faults can never get a frame (no request in flight,
    /// no fresh page whose thread is about to touch it, no dying task
    /// holding frames, and nothing evictable; or swap writes keep failing),
    /// they are killed with `OutOfMemory` rather than left waiting forever.
    pub(crate) fn settle<H: Host>(&mut self, host: &mut H) {
        self.pump_io(host);
        loop {
            while !self.free.is_empty() {
                let Some(w) = self.waiters.pop_front() else {
                    break;
                };
                self.serve(host, w);
            }
            let free = self.free.len();
            let want = free < self.cfg.low_water as usize || !self.waiters.is_empty();
            let coming = free + self.writes_in_flight as usize;
            let target = (self.cfg.high_water as usize).max(self.waiters.len());
            if want && coming < target && self.evict_one(host, !self.waiters.is_empty()) {
                continue;
            }
            break;
        }
        let stuck = self.free.is_empty()
            && ((self.io_in_flight == 0 && !self.frames_will_return())
                || self.write_fail_streak >= self.cfg.pool_frames);
        if stuck && !self.waiters.is_empty() {
            self.write_fail_streak = 0;
            while let Some(w) = self.waiters.pop_front() {
                self.kill(host, w.task, w.fault, KillReason::OutOfMemory);
            }
        }
    }

    /// Whether frames will come back without I/O: a page is still fresh
    /// for a live task's thread (a tick will see it touched), or tasks
    /// that are all dying hold frames (their `TaskGone` frees them).
    fn frames_will_return(&self) -> bool {
        let fresh =
            |st: &Store| st.pages.values().any(|p| matches!(p, Page::Resident { fresh: true, .. }));
        self.tasks
            .values()
            .any(|t| (t.dying && t.store.resident > 0) || (!t.dying && fresh(&t.store)))
            || self.shares.iter().any(|(&id, s)| {
                let dying = self.home_dying(Home::Share(id));
                (dying && s.store.resident > 0) || (!dying && fresh(&s.store))
            })
    }

    /// Faults wait for a frame and no request is in flight: only pages
    /// just mapped for other faults hold the pool, and their threads must
    /// run before the clock may take them (or dying tasks hold frames until
    /// their `TaskGone`). The daemon then calls `tick` after a short delay
    /// (its receive timeout), as it would on an event. Also true when
    /// requests wait for the disk and none is at the disk (after
    /// `io_retry`).
    pub fn needs_tick(&self) -> bool {
        (!self.waiters.is_empty() && self.io_in_flight == 0)
            || (self.submitted == 0 && !self.queued.is_empty())
    }

    /// Runs the clock and serves waiting faults again (see `needs_tick`).
    pub fn tick<H: Host>(&mut self, host: &mut H) {
        self.settle(host);
    }

    /// The accessed and dirty bits of page `n` of `home` over all its
    /// mappings in `maps`, accessed cleared if `clear`.
    fn page_bits<H: Host>(
        &self,
        host: &mut H,
        home: Home,
        n: u64,
        maps: u8,
        clear: bool,
    ) -> PageBits {
        let mut b = PageBits::default();
        for (i, m) in self.mappings(home, n).iter().enumerate() {
            if let Some(m) = m {
                if maps & (1 << i) != 0 {
                    let x = host.bits(m.task, m.va, clear);
                    b.accessed |= x.accessed;
                    b.dirty |= x.dirty;
                }
            }
        }
        b
    }

    /// One step of the clock: finds a resident page not used lately and
    /// takes it out of memory (dropped if it has a valid copy or is an
    /// untouched zero page, else written to swap). False if none can go.
    /// A shared page counts as used if either task used it, and leaves
    /// both.
    ///
    /// Keeping the watermark (`urgent` false) sweeps the pool once at
    /// most, so every page keeps its second chance. A fault waiting for a
    /// frame (`urgent`) sweeps up to three times: a page may need three
    /// passes (fresh until touched, its hold, its accessed bit), so the
    /// clock then finds a victim whenever any page can leave. Fresh pages
    /// never leave before their thread touched them.
    fn evict_one<H: Host>(&mut self, host: &mut H, urgent: bool) -> bool {
        let n = self.cfg.pool_frames;
        let steps = if urgent { 3 * n } else { n };
        for _ in 0..steps {
            let f = self.hand;
            self.hand = (self.hand + 1) % n;
            let Use::Page { home, n: pn, io: None } = self.frames[f as usize] else {
                continue;
            };
            if self.home_dying(home) {
                // Its end frees the frame without I/O.
                continue;
            }
            let Some(&Page::Resident { maps, fresh, hold, .. }) =
                self.store(home).and_then(|st| st.pages.get(&pn))
            else {
                continue;
            };
            // (The clock reads the bits of a page on hold only while it is
            // fresh, as its first check.)
            let b = if maps != 0 && (fresh || !hold) {
                self.page_bits(host, home, pn, maps, true)
            } else {
                PageBits::default()
            };
            let Some(Page::Resident { hold: h, fresh: fr, dirty, .. }) =
                self.store_mut(home).and_then(|st| st.pages.get_mut(&pn))
            else {
                continue;
            };
            if fresh {
                *dirty |= b.dirty;
                *fr = maps != 0 && !b.accessed;
                continue;
            }
            if hold {
                *h = false;
                continue;
            }
            *dirty |= b.dirty;
            if b.accessed {
                continue;
            }
            if self.evict(host, home, pn, urgent) {
                return true;
            }
        }
        false
    }

    /// Takes one resident page out of memory (out of every mapping); false
    /// if it must stay (it needs a swap slot and none is free, or it needs
    /// a write while writes keep failing and no fault waits: a dead disk
    /// must not make memd retry forever for the watermark alone).
    fn evict<H: Host>(&mut self, host: &mut H, home: Home, n: u64, urgent: bool) -> bool {
        let full = self.slots.used() == self.slots.total();
        let failing = !urgent && self.write_fail_streak >= self.cfg.pool_frames;
        let places = self.mappings(home, n);
        let Some(st) = self.store_mut(home) else { return false };
        let Some(Page::Resident { frame, slot, dirty, maps, .. }) = st.pages.get_mut(&n) else {
            return false;
        };
        if (*dirty && slot.is_none() && full) || ((*dirty || slot.is_none()) && failing) {
            return false;
        }
        for (i, m) in places.iter().enumerate() {
            if let Some(m) = m {
                if *maps & (1 << i) != 0 {
                    *dirty |= host.unmap(m.task, m.va).dirty;
                }
            }
        }
        *maps = 0;
        let (frame, slot, dirty) = (*frame, *slot, *dirty);
        if !dirty {
            match slot {
                Some(slot) => {
                    st.pages.insert(n, Page::Swapped { slot });
                }
                None => {
                    st.pages.remove(&n);
                }
            }
            st.resident -= 1;
            self.free_frame(frame);
            self.c.evictions += 1;
            return true;
        }
        let slot = match slot {
            Some(s) => s,
            None => match self.slots.alloc() {
                Some(s) => {
                    self.store_mut(home).expect("evicted from a live home").swapped += 1;
                    s
                }
                // Dirtied between the bits and the unmap, and swap is full:
                // it stays, unmapped; its next fault maps it again.
                None => return false,
            },
        };
        let st = self.store_mut(home).expect("evicted from a live home");
        st.pages.insert(n, Page::Out { frame, slot, waiters: Vec::new() });
        let req = self.start_io(home, n, frame, IoKind::Write, slot);
        // A refused submission has failed already: the page stayed.
        let started = self.submit(host, req);
        self.c.evictions += started as u64;
        started
    }
}

/// Where a page is mapped when it is: a task, an address, permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) task: TaskId,
    pub(crate) va: u64,
    pub(crate) perms: Perms,
}

/// Every mapping of a page.
const ALL: u8 = 0b11;

/// First fit for `pages` pages in `window` (page numbers) of `t`'s
/// address space, with an unreserved guard page before and after.
pub(crate) fn place(t: &Task, pages: u64, window: (u64, u64)) -> Option<u64> {
    let (ws, we) = window;
    let mut cand = ws + 1;
    for (&start, r) in t.regions.range(..we) {
        if r.end < cand {
            continue;
        }
        if cand + pages < start {
            break;
        }
        cand = r.end + 1;
    }
    (cand + pages < we).then_some(cand)
}
