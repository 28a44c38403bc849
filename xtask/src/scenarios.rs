//! `cargo xtask test`: the host tests, then every QEMU scenario, each in a
//! fresh boot under a timeout. A scenario passes only if init printed
//! `scenario NAME: PASS` and the kernel stopped QEMU with its success code;
//! a panic, fault, hang or other exit fails it and shows the log's tail.
//! With the debug kernel (the default) the kernel's end-of-run IPC audit
//! must also have run and passed (`[kernel] IPC audit: ok`).

use crate::qemu::{self, Options};
use std::time::{Duration, Instant};

/// A QEMU scenario: init runs `scenario=NAME`.
pub struct Scenario {
    /// Name passed to init.
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// Time limit under TCG.
    pub timeout_secs: u64,
}

/// CPUs every scenario boots with (`-smp`), unless `CPU_COUNTS` says.
pub const CPUS: u32 = 2;

/// Scenarios that boot with other numbers of CPUs: each count is a boot of
/// its own, passed or failed on its own. The SMP scenarios of issue 12 run
/// with 2 and with 4.
const CPU_COUNTS: &[(&str, &[u32])] =
    &[("smp", &[4]), ("smp-stress", &[2, 4]), ("smp-shootdown", &[2, 4]), ("smp-kill", &[2, 4])];

/// The CPU counts scenario `name` boots with, one boot each.
pub fn cpu_counts(name: &str) -> &'static [u32] {
    CPU_COUNTS.iter().find(|(n, _)| *n == name).map_or(&[CPUS], |(_, c)| c)
}

