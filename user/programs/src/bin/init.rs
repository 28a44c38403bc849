//! The first task. It reads `scenario=NAME` from the kernel command line
//! (default `demo`), runs that scenario by spawning programs from the boot
//! module, prints `scenario NAME: PASS` or `FAIL`, and exits; the kernel
//! then stops the machine with init's verdict.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alux_abi::ipc::Events;
use alux_abi::syscall::{Fault, TaskEnd};
use alux_abi::{Error, TaskId};
use alux_rt::ipc::{Connection, Port};
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
        Spawn { image, args: args.as_bytes(), uid, privileged, quota_pages: 0 }.start()
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
    println!(
        "init: --- memd: a task uses four times memd's pool; the rest goes to swap on the disk ---"
    );
    expect("64 MiB through a 16 MiB pool", init.run("memtest", "touch 64 7"), TaskEnd::Exited(0))?;
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
    // Threads that only yield take their turns in order, the spinner among
    // them: a yield never lets a thread run twice before another ready one.
    expect("yielders", init.run("demo", "yield 4 200"), TaskEnd::Exited(0))?;
    task::kill(spinner).map_err(|e| format!("kill spinner: {}", e))?;
    expect("spinner", task::wait(spinner, WAIT), TaskEnd::Killed)
}

fn fpu(init: &Init<'_>) -> Verdict {
    let spinner = init.spawn("spinner", "")?;
    let r = fpu_paths(init);
    task::kill(spinner).map_err(|e| format!("kill spinner: {}", e))?;
    r
}

