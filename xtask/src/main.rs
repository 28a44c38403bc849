//! `cargo xtask`: the one entry point to build, run, test and benchmark
//! alux. It builds the kernel and the user programs for the freestanding
//! target, packs the programs into the boot module, and drives QEMU.

mod bench;
mod qemu;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

const TARGET: &str = "x86_64-unknown-linux-gnu";

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  build                 build the kernel and the boot module
  run                   build, then boot alux in QEMU with the serial console here
  test                  host tests (cargo test), then every QEMU scenario
  bench                 IPC, disk, paging and SMP benchmarks under QEMU (guest instructions)
  lint                  rustfmt check and clippy (host crates, kernel and user programs)
  help                  this text

Options (run):
  --release             build the kernel with optimisations
  --scenario NAME       scenario for init to run (default: demo)
  --timeout SECONDS     stop QEMU after this long (default: 300)
  --cpus N              CPUs, passed to QEMU as -smp N (default: 2)
  --gdb                 wait for a debugger on localhost:1234 before booting
  --kvm                 use KVM if it works (falls back to TCG otherwise)
  -- ARGS...            extra arguments passed to QEMU
  (run attaches target/disk.img, a sparse 1 GiB raw image created on
  first use and kept, as a virtio-blk disk: memd swaps to it)

Options (bench):
  --debug               benchmark the debug kernel
  --kvm                 TSC cycles under KVM if a probe boot works there; else TCG with
                        -icount (instructions), labelled so in the table and bench.json
  --baseline FILE       print each median next to the one in FILE (a bench.json
                        an earlier run wrote; copy target/bench.json away first) and
                        their ratio
  --no-smp              only the first boot (1 CPU): skip the SMP figures, which boot
                        scenario=bench-smp with 1, 2 and 4 CPUs

Options (test):
  --release             test the optimised kernel
  --only NAME           run only this QEMU scenario (with each of its CPU counts)
  --cpus N              boot the selected scenarios with N CPUs instead of their own
                        counts (most boot with 2; smp with 4; smp-stress,
                        smp-shootdown and smp-kill once with 2 and once with 4)
  --no-host             skip the host tests
";

/// What a build produced.
pub struct Artifacts {
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// The boot module (tar of the user programs).
    pub initrd: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run_checked(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("cannot run {:?}: {}", cmd.get_program(), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed with {}", cmd.get_program(), status))
    }
}

/// The user programs packed into the boot module.
pub const PROGRAMS: &[&str] = &[
    "init", "demo", "spinner", "fpu", "fault", "hostile", "churn", "nop", "ipc", "bench", "names",
    "console", "wide", "cpustate", "pools", "memtest", "blk", "shmtest", "smptest",
];

/// The drivers and services packed into the boot module: each is its own
/// package under `user/drivers/` or `user/services/`, built like the
/// programs; `(package, binary)`.
pub const DRIVERS: &[(&str, &str)] = &[("alux-virtio-blk", "virtio-blk"), ("alux-memd", "memd")];

/// Builds everything; the kernel in release mode if asked, the user
/// programs always optimised (they run under full emulation).
pub fn build(release: bool) -> Result<Artifacts, String> {
    let root = workspace_root();
    let mut cmd = cargo();
    cmd.current_dir(&root).args([
        "build",
        "--quiet",
        "--package",
        "alux-kernel",
        "--bin",
        "alux-kernel",
        "--features",
        "freestanding",
        "--target",
        TARGET,
    ]);
    if release {
        cmd.arg("--release");
    }
    run_checked(&mut cmd)?;
    let mut cmd = cargo();
    cmd.current_dir(&root).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "alux-programs",
        "--target",
        TARGET,
    ]);
    for (package, _) in DRIVERS {
        cmd.args(["--package", package]);
    }
    run_checked(&mut cmd)?;

    let out = target_dir().join(TARGET);
    let kernel = out.join(if release { "release" } else { "debug" }).join("alux-kernel");
    let initrd = out.join("initrd.tar");
    pack_initrd(&out.join("release"), &initrd)?;
    Ok(Artifacts { kernel, initrd })
}

/// A file that is not a loadable ELF, for the malformed-image scenario: a
/// valid ELF header claiming a foreign machine and a program header table
/// past the end of the file.
fn malformed_elf() -> Vec<u8> {
    let mut v = vec![0u8; 64];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2; // 64-bit
    v[5] = 1; // little-endian
    v[6] = 1; // version
    v[16] = 2; // ET_EXEC
    v[18] = 0x28; // EM_ARM
    v[20] = 1;
    v[32..40].copy_from_slice(&4096u64.to_le_bytes()); // phoff past the end
    v[52] = 64;
    v[54] = 56;
    v[56] = 3; // three program headers
    v
}

