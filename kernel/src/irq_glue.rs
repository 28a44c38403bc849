//! Hardware interrupts for user-space drivers: a line opened with
//! `KernelEndOpen(interrupt(line))` is routed through the I/O APIC; each
//! interrupt masks the line and signals the driver's end; the driver's
//! signal on its end acknowledges and unmasks it; closing the end (or the
//! driver's death) masks it and drops what was pending.
//!
//! It carries out `kernel::irq`'s rules and owns no rule itself. The
//! interrupt handler runs with or without the kernel lock (a device may
//! interrupt the idle loop, which runs unlocked), so it only masks the
//! input, notes the line in [`PENDING`] and ends the interrupt; the rest
//! happens in [`settle`], under the lock.

use crate::arch::{ioapic, lapic};
use crate::sched::Kernel;
use alux_abi::ipc::Handle;
use alux_abi::{Error, ThreadId};
use alux_ipc::KernelEndId;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::acpi::{Madt, Polarity, Route, Trigger};
use kernel::irq::{Action, Lines, LINES};

/// The vector of line 0; line `n` raises `VECTOR_BASE + n`.
pub const VECTOR_BASE: u8 = 0x40;
/// Lines with a vector of their own: `VECTOR_BASE..0xff` (0xff is the
/// LAPIC's spurious vector).
pub const ROUTABLE_LINES: usize = (lapic::SPURIOUS_VECTOR - VECTOR_BASE) as usize;

/// Lines raised and not yet settled, one bit each.
static PENDING: [AtomicU64; LINES / 64] = [const { AtomicU64::new(0) }; LINES / 64];
/// Whether any bit of [`PENDING`] may be set.
static ANY_PENDING: AtomicBool = AtomicBool::new(false);
/// Each line's I/O APIC input while it is routed: `(io_apic << 8 | pin) + 1`,
/// 0 when not routed. Read by the interrupt handler.
static INPUT: [AtomicU32; LINES] = [const { AtomicU32::new(0) }; LINES];

/// The interrupt state behind the kernel lock.
pub struct Irqs {
    lines: Lines<KernelEndId>,
    madt: Option<Madt>,
    /// `Ipc::kernel_sides_closed` when last looked at.
    closed_seen: u64,
}

impl Irqs {
    /// No line open; `madt` describes the interrupt controllers (none
    /// without ACPI, and then no line can be opened).
    pub fn new(madt: Option<Madt>) -> Self {
        if let Some(m) = &madt {
            ioapic::init(m);
        }
        Irqs { lines: Lines::new(), madt, closed_seen: 0 }
    }

    /// Interrupts delivered to drivers so far.
    pub fn delivered(&self) -> u64 {
        self.lines.delivered()
    }

    /// Where `line` arrives. Lines 0..16 are ISA lines, routed through the
    /// MADT's overrides (edge, active high unless overridden); higher lines
    /// are GSIs of PCI devices (level, active low).
    fn route(&self, line: usize) -> Option<Route> {
        if line >= ROUTABLE_LINES {
            return None;
        }
        let madt = self.madt.as_ref()?;
        if line < 16 {
            madt.isa_route(line as u8, ioapic::pins)
        } else {
            madt.gsi_route(line as u32, Polarity::Low, Trigger::Level, ioapic::pins)
        }
    }
}

/// Called by the interrupt handlers for every vector of a device line,
/// with or without the kernel lock: masks the line's input, notes it and
/// ends the interrupt. Returns false if `vector` is not a line's.
pub fn on_vector(vector: u8) -> bool {
    let Some(line) = vector.checked_sub(VECTOR_BASE).map(usize::from) else { return false };
    if line >= ROUTABLE_LINES {
        return false;
    }
    let input = INPUT[line].load(Ordering::Relaxed);
    if input != 0 {
        let input = input - 1;
        ioapic::set_masked((input >> 8) as usize, input & 0xff, true);
    }
    PENDING[line / 64].fetch_or(1 << (line % 64), Ordering::Relaxed);
    ANY_PENDING.store(true, Ordering::Release);
    lapic::end_of_interrupt();
    true
}

