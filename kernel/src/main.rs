//! The alux kernel binary: boot, then a loop of entries from user mode.
//!
//! Layout: `arch/` is the x86_64 layer (boot, entry stubs, timer, serial);
//! `sched` holds the kernel state and the scheduler; `task` the task and
//! thread lifecycle; `syscalls` and `ipc_glue` the system call handlers;
//! `mm` kernel memory and user address spaces. The hardware-free logic is
//! the `kernel` library next to this file and the `alux_ipc` crate.
#![no_std]
#![no_main]

extern crate alloc;
extern crate alux_freestanding;

mod arch;
mod boot_info;
mod console;
mod devices;
mod fastpath;
mod ipc_glue;
mod irq_glue;
mod kmap;
mod mm;
mod pager;
mod sched;
mod syscalls;
mod task;
mod traps;

use alloc::vec::Vec;
use alux_abi::syscall::TaskEnd;
use arch::{cpu, entry, gdt, lapic, time};
use kernel::frame::FrameAllocator;

extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
    static boot_stack_top: u8;
}

/// Stops the machine after printing a message: for states that are kernel
/// bugs, never for anything a user task can cause.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    console::print_emergency(format_args!("\n[kernel] FATAL: {}\n", args));
    cpu::exit_qemu(alux_abi::syscall::SHUTDOWN_FAILURE)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(format_args!("panic: {}", info))
}

/// Prints what the kernel holds, for the end-of-run summary.
pub fn print_summary(k: &sched::Kernel) {
    kprintln!(
        "[kernel] summary: {} CPUs up, {} tasks, {} threads, {} IPC ends, frames {}/{}, heap {} bytes, {} ticks, {} switches, {} device interrupts, uptime {} ms",
        arch::smp::online(),
        k.tasks.len(),
        k.threads.len(),
        k.ipc.end_count(),
        k.frames.used(),
        k.frames.total(),
        mm::heap_used(),
        k.ticks + traps::IDLE_TICKS.load(core::sync::atomic::Ordering::Relaxed),
        k.switches,
        k.irq.delivered(),
        time::now_ns() / 1_000_000
    );
}

/// The end-of-run check of debug builds: `Ipc::audit` over the whole IPC
/// object model, whose result decides the run's status with the scenario's
/// own. Prints one line either way. Release builds skip it (`true`): the
/// audit walks every object, and benchmarks run the release kernel.
pub fn end_of_run_audit(k: &sched::Kernel) -> bool {
    if !cfg!(debug_assertions) {
        return true;
    }
    match k.ipc.audit() {
        Ok(()) => {
            kprintln!("[kernel] IPC audit: ok");
            true
        }
        Err(why) => {
            kprintln!("[kernel] IPC audit FAILED: {}", why);
            false
        }
    }
}

/// Init ended: stop the machine, successfully if it exited with 0 and the
/// end-of-run audit passed.
pub fn shutdown_after_init(k: &sched::Kernel, end: TaskEnd) -> ! {
    kprintln!("[kernel] init ended: {:?}", end);
    print_summary(k);
    let audit_ok = end_of_run_audit(k);
    let code = match end {
        TaskEnd::Exited(0) if audit_ok => alux_abi::syscall::SHUTDOWN_SUCCESS,
        _ => alux_abi::syscall::SHUTDOWN_FAILURE,
    };
    stop(code)
}

/// Stops the machine with `code` once every buffered console byte is out
/// (the test harness reads the verdict from the log).
pub fn stop(code: u64) -> ! {
    console::flush();
    cpu::exit_qemu(code)
}

/// The ACPI parser's view of physical memory: the direct map, refusing
/// anything beyond it.
struct DirectMapRead;

impl kernel::acpi::PhysRead for DirectMapRead {
    fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
        match phys.checked_add(buf.len() as u64) {
            Some(end) if end <= arch::DIRECT_MAP_SIZE => {
                // SAFETY: `[phys, end)` lies inside the direct map, which
                // maps all of it; ACPI tables are plain bytes the firmware
                // wrote before boot and nothing writes them now.
                let src = unsafe {
                    core::slice::from_raw_parts(arch::phys_to_virt(phys) as *const u8, buf.len())
                };
                buf.copy_from_slice(src);
                true
            }
            _ => false,
        }
    }
}

/// Reads the MADT and prints what it lists: the CPUs and I/O APICs that
/// SMP and user-space drivers will use. A machine without usable tables
/// still boots (one CPU, no routed device interrupts).
fn describe_acpi(rsdp: Option<u64>) -> Option<kernel::acpi::Madt> {
    let Some(rsdp) = rsdp else {
        kprintln!("[kernel] ACPI: no RSDP found");
        return None;
    };
    match kernel::acpi::madt(&DirectMapRead, rsdp) {
        Ok(madt) => {
            let enabled = madt.cpus.iter().filter(|c| c.enabled).count();
            kprint!("[kernel] ACPI: {} CPUs ({} enabled; APIC IDs", madt.cpus.len(), enabled);
            for c in &madt.cpus {
                kprint!(" {}", c.apic_id);
            }
            kprint!(")");
            for a in &madt.io_apics {
                kprint!(", I/O APIC {} at {:#x} from GSI {}", a.id, a.address, a.gsi_base);
            }
            kprintln!(", {} ISA overrides", madt.overrides.len());
            Some(madt)
        }
        Err(e) => {
            kprintln!("[kernel] ACPI: {}", e);
            None
        }
    }
}

