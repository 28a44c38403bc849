//! Finding (or installing) QEMU and running the kernel under it with a
//! timeout, capturing the serial console.

use crate::Artifacts;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const QEMU: &str = "qemu-system-x86_64";

/// QEMU's exit status when the kernel reports success through
/// `isa-debug-exit` (`alux_abi::syscall::SHUTDOWN_SUCCESS`).
pub const EXIT_SUCCESS: i32 = (0x10 << 1) | 1;
/// QEMU's exit status for a kernel-reported failure.
pub const EXIT_FAILURE: i32 = (0x11 << 1) | 1;

fn have_qemu() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure QEMU is there: installs Debian's package when running as root
/// with apt-get, else says exactly what to run.
pub fn ensure_installed() -> Result<(), String> {
    if have_qemu() {
        return Ok(());
    }
    let install = "apt-get update && apt-get install -y qemu-system-x86";
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    let has_apt = Command::new("apt-get").arg("--version").stdout(Stdio::null()).status().is_ok();
    if is_root && has_apt {
        eprintln!("xtask: {QEMU} not found; installing Debian's qemu-system-x86");
        let ok = Command::new("sh")
            .args(["-c", &format!("{install} >/dev/null")])
            .status()
            .is_ok_and(|s| s.success());
        if ok && have_qemu() {
            return Ok(());
        }
    }
    Err(format!("{QEMU} is missing; install it with:\n    sudo sh -c '{install}'"))
}

/// How to run QEMU.
pub struct Options {
    /// Kernel ELF.
    pub kernel: PathBuf,
    /// Boot module.
    pub initrd: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Wait for gdb on :1234.
    pub gdb: bool,
    /// Try KVM.
    pub kvm: bool,
    /// Count instructions: `-icount shift=0` (the guest TSC counts them).
    /// TCG only: ignored when KVM is used, kept when KVM falls back to TCG.
    pub icount: bool,
    /// Print the serial console as it comes.
    pub echo: bool,
    /// The raw image attached as a virtio-blk disk (with `-nic none`, so
    /// the disk's interrupt line is not shared with the default NIC).
    pub disk: Option<PathBuf>,
    /// Extra `-drive` options for the disk (e.g. a throttle).
    pub disk_options: String,
    /// Extra QEMU arguments.
    pub extra: Vec<String>,
    /// CPUs (`-smp`).
    pub cpus: u32,
}

impl Options {
    /// Defaults for a built system and a command line.
    pub fn new(a: &Artifacts, cmdline: &str) -> Self {
        Options {
            kernel: a.kernel.clone(),
            initrd: a.initrd.clone(),
            cmdline: cmdline.into(),
            timeout: Duration::from_secs(300),
            gdb: false,
            kvm: false,
            icount: false,
            echo: false,
            disk: None,
            disk_options: String::new(),
            cpus: 1,
            extra: Vec::new(),
        }
    }
}

/// Size of a scenario's fresh disk image (sparse).
pub const DISK_SIZE: u64 = 256 << 20;

/// Size of `cargo xtask run`'s disk (sparse, so it costs only what is
/// written): twice the guest's RAM, so memd's swap on it lets a program use
/// more memory than the guest has.
pub const RUN_DISK_SIZE: u64 = 1 << 30;

