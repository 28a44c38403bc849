//! The system call fast paths, carried out without the decoder, the typed
//! call, the IPC glue's enums and the general dispatch: who runs is in the
//! per-CPU block (`entry::current_thread`), and the argument and result
//! registers are read and written in the saved context through it.
//!
//! - `SendReceive` to a peer thread parked in a receive: a direct switch
//!   to it (`Kernel::fast_hand_off`);
//! - `Send` and `Signal` to a peer thread that waits for the end (in a
//!   receive, or a poll of all its ends or of a set naming the end): it is
//!   woken with its result registers and queued, the caller runs on;
//! - `Receive` without a time limit, and `PollOne` or `Poll` of one end:
//!   the events at once, or the caller parks and the run queue's front
//!   runs (`Kernel::fast_run_next`);
//! - `SelfInfo`, and `Yield` with a direct switch (`Kernel::fast_yield`).
//!
//! It owns no rule. The IPC core decides, through its narrow entries
//! ([`alux_ipc::Ipc::send_receive_fast`], `send_fast`, `signal_fast`,
//! `receive_fast`, `poll_fast`), whether the call is the common case and
//! then changes its state exactly as the general path would; the kernel
//! consents to waking a thread only if its own record agrees. Anything
//! else — a bad, stale or foreign handle, a closed peer, a kernel end, a
//! thread not waiting, a pending event, a poll that would time out at
//! once, a hand-off or device work pending — makes it answer `None` with
//! nothing changed, and the general path handles the call from the start,
//! errors included.
//!
//! It must never allocate, write user memory, or block other than by
//! parking the caller as the general path would. Its one read of user
//! memory is `Poll`'s single handle, through one page walk that refuses
//! whatever the general path's copy would refuse (`mm::read_user_word`).
//! Code that runs before the vector registers are released must not touch
//! them (see `arch::entry`, "Vector state"; CR0.TS guards it if the
//! compiler disagrees). A path that switches threads releases them once
//! it knows it will switch (it may still fall back, then the general path
//! finds them released); `Yield` leaves the save to the return to user
//! mode (see [`yield_now`]).

use crate::sched::Kernel;
use alux_abi::ipc::Handle;

/// What the fast path did with a system call.
pub enum Fast {
    /// Done; 1 if the (new) current context may leave through `sysretq`.
    Done(u64),
    /// Done, but the scheduler must choose the next thread (`dispatch`).
    Dispatch,
}

/// `SendReceive` on the fast path; `None`: nothing happened, take the
/// general path.
#[inline(never)]
pub fn send_receive(k: &mut Kernel) -> Option<Fast> {
    let caller = crate::arch::entry::current_thread();
    let [h, len, w0, w1, w2, w3] = crate::arch::entry::current_args();
    if k.hand_off_pending() || crate::irq_glue::has_work(k) {
        return None;
    }
    // It hands the CPU to another thread, so the caller's vector state
    // must be saved anyway (at the return to user mode, or here): saving
    // it now lets the Rust below use SSE without a #NM trap.
    crate::arch::entry::release_vectors();
    let threads = &k.threads;
    let here = k.this_cpu();
    let (to, regs) = k.ipc.send_receive_fast(
        caller,
        Handle::from_raw(h),
        len,
        [w0, w1, w2, w3],
        #[inline(always)]
        |to| Kernel::parked_for_hand_off(threads, to, here),
    )?;
    Some(k.fast_hand_off(caller, to, regs).map_or(Fast::Dispatch, Fast::Done))
}

/// `SelfInfo`: the caller's task, thread, uid and flags, from the per-CPU
/// block; no lookup, no vector register touched, no switch. `None` if the
/// caller is due to be preempted (the general path switches then).
#[inline(never)]
pub fn self_info(k: &Kernel) -> Option<Fast> {
    if k.resched_pending() {
        return None;
    }
    let (thread, task, uid, flags) = crate::arch::entry::current_identity();
    let result = [0, task.raw(), thread.raw(), uid as u64, flags as u64];
    // The thread entered by `syscall`; its `from_syscall` flag is left as
    // it was: nothing reads it before the thread enters the kernel again,
    // which sets it anew.
    let may_sysret =
        crate::arch::entry::finish_current_call(result, kernel::syscall::USER_POINTER_END);
    Some(Fast::Done(may_sysret as u64))
}

