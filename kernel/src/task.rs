//! Task and thread lifecycle: spawning from an ELF image, thread creation,
//! exit, kill, and reaping ended tasks.
//!
//! It owns the rules of who may do what to a task. It must never leave a
//! frame, a table entry or a kernel object behind when a task ends.

use crate::arch::context::Context;
use crate::mm::AddressSpace;
use crate::sched::{
    Kernel, Task, Thread, ThreadState, Wait, MAX_PAGES_PER_TASK, MAX_THREADS_PER_TASK,
};
use alloc::boxed::Box;
use alloc::vec::Vec;
use alux_abi::syscall::{task_flags, StartInfo, TaskEnd};
use alux_abi::{Error, TaskId, ThreadId, Uid};
use kernel::elf_loader::{self, LoadPlan};
use kernel::paging::{PageFlags, PAGE_SIZE};

/// Top of a task's main stack.
pub const STACK_TOP: u64 = 0x0000_7fff_fff0_0000;
/// Size of the main stack.
pub const MAIN_STACK_SIZE: u64 = 128 * 1024;
/// Where the `StartInfo` and argument bytes are mapped (one page).
pub const START_INFO_ADDR: u64 = STACK_TOP;
/// Where init sees the boot module.
pub const BOOT_MODULE_ADDR: u64 = 0x0000_7000_0000_0000;
/// Where `MemMap` starts handing out addresses: right above the highest
/// address an ELF segment may use.
pub const MAP_BASE: u64 = kernel::elf_loader::USER_LOAD_END;
/// Where the `MemMap` area ends: below the boot module and the stacks, so
/// `MemUnmap` (limited to `[MAP_BASE, next_map)`) can never reach them.
pub const MAP_END: u64 = BOOT_MODULE_ADDR;

/// What to spawn.
pub struct SpawnRequest<'a> {
    /// The ELF image.
    pub image: &'a [u8],
    /// Argument bytes for the new task.
    pub args: &'a [u8],
    /// Its uid.
    pub uid: Uid,
    /// Whether it is privileged.
    pub privileged: bool,
    /// Its parent.
    pub parent: Option<TaskId>,
    /// Map the boot module into it (init only).
    pub with_boot_module: bool,
}

fn segment_flags(writable: bool, executable: bool) -> PageFlags {
    let mut f = PageFlags::PRESENT | PageFlags::USER;
    if writable {
        f |= PageFlags::WRITABLE;
    }
    if !executable {
        f |= PageFlags::NO_EXECUTE;
    }
    f
}

/// Gives a frame its owner let go back to the allocator, unless a driver
/// has pinned it for a device: then it is freed at the last unpin. If even
/// the record of that cannot be made, the frame is leaked, never reused
/// under a device.
pub fn release_frame(
    pins: &mut kernel::pins::Pins<TaskId>,
    frames: &mut kernel::frame::FrameAllocator,
    frame: u64,
) {
    if let Ok(false) = pins.defer(frame) {
        let _ = frames.free(frame);
    }
}

impl Kernel {
    /// Frees a task's address space and gives the frames charged for it
    /// back to its uid's share.
    fn release_space(&mut self, uid: Uid, privileged: bool, charged: usize, space: AddressSpace) {
        self.destroy_space(space);
        self.page_pool.release(uid, privileged, charged);
    }

    /// Frees an address space, except the boot module's frames (mapped into
    /// init, never owned by it).
    fn destroy_space(&mut self, space: AddressSpace) {
        self.forget_root(space.root());
        let (start, len) = self.boot_module;
        let first = start & !(PAGE_SIZE - 1);
        let pins = &mut self.pins;
        let pool = self.pager.as_ref();
        space.destroy(&mut self.frames, |frames, f| {
            if f >= first && f < start + len {
                return; // the boot module: init's to read, not to free
            }
            if pool.is_some_and(|p| p.owns_frame(f)) {
                return; // the pager's pool: memd's to reuse
            }
            release_frame(pins, frames, f);
        });
    }

