//! The first task. It reads `scenario=NAME` from the kernel command line
//! (default `demo`), runs that scenario by spawning programs from the boot
//! module, prints `scenario NAME: PASS` or `FAIL`, and exits; the kernel
//! then stops the machine with init's verdict.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alux_abi::syscall::{Fault, TaskEnd};
use alux_abi::{Error, TaskId};
use alux_rt::task::{self, Spawn};
use alux_rt::{println, Start};
use core::time::Duration;

/// Generous: scenarios run under full emulation.
const WAIT: Option<Duration> = Some(Duration::from_secs(120));

struct Init<'a> {
    module: &'a [u8],
}

impl Init<'_> {
    fn spawn_as(
        &self,
        name: &str,
        args: &str,
        uid: u16,
        privileged: bool,
    ) -> Result<TaskId, Error> {
        let image = task::find_file(self.module, name).ok_or(Error::InvalidArgument)?;
        Spawn { image, args: args.as_bytes(), uid, privileged }.start()
    }

    fn spawn(&self, name: &str, args: &str) -> Result<TaskId, String> {
        self.spawn_as(name, args, 1, false).map_err(|e| format!("spawn {} {}: {}", name, args, e))
    }

    fn run(&self, name: &str, args: &str) -> Result<TaskEnd, Error> {
        let t = self.spawn_as(name, args, 1, false)?;
        task::wait(t, WAIT)
    }
}

type Verdict = Result<(), String>;

fn expect(what: &str, got: Result<TaskEnd, Error>, want: TaskEnd) -> Verdict {
    match got {
        Ok(end) if end == want => {
            println!("init: {} ended as expected: {:?}", what, end);
            Ok(())
        }
        other => Err(format!("{}: expected {:?}, got {:?}", what, want, other)),
    }
}

fn ipc_demo(init: &Init<'_>) -> Verdict {
    println!("init: --- the name service ---");
    let names = init.spawn("names", "")?;
    println!("init: --- basic IPC: an echo service with 3 threads, each pushing its own ports ---");
    let echo = init.spawn("ipc", &format!("echo 3 2 ns={}", names.raw()))?;
    let clients: alloc::vec::Vec<TaskId> = ["ada", "bob", "cyd", "dee"]
        .iter()
        .map(|name| init.spawn("ipc", &format!("client-ns {} 3 ns={}", name, names.raw())))
        .collect::<Result<_, _>>()?;
    for (i, c) in clients.into_iter().enumerate() {
        expect(&format!("echo client {}", i), task::wait(c, WAIT), TaskEnd::Exited(0))?;
    }
    println!("init: --- a client with uid 13, which the echo service denies ---");
    let refused = init
        .spawn_as("ipc", &format!("refused {}", echo.raw()), 13, false)
        .map_err(|e| format!("{}", e))?;
    expect("refused client", task::wait(refused, WAIT), TaskEnd::Exited(0))?;
    println!("init: --- a ping-pong pair ---");
    let pong = init.spawn("ipc", "pong")?;
    expect("ping", init.run("ipc", &format!("ping {} 1000", pong.raw())), TaskEnd::Exited(0))?;
    expect("pong", task::wait(pong, WAIT), TaskEnd::Exited(0))?;
    println!("init: --- a service that dies while two clients are connected ---");
    let mortal = init.spawn("ipc", "mortal 3")?;
    let watchers = [
        init.spawn("ipc", &format!("watch {} killed", mortal.raw()))?,
        init.spawn("ipc", &format!("watch {} killed", mortal.raw()))?,
    ];
    // Init is the third client: once told all three are connected, it
    // kills the service.
    let mine =
        alux_rt::ipc::connect(mortal, WAIT).map_err(|e| format!("connect to mortal: {}", e))?;
    mine.wait(WAIT).map_err(|e| format!("wait for mortal: {}", e))?;
    task::kill(mortal).map_err(|e| format!("kill mortal: {}", e))?;
    expect("mortal service", task::wait(mortal, WAIT), TaskEnd::Killed)?;
    for w in watchers {
        expect("watcher", task::wait(w, WAIT), TaskEnd::Exited(0))?;
    }
    task::kill(echo).map_err(|e| format!("kill echo: {}", e))?;
    expect("echo service", task::wait(echo, WAIT), TaskEnd::Killed)?;
    task::kill(names).map_err(|e| format!("kill names: {}", e))?;
    expect("name service", task::wait(names, WAIT), TaskEnd::Killed)?;
    Ok(())
}