/// Every QEMU scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario { name: "demo", about: "demo tasks with several threads each", timeout_secs: 120 },
    Scenario {
        name: "smp",
        about: "4 CPUs, one never sent its startup IPI: the other 3 come up, it is reported and left out, no hang",
        timeout_secs: 120,
    },
    Scenario {
        name: "smp-stress",
        about: "1,000,000 checked SendReceive round trips by 16 pairs across CPUs while tasks are killed and threads come and go",
        timeout_secs: 300,
    },
    Scenario {
        name: "smp-shootdown",
        about: "a page unmapped on one CPU while others read it: the readers fault, never see the frame's next data",
        timeout_secs: 300,
    },
    Scenario {
        name: "smp-kill",
        about: "CpuInfo and ThreadSetCpu; kill and exit of threads running or blocked on other CPUs; sleeps and timeouts on every CPU; no leak",
        timeout_secs: 300,
    },
    Scenario {
        name: "preempt",
        about: "a task spinning forever does not stop another",
        timeout_secs: 120,
    },
    Scenario {
        name: "fpu",
        about: "vector registers survive preemption, calls, hand-offs and others' faults",
        timeout_secs: 180,
    },
    Scenario { name: "faults", about: "each fault kind kills only its task", timeout_secs: 120 },
    Scenario {
        name: "wx",
        about: "kernel W^X: writes to kernel code and execution of data fault (boot self-test)",
        timeout_secs: 60,
    },
    Scenario {
        name: "cpu-state",
        about: "UMIP, null LDT, and per-thread segment selectors",
        timeout_secs: 120,
    },
    Scenario {
        name: "hostile",
        about: "garbage calls get documented answers and leave nothing behind",
        timeout_secs: 120,
    },
    Scenario {
        name: "bad-elf",
        about: "malformed images are refused, the system goes on",
        timeout_secs: 60,
    },
    Scenario {
        name: "leak",
        about: "10,000 thread and 1,000 task cycles leak nothing",
        timeout_secs: 600,
    },
    Scenario {
        name: "ipc-pingpong",
        about: "10,000 ping-pongs each with Send+Poll+Read and SendReceive, bytes checked",
        timeout_secs: 300,
    },
    Scenario {
        name: "ipc-fairness",
        about: "one thread polls 200 connections and serves all",
        timeout_secs: 300,
    },
    Scenario { name: "ipc-timeouts", about: "poll and connect timeouts", timeout_secs: 120 },
    Scenario {
        name: "ipc-closes",
        about: "close, thread exit, task exit and kill reach the peer",
        timeout_secs: 120,
    },
    Scenario {
        name: "ipc-handles",
        about: "bad, stale and foreign handles; empty queue; denied calls",
        timeout_secs: 120,
    },
    Scenario {
        name: "ipc-flood",
        about:
            "three uids fill their end shares, a fourth gets none, services go on, memory returns",
        timeout_secs: 300,
    },
    Scenario {
        name: "pools",
        about: "uids fill their thread and memory shares, services still spawn and map",
        timeout_secs: 600,
    },
    Scenario {
        name: "ipc-names",
        about: "name service: register, look up, collide, release, malformed requests",
        timeout_secs: 120,
    },
    Scenario {
        name: "ipc-wide",
        about: "wide-call errors zero all six results; SendReceive on a kernel end is refused",
        timeout_secs: 120,
    },
    Scenario {
        name: "memd-death",
        about: "memd killed: the kernel says so and stops with its failure status, no hang",
        timeout_secs: 120,
    },
    Scenario {
        name: "memd-swap",
        about: "memd pages to disk: 4x its pool, alone and 3 tasks at once; a killed task's slots come back",
        timeout_secs: 600,
    },
    Scenario {
        name: "memd",
        about: "memd gives unprivileged tasks their memory: faults, threads, bad accesses, quota",
        timeout_secs: 180,
    },
    Scenario {
        name: "shm",
        about: "shared memory: every negotiation answer, a writer killed mid-stream, a peer writing garbage; all frames back",
        timeout_secs: 180,
    },
    Scenario {
        name: "shm-stream",
        about: "256 MiB each way at once through 64 KiB rings between two tasks, every word and both checksums checked",
        timeout_secs: 600,
    },
    Scenario {
        name: "shm-pressure",
        about: "a stream whose ring memd evicts and swaps back under memory pressure (8 MiB pool)",
        timeout_secs: 600,
    },
    Scenario {
        name: "console",
        about: "a sleeper wakes on time while a task prints 4 KiB at a time; task lines prefixed",
        timeout_secs: 180,
    },
    Scenario {
        name: "blk-patterns",
        about: "virtio-blk: patterns scattered and in one run, 3 clients x 4 requests in flight",
        timeout_secs: 300,
    },
    Scenario {
        name: "blk-persist",
        about: "virtio-blk: what one boot writes, a second boot of the same image reads",
        timeout_secs: 240,
    },
    Scenario {
        name: "blk-bad",
        about: "virtio-blk: every bad request gets its status; unprivileged refused; others served",
        timeout_secs: 240,
    },
    Scenario {
        name: "blk-readonly",
        about: "virtio-blk on a read-only disk: RO negotiated, writes and flushes refused",
        timeout_secs: 120,
    },
    Scenario {
        name: "blk-kill",
        about:
            "client, then driver killed mid-request: TaskKilled, closed line silent, memory back",
        timeout_secs: 300,
    },
    Scenario {
        name: "blk-irq",
        about: "interrupts delivered match completions; bad device calls refused with their errors",
        timeout_secs: 240,
    },
];

/// Scenarios that boot twice on the same disk image (`boot=1`, `boot=2` on
/// the command line); every boot must pass.
const TWO_BOOTS: &[&str] = &["blk-persist"];

/// Extra `-drive` options of a scenario's disk: the kill scenario throttles
/// the disk (in host time) so that requests are surely in flight when the
/// driver dies; the read-only one attaches the image read-only.
const DISK_OPTIONS: &[(&str, &str)] =
    &[("blk-kill", "throttling.iops-total=200"), ("blk-readonly", "readonly=on")];

/// What a scenario needs besides init's verdict: words added to the kernel
/// command line, and lines the kernel itself must print (a kernel self-test
/// that silently did not run must not pass).
struct KernelCheck {
    scenario: &'static str,
    options: &'static str,
    lines: &'static [&'static str],
    /// The scenario ends with the kernel stopping the machine with its
    /// failure status (and these lines), not with init's PASS.
    stops_with_failure: bool,
}

