//! The symbols a freestanding binary built against the host's prebuilt
//! `core` must provide itself, since there is no libc: `memcpy`, `memmove`,
//! `memset`, `memcmp`, `bcmp`, `rust_eh_personality` and `_Unwind_Resume`.
//!
//! Linked into the kernel and every user program. The functions are written
//! with string instructions in inline assembly so that the compiler can never
//! turn their bodies back into calls to themselves. Nothing else belongs here.
//!
//! A binary links it with `extern crate alux_freestanding;`; host test
//! binaries never name it, so libc's symbols are not shadowed there.
#![no_std]

#[cfg(all(target_arch = "x86_64", not(test)))]
mod imp;
