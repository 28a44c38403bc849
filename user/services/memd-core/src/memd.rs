//! The memd state machine: tasks with their reserved ranges and pages, the
//! frame pool, the swap slots, the clock, and the queue of faults waiting
//! for a frame.
//!
//! This module owns every policy decision of memd: which page gets a frame,
//! which page leaves memory and how, which fault is resumed, waits or
//! kills. It acts only through [`Host`] and must never block, allocate a
//! frame the pool does not have, or free a frame a disk request still owns.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use alux_abi::TaskId;

use crate::slots::Slots;
use crate::types::*;

/// One reserved range of a task, keyed by its first page number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    pub(crate) end: u64,
    pub(crate) perms: Perms,
    pub(crate) init: Init,
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
        /// Mapped in the task.
        mapped: bool,
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
    Out { frame: Frame, slot: Slot, waiters: Vec<FaultId> },
    /// Being read from `slot` into `frame`; faults wait in `waiters`.
    In { frame: Frame, slot: Slot, waiters: Vec<FaultId> },
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

#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub(crate) quota: u64,
    pub(crate) reserved: u64,
    pub(crate) regions: BTreeMap<u64, Region>,
    pub(crate) pages: BTreeMap<u64, Page>,
    pub(crate) dying: bool,
    pub(crate) resident: u64,
    pub(crate) swapped: u64,
}

