//! Threads of the current task.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alux_abi::syscall::Sys;
use alux_abi::{Error, ThreadId};
use core::time::Duration;
use spin::Mutex;

/// Stack size of threads started with [`spawn`].
pub const STACK_SIZE: usize = 64 * 1024;

/// A running thread; [`JoinHandle::join`] waits for it and frees its stack.
/// Dropping the handle detaches the thread (its stack is freed with the
/// task).
pub struct JoinHandle<T> {
    id: ThreadId,
    stack: *mut u8,
    result: Arc<Mutex<Option<T>>>,
}

impl<T> JoinHandle<T> {
    /// The thread's ID.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// Waits for the thread to end and returns what its closure returned
    /// (`None` if it ended without returning, e.g. by `exit`).
    pub fn join(self) -> Option<T> {
        loop {
            match crate::sys::call(Sys::ThreadJoin, [self.id.raw(), u64::MAX, 0, 0, 0, 0]) {
                // NoSuchThread: it has already ended.
                Ok(_) | Err(Error::NoSuchThread) => break,
                Err(_) => crate::time::yield_now(),
            }
        }
        // SAFETY: the thread has ended, so nothing runs on its stack; the
        // stack was mapped by `spawn` with this size.
        let _ = unsafe { crate::mem::release(self.stack, STACK_SIZE) };
        self.result.lock().take()
    }
}

struct Payload {
    main: Box<dyn FnOnce()>,
}

core::arch::global_asm!(
    ".global __alux_thread_entry",
    "__alux_thread_entry:",
    "    and rsp, -16",
    "    call {main}",
    "    ud2",
    main = sym thread_main,
);

extern "C" {
    fn __alux_thread_entry();
}

extern "C" fn thread_main(payload: *mut Payload) -> ! {
    // SAFETY: `spawn` passes a pointer from `Box::into_raw` and never uses
    // it again.
    let Payload { main } = *unsafe { Box::from_raw(payload) };
    main();
    exit(0)
}

/// Starts a thread running `f`.
pub fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, Error> {
    let stack = crate::mem::reserve(STACK_SIZE, true)?;
    let result = Arc::new(Mutex::new(None));
    let slot = result.clone();
    let payload = Box::into_raw(Box::new(Payload {
        main: Box::new(move || {
            let v = f();
            *slot.lock() = Some(v);
        }),
    }));
    let top = stack as u64 + STACK_SIZE as u64;
    match crate::sys::call(
        Sys::ThreadCreate,
        [__alux_thread_entry as *const () as u64, top, payload as u64, 0, 0, 0],
    ) {
        Ok([id, ..]) => Ok(JoinHandle { id: ThreadId::from_raw(id), stack, result }),
        Err(e) => {
            // SAFETY: the thread never started: we still own the payload
            // and the stack.
            unsafe {
                drop(Box::from_raw(payload));
                let _ = crate::mem::release(stack, STACK_SIZE);
            }
            Err(e)
        }
    }
}

/// Ends the calling thread.
pub fn exit(code: u64) -> ! {
    let _ = crate::sys::call(Sys::ThreadExit, [code, 0, 0, 0, 0, 0]);
    unreachable!("ThreadExit returned")
}

/// The calling thread's ID.
pub fn current() -> ThreadId {
    crate::sys::self_info().map(|s| s.1).unwrap_or(ThreadId::from_raw(0))
}

/// Sleeps the calling thread.
pub fn sleep(d: Duration) {
    crate::time::sleep(d)
}
