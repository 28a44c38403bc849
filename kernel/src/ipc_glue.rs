//! Basic IPC system calls: copies arguments in and out of user memory, calls
//! the IPC core, and carries out what it decides — parking the caller until
//! a deadline, and waking the threads it completed.
//!
//! It owns no IPC rule: every decision is `alux_ipc`'s.

use crate::sched::{write_result, write_wide_result, Kernel, Wait};
use alux_abi::ipc::{Handle, MESSAGE_MAX};
use alux_abi::syscall::{encode_ready, unpack_message, Received};
use alux_abi::{Error, ThreadId};
use alux_ipc::{Completion, Deadline, Outcome, SendReceive};
use kernel::syscall::{IpcCall, SysResult, Timeout};

/// What an IPC call did to its caller.
pub enum IpcOutcome {
    /// Finished with this result.
    Done(SysResult),
    /// `Receive` finished with these six registers.
    DoneWide([u64; 6]),
    /// Parked; the result arrives with a wakeup or a timeout.
    Blocked,
}

fn completion_result(c: Completion) -> SysResult {
    match c {
        // A `Received` completion only answers a `Receive`, handled by
        // `complete`; as a plain poll result it is just the ready end.
        Completion::Polled(ready) | Completion::Received(ready, _) => Ok(encode_ready(&ready)),
        Completion::Connected(h) => Ok([h.raw(), 0, 0, 0]),
        Completion::Failed(e) => Err(e),
    }
}

/// `Receive`'s registers: the ready end, its events and its peer's
/// buffer.
fn received(ready: &alux_abi::ipc::Ready, message: &alux_abi::ipc::Message) -> [u64; 6] {
    Received {
        handle: ready.handle,
        events: ready.events,
        close_reason: ready.close_reason,
        peer_uid: ready.peer_uid,
        message: alux_abi::ipc::Message { seq: 0, ..*message },
    }
    .encode()
}

/// Completes a parked thread's IPC call.
fn complete(k: &mut Kernel, thread: ThreadId, completion: Completion) {
    k.wake_with(thread, |wait, regs| match (wait, completion) {
        (Wait::IpcReceive, Completion::Received(ready, message)) => {
            write_wide_result(regs, Ok(received(&ready, &message)))
        }
        // Anything else ending a receive (an error: timeout, the peer's
        // death) still writes all six registers, zeroed on error.
        (Wait::IpcReceive, c) => {
            write_wide_result(regs, completion_result(c).map(|[a, b, c, d]| [a, b, c, d, 0, 0]))
        }
        (_, c) => write_result(regs, completion_result(c)),
    });
}

/// Makes runnable every thread the IPC core has completed.
pub fn deliver_wakeups(k: &mut Kernel) {
    if crate::irq_glue::has_work(k) {
        crate::irq_glue::settle(k);
    }
    while let Some((thread, completion)) = k.ipc.take_wakeup() {
        complete(k, thread, completion);
    }
}

/// A parked thread's deadline passed: ends its call (normally with
/// `TimedOut`).
pub fn timed_out(k: &mut Kernel, thread: ThreadId) {
    match k.ipc.timed_out(thread) {
        Some(completion) => complete(k, thread, completion),
        // Its wakeup is already queued: that result wins over the timeout.
        None => deliver_wakeups(k),
    }
}

fn receive(k: &mut Kernel, caller: ThreadId, deadline: Deadline) -> Result<IpcOutcome, Error> {
    Ok(match k.ipc.receive(caller, deadline)? {
        Outcome::Done((ready, message)) => IpcOutcome::DoneWide(received(&ready, &message)),
        Outcome::Block { deadline } => {
            k.block_current(Wait::IpcReceive, deadline_tsc(deadline));
            IpcOutcome::Blocked
        }
    })
}

fn deadline_tsc(deadline: Deadline) -> Option<u64> {
    match deadline {
        Deadline::At(t) => Some(t),
        _ => None,
    }
}

fn deadline(timeout: Timeout) -> Deadline {
    match timeout {
        Timeout::Now => Deadline::Now,
        Timeout::After(ns) => Deadline::At(crate::sched::deadline_after(ns)),
        Timeout::Never => Deadline::Never,
    }
}

fn park<T>(
    k: &mut Kernel,
    wait: Wait,
    outcome: Outcome<T>,
    done: impl FnOnce(T) -> [u64; 4],
) -> IpcOutcome {
    match outcome {
        Outcome::Done(v) => IpcOutcome::Done(Ok(done(v))),
        Outcome::Block { deadline } => {
            k.block_current(wait, deadline_tsc(deadline));
            IpcOutcome::Blocked
        }
    }
}

