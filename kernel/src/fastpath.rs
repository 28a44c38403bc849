//! The system call fast path: `SendReceive` in its common case, carried
//! out without the decoder, the typed call, the IPC glue's enums and the
//! general dispatch, and without touching the caller's vector registers.
//!
//! It owns no rule. The IPC core decides, through its narrow entry
//! [`alux_ipc::Ipc::send_receive_fast`], whether the call is the common
//! case (a connected end of the caller, the peer's thread parked in a
//! receive, nothing pending for the caller, no timeout to arm) and then
//! changes its state exactly as the general path would; the scheduler
//! switches to the receiver (`Kernel::fast_hand_off`). Anything else —
//! a bad, stale or foreign handle, a closed peer, a kernel end, a receiver
//! not waiting, a pending event, a hand-off or device work pending — makes
//! it answer `None` with nothing changed, and the general path handles the
//! call from the start, errors included.
//!
//! It must never touch user memory, allocate or block. Code that runs
//! before the vector registers are released must not touch them (see
//! `arch::entry`, "Vector state"; CR0.TS guards it if the compiler
//! disagrees). A hand-off switches threads, which moves vector state
//! anyway, so `send_receive` releases them once it knows it will switch
//! (it may still fall back, then the general path finds them released).

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
    let caller = k.current?;
    let [h, len, w0, w1, w2, w3] = crate::arch::entry::current_args();
    if k.hand_off_pending() || crate::irq_glue::has_work(k) {
        return None;
    }
    // It hands the CPU to another thread, so the caller's vector state
    // must be saved anyway (at the return to user mode, or here): saving
    // it now lets the Rust below use SSE without a #NM trap.
    crate::arch::entry::release_vectors();
    let threads = &k.threads;
    let (to, regs) =
        k.ipc.send_receive_fast(caller, Handle::from_raw(h), len, [w0, w1, w2, w3], |to| {
            Kernel::parked_for_hand_off(threads, to)
        })?;
    Some(k.fast_hand_off(caller, to, regs).map_or(Fast::Dispatch, Fast::Done))
}
