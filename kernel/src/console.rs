//! The kernel console on the serial port, with `kprint!`/`kprintln!`.

use core::fmt::{self, Write};
use spin::Mutex;

static CONSOLE: Mutex<()> = Mutex::new(());

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::arch::serial::write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Prints formatted text. Used by the macros.
pub fn print(args: fmt::Arguments<'_>) {
    let _guard = CONSOLE.lock();
    let _ = Serial.write_fmt(args);
}

/// Writes raw bytes (a user task's debug print).
pub fn write_bytes(bytes: &[u8]) {
    let _guard = CONSOLE.lock();
    crate::arch::serial::write_bytes(bytes);
}

/// Prints even if the console lock is held (the holder was interrupted by a
/// fatal error and will never release it).
pub fn print_emergency(args: fmt::Arguments<'_>) {
    let _ = Serial.write_fmt(args);
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
