//! System call handlers: safe functions from a decoded [`Syscall`] to a
//! result. Decoding and encoding live in `kernel::syscall`; this module only
//! carries calls out against the kernel state. `syscall_from_user` tries
//! the fast paths (`fastpath.rs`) first for the calls that have one; every
//! call they do not finish takes the general path here.

use crate::arch::time;
use crate::ipc_glue::{self, IpcOutcome};
use crate::mm;
use crate::sched::{self, Kernel, Wait};
use crate::task::SpawnRequest;
use alloc::vec::Vec;
use alux_abi::syscall::{map_flags, task_flags, KernelStats, SPAWN_IMAGE_MAX};
use alux_abi::{Error, Sys, TaskId, ThreadId};
use kernel::console_buffer::Queued;
use kernel::paging::{PageFlags, PAGE_SIZE};
use kernel::syscall::{decode, RawCall, SysResult, Syscall, Timeout, UserSlice};

/// What a call did to its caller.
enum Outcome {
    /// Finished: return this.
    Done(SysResult),
    /// Finished; the handler wrote the result registers itself.
    Written,
    /// The caller is blocked; its result comes later.
    Blocked,
    /// The caller no longer exists.
    Gone,
}

/// The `syscall` entry's Rust side: the fast path for the calls that have
/// one, else the general path. Returns 1 if the next context may leave
/// through `sysretq`.
#[no_mangle]
extern "C" fn syscall_from_user(number: u64) -> u64 {
    let mut k = sched::lock();
    if crate::arch::entry::current_stopped() {
        // Its thread was stopped by another CPU while this one waited for
        // the lock (`Kernel::stop_elsewhere`): the call is dropped with it,
        // and its context (which the per-CPU block still names) is gone.
        return sched::dispatch(k);
    }
    const SEND_RECEIVE: u64 = Sys::SendReceive as u64;
    const SEND: u64 = Sys::Send as u64;
    const RECEIVE: u64 = Sys::Receive as u64;
    const POLL: u64 = Sys::Poll as u64;
    const POLL_ONE: u64 = Sys::PollOne as u64;
    const SIGNAL: u64 = Sys::Signal as u64;
    const SELF_INFO: u64 = Sys::SelfInfo as u64;
    const YIELD: u64 = Sys::Yield as u64;
    let fast = match number {
        SEND_RECEIVE => crate::fastpath::send_receive(&mut k),
        SEND => crate::fastpath::send(&mut k),
        RECEIVE => crate::fastpath::receive(&mut k),
        POLL => crate::fastpath::poll(&mut k),
        POLL_ONE => crate::fastpath::poll_one(&mut k),
        SIGNAL => crate::fastpath::signal(&mut k),
        SELF_INFO => crate::fastpath::self_info(&k),
        YIELD => crate::fastpath::yield_now(&mut k),
        _ => None,
    };
    match fast {
        Some(crate::fastpath::Fast::Done(may_sysret)) => may_sysret,
        Some(crate::fastpath::Fast::Dispatch) => sched::dispatch(k),
        None => general(k),
    }
}

/// Every system call the fast path did not finish.
#[inline(never)]
fn general(mut k: sched::KernelGuard) -> u64 {
    // The general path's Rust uses SSE: save the caller's vector state now
    // rather than at the first #NM trap.
    crate::arch::entry::release_vectors();
    let Some(caller) = k.current() else {
        crate::fatal(format_args!("system call with no current thread"))
    };
    crate::mm::clear_denied();
    let raw = {
        let t = k.thread_mut(caller).expect("current thread is live");
        t.from_syscall = true;
        let r = &t.ctx.regs;
        RawCall { number: r.rax, args: [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] }
    };
    let outcome = match decode(&raw) {
        Ok(call) => handle(&mut k, caller, call),
        Err(e) => Outcome::Done(Err(e)),
    };
    match outcome {
        // A paged task's memory lacked a page the call needed: the pager
        // brings it in and the call runs again.
        Outcome::Done(Err(Error::BadAddress)) if crate::pager::syscall_fault(&mut k, caller) => {}
        // `Receive` and `SendReceive` return in six registers: an error
        // (from decoding or the handler) zeroes `r8` and `r9` too, which
        // still hold the caller's message words.
        Outcome::Done(result) if kernel::syscall::returns_wide(raw.number) => {
            k.set_wide_result(caller, result.map(|[a, b, c, d]| [a, b, c, d, 0, 0]))
        }
        Outcome::Done(result) => k.set_result(caller, result),
        Outcome::Written | Outcome::Blocked | Outcome::Gone => {}
    }
    sched::dispatch(k)
}

