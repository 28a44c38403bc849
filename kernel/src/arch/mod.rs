//! Architecture layers. alux runs on x86_64 only today.

mod x86_64;
pub use self::x86_64::*;
