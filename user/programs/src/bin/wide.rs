//! The wide calls' edges (the `ipc-wide` scenario; run privileged, since it
//! opens a kernel end). Each check is a raw `Receive` or `SendReceive` with
//! a known marker in every argument register, expecting a given error with
//! all six result registers (`rdi, rsi, rdx, r10, r8, r9`) zero, whether
//! the error comes at once, from decoding, or later from a timeout. And
//! `SendReceive` on a kernel end is refused at once (`WrongKind`), never
//! parks: the kernel never answers inside the call.
#![no_std]
#![no_main]

use alux_abi::ipc::kernel_end_kind;
use alux_abi::syscall::{Sys, NO_WAIT};
use alux_abi::Error;
use alux_rt::sys::call_wide;
use alux_rt::{println, Start};

/// Markers for the argument registers after the first two.
const MARK: [u64; 4] =
    [0x1111_2222_3333_4444, 0x5555_6666_7777_8888, 0x9999_aaaa_bbbb_cccc, 0xdddd_eeee_ffff_0001];

fn check(what: &str, nr: Sys, a0: u64, a1: u64, want: Error) -> Result<(), ()> {
    let (rax, regs) = call_wide(nr, [a0, a1, MARK[0], MARK[1], MARK[2], MARK[3]]);
    if rax == want.code() && regs == [0; 6] {
        println!("wide: {}: {} with all six results zero", what, want);
        Ok(())
    } else {
        println!("wide: {}: expected {} and zeros, got rax={} regs={:#x?}", what, want, rax, regs);
        Err(())
    }
}

fn run() -> Result<(), ()> {
    let ms = 1_000_000;
    check("Receive, nothing ready, no wait", Sys::Receive, NO_WAIT, MARK[0], Error::TimedOut)?;
    check("Receive, timeout after blocking", Sys::Receive, 2 * ms, MARK[0], Error::TimedOut)?;
    check("SendReceive, bad handle", Sys::SendReceive, 0x1234_5678, 4, Error::BadHandle)?;
    check("SendReceive, 33 bytes", Sys::SendReceive, 0x1234_5678, 33, Error::MessageTooLong)?;
    let end = alux_rt::ipc::open_kernel_end(kernel_end_kind::interrupt(5)).map_err(|e| {
        println!("wide: cannot open a kernel end: {}", e);
    })?;
    let h = end.handle().raw();
    check("SendReceive on a kernel end", Sys::SendReceive, h, 5, Error::WrongKind)?;
    check("SendReceive on a kernel end, empty", Sys::SendReceive, h, 0, Error::WrongKind)?;
    check("Receive with a kernel end, no wait", Sys::Receive, NO_WAIT, MARK[0], Error::TimedOut)?;
    check("Receive with a kernel end, timeout", Sys::Receive, 2 * ms, MARK[0], Error::TimedOut)?;
    // The end still works for a plain send.
    end.send(b"still usable").map_err(|e| println!("wide: send on the kernel end: {}", e))?;
    Ok(())
}

fn main(_: &Start) -> u64 {
    match run() {
        Ok(()) => {
            println!("wide: all checks passed");
            0
        }
        Err(()) => 1,
    }
}
alux_rt::entry!(main);