/// `Yield`: the result (nothing) is written straight into the saved
/// context, and the scheduler preempts the caller at once, exactly as the
/// general path's `request_resched` and `dispatch` do: directly
/// (`Kernel::fast_yield`) when another thread is ready and no hand-off is
/// pending, else through `dispatch`. The caller's vector registers stay in
/// the CPU until the return to user mode saves them for the thread that
/// runs next (`fast_yield` and the load use no SSE: CR0.TS would trap it,
/// which costs time, never correctness); `dispatch` releases them first.
///
/// With one CPU only: the caller is back in the run queue before its
/// registers are saved, which happens after the kernel lock is released;
/// nothing runs in between. With several, another CPU could steal the
/// caller from the run queue then and load it from its stale saved state,
/// so its registers are saved first (`release_vectors`), as the blocking
/// fast paths do (docs/design.md, "The kernel lock and SMP").
#[inline(never)]
pub fn yield_now(k: &mut Kernel) -> Option<Fast> {
    let caller = crate::arch::entry::current_thread();
    crate::arch::entry::finish_current_call([0; 5], kernel::syscall::USER_POINTER_END);
    if k.cpus_online() > 1 {
        crate::arch::entry::release_vectors();
    }
    if let Some(may_sysret) = k.fast_yield(caller) {
        return Some(Fast::Done(may_sysret));
    }
    crate::arch::entry::release_vectors();
    k.thread_mut(caller)?.from_syscall = true;
    k.request_resched();
    Some(Fast::Dispatch)
}

/// `Send` to a peer whose thread waits for it (parked in a receive, or in
/// a poll of all its ends or of a set naming the peer end): the IPC core's
/// `send_fast` commits what `write_signal` would, the woken thread gets its
/// result registers and joins the run queue (as a queued wakeup would make
/// it), and the caller runs on. No switch, so the caller's vector
/// registers stay in the CPU. `None`: nothing happened, take the general
/// path.
#[inline(never)]
pub fn send(k: &mut Kernel) -> Option<Fast> {
    let caller = crate::arch::entry::current_thread();
    let [h, len, w0, w1, w2, w3] = crate::arch::entry::current_args();
    if crate::irq_glue::has_work(k) {
        return None;
    }
    let threads = &mut k.threads;
    let (to, (regs, deadline), woken) =
        k.ipc.send_fast(caller, Handle::from_raw(h), len, [w0, w1, w2, w3], |to, in_receive| {
            Kernel::take_parked(threads, to, in_receive)
        })?;
    set_woken_results(regs, woken);
    k.queue_woken(to, deadline);
    finish_signal(k, caller)
}

/// `Signal` to a peer whose thread waits for it, as [`send`] without the
/// message (`signal_fast`: a receiver gets the buffer the caller last
/// wrote).
#[inline(never)]
pub fn signal(k: &mut Kernel) -> Option<Fast> {
    let caller = crate::arch::entry::current_thread();
    let [h, _] = crate::arch::entry::current_args2();
    if crate::irq_glue::has_work(k) {
        return None;
    }
    let threads = &mut k.threads;
    let (to, (regs, deadline), woken) =
        k.ipc.signal_fast(caller, Handle::from_raw(h), |to, in_receive| {
            Kernel::take_parked(threads, to, in_receive)
        })?;
    set_woken_results(regs, woken);
    k.queue_woken(to, deadline);
    finish_signal(k, caller)
}

/// The result registers of a thread a `Send` or `Signal` woke: six for a
/// receive, four for a poll.
#[inline(always)]
fn set_woken_results(regs: &mut crate::arch::context::Regs, woken: alux_ipc::Woken) {
    let [a, b, c, d, e, f] = woken.regs;
    regs.set_results(0, [a, b, c, d], woken.in_receive.then_some([e, f]));
}

/// The caller of a `Send` or `Signal` that woke a thread: its result
/// (nothing), and it runs on unless it is due to be preempted.
#[inline(always)]
fn finish_signal(k: &mut Kernel, caller: alux_abi::ThreadId) -> Option<Fast> {
    let may_sysret =
        crate::arch::entry::finish_current_call([0; 5], kernel::syscall::USER_POINTER_END);
    if k.resched_pending() {
        // The general dispatch preempts the caller; a later load of it
        // must know it entered by `syscall`.
        if let Some(t) = k.thread_mut(caller) {
            t.from_syscall = true;
        }
        return Some(Fast::Dispatch);
    }
    k.rearm_if_needed();
    Some(Fast::Done(may_sysret as u64))
}

