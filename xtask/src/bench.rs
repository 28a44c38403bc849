//! `cargo xtask bench`: boots the release kernel with `scenario=bench`
//! under TCG with `-icount shift=0`, where the guest TSC counts
//! instructions, and collects the `BENCH` lines the benchmark programs
//! print; then (unless `--no-smp`) boots `scenario=bench-smp` with 1, 2 and
//! 4 CPUs for the SMP figures (`docs/benchmarks.md` says what each counts:
//! under `-icount` the CPUs take turns and the clock counts the
//! instructions of all of them). Writes the results as JSON to
//! `target/bench.json` and prints a table, both labelled with what was
//! really measured (instructions only under TCG with `-icount`; TSC cycles
//! under KVM). A `BENCH-ABORT` line, a missing benchmark or a failed
//! scenario fails the command.

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

/// Every benchmark the `bench` scenario reports, with what one operation
/// is. A run missing any of them fails.
const BENCHMARKS: &[(&str, &str)] = &[
    ("null_syscall", "SelfInfo: entry, fast path (per-CPU identity), return"),
    ("unknown_syscall", "rejected number: entry, general path, decode error, return"),
    ("yield_switch_pair", "2 threads: 2 yields + 2 switches (A to B, B to A)"),
    ("ipc_round_trip", "A Send, B wakes in Receive, Send back, A wakes in Receive"),
    ("ipc_round_trip_send_receive", "the same with one SendReceive call on each side"),
    ("ipc_round_trip_buffer_calls", "the same with WriteSignal, PollAll and Read (memory)"),
    ("signal_to_waiting_thread", "signal until the polling thread is back in user mode"),
    ("blk_read_4k", "client to virtio-blk driver to disk and back: 4 KiB read, idle excluded"),
    ("blk_write_4k", "the same, 4 KiB write"),
    ("blk_read_64k_seq", "the same, 64 KiB sequential read (one request)"),
    ("memd_fault_zero", "first touch of a page until the thread runs again: memd maps a zero page"),
    (
        "memd_fault_evict",
        "the same when the pool is full: a dirty page goes to swap first, idle excluded",
    ),
    (
        "memd_fault_swap_in",
        "touch of a page out on swap until the thread runs again, idle excluded",
    ),
    ("shm_copy_plain", "per KiB: a plain 64 KiB copy in one task with the ring's copy routine"),
    ("shm_stream_4k", "per KiB: 4 KiB writes through a 64 KiB ring to a reader in another task"),
    ("shm_stream_64k", "per KiB: the same with 64 KiB writes"),
    ("shm_doorbell_32b", "a 32-byte ring message to a reader asleep until it has it"),
];

/// The CPU counts the SMP figures are measured with, a boot each.
const SMP_CPUS: &[u32] = &[1, 2, 4];

/// The SMP figures a boot with `cpus` CPUs reports, with what one
/// operation is: `ipc_rt_same_cpu_cpusN`, `ipc_rt_cross_cpu_cpusN` (2 CPUs
/// or more) and `ipc_rt_Ppair(s)_cpusN` for 1, 2 and 4 pairs.
fn smp_benchmarks(cpus: u32) -> Vec<(String, String)> {
    let mut v = vec![(
        format!("ipc_rt_same_cpu_cpus{cpus}"),
        format!("SendReceive round trip, both threads pinned to CPU 0 ({cpus} CPUs booted)"),
    )];
    if cpus >= 2 {
        v.push((
            format!("ipc_rt_cross_cpu_cpus{cpus}"),
            format!(
                "the same, client on CPU 0 and server on CPU 1: both CPUs' instructions ({cpus} CPUs)"
            ),
        ));
    }
    for pairs in [1, 2, 4] {
        v.push((
            format!("ipc_rt_{pairs}pair{}_cpus{cpus}", if pairs > 1 { "s" } else { "" }),
            format!(
                "{pairs} pair{} at once, pair i pinned to CPU i mod {cpus}: all CPUs' instructions per round trip",
                if pairs > 1 { "s" } else { "" }
            ),
        ));
    }
    v
}

fn describe(name: &str) -> String {
    if let Some((_, what)) = BENCHMARKS.iter().find(|(n, _)| *n == name) {
        return what.to_string();
    }
    SMP_CPUS
        .iter()
        .flat_map(|&c| smp_benchmarks(c))
        .find(|(n, _)| n == name)
        .map_or(String::new(), |(_, what)| what)
}