fn pack_initrd(programs: &Path, initrd: &Path) -> Result<(), String> {
    let file = std::fs::File::create(initrd).map_err(|e| format!("{}: {}", initrd.display(), e))?;
    let mut tar = tar::Builder::new(file);
    let mut add = |name: &str, data: &[u8]| -> Result<(), String> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, name, data).map_err(|e| format!("initrd: {}", e))
    };
    for p in PROGRAMS.iter().chain(DRIVERS.iter().map(|(_, bin)| bin)) {
        let path = programs.join(p);
        let data = std::fs::read(&path).map_err(|e| format!("{}: {}", path.display(), e))?;
        add(p, &data)?;
    }
    add("badelf", &malformed_elf())?;
    tar.into_inner().map_err(|e| format!("initrd: {}", e))?;
    Ok(())
}

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    let command = args.subcommand().ok().flatten().unwrap_or_else(|| "help".into());
    let result = match command.as_str() {
        "build" => cmd_build(args),
        "run" => cmd_run(args),
        "test" => scenarios::cmd_test(args),
        "bench" => bench::cmd_bench(args),
        "lint" => cmd_lint(args),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(true)
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn reject_unused(args: pico_args::Arguments) -> Result<(), String> {
    let rest = args.finish();
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected arguments: {rest:?}\n\n{HELP}"))
    }
}

fn cmd_lint(args: pico_args::Arguments) -> Result<bool, String> {
    reject_unused(args)?;
    let root = workspace_root();
    run_checked(cargo().current_dir(&root).args(["fmt", "--all", "--", "--check"]))?;
    run_checked(cargo().current_dir(&root).args([
        "clippy",
        "--quiet",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_checked(cargo().current_dir(&root).args([
        "clippy",
        "--quiet",
        "--package",
        "alux-kernel",
        "--features",
        "freestanding",
        "--package",
        "alux-rt",
        "--package",
        "alux-ring",
        "--package",
        "alux-programs",
        "--package",
        "alux-pci",
        "--package",
        "alux-blk-proto",
        "--package",
        "alux-memd",
        "--package",
        "alux-virtq",
        "--package",
        "alux-virtio-pci",
        "--package",
        "alux-virtio-blk",
        "--target",
        TARGET,
        "--",
        "-D",
        "warnings",
    ]))?;
    println!("lint: rustfmt and clippy clean");
    Ok(true)
}

fn cmd_build(mut args: pico_args::Arguments) -> Result<bool, String> {
    let release = args.contains("--release");
    reject_unused(args)?;
    let a = build(release)?;
    println!("kernel: {}\ninitrd: {}", a.kernel.display(), a.initrd.display());
    Ok(true)
}

fn cmd_run(mut args: pico_args::Arguments) -> Result<bool, String> {
    let release = args.contains("--release");
    let gdb = args.contains("--gdb");
    let kvm = args.contains("--kvm");
    let scenario: String =
        args.opt_value_from_str("--scenario").map_err(|e| e.to_string())?.unwrap_or("demo".into());
    let timeout: u64 =
        args.opt_value_from_str("--timeout").map_err(|e| e.to_string())?.unwrap_or(300);
    let cpus: u32 = args.opt_value_from_str("--cpus").map_err(|e| e.to_string())?.unwrap_or(2);
    let raw = args.finish();
    let extra: Vec<String> = match raw.iter().position(|a| a == "--") {
        Some(0) => raw[1..].iter().map(|s| s.to_string_lossy().into_owned()).collect(),
        None if raw.is_empty() => Vec::new(),
        _ => return Err(format!("unexpected arguments: {raw:?}\n\n{HELP}")),
    };
    qemu::ensure_installed()?;
    let a = build(release)?;
    let mut opts = qemu::Options::new(&a, &scenarios::cmdline(&scenario, cpus));
    opts.gdb = gdb;
    opts.kvm = kvm;
    let disk = target_dir().join("disk.img");
    qemu::ensure_disk(&disk)?;
    opts.disk = Some(disk);
    opts.extra = extra;
    opts.timeout = Duration::from_secs(timeout);
    opts.cpus = cpus;
    opts.echo = true;
    let outcome = qemu::run(&opts)?;
    println!("\nxtask: {}", outcome.describe());
    Ok(outcome.success())
}
