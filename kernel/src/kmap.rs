//! The kernel's own mappings. At boot it builds the final kernel half from
//! the linker's section bounds, W^X (`kernel::paging::kernel_regions`: text
//! read-execute, read-only data read-only, writable data and the direct map
//! no-execute, no writable alias of kernel code), checks it, switches CR3
//! to it and logs it; with `selftest=wx` on the kernel command line it then
//! proves that the CPU enforces it (`self_test`).
//!
//! It must run before the first address space is created (every one copies
//! the kernel half from the root built here) and must never change the
//! kernel half afterwards.

use crate::arch::{self, cpu, phys_to_virt, probe};
use crate::{fatal, kprintln, mm};
use kernel::frame::FrameAllocator;
use kernel::paging::{self, KernelImage, PageCount};

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __data_end: u8;
}

/// Builds the kernel half, switches to it and returns its root (the
/// `kernel_root` every address space copies). Stops the machine if CR0.WP
/// or EFER.NXE is off or the tables cannot be built: both are boot bugs.
pub fn install(frames: &mut FrameAllocator) -> u64 {
    let wp = cpu::read_cr0() & cpu::CR0_WP != 0;
    let nxe = cpu::rdmsr(cpu::IA32_EFER) & cpu::EFER_NXE != 0;
    if !wp || !nxe {
        fatal(format_args!("CR0.WP ({wp}) and EFER.NXE ({nxe}) must be on (boot.s sets them)"));
    }
    // Linker-script symbols: only their addresses are used.
    let image = KernelImage {
        text: &raw const __text_start as u64,
        rodata: &raw const __text_end as u64,
        data: &raw const __rodata_end as u64,
        end: &raw const __data_end as u64,
        virt_offset: arch::KERNEL_VMA,
    };
    let regions = paging::kernel_regions(&image, arch::DIRECT_MAP_BASE, arch::DIRECT_MAP_SIZE)
        .unwrap_or_else(|e| fatal(format_args!("kernel layout {:x?}: {}", image, e)));
    let mut tables = 0;
    let (root, counts) =
        paging::build_kernel_root(&mut mm::PhysTables::new(frames, &mut tables), &regions)
            .unwrap_or_else(|e| fatal(format_args!("building the kernel's page tables: {}", e)));
    if let Some(va) = paging::wx_violation(&mm::PhysTablesRead, root) {
        fatal(format_args!("kernel page {:#x} is writable and executable", va));
    }
    // SAFETY: `root` maps every part of the kernel image (the code running
    // now, its stack in .bss, the heap, the GDT, IDT, TSS and IST stacks,
    // all statics) at the addresses it was linked for, and the direct map
    // (page tables, the LAPIC, boot data) as before. Only the boot identity
    // map is gone, and nothing uses it after `kernel_entry` began.
    unsafe { cpu::write_cr3(root) };
    for (r, PageCount { small, large }) in regions.iter().zip(counts) {
        kprintln!(
            "[kernel] map {:#x}-{:#x} {} {} ({} x 4 KiB, {} x 2 MiB)",
            r.va,
            r.va + r.len,
            r.permissions(),
            r.name,
            small,
            large
        );
    }
    kprintln!(
        "[kernel] kernel half W^X: {} page tables; no identity map; CR0.WP on, EFER.NXE on",
        tables
    );
    root
}

/// `ret`, in read-only data.
static RODATA_RET: u8 = 0xc3;
/// `ret`, in writable data.
static DATA_RET: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0xc3);

/// Page-fault error code bits.
const PF_PRESENT: u64 = 1;
const PF_WRITE: u64 = 1 << 1;
const PF_FETCH: u64 = 1 << 4;

/// The physical address of a kernel-image virtual address.
fn image_phys(va: u64) -> u64 {
    va - arch::KERNEL_VMA
}

/// Writes to kernel text and read-only data and executes data, stack,
/// heap and the direct map, each of which must fault with a protection
/// violation of the right kind; prints one line per probe. Stops the
/// machine if any access went through or faulted the wrong way, so that
/// a scenario running it cannot pass then.
pub fn self_test() {
    let text = self_test as *const () as u64;
    let rodata = core::hint::black_box(&RODATA_RET) as *const u8 as u64;
    let data = core::hint::black_box(&DATA_RET) as *const _ as u64;
    let stack = core::hint::black_box([0xc3u8; 16]);
    let heap = alloc::boxed::Box::new([0xc3u8; 16]);
    let writes = [
        ("text write", text),
        ("text write through the direct map", phys_to_virt(image_phys(text))),
        ("rodata write", rodata),
    ];
    let fetches = [
        ("rodata execute", rodata),
        ("data execute", data),
        ("stack execute", stack.as_ptr() as u64),
        ("heap execute", heap.as_ptr() as u64),
        ("direct map execute", phys_to_virt(image_phys(data))),
    ];
    for (what, addr) in writes {
        // SAFETY: every address is mapped readable kernel memory, and
        // writing its own byte back would be harmless.
        let caught = unsafe { probe::write_faults(addr) };
        check(what, addr, caught, PF_PRESENT | PF_WRITE);
    }
    for (what, addr) in fetches {
        // SAFETY: each address holds 0xc3 (`ret`).
        let caught = unsafe { probe::fetch_faults(addr) };
        check(what, addr, caught, PF_PRESENT | PF_FETCH);
    }
    kprintln!("[kernel] W^X self-test: passed ({} probes faulted)", writes.len() + fetches.len());
    drop(heap);
}

fn check(what: &str, addr: u64, caught: Option<probe::Caught>, bits: u64) {
    match caught {
        Some(c) if c.error & bits == bits && c.address == addr => {
            kprintln!(
                "[kernel] W^X self-test: {} faulted (error {:#x}, address {:#x})",
                what,
                c.error,
                c.address
            )
        }
        Some(c) => fatal(format_args!(
            "W^X self-test: {} at {:#x} faulted the wrong way: {:x?}",
            what, addr, c
        )),
        None => fatal(format_args!("W^X self-test: {} at {:#x} did not fault", what, addr)),
    }
}
