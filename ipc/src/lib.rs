//! The alux IPC object model (placeholder; see issue 3).
#![no_std]
#![forbid(unsafe_code)]
