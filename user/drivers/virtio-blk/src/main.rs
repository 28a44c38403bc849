#![no_std]
#![no_main]
fn main(_: &alux_rt::Start) -> u64 { 0 }
alux_rt::entry!(main);
