//! Time: the monotonic clock and sleeping.

use alux_abi::syscall::Sys;
use core::time::Duration;

/// Time since boot.
pub fn now() -> Duration {
    Duration::from_nanos(crate::sys::call(Sys::Clock, [0; 6]).map(|r| r[0]).unwrap_or(0))
}

/// Sleeps at least `d`.
pub fn sleep(d: Duration) {
    let ns = d.as_nanos().min(u64::MAX as u128 - 1) as u64;
    let _ = crate::sys::call(Sys::Sleep, [ns, 0, 0, 0, 0, 0]);
}

/// Gives up the rest of this time slice.
pub fn yield_now() {
    let _ = crate::sys::call(Sys::Yield, [0; 6]);
}

/// A timeout in the ABI's encoding: `None` waits forever, zero never waits.
pub fn timeout_ns(timeout: Option<Duration>) -> u64 {
    match timeout {
        None => alux_abi::syscall::WAIT_FOREVER,
        Some(d) => d.as_nanos().min(u64::MAX as u128 - 1) as u64,
    }
}