/// Handles one IPC system call of `caller`. The caller must run
/// [`deliver_wakeups`] afterwards, whatever the result.
pub fn handle(k: &mut Kernel, caller: ThreadId, call: IpcCall) -> Result<IpcOutcome, Error> {
    // Only calls that touch user memory need the caller's address space.
    let space = || {
        let task = k.thread(caller).ok_or(Error::NoSuchThread)?.task;
        k.task(task).and_then(|t| t.space.as_ref()).ok_or(Error::NoSuchTask)
    };
    let done = |r: [u64; 4]| Ok(IpcOutcome::Done(Ok(r)));
    let outcome = match call {
        IpcCall::PortCreate => {
            let h = k.ipc.port_create(caller)?;
            return done([h.raw(), 0, 0, 0]);
        }
        IpcCall::ListenPush { port } => {
            k.ipc.listen_push(caller, Handle::from_raw(port))?;
            IpcOutcome::Done(Ok([0; 4]))
        }
        IpcCall::ListenWithdraw { port } => {
            k.ipc.listen_withdraw(caller, Handle::from_raw(port))?;
            IpcOutcome::Done(Ok([0; 4]))
        }
        IpcCall::Connect { task: target, timeout } => {
            let o = k.ipc.connect(caller, target, deadline(timeout))?;
            park(k, Wait::Ipc, o, |h| [h.raw(), 0, 0, 0])
        }
        IpcCall::Write { handle, data } | IpcCall::WriteSignal { handle, data } => {
            let mut buf = [0u8; MESSAGE_MAX];
            let bytes = &mut buf[..data.len() as usize];
            space()?.copy_in(data, bytes)?;
            if matches!(call, IpcCall::Write { .. }) {
                k.ipc.write(caller, Handle::from_raw(handle), bytes)?;
            } else {
                k.ipc.write_signal(caller, Handle::from_raw(handle), bytes)?;
            }
            IpcOutcome::Done(Ok([0; 4]))
        }
        IpcCall::Read { handle, out } => {
            let msg = k.ipc.read(caller, Handle::from_raw(handle))?;
            space()?.copy_out(out, &msg.data)?;
            IpcOutcome::Done(Ok([msg.len as u64, msg.seq, 0, 0]))
        }
        IpcCall::Signal { handle } => {
            k.ipc.signal(caller, Handle::from_raw(handle))?;
            IpcOutcome::Done(Ok([0; 4]))
        }
        IpcCall::Poll { handles, count, timeout } => {
            let mut raw = [0u8; 8 * alux_abi::ipc::limits::POLL_SET_MAX];
            let bytes = &mut raw[..(count * 8) as usize];
            space()?.copy_in(handles, bytes)?;
            let mut set = [Handle::NULL; alux_abi::ipc::limits::POLL_SET_MAX];
            for (h, b) in set.iter_mut().zip(bytes.chunks_exact(8)) {
                *h = Handle::from_raw(u64::from_le_bytes(b.try_into().expect("8-byte chunk")));
            }
            let o = k.ipc.poll(caller, &set[..count as usize], deadline(timeout))?;
            park(k, Wait::Ipc, o, |r| encode_ready(&r))
        }
        IpcCall::PollOne { handle, timeout } => {
            let o = k.ipc.poll(caller, &[Handle::from_raw(handle)], deadline(timeout))?;
            park(k, Wait::Ipc, o, |r| encode_ready(&r))
        }
        IpcCall::PollAll { timeout } => {
            let o = k.ipc.poll_all(caller, deadline(timeout))?;
            park(k, Wait::Ipc, o, |r| encode_ready(&r))
        }
        IpcCall::Close { handle } => {
            k.ipc.close(caller, Handle::from_raw(handle))?;
            IpcOutcome::Done(Ok([0; 4]))
        }
        IpcCall::ConnectionInfo { handle, out } => {
            let info = k.ipc.connection_info(caller, Handle::from_raw(handle))?;
            crate::mm::write_record(space()?, out, &info)?;
            IpcOutcome::Done(Ok([0; 4]))
        }
        IpcCall::SetConnectPermission { uid, allow } => {
            k.ipc.set_connect_permission(caller, uid as alux_abi::Uid, allow)?;
            IpcOutcome::Done(Ok([0; 4]))
        }
        IpcCall::KernelEndOpen { kind } => {
            let kind = u32::try_from(kind).map_err(|_| Error::InvalidArgument)?;
            let h = if kind & 0xff == alux_abi::ipc::kernel_end_kind::INTERRUPT
                && alux_abi::ipc::kernel_end_kind::is_valid(kind)
            {
                crate::irq_glue::open(k, caller, kind)?
            } else {
                k.ipc.kernel_end_open(caller, kind)?.0
            };
            IpcOutcome::Done(Ok([h.raw(), 0, 0, 0]))
        }
        IpcCall::Send { handle, len, words } => {
            let bytes = unpack_message(words);
            k.ipc.write_signal(caller, Handle::from_raw(handle), &bytes[..len as usize])?;
            IpcOutcome::Done(Ok([0; 4]))
        }
        IpcCall::Receive { timeout } => receive(k, caller, deadline(timeout))?,
        IpcCall::SendReceive { handle, len, words } => {
            let bytes = unpack_message(words);
            match k.ipc.send_receive(caller, Handle::from_raw(handle), &bytes[..len as usize])? {
                SendReceive::Received(ready, message) => {
                    IpcOutcome::DoneWide(received(&ready, &message))
                }
                SendReceive::Parked { handoff } => {
                    k.block_current(Wait::IpcReceive, None);
                    // A server waiting for this request runs next, directly.
                    if let Some((to, ready, message)) = handoff {
                        let regs = received(&ready, &message);
                        k.hand_off(to, |r| write_wide_result(r, Ok(regs)));
                    }
                    IpcOutcome::Blocked
                }
            }
        }
        IpcCall::ConnectionQuery { connection, out } => {
            let ends = k.ipc.connection_query(caller, connection)?;
            crate::mm::write_record(space()?, out, &ends)?;
            IpcOutcome::Done(Ok([0; 4]))
        }
    };
    Ok(outcome)
}
