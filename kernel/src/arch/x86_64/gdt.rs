//! The GDT with user and kernel segments and the TSS with its interrupt
//! stacks (IST). Segment order is fixed by `syscall`/`sysret` (see STAR in
//! `entry.rs`): kernel code, kernel data, user data, user code, TSS. There
//! is no LDT: LDTR is loaded with the null selector.

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

static CRITICAL_STACK: Stack = Stack(core::cell::UnsafeCell::new([0; IST_STACK_SIZE]));
static GENERAL_STACK: Stack = Stack(core::cell::UnsafeCell::new([0; IST_STACK_SIZE]));

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<GlobalDescriptorTable> = Once::new();

fn stack_top(s: &'static Stack) -> VirtAddr {
    VirtAddr::new(s.0.get() as u64 + IST_STACK_SIZE as u64)
}

/// Builds and loads the GDT and TSS. `kernel_stack_top` is the stack the
/// CPU would use for ring 3 -> 0 transitions without IST (none today).
pub fn init(kernel_stack_top: u64) {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[IST_CRITICAL as usize - 1] = stack_top(&CRITICAL_STACK);
        tss.interrupt_stack_table[IST_GENERAL as usize - 1] = stack_top(&GENERAL_STACK);
        tss.privilege_stack_table[0] = VirtAddr::new(kernel_stack_top);
        tss
    });
    let mut selectors = [None; 5];
    let gdt = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        selectors[0] = Some(gdt.append(Descriptor::kernel_code_segment()));
        selectors[1] = Some(gdt.append(Descriptor::kernel_data_segment()));
        selectors[2] = Some(gdt.append(Descriptor::user_data_segment()));
        selectors[3] = Some(gdt.append(Descriptor::user_code_segment()));
        selectors[4] = Some(gdt.append(Descriptor::tss_segment(tss)));
        gdt
    });
    gdt.load();
    let [Some(kcode), Some(kdata), Some(udata), Some(ucode), Some(tss_sel)] = selectors else {
        unreachable!("the GDT is built once, here")
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
    // No LDT: a selector with the table-indicator bit set faults.
    super::cpu::load_null_ldt();
}