/// Every path back to user mode keeps a thread's vector registers: across
/// preemption (long computations), system call returns with and without
/// a switch, interrupt returns, `SendReceive` hand-offs to another task's
/// thread, and other tasks dying of faults with their registers full.
fn fpu_paths(init: &Init<'_>) -> Verdict {
    expect("fpu", init.run("fpu", "2000000"), TaskEnd::Exited(0))?;
    let calls = init.spawn("fpu", "calls 3000")?;
    let server = init.spawn("fpu", "serve")?;
    let client = init.spawn("fpu", &format!("client {} 3000", server.raw()))?;
    for _ in 0..10 {
        match init.run("fpu", "fault") {
            Ok(TaskEnd::Faulted(Fault::PageFault, 0)) => {}
            other => return Err(format!("fpu fault: expected a page fault at 0, got {:?}", other)),
        }
    }
    expect("fpu calls", task::wait(calls, WAIT), TaskEnd::Exited(0))?;
    expect("fpu client", task::wait(client, WAIT), TaskEnd::Exited(0))?;
    expect("fpu serve", task::wait(server, WAIT), TaskEnd::Exited(0))
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

/// Starts the name service, the disk driver if `swap` (memd pages to the
/// disk through it), and memd (all privileged), and waits until memd is
/// the pager (it registers `memd` once attached): every unprivileged task
/// spawned after this is paged by memd. Returns the name service.
fn start_memd(init: &Init<'_>, swap: bool, args: &str) -> Result<TaskId, String> {
    // System services: privileged, so their ends and memory come from the
    // reserve, not from the unprivileged uids' shares the scenarios fill.
    let names = init.spawn_as("names", "", 0, true).map_err(|e| format!("spawn names: {}", e))?;
    if swap {
        // Without a disk the driver ends at once and memd runs without
        // swap; with one, memd finds it as `blk`.
        blk_driver(init, names)?;
    }
    let args = if swap {
        format!("ns={} {}", names.raw(), args)
    } else {
        format!("ns={} swap_mib=0 {}", names.raw(), args)
    };
    init.spawn_as("memd", &args, 0, true).map_err(|e| format!("spawn memd: {}", e))?;
    let ns = alux_rt::names::NameService::connect(names).map_err(|e| format!("names: {:?}", e))?;
    for _ in 0..5000 {
        if ns.lookup("memd").is_ok() {
            return Ok(names);
        }
        alux_rt::time::sleep(Duration::from_millis(1));
    }
    Err("memd never registered".into())
}

fn memd_scenario(init: &Init<'_>) -> Verdict {
    start_memd(init, false, "")?;
    expect("8 MiB touched and checked", init.run("memtest", "touch 8 1"), TaskEnd::Exited(0))?;
    expect("16 threads faulting at once", init.run("memtest", "threads 16"), TaskEnd::Exited(0))?;
    for kind in ["null", "kernel", "unreserved", "rotext", "execdata"] {
        match init.run("memtest", &format!("bad {}", kind)) {
            Ok(TaskEnd::Faulted(_, _)) => {
                println!("init: bad access {} killed only its task", kind)
            }
            other => return Err(format!("bad access {}: got {:?}", kind, other)),
        }
    }
    expect("quota gives OutOfMemory", init.run("memtest", "quota"), TaskEnd::Exited(0))?;
    expect("garbage on memd's protocol", init.run("memtest", "garbage"), TaskEnd::Exited(0))?;
    // The pager's calls are memd's alone, even for a privileged task.
    use alux_abi::syscall::Sys;
    let me = alux_rt::sys::self_info().map_err(|e| format!("{}", e))?.0.raw();
    for (sys, args, want) in [
        (Sys::PagerAttach, [0; 6], Error::Busy),
        (Sys::PagerNext, [0; 6], Error::NotPrivileged),
        (Sys::PageMap, [me, 0x4000_0000, 0, 1, 0, 0], Error::NotPrivileged),
        (Sys::FaultResolve, [me, 0, 0, 0, 0, 0], Error::NotPrivileged),
        (Sys::SpawnFinish, [me, 0, 0, 0, 0, 0], Error::NotPrivileged),
        // Pins are for drivers of a claimed device, which init is not.
        (Sys::DmaPin, [0x10_0000, 4096, 0, 0, 0, 0], Error::NotPrivileged),
    ] {
        let got = alux_rt::sys::call(sys, args).map(|_| ());
        if got != Err(want) {
            return Err(format!("{:?} by init gave {:?}, not {:?}", sys, got, want));
        }
    }
    println!(
        "init: the pager's calls refuse every task but memd; DmaPin refuses a task with no device"
    );
    expect(
        "a system call on an unreserved address fails",
        init.run("memtest", "syscall"),
        TaskEnd::Exited(0),
    )?;
    // memd is still serving, and memory came back: the same again.
    expect("8 MiB again", init.run("memtest", "touch 8 2"), TaskEnd::Exited(0))?;
    expect("a demo task with threads", init.run("demo", "paged 3 2 1000"), TaskEnd::Exited(0))
}

/// memd pages to disk: tasks touch four times more memory than its pool
/// (the scenario boots with `memd_pool=8`), alone and several at once, and
/// every word reads back; a task killed with pages out on the disk gives
/// back its frames and swap slots.
fn memd_swap_scenario(init: &Init<'_>) -> Verdict {
    let names = start_memd(init, true, "")?;
    expect("32 MiB through an 8 MiB pool", init.run("memtest", "touch 32 3"), TaskEnd::Exited(0))?;
    let several: alloc::vec::Vec<TaskId> = (0..3)
        .map(|i| init.spawn("memtest", &format!("touch 12 {}", 10 + i)))
        .collect::<Result<_, _>>()?;
    for (i, t) in several.into_iter().enumerate() {
        expect(&format!("memtest {} of 3 at once", i), task::wait(t, WAIT), TaskEnd::Exited(0))?;
    }
    // A task holding pages out on the disk, killed: everything comes back.
    // It registers `holder` once its 24 MiB are written.
    let holder = init.spawn("memtest", &format!("hold 24 5 ns={}", names.raw()))?;
    await_name(names, "holder", "the holder never said its pages are written")?;
    task::kill(holder).map_err(|e| format!("kill holder: {}", e))?;
    expect("holder", task::wait(holder, WAIT), TaskEnd::Killed)?;
    expect("memd back to its baseline", init.run("memtest", "baseline"), TaskEnd::Exited(0))
}

/// Waits up to a minute for a task to register `name` (its way of saying
/// it reached a point); `Err(why)` if none does.
fn await_name(names: TaskId, name: &str, why: &str) -> Verdict {
    let ns = alux_rt::names::NameService::connect(names).map_err(|e| format!("names: {:?}", e))?;
    for _ in 0..60_000 {
        if ns.lookup(name).is_ok() {
            return Ok(());
        }
        alux_rt::time::sleep(Duration::from_millis(1));
    }
    Err(why.into())
}

/// A pair of `shmtest` tasks in `mode`, both of which must exit 0.
fn shm_pair(init: &Init<'_>, names: TaskId, mode: &str, arg: &str) -> Verdict {
    let server = init.spawn("shmtest", &format!("server {} {} ns={}", mode, arg, names.raw()))?;
    let client = init.spawn("shmtest", &format!("client {} {} ns={}", mode, arg, names.raw()))?;
    expect(&format!("shm {} server", mode), task::wait(server, WAIT), TaskEnd::Exited(0))?;
    expect(&format!("shm {} client", mode), task::wait(client, WAIT), TaskEnd::Exited(0))
}

/// Shared memory through memd: the negotiation's answers, a writer
/// killed mid-stream, a peer writing garbage; then memd holds nothing.
fn shm_scenario(init: &Init<'_>, names: TaskId) -> Verdict {
    let ns = names.raw();
    let server = init.spawn("shmtest", &format!("server negotiate ns={}", ns))?;
    let client = init.spawn("shmtest", &format!("client negotiate ns={}", ns))?;
    let third = init.spawn("shmtest", &format!("third negotiate ns={}", ns))?;
    for (what, t) in [("server", server), ("client", client), ("third task", third)] {
        expect(&format!("negotiation {}", what), task::wait(t, WAIT), TaskEnd::Exited(0))?;
    }
    shm_pair(init, names, "garbage", "")?;
    // The writer is killed once the reader has 1 MiB: the reader must end
    // cleanly with every word right.
    let reader = init.spawn("shmtest", &format!("server kill ns={}", ns))?;
    let writer = init.spawn("shmtest", &format!("client kill ns={}", ns))?;
    await_name(names, "shm-kill-reading", "the reader never got its first MiB")?;
    task::kill(writer).map_err(|e| format!("kill writer: {}", e))?;
    expect("killed writer", task::wait(writer, WAIT), TaskEnd::Killed)?;
    expect("reader of a killed writer", task::wait(reader, WAIT), TaskEnd::Exited(0))?;
    // Every shared frame came back once both sides were gone.
    expect("memd back to its baseline", init.run("memtest", "baseline"), TaskEnd::Exited(0))
}

fn memd_death(init: &Init<'_>) -> Verdict {
    let names = start_memd(init, false, "")?;
    let ns = alux_rt::names::NameService::connect(names).map_err(|e| format!("names: {:?}", e))?;
    let memd = ns.lookup("memd").map_err(|e| format!("memd: {:?}", e))?;
    let _paged = init.spawn("demo", "orphan 2 1000 100000")?;
    task::kill(memd).map_err(|e| format!("kill memd: {}", e))?;
    // The kernel stops the machine when memd ends; reaching here at all is
    // the failure.
    alux_rt::time::sleep(Duration::from_secs(5));
    Err("the machine went on without memd".into())
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

/// The kernel's counts once the services are done reacting to what just
/// ended (memd closes its side of a finished client's connection, and
/// refills its ports, when it next runs): read until `key` is the same over
/// 5 ms, for up to half a second.
fn settled<K: PartialEq>(
    key: impl Fn(&alux_abi::syscall::KernelStats) -> K,
) -> Result<alux_abi::syscall::KernelStats, String> {
    let mut last = stats()?;
    for _ in 0..100 {
        alux_rt::time::sleep(Duration::from_millis(5));
        let now = stats()?;
        if key(&now) == key(&last) {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn leak(init: &Init<'_>, threads: u64, tasks: u64) -> Verdict {
    // The kernel's tables shrink back, so the baseline is the state before
    // these tasks and threads existed, after one cycle of each: memd's own
    // first growth (its ports, the kernel records behind its first client)
    // and the tables' hysteresis (a table keeps up to 4 times what is in
    // use, so 3 live threads may keep room for 8) are in it; what the
    // 11,000 cycles add must be nothing.
    expect("memd's first client", init.run("nop", ""), TaskEnd::Exited(0))?;
    expect("one thread cycle", init.run("churn", "1"), TaskEnd::Exited(0))?;
    // Init's own heap may grow meanwhile: compare the kernel's frames
    // without the caller's own.
    let key = |s: &alux_abi::syscall::KernelStats| {
        (s.frames_used - s.caller_frames, s.heap_used, s.tasks, s.threads, s.ipc_ends)
    };
    let before = settled(key)?;
    println!("init: before: {:?}", before);
    expect("churn", init.run("churn", &format!("{}", threads)), TaskEnd::Exited(0))?;
    for i in 0..tasks {
        match init.run("nop", "") {
            Ok(TaskEnd::Exited(0)) => {}
            other => return Err(format!("nop #{}: {:?}", i, other)),
        }
    }
    println!("init: {} thread and {} task create/exit cycles done", threads, tasks);
    let after = settled(key)?;
    println!("init: after:  {:?}", after);
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
        match (Spawn { image, args: b"", uid: 1, privileged: false, quota_pages: 0 }).start() {
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
    // The same refusals where the `SendReceive` fast path would otherwise
    // apply (a receiver parked and waiting).
    let server = init.spawn("ipc", "fast-server")?;
    expect(
        "fast-refusals",
        init.run("ipc", &format!("fast-refusals {}", server.raw())),
        TaskEnd::Exited(0),
    )?;
    expect("fast-server", task::wait(server, WAIT), TaskEnd::Exited(0))?;
    // Privileged calls work for init. (The page-fault end is memd's: an
    // interrupt line nobody uses here, COM2's, serves the check.)
    let end = alux_rt::ipc::open_kernel_end(alux_abi::ipc::kernel_end_kind::interrupt(3))
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

/// Kernel memory and object counts that must come back after a scenario.
fn same_as_before(
    before: &alux_abi::syscall::KernelStats,
    after: &alux_abi::syscall::KernelStats,
) -> Verdict {
    println!("init: before: {:?}\ninit: after:  {:?}", before, after);
    let key = |s: &alux_abi::syscall::KernelStats| {
        (s.frames_used - s.caller_frames, s.ipc_ends, s.tasks, s.threads)
    };
    if key(before) != key(after) {
        return Err("kernel memory or objects not back where they started".into());
    }
    // The heap may end *below* the baseline, not above: the kernel's
    // tables shrink with hysteresis (up to 4 times what is in use), so the
    // baseline, taken while services run, may hold slack the scenario's
    // growth and shrinking gave back.
    if after.heap_used > before.heap_used {
        return Err(alloc::format!(
            "kernel heap grew from {} to {} bytes",
            before.heap_used,
            after.heap_used
        ));
    }
    Ok(())
}

/// A flooder held at init's gate (see `pools.rs`): its task, the gate
/// connection (closing it releases the flooder) and its report.
struct Held {
    task: TaskId,
    gate: Connection,
    report: [u64; 4],
}

impl Init<'_> {
    /// Starts `pools ARGS` as an unprivileged task of `uid` and waits for
    /// its report on a gate port.
    fn flooder(&self, args: &str, uid: u16) -> Result<Held, String> {
        let port = Port::new().map_err(|e| format!("gate port: {}", e))?;
        port.listen().map_err(|e| format!("gate listen: {}", e))?;
        let task = self
            .spawn_as("pools", args, uid, false)
            .map_err(|e| format!("spawn pools {}: {}", args, e))?;
        let (gate, opened) = port.accept(WAIT).map_err(|(_, e)| format!("gate accept: {}", e))?;
        // The report may have come with the open (see `Port::accept`).
        if !opened.events.contains(Events::SIGNAL) {
            gate.wait(WAIT).map_err(|e| format!("gate report: {}", e))?;
        }
        let m = gate.read().map_err(|e| format!("gate read: {}", e))?;
        let mut report = [0u64; 4];
        for (r, chunk) in report.iter_mut().zip(m.data.chunks_exact(8)) {
            *r = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        Ok(Held { task, gate, report })
    }
}

/// One blocking poll of init's, which times out: the kernel keeps a
/// thread's poll-set buffer for its next poll, so the gates' polls must not
/// count as growth against the baseline.
fn warm_up_poll() -> Verdict {
    let port = Port::new().map_err(|e| format!("port: {}", e))?;
    match port.accept(Some(Duration::from_millis(1))) {
        Err((_, Error::TimedOut)) => Ok(()),
        other => Err(format!("warm-up poll: {:?}", other.map(|_| ()).map_err(|(_, e)| e))),
    }
}

/// Closes every gate and checks each flooder then exits with 0.
fn release(held: alloc::vec::Vec<Held>) -> Verdict {
    for h in held {
        drop(h.gate);
        expect("flooder", task::wait(h.task, WAIT), TaskEnd::Exited(0))?;
    }
    Ok(())
}

/// What privileged services must still do while unprivileged floods hold
/// all they may: start, create threads, map memory, create ports, connect
/// and talk.
fn system_still_works(init: &Init<'_>, echo: TaskId) -> Verdict {
    let mine: Result<alloc::vec::Vec<Port>, Error> = (0..100).map(|_| Port::new()).collect();
    let mine = mine.map_err(|e| format!("init's own ports refused: {}", e))?;
    drop(mine);
    let sys = init.spawn_as("pools", &format!("system {}", echo.raw()), 0, true);
    expect("system service", sys.and_then(|t| task::wait(t, WAIT)), TaskEnd::Exited(0))?;
    let client = init.spawn_as("ipc", &format!("client {} sys 3", echo.raw()), 0, true);
    expect("privileged echo client", client.and_then(|t| task::wait(t, WAIT)), TaskEnd::Exited(0))?;
    let pong = init.spawn_as("ipc", "pong", 0, true).map_err(|e| format!("pong: {}", e))?;
    let ping = init.spawn_as("ipc", &format!("ping {} 200", pong.raw()), 0, true);
    expect("privileged ping", ping.and_then(|t| task::wait(t, WAIT)), TaskEnd::Exited(0))?;
    expect("privileged pong", task::wait(pong, WAIT), TaskEnd::Exited(0))
}

/// IPC ends: three uids take their whole share (two tasks each, so the
/// share is per uid, not per task) and so fill the unprivileged part of the
/// table; a fourth uid gets nothing; every refusal is `LimitReached`; the
/// privileged reserve still serves init and the services. Then everything
/// is released and kernel memory is back where it was.
fn flood(init: &Init<'_>) -> Verdict {
    use alux_abi::ipc::limits::{ENDS_PER_UID, ENDS_RESERVED, LISTEN_QUEUE_LEN, TOTAL_ENDS};
    let limit = Error::LimitReached.code();
    // Baseline after one ping-pong, so its one-time growth is counted.
    pingpong_n(init, 10)?;
    warm_up_poll()?;
    // The services finish with the tasks that came before (memd renews
    // its ports when its clients go) before the baseline is taken.
    settle_memd();
    let before = stats()?;
    let me = alux_rt::sys::self_info().map_err(|e| format!("{}", e))?.0;
    let echo = init.spawn_as("ipc", "echo 1 64", 0, true).map_err(|e| format!("echo: {}", e))?;
    let mut held = alloc::vec::Vec::new();
    let mut total = 0;
    for uid in [21u16, 22, 23] {
        let mut mine = 0;
        for second in [false, true] {
            let h = init.flooder(&format!("ends {} {} 3", me.raw(), echo.raw()), uid)?;
            let [ends, bad, connect, queue] = h.report;
            println!(
                "init: uid {} flooder holds {} ends; its connect got code {}; queue took {} (code {})",
                uid, ends, connect, queue >> 8, queue & 0xff
            );
            if bad != 0 {
                return Err(format!("uid {}: a refusal other than LimitReached", uid));
            }
            // The first task stops at its threads' limits, below the uid's
            // share, and may still connect; the second fills the share,
            // and its connect is refused for its own uid.
            if connect != if second { limit } else { 0 } {
                return Err(format!("uid {}: connect got code {}", uid, connect));
            }
            let (pushed, err) = (queue >> 8, queue & 0xff);
            let queue_ok = if err == Error::QueueFull.code() {
                pushed == LISTEN_QUEUE_LEN as u64
            } else {
                err == 0 && pushed < LISTEN_QUEUE_LEN as u64
            };
            if !queue_ok {
                return Err(format!("uid {}: listen queue took {} (code {})", uid, pushed, err));
            }
            mine += ends;
            held.push(h);
        }
        println!("init: uid {} holds {} ends (its share: {})", uid, mine, ENDS_PER_UID);
        if mine != ENDS_PER_UID as u64 {
            return Err(format!("uid {} holds {} ends, not its share", uid, mine));
        }
        total += mine;
    }
    let unprivileged = (TOTAL_ENDS - ENDS_RESERVED) as u64;
    let now = stats()?;
    println!(
        "init: unprivileged tasks hold {} of {} ends ({} kernel-wide live)",
        total, unprivileged, now.ipc_ends
    );
    if total != unprivileged {
        return Err("the unprivileged part is not full".into());
    }
    // A fourth uid finds no room, not even for its gate connection.
    let late = init.spawn_as("pools", &format!("ends {} {} 1", me.raw(), echo.raw()), 24, false);
    expect("uid 24 flooder", late.and_then(|t| task::wait(t, WAIT)), TaskEnd::Exited(limit))?;
    system_still_works(init, echo)?;
    release(held)?;
    task::kill(echo).map_err(|e| format!("kill echo: {}", e))?;
    expect("echo", task::wait(echo, WAIT), TaskEnd::Killed)?;
    // memd hears of its clients' ends closing when it next runs, and then
    // renews its ports (see memd): let it run before comparing.
    settle_memd();
    same_as_before(&before, &stats()?)
}

/// Gives the services a moment to handle what the tasks that just ended
/// left them (closed connections), so that kernel counts are compared
/// after they did.
fn settle_memd() {
    for _ in 0..20 {
        alux_rt::time::sleep(Duration::from_millis(1));
    }
}

/// The `pools` image with its last loadable segment grown so that the
/// image takes `pages` pages.
fn grown_image(init: &Init<'_>, pages: u64) -> Result<alloc::vec::Vec<u8>, String> {
    let mut image = task::find_file(init.module, "pools").ok_or("no pools")?.to_vec();
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8"));
    let (phoff, phentsize, phnum) =
        (u64_at(&image, 0x20) as usize, u16_at(&image, 0x36), u16_at(&image, 0x38));
    let loads: alloc::vec::Vec<usize> = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&o| u32::from_le_bytes(image[o..o + 4].try_into().expect("4")) == 1)
        .collect();
    let span = |b: &[u8], o: usize| {
        let (va, mem) = (u64_at(b, o + 16), u64_at(b, o + 40));
        ((va + mem).div_ceil(4096) - va / 4096, va + mem)
    };
    let last = *loads.iter().max_by_key(|&&o| u64_at(&image, o + 16)).ok_or("no PT_LOAD")?;
    let others: u64 = loads.iter().filter(|&&o| o != last).map(|&o| span(&image, o).0).sum();
    let (va, (now, _)) = (u64_at(&image, last + 16), span(&image, last));
    let want = pages.checked_sub(others).filter(|&w| w >= now).ok_or("image too big already")?;
    // The segment ends `want` pages after its first page.
    let memsz = (va / 4096 + want) * 4096 - va;
    image[last + 40..last + 48].copy_from_slice(&memsz.to_le_bytes());
    Ok(image)
}

/// The per-task cap of 16,384 frames counts everything: an image that
/// fills it with its pages leaves no room for its stack, start page and
/// page tables and is refused; a slightly smaller one starts within the
/// cap; and a mapping whose page tables would cross the cap is refused.
fn page_cap(init: &Init<'_>) -> Verdict {
    const CAP: u64 = 16 * 1024;
    let stack_and_start = 128 / 4 + 1;
    let full = grown_image(init, CAP - stack_and_start)?;
    match (Spawn { image: &full, args: b"frames", uid: 50, privileged: false, quota_pages: 0 })
        .start()
    {
        Err(Error::OutOfMemory) => {
            println!("init: an image of {} pages plus stack is refused", CAP - stack_and_start)
        }
        other => return Err(format!("full image: expected OutOfMemory, got {:?}", other)),
    }
    let fits = grown_image(init, CAP - stack_and_start - 64)?;
    let t =
        Spawn { image: &fits, args: b"frames", uid: 50, privileged: false, quota_pages: 0 }.start();
    expect("image just under the cap", t.and_then(|t| task::wait(t, WAIT)), TaskEnd::Exited(0))?;
    let t = init.spawn_as("pools", "cap", 50, false);
    expect("mapping up to the cap", t.and_then(|t| task::wait(t, WAIT)), TaskEnd::Exited(0))
}

/// Threads, then memory: pairs of unprivileged tasks per uid take their
/// uid's whole share until the unprivileged part is full; the next
/// unprivileged spawn is refused; privileged services still start, make
/// threads, map memory and connect. Each flood is released before the next,
/// and kernel memory comes back.
fn pools(init: &Init<'_>) -> Verdict {
    pingpong_n(init, 10)?;
    warm_up_poll()?;
    let before = stats()?;
    page_cap(init)?;
    let me = alux_rt::sys::self_info().map_err(|e| format!("{}", e))?.0;
    let echo = init.spawn_as("ipc", "echo 1 64", 0, true).map_err(|e| format!("echo: {}", e))?;

    // Threads: 2,048 in the table, 512 reserved, 256 per uid.
    let (share, unprivileged) = (256u64, 2048 - 512u64);
    let mut held = alloc::vec::Vec::new();
    let mut total = 0;
    for uid in 31u16..37 {
        let mut mine = 0;
        for _ in 0..2 {
            let h = init.flooder(&format!("threads {} 200", me.raw()), uid)?;
            mine += h.report[0];
            held.push(h);
        }
        let last = held.last().map_or(0, |h| h.report[1]);
        println!(
            "init: uid {} holds {} threads (share {}); stopped by code {}",
            uid, mine, share, last
        );
        if mine != share || last != Error::LimitReached.code() {
            return Err(format!("uid {}: {} threads, stop code {}", uid, mine, last));
        }
        total += mine;
    }
    println!("init: unprivileged tasks hold {} of {} threads", total, unprivileged);
    if total != unprivileged {
        return Err("the unprivileged part of the thread table is not full".into());
    }
    match init.spawn_as("pools", "threads 0 1", 37, false) {
        Err(Error::LimitReached) => println!("init: uid 37 cannot start a task: LimitReached"),
        other => return Err(format!("uid 37 spawn: expected LimitReached, got {:?}", other)),
    }
    system_still_works(init, echo)?;
    release(core::mem::take(&mut held))?;

    // Memory: per uid a quarter of RAM, the last quarter reserved.
    let oom = Error::OutOfMemory.code();
    let mut shares = alloc::vec::Vec::new();
    for uid in 41u16..44 {
        let mut mine = 0;
        for _ in 0..2 {
            let h = init.flooder(&format!("pages {}", me.raw()), uid)?;
            let [frames, big, small, _] = h.report;
            if big != oom || small != oom || frames > 16 * 1024 {
                return Err(format!(
                    "uid {}: {} frames, stop codes {} {}",
                    uid, frames, big, small
                ));
            }
            mine += frames;
            held.push(h);
        }
        println!("init: uid {} holds {} frames", uid, mine);
        shares.push(mine);
    }
    // Every uid got the same share (up to the page tables a last page
    // would need), more than one task's cap: the bound is per uid.
    let first = shares[0];
    if shares.iter().any(|&s| s.abs_diff(first) > 4 || s <= 16 * 1024) {
        return Err(format!("uneven or small memory shares: {:?}", shares));
    }
    match init.spawn_as("pools", "pages 0", 44, false) {
        Err(Error::OutOfMemory) => println!("init: uid 44 cannot start a task: OutOfMemory"),
        other => return Err(format!("uid 44 spawn: expected OutOfMemory, got {:?}", other)),
    }
    system_still_works(init, echo)?;
    release(held)?;
    task::kill(echo).map_err(|e| format!("kill echo: {}", e))?;
    expect("echo", task::wait(echo, WAIT), TaskEnd::Killed)?;
    same_as_before(&before, &stats()?)
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

/// The SMP figures (`cargo xtask bench` boots this with 1, 2 and 4 CPUs):
/// the controller, the server threads and the workers, kernel-backed like
/// the other IPC benchmarks (no memd).
fn bench_smp(init: &Init<'_>, cpus: Option<u64>) -> Verdict {
    let cpus = cpus.ok_or("no cpus=N on the command line")?;
    let control = init.spawn("bench", &format!("smp-control {}", cpus))?;
    let server = init.spawn("bench", "smp-server 4")?;
    let client =
        init.spawn("bench", &format!("smp-client {} {} 4", server.raw(), control.raw()))?;
    let long = Some(Duration::from_secs(600));
    expect("SMP benchmarks", task::wait(control, long), TaskEnd::Exited(0))?;
    expect("SMP bench workers", task::wait(client, long), TaskEnd::Exited(0))?;
    expect("SMP bench server", task::wait(server, long), TaskEnd::Exited(0))
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

fn blk_readonly(init: &Init<'_>) -> Verdict {
    let blk = Blk::start(init)?;
    blk.client(init, "readonly", true)?;
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
    // memd renews its ports when clients go: let it before comparing.
    settle_memd();
    same_as_before(&before, &stats()?)?;
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

/// The CPUs that run threads: `CpuInfo`'s count, which must be the number
/// the harness gave the machine (`cpus=N`, which `cargo xtask` puts on the
/// command line; its kernel line `SMP: N CPUs up` says the same).
fn smp_cpus(cpus: Option<u64>) -> Result<u32, String> {
    let want = cpus.ok_or("no cpus=N on the command line (cargo xtask puts it there)")?;
    let (cpu, count) = alux_rt::sys::cpu_info().map_err(|e| format!("CpuInfo: {}", e))?;
    println!("init: CpuInfo: CPU {} of {}; the machine has {}", cpu, count, want);
    if u64::from(count) != want {
        return Err(format!(
            "CpuInfo counts {} CPU(s) that run threads, but the machine has {}: every CPU must run threads (issue 12)",
            count, want
        ));
    }
    Ok(count)
}

/// Pins init's own thread to `cpu` (`None`: any CPU); pinned, it must be
/// there when the call returns.
fn pin_init(cpu: Option<u32>) -> Verdict {
    let me = alux_rt::thread::current();
    alux_rt::sys::thread_set_cpu(me, cpu)
        .map_err(|e| format!("ThreadSetCpu(init, {:?}): {}", cpu, e))?;
    match (cpu, alux_rt::sys::cpu_info()) {
        (None, _) => Ok(()),
        (Some(c), Ok((now, _))) if now == c => Ok(()),
        (Some(c), other) => Err(format!("init pinned to CPU {}, then CpuInfo said {:?}", c, other)),
    }
}

/// A connection a child made to init, and whether its first message came
/// with the open (one poll reports all of an end's events: that message is
/// in the buffer already, and no further event will say so).
struct FromChild {
    conn: Connection,
    pending: bool,
}

/// Waits for `child` to take `port`; fails if the child ends first (its
/// end says why) or nothing comes within two minutes.
fn accept_from(port: Port, child: TaskId, what: &str) -> Result<FromChild, String> {
    let mut port = port;
    let t0 = alux_rt::time::now();
    loop {
        match port.accept(Some(Duration::from_millis(100))) {
            Ok((conn, opened)) => {
                let pending = opened.events.contains(alux_abi::ipc::Events::SIGNAL);
                return Ok(FromChild { conn, pending });
            }
            Err((p, Error::TimedOut)) => port = p,
            Err((_, e)) => return Err(format!("{}: accept: {}", what, e)),
        }
        if let Ok(end) = task::wait(child, Some(Duration::ZERO)) {
            return Err(format!("{} ended before connecting: {:?}", what, end));
        }
        if alux_rt::time::now() - t0 > Duration::from_secs(120) {
            return Err(format!("{} did not connect within 120 s", what));
        }
    }
}

/// The next message `child` sends on its connection; fails if the child
/// ends first.
fn message_from(c: &mut FromChild, child: TaskId, what: &str) -> Result<[u8; 32], String> {
    let conn = &c.conn;
    if core::mem::take(&mut c.pending) {
        return conn.read().map(|m| m.data).map_err(|e| format!("{}: read: {}", what, e));
    }
    let t0 = alux_rt::time::now();
    loop {
        match conn.wait(Some(Duration::from_millis(100))) {
            Ok(r) if r.events.contains(alux_abi::ipc::Events::SIGNAL) => {
                return conn.read().map(|m| m.data).map_err(|e| format!("{}: read: {}", what, e));
            }
            Ok(r) if r.events.contains(alux_abi::ipc::Events::PEER_CLOSED) => {
                let end = task::wait(child, WAIT);
                return Err(format!("{} closed its connection: it ended {:?}", what, end));
            }
            Ok(_) | Err(Error::TimedOut) => {}
            Err(e) => return Err(format!("{}: wait: {}", what, e)),
        }
        if alux_rt::time::now() - t0 > Duration::from_secs(120) {
            return Err(format!("no word from {} within 120 s", what));
        }
    }
}

/// Round trips of `smp-stress`, over all pairs: at least the million
/// issue 12 asks for.
const STRESS_ROUND_TRIPS: u64 = 1_000_000;
/// Client/server pairs, in two groups (a client task and a server task
/// each).
const STRESS_PAIRS: u64 = 16;
const STRESS_GROUPS: u64 = 2;

/// Many client/server pairs across the CPUs, every byte of every message
/// checked, while victim tasks with threads on every CPU are started and
/// killed and a churn task creates and ends threads; then the churn task
/// is killed too.
fn smp_stress(init: &Init<'_>, cpus: Option<u64>) -> Verdict {
    let n = smp_cpus(cpus)?;
    let per_group = STRESS_PAIRS / STRESS_GROUPS;
    let rounds = STRESS_ROUND_TRIPS / STRESS_PAIRS;
    let want = per_group * rounds;
    let cpus = format!("cpus={}", n);
    let mut groups = alloc::vec::Vec::new();
    for g in 0..STRESS_GROUPS {
        let server =
            init.spawn("smptest", &format!("stress-server {} {} {}", per_group, rounds, cpus))?;
        let client = init.spawn(
            "smptest",
            &format!(
                "stress-client {} {} {} {} {}",
                server.raw(),
                per_group,
                rounds,
                g * per_group,
                cpus
            ),
        )?;
        groups.push((server, client));
    }
    println!(
        "init: {} pairs ({} tasks) do {} round trips each on {} CPUs",
        STRESS_PAIRS,
        2 * STRESS_GROUPS,
        rounds,
        n
    );
    let churn = init.spawn("smptest", &format!("churn {}", cpus))?;
    let mut rng = programs::Rng::new(0x5eed_0012);
    let mut ends: alloc::vec::Vec<Option<TaskEnd>> = alloc::vec![None; groups.len()];
    let mut kills = 0u64;
    let t0 = alux_rt::time::now();
    while ends.iter().any(Option::is_none) {
        // A victim with threads spinning, blocked and sleeping on every
        // CPU, killed a few milliseconds after it started (so sometimes
        // while it is still starting).
        let victim = init.spawn("smptest", &format!("victim {}", cpus))?;
        alux_rt::time::sleep(Duration::from_millis(2 + rng.next_u64() % 12));
        task::kill(victim).map_err(|e| format!("kill victim: {}", e))?;
        match task::wait(victim, WAIT) {
            Ok(TaskEnd::Killed) => {}
            other => return Err(format!("victim {}: expected Killed, got {:?}", kills, other)),
        }
        kills += 1;
        alux_rt::time::sleep(Duration::from_millis(5 + rng.next_u64() % 20));
        for (i, (_, client)) in groups.iter().enumerate() {
            if ends[i].is_none() {
                match task::wait(*client, Some(Duration::ZERO)) {
                    Err(Error::TimedOut) => {}
                    Ok(end) => ends[i] = Some(end),
                    Err(e) => return Err(format!("wait for a client: {}", e)),
                }
            }
        }
        if let Ok(end) = task::wait(churn, Some(Duration::ZERO)) {
            return Err(format!("the churn task ended while the pairs ran: {:?}", end));
        }
        if alux_rt::time::now() - t0 > Duration::from_secs(270) {
            return Err(format!("the pairs had not finished after 270 s ({} kills)", kills));
        }
    }
    let took = alux_rt::time::now() - t0;
    for (i, (server, _)) in groups.iter().enumerate() {
        let client_end = ends[i].take().map(Ok).unwrap_or(Err(Error::TimedOut));
        expect(&format!("stress client {}", i), client_end, TaskEnd::Exited(want))?;
        expect(&format!("stress server {}", i), task::wait(*server, WAIT), TaskEnd::Exited(want))?;
    }
    task::kill(churn).map_err(|e| format!("kill churn: {}", e))?;
    expect("churn", task::wait(churn, WAIT), TaskEnd::Killed)?;
    println!(
        "init: {} round trips checked on {} CPUs in {} ms while {} victim tasks were killed",
        STRESS_GROUPS * want,
        n,
        took.as_millis(),
        kills
    );
    if kills < 10 {
        return Err(format!("only {} victims were killed while the pairs ran", kills));
    }
    Ok(())
}

/// Iterations of `smp-shootdown`: with the kernel's `MemUnmap`, and with
/// memd's `PageUnmap`.
const SHOOTDOWN_ITERATIONS: u64 = 256;
const SHOOTDOWN_MEMD_ITERATIONS: u64 = 128;

/// A page read in a tight loop by threads pinned to some CPUs while a
/// thread pinned to another has it unmapped and its frame filled with other
/// data: a reader must fault at its own word, and none may read anything
/// but the page's value. The unmapping CPU goes round the CPUs; every
/// other iteration all other CPUs read, else one of them. First with the
/// kernel's own memory (`MemUnmap`), then with memd's (`PageUnmap`).
fn smp_shootdown(init: &Init<'_>, cpus: Option<u64>) -> Verdict {
    let n = smp_cpus(cpus)?;
    if n < 2 {
        return Err(format!("a shootdown needs at least 2 CPUs; {} run threads", n));
    }
    shootdowns(init, n, false, SHOOTDOWN_ITERATIONS)?;
    shootdowns(init, n, true, SHOOTDOWN_MEMD_ITERATIONS)
}

fn shootdowns(init: &Init<'_>, n: u32, memd: bool, iterations: u64) -> Verdict {
    let me = alux_rt::sys::self_info().map_err(|e| format!("{}", e))?.0;
    let mode = if memd { "memd" } else { "kernel" };
    let (mut reused, mut faulted) = (0u64, 0u64);
    for i in 0..iterations {
        let unmap = (i % u64::from(n)) as u32;
        let others = ((1u64 << n) - 1) & !(1 << unmap);
        let mask = if (i / u64::from(n)) % 2 == 0 {
            others
        } else {
            let k = (i / (2 * u64::from(n))) % u64::from(n - 1);
            1 << ((u64::from(unmap) + 1 + k) % u64::from(n))
        };
        let readers: alloc::vec::Vec<u32> = (0..n).filter(|c| mask & (1 << c) != 0).collect();
        let what = format!(
            "{} iteration {} (unmap on CPU {}, readers on CPUs {:?})",
            mode, i, unmap, readers
        );
        let port = Port::new().map_err(|e| format!("port: {}", e))?;
        port.listen().map_err(|e| format!("listen: {}", e))?;
        // Privileged: its memory is the kernel's (DmaAlloc, MemUnmap);
        // unprivileged: memd's.
        let child = init
            .spawn_as(
                "smptest",
                &format!(
                    "shootdown {} {} {} {} init={} cpus={}",
                    mode,
                    unmap,
                    mask,
                    i,
                    me.raw(),
                    n
                ),
                1,
                !memd,
            )
            .map_err(|e| format!("spawn shootdown: {}", e))?;
        let mut from = accept_from(port, child, &what)?;
        let m = message_from(&mut from, child, &what)?;
        let conn = from.conn;
        if m[0] != b'U' || usize::from(m[1]) != readers.len() {
            return Err(format!("{}: it said {:02x?}", what, &m[..2]));
        }
        let va = u64::from_le_bytes(m[8..16].try_into().expect("8 bytes"));
        conn.send(b"ok").map_err(|e| format!("{}: send: {}", what, e))?;
        let end = task::wait(child, WAIT);
        // Its last word: whether it had the frame back before the fault.
        let last = conn.read().map(|m| m.data[0]).unwrap_or(0);
        match end {
            Ok(TaskEnd::Faulted(Fault::PageFault, a))
                if a >= va && a < va + 8 * readers.len() as u64 && (a - va) % 8 == 0 =>
            {
                faulted += 1;
                if last == b'R' || last == b'M' {
                    reused += 1;
                }
            }
            Ok(TaskEnd::Exited(code)) if (0x5ee0..0x5ef0).contains(&code) => {
                let k = (code - 0x5ee0) as usize;
                return Err(format!(
                    "{}: the reader on CPU {} read other data than the page's after the unmap (its frame's next contents): a stale TLB entry",
                    what,
                    readers.get(k).copied().unwrap_or(u32::MAX)
                ));
            }
            Ok(TaskEnd::Exited(0xa1)) => {
                return Err(format!("{}: no reader faulted within 3 s of the unmap", what));
            }
            other => {
                return Err(format!(
                    "{}: expected a page fault at one of {} words from {:#x}, got {:?}",
                    what,
                    readers.len(),
                    va,
                    other
                ));
            }
        }
    }
    if memd {
        // memd backs the new page with the frame it freed last, which the
        // task cannot see: it only knows the page was filled.
        println!(
            "init: {} unmaps (memd's PageUnmap): each time a reader faulted at its word and none read other data; a new page (memd's last freed frame) was filled with other data before the fault {} times",
            faulted, reused
        );
    } else {
        println!(
            "init: {} unmaps (MemUnmap): each time a reader faulted at its word and none read other data; the same frame was back in use with other data before the fault {} times",
            faulted, reused
        );
    }
    Ok(())
}

/// One round of a victim on every CPU and its witness: `kill` (init, on
/// CPU `killer`, kills the victim), `task-exit` (the victim's main thread,
/// on CPU `exit_cpu`, ends the task while its other threads run on every
/// CPU) or `thread-exit` (every thread ends itself).
fn kill_round(init: &Init<'_>, n: u32, mode: &str, killer: u32, exit_cpu: u32) -> Verdict {
    pin_init(Some(killer))?;
    let me = alux_rt::sys::self_info().map_err(|e| format!("{}", e))?.0;
    let port = Port::new().map_err(|e| format!("port: {}", e))?;
    port.listen().map_err(|e| format!("listen: {}", e))?;
    let witness =
        init.spawn("smptest", &format!("witness {} init={} cpus={}", mode, me.raw(), n))?;
    let victim = init.spawn(
        "smptest",
        &format!("kill-victim {} witness={} exit_cpu={} cpus={}", mode, witness.raw(), exit_cpu, n),
    )?;
    let what =
        format!("{} (init on CPU {}, victim's main thread on CPU {})", mode, killer, exit_cpu);
    let mut from = accept_from(port, witness, &format!("the witness of {}", what))?;
    let m = message_from(&mut from, witness, &format!("the witness of {}", what))?;
    let conn = from.conn;
    if m[0] != b'R' {
        return Err(format!("{}: the witness said {:02x?}", what, &m[..1]));
    }
    if mode == "kill" {
        let t0 = alux_rt::time::now();
        task::kill(victim).map_err(|e| format!("{}: kill: {}", what, e))?;
        let t1 = alux_rt::time::now();
        let end = task::wait(victim, WAIT);
        let t2 = alux_rt::time::now();
        expect(&format!("victim of {}", what), end, TaskEnd::Killed)?;
        println!(
            "init: {}: TaskKill took {} us, TaskWait {} us",
            what,
            (t1 - t0).as_micros(),
            (t2 - t1).as_micros()
        );
        // A sanity bound: a kill waits for the other CPUs to leave user
        // mode, which an interrupt makes them do at once.
        if t2 - t0 > Duration::from_secs(2) {
            return Err(format!("{}: kill and wait took {} ms", what, (t2 - t0).as_millis()));
        }
    }
    conn.send(b"G").map_err(|e| format!("{}: send: {}", what, e))?;
    let code = match mode {
        "task-exit" => Some(0x7e),
        "thread-exit" => Some(0x7f),
        _ => None,
    };
    if let Some(code) = code {
        expect(&format!("victim of {}", what), task::wait(victim, WAIT), TaskEnd::Exited(code))?;
    }
    expect(&format!("witness of {}", what), task::wait(witness, WAIT), TaskEnd::Exited(0))?;
    pin_init(None)
}

/// `CpuInfo` and `ThreadSetCpu`, with init's own thread as the foreign one.
fn smp_cpuinfo(init: &Init<'_>, n: u32) -> Verdict {
    let thread = alux_rt::thread::current();
    expect(
        "CpuInfo and ThreadSetCpu",
        init.run("smptest", &format!("cpuinfo foreign={} cpus={}", thread.raw(), n)),
        TaskEnd::Exited(0),
    )
}

/// Kill and exit of threads running or blocked on other CPUs, from every
/// CPU; sleeps and timeouts on every CPU; then the kernel's memory and
/// objects are back at their baseline, taken after one warm-up round.
fn smp_kill(init: &Init<'_>, cpus: Option<u64>) -> Verdict {
    let n = smp_cpus(cpus)?;
    smp_cpuinfo(init, n)?;
    kill_round(init, n, "kill", 0, 0)?;
    let key = |s: &alux_abi::syscall::KernelStats| {
        (s.frames_used - s.caller_frames, s.heap_used, s.tasks, s.threads, s.ipc_ends)
    };
    let before = settled(key)?;
    smp_cpuinfo(init, n)?;
    for c in 0..n {
        kill_round(init, n, "kill", c, (c + 1) % n)?;
    }
    for c in 0..n {
        kill_round(init, n, "task-exit", (c + 1) % n, c)?;
    }
    kill_round(init, n, "thread-exit", 0, n - 1)?;
    let me = alux_rt::sys::self_info().map_err(|e| format!("{}", e))?.0;
    expect(
        "sleeps and timeouts on every CPU",
        init.run("smptest", &format!("timing idle={} cpus={}", me.raw(), n)),
        TaskEnd::Exited(0),
    )?;
    let after = settled(key)?;
    same_as_before(&before, &after)
}

fn main(start: &Start) -> u64 {
    let scenario = start.arg_words().find_map(|w| w.strip_prefix("scenario=")).unwrap_or("demo");
    println!("init: task {} running scenario {}", start.task, scenario);
    let init = Init { module: start.boot_module };
    // memd gives every unprivileged task its memory: it starts first, so
    // every scenario runs on it, except `boot` (the bare kernel, for the
    // KVM probe), `memd` (which starts its own, with its options) and
    // `pools` (which checks the kernel's accounting of the memory it gives
    // tasks itself, with no memd in the way), and the benchmarks (`bench`
    // starts memd after its IPC and disk figures; `bench-smp`, the SMP IPC
    // figures, runs without it).
    // The block scenarios and the benchmarks drive the disk themselves:
    // memd runs there without swap.
    let swap = !(scenario.starts_with("blk-") || scenario == "bench");
    let mut names = None;
    if !matches!(
        scenario,
        "boot" | "memd" | "memd-swap" | "memd-death" | "pools" | "bench" | "bench-smp"
    ) {
        match start_memd(&init, swap, "") {
            Ok(n) => names = Some(n),
            Err(why) => {
                println!("scenario {}: FAIL: {}", scenario, why);
                return 1;
            }
        }
    }
    let names = names.unwrap_or(TaskId::from_raw(0));
    let verdict = match scenario {
        "demo" => demo(&init),
        // Boots and stops: `cargo xtask` uses it to probe KVM.
        "boot" => Ok(()),
        "preempt" => preempt(&init),
        // The kernel's lines (every CPU up) are checked by `cargo xtask
        // test`; the system must run on as before.
        "smp" => preempt(&init).and_then(|()| {
            expect("a demo task", init.run("demo", "worker 2 3 100000"), TaskEnd::Exited(0))
        }),
        "smp-stress" => smp_stress(&init, start.arg_value("cpus")),
        "smp-shootdown" => smp_shootdown(&init, start.arg_value("cpus")),
        "smp-kill" => smp_kill(&init, start.arg_value("cpus")),
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
        "pools" => pools(&init),
        "ipc-names" => names_scenario(&init),
        "console" => console(&init),
        "ipc-wide" => wide(&init),
        "memd" => memd_scenario(&init),
        "memd-swap" => memd_swap_scenario(&init),
        "shm" => shm_scenario(&init, names),
        "shm-stream" => shm_pair(&init, names, "stream", "256").and_then(|()| {
            expect("memd back to its baseline", init.run("memtest", "baseline"), TaskEnd::Exited(0))
        }),
        "shm-pressure" => shm_pair(&init, names, "pressure", "16").and_then(|()| {
            expect("memd back to its baseline", init.run("memtest", "baseline"), TaskEnd::Exited(0))
        }),
        // memd is killed while a paged task runs: the kernel must stop the
        // machine (with its failure status; `cargo xtask test` checks it).
        "memd-death" => memd_death(&init),
        // The IPC figures with kernel-backed tasks, the disk's with its own
        // driver, then memd (with swap, through a new driver) and its faults.
        "bench" => bench(&init).and_then(|()| blk_bench(&init)).and_then(|()| {
            let names = start_memd(&init, true, "")?;
            expect("memd benchmarks", init.run("memtest", "bench"), TaskEnd::Exited(0))?;
            shm_pair(&init, names, "bench", "")
        }),
        "bench-smp" => bench_smp(&init, start.arg_value("cpus")),
        "blk-patterns" => blk_patterns(&init),
        "blk-persist" => blk_persist(&init, start.arg_value("boot").unwrap_or(0)),
        "blk-bad" => blk_bad(&init),
        "blk-readonly" => blk_readonly(&init),
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