/// Makes sure `path` is a raw image of at least `RUN_DISK_SIZE` bytes:
/// created sparse if it is missing, grown (sparse) if it is smaller, its
/// data kept.
pub fn ensure_disk(path: &std::path::Path) -> Result<(), String> {
    if !path.exists() {
        fresh_disk(path)?;
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
    if len < RUN_DISK_SIZE {
        f.set_len(RUN_DISK_SIZE).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Creates (or replaces) `path` with an empty sparse image.
pub fn fresh_disk(path: &std::path::Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(DISK_SIZE).map_err(|e| format!("{}: {e}", path.display()))
}

/// How a run ended.
pub enum Ending {
    /// QEMU exited with this status.
    Exited(i32),
    /// QEMU was killed by a signal.
    Signalled,
    /// The timeout passed.
    TimedOut,
}

/// A finished run.
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// Everything the serial console printed.
    pub log: String,
    /// How long it took.
    pub elapsed: Duration,
    /// Whether KVM was used.
    pub used_kvm: bool,
    /// Whether TCG ran with `-icount shift=0` (the guest TSC counted
    /// instructions). Never under KVM.
    pub icount: bool,
}

impl Outcome {
    /// The kernel reported success.
    pub fn success(&self) -> bool {
        matches!(self.ending, Ending::Exited(EXIT_SUCCESS))
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        let how = match self.ending {
            Ending::Exited(EXIT_SUCCESS) => "kernel reported success".to_string(),
            Ending::Exited(EXIT_FAILURE) => "kernel reported failure".to_string(),
            Ending::Exited(0) => "QEMU exited with status 0 (reset: triple fault?)".to_string(),
            Ending::Exited(c) => format!("QEMU exited with status {c}"),
            Ending::Signalled => "QEMU was killed".to_string(),
            Ending::TimedOut => "timed out (hang?)".to_string(),
        };
        format!(
            "{how} after {:.1} s{}",
            self.elapsed.as_secs_f64(),
            if self.used_kvm { " (KVM)" } else { "" }
        )
    }
}

/// Whether KVM can really run this kernel here: `/dev/kvm` must exist and
/// a real boot (init's `boot` scenario, which only says PASS) must succeed.
/// Nested or restricted hosts often open `/dev/kvm` and then fail inside the
/// guest, so nothing less than a boot is trusted.
pub fn kvm_works(opts: &Options) -> bool {
    if !std::path::Path::new("/dev/kvm").exists() {
        return false;
    }
    let probe = Options {
        kernel: opts.kernel.clone(),
        initrd: opts.initrd.clone(),
        cmdline: "scenario=boot".into(),
        timeout: Duration::from_secs(20),
        gdb: false,
        kvm: true,
        icount: false,
        echo: false,
        disk: None,
        disk_options: String::new(),
        extra: Vec::new(),
        cpus: opts.cpus,
    };
    matches!(launch(&probe, true), Ok(o) if o.success() && init_said(&o.log, "scenario boot: PASS"))
}

/// A line a task printed, split into its task ID and its text: the kernel
/// starts every line a task prints with `[task ID] `, and its own lines
/// never do, so a task cannot print a line that passes for the kernel's.
pub fn task_line(line: &str) -> Option<(&str, &str)> {
    line.strip_prefix("[task ")?.split_once("] ")
}

/// Init's task ID, from the kernel's `[kernel] init is task ID; ...` line.
pub fn init_task(log: &str) -> Option<&str> {
    log.lines().find_map(|l| l.strip_prefix("[kernel] init is task ")?.split(';').next())
}

/// Whether init (and not another task) printed `text` as a whole line.
pub fn init_said(log: &str, text: &str) -> bool {
    let Some(init) = init_task(log) else { return false };
    log.lines().filter_map(|l| task_line(l.trim_end())).any(|(id, t)| id == init && t == text)
}

/// Boots the kernel and waits for QEMU to exit or the timeout. With
/// `opts.kvm`, KVM is used only if a probe boot under it succeeds.
pub fn run(opts: &Options) -> Result<Outcome, String> {
    let used_kvm = opts.kvm && kvm_works(opts);
    if opts.kvm && !used_kvm {
        eprintln!("xtask: KVM does not work here (a probe boot failed); using TCG");
    }
    launch(opts, used_kvm)
}

fn launch(opts: &Options, used_kvm: bool) -> Result<Outcome, String> {
    let mut cmd = Command::new(QEMU);
    let smp = opts.cpus.to_string();
    cmd.args(["-m", "512M", "-smp", &smp, "-no-reboot", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(&opts.kernel)
        .arg("-initrd")
        .arg(&opts.initrd)
        .args(["-append", &opts.cmdline]);
    if used_kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "max"]);
        if opts.icount {
            cmd.args(["-icount", "shift=0"]);
        }
    }
    if let Some(disk) = &opts.disk {
        let mut drive = format!("file={},if=none,format=raw,id=d0", disk.display());
        if !opts.disk_options.is_empty() {
            drive.push(',');
            drive.push_str(&opts.disk_options);
        }
        cmd.args(["-drive", &drive, "-device", "virtio-blk-pci,drive=d0", "-nic", "none"]);
    }
    if opts.gdb {
        eprintln!("xtask: waiting for gdb: target remote localhost:1234");
        cmd.args(["-s", "-S"]);
    }
    cmd.args(&opts.extra);
    // A KVM probe's failures are expected; keep them off the terminal.
    let stderr = if used_kvm && !opts.echo && opts.cmdline == "scenario=boot" {
        Stdio::null()
    } else {
        Stdio::inherit()
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let echo = opts.echo;
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line).replace('\r', "");
            if echo {
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
            log.push_str(&text);
            line.clear();
        }
        let _ = tx.send(log);
    });
    let ending = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break match status.code() {
                Some(c) => Ending::Exited(c),
                None => Ending::Signalled,
            };
        }
        if !opts.gdb && start.elapsed() > opts.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break Ending::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let log = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let _ = reader.join();
    Ok(Outcome { ending, log, elapsed, used_kvm, icount: !used_kvm && opts.icount })
}