const KERNEL_CHECKS: &[KernelCheck] = &[
    // The demo shows memd paging a task of four times its pool (every
    // scenario but `smp` also checks that all its CPUs came up).
    KernelCheck {
        scenario: "demo",
        options: "memd_pool=16",
        lines: &["memory daemon: task"],
        stops_with_failure: false,
    },
    // CPU 2 never gets its startup IPIs: it is reported and left out, and
    // the boot goes on with the other three.
    KernelCheck {
        scenario: "smp",
        options: "smp_silent=2",
        lines: &[
            "SMP: 3 CPUs up (APIC IDs 0 1 3); did not answer, left out: 2",
            "summary: 3 CPUs up",
        ],
        stops_with_failure: false,
    },
    KernelCheck {
        scenario: "memd",
        options: "memd_pool=16",
        lines: &["memory daemon: task"],
        stops_with_failure: false,
    },
    KernelCheck {
        scenario: "shm-pressure",
        options: "memd_pool=8",
        lines: &["memory daemon: task"],
        stops_with_failure: false,
    },
    KernelCheck {
        scenario: "memd-swap",
        options: "memd_pool=8",
        lines: &["memory daemon: task"],
        stops_with_failure: false,
    },
    KernelCheck {
        scenario: "wx",
        options: "selftest=wx",
        lines: &[
            "W^X self-test: text write faulted",
            "W^X self-test: text write through the direct map faulted",
            "W^X self-test: rodata write faulted",
            "W^X self-test: rodata execute faulted",
            "W^X self-test: data execute faulted",
            "W^X self-test: stack execute faulted",
            "W^X self-test: heap execute faulted",
            "W^X self-test: direct map execute faulted",
            "W^X self-test: passed",
            "kernel half W^X:",
        ],
        stops_with_failure: false,
    },
    KernelCheck {
        scenario: "memd-death",
        options: "",
        lines: &["the memory daemon (task", "is gone: it ended; stopping"],
        stops_with_failure: true,
    },
];

/// The kernel command line for scenario `name` on a machine of `cpus`
/// CPUs. `cpus=N` tells init how many CPUs QEMU was given (the kernel
/// ignores the word), so that a scenario can check that `CpuInfo` counts
/// every one of them.
pub fn cmdline(name: &str, cpus: u32) -> String {
    match KERNEL_CHECKS.iter().find(|c| c.scenario == name) {
        Some(c) if !c.options.is_empty() => format!("scenario={name} cpus={cpus} {}", c.options),
        _ => format!("scenario={name} cpus={cpus}"),
    }
}

/// Every scenario but `smp` (which withholds one CPU's startup IPIs): the
/// kernel must have brought up every CPU QEMU was given, which the checks
/// of `CpuInfo` in the `smp-…` scenarios also rely on.
fn needs_all_cpus(name: &str) -> bool {
    name != "smp"
}

/// The kernel lines scenario `name`, booted with `cpus` CPUs, needs that
/// `log` lacks.
fn missing_kernel_lines(name: &str, cpus: u32, log: &str) -> Vec<String> {
    let mut wanted: Vec<String> = KERNEL_CHECKS
        .iter()
        .filter(|c| c.scenario == name)
        .flat_map(|c| c.lines.iter().map(|l| l.to_string()))
        .collect();
    if needs_all_cpus(name) {
        // The kernel's boot line: `SMP: 1 CPU (APIC ID 0)` alone, else
        // `SMP: N CPUs up (APIC IDs …)`.
        wanted.push(if cpus == 1 { "SMP: 1 CPU (".into() } else { format!("SMP: {cpus} CPUs up") });
    }
    wanted
        .into_iter()
        .filter(|want| {
            !log.lines().any(|l| l.starts_with("[kernel] ") && l.contains(want.as_str()))
        })
        .collect()
}

