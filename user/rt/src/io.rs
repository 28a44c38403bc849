//! Console output through the kernel's debug print, line-buffered per
//! thread so lines of different threads never mix.

use core::fmt::{self, Write};

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(alux_abi::syscall::DEBUG_PRINT_MAX) {
            let _ = crate::sys::call(
                alux_abi::syscall::Sys::DebugPrint,
                [chunk.as_ptr() as u64, chunk.len() as u64, 0, 0, 0, 0],
            );
        }
        Ok(())
    }
}

/// A fixed line buffer: formatting goes here first so that one line is one
/// system call.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                let _ =
                    Console.write_str(core::str::from_utf8(&self.buf[..self.len]).unwrap_or(""));
                self.len = 0;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints formatted text as one kernel call (for up to 512 bytes).
pub fn print(args: fmt::Arguments<'_>) {
    let mut line = Line { buf: [0; 512], len: 0 };
    let _ = line.write_fmt(args);
    let _ =
        Console.write_str(core::str::from_utf8(&line.buf[..line.len]).unwrap_or("<invalid utf-8>"));
}

/// Nothing is buffered across calls; kept so exit paths read naturally.
pub fn flush() {}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::io::print(format_args!("{}\n", format_args!($($arg)*))) };
}
