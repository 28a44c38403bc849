//! The GDTs with user and kernel segments and the TSSs with their interrupt
//! stacks (IST) and I/O permission bitmaps: one of each per CPU (a TSS is
//! busy while loaded, and each CPU needs its own interrupt stacks). Segment
//! order is fixed by `syscall`/`sysret` (see STAR in `entry.rs`): kernel
//! code, kernel data, user data, user code, TSS; the same on every CPU.
//! There is no LDT: LDTR is loaded with the null selector.
//!
//! The TSS's I/O bitmap is the running task's: a task with granted ports
//! has its bitmap copied in when one of its threads is loaded (only when
//! another task's bitmap was there), and every other task runs with the
//! bitmap switched off (its offset past the TSS limit: every port denied).

use core::cell::UnsafeCell;
use kernel::claims::{IoBitmap, IO_BITMAP_BYTES};
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based in the IDT) for double fault, NMI and machine check.
pub const IST_CRITICAL: u16 = 1;
/// IST slot for every other exception and interrupt.
pub const IST_GENERAL: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

/// An interrupt stack: only the CPU writes it, so it must live in writable
/// memory (an `UnsafeCell`), not in read-only data as a plain immutable
/// static would.
#[repr(C, align(16))]
struct Stack(core::cell::UnsafeCell<[u8; IST_STACK_SIZE]>);

// SAFETY: Rust code never reads or writes the stacks; only the CPU does,
// when it delivers an interrupt or exception.
unsafe impl Sync for Stack {}

/// The most CPUs the kernel runs on; more in the MADT are left out.
pub const MAX_CPUS: usize = alux_abi::syscall::MAX_CPUS;

static CRITICAL_STACKS: [Stack; MAX_CPUS] =
    [const { Stack(core::cell::UnsafeCell::new([0; IST_STACK_SIZE])) }; MAX_CPUS];
static GENERAL_STACKS: [Stack; MAX_CPUS] =
    [const { Stack(core::cell::UnsafeCell::new([0; IST_STACK_SIZE])) }; MAX_CPUS];

/// The TSS followed by its I/O bitmap, as the CPU reads them: the bitmap
/// starts at `iomap_base` and ends with a byte of all ones.
#[repr(C)]
struct TssWithIoMap {
    tss: TaskStateSegment,
    io_map: [u8; IO_BITMAP_BYTES + 1],
}

/// The TSS, written only under the kernel lock (and read by the CPU).
struct TssCell(UnsafeCell<TssWithIoMap>);

// SAFETY: the TSS is changed only at boot and, afterwards, under the kernel
// lock (`load_io_bitmap`); the CPU reads it on privilege changes and I/O
// instructions.
unsafe impl Sync for TssCell {}

static TSS: [TssCell; MAX_CPUS] = [const {
    TssCell(UnsafeCell::new(TssWithIoMap {
        tss: TaskStateSegment::new(),
        io_map: [0xff; IO_BITMAP_BYTES + 1],
    }))
}; MAX_CPUS];
/// `iomap_base` when the bitmap is on: right after the TSS proper.
const IO_MAP_ON: u16 = core::mem::size_of::<TaskStateSegment>() as u16;
/// `iomap_base` when the bitmap is off: past the TSS limit, so the CPU
/// denies every port.
const IO_MAP_OFF: u16 = u16::MAX;
static GDT: [Once<GlobalDescriptorTable>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Turns the I/O bitmap already in this CPU's TSS on or off.
pub fn set_io_bitmap_enabled(on: bool) {
    let t = TSS[super::entry::cpu_index()].0.get();
    // SAFETY: as in `load_io_bitmap`.
    unsafe { (*t).tss.iomap_base = if on { IO_MAP_ON } else { IO_MAP_OFF } }
}

/// Switches this CPU's I/O bitmap: `Some(map)` copies `map` in and turns
/// it on, `None` turns it off (every port denied). Called under the kernel
/// lock when a thread of another task is loaded.
pub fn load_io_bitmap(map: Option<&IoBitmap>) {
    let t = TSS[super::entry::cpu_index()].0.get();
    // SAFETY: only this CPU writes its TSS, under the kernel lock, and no
    // reference to it is alive (only raw pointers are used after boot);
    // the CPU reads the new bitmap at the next I/O instruction.
    unsafe {
        match map {
            Some(m) => {
                (&mut (*t).io_map)[..IO_BITMAP_BYTES].copy_from_slice(m.bytes());
                (*t).tss.iomap_base = IO_MAP_ON;
            }
            None => (*t).tss.iomap_base = IO_MAP_OFF,
        }
    }
}

fn stack_top(s: &'static Stack) -> VirtAddr {
    VirtAddr::new(s.0.get() as u64 + IST_STACK_SIZE as u64)
}

/// Builds and loads the boot CPU's GDT and TSS. `kernel_stack_top` is the
/// stack the CPU would use for ring 3 -> 0 transitions without IST.
pub fn init(kernel_stack_top: u64) {
    init_cpu(0, kernel_stack_top)
}

/// Builds and loads CPU `cpu`'s GDT and TSS (each CPU once, on itself).
pub fn init_cpu(cpu: usize, kernel_stack_top: u64) {
    let t = TSS[cpu].0.get();
    // SAFETY: called once per CPU, on that CPU, before anything else uses
    // its TSS; the references made here end before `init_cpu` returns (the
    // descriptor keeps only the address and limit).
    let (tss, io_map): (&'static TaskStateSegment, &'static [u8]) = unsafe {
        let w = &mut *t;
        w.tss.interrupt_stack_table[IST_CRITICAL as usize - 1] = stack_top(&CRITICAL_STACKS[cpu]);
        w.tss.interrupt_stack_table[IST_GENERAL as usize - 1] = stack_top(&GENERAL_STACKS[cpu]);
        w.tss.privilege_stack_table[0] = VirtAddr::new(kernel_stack_top);
        w.tss.iomap_base = IO_MAP_ON;
        (&(*t).tss, &(*t).io_map)
    };
    let tss_descriptor = match Descriptor::tss_segment_with_iomap(tss, io_map) {
        Ok(d) => d,
        Err(e) => crate::fatal(format_args!("TSS I/O map layout: {:?}", e)),
    };
    let mut selectors = [None; 5];
    let gdt = GDT[cpu].call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        selectors[0] = Some(gdt.append(Descriptor::kernel_code_segment()));
        selectors[1] = Some(gdt.append(Descriptor::kernel_data_segment()));
        selectors[2] = Some(gdt.append(Descriptor::user_data_segment()));
        selectors[3] = Some(gdt.append(Descriptor::user_code_segment()));
        selectors[4] = Some(gdt.append(tss_descriptor));
        gdt
    });
    gdt.load();
    let [Some(kcode), Some(kdata), Some(udata), Some(ucode), Some(tss_sel)] = selectors else {
        unreachable!("each GDT is built once, here")
    };
    debug_assert_eq!(udata.0 as u64, super::context::USER_SS);
    debug_assert_eq!(ucode.0 as u64, super::context::USER_CS);
    // SAFETY: the selectors index the GDT just loaded, whose descriptors
    // are the flat 64-bit kernel segments and a valid TSS.
    unsafe {
        CS::set_reg(kcode);
        DS::set_reg(kdata);
        ES::set_reg(kdata);
        SS::set_reg(kdata);
        load_tss(tss_sel);
    }
    // SAFETY: this CPU's own TSS, not yet used by anybody else.
    unsafe { (*t).tss.iomap_base = IO_MAP_OFF };
    // No LDT: a selector with the table-indicator bit set faults.
    super::cpu::load_null_ldt();
}
