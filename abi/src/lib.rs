//! The alux system call ABI, the one source of truth shared by the kernel and
//! user space: system call numbers, register conventions, argument layouts,
//! identifiers and error codes.
//!
//! This crate owns only plain data and pure encode/decode helpers. It must
//! never contain policy, hardware access or `unsafe`.
//!
//! # Register convention
//! A system call is `syscall` with the number in `rax` and up to six
//! arguments in `rdi, rsi, rdx, r10, r8, r9`. On return `rax` holds `0` for
//! success or an [`Error`] code, and the results are in `rdi, rsi, rdx, r10`
//! — always written: unused results and every result of a failed call are
//! zero. `Receive` and `SendReceive` also return results in `r8, r9`.
//! `rcx` and `r11` are clobbered; every other register, including all vector
//! registers, is preserved.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod code_enum;
pub mod error;
pub mod ids;
pub mod ipc;
pub mod pager;
pub mod syscall;

pub use error::Error;
pub use ids::{TaskId, ThreadId, Uid};
pub use syscall::Sys;
