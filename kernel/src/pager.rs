//! The kernel's side of the memory daemon (the pager): its pool of frames,
//! the queue of events it is told (faults, new and ended paged tasks), the
//! paged spawn, and the calls it answers with.
//!
//! It owns the mechanism only: which task is the pager, which frames are
//! its pool, which task is paged, and the checks on every pager call (the
//! caller is the pager, frames are pool frames, targets are paged tasks,
//! addresses are user pages). It must never decide which page to map,
//! evict or refuse: memd does, in user space (`docs/memory.md`). Unmapping
//! a pool page is one path (`page_unmap`), where a TLB shootdown will go.

use crate::ipc_glue;
use crate::sched::{Kernel, ThreadState, Wait, MAX_TASKS, MAX_THREADS};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use alux_abi::ipc::kernel_end_kind;
use alux_abi::pager::{access, page_bits, page_flags, verdict, PagerEvent};
use alux_abi::syscall::{StartInfo, TaskEnd};
use alux_abi::{Error, TaskId, ThreadId};
use alux_ipc::KernelEndId;
use kernel::paging::{PageFlags, PAGE_SIZE, USER_END};
use kernel::syscall::{SysResult, UserSlice};

/// Length of the `syscall` instruction: a call rewound by this much runs
/// again when its thread resumes.
const SYSCALL_LEN: u64 = 2;

/// The pager and its pool.
pub struct Pager {
    /// The pager task.
    pub task: TaskId,
    /// The kernel side of its `PAGE_FAULTS` end: the doorbell.
    end: KernelEndId,
    /// Physical address of pool frame 0.
    pool_phys: u64,
    /// Pool frames.
    pool_frames: u64,
    /// Events not yet taken with `PagerNext`. Its capacity, reserved at
    /// attach, holds every event that can be pending at once (one fault
    /// per thread, a new and a gone per task), so pushing never allocates.
    queue: VecDeque<[u64; 6]>,
    /// Faults sent so far.
    pub faults: u64,
}

impl Pager {
    /// Whether physical frame `frame` is a pool frame.
    pub fn owns_frame(&self, frame: u64) -> bool {
        frame >= self.pool_phys && frame < self.pool_phys + self.pool_frames * PAGE_SIZE
    }
}

/// A paged spawn waiting for the pager to fill the new task.
pub struct PendingSpawn {
    /// The thread blocked in `Spawn`.
    spawner: ThreadId,
    /// Its task, whose memory holds the image.
    spawner_task: TaskId,
    /// The image, in the spawner's memory.
    image: UserSlice,
    /// The argument bytes (copied at `Spawn`).
    args: Vec<u8>,
    /// The entry point the kernel's ELF check found.
    entry: u64,
}

/// Pool frames memd gets when the command line does not say
/// (`memd_pool=MIB`): a quarter of free memory, at most 256 MiB.
pub fn default_pool_frames(free_frames: usize) -> u64 {
    (free_frames as u64 / 4).min(256 << 8)
}

/// Reads `memd_pool=MIB` from the kernel command line.
pub fn pool_frames_from_cmdline(cmdline: &[u8], free_frames: usize) -> u64 {
    for word in cmdline.split(|&b| b == b' ') {
        if let Some(v) = word.strip_prefix(b"memd_pool=") {
            let mib = core::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok());
            if let Some(mib) = mib {
                return (mib << 8).min(free_frames as u64 / 2).max(16);
            }
        }
    }
    default_pool_frames(free_frames)
}

fn is_pager(k: &Kernel, task: TaskId) -> bool {
    k.pager.as_ref().is_some_and(|p| p.task == task)
}