    fn load_image(
        &mut self,
        space: &mut AddressSpace,
        image: &[u8],
        plan: &LoadPlan,
    ) -> Result<usize, Error> {
        let mut pages = 0;
        for seg in &plan.segments {
            let flags = segment_flags(seg.writable, seg.executable);
            let first = seg.vaddr & !(PAGE_SIZE - 1);
            let end = seg.vaddr + seg.mem_size;
            let mut page = first;
            while page < end {
                // The loader guarantees segments never share a page.
                pages += 1;
                if pages > MAX_PAGES_PER_TASK {
                    return Err(Error::OutOfMemory);
                }
                let frame = space.map_new(&mut self.frames, page, flags)?;
                // Copy the part of the file image that falls in this page.
                let file_start = seg.vaddr;
                let file_end = seg.vaddr + seg.file_size;
                let lo = page.max(file_start);
                let hi = (page + PAGE_SIZE).min(file_end);
                if lo < hi {
                    let src_off = (seg.file_offset + (lo - seg.vaddr)) as usize;
                    let src = &image[src_off..src_off + (hi - lo) as usize];
                    let dst = crate::arch::phys_to_virt(frame + (lo - page)) as *mut u8;
                    // SAFETY: `frame` is a frame of this new address space,
                    // reached through the direct map; `[lo, hi)` lies in
                    // this page, and `src` was bounds-checked by the plan.
                    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
                }
                page += PAGE_SIZE;
            }
        }
        Ok(pages)
    }

    fn build_space(
        &mut self,
        req: &SpawnRequest<'_>,
        task: TaskId,
    ) -> Result<(AddressSpace, u64, usize), Error> {
        let plan = elf_loader::plan(req.image).map_err(|e| {
            crate::kprintln!("[kernel] spawn refused: {}", e);
            Error::BadImage
        })?;
        let mut space = AddressSpace::new(&mut self.frames, self.kernel_root)?;
        let result = (|| {
            let mut pages = self.load_image(&mut space, req.image, &plan)?;
            let rw =
                PageFlags::PRESENT | PageFlags::USER | PageFlags::WRITABLE | PageFlags::NO_EXECUTE;
            let mut va = STACK_TOP - MAIN_STACK_SIZE;
            while va < STACK_TOP {
                space.map_new(&mut self.frames, va, rw)?;
                va += PAGE_SIZE;
                pages += 1;
            }
            let info_frame = space.map_new(&mut self.frames, START_INFO_ADDR, rw)?;
            pages += 1;
            let mut info = StartInfo {
                task: task.raw(),
                thread: 0,
                uid: req.uid as u32,
                flags: if req.privileged { task_flags::PRIVILEGED } else { 0 },
                arg_ptr: START_INFO_ADDR + core::mem::size_of::<StartInfo>() as u64,
                arg_len: req.args.len() as u64,
                boot_module_ptr: 0,
                boot_module_len: 0,
                pager_task: 0,
            };
            if req.with_boot_module && self.boot_module.1 > 0 {
                let (start, len) = self.boot_module;
                let ro = PageFlags::PRESENT | PageFlags::USER | PageFlags::NO_EXECUTE;
                let first = start & !(PAGE_SIZE - 1);
                let mut off = 0;
                while first + off < start + len {
                    space.map_frame(&mut self.frames, BOOT_MODULE_ADDR + off, first + off, ro)?;
                    off += PAGE_SIZE;
                }
                info.boot_module_ptr = BOOT_MODULE_ADDR + (start - first);
                info.boot_module_len = len;
            }
            let base = crate::arch::phys_to_virt(info_frame) as *mut u8;
            // SAFETY: the info frame was just allocated and mapped; the
            // record and the argument bytes (at most SPAWN_ARGS_MAX) fit in
            // its 4 KiB.
            unsafe {
                (base as *mut StartInfo).write_unaligned(info);
                core::ptr::copy_nonoverlapping(
                    req.args.as_ptr(),
                    base.add(core::mem::size_of::<StartInfo>()),
                    req.args.len(),
                );
            }
            Ok(pages)
        })();
        match result {
            Ok(pages) => Ok((space, plan.entry, pages)),
            Err(e) => {
                self.destroy_space(space);
                Err(e)
            }
        }
    }

