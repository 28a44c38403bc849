//! `cargo xtask test`: the host tests, then every QEMU scenario, each in a
//! fresh boot under a timeout. A scenario passes only if init printed
//! `scenario NAME: PASS` and the kernel stopped QEMU with its success code;
//! a panic, fault, hang or other exit fails it and shows the log's tail.

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

/// Every QEMU scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario { name: "demo", about: "demo tasks with several threads each", timeout_secs: 120 },
    Scenario {
        name: "preempt",
        about: "a task spinning forever does not stop another",
        timeout_secs: 120,
    },
    Scenario {
        name: "fpu",
        about: "FPU/SSE state of two threads survives preemption",
        timeout_secs: 180,
    },
    Scenario { name: "faults", about: "each fault kind kills only its task", timeout_secs: 120 },
    Scenario {
        name: "hostile",
        about: "every syscall with garbage gets errors",
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
        about: "name service: register, look up, collide, release",
        timeout_secs: 120,
    },
];

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs the test suite; `Ok(true)` if everything passed.
pub fn cmd_test(mut args: pico_args::Arguments) -> Result<bool, String> {
    let release = args.contains("--release");
    let no_host = args.contains("--no-host");
    let only: Option<String> = args.opt_value_from_str("--only").map_err(|e| e.to_string())?;
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
    for s in SCENARIOS.iter().filter(|s| only.as_deref().is_none_or(|o| o == s.name)) {
        let mut opts = Options::new(&artifacts, &format!("scenario={}", s.name));
        opts.timeout = Duration::from_secs(s.timeout_secs);
        let outcome = qemu::run(&opts)?;
        let marker = format!("scenario {}: PASS", s.name);
        let ok = outcome.success() && outcome.log.lines().any(|l| l.trim() == marker);
        if ok {
            passed += 1;
            println!(
                "scenario {:<10} ok    {:>6.1} s  {}",
                s.name,
                outcome.elapsed.as_secs_f64(),
                s.about
            );
        } else {
            failed += 1;
            println!("scenario {:<10} FAILED: {}  ({})", s.name, outcome.describe(), s.about);
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
