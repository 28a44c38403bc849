//! Exits at once with the code given as its argument (default 0).
#![no_std]
#![no_main]

use alux_rt::Start;

fn main(start: &Start) -> u64 {
    start.arg_words().next().and_then(programs::parse_u64).unwrap_or(0)
}
alux_rt::entry!(main);