/// `KernelEndOpen(interrupt(line))`: opens the kernel end and routes the
/// line to it, unmasked. Errors: those of `Ipc::kernel_end_open`
/// (`NotPrivileged`, `Busy` if the line is open, limits), and
/// `InvalidArgument` if no interrupt controller input carries the line.
pub fn open(k: &mut Kernel, caller: ThreadId, kind: u32) -> Result<Handle, Error> {
    let line = ((kind >> 8) & 0xff) as usize;
    // Privilege first, so an unprivileged caller learns nothing of lines.
    if !k.thread(caller).and_then(|t| k.task(t.task)).is_some_and(|t| t.privileged) {
        return Err(Error::NotPrivileged);
    }
    let route = k.irq.route(line).ok_or(Error::InvalidArgument)?;
    // Two lines can reach the same input (ISA line 0 is overridden to GSI
    // 2, and line 2 is GSI 2 too): one owner per input, or the second would
    // take the first's vector and mask it on close.
    let input = ((route.io_apic as u32) << 8 | route.pin) + 1;
    if INPUT.iter().any(|i| i.load(Ordering::Relaxed) == input) {
        return Err(Error::Busy);
    }
    let (handle, end) = k.ipc.kernel_end_open(caller, kind)?;
    match k.irq.lines.open(line, end, true) {
        Ok(_) => {
            INPUT[line].store(input, Ordering::Relaxed);
            ioapic::program(&route, VECTOR_BASE + line as u8, lapic::id(), false);
            Ok(handle)
        }
        Err(_) => {
            // The IPC core allows one end per line, so this cannot happen;
            // give the end back rather than leave it half-open.
            let _ = k.ipc.kernel_end_close(end);
            Err(Error::Busy)
        }
    }
}

/// Whether [`settle`] has anything to do: a cheap test for the paths that
/// run after every IPC call.
#[inline]
pub fn has_work(k: &Kernel) -> bool {
    ANY_PENDING.load(Ordering::Acquire)
        || k.ipc.kernel_signals_pending()
        || k.ipc.kernel_sides_closed() != k.irq.closed_seen
}

fn carry_out(line: usize, action: Action<KernelEndId>, k: &mut Kernel) {
    let input = INPUT[line].load(Ordering::Relaxed);
    let (io_apic, pin) = (((input.wrapping_sub(1)) >> 8) as usize, input.wrapping_sub(1) & 0xff);
    match action {
        Action::None => {}
        Action::Unmask if input != 0 => ioapic::set_masked(io_apic, pin, false),
        Action::Mask if input != 0 => ioapic::set_masked(io_apic, pin, true),
        Action::Unmask | Action::Mask => {}
        Action::MaskAndSignal(end) => {
            // Masked by the handler already.
            let mut message = [0u8; 16];
            message[..8].copy_from_slice(&(line as u64).to_le_bytes());
            message[8..].copy_from_slice(&k.irq.lines.delivered().to_le_bytes());
            if k.ipc.kernel_write_signal(end, &message).is_ok() {
                // The driver should run soon, not after the current slice.
                k.request_resched();
            }
        }
    }
}

/// Delivers raised lines, takes acknowledgements (a task's signal on an
/// interrupt end) and closes lines whose end is gone. Under the kernel
/// lock; wakeups it causes are queued in the IPC core for the caller to
/// deliver.
pub fn settle(k: &mut Kernel) {
    if ANY_PENDING.swap(false, Ordering::Acquire) {
        for (word, bits) in PENDING.iter().enumerate() {
            let mut raised = bits.swap(0, Ordering::Relaxed);
            while raised != 0 {
                let line = word * 64 + raised.trailing_zeros() as usize;
                raised &= raised - 1;
                let action = k.irq.lines.interrupt(line);
                carry_out(line, action, k);
            }
        }
    }
    while let Some((end, _events)) = k.ipc.kernel_take_signal() {
        // Only interrupt ends are acknowledged; a signal on another kind of
        // kernel end (page faults: no consumer yet) is dropped.
        if let Some(line) = (0..ROUTABLE_LINES).find(|&l| k.irq.lines.owner(l) == Some(end)) {
            let action = k.irq.lines.ack(line, end);
            carry_out(line, action, k);
        }
    }
    let closed = k.ipc.kernel_sides_closed();
    if closed != k.irq.closed_seen {
        k.irq.closed_seen = closed;
        for (line, input) in INPUT.iter().enumerate().take(ROUTABLE_LINES) {
            if let Some(end) = k.irq.lines.owner(line) {
                if !k.ipc.kernel_end_is_open(end) {
                    let action = k.irq.lines.close(line, end);
                    carry_out(line, action, k);
                    input.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}