impl Task {
    pub(crate) fn region(&self, vpn: u64) -> Option<Region> {
        match self.regions.range(..=vpn).next_back() {
            Some((_, r)) if r.end > vpn => Some(*r),
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
    /// Holds page `vpn` of `task`, with the disk request of that page.
    Page { task: TaskId, vpn: u64, io: Option<Io> },
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
            resident: t.resident,
            swapped: t.swapped,
            dying: t.dying,
        })
    }

    /// The state of page `va` of `task` (`None`: no such task, or the page
    /// has no content yet).
    pub fn page(&self, task: TaskId, va: u64) -> Option<PageView> {
        let page = self.tasks.get(&task)?.pages.get(&vpn_of(va))?;
        Some(match *page {
            Page::Resident { frame, slot, dirty, mapped, .. } => {
                PageView::Resident { frame, slot, dirty, mapped }
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
        match self.frames.get(frame.0 as usize)? {
            Use::Page { task, vpn, .. } => Some((*task, va_of(*vpn))),
            _ => None,
        }
    }

    /// No task, every frame free, every slot free, no request in flight.
    pub fn is_idle(&self) -> bool {
        self.tasks.is_empty()
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
                pages: BTreeMap::new(),
                dying: false,
                resident: 0,
                swapped: 0,
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
        let (ws, we) = (vpn_of(self.cfg.window_start), vpn_of(self.cfg.window_end));
        let t = self.live_task(task)?;
        if t.reserved + pages > t.quota {
            return Err(Error::OutOfMemory);
        }
        // First fit with a guard page before and after.
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
        if cand + pages + 1 > we {
            return Err(Error::NoSpace);
        }
        t.regions.insert(cand, Region { end: cand + pages, perms, init: Init::Zero });
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
        t.regions.insert(s, Region { end: s + pages, perms, init });
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
        let vpns: Vec<u64> = t.pages.range(s..e).map(|(&k, _)| k).collect();
        let mut killed = Vec::new();
        for vpn in vpns {
            killed.extend(self.drop_page(host, task, vpn, true));
        }
        let mut i = 0;
        while i < self.waiters.len() {
            let w = self.waiters[i];
            if w.task == task && (s..e).contains(&vpn_of(w.va)) {
                self.waiters.remove(i);
                killed.push(w.fault);
            } else {
                i += 1;
            }
        }
        for f in killed {
            self.kill(host, task, f, KillReason::Unreserved);
        }
        self.settle(host);
        Ok(())
    }

    /// Takes page `vpn` of `task` out of the map and gives back what it
    /// holds (see `release`); returns the faults that waited on it.
    fn drop_page<H: Host>(
        &mut self,
        host: &mut H,
        task: TaskId,
        vpn: u64,
        unmap: bool,
    ) -> Vec<FaultId> {
        let Some(t) = self.tasks.get_mut(&task) else {
            return Vec::new();
        };
        let Some(page) = t.pages.remove(&vpn) else {
            return Vec::new();
        };
        if page.frame().is_some() {
            t.resident -= 1;
        }
        if page.slot().is_some() {
            t.swapped -= 1;
        }
        match page {
            Page::Resident { frame, slot, mapped, .. } => {
                if mapped && unmap {
                    host.unmap(task, va_of(vpn));
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
        let vpns: Vec<u64> = t.pages.keys().copied().collect();
        for vpn in vpns {
            self.drop_page(host, task, vpn, false);
        }
        self.waiters.retain(|w| w.task != task);
        self.tasks.remove(&task);
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
            Some(r) if r.init != Init::Image => return Err(Error::InvalidArgument),
            Some(_) => {}
        }
        if t.pages.contains_key(&vpn) {
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
        self.attach(task, vpn, frame, None, true);
        if !self.map_page(host, task, vpn, false) {
            self.drop_page(host, task, vpn, false);
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
    /// pages of its range (see `fault_around`).
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

    /// The fault decision, without rebalancing. When it gives the page a
    /// frame, the other faults queued for the same page follow it (they
    /// need no frame of their own any more).
    fn serve<H: Host>(&mut self, host: &mut H, w: Waiter) -> FaultOutcome {
        let free = self.free.len();
        let out = self.decide(host, w);
        if self.free.len() < free {
            let vpn = vpn_of(w.va);
            let mut i = 0;
            while i < self.waiters.len() {
                let x = self.waiters[i];
                if x.task == w.task && vpn_of(x.va) == vpn {
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
        let Some(t) = self.tasks.get_mut(&task) else {
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
        match t.pages.get_mut(&vpn) {
            None => {
                let Some(frame) = self.take_frame() else {
                    self.waiters.push_back(w);
                    return FaultOutcome::Waiting;
                };
                host.zero(frame);
                self.attach(task, vpn, frame, None, false);
                if !self.map_page(host, task, vpn, true) {
                    return self.kill(host, task, fault, KillReason::MapFailed);
                }
                self.c.faults_zero += 1;
                host.resume(fault);
                self.answered(fault, FaultOutcome::Resumed);
                self.fault_around(host, task, vpn);
                FaultOutcome::Resumed
            }
            Some(Page::Resident { mapped: true, .. }) => {
                // Another thread's fault mapped it first.
                self.c.faults_minor += 1;
                host.resume(fault);
                self.answered(fault, FaultOutcome::Resumed);
                FaultOutcome::Resumed
            }
            Some(Page::Resident { .. }) => {
                if !self.map_page(host, task, vpn, true) {
                    return self.kill(host, task, fault, KillReason::MapFailed);
                }
                self.c.faults_minor += 1;
                host.resume(fault);
                self.answered(fault, FaultOutcome::Resumed);
                FaultOutcome::Resumed
            }
            Some(Page::Out { waiters, .. }) | Some(Page::In { waiters, .. }) => {
                waiters.push(fault);
                FaultOutcome::Waiting
            }
            Some(&mut Page::Swapped { slot }) => {
                let Some(frame) = self.free.pop().map(Frame) else {
                    self.waiters.push_back(w);
                    return FaultOutcome::Waiting;
                };
                t.resident += 1;
                let io = self.start_io(task, vpn, frame, IoKind::Read, slot);
                let t = self.tasks.get_mut(&task).expect("task checked above");
                t.pages.insert(vpn, Page::In { frame, slot, waiters: alloc::vec![fault] });
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
    /// and stops; it is not the fault's error.
    fn fault_around<H: Host>(&mut self, host: &mut H, task: TaskId, vpn: u64) {
        if self.cfg.fault_around == 0 {
            return;
        }
        let Some(t) = self.tasks.get(&task) else { return };
        let Some(r) = t.region(vpn) else { return };
        let end = r.end.min(vpn.saturating_add(1 + self.cfg.fault_around as u64));
        for next in vpn + 1..end {
            if !self.waiters.is_empty() || self.free.len() <= self.cfg.high_water as usize {
                return;
            }
            let Some(t) = self.tasks.get(&task) else { return };
            if t.pages.contains_key(&next) {
                return;
            }
            let Some(frame) = self.take_frame() else { return };
            host.zero(frame);
            self.attach(task, next, frame, None, false);
            if !self.map_page(host, task, next, false) {
                self.drop_page(host, task, next, false);
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
    /// `Busy`): it goes back to the queue, still owning its frame, and is
    /// handed over again after the next completion or tick. Nothing else
    /// happens (no rebalancing: that would resubmit it at once).
    /// `UnknownTag` for a tag not at the disk.
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
            Use::Page { task, vpn, .. } => self
                .tasks
                .get_mut(&task)
                .and_then(|t| t.pages.get_mut(&vpn))
                .filter(|p| matches!(p, Page::Out { .. } | Page::In { .. }))
                .map(|_| (task, vpn)),
            _ => None,
        };
        let Some((task, vpn)) = page else {
            // (A page in flight always points back to its frame, which
            // `audit` checks; treating a broken link as an orphan keeps the
            // frame and slot from leaking rather than panicking.)
            self.slots.free(io.slot);
            self.free_frame(f);
            return Ok(());
        };
        self.frames[f.0 as usize] = Use::Page { task, vpn, io: None };
        let Some(t) = self.tasks.get_mut(&task) else { return Ok(()) };
        let Some(page) = t.pages.get_mut(&vpn) else { return Ok(()) };
        let waiters = match page {
            Page::Out { waiters, .. } | Page::In { waiters, .. } => core::mem::take(waiters),
            _ => Vec::new(),
        };
        let resident = |slot, dirty, hold| Page::Resident {
            frame: f,
            slot,
            dirty,
            mapped: false,
            fresh: false,
            hold,
        };
        match (io.kind, ok) {
            (IoKind::Write, true) if waiters.is_empty() => {
                *page = Page::Swapped { slot: io.slot };
                t.resident -= 1;
                self.free_frame(f);
            }
            (IoKind::Write, true) => {
                *page = resident(Some(io.slot), false, false);
                self.finish(host, task, vpn, waiters, false);
            }
            (IoKind::Write, false) => {
                *page = resident(None, true, true);
                t.swapped -= 1;
                self.slots.free(io.slot);
                self.finish(host, task, vpn, waiters, false);
            }
            (IoKind::Read, true) => {
                *page = resident(Some(io.slot), false, false);
                self.finish(host, task, vpn, waiters, true);
            }
            (IoKind::Read, false) => {
                *page = Page::Swapped { slot: io.slot };
                t.resident -= 1;
                self.free_frame(f);
                for w in waiters {
                    self.kill(host, task, w, KillReason::SwapReadFailed);
                }
            }
        }
        Ok(())
    }

    /// Maps a page that came back from I/O and answers the faults that
    /// waited for it.
    fn finish<H: Host>(
        &mut self,
        host: &mut H,
        task: TaskId,
        vpn: u64,
        waiters: Vec<FaultId>,
        swapped_in: bool,
    ) {
        if waiters.is_empty() {
            return;
        }
        if !self.map_page(host, task, vpn, true) {
            for w in waiters {
                self.kill(host, task, w, KillReason::MapFailed);
            }
            return;
        }
        for w in waiters {
            match swapped_in {
                true => self.c.faults_swap += 1,
                false => self.c.faults_minor += 1,
            }
            host.resume(w);
            self.answered(w, FaultOutcome::Resumed);
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

    /// Makes a fresh frame page `vpn` of `task`, resident and unmapped.
    fn attach(&mut self, task: TaskId, vpn: u64, frame: Frame, slot: Option<Slot>, dirty: bool) {
        self.frames[frame.0 as usize] = Use::Page { task, vpn, io: None };
        let t = self.tasks.get_mut(&task).expect("attach to a live task");
        t.resident += 1;
        t.pages.insert(
            vpn,
            Page::Resident { frame, slot, dirty, mapped: false, fresh: false, hold: false },
        );
    }

    /// Maps a resident page with its range's permissions; false if the
    /// kernel refused.
    fn map_page<H: Host>(&mut self, host: &mut H, task: TaskId, vpn: u64, for_fault: bool) -> bool {
        let Some(t) = self.tasks.get_mut(&task) else {
            return false;
        };
        let Some(r) = t.region(vpn) else {
            return false;
        };
        let Some(Page::Resident { frame, mapped, fresh, .. }) = t.pages.get_mut(&vpn) else {
            return false;
        };
        if host.map(task, va_of(vpn), *frame, r.perms).is_err() {
            return false;
        }
        *mapped = true;
        *fresh = for_fault;
        true
    }

    /// Records a request on its frame (pinning it) and returns it.
    fn start_io(
        &mut self,
        task: TaskId,
        vpn: u64,
        frame: Frame,
        kind: IoKind,
        slot: Slot,
    ) -> IoRequest {
        self.seq = self.seq.wrapping_add(1).max(1);
        let tag = Tag::new(frame, self.seq);
        self.frames[frame.0 as usize] = Use::Page { task, vpn, io: Some(Io { tag, kind, slot }) };
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

    fn kill<H: Host>(
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
    fn settle<H: Host>(&mut self, host: &mut H) {
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
    /// for a live task's thread (a tick will see it touched), or a dying
    /// task holds frames (its `TaskGone` frees them).
    fn frames_will_return(&self) -> bool {
        self.tasks.values().any(|t| {
            (t.dying && t.resident > 0)
                || (!t.dying
                    && t.pages.values().any(|p| matches!(p, Page::Resident { fresh: true, .. })))
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

    /// One step of the clock: finds a resident page not used lately and
    /// takes it out of memory (dropped if it has a valid copy or is an
    /// untouched zero page, else written to swap). False if none can go.
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
            let Use::Page { task, vpn, io: None } = self.frames[f as usize] else {
                continue;
            };
            let Some(t) = self.tasks.get_mut(&task) else {
                continue;
            };
            if t.dying {
                // Its end frees the frame without I/O.
                continue;
            }
            let Some(Page::Resident { hold, fresh, mapped, dirty, .. }) = t.pages.get_mut(&vpn)
            else {
                continue;
            };
            if *fresh {
                if *mapped {
                    let b = host.bits(task, va_of(vpn), true);
                    *dirty |= b.dirty;
                    *fresh = !b.accessed;
                } else {
                    *fresh = false;
                }
                continue;
            }
            if *hold {
                *hold = false;
                continue;
            }
            if *mapped {
                let b = host.bits(task, va_of(vpn), true);
                *dirty |= b.dirty;
                if b.accessed {
                    continue;
                }
            }
            if self.evict(host, task, vpn, urgent) {
                return true;
            }
        }
        false
    }

    /// Takes one resident page out of memory; false if it must stay (it
    /// needs a swap slot and none is free, or it needs a write while writes
    /// keep failing and no fault waits: a dead disk must not make memd
    /// retry forever for the watermark alone).
    fn evict<H: Host>(&mut self, host: &mut H, task: TaskId, vpn: u64, urgent: bool) -> bool {
        let full = self.slots.used() == self.slots.total();
        let failing = !urgent && self.write_fail_streak >= self.cfg.pool_frames;
        let t = self.tasks.get_mut(&task).expect("clock found the task");
        let Some(Page::Resident { frame, slot, dirty, mapped, .. }) = t.pages.get_mut(&vpn) else {
            return false;
        };
        if (*dirty && slot.is_none() && full) || ((*dirty || slot.is_none()) && failing) {
            return false;
        }
        if *mapped {
            let b = host.unmap(task, va_of(vpn));
            *dirty |= b.dirty;
            *mapped = false;
        }
        let (frame, slot, dirty) = (*frame, *slot, *dirty);
        if !dirty {
            match slot {
                Some(slot) => {
                    t.pages.insert(vpn, Page::Swapped { slot });
                }
                None => {
                    t.pages.remove(&vpn);
                }
            }
            t.resident -= 1;
            self.free_frame(frame);
            self.c.evictions += 1;
            return true;
        }
        let slot = match slot {
            Some(s) => s,
            None => match self.slots.alloc() {
                Some(s) => {
                    t.swapped += 1;
                    s
                }
                // Dirtied between the bits and the unmap, and swap is full:
                // it stays, unmapped; its next fault maps it again.
                None => return false,
            },
        };
        t.pages.insert(vpn, Page::Out { frame, slot, waiters: Vec::new() });
        let req = self.start_io(task, vpn, frame, IoKind::Write, slot);
        // A refused submission has failed already: the page stayed.
        let started = self.submit(host, req);
        self.c.evictions += started as u64;
        started
    }
}