fn names_scenario(init: &Init<'_>) -> Verdict {
    let names = init.spawn("names", "")?;
    let r = expect(
        "names test",
        init.run("ipc", &format!("names-test ns={}", names.raw())),
        TaskEnd::Exited(0),
    );
    task::kill(names).map_err(|e| format!("kill names: {}", e))?;
    r
}

fn demo(init: &Init<'_>) -> Verdict {
    threads_demo(init)?;
    ipc_demo(init)?;
    let s = stats()?;
    println!(
        "init: summary: all demo tasks finished; kernel holds {} tasks, {} threads, {} IPC ends, {} frames, {} switches so far",
        s.tasks, s.threads, s.ipc_ends, s.frames_used, s.switches
    );
    Ok(())
}

fn threads_demo(init: &Init<'_>) -> Verdict {
    println!("init: starting three demo tasks; their threads share the CPU by preemption");
    let tasks = [
        init.spawn("demo", "alpha 3 4 2000000")?,
        init.spawn("demo", "beta 2 4 2000000")?,
        init.spawn("demo", "gamma 3 3 2000000")?,
    ];
    for (i, t) in tasks.into_iter().enumerate() {
        expect(&format!("demo task {}", i), task::wait(t, WAIT), TaskEnd::Exited(0))?;
    }
    Ok(())
}

fn preempt(init: &Init<'_>) -> Verdict {
    let spinner = init.spawn("spinner", "")?;
    println!("init: spinner {} spins forever; a worker must still finish", spinner);
    expect("worker", init.run("demo", "worker 2 3 100000"), TaskEnd::Exited(0))?;
    task::kill(spinner).map_err(|e| format!("kill spinner: {}", e))?;
    expect("spinner", task::wait(spinner, WAIT), TaskEnd::Killed)
}

fn fpu(init: &Init<'_>) -> Verdict {
    let spinner = init.spawn("spinner", "")?;
    let r = expect("fpu", init.run("fpu", "2000000"), TaskEnd::Exited(0));
    task::kill(spinner).map_err(|e| format!("kill spinner: {}", e))?;
    r
}

fn faults(init: &Init<'_>) -> Verdict {
    let bystander = init.spawn("demo", "bystander 1 6 100000")?;
    let cases = [
        ("page", Fault::PageFault),
        ("kernel-write", Fault::PageFault),
        ("exec-stack", Fault::PageFault),
        ("non-canonical", Fault::GeneralProtection),
        ("privileged", Fault::GeneralProtection),
        ("breakpoint", Fault::GeneralProtection),
        ("divide", Fault::DivideError),
        ("invalid-opcode", Fault::InvalidOpcode),
        ("direction-flag", Fault::InvalidOpcode),
    ];
    for (kind, fault) in cases {
        match init.run("fault", kind) {
            Ok(TaskEnd::Faulted(f, _)) if f == fault => {
                println!("init: fault {} killed its task: {:?}", kind, f)
            }
            other => return Err(format!("fault {}: expected {:?}, got {:?}", kind, fault, other)),
        }
    }
    expect(
        "DF set across preemption",
        init.run("fault", "direction-flag-spin"),
        TaskEnd::Exited(0),
    )?;
    expect("bystander", task::wait(bystander, WAIT), TaskEnd::Exited(0))
}

