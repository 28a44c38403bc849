//! The COM1 serial port: the kernel's console and the test harness's log.
//!
//! It owns the port's registers. It must never wait for the port except in
//! [`write_blocking`], which only the paths that stop the machine use.

use super::cpu::{inb, outb};

const COM1: u16 = 0x3f8;
/// Line status register, and its "transmit holding register empty" bit
/// (with the FIFO on: the whole transmit FIFO is empty).
const LSR: u16 = COM1 + 5;
const LSR_THR_EMPTY: u8 = 0x20;

/// Bytes the transmit FIFO takes at once when [`can_send`] says it is
/// empty (16550A).
pub const FIFO_SIZE: usize = 16;
/// The line speed the port is programmed for.
pub const BAUD: u64 = 115_200;
/// How long one FIFO load takes on the wire (10 bits a byte: 8N1).
pub const FIFO_LOAD_NS: u64 = FIFO_SIZE as u64 * 10 * 1_000_000_000 / BAUD;

/// Programs COM1 for 115200 baud, 8N1, FIFO on, no interrupts.
pub fn init() {
    outb(COM1 + 1, 0x00); // no interrupts
    outb(COM1 + 3, 0x80); // DLAB on
    outb(COM1, 0x01); // divisor 1: 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1, DLAB off
    outb(COM1 + 2, 0xc7); // FIFO on, cleared
    outb(COM1 + 4, 0x03); // DTR, RTS
}

/// Whether the transmit FIFO is empty, so that [`send`] may write up to
/// [`FIFO_SIZE`] bytes without waiting.
pub fn can_send() -> bool {
    inb(LSR) & LSR_THR_EMPTY != 0
}

/// Writes bytes as they are, without waiting: at most [`FIFO_SIZE`], and
/// only after [`can_send`] said yes (more would be lost).
pub fn send(bytes: &[u8]) {
    debug_assert!(bytes.len() <= FIFO_SIZE);
    for &b in bytes {
        outb(COM1, b);
    }
}

/// Writes bytes, waiting for the port before each FIFO load, turning `\n`
/// into `\r\n`: for text that must be out before the machine stops.
pub fn write_blocking(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put_blocking(b'\r');
        }
        put_blocking(b);
    }
}

/// Writes one byte as it is, waiting until the port takes it.
pub fn put_blocking(byte: u8) {
    while !can_send() {}
    outb(COM1, byte);
}
