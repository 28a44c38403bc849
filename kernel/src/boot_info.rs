//! Reads the PVH `hvm_start_info` block QEMU hands the kernel: the memory
//! map, the command line, the boot module (the initrd) and where the ACPI
//! tables start (the RSDP).

use crate::arch::phys_to_virt;
use alloc::vec::Vec;
use kernel::frame::{MemoryRegion, RegionKind};

const START_INFO_MAGIC: u32 = 0x336e_c578;

#[repr(C)]
#[derive(Clone, Copy)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// What the kernel keeps from the boot information.
pub struct BootInfo {
    /// The physical memory map.
    pub memory: Vec<MemoryRegion>,
    /// The kernel command line (`-append`), possibly empty.
    pub cmdline: Vec<u8>,
    /// Physical address and size of the boot module, if any.
    pub module: Option<(u64, u64)>,
    /// Physical address of the ACPI RSDP, if one was found.
    pub rsdp: Option<u64>,
}

/// Looks for the RSDP where firmware without PVH's `rsdp_paddr` leaves it:
/// on a 16-byte boundary in the BIOS area `0xe0000..0x100000`. Only the
/// signature is matched here; the ACPI parser checks the rest.
fn find_rsdp() -> Option<u64> {
    (0xe_0000u64..0x10_0000).step_by(16).find(|&a| read_phys::<[u8; 8]>(a) == *b"RSD PTR ")
}

fn read_phys<T: Copy>(phys: u64) -> T {
    // SAFETY: callers pass physical addresses from the start-info block,
    // which QEMU places in RAM below 4 GiB, inside the direct map; the
    // structures are plain data with no invalid bit patterns.
    unsafe { (phys_to_virt(phys) as *const T).read_unaligned() }
}

fn c_string(phys: u64, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if phys == 0 {
        return out;
    }
    while out.len() < max {
        let b: u8 = read_phys(phys + out.len() as u64);
        if b == 0 {
            break;
        }
        out.push(b);
    }
    out
}

/// Parses the block at `phys`. Returns `None` if the magic is wrong (the
/// kernel was not started through PVH).
pub fn parse(phys: u64) -> Option<BootInfo> {
    let info: StartInfo = read_phys(phys);
    if info.magic != START_INFO_MAGIC {
        return None;
    }
    let mut memory = Vec::new();
    if info.version >= 1 {
        for i in 0..info.memmap_entries.min(128) as u64 {
            let e: MemmapEntry =
                read_phys(info.memmap_paddr + i * core::mem::size_of::<MemmapEntry>() as u64);
            memory.push(MemoryRegion::new(e.addr, e.size, RegionKind::from_e820(e.kind)));
        }
    }
    let module = (info.nr_modules > 0).then(|| {
        let m: ModlistEntry = read_phys(info.modlist_paddr);
        (m.paddr, m.size)
    });
    let rsdp = if info.rsdp_paddr != 0 { Some(info.rsdp_paddr) } else { find_rsdp() };
    Some(BootInfo { memory, cmdline: c_string(info.cmdline_paddr, 1024), module, rsdp })
}