fn cpu_state(init: &Init<'_>) -> Verdict {
    let mut untested = None;
    let run_fault = |kind: &str, fault: Fault| match init.run("fault", kind) {
        Ok(TaskEnd::Faulted(f, _)) if f == fault => {
            println!("init: {} killed its task: {:?}", kind, f);
            Ok(())
        }
        other => Err(format!("{}: expected {:?}, got {:?}", kind, fault, other)),
    };
    // CPUID is not privileged: init sees what the kernel saw.
    if core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 2) != 0 {
        for kind in ["sgdt", "sidt", "sldt", "str", "smsw"] {
            run_fault(kind, Fault::GeneralProtection)?;
        }
    } else {
        println!("init: UMIP NOT TESTED: the CPU does not report UMIP, so sgdt, sidt, sldt, str and smsw still work in user mode");
        untested = Some("UMIP is absent on this CPU: its checks did not run");
    }
    run_fault("ldt-selector", Fault::GeneralProtection)?;
    let setter = init.spawn("cpustate", "segs-set 2000")?;
    let checker = init.spawn("cpustate", "segs-check 2000")?;
    expect("segment selectors set in one task", task::wait(setter, WAIT), TaskEnd::Exited(0))?;
    expect("segment selectors of another task", task::wait(checker, WAIT), TaskEnd::Exited(0))?;
    expect(
        "segment selectors of two threads of one task",
        init.run("cpustate", "segs-threads 2000"),
        TaskEnd::Exited(0),
    )?;
    untested.map_or(Ok(()), |why| Err(why.into()))
}

fn hostile(init: &Init<'_>) -> Verdict {
    expect("hostile", init.run("hostile", "20"), TaskEnd::Exited(0))?;
    expect("nop after hostile", init.run("nop", ""), TaskEnd::Exited(0))
}

fn stats() -> Result<alux_abi::syscall::KernelStats, String> {
    alux_rt::sys::kernel_stats().map_err(|e| format!("kernel stats: {}", e))
}

fn leak(init: &Init<'_>, threads: u64, tasks: u64) -> Verdict {
    // No warm-up: the kernel's tables shrink back, so the baseline is the
    // state before any of these tasks or threads existed.
    let before = stats()?;
    println!("init: before: {:?}", before);
    expect("churn", init.run("churn", &format!("{}", threads)), TaskEnd::Exited(0))?;
    for i in 0..tasks {
        match init.run("nop", "") {
            Ok(TaskEnd::Exited(0)) => {}
            other => return Err(format!("nop #{}: {:?}", i, other)),
        }
    }
    println!("init: {} thread and {} task create/exit cycles done", threads, tasks);
    let after = stats()?;
    println!("init: after:  {:?}", after);
    // Init's own heap may have grown meanwhile: compare the kernel's frames
    // without the caller's own.
    let key = |s: &alux_abi::syscall::KernelStats| {
        (s.frames_used - s.caller_frames, s.heap_used, s.tasks, s.threads, s.ipc_ends)
    };
    if key(&before) != key(&after) {
        return Err(String::from("kernel frames, heap or object counts changed"));
    }
    Ok(())
}

fn bad_elf(init: &Init<'_>) -> Verdict {
    let nop = task::find_file(init.module, "nop").ok_or("no nop")?;
    let garbage = [0x42u8; 512];
    let truncated = &nop[..100.min(nop.len())];
    let badelf = task::find_file(init.module, "badelf").ok_or("no badelf in the boot module")?;
    for (what, image) in [("badelf", badelf), ("garbage", &garbage[..]), ("truncated", truncated)] {
        match (Spawn { image, args: b"", uid: 1, privileged: false }).start() {
            Err(Error::BadImage) => println!("init: {} image refused: bad image", what),
            other => return Err(format!("{}: expected BadImage, got {:?}", what, other)),
        }
    }
    expect("nop after bad images", init.run("nop", ""), TaskEnd::Exited(0))
}

