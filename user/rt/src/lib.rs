//! The alux user runtime: program entry, the heap, panics, and safe
//! wrappers over every system call.
//!
//! A program is a `#![no_std] #![no_main]` binary that names its main
//! function with [`entry!`]. Everything a program does with the kernel goes
//! through this crate; raw system calls live only in [`sys`].
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
extern crate alux_freestanding;

pub mod dev;
pub mod heap;
pub mod io;
pub mod ipc;
pub mod mem;
pub mod names;
pub mod pager;
pub mod shm;
pub mod sys;
pub mod task;
pub mod thread;
pub mod time;

pub use alux_abi::{Error, TaskId, ThreadId, Uid};

/// What a program receives at start.
pub struct Start {
    /// This task.
    pub task: TaskId,
    /// The first thread.
    pub thread: ThreadId,
    /// This task's uid.
    pub uid: Uid,
    /// Whether this task is privileged.
    pub privileged: bool,
    /// The argument bytes given at spawn (for init: the kernel command line).
    pub args: &'static [u8],
    /// The boot module (init only; empty otherwise).
    pub boot_module: &'static [u8],
}

impl Start {
    /// The arguments as text, split on spaces.
    pub fn arg_words(&self) -> impl Iterator<Item = &'static str> {
        core::str::from_utf8(self.args).unwrap_or("").split_ascii_whitespace()
    }

    /// The number in a `key=NUMBER` argument, e.g. the name service's task
    /// ID in `ns=ID`.
    pub fn arg_value(&self, key: &str) -> Option<u64> {
        self.arg_words().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    }

    /// The name service's task, from the `ns=ID` argument.
    pub fn name_service(&self) -> Option<TaskId> {
        self.arg_value("ns").map(TaskId::from_raw)
    }
}

/// Declares the program's main function: `fn main(start: &Start) -> u64`.
/// Its return value is the task's exit code.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn __alux_main(start: &$crate::Start) -> u64 {
            $main(start)
        }
    };
}

extern "Rust" {
    fn __alux_main(start: &Start) -> u64;
}

core::arch::global_asm!(
    ".global _start",
    "_start:",
    "    and rsp, -16",
    "    call {start}",
    "    ud2",
    start = sym rt_start,
);

extern "C" fn rt_start(info: *const alux_abi::syscall::StartInfo) -> ! {
    // SAFETY: the kernel maps the start-info page (record followed by the
    // argument bytes) and the boot module for the life of the task, and
    // passes the record's address in rdi.
    let start = unsafe {
        let info = &*info;
        Start {
            task: TaskId::from_raw(info.task),
            thread: ThreadId::from_raw(info.thread),
            uid: info.uid as Uid,
            privileged: info.flags & alux_abi::syscall::task_flags::PRIVILEGED != 0,
            args: core::slice::from_raw_parts(info.arg_ptr as *const u8, info.arg_len as usize),
            boot_module: if info.boot_module_len == 0 {
                &[]
            } else {
                core::slice::from_raw_parts(
                    info.boot_module_ptr as *const u8,
                    info.boot_module_len as usize,
                )
            },
        }
    };
    // SAFETY: as above: the record is mapped for the life of the task.
    mem::init(unsafe { (*info).pager_task });
    // SAFETY: `entry!` defines `__alux_main` with this signature.
    let code = unsafe { __alux_main(&start) };
    io::flush();
    task::exit(code)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    io::flush();
    println!(
        "panic in task {}: {}",
        sys::self_info().map(|s| s.0).unwrap_or(TaskId::from_raw(0)),
        info
    );
    io::flush();
    task::exit(101)
}
