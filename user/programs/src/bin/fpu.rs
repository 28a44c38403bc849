//! Two threads doing long floating-point computations that stay in vector
//! registers across preemption; each result must equal the same computation
//! done alone beforehand, bit for bit.
#![no_std]
#![no_main]

use alux_rt::{println, thread, Start};

#[inline(never)]
fn compute(seed: f64, steps: u64) -> f64 {
    let (mut a, mut b, mut c, mut d) = (seed, seed * 0.5, seed + 1.25, -seed);
    for i in 0..steps {
        let x = i as f64 * 1e-7;
        a = a * 0.999_999_7 + x;
        b = b * 1.000_000_1 - a * 1e-9;
        c = (c + b) * 0.5 + seed;
        d = d * 0.75 + c * 0.25 - x;
    }
    a + b * 2.0 + c * 3.0 + d * 4.0
}

fn main(start: &Start) -> u64 {
    let steps = start.arg_words().next().and_then(programs::parse_u64).unwrap_or(3_000_000);
    let expected = [compute(1.5, steps), compute(-7.25, steps)];
    let t1 = thread::spawn(move || compute(1.5, steps)).expect("spawn");
    let t2 = thread::spawn(move || compute(-7.25, steps)).expect("spawn");
    let got = [t1.join().unwrap_or(f64::NAN), t2.join().unwrap_or(f64::NAN)];
    let ok = got[0].to_bits() == expected[0].to_bits() && got[1].to_bits() == expected[1].to_bits();
    println!(
        "fpu: expected {:?}, got {:?}: {}",
        expected,
        got,
        if ok { "equal" } else { "DIFFERENT" }
    );
    if ok {
        0
    } else {
        1
    }
}
alux_rt::entry!(main);