fn pingpong(init: &Init<'_>) -> Verdict {
    let pong = init.spawn("ipc", "pong")?;
    expect("ping", init.run("ipc", &format!("ping {} 10000", pong.raw())), TaskEnd::Exited(0))?;
    expect("pong", task::wait(pong, WAIT), TaskEnd::Exited(0))?;
    let pong = init.spawn("ipc", "pong-sr")?;
    expect(
        "ping-sr",
        init.run("ipc", &format!("ping-sr {} 10000", pong.raw())),
        TaskEnd::Exited(0),
    )?;
    expect("pong-sr", task::wait(pong, WAIT), TaskEnd::Exited(0))
}

fn fairness(init: &Init<'_>) -> Verdict {
    let fan = init.spawn("ipc", "fan 200 3")?;
    let clients: alloc::vec::Vec<TaskId> = (0..4)
        .map(|_| init.spawn("ipc", &format!("fanclient {} 50 3", fan.raw())))
        .collect::<Result<_, _>>()?;
    for c in clients {
        expect("fan client", task::wait(c, WAIT), TaskEnd::Exited(0))?;
    }
    expect("fan server", task::wait(fan, WAIT), TaskEnd::Exited(0))
}

fn with_holder(init: &Init<'_>, role: &str) -> Verdict {
    let holder = init.spawn("ipc", "holder")?;
    let r =
        expect(role, init.run("ipc", &format!("{} {}", role, holder.raw())), TaskEnd::Exited(0));
    task::kill(holder).map_err(|e| format!("kill holder: {}", e))?;
    r
}

fn closes(init: &Init<'_>) -> Verdict {
    let closer = init.spawn("ipc", "closer")?;
    let exiter = init.spawn("ipc", "exiter")?;
    expect(
        "closes",
        init.run("ipc", &format!("closes {} {}", closer.raw(), exiter.raw())),
        TaskEnd::Exited(0),
    )?;
    expect("closer", task::wait(closer, WAIT), TaskEnd::Killed)?;
    expect("exiter", task::wait(exiter, WAIT), TaskEnd::Exited(0))
}

fn handles(init: &Init<'_>) -> Verdict {
    with_holder(init, "handles")?;
    // Privileged calls work for init.
    let end = alux_rt::ipc::open_kernel_end(alux_abi::ipc::kernel_end_kind::PAGE_FAULTS)
        .map_err(|e| format!("kernel end for init: {}", e))?;
    let info = end.info().map_err(|e| format!("kernel end info: {}", e))?;
    println!(
        "init: kernel end open: connection {} with peer {}",
        info.conn_id,
        info.peer_task_id()
    );
    let ends = alux_rt::ipc::query_connection(info.conn_id).map_err(|e| format!("query: {}", e))?;
    println!("init: connection query: {:?}", ends);
    if ends.client_task != alux_rt::sys::self_info().map_err(|e| format!("{}", e))?.0.raw() {
        return Err("connection query named the wrong client".into());
    }
    Ok(())
}

fn flood(init: &Init<'_>) -> Verdict {
    // Baseline after one ping-pong, so its one-time growth is counted.
    pingpong_n(init, 10)?;
    let before = stats()?;
    let echo = init.spawn("ipc", "echo 1 64")?;
    let pong = init.spawn("ipc", "pong")?;
    let ping = init.spawn("ipc", &format!("ping {} 2000", pong.raw()))?;
    let flooders: alloc::vec::Vec<TaskId> = (0..2)
        .map(|_| init.spawn("ipc", &format!("flood {}", echo.raw())))
        .collect::<Result<_, _>>()?;
    for f in flooders {
        expect("flooder", task::wait(f, WAIT), TaskEnd::Exited(0))?;
    }
    expect("ping during the flood", task::wait(ping, WAIT), TaskEnd::Exited(0))?;
    expect("pong during the flood", task::wait(pong, WAIT), TaskEnd::Exited(0))?;
    task::kill(echo).map_err(|e| format!("kill echo: {}", e))?;
    expect("echo", task::wait(echo, WAIT), TaskEnd::Killed)?;
    let after = stats()?;
    println!("init: before: {:?}\ninit: after:  {:?}", before, after);
    if (
        before.frames_used - before.caller_frames,
        before.heap_used,
        before.ipc_ends,
        before.tasks,
        before.threads,
    ) != (
        after.frames_used - after.caller_frames,
        after.heap_used,
        after.ipc_ends,
        after.tasks,
        after.threads,
    ) {
        return Err("kernel memory or IPC objects not back where they started".into());
    }
    Ok(())
}