/// What a debug kernel prints when its end-of-run `Ipc::audit` passed.
const AUDIT_OK: &str = "[kernel] IPC audit: ok";

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Checks a scenario's log beyond init's verdict, for what only the log
/// shows: the `console` scenario's task printed lines that imitate the
/// kernel's, which must appear with its task prefix and nowhere as the
/// kernel's own, and a line in two prints, which must read as one.
fn check_log(name: &str, log: &str) -> Result<(), String> {
    if name.starts_with("blk-") {
        return check_blk_log(name, log);
    }
    if name != "console" {
        return Ok(());
    }
    for line in log.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        if qemu::task_line(line).is_none() && !line.starts_with("[kernel] ") {
            return Err(format!("a line is neither a task's nor the kernel's: {line:?}"));
        }
        if line.starts_with("[kernel] forged") || line.starts_with("[kernel] behind") {
            return Err(format!("a task forged a kernel line: {line:?}"));
        }
    }
    let texts: Vec<&str> =
        log.lines().filter_map(|l| qemu::task_line(l.trim_end())).map(|(_, t)| t).collect();
    for want in
        ["[kernel] forged by a task", "?[kernel] behind a carriage return", "part one, part two"]
    {
        if !texts.contains(&want) {
            return Err(format!("no task line reads {want:?}"));
        }
    }
    Ok(())
}

/// The block scenarios: the driver named the disk it found (size and
/// features) in the boot log, and the pattern scenario really had several
/// requests on the device at once.
fn check_blk_log(name: &str, log: &str) -> Result<(), String> {
    let texts: Vec<&str> =
        log.lines().filter_map(|l| qemu::task_line(l.trim_end())).map(|(_, t)| t).collect();
    let found = texts.iter().any(|t| {
        t.starts_with("virtio-blk ")
            && t.contains("524288 sectors (256 MiB)")
            && t.contains("features VERSION_1")
    });
    if !found {
        return Err("the driver did not name the disk (size, features) in the log".into());
    }
    if name == "blk-readonly"
        && !texts.iter().any(|t| t.starts_with("virtio-blk ") && t.contains(" RO"))
    {
        return Err("the driver did not negotiate RO on a read-only disk".into());
    }
    if name == "blk-patterns" && !texts.contains(&"virtio-blk: 8 requests in flight") {
        return Err("never 8 requests on the device at once".into());
    }
    Ok(())
}

/// Checks one boot of scenario `name` with `cpus` CPUs.
fn check_boot(name: &str, cpus: u32, outcome: &qemu::Outcome, release: bool) -> Result<(), String> {
    let marker = format!("scenario {name}: PASS");
    let missing = missing_kernel_lines(name, cpus, &outcome.log);
    if KERNEL_CHECKS.iter().any(|c| c.scenario == name && c.stops_with_failure) {
        // The kernel must stop the machine itself, with its failure status,
        // saying why: not hang, not crash, not pass.
        return if !matches!(outcome.ending, qemu::Ending::Exited(qemu::EXIT_FAILURE)) {
            Err(format!("expected the kernel to stop with failure; {}", outcome.describe()))
        } else if !missing.is_empty() {
            Err(format!("the kernel did not print {missing:?}"))
        } else {
            Ok(())
        };
    }
    if !outcome.success() {
        Err(outcome.describe())
    } else if !qemu::init_said(&outcome.log, &marker) {
        Err(format!("init never printed `{marker}`"))
    } else if !missing.is_empty() {
        Err(format!("the kernel did not print {missing:?}"))
    } else if !release && !outcome.log.lines().any(|l| l.trim() == AUDIT_OK) {
        // A debug kernel audits its IPC state at the end of every run;
        // the line proves the audit ran (a failed audit also fails the
        // exit status).
        Err(format!("the kernel did not print `{AUDIT_OK}`"))
    } else {
        check_log(name, &outcome.log)
    }
}