/// Boots `opts` and collects its results, every one of `expected` among
/// them. On failure the log is printed and the error says why.
fn run_boot(opts: &Options, expected: &[String]) -> Result<(Vec<Result_>, qemu::Outcome), String> {
    let outcome = qemu::run(opts)?;
    let results: Vec<Result_> = outcome.log.lines().filter_map(parse).collect();
    let aborts: Vec<&str> =
        outcome.log.lines().filter(|l| l.contains("BENCH-ABORT")).map(str::trim).collect();
    let missing: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .filter(|n| !results.iter().any(|r| r.name == *n))
        .collect();
    if !outcome.success() || !aborts.is_empty() || !missing.is_empty() {
        println!("{}", outcome.log);
        let mut why = format!(
            "benchmark run ({}, {} CPU{}) failed: {}",
            opts.cmdline,
            opts.cpus,
            if opts.cpus == 1 { "" } else { "s" },
            outcome.describe()
        );
        for a in &aborts {
            let _ = write!(why, "\n  {a}");
        }
        if !missing.is_empty() {
            let _ = write!(why, "\n  no result for: {}", missing.join(", "));
        }
        return Err(why);
    }
    Ok((results, outcome))
}

/// What the figures count, from how QEMU really ran (not from what was
/// asked): `(unit, accelerator)`.
fn unit_of(outcome: &qemu::Outcome) -> (&'static str, &'static str) {
    if outcome.used_kvm {
        ("TSC cycles", "KVM")
    } else if outcome.icount {
        ("guest instructions", "TCG -icount shift=0, TSC = instructions")
    } else {
        // Not reached by `bench` (it always asks for -icount), kept so a
        // change there cannot mislabel the figures.
        ("TSC ticks (TCG without -icount: not instructions, not cycles)", "TCG")
    }
}

fn json_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The medians of a `bench.json` this command wrote: `(name, median)`.
/// Only our own format is read (one result object per line), so no JSON
/// library is needed.
fn read_baseline(path: &str) -> Result<Vec<(String, u64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let field = |line: &str, key: &str| -> Option<String> {
        let at = line.find(&format!("\"{key}\": "))? + key.len() + 4;
        let rest = &line[at..];
        Some(if let Some(s) = rest.strip_prefix('"') {
            s[..s.find('"')?].to_string()
        } else {
            rest[..rest.find([',', '}']).unwrap_or(rest.len())].trim().to_string()
        })
    };
    let results: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| Some((field(l, "name")?, field(l, "median")?.parse().ok()?)))
        .collect();
    if results.is_empty() {
        return Err(format!("{path}: no benchmark results in it"));
    }
    Ok(results)
}

