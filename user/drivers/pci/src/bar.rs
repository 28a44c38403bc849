//! Base address registers: what each one maps (I/O ports or memory, 32 or
//! 64 bits wide, prefetchable) and how large it is.
//!
//! The size is probed the standard way: decoding is switched off in the
//! command register, all-ones are written to the BAR, the read-back mask
//! gives the size, and both the BAR and the command register are restored
//! before returning (on error paths too), so a probe leaves configuration
//! space as it found it.

use crate::{regs, Address, ConfigAccess, Error, Header};

/// The most BAR slots a header has (type 0).
pub const BAR_SLOTS: usize = 6;

/// One decoded BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// A range of I/O ports.
    Io {
        /// The first port.
        port: u32,
        /// How many ports (a power of two).
        size: u32,
    },
    /// A range of physical memory (MMIO).
    Memory {
        /// The physical address of the first byte.
        address: u64,
        /// How many bytes (a power of two).
        size: u64,
        /// Reads have no side effects (may be mapped write-combining).
        prefetchable: bool,
        /// A 64-bit BAR: it also takes the next slot.
        wide: bool,
    },
}

impl Bar {
    /// The slots this BAR takes (2 for a 64-bit memory BAR, else 1).
    pub const fn slots(&self) -> usize {
        match self {
            Bar::Memory { wide: true, .. } => 2,
            _ => 1,
        }
    }
}

fn bar_offset(index: u8) -> u8 {
    regs::BAR0 + 4 * index
}

/// Writes all-ones to the BAR at `offset`, returns what reads back, and
/// restores the original value.
fn probe<C: ConfigAccess + ?Sized>(
    access: &mut C,
    address: Address,
    offset: u8,
    original: u32,
) -> u32 {
    access.write32(address, offset, u32::MAX);
    let mask = access.read32(address, offset);
    access.write32(address, offset, original);
    mask
}

/// Decodes BAR `index` of the function at `address` (whose header is
/// `header`). `Ok(None)` for an unimplemented BAR (all size bits read back
/// zero). For a 64-bit BAR the next index is its high half: do not ask for
/// it separately ([`bars`] skips it).
pub fn bar<C: ConfigAccess + ?Sized>(
    access: &mut C,
    address: Address,
    header: &Header,
    index: u8,
) -> Result<Option<Bar>, Error> {
    bar_and_slots(access, address, header, index).map(|(bar, _)| bar)
}

/// [`bar`], and how many slots the BAR takes even when unimplemented (a
/// 64-bit BAR whose size bits all read zero still owns the next slot).
fn bar_and_slots<C: ConfigAccess + ?Sized>(
    access: &mut C,
    address: Address,
    header: &Header,
    index: u8,
) -> Result<(Option<Bar>, u8), Error> {
    if index >= header.kind.bar_slots() {
        return Err(Error::NoSuchBar { index });
    }
    let offset = bar_offset(index);
    let command = access.read32(address, regs::COMMAND_STATUS) as u16;
    let off = command & !(regs::COMMAND_IO | regs::COMMAND_MEMORY);
    access.write32(address, regs::COMMAND_STATUS, off as u32);
    let result = decode(access, address, header, index, offset);
    access.write32(address, regs::COMMAND_STATUS, command as u32);
    result
}

fn decode<C: ConfigAccess + ?Sized>(
    access: &mut C,
    address: Address,
    header: &Header,
    index: u8,
    offset: u8,
) -> Result<(Option<Bar>, u8), Error> {
    let low = access.read32(address, offset);
    if low & 1 == 1 {
        let probe_value = probe(access, address, offset, low);
        let mut mask = probe_value & !0x3;
        if mask == 0 {
            return Ok((None, 1));
        }
        // 16-bit I/O decoders read back zeros in the high half.
        if mask & 0xffff_0000 == 0 {
            mask |= 0xffff_0000;
        }
        let size = (!mask).wrapping_add(1);
        if !size.is_power_of_two() {
            return Err(Error::BadBar { index, probe: probe_value });
        }
        return Ok((Some(Bar::Io { port: low & !0x3, size }), 1));
    }
    let prefetchable = low & 0x8 != 0;
    match (low >> 1) & 0x3 {
        0 => {
            let probe_value = probe(access, address, offset, low);
            let mask = probe_value & !0xf;
            if mask == 0 {
                return Ok((None, 1));
            }
            let size = (!mask).wrapping_add(1);
            if !size.is_power_of_two() {
                return Err(Error::BadBar { index, probe: probe_value });
            }
            let bar = Bar::Memory {
                address: (low & !0xf) as u64,
                size: size as u64,
                prefetchable,
                wide: false,
            };
            Ok((Some(bar), 1))
        }
        2 => {
            if index + 1 >= header.kind.bar_slots() {
                return Err(Error::Bar64InLastSlot { index });
            }
            let high_offset = offset + 4;
            let high = access.read32(address, high_offset);
            let probe_low = probe(access, address, offset, low);
            let probe_high = probe(access, address, high_offset, high);
            let mask = (probe_high as u64) << 32 | (probe_low & !0xf) as u64;
            if mask == 0 {
                return Ok((None, 2));
            }
            let size = (!mask).wrapping_add(1);
            if !size.is_power_of_two() {
                return Err(Error::BadBar { index, probe: probe_low });
            }
            let base = (high as u64) << 32 | (low & !0xf) as u64;
            Ok((Some(Bar::Memory { address: base, size, prefetchable, wide: true }), 2))
        }
        _ => Err(Error::BadBar { index, probe: low }),
    }
}

/// Decodes every BAR of a function: entry `i` is BAR `i`, `None` for an
/// unimplemented slot, the high half of a 64-bit BAR, or a slot the header
/// type lacks. Stops at the first malformed BAR.
pub fn bars<C: ConfigAccess + ?Sized>(
    access: &mut C,
    address: Address,
    header: &Header,
) -> Result<[Option<Bar>; BAR_SLOTS], Error> {
    let mut out = [None; BAR_SLOTS];
    let mut index = 0;
    while index < header.kind.bar_slots() {
        let (found, slots) = bar_and_slots(access, address, header, index)?;
        out[index as usize] = found;
        index += slots;
    }
    Ok(out)
}
