//! The kernel console: `kprint!`/`kprintln!` and tasks' `DebugPrint` text
//! go into one bounded buffer (`kernel::console_buffer`, which also owns the
//! line and prefix rules), and leave for the serial port one FIFO load at a
//! time, only when the port says its FIFO is empty.
//!
//! It owns the buffer and when bytes reach the port. It must never wait
//! for the port while the machine goes on: the scheduler calls [`pump`]
//! from the timer interrupt and the idle loop, and arms the timer for
//! [`next_send`] while text waits. Only [`flush`] and [`print_emergency`],
//! for a machine about to stop, wait for the port; and a kernel message
//! that finds the whole buffer full (tasks never take its last
//! `KERNEL_RESERVE` bytes) waits for one FIFO load at a time until it fits,
//! so that kernel text is never lost.

use crate::arch::{cpu, serial, time};
use alux_abi::TaskId;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::console_buffer::{ConsoleBuffer, Queued};
use spin::Mutex;

/// Bytes the console buffers.
const CAPACITY: usize = 16 * 1024;
/// Bytes of it only kernel messages may use.
const KERNEL_RESERVE: usize = 4 * 1024;

struct Console {
    text: ConsoleBuffer<CAPACITY>,
    /// TSC of the last FIFO load sent.
    last_send: u64,
    /// The most task room a waiting `DebugPrint` needs, while any waits.
    need: Option<usize>,
}

static CONSOLE: Mutex<Console> =
    Mutex::new(Console { text: ConsoleBuffer::new(KERNEL_RESERVE), last_send: 0, need: None });

/// TSC time at which the port will have sent the last FIFO load, while text
/// or a printer waits; 0 otherwise. Read without the lock on every return
/// to user mode.
static NEXT_SEND: AtomicU64 = AtomicU64::new(0);

impl Console {
    /// Sends one FIFO load if the port's FIFO is empty. Never waits. A busy
    /// port (a slow line, or a host not reading QEMU's output) is tried
    /// again a FIFO load's time later, not at once.
    fn send_some(&mut self) -> bool {
        if self.text.is_empty() {
            return false;
        }
        if !serial::can_send() {
            self.last_send = cpu::rdtsc();
            self.update_next_send();
            return false;
        }
        let mut chunk = [0u8; serial::FIFO_SIZE];
        let n = self.text.pop(&mut chunk);
        serial::send(&chunk[..n]);
        self.last_send = cpu::rdtsc();
        self.update_next_send();
        true
    }

    /// Keeps [`NEXT_SEND`] set while text waits or a printer waits for
    /// room (so the timer comes back to wake it, even if the buffer emptied
    /// on a path that cannot wake threads).
    fn update_next_send(&self) {
        let next = if self.text.is_empty() && self.need.is_none() {
            0
        } else {
            let load =
                (serial::FIFO_LOAD_NS as u128 * time::tsc_hz() as u128 / 1_000_000_000) as u64;
            (self.last_send + load).max(1)
        };
        NEXT_SEND.store(next, Ordering::Relaxed);
    }

    /// Sends everything, waiting for the port.
    fn flush(&mut self) {
        let mut chunk = [0u8; serial::FIFO_SIZE];
        loop {
            let n = self.text.pop(&mut chunk);
            if n == 0 {
                break;
            }
            for &b in &chunk[..n] {
                serial::put_blocking(b);
            }
        }
        self.update_next_send();
    }
}

struct KernelText<'a>(&'a mut Console);

impl Write for KernelText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        loop {
            let n = self.0.text.push_kernel(rest);
            rest = &rest[n..];
            if rest.is_empty() {
                return Ok(());
            }
            // The whole buffer is full: make room for the kernel's line,
            // one FIFO load at a time.
            while !serial::can_send() {}
            self.0.send_some();
        }
    }
}

/// Prints formatted kernel text. Used by the macros.
pub fn print(args: fmt::Arguments<'_>) {
    let mut c = CONSOLE.lock();
    let _ = KernelText(&mut c).write_fmt(args);
    c.send_some();
    c.update_next_send();
}

/// Queues a task's `DebugPrint` text (see `ConsoleBuffer::push_task`).
/// On `Part`, the caller waits until [`take_wake`] says there is room.
pub fn write_task(task: TaskId, bytes: &[u8]) -> Queued {
    let mut c = CONSOLE.lock();
    let r = c.text.push_task(task, bytes);
    if let Queued::Part { need, .. } = r {
        c.need = Some(c.need.map_or(need, |n| n.max(need)));
    }
    c.send_some();
    c.update_next_send();
    r
}

/// Sends the next FIFO load if the port takes it now; whether it did.
pub fn pump() -> bool {
    CONSOLE.lock().send_some()
}

/// Whether the threads waiting for room should retry now (they all have
/// room); true once per wait.
pub fn take_wake() -> bool {
    let mut c = CONSOLE.lock();
    if c.need.is_some_and(|n| c.text.task_room() >= n) {
        c.need = None;
        c.update_next_send();
        return true;
    }
    false
}

/// The TSC time to send the next FIFO load, while text waits.
pub fn next_send() -> Option<u64> {
    match NEXT_SEND.load(Ordering::Relaxed) {
        0 => None,
        t => Some(t),
    }
}

/// Sends everything buffered, waiting for the port: before the machine
/// stops.
pub fn flush() {
    CONSOLE.lock().flush();
}

struct Direct;

impl Write for Direct {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        serial::write_blocking(s.as_bytes());
        Ok(())
    }
}

/// Prints straight to the port, after what is buffered, waiting for it:
/// for a machine about to stop. If the console lock is held (the holder
/// was interrupted by a fatal error and will never release it), the
/// buffered text is skipped.
pub fn print_emergency(args: fmt::Arguments<'_>) {
    if let Some(mut c) = CONSOLE.try_lock() {
        c.flush();
        let _ = Direct.write_fmt(args);
    } else {
        let _ = Direct.write_fmt(args);
    }
}

/// Prints to the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
