//! `cargo xtask bench`: boots the release kernel with `scenario=bench`
//! under `-icount shift=0`, where the guest TSC counts instructions, and
//! collects the `BENCH` lines the benchmark programs print. Writes the
//! results as JSON to `target/bench.json` and prints a table.

use crate::qemu::{self, Options};
use std::fmt::Write as _;
use std::time::Duration;

/// One benchmark result.
struct Result_ {
    name: String,
    median: u64,
    min: u64,
    max: u64,
    runs: u64,
}

fn parse(line: &str) -> Option<Result_> {
    let rest = crate::qemu::task_line(line.trim())?.1.strip_prefix("BENCH ")?;
    let mut r = Result_ { name: String::new(), median: 0, min: 0, max: 0, runs: 0 };
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "name" => r.name = v.to_string(),
            "median" => r.median = v.parse().ok()?,
            "min" => r.min = v.parse().ok()?,
            "max" => r.max = v.parse().ok()?,
            "runs" => r.runs = v.parse().ok()?,
            _ => {}
        }
    }
    Some(r)
}

fn describe(name: &str) -> &'static str {
    match name {
        "ipc_round_trip" => "A Send, B wakes in Receive, Send back, A wakes in Receive",
        "ipc_round_trip_send_receive" => "the same with one SendReceive call on each side",
        "ipc_round_trip_buffer_calls" => "the same with WriteSignal, PollAll and Read (memory)",
        "signal_to_waiting_thread" => "signal until the polling thread is back in user mode",
        "null_syscall" => "SelfInfo: entry, decode, lookup, return",
        "unknown_syscall" => "rejected number: entry, decode error, return",
        "yield_switch_pair" => "one yield = one thread switch (same task)",
        _ => "",
    }
}

/// Runs the benchmarks; `Ok(true)` if they ran.
pub fn cmd_bench(mut args: pico_args::Arguments) -> Result<bool, String> {
    let debug = args.contains("--debug");
    let kvm = args.contains("--kvm");
    crate::reject_unused(args)?;
    qemu::ensure_installed()?;
    let artifacts = crate::build(!debug)?;
    let mut opts = Options::new(&artifacts, "scenario=bench");
    opts.timeout = Duration::from_secs(600);
    opts.icount = !kvm;
    opts.kvm = kvm;
    let outcome = qemu::run(&opts)?;
    let results: Vec<Result_> = outcome.log.lines().filter_map(parse).collect();
    if !outcome.success() || results.is_empty() {
        println!("{}", outcome.log);
        return Err(format!("benchmark run failed: {}", outcome.describe()));
    }
    let unit = if outcome.used_kvm { "cycles" } else { "guest instructions" };
    println!(
        "alux benchmarks ({} kernel, {}; median of runs, user and kernel together)\n",
        if debug { "debug" } else { "release" },
        if outcome.used_kvm {
            "KVM, TSC cycles"
        } else {
            "TCG -icount shift=0, TSC = instructions"
        }
    );
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>6}  what",
        "benchmark", "median", "min", "max", "runs"
    );
    let mut json = String::from("{\n");
    let _ = writeln!(
        json,
        "  \"unit\": \"{unit}\",\n  \"kernel\": \"{}\",\n  \"results\": [",
        if debug { "debug" } else { "release" }
    );
    for (i, r) in results.iter().enumerate() {
        println!(
            "{:<26} {:>10} {:>10} {:>10} {:>6}  {}",
            r.name,
            r.median,
            r.min,
            r.max,
            r.runs,
            describe(&r.name)
        );
        let _ = writeln!(
            json,
            "    {{\"name\": \"{}\", \"median\": {}, \"min\": {}, \"max\": {}, \"runs\": {}}}{}",
            r.name,
            r.median,
            r.min,
            r.max,
            r.runs,
            if i + 1 < results.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    let path = crate::target_dir().join("bench.json");
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("\nunit: {unit}; written to {}", path.display());
    Ok(true)
}