fn pingpong_n(init: &Init<'_>, n: u64) -> Verdict {
    let pong = init.spawn("ipc", "pong")?;
    expect("ping", init.run("ipc", &format!("ping {} {}", pong.raw(), n)), TaskEnd::Exited(0))?;
    expect("pong", task::wait(pong, WAIT), TaskEnd::Exited(0))
}

fn console(init: &Init<'_>) -> Verdict {
    // Lines that imitate the kernel's: `cargo xtask test` checks the log.
    expect("forger", init.run("console", "forge"), TaskEnd::Exited(0))?;
    // A sleeper wakes on time while another task prints 4 KiB at a time.
    // The bound is relative: the median lateness must stay well below the
    // time the console needs for one 4 KiB print (the printer's average),
    // which is what a print holding the CPU would add.
    let printer = init.spawn("console", "printer 48")?;
    let sleeper = init.spawn("console", "sleeper 30")?;
    let late = match task::wait(sleeper, WAIT) {
        Ok(TaskEnd::Exited(ns)) => ns,
        other => return Err(format!("sleeper: {:?}", other)),
    };
    let per_print = match task::wait(printer, WAIT) {
        Ok(TaskEnd::Exited(ns)) if ns != u64::MAX => ns,
        other => return Err(format!("printer: {:?}", other)),
    };
    println!(
        "init: sleeper median lateness {} us; one 4 KiB print takes the console {} us",
        late / 1000,
        per_print / 1000
    );
    if late.saturating_mul(4) >= per_print {
        return Err(format!(
            "a sleeper woke {} us late while the console printed ({} us per print)",
            late / 1000,
            per_print / 1000
        ));
    }
    Ok(())
}

fn wide(init: &Init<'_>) -> Verdict {
    let t = init.spawn_as("wide", "", 1, true).map_err(|e| format!("spawn wide: {}", e))?;
    expect("wide", task::wait(t, WAIT), TaskEnd::Exited(0))
}

fn bench(init: &Init<'_>) -> Verdict {
    expect("local benchmarks", init.run("bench", "local"), TaskEnd::Exited(0))?;
    let server = init.spawn("bench", "server")?;
    expect(
        "IPC benchmarks",
        init.run("bench", &format!("client {}", server.raw())),
        TaskEnd::Exited(0),
    )?;
    expect("bench server", task::wait(server, WAIT), TaskEnd::Exited(0))
}

/// The name service and a virtio-blk driver registered with it.
struct Blk {
    names: TaskId,
    driver: TaskId,
}

impl Blk {
    fn start(init: &Init<'_>) -> Result<Blk, String> {
        let names = init.spawn("names", "")?;
        let driver = blk_driver(init, names)?;
        Ok(Blk { names, driver })
    }

    /// Runs `blk ARGS ns=ID`, privileged or not, and expects exit code 0.
    fn client(&self, init: &Init<'_>, args: &str, privileged: bool) -> Verdict {
        let what = format!("blk {}", args);
        let t = init
            .spawn_as("blk", &format!("{} ns={}", args, self.names.raw()), 1, privileged)
            .map_err(|e| format!("spawn {}: {}", what, e))?;
        expect(&what, task::wait(t, WAIT), TaskEnd::Exited(0))
    }