fn require_pager(k: &Kernel, task: TaskId) -> Result<(), Error> {
    if is_pager(k, task) {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

/// A live paged task, for a pager call.
fn paged_task(k: &Kernel, task: TaskId) -> Result<(), Error> {
    let t = k.task(task).ok_or(Error::NoSuchTask)?;
    if t.end.is_some() || t.space.is_none() {
        return Err(Error::NoSuchTask);
    }
    if !t.paged {
        return Err(Error::WrongKind);
    }
    Ok(())
}

/// Queues an event and rings the doorbell if the queue was empty.
fn push(k: &mut Kernel, event: PagerEvent) {
    let Some(p) = k.pager.as_mut() else { return };
    let was_empty = p.queue.is_empty();
    if p.queue.len() == p.queue.capacity() {
        // Cannot happen: the capacity covers every event that can be
        // pending. Dropping one would lose a fault; stopping is honest.
        crate::fatal(format_args!("pager event queue overflow"));
    }
    p.queue.push_back(event.encode());
    if let PagerEvent::Fault { .. } = event {
        p.faults += 1;
    }
    if was_empty {
        let end = p.end;
        if k.ipc.kernel_write_signal(end, &[]).is_err() {
            lost(k, "its page-fault end is closed");
        }
        ipc_glue::deliver_wakeups(k);
    }
}

/// The pager is gone: nothing can serve paged tasks any more. Said on the
/// console, then the machine stops with the failure status (restarting
/// memd is future work).
fn lost(k: &Kernel, why: &str) -> ! {
    let task = k.pager.as_ref().map(|p| p.task);
    crate::kprintln!("[kernel] the memory daemon (task {:?}) is gone: {}; stopping", task, why);
    crate::print_summary(k);
    crate::stop(alux_abi::syscall::SHUTDOWN_FAILURE)
}

/// `PagerAttach`: makes the caller the pager, with its pool mapped.
pub fn attach(k: &mut Kernel, caller: ThreadId, task: TaskId) -> SysResult {
    if !k.task(task).is_some_and(|t| t.privileged) {
        return Err(Error::NotPrivileged);
    }
    if k.pager.is_some() {
        return Err(Error::Busy);
    }
    let frames = k.pool_frames;
    let mut queue = VecDeque::new();
    queue.try_reserve_exact(MAX_THREADS + 2 * MAX_TASKS).map_err(|_| Error::OutOfMemory)?;
    // The end first: every later failure gives everything back, so a failed
    // attach leaves nothing behind and cannot be repeated to hoard frames.
    let (handle, end) = k.ipc.kernel_end_open(caller, kernel_end_kind::PAGE_FAULTS)?;
    let Some(phys) = k.frames.alloc_contiguous(frames as usize) else {
        let _ = k.ipc.kernel_end_close(end);
        return Err(Error::OutOfMemory);
    };
    let give_back = |k: &mut Kernel| {
        for i in 0..frames {
            let _ = k.frames.free(phys + i * PAGE_SIZE);
        }
        let _ = k.ipc.kernel_end_close(end);
    };
    // The pool is memd's to read and write, never to execute; as device
    // memory it is not counted as the task's RAM nor freed with it.
    let flags = PageFlags::PRESENT
        | PageFlags::USER
        | PageFlags::WRITABLE
        | PageFlags::NO_EXECUTE
        | PageFlags::DEVICE;
    let window = match crate::devices::map_frames(k, task, phys, frames, flags) {
        Ok(w) => w,
        Err(e) => {
            give_back(k);
            return Err(e);
        }
    };
    k.pager = Some(Pager { task, end, pool_phys: phys, pool_frames: frames, queue, faults: 0 });
    crate::kprintln!(
        "[kernel] memory daemon: task {}, pool of {} frames ({} MiB) at {:#x}",
        task,
        frames,
        frames >> 8,
        phys
    );
    Ok([handle.raw(), window, frames, phys])
}

/// `PagerNext`: the next event, or `TimedOut`.
pub fn next(k: &mut Kernel, task: TaskId) -> Result<[u64; 6], Error> {
    require_pager(k, task)?;
    let p = k.pager.as_mut().ok_or(Error::NotPrivileged)?;
    p.queue.pop_front().ok_or(Error::TimedOut)
}

/// A fault of the CPU in a user thread: if the thread's task is paged and
/// the address is in the user half, the thread waits for the pager and
/// this returns true; otherwise the caller kills the task as ever.
pub fn cpu_fault(k: &mut Kernel, thread: ThreadId, addr: u64, error: u64) -> bool {
    let Some(task) = k.thread(thread).map(|t| t.task) else { return false };
    if k.pager.is_none() || !k.task(task).is_some_and(|t| t.paged) || addr >= USER_END {
        return false;
    }
    let mut bits = 0;
    if error & 1 != 0 {
        bits |= access::PRESENT;
    }
    if error & 2 != 0 {
        bits |= access::WRITE;
    }
    if error & 16 != 0 {
        bits |= access::EXEC;
    }
    k.block_current(Wait::PageFault { addr, syscall: false }, None);
    push(k, PagerEvent::Fault { fault: thread.raw(), task, thread, addr, access: bits });
    true
}

/// A system call of a paged task met a page its memory lacks: the thread
/// waits for the pager and runs the call again once the page is there.
/// Returns false (the call fails with `BadAddress` as ever) if the task is
/// not paged or no user page was refused.
pub fn syscall_fault(k: &mut Kernel, thread: ThreadId) -> bool {
    let Some((page, present, write)) = crate::mm::take_denied() else { return false };
    let Some(task) = k.thread(thread).map(|t| t.task) else { return false };
    if k.pager.is_none() || !k.task(task).is_some_and(|t| t.paged) || page >= USER_END {
        return false;
    }
    let mut bits = access::SYSCALL;
    if present {
        bits |= access::PRESENT;
    }
    if write {
        bits |= access::WRITE;
    }
    if let Some(t) = k.thread_mut(thread) {
        t.ctx.regs.rip -= SYSCALL_LEN;
    }
    k.block_current(Wait::PageFault { addr: page, syscall: true }, None);
    push(k, PagerEvent::Fault { fault: thread.raw(), task, thread, addr: page, access: bits });
    true
}

/// `FaultResolve`.
pub fn resolve(k: &mut Kernel, task: TaskId, fault: u64, how: u64) -> SysResult {
    require_pager(k, task)?;
    let thread = ThreadId::from_raw(fault);
    let t = k.thread(thread).ok_or(Error::NoSuchThread)?;
    let ThreadState::Blocked(Wait::PageFault { addr, syscall }) = t.state else {
        return Err(Error::InvalidArgument);
    };
    let victim = t.task;
    match (how, syscall) {
        (verdict::RESUME, _) => k.wake_with(thread, |_, _| {}),
        (verdict::ERROR, true) => k.wake_with(thread, |_, regs| {
            regs.rip += SYSCALL_LEN;
            if kernel::syscall::returns_wide(regs.rax) {
                crate::sched::write_wide_result(regs, Err(Error::BadAddress));
            } else {
                crate::sched::write_result(regs, Err(Error::BadAddress));
            }
        }),
        _ => {
            crate::kprintln!(
                "[kernel] task {} killed: page fault at {:#x} refused by the memory daemon",
                victim,
                addr
            );
            k.end_task(victim, TaskEnd::Faulted(alux_abi::syscall::Fault::PageFault, addr));
        }
    }
    Ok([0; 4])
}

fn leaf_flags(flags: u64) -> PageFlags {
    let mut f = PageFlags::PRESENT | PageFlags::USER | PageFlags::DEVICE;
    if flags & page_flags::WRITE != 0 {
        f |= PageFlags::WRITABLE;
    }
    if flags & page_flags::EXEC == 0 {
        f |= PageFlags::NO_EXECUTE;
    }
    f
}

fn bits_of(f: PageFlags) -> u64 {
    let mut b = 0;
    if f.contains(PageFlags::ACCESSED) {
        b |= page_bits::ACCESSED;
    }
    if f.contains(PageFlags::DIRTY) {
        b |= page_bits::DIRTY;
    }
    b
}

/// `PageMap`: maps pool frame `frame` at `va` in paged `task`.
pub fn page_map(
    k: &mut Kernel,
    me: TaskId,
    task: TaskId,
    va: u64,
    frame: u64,
    flags: u64,
) -> SysResult {
    require_pager(k, me)?;
    paged_task(k, task)?;
    let p = k.pager.as_ref().ok_or(Error::NotPrivileged)?;
    if frame >= p.pool_frames {
        return Err(Error::InvalidArgument);
    }
    let phys = p.pool_phys + frame * PAGE_SIZE;
    let t = k.task(task).ok_or(Error::NoSuchTask)?;
    let space = t.space.as_ref().ok_or(Error::NoSuchTask)?;
    if space.translate(va).is_some() {
        return Err(Error::Busy);
    }
    // The page tables this creates are the task's, charged like MemMap's.
    let cost = space.tables_needed(va, 1);
    let (uid, privileged) = (t.uid, t.privileged);
    if t.charged + cost > crate::sched::MAX_PAGES_PER_TASK {
        return Err(Error::OutOfMemory);
    }
    k.page_pool.charge(uid, privileged, cost).map_err(|_| Error::OutOfMemory)?;
    let (t, frames) = k.task_and_frames(task).ok_or(Error::NoSuchTask)?;
    let space = t.space.as_mut().ok_or(Error::NoSuchTask)?;
    match space.map_frame(frames, va, phys, leaf_flags(flags)) {
        Ok(()) => {
            t.charged += cost;
            Ok([0; 4])
        }
        Err(e) => {
            k.page_pool.release(uid, privileged, cost);
            Err(e)
        }
    }
}

/// `PageUnmap`: the one path that takes a pool page away from a task; no
/// CPU's TLB maps the page when it returns (`Kernel::shootdown`).
pub fn page_unmap(k: &mut Kernel, me: TaskId, task: TaskId, va: u64) -> SysResult {
    require_pager(k, me)?;
    paged_task(k, task)?;
    let pool =
        k.pager.as_ref().map(|p| (p.pool_phys, p.pool_frames)).ok_or(Error::NotPrivileged)?;
    let (t, frames) = k.task_and_frames(task).ok_or(Error::NoSuchTask)?;
    let space = t.space.as_mut().ok_or(Error::NoSuchTask)?;
    let (pa, f) = space.translate(va).ok_or(Error::InvalidArgument)?;
    if pa < pool.0 || pa >= pool.0 + pool.1 * PAGE_SIZE {
        return Err(Error::InvalidArgument);
    }
    space.unmap(frames, va)?;
    // Tables pruned with the page go back to the task's share.
    let now = t.pages + space.table_frames();
    let freed = t.charged.saturating_sub(now);
    t.charged = now;
    let (uid, privileged, root) = (t.uid, t.privileged, space.root());
    k.page_pool.release(uid, privileged, freed);
    k.shootdown(root);
    Ok([(pa - pool.0) / PAGE_SIZE, bits_of(f), 0, 0])
}

/// `PageBits`: a pool page's accessed and dirty bits, accessed cleared if
/// asked.
pub fn page_bits(k: &mut Kernel, me: TaskId, task: TaskId, va: u64, clear: bool) -> SysResult {
    require_pager(k, me)?;
    paged_task(k, task)?;
    let pool =
        k.pager.as_ref().map(|p| (p.pool_phys, p.pool_frames)).ok_or(Error::NotPrivileged)?;
    let t = k.task_mut(task).ok_or(Error::NoSuchTask)?;
    let space = t.space.as_mut().ok_or(Error::NoSuchTask)?;
    let (pa, _) = space.translate(va).ok_or(Error::InvalidArgument)?;
    if pa < pool.0 || pa >= pool.0 + pool.1 * PAGE_SIZE {
        return Err(Error::InvalidArgument);
    }
    let clear = if clear { PageFlags::ACCESSED } else { PageFlags::empty() };
    let f = space.clear_leaf_flags(va, clear)?;
    Ok([(pa - pool.0) / PAGE_SIZE, bits_of(f), 0, 0])
}

/// `Spawn` of an unprivileged task while a pager is attached: the task is
/// created with an empty address space and the spawner waits until the
/// pager has filled it (`SpawnFinish`). The kernel checks the image (so a
/// bad one is refused at once with `BadImage`) and keeps its entry point.
pub fn spawn(
    k: &mut Kernel,
    spawner: ThreadId,
    spawner_task: TaskId,
    req: crate::task::SpawnRequest<'_>,
    image: UserSlice,
    quota_pages: u64,
) -> Result<(), Error> {
    let plan = kernel::elf_loader::plan(req.image).map_err(|e| {
        crate::kprintln!("[kernel] spawn refused: {}", e);
        Error::BadImage
    })?;
    let mut args = Vec::new();
    args.try_reserve_exact(req.args.len()).map_err(|_| Error::OutOfMemory)?;
    args.extend_from_slice(req.args);
    let pending = PendingSpawn { spawner, spawner_task, image, args, entry: plan.entry };
    let (uid, arg_len, image_len) = (req.uid, req.args.len() as u64, image.len());
    let task = k.create_paged_task(req, pending)?;
    k.block_current(Wait::Spawn(task), None);
    push(k, PagerEvent::TaskNew { task, uid, quota_pages, image_len, arg_len });
    Ok(())
}

/// `SpawnRead`: copies image bytes of a pending spawn into the pager.
pub fn spawn_read(
    k: &mut Kernel,
    me: TaskId,
    task: TaskId,
    offset: u64,
    dst: UserSlice,
) -> SysResult {
    require_pager(k, me)?;
    let t = k.task(task).ok_or(Error::NoSuchTask)?;
    let s = t.spawn.as_ref().ok_or(Error::InvalidArgument)?;
    let end = offset.checked_add(dst.len()).ok_or(Error::InvalidArgument)?;
    if end > s.image.len() {
        return Err(Error::InvalidArgument);
    }
    let (spawner_task, image) = (s.spawner_task, s.image);
    let from = k.task(spawner_task).and_then(|t| t.space.as_ref()).ok_or(Error::NoSuchTask)?;
    let to = k.task(me).and_then(|t| t.space.as_ref()).ok_or(Error::NoSuchTask)?;
    let mut buf = [0u8; 4096];
    let mut done = 0;
    while done < dst.len() {
        let n = (dst.len() - done).min(buf.len() as u64);
        let piece = &mut buf[..n as usize];
        from.copy_in(UserSlice::new(image.addr() + offset + done, n)?, piece)?;
        to.copy_out(UserSlice::new(dst.addr() + done, n)?, piece)?;
        done += n;
    }
    Ok([0; 4])
}

/// `SpawnFinish`: starts a filled task (`error` 0) or fails its spawn.
pub fn spawn_finish(k: &mut Kernel, me: TaskId, task: TaskId, error: u64) -> SysResult {
    require_pager(k, me)?;
    let t = k.task(task).ok_or(Error::NoSuchTask)?;
    if t.spawn.is_none() {
        return Err(Error::InvalidArgument);
    }
    if error != 0 {
        let e = Error::from_code(error).unwrap_or(Error::OutOfMemory);
        fail_spawn(k, task, e);
        return Ok([0; 4]);
    }
    // The pager must have mapped the start page writable: the kernel fills
    // it in (the task's ID, its thread's, its arguments) like any spawn.
    let (uid, privileged) = (t.uid, t.privileged);
    let s = t.spawn.as_ref().expect("checked above");
    let pager_task = me.raw();
    let info = StartInfo {
        task: task.raw(),
        thread: 0,
        uid: uid as u32,
        flags: if privileged { alux_abi::syscall::task_flags::PRIVILEGED } else { 0 },
        arg_ptr: crate::task::START_INFO_ADDR + core::mem::size_of::<StartInfo>() as u64,
        arg_len: s.args.len() as u64,
        boot_module_ptr: 0,
        boot_module_len: 0,
        pager_task,
    };
    let space = t.space.as_ref().ok_or(Error::NoSuchTask)?;
    let at =
        UserSlice::new(crate::task::START_INFO_ADDR, core::mem::size_of::<StartInfo>() as u64)?;
    crate::mm::write_record(space, at, &info)?;
    space.copy_out(UserSlice::new(info.arg_ptr, s.args.len() as u64)?, &s.args)?;
    let entry = s.entry;
    match k.create_thread(task, entry, crate::task::STACK_TOP, crate::task::START_INFO_ADDR) {
        Ok(thread) => {
            let space = k.task(task).and_then(|t| t.space.as_ref()).ok_or(Error::NoSuchTask)?;
            space.copy_out(
                UserSlice::new(crate::task::START_INFO_ADDR + 8, 8)?,
                &thread.raw().to_le_bytes(),
            )?;
            let s = k.task_mut(task).and_then(|t| t.spawn.take()).expect("checked above");
            k.wake(s.spawner, Ok([task.raw(), 0, 0, 0]));
            Ok([0; 4])
        }
        Err(e) => {
            fail_spawn(k, task, e);
            Ok([0; 4])
        }
    }
}

/// Ends a paged spawn that cannot complete: the spawner gets `e`, the task
/// goes without a zombie (nobody will wait for it), and the pager hears it
/// is gone.
fn fail_spawn(k: &mut Kernel, task: TaskId, e: Error) {
    let spawner = k.task_mut(task).and_then(|t| t.spawn.take()).map(|s| s.spawner);
    if let Some(s) = spawner {
        k.wake(s, Err(e));
    }
    if let Some(t) = k.task_mut(task) {
        t.parent = None;
    }
    k.end_task(task, TaskEnd::Killed);
}

/// A task ended: a paged one's pool pages are the pager's again, and the
/// pager hears of it; the pager's own end stops the machine.
pub fn task_ended(k: &mut Kernel, task: TaskId, paged: bool) {
    if is_pager(k, task) {
        lost(k, "it ended");
    }
    if paged && k.pager.is_some() {
        // A spawner still waiting for this task hears it failed.
        let waiting: Vec<ThreadId> = k.waiters(Wait::Spawn(task));
        for w in waiting {
            k.wake(w, Err(Error::NoSuchTask));
        }
        // Events about the task memd has not taken yet die with it: its
        // threads' faults (they are gone), and its `TaskNew` (then memd
        // never knew it, and hears nothing). So the queue holds at most a
        // fault per live thread and a new and a gone per task, the room
        // reserved at attach, however tasks come and go.
        let raw = task.raw();
        let Some(p) = k.pager.as_mut() else { return };
        let mut announced = true;
        p.queue.retain(|w| match PagerEvent::decode(*w) {
            Some(PagerEvent::Fault { task: t, .. }) => t.raw() != raw,
            Some(PagerEvent::TaskNew { task: t, .. }) if t.raw() == raw => {
                announced = false;
                false
            }
            _ => true,
        });
        if announced {
            push(k, PagerEvent::TaskGone { task });
        }
    }
}