/// Runs the test suite; `Ok(true)` if everything passed.
pub fn cmd_test(mut args: pico_args::Arguments) -> Result<bool, String> {
    let release = args.contains("--release");
    let no_host = args.contains("--no-host");
    let only: Option<String> = args.opt_value_from_str("--only").map_err(|e| e.to_string())?;
    // Boots every selected scenario with this many CPUs instead of its own
    // counts (for development: `--only smp-stress --cpus 1`).
    let cpus: Option<u32> = args.opt_value_from_str("--cpus").map_err(|e| e.to_string())?;
    if cpus == Some(0) {
        return Err("--cpus must be at least 1".into());
    }
    crate::reject_unused(args)?;
    let started = Instant::now();
    let (mut passed, mut failed) = (0, 0);

    if !no_host {
        println!("== host tests: cargo test --workspace");
        let mut cmd = crate::cargo();
        cmd.current_dir(crate::workspace_root()).args([
            "test",
            "--workspace",
            "--exclude",
            "alux-rt",
            "--exclude",
            "alux-programs",
            "--exclude",
            "alux-freestanding",
            "--exclude",
            "alux-virtio-blk",
        ]);
        match crate::run_checked(&mut cmd) {
            Ok(()) => passed += 1,
            Err(e) => {
                println!("host tests FAILED: {e}");
                failed += 1;
            }
        }
    }

    qemu::ensure_installed()?;
    let artifacts = crate::build(release)?;
    let images = crate::target_dir().join("scenarios");
    let mut runs: Vec<(&Scenario, u32)> = Vec::new();
    for s in SCENARIOS.iter().filter(|s| only.as_deref().is_none_or(|o| o == s.name)) {
        match cpus {
            Some(n) => runs.push((s, n)),
            None => runs.extend(cpu_counts(s.name).iter().map(|&n| (s, n))),
        }
    }
    for (s, cpus) in runs {
        // Every boot gets a fresh disk image.
        let disk = images.join(format!("{}.img", s.name));
        qemu::fresh_disk(&disk)?;
        let boots = if TWO_BOOTS.contains(&s.name) { 2 } else { 1 };
        let mut checked = Ok(());
        let mut outcome = None;
        for boot in 1..=boots {
            let mut line = cmdline(s.name, cpus);
            if boots > 1 {
                line.push_str(&format!(" boot={boot}"));
            }
            let mut opts = Options::new(&artifacts, &line);
            opts.timeout = Duration::from_secs(s.timeout_secs);
            opts.cpus = cpus;
            opts.disk = Some(disk.clone());
            if let Some((_, o)) = DISK_OPTIONS.iter().find(|(n, _)| *n == s.name) {
                opts.disk_options = o.to_string();
            }
            let o = qemu::run(&opts)?;
            checked = check_boot(s.name, cpus, &o, release);
            outcome = Some(o);
            if checked.is_err() {
                if boots > 1 {
                    checked = checked.map_err(|e| format!("boot {boot}: {e}"));
                }
                break;
            }
        }
        let outcome = outcome.expect("at least one boot");
        // A scenario that boots with several counts, or with another than
        // the default, is named with its count.
        let label = if cpu_counts(s.name) == [CPUS] && cpus == CPUS {
            s.name.to_string()
        } else {
            format!("{} ({cpus} CPUs)", s.name)
        };
        if checked.is_ok() {
            passed += 1;
            println!(
                "scenario {:<10} ok    {:>6.1} s  {}",
                label,
                outcome.elapsed.as_secs_f64(),
                s.about
            );
        } else {
            failed += 1;
            let why = checked.err().unwrap_or_default();
            println!("scenario {:<10} FAILED: {}  ({})", label, why, s.about);
            println!("---- last lines of its serial log ----\n{}\n----", tail(&outcome.log, 30));
        }
    }
    if let Some(o) = &only {
        if !SCENARIOS.iter().any(|s| s.name == o) {
            return Err(format!("no scenario named {o}"));
        }
    }
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}
