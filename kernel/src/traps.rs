//! Interrupts and exceptions: the Rust side of the IDT stubs.
//!
//! A fault in user mode kills only the faulting task; a fault in the kernel
//! is a kernel bug and stops the machine with the registers printed. The
//! one exception is the page fault an armed boot self-test probe expects
//! (`arch::probe`), which resumes after the probe.

use crate::arch::context::TrapFrame;
use crate::arch::{cpu, lapic, probe};
use crate::sched;
use alux_abi::syscall::{Fault, TaskEnd};

/// Timer interrupts taken while the kernel idled (the kernel lock is not
/// held then, so they are counted here).
pub static IDLE_TICKS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// An interrupt or exception taken in user mode. `frame` lies on the IST
/// stack, which the next interrupt reuses (e.g. while `dispatch` idles): it
/// is copied into the thread's context first and never read after that.
#[no_mangle]
extern "C" fn trap_from_user(frame: &TrapFrame) -> u64 {
    if cpu::rflags() & cpu::RFLAGS_KERNEL_CLEAR != 0 {
        crate::fatal(format_args!("entered from user mode with DF or AC set"));
    }
    // Another CPU may be waiting for this one to leave user mode.
    crate::arch::smp::answer();
    let mut k = sched::lock();
    if let Some(cur) = k.current() {
        if let Some(t) = k.thread_mut(cur) {
            t.ctx.regs = frame.regs();
            t.from_syscall = false;
        }
    }
    let vector = frame.vector as u8;
    match vector {
        // An NMI is nobody's fault: the interrupted thread just goes on.
        2 => {}
        0..=31 => {
            let fault = Fault::from_vector(vector);
            let detail = if fault == Fault::PageFault { cpu::read_cr2() } else { frame.rip };
            let paged = match k.current() {
                // A paged task's page fault goes to the memory daemon.
                Some(cur) if fault == Fault::PageFault => {
                    crate::pager::cpu_fault(&mut k, cur, detail, frame.error)
                }
                _ => false,
            };
            if let (false, Some(cur)) = (paged, k.current()) {
                let task = k.thread(cur).map(|t| t.task);
                if let Some(task) = task {
                    crate::kprintln!(
                        "[kernel] task {} killed: {} (vector {}, error {:#x}) at rip {:#x}, address {:#x}",
                        task,
                        fault.name(),
                        vector,
                        frame.error,
                        frame.rip,
                        detail
                    );
                    k.end_task(task, TaskEnd::Faulted(fault, detail));
                }
            }
        }
        lapic::TIMER_VECTOR => {
            lapic::end_of_interrupt();
            k.on_timer_tick();
        }
        lapic::SPURIOUS_VECTOR => {}
        // Another CPU's request (answered above) or wake-up: the dispatch
        // below looks at this CPU's run queue.
        lapic::IPI_VECTOR => lapic::end_of_interrupt(),
        v if crate::irq_glue::on_vector(v) => crate::ipc_glue::deliver_wakeups(&mut k),
        _ => lapic::end_of_interrupt(),
    }
    sched::dispatch(k)
}

/// An interrupt or exception taken in kernel mode: only interrupts while
/// idling are expected.
#[no_mangle]
extern "C" fn trap_from_kernel(frame: &mut TrapFrame) {
    match frame.vector as u8 {
        lapic::TIMER_VECTOR => {
            // Taken while idling; the idle loop handles expired timers.
            lapic::end_of_interrupt();
            IDLE_TICKS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
        // The NMI arm must stay free of SSE: an NMI may arrive while CR0.TS
        // is clear with a user thread's vector state live in the registers
        // (`entry::fpu_release`, `return_to_user`), or between the two
        // `swapgs` of a selector load with TS set (`Selectors::load`).
        lapic::SPURIOUS_VECTOR | 2 => {}
        // Another CPU's request or wake-up, taken while idling: answered
        // here (the lock is not taken); the idle loop then looks at the
        // run queue.
        lapic::IPI_VECTOR => {
            crate::arch::smp::answer();
            lapic::end_of_interrupt();
        }
        // A device line: noted, settled by the idle loop.
        v if crate::irq_glue::on_vector(v) => {}
        v if v >= 32 => lapic::end_of_interrupt(),
        14 if probe::recover(frame, cpu::read_cr2()) => {}
        v => {
            crate::console::print_emergency(format_args!(
                "\n[kernel] FATAL: exception {} in kernel mode, error {:#x}, cr2 {:#x}\n{:#x?}\n",
                v,
                frame.error,
                cpu::read_cr2(),
                frame
            ));
            cpu::exit_qemu(alux_abi::syscall::SHUTDOWN_FAILURE);
        }
    }
}