/// Runs the benchmarks; `Ok(true)` if they ran.
pub fn cmd_bench(mut args: pico_args::Arguments) -> Result<bool, String> {
    let debug = args.contains("--debug");
    let kvm = args.contains("--kvm");
    let smp = !args.contains("--no-smp");
    let baseline: Option<String> =
        args.opt_value_from_str("--baseline").map_err(|e| e.to_string())?;
    crate::reject_unused(args)?;
    // Read before anything runs: this run overwrites target/bench.json,
    // which may be the baseline itself.
    let baseline = baseline.map(|p| read_baseline(&p)).transpose()?;
    qemu::ensure_installed()?;
    let artifacts = crate::build(!debug)?;
    // memd's pool is small, so the paging benchmarks reach the disk soon.
    let mut opts = Options::new(&artifacts, "scenario=bench memd_pool=16");
    opts.timeout = Duration::from_secs(600);
    // Under TCG, always count instructions: also when KVM was asked for and
    // failed its probe, so the figures keep one meaning.
    opts.icount = true;
    opts.kvm = kvm;
    // The disk benchmarks' disk: fresh, and throttled in host time (which
    // the guest's count does not see) so that every request completes
    // after its submitter went to wait (docs/benchmarks.md).
    let disk = crate::target_dir().join("bench.img");
    qemu::fresh_disk(&disk)?;
    opts.disk = Some(disk);
    opts.disk_options = "throttling.iops-total=500".into();
    let path = crate::target_dir().join("bench.json");
    // No results from a failed run, nor stale ones from an earlier run.
    let failed = |why: String| {
        let _ = std::fs::remove_file(&path);
        Err(why)
    };
    let expected: Vec<String> = BENCHMARKS.iter().map(|(n, _)| n.to_string()).collect();
    let (mut results, outcome) = match run_boot(&opts, &expected) {
        Ok(r) => r,
        Err(why) => return failed(why),
    };
    // The SMP figures: their own boots, without the disk.
    for &cpus in if smp { SMP_CPUS } else { &[] } {
        let mut o = Options::new(&artifacts, &crate::scenarios::cmdline("bench-smp", cpus));
        o.timeout = Duration::from_secs(600);
        o.icount = true;
        o.kvm = kvm;
        o.cpus = cpus;
        let expected: Vec<String> = smp_benchmarks(cpus).into_iter().map(|(n, _)| n).collect();
        match run_boot(&o, &expected) {
            Ok((r, o)) if o.used_kvm == outcome.used_kvm && o.icount == outcome.icount => {
                results.extend(r)
            }
            Ok(_) => {
                return failed(format!(
                    "the {cpus}-CPU boot ran with another accelerator than the first: units differ"
                ))
            }
            Err(why) => return failed(why),
        }
    }
    let (unit, accel) = unit_of(&outcome);
    let fallback = kvm && !outcome.used_kvm;
    println!(
        "alux benchmarks ({} kernel, {}{}; median of runs, user and kernel together)\n",
        if debug { "debug" } else { "release" },
        accel,
        if fallback { "; KVM was asked for but failed its probe" } else { "" }
    );
    let base_of = |name: &str| {
        baseline.as_ref().and_then(|b| b.iter().find(|(n, _)| n == name).map(|(_, m)| *m))
    };
    if baseline.is_some() {
        println!(
            "{:<28} {:>10} {:>10} {:>7} {:>10} {:>10} {:>6}  what",
            "benchmark", "median", "baseline", "ratio", "min", "max", "runs"
        );
    } else {
        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>6}  what",
            "benchmark", "median", "min", "max", "runs"
        );
    }
    let mut json = String::from("{\n");
    let _ = writeln!(
        json,
        "  \"unit\": \"{}\",\n  \"accelerator\": \"{}\",\n  \"icount\": {},\n  \"kvm_requested\": {},\n  \"kernel\": \"{}\",\n  \"results\": [",
        json_str(unit),
        if outcome.used_kvm { "kvm" } else { "tcg" },
        outcome.icount,
        kvm,
        if debug { "debug" } else { "release" }
    );
    for (i, r) in results.iter().enumerate() {
        if baseline.is_some() {
            let (base, ratio) = match base_of(&r.name) {
                Some(b) if b > 0 => (b.to_string(), format!("{:.3}", r.median as f64 / b as f64)),
                _ => ("-".to_string(), "-".to_string()),
            };
            println!(
                "{:<28} {:>10} {:>10} {:>7} {:>10} {:>10} {:>6}  {}",
                r.name,
                r.median,
                base,
                ratio,
                r.min,
                r.max,
                r.runs,
                describe(&r.name)
            );
        } else {
            println!(
                "{:<28} {:>10} {:>10} {:>10} {:>6}  {}",
                r.name,
                r.median,
                r.min,
                r.max,
                r.runs,
                describe(&r.name)
            );
        }
        let _ = writeln!(
            json,
            "    {{\"name\": \"{}\", \"median\": {}, \"min\": {}, \"max\": {}, \"runs\": {}, \"what\": \"{}\"}}{}",
            json_str(&r.name),
            r.median,
            r.min,
            r.max,
            r.runs,
            json_str(&describe(&r.name)),
            if i + 1 < results.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("\nunit: {unit} ({accel}); written to {}", path.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_is_read_back_from_the_format_this_command_writes() {
        let dir = std::env::temp_dir().join(format!("alux-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bench.json");
        std::fs::write(
            &path,
            "{\n  \"unit\": \"guest instructions\",\n  \"results\": [\n    {\"name\": \"null_syscall\", \"median\": 338, \"min\": 338, \"max\": 340, \"runs\": 31, \"what\": \"SelfInfo: a, b\"},\n    {\"name\": \"blk_read_4k\", \"median\": 7103, \"min\": 1, \"max\": 2, \"runs\": 31, \"what\": \"x\"}\n  ]\n}\n",
        )
        .unwrap();
        let got = read_baseline(path.to_str().unwrap()).unwrap();
        assert_eq!(got, vec![("null_syscall".to_string(), 338), ("blk_read_4k".to_string(), 7103)]);
        std::fs::write(&path, "{}").unwrap();
        assert!(read_baseline(path.to_str().unwrap()).is_err(), "no results is an error");
        assert!(read_baseline("/nonexistent/bench.json").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