/// Finds a file in the boot module (a tar archive).
fn find_in_boot_module(module: &[u8], name: &str) -> Option<Vec<u8>> {
    let archive = tar_no_std::TarArchiveRef::new(module).ok()?;
    archive.entries().find(|e| e.filename().as_str().ok() == Some(name)).map(|e| e.data().to_vec())
}

/// The first Rust code, called by `boot.s` on the boot stack with paging,
/// SSE and long mode on and interrupts off.
#[no_mangle]
extern "C" fn kernel_entry(start_info: u64) -> ! {
    arch::serial::init();
    mm::init_heap();
    kprintln!("[kernel] alux booting");
    let Some(info) = boot_info::parse(start_info) else {
        fatal(format_args!("not started through PVH (bad start-info magic)"))
    };

    // Linker-script symbols: only their addresses are used.
    let (kstart, kend, stack_top) = (
        &raw const __kernel_phys_start as u64,
        &raw const __kernel_phys_end as u64,
        &raw const boot_stack_top as u64,
    );
    let mut frames = FrameAllocator::new(&info.memory);
    frames.reserve(0, 0x10_0000);
    frames.reserve(kstart, kend);
    let module = info.module.unwrap_or((0, 0));
    if module.1 > 0 {
        frames.reserve(module.0, module.0 + module.1);
    }
    // Frames beyond the direct map are unreachable: never hand them out.
    frames.reserve(arch::DIRECT_MAP_SIZE, u64::MAX);

    gdt::init(stack_top);
    entry::init(stack_top);
    let on = cpu::enable_protections();
    // The final kernel half, W^X; every address space copies it.
    let kernel_root = kmap::install(&mut frames);
    arch::smp::set_kernel_root(kernel_root);
    if info.cmdline.split(|&b| b == b' ').any(|w| w == b"selftest=wx") {
        kmap::self_test();
    }
    time::init();
    lapic::init();
    // CR0 and CR4 are final now: record CR0 with TS for the entry stubs.
    let xsave = entry::init_fpu();
    kprintln!(
        "[kernel] vector state: {}, saved only when another thread needs the registers",
        if xsave { "xsaveopt/xrstor (x87, SSE)" } else { "fxsave/fxrstor" }
    );
    let state = |b| if b { "on" } else { "absent" };
    kprintln!(
        "[kernel] memory: {} frames free ({} MiB); TSC {} MHz; LAPIC timer {} kHz; SMEP {}, SMAP {}, UMIP {}; LDT null: {}",
        frames.total(),
        (frames.total() * 4096) >> 20,
        time::tsc_hz() / 1_000_000,
        lapic::timer_hz() / 1000,
        state(on.smep),
        state(on.smap),
        state(on.umip),
        cpu::ldt_selector() == 0
    );

    let madt = describe_acpi(info.rsdp);
    let cpus: Vec<u32> = madt
        .as_ref()
        .map(|m| m.cpus.iter().filter(|c| c.enabled).map(|c| c.apic_id).collect())
        .unwrap_or_default();
    // `smp_silent=ID`: never send that CPU its startup IPIs, so that it
    // cannot answer (the test of a CPU that does not come up).
    let silent = info.cmdline.split(|&b| b == b' ').find_map(|w| {
        let v = w.strip_prefix(b"smp_silent=")?;
        core::str::from_utf8(v).ok()?.parse::<u32>().ok()
    });
    arch::smp::start_aps(&cpus, kernel_root, silent);
    let mut kernel_mmio = alloc::vec![lapic::base_phys()];
    if let Some(m) = &madt {
        kernel_mmio.extend(m.io_apics.iter().map(|a| a.address as u64));
    }
    let device_memory_forbidden = devices::device_memory_forbidden(&info.memory, &kernel_mmio);
    let irq = irq_glue::Irqs::new(madt);

    let mut k = sched::Kernel::new(
        frames,
        alux_ipc::Ipc::new(Default::default()),
        irq,
        device_memory_forbidden,
        kernel_root,
        module,
    );
    k.pool_frames = pager::pool_frames_from_cmdline(&info.cmdline, k.frames.free_count());
    // SAFETY: the module's physical range is RAM reserved above, inside the
    // direct map, and nothing writes it.
    let module_bytes = unsafe {
        core::slice::from_raw_parts(arch::phys_to_virt(module.0) as *const u8, module.1 as usize)
    };
    let Some(init_image) = find_in_boot_module(module_bytes, "init") else {
        fatal(format_args!("no `init` in the boot module"))
    };
    let init = k
        .spawn(task::SpawnRequest {
            image: &init_image,
            args: &info.cmdline,
            uid: 0,
            privileged: true,
            parent: None,
            with_boot_module: true,
        })
        .unwrap_or_else(|e| fatal(format_args!("cannot start init: {}", e)));
    drop(init_image);
    k.init = Some(init);
    kprintln!("[kernel] init is task {}; boot took {} us", init, time::now_ns() / 1000);
    sched::install(k);
    // The other CPUs may have started init already: this one runs whatever
    // it finds (`enter_user` leaves through `iretq`, right for any context).
    sched::dispatch(sched::lock());
    entry::enter_user()
}