    /// Creates a task from an ELF image and starts its first thread.
    pub fn spawn(&mut self, req: SpawnRequest<'_>) -> Result<TaskId, Error> {
        if req.args.len() > alux_abi::syscall::SPAWN_ARGS_MAX {
            return Err(Error::InvalidArgument);
        }
        let id = self.insert_task(&req, None)?;
        let entry = match self.build_space(&req, id) {
            Ok((space, entry, pages)) => {
                // Everything the image took, page tables included, is
                // counted against the task's cap and its uid's share
                // before the task can run.
                let charged = pages + space.table_frames();
                let fits = if charged > MAX_PAGES_PER_TASK {
                    Err(Error::OutOfMemory)
                } else {
                    self.page_pool.charge(req.uid, req.privileged, charged).map_err(|e| match e {
                        Error::LimitReached => Error::OutOfMemory,
                        e => e,
                    })
                };
                if let Err(e) = fits {
                    self.destroy_space(space);
                    self.remove_task_record(id);
                    return Err(e);
                }
                let task = self.task_mut(id).expect("just inserted");
                task.space = Some(space);
                task.pages = pages;
                task.charged = charged;
                entry
            }
            Err(e) => {
                self.remove_task_record(id);
                return Err(e);
            }
        };
        if let Err(e) = self.ipc.add_task(id, req.uid, req.privileged) {
            self.discard_new_task(id);
            return Err(e);
        }
        match self.create_thread(id, entry, STACK_TOP, START_INFO_ADDR) {
            Ok(thread) => {
                // Tell the first thread its own ID through the start info.
                let space = self.task(id).and_then(|t| t.space.as_ref()).expect("live task");
                let _ = space.copy_out(
                    kernel::syscall::UserSlice::new(START_INFO_ADDR + 8, 8)?,
                    &thread.raw().to_le_bytes(),
                );
                Ok(id)
            }
            Err(e) => {
                self.ipc.remove_task(id, false);
                self.discard_new_task(id);
                Err(e)
            }
        }
    }

