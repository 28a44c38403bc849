//! The hardware-free part of the alux kernel, tested on the host: physical
//! frame allocation, page-table logic, ELF validation, ACPI tables, the
//! interrupt-line rules, device-range claims, system call decoding and the
//! console's text buffer. Nothing here touches hardware or holds `unsafe`;
//! the binary (`main.rs` and `arch/`) supplies the memory these types work
//! on.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod claims;
pub mod console_buffer;
/// ELF validation lives in its own crate, shared with the memory daemon.
pub use alux_elf as elf_loader;
pub mod frame;
pub mod irq;
pub mod paging;
pub mod pins;
pub mod syscall;
pub mod table;
pub mod timers;