/// `Receive` without a time limit: the IPC core's `receive_fast` takes the
/// first ready end's events and peer buffer as registers (written in
/// place; no switch, so the caller's vector registers stay in the CPU), or
/// parks the caller, which the scheduler then blocks like the general path
/// does before choosing the next thread. `None`: nothing happened, take
/// the general path (a timeout to arm, device work pending, or an error).
#[inline(never)]
pub fn receive(k: &mut Kernel) -> Option<Fast> {
    let caller = crate::arch::entry::current_thread();
    let [timeout, ..] = crate::arch::entry::current_args();
    if timeout != alux_abi::syscall::WAIT_FOREVER || crate::irq_glue::has_work(k) {
        return None;
    }
    match k.ipc.receive_fast(caller)? {
        alux_ipc::ReceiveFast::Done([a, b, c, d, e, f]) => {
            let may_sysret = crate::arch::entry::finish_current_wide_call(
                [0, a, b, c, d, e, f],
                kernel::syscall::USER_POINTER_END,
            );
            if k.resched_pending() {
                if let Some(t) = k.thread_mut(caller) {
                    t.from_syscall = true;
                }
                return Some(Fast::Dispatch);
            }
            k.rearm_if_needed();
            Some(Fast::Done(may_sysret as u64))
        }
        alux_ipc::ReceiveFast::Parked => {
            // Another thread runs next (or the CPU idles): the scheduler's
            // Rust may use SSE, and the switch saves them anyway.
            crate::arch::entry::release_vectors();
            if let Some(t) = k.thread_mut(caller) {
                t.from_syscall = true;
            }
            k.block_current(crate::sched::Wait::IpcReceive, None);
            Some(Fast::Dispatch)
        }
    }
}

/// `PollOne`, the common wait for a reply (`alux_rt::ipc::Connection::
/// wait`): the handle and the timeout in registers, then [`poll_end`].
#[inline(never)]
pub fn poll_one(k: &mut Kernel) -> Option<Fast> {
    let [h, timeout] = crate::arch::entry::current_args2();
    if crate::irq_glue::has_work(k) {
        return None;
    }
    poll_end(k, h, timeout)
}

/// `Poll` of a set of one end: the handle is read from user memory in one
/// page walk (`mm::read_user_word`, which refuses whatever the general
/// path's copy would refuse), then [`poll_end`].
#[inline(never)]
pub fn poll(k: &mut Kernel) -> Option<Fast> {
    let [set, count, timeout, ..] = crate::arch::entry::current_args();
    if count != 1 || crate::irq_glue::has_work(k) {
        return None;
    }
    // The caller's own address space is the one the CPU runs in.
    let h = crate::mm::read_user_word(crate::arch::cpu::read_cr3(), set)?;
    poll_end(k, h, timeout)
}

/// A poll of the one end `h`: the IPC core's `poll_fast` takes its events
/// (written in place as four result registers; no switch, so the caller's
/// vector registers stay in the CPU) or parks the caller on it. A parked
/// caller blocks with its deadline and the run queue's front runs at once
/// (`Kernel::fast_run_next`), else `dispatch` chooses. `None`: nothing
/// happened, take the general path (any error, or a poll that would time
/// out at once).
#[inline(always)]
fn poll_end(k: &mut Kernel, h: u64, timeout: u64) -> Option<Fast> {
    use alux_abi::syscall::{NO_WAIT, WAIT_FOREVER};
    let caller = crate::arch::entry::current_thread();
    match k.ipc.poll_fast(caller, Handle::from_raw(h), timeout != NO_WAIT)? {
        alux_ipc::PollFast::Done([a, b, c, d]) => {
            let may_sysret = crate::arch::entry::finish_current_call(
                [0, a, b, c, d],
                kernel::syscall::USER_POINTER_END,
            );
            if k.resched_pending() {
                if let Some(t) = k.thread_mut(caller) {
                    t.from_syscall = true;
                }
                return Some(Fast::Dispatch);
            }
            k.rearm_if_needed();
            Some(Fast::Done(may_sysret as u64))
        }
        alux_ipc::PollFast::Parked => {
            // Another thread runs next (or the CPU idles): the Rust below
            // may use SSE, and the switch saves the registers anyway.
            crate::arch::entry::release_vectors();
            let deadline = (timeout != WAIT_FOREVER).then(|| crate::sched::deadline_after(timeout));
            k.block_in_call(caller, crate::sched::Wait::Ipc, deadline);
            Some(k.fast_run_next().map_or(Fast::Dispatch, Fast::Done))
        }
    }
}