    fn kill_driver(&self) -> Verdict {
        task::kill(self.driver).map_err(|e| format!("kill virtio-blk: {}", e))?;
        expect("virtio-blk", task::wait(self.driver, WAIT), TaskEnd::Killed)?;
        // Let the name service see the registration go.
        alux_rt::time::sleep(Duration::from_millis(100));
        Ok(())
    }

    fn stop(self) -> Verdict {
        self.kill_driver()?;
        task::kill(self.names).map_err(|e| format!("kill names: {}", e))?;
        expect("name service", task::wait(self.names, WAIT), TaskEnd::Killed)
    }
}

/// The disk benchmarks: a client task through the driver to the disk.
fn blk_bench(init: &Init<'_>) -> Verdict {
    let blk = Blk::start(init)?;
    blk.client(init, "bench", true)?;
    blk.stop()
}

fn blk_driver(init: &Init<'_>, names: TaskId) -> Result<TaskId, String> {
    init.spawn_as("virtio-blk", &format!("ns={}", names.raw()), 1, true)
        .map_err(|e| format!("spawn virtio-blk: {}", e))
}

fn blk_patterns(init: &Init<'_>) -> Verdict {
    let blk = Blk::start(init)?;
    let ns = blk.names.raw();
    let workers: alloc::vec::Vec<TaskId> = (0..3)
        .map(|k| {
            init.spawn_as("blk", &format!("worker {} 4 12 ns={}", k, ns), 1, true)
                .map_err(|e| format!("spawn worker: {}", e))
        })
        .collect::<Result<_, _>>()?;
    for (k, w) in workers.into_iter().enumerate() {
        expect(&format!("blk worker {}", k), task::wait(w, WAIT), TaskEnd::Exited(0))?;
    }
    blk.stop()
}

fn blk_persist(init: &Init<'_>, boot: u64) -> Verdict {
    let blk = Blk::start(init)?;
    match boot {
        1 => blk.client(init, "persist-write", true)?,
        2 => blk.client(init, "persist-read", true)?,
        other => return Err(format!("boot={} (want 1 or 2)", other)),
    }
    blk.stop()
}

fn blk_bad(init: &Init<'_>) -> Verdict {
    let blk = Blk::start(init)?;
    blk.client(init, "bad", true)?;
    blk.client(init, "unpriv", false)?;
    println!("init: the driver still serves a privileged client");
    blk.client(init, "worker 1 2 4", true)?;
    blk.stop()
}

fn blk_kill(init: &Init<'_>) -> Verdict {
    let mut blk = Blk::start(init)?;
    // A first round warms up what the kernel and the name service keep.
    blk.client(init, "worker 1 2 2", true)?;
    blk.kill_driver()?;
    let before = stats()?;
    blk.driver = blk_driver(init, blk.names)?;
    // A client killed with requests in flight: its pinned buffers stay
    // until the device is done; the driver goes on serving others.
    let victim = init
        .spawn_as("blk", &format!("hammer 4 ns={}", blk.names.raw()), 1, true)
        .map_err(|e| format!("spawn hammer: {}", e))?;
    alux_rt::time::sleep(Duration::from_millis(500));
    println!("init: killing a client with requests in flight");
    task::kill(victim).map_err(|e| format!("kill hammer: {}", e))?;
    expect("killed client", task::wait(victim, WAIT), TaskEnd::Killed)?;
    blk.client(init, "worker 3 2 4", true)?;
    let hammer = init
        .spawn_as("blk", &format!("hammer 4 ns={}", blk.names.raw()), 1, true)
        .map_err(|e| format!("spawn hammer: {}", e))?;
    alux_rt::time::sleep(Duration::from_millis(1500));
    println!("init: killing the driver with requests in flight");
    blk.kill_driver()?;
    expect("hammer", task::wait(hammer, WAIT), TaskEnd::Exited(0))?;
    // The device finishes what it had (and asserts its line), but the
    // line is masked with its end closed: nothing is delivered.
    let i0 = stats()?.interrupts;
    alux_rt::time::sleep(Duration::from_millis(500));
    let i1 = stats()?.interrupts;
    if i0 != i1 {
        return Err(format!("{} interrupts delivered with no end open", i1 - i0));
    }
    println!("init: no interrupt delivered after the driver died");
    let after = stats()?;
    println!("init: before: {:?}", before);
    println!("init: after:  {:?}", after);
    if (before.frames_used, before.heap_used, before.tasks, before.threads, before.ipc_ends)
        != (after.frames_used, after.heap_used, after.tasks, after.threads, after.ipc_ends)
    {
        return Err(String::from("kernel frames, heap or object counts changed"));
    }
    println!("init: a restarted driver serves again");
    blk.driver = blk_driver(init, blk.names)?;
    blk.client(init, "worker 2 2 4", true)?;
    blk.stop()
}