fn caller_task(k: &Kernel, caller: ThreadId) -> TaskId {
    k.thread(caller).expect("caller is live").task
}

fn space_of(k: &Kernel, task: TaskId) -> Result<&mm::AddressSpace, Error> {
    k.task(task).and_then(|t| t.space.as_ref()).ok_or(Error::NoSuchTask)
}

fn require_privileged(k: &Kernel, task: TaskId) -> Result<(), Error> {
    if k.task(task).is_some_and(|t| t.privileged) {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

/// May `caller` wait for or kill `target`? Its parent, or a privileged task.
fn may_control(k: &Kernel, caller: TaskId, target: TaskId) -> Result<(), Error> {
    let t = k.task(target).ok_or(Error::NoSuchTask)?;
    if t.parent == Some(caller) || require_privileged(k, caller).is_ok() {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

fn handle(k: &mut Kernel, caller: ThreadId, call: Syscall) -> Outcome {
    let Syscall::Ipc(ipc) = call else { return handle_core(k, caller, call) };
    let r = ipc_glue::handle(k, caller, ipc);
    ipc_glue::deliver_wakeups(k);
    match r {
        Ok(IpcOutcome::Done(r)) => Outcome::Done(r),
        Ok(IpcOutcome::DoneWide(regs)) => {
            k.set_wide_result(caller, Ok(regs));
            Outcome::Written
        }
        Ok(IpcOutcome::Blocked) => Outcome::Blocked,
        Err(e) => Outcome::Done(Err(e)),
    }
}

fn handle_core(k: &mut Kernel, caller: ThreadId, call: Syscall) -> Outcome {
    let task = caller_task(k, caller);
    let result = match call {
        // Never reached: `handle` takes every IPC call first.
        Syscall::Ipc(_) => Err(Error::UnknownSyscall),
        Syscall::DebugPrint { text } => return debug_print(k, caller, task, text),
        Syscall::ThreadCreate { entry, stack_top, arg } => {
            k.create_thread(task, entry, stack_top, arg).map(|t| [t.raw(), 0, 0, 0])
        }
        Syscall::ThreadExit { code } => {
            k.exit_thread(caller, code);
            return Outcome::Gone;
        }
        Syscall::ThreadJoin { thread, timeout } => {
            let same_task = k.thread(thread).map(|t| t.task == task);
            match same_task {
                None => Err(Error::NoSuchThread),
                Some(false) => Err(Error::NoSuchThread),
                Some(true) if thread == caller => Err(Error::InvalidArgument),
                Some(true) => return block(k, Wait::Join(thread), timeout),
            }
        }
        Syscall::TaskExit { code } => {
            k.end_task(task, alux_abi::syscall::TaskEnd::Exited(code));
            return Outcome::Gone;
        }
        Syscall::Yield => {
            k.request_resched();
            Ok([0; 4])
        }
        Syscall::Sleep { nanos } => {
            if nanos == 0 {
                k.request_resched();
                Ok([0; 4])
            } else {
                return block(k, Wait::Sleep, Timeout::After(nanos));
            }
        }
        Syscall::Clock => Ok([time::now_ns(), 0, 0, 0]),
        Syscall::Spawn { args } => match spawn(k, caller, task, args) {
            Ok(Some(id)) => Ok([id.raw(), 0, 0, 0]),
            // Paged: the pager fills the task, then the caller wakes.
            Ok(None) => return Outcome::Blocked,
            Err(e) => Err(e),
        },
        Syscall::TaskWait { task: target, timeout } => {
            // A task cannot wait for itself; else the parent or a
            // privileged task may.
            let allowed = if target == task {
                Err(Error::InvalidArgument)
            } else {
                may_control(k, task, target)
            };
            match allowed {
                Err(e) => Err(e),
                Ok(()) => match k.task(target).and_then(|t| t.end.map(|end| (end, t.parent))) {
                    Some((end, parent)) => {
                        // The parent (or anyone, once the parent is gone)
                        // collects the zombie; other privileged askers
                        // only read the status.
                        if parent.is_none() || parent == Some(task) {
                            k.reap(target);
                        }
                        let (kind, detail) = end.encode();
                        Ok([kind, detail, 0, 0])
                    }
                    None => return block(k, Wait::Task(target), timeout),
                },
            }
        }
        // A task may always kill itself; others need to be its parent or
        // privileged.
        Syscall::TaskKill { task: target } => {
            match if target == task { Ok(()) } else { may_control(k, task, target) } {
                Err(e) => Err(e),
                Ok(()) if k.task(target).is_some_and(|t| t.end.is_some()) => Err(Error::NoSuchTask),
                Ok(()) => {
                    k.end_task(target, alux_abi::syscall::TaskEnd::Killed);
                    if target == task {
                        return Outcome::Gone;
                    }
                    Ok([0; 4])
                }
            }
        }
        Syscall::KernelStats { out } => {
            let stats = KernelStats {
                frames_used: k.frames.used() as u64,
                frames_total: k.frames.total() as u64,
                heap_used: mm::heap_used() as u64,
                tasks: k.tasks.len() as u64,
                threads: k.threads.len() as u64,
                ipc_ends: k.ipc.end_count() as u64,
                ticks: k.ticks
                    + crate::traps::IDLE_TICKS.load(core::sync::atomic::Ordering::Relaxed),
                switches: k.switches,
                interrupts: k.irq.delivered(),
                idle_tsc: crate::sched::IDLE_TSC.load(core::sync::atomic::Ordering::Relaxed),
                caller_frames: k.task(task).map_or(0, |t| {
                    (t.pages + t.space.as_ref().map_or(0, |s| s.table_frames())) as u64
                }),
            };
            space_of(k, task).and_then(|s| mm::write_record(s, out.slice(), &stats)).map(|_| [0; 4])
        }
        Syscall::Shutdown { code } => match require_privileged(k, task) {
            Err(e) => Err(e),
            Ok(()) => {
                crate::kprintln!("[kernel] shutdown requested by task {} (code {})", task, code);
                crate::print_summary(k);
                let audit_ok = crate::end_of_run_audit(k);
                crate::stop(if code == 0 && audit_ok {
                    alux_abi::syscall::SHUTDOWN_SUCCESS
                } else {
                    alux_abi::syscall::SHUTDOWN_FAILURE
                })
            }
        },
        Syscall::MemMap { len, flags } => mem_map(k, task, len, flags),
        Syscall::IoPortGrant { first, count } => {
            crate::devices::io_port_grant(k, task, first, count)
        }
        Syscall::MmioMap { phys, len } => crate::devices::mmio_map(k, task, phys, len),
        Syscall::DmaAlloc { len } => crate::devices::dma_alloc(k, task, len),
        Syscall::DmaPin { first_frame, frames } => {
            crate::devices::dma_pin(k, task, first_frame, frames)
        }
        Syscall::DmaUnpin { first_frame, frames } => {
            crate::devices::dma_unpin(k, task, first_frame, frames)
        }
        Syscall::PagerAttach => crate::pager::attach(k, caller, task),
        Syscall::PagerNext => match crate::pager::next(k, task) {
            Ok(words) => {
                k.set_wide_result(caller, Ok(words));
                return Outcome::Written;
            }
            Err(e) => Err(e),
        },
        Syscall::PageMap { task: target, va, frame, flags } => {
            crate::pager::page_map(k, task, target, va, frame, flags)
        }
        Syscall::PageUnmap { task: target, va } => crate::pager::page_unmap(k, task, target, va),
        Syscall::PageBits { task: target, va, clear } => {
            crate::pager::page_bits(k, task, target, va, clear)
        }
        Syscall::FaultResolve { fault, verdict } => crate::pager::resolve(k, task, fault, verdict),
        Syscall::SpawnRead { task: target, offset, dst } => {
            crate::pager::spawn_read(k, task, target, offset, dst)
        }
        Syscall::SpawnFinish { task: target, error } => {
            crate::pager::spawn_finish(k, task, target, error)
        }
        Syscall::DeviceClaim { bdf } => crate::devices::device_claim(k, task, bdf),
        Syscall::MemUnmap { range } => mem_unmap(k, task, range),
        Syscall::SelfInfo => {
            let t = k.task(task).expect("caller's task is live");
            let flags = if t.privileged { task_flags::PRIVILEGED } else { 0 };
            Ok([task.raw(), caller.raw(), t.uid as u64, flags as u64])
        }
        Syscall::CpuInfo => Ok([k.this_cpu() as u64, k.cpus_online() as u64, 0, 0]),
        Syscall::ThreadSetCpu { thread, cpu } => {
            if k.thread(thread).map(|t| t.task) != Some(task) {
                Err(Error::NoSuchThread)
            } else {
                k.set_thread_cpu(thread, cpu).map(|()| [0; 4])
            }
        }
    };
    Outcome::Done(result)
}

fn block(k: &mut Kernel, wait: Wait, timeout: Timeout) -> Outcome {
    match timeout {
        Timeout::Now => Outcome::Done(Err(Error::TimedOut)),
        Timeout::After(ns) => {
            k.block_current(wait, Some(sched::deadline_after(ns)));
            Outcome::Blocked
        }
        Timeout::Never => {
            k.block_current(wait, None);
            Outcome::Blocked
        }
    }
}

/// Length of the `syscall` instruction.
const SYSCALL_LEN: u64 = 2;

/// Queues the text on the console. If the console lacks room, the caller
/// waits for it (`Wait::Console`) and then runs the call again for the
/// rest of its text: its pointer and length move past what was queued and
/// it resumes at its `syscall` instruction, so nothing is lost or printed
/// twice.
fn debug_print(k: &mut Kernel, caller: ThreadId, task: TaskId, text: UserSlice) -> Outcome {
    let mut buf = [0u8; alux_abi::syscall::DEBUG_PRINT_MAX];
    let bytes = &mut buf[..text.len() as usize];
    if let Err(e) = space_of(k, task).and_then(|s| s.copy_in(text, bytes)) {
        return Outcome::Done(Err(e));
    }
    match crate::console::write_task(task, bytes) {
        Queued::All => Outcome::Done(Ok([0; 4])),
        Queued::Part { done, .. } => {
            let t = k.thread_mut(caller).expect("caller is live");
            t.ctx.regs.rdi += done as u64;
            t.ctx.regs.rsi -= done as u64;
            t.ctx.regs.rip -= SYSCALL_LEN;
            k.block_current(Wait::Console, None);
            Outcome::Blocked
        }
    }
}

/// `Spawn`: the new task's ID, or `None` when a paged task's spawn waits
/// for the pager (the caller is blocked until it is filled).
fn spawn(
    k: &mut Kernel,
    caller: ThreadId,
    task: TaskId,
    at: kernel::syscall::UserRef<alux_abi::syscall::SpawnArgs>,
) -> Result<Option<TaskId>, Error> {
    require_privileged(k, task)?;
    let space = space_of(k, task)?;
    let args = mm::read_record(space, at)?;
    if args.image_len > SPAWN_IMAGE_MAX as u64
        || args.arg_len > alux_abi::syscall::SPAWN_ARGS_MAX as u64
        || args.uid as usize >= alux_abi::ids::UID_COUNT
        || args.flags & !task_flags::PRIVILEGED != 0
    {
        return Err(Error::InvalidArgument);
    }
    let image_range = UserSlice::new(args.image_ptr, args.image_len)?;
    let arg_range = UserSlice::new(args.arg_ptr, args.arg_len)?;
    let mut image = Vec::new();
    image.try_reserve_exact(args.image_len as usize).map_err(|_| Error::OutOfMemory)?;
    image.resize(args.image_len as usize, 0);
    space.copy_in(image_range, &mut image)?;
    let mut arg_bytes = [0u8; alux_abi::syscall::SPAWN_ARGS_MAX];
    let arg_bytes = &mut arg_bytes[..args.arg_len as usize];
    space.copy_in(arg_range, arg_bytes)?;
    let req = SpawnRequest {
        image: &image,
        args: arg_bytes,
        uid: args.uid as alux_abi::Uid,
        privileged: args.flags & task_flags::PRIVILEGED != 0,
        parent: Some(task),
        with_boot_module: false,
    };
    if k.pager.is_some() && !req.privileged {
        // Every page of an unprivileged task comes from the pager.
        crate::pager::spawn(k, caller, task, req, image_range, args.quota_pages)?;
        return Ok(None);
    }
    k.spawn(req).map(Some)
}

fn mem_map(k: &mut Kernel, task: TaskId, len: u64, flags: u64) -> SysResult {
    let pages = len.div_ceil(PAGE_SIZE) as usize;
    let t = k.task(task).ok_or(Error::NoSuchTask)?;
    if t.paged {
        // Its memory is memd's to give (`alux_rt::mem`), never the kernel's.
        return Err(Error::NotPrivileged);
    }
    let (base, cost) = k.charge_run(task, pages as u64, pages as u64)?;
    let mut pf = PageFlags::PRESENT | PageFlags::USER;
    if flags & map_flags::WRITE != 0 {
        pf |= PageFlags::WRITABLE;
    }
    if flags & map_flags::EXEC == 0 {
        pf |= PageFlags::NO_EXECUTE;
    }
    let (t, frames) = k.task_and_frames(task).expect("looked up above");
    let space = t.space.as_mut().expect("looked up above");
    for i in 0..pages as u64 {
        if let Err(e) = space.map_new(frames, base + i * PAGE_SIZE, pf) {
            for j in 0..i {
                if let Ok(f) = space.unmap(frames, base + j * PAGE_SIZE) {
                    let _ = frames.free(f);
                }
            }
            // A sibling thread on another CPU may have reached the pages
            // meanwhile: its TLB goes before the lock is released.
            let root = space.root();
            k.shootdown(root);
            k.uncharge(task, cost);
            return Err(e);
        }
    }
    t.pages += pages;
    t.charged += cost;
    debug_assert_eq!(t.charged, t.pages + space.table_frames(), "tables_needed was exact");
    // Leave an unmapped guard page between mappings.
    t.next_map = base + (pages as u64 + 1) * PAGE_SIZE;
    Ok([base, 0, 0, 0])
}

fn mem_unmap(k: &mut Kernel, task: TaskId, range: UserSlice) -> SysResult {
    let (t, frames, pins) = k.task_frames_pins(task).ok_or(Error::NoSuchTask)?;
    if range.addr() < crate::task::MAP_BASE || range.addr() + range.len() > t.next_map {
        return Err(Error::InvalidArgument);
    }
    let space = t.space.as_mut().ok_or(Error::NoSuchTask)?;
    let pages = range.len() / PAGE_SIZE;
    // Every page must be mapped, and none may be device memory (mapped by
    // `MmioMap`, released only when the task ends).
    for i in 0..pages {
        match space.translate(range.addr() + i * PAGE_SIZE) {
            Some((_, flags)) if !flags.contains(PageFlags::DEVICE) => {}
            _ => return Err(Error::InvalidArgument),
        }
    }
    let mut unmapped = 0;
    let mut result = Ok([0; 4]);
    for i in 0..pages {
        match space.unmap(frames, range.addr() + i * PAGE_SIZE) {
            Ok(f) => crate::task::release_frame(pins, frames, f),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        unmapped += 1;
    }
    t.pages = t.pages.saturating_sub(unmapped as usize);
    // Pages and the page tables pruned with them go back to the share.
    let now = t.pages + space.table_frames();
    let freed = t.charged.saturating_sub(now);
    t.charged = now;
    let (uid, privileged, root) = (t.uid, t.privileged, space.root());
    k.page_pool.release(uid, privileged, freed);
    // The frames are free, but nobody can take one before the lock is
    // released: by then no CPU's TLB maps them.
    k.shootdown(root);
    result
}