    /// Creates a paged task for a spawn the pager will fill: its record,
    /// an empty address space (the root table charged to its uid) and its
    /// IPC registration; no thread yet.
    pub fn create_paged_task(
        &mut self,
        req: SpawnRequest<'_>,
        pending: crate::pager::PendingSpawn,
    ) -> Result<TaskId, Error> {
        let id = self.insert_task(&req, Some(pending))?;
        let space = match AddressSpace::new(&mut self.frames, self.kernel_root) {
            Ok(s) => s,
            Err(e) => {
                self.remove_task_record(id);
                return Err(e);
            }
        };
        let charged = space.table_frames();
        if let Err(e) = self.page_pool.charge(req.uid, req.privileged, charged) {
            self.destroy_space(space);
            self.remove_task_record(id);
            return Err(match e {
                Error::LimitReached => Error::OutOfMemory,
                e => e,
            });
        }
        let task = self.task_mut(id).expect("just inserted");
        task.space = Some(space);
        task.charged = charged;
        if let Err(e) = self.ipc.add_task(id, req.uid, req.privileged) {
            self.discard_new_task(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Charges `task` for a run of `mapped` pages at its next free address,
    /// `owned` of them RAM it owns, plus the page tables the run creates:
    /// against its cap and its uid's share, before anything is mapped
    /// (nothing a task maps escapes them). Returns the run's address and the
    /// cost, to give back with [`Kernel::uncharge`] if mapping fails.
    /// Addresses are never reused; past the end of the mapping area (which
    /// no plausible program reaches) mapping fails like running out.
    pub fn charge_run(
        &mut self,
        task: TaskId,
        owned: u64,
        mapped: u64,
    ) -> Result<(u64, usize), Error> {
        let t = self.task(task).ok_or(Error::NoSuchTask)?;
        let space = t.space.as_ref().ok_or(Error::NoSuchTask)?;
        let base = t.next_map;
        if base + (mapped + 1) * PAGE_SIZE > MAP_END {
            return Err(Error::OutOfMemory);
        }
        let cost = owned as usize + space.tables_needed(base, mapped);
        if t.charged + cost > MAX_PAGES_PER_TASK {
            return Err(Error::OutOfMemory);
        }
        let (uid, privileged) = (t.uid, t.privileged);
        self.page_pool.charge(uid, privileged, cost).map_err(|e| match e {
            Error::LimitReached => Error::OutOfMemory,
            e => e,
        })?;
        Ok((base, cost))
    }

    /// Gives back a charge of [`Kernel::charge_run`] whose mapping failed.
    pub fn uncharge(&mut self, task: TaskId, cost: usize) {
        if let Some((uid, privileged)) = self.task(task).map(|t| (t.uid, t.privileged)) {
            self.page_pool.release(uid, privileged, cost);
        }
    }

    /// A new task's record, with no memory and no thread yet, charged to
    /// its own uid's share; paged (memd will fill it) when `pending` is
    /// given.
    fn insert_task(
        &mut self,
        req: &SpawnRequest<'_>,
        pending: Option<crate::pager::PendingSpawn>,
    ) -> Result<TaskId, Error> {
        self.task_pool.charge(req.uid, req.privileged, 1)?;
        let paged = pending.is_some();
        match self.tasks.insert_with(|k| Task {
            id: TaskId::new(k.index, k.generation),
            uid: req.uid,
            privileged: req.privileged,
            parent: req.parent,
            space: None,
            threads: Vec::new(),
            end: None,
            next_map: MAP_BASE,
            pages: 0,
            charged: 0,
            io_ports: None,
            paged,
            spawn: pending,
        }) {
            Ok(key) => Ok(TaskId::new(key.index, key.generation)),
            Err(e) => {
                self.task_pool.release(req.uid, req.privileged, 1);
                Err(e.into())
            }
        }
    }

    fn discard_new_task(&mut self, id: TaskId) {
        if let Some(mut task) = self.remove_task_record(id) {
            if let Some(space) = task.space.take() {
                self.release_space(task.uid, task.privileged, task.charged, space);
            }
        }
    }

    /// Starts a thread in `task` at `entry` with stack `stack_top` and
    /// `arg` in `rdi`.
    pub fn create_thread(
        &mut self,
        task: TaskId,
        entry: u64,
        stack_top: u64,
        arg: u64,
    ) -> Result<ThreadId, Error> {
        let t = self.task(task).ok_or(Error::NoSuchTask)?;
        let root = match (&t.end, &t.space) {
            (None, Some(space)) => space.root(),
            _ => return Err(Error::NoSuchTask),
        };
        if t.threads.len() >= MAX_THREADS_PER_TASK {
            return Err(Error::LimitReached);
        }
        let (uid, privileged) = (t.uid, t.privileged);
        let io = t.io_ports.is_some();
        // Every allocation that can fail happens before anything changes:
        // the task's thread list, the run queue's room, and the uid share.
        self.task_mut(task)
            .expect("checked above")
            .threads
            .try_reserve(1)
            .map_err(|_| Error::OutOfMemory)?;
        self.reserve_run_queue()?;
        self.thread_pool.charge(uid, privileged, 1)?;
        let mut ctx = Box::new(Context::new_user(entry, stack_top));
        ctx.regs.rdi = arg;
        let cpu = self.this_cpu();
        let key = match self.threads.insert_with(|k| Thread {
            id: ThreadId::new(k.index, k.generation),
            task,
            ctx,
            state: ThreadState::Ready,
            deadline: None,
            from_syscall: false,
            root,
            io,
            uid,
            task_flags: if privileged { task_flags::PRIVILEGED } else { 0 },
            cpu,
            pinned: false,
        }) {
            Ok(key) => key,
            Err(e) => {
                self.thread_pool.release(uid, privileged, 1);
                return Err(e.into());
            }
        };
        let id = ThreadId::new(key.index, key.generation);
        if let Err(e) = self.ipc.add_thread(id, task) {
            self.remove_thread_record(id);
            return Err(e);
        }
        self.task_mut(task).expect("checked above").threads.push(id);
        self.make_ready(id);
        Ok(id)
    }

    /// Ends one thread; the task ends with `code` if it was the last.
    pub fn exit_thread(&mut self, id: ThreadId, code: u64) {
        let Some(task) = self.thread(id).map(|t| t.task) else {
            return;
        };
        self.stop_elsewhere(&[id]);
        self.ipc.remove_thread(id);
        crate::ipc_glue::deliver_wakeups(self);
        self.remove_thread_record(id);
        let last = match self.task_mut(task) {
            Some(t) => {
                t.threads.retain(|x| *x != id);
                t.threads.is_empty()
            }
            None => false,
        };
        for joiner in self.waiters(Wait::Join(id)) {
            self.wake(joiner, Ok([code, 0, 0, 0]));
        }
        if last {
            self.end_task(task, TaskEnd::Exited(code));
        }
    }

    /// Ends a task and everything it holds. Its record stays as a zombie
    /// until its parent collects the status (or is gone).
    pub fn end_task(&mut self, id: TaskId, end: TaskEnd) {
        let Some(task) = self.task_mut(id) else {
            return;
        };
        if task.end.is_some() {
            return;
        }
        task.end = Some(end);
        let threads = core::mem::take(&mut task.threads);
        let space = task.space.take();
        let (uid, privileged, charged, paged) =
            (task.uid, task.privileged, task.charged, task.paged);
        task.charged = 0;
        task.spawn = None;
        // Its threads running on other CPUs leave them before anything of
        // the task is freed.
        self.stop_elsewhere(&threads);
        // A driver's devices stop their DMA before anything of the driver
        // is freed: a device must never write memory that is reused.
        crate::devices::stop_devices(self, id);
        self.ipc.remove_task(id, matches!(end, TaskEnd::Killed | TaskEnd::Faulted(..)));
        crate::ipc_glue::deliver_wakeups(self);
        for t in threads {
            self.remove_thread_record(t);
        }
        if let Some(space) = space {
            self.release_space(uid, privileged, charged, space);
        }
        // Device access goes with the task, and so do its pins.
        for f in self.pins.release_owner(id) {
            let _ = self.frames.free(f);
        }
        self.ports.release_all(id);
        self.mmio.release_all(id);
        if let Some(t) = self.task_mut(id) {
            t.io_ports = None;
        }
        self.forget_io(id);
        crate::pager::task_ended(self, id, paged);
        // Orphans: live children lose their parent; ended ones are reaped.
        let children: Vec<TaskId> =
            self.tasks.iter().filter(|(_, t)| t.parent == Some(id)).map(|(_, t)| t.id).collect();
        for c in children {
            let ended = self.task(c).is_some_and(|t| t.end.is_some());
            if ended {
                self.remove_task_record(c);
            } else if let Some(t) = self.task_mut(c) {
                t.parent = None;
            }
        }
        let waiters = self.waiters(Wait::Task(id));
        let (kind, detail) = end.encode();
        for w in &waiters {
            self.wake(*w, Ok([kind, detail, 0, 0]));
        }
        // The status is the parent's to collect: the record goes now only
        // if there is no parent left or the parent was among the waiters.
        let parent = self.task(id).and_then(|t| t.parent);
        let parent_waited = waiters.iter().any(|w| self.thread(*w).map(|t| t.task) == parent);
        if parent.is_none() || parent_waited {
            self.remove_task_record(id);
        }
        if self.init == Some(id) {
            crate::shutdown_after_init(self, end);
        }
    }

    /// Collects a zombie's status for its waiter.
    pub fn reap(&mut self, id: TaskId) -> Option<TaskEnd> {
        let end = self.task(id)?.end?;
        self.remove_task_record(id);
        Some(end)
    }
}