fn blk_irq(init: &Init<'_>) -> Verdict {
    let bar_and_line = match init.spawn_as("blk", "probe", 1, true).map(|t| task::wait(t, WAIT)) {
        Ok(Ok(TaskEnd::Exited(v))) if v > 1 => v,
        other => return Err(format!("blk probe: {:?}", other)),
    };
    let blk = Blk::start(init)?;
    blk.client(init, "irq 40", true)?;
    blk.client(init, &format!("hostile-dev {}", bar_and_line), true)?;
    blk.client(init, "unpriv-calls", false)?;
    blk.client(init, "worker 1 1 2", true)?;
    blk.stop()
}

fn main(start: &Start) -> u64 {
    let scenario = start.arg_words().find_map(|w| w.strip_prefix("scenario=")).unwrap_or("demo");
    println!("init: task {} running scenario {}", start.task, scenario);
    let init = Init { module: start.boot_module };
    let verdict = match scenario {
        "demo" => demo(&init),
        // Boots and stops: `cargo xtask` uses it to probe KVM.
        "boot" => Ok(()),
        "preempt" => preempt(&init),
        "fpu" => fpu(&init),
        "faults" => faults(&init),
        // The kernel's W^X self-test (`selftest=wx`) ran before init:
        // `cargo xtask test` checks its lines; init only shows the system
        // still works after it.
        "wx" => expect("nop after the W^X self-test", init.run("nop", ""), TaskEnd::Exited(0)),
        "cpu-state" => cpu_state(&init),
        "hostile" => hostile(&init),
        "leak" => leak(&init, 10_000, 1_000),
        "bad-elf" => bad_elf(&init),
        "ipc-pingpong" => pingpong(&init),
        "ipc-fairness" => fairness(&init),
        "ipc-timeouts" => with_holder(&init, "timeouts"),
        "ipc-closes" => closes(&init),
        "ipc-handles" => handles(&init),
        "ipc-flood" => flood(&init),
        "ipc-names" => names_scenario(&init),
        "console" => console(&init),
        "ipc-wide" => wide(&init),
        "bench" => bench(&init).and_then(|()| blk_bench(&init)),
        "blk-patterns" => blk_patterns(&init),
        "blk-persist" => blk_persist(&init, start.arg_value("boot").unwrap_or(0)),
        "blk-bad" => blk_bad(&init),
        "blk-kill" => blk_kill(&init),
        "blk-irq" => blk_irq(&init),
        other => Err(format!("unknown scenario {}", other)),
    };
    match verdict {
        Ok(()) => {
            println!("scenario {}: PASS", scenario);
            0
        }
        Err(why) => {
            println!("scenario {}: FAIL: {}", scenario, why);
            1
        }
    }
}
alux_rt::entry!(main);
