//! The capability list: a chain of entries in configuration space, each
//! with an ID and a pointer to the next. Decodes MSI, MSI-X and the virtio
//! vendor-specific capabilities (virtio 1.x, "Virtio Structure PCI
//! Capabilities"); others are reported by ID.
//!
//! The chain is device-controlled. A pointer into the standard header, an
//! entry visited twice, or an entry that runs past byte 255 ends the walk
//! with an [`Error`]; since there are only 48 dword slots above the header,
//! a walk reads at most 48 entries.

use crate::{read16, read8, regs, Address, ConfigAccess, Error, Header};

/// Capability ID of MSI.
pub const CAP_ID_MSI: u8 = 0x05;
/// Capability ID of vendor-specific capabilities (virtio uses these).
pub const CAP_ID_VENDOR: u8 = 0x09;
/// Capability ID of MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;
/// The PCI vendor ID of virtio devices.
pub const VIRTIO_VENDOR_ID: u16 = 0x1af4;

/// One capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Where it starts in configuration space.
    pub offset: u8,
    /// Its ID.
    pub id: u8,
    /// What it says, for the kinds this crate knows.
    pub kind: CapabilityKind,
}

/// The decoded body of a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityKind {
    /// Message-signalled interrupts.
    Msi(Msi),
    /// Message-signalled interrupts with a table in a BAR.
    MsiX(MsiX),
    /// A virtio structure.
    Virtio(VirtioCap),
    /// A vendor-specific capability of a function that is not a virtio
    /// device (on a virtio device, a vendor capability too short to be a
    /// virtio one is an error).
    Vendor,
    /// Any other ID.
    Other,
}

/// The MSI capability's message control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    /// MSI is enabled.
    pub enabled: bool,
    /// log2 of the vectors the function asks for (0–5).
    pub multiple_message_capable: u8,
    /// The message address register is 64 bits wide.
    pub address_64: bool,
    /// The function has per-vector mask bits.
    pub per_vector_masking: bool,
}

impl Msi {
    /// Bytes the capability takes, from its flags.
    pub const fn len(&self) -> u8 {
        let base = if self.address_64 { 14 } else { 10 };
        if self.per_vector_masking {
            base + 10
        } else {
            base
        }
    }
    /// Never empty: an MSI capability has at least 10 bytes.
    pub const fn is_empty(&self) -> bool {
        false
    }
}

/// The MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiX {
    /// Vectors in the table (1–2048).
    pub table_size: u16,
    /// MSI-X is enabled.
    pub enabled: bool,
    /// Every vector is masked by the function mask bit.
    pub function_mask: bool,
    /// The BAR holding the vector table (0–5).
    pub table_bar: u8,
    /// The table's offset in that BAR (8-byte aligned).
    pub table_offset: u32,
    /// The BAR holding the pending-bit array (0–5).
    pub pba_bar: u8,
    /// The pending-bit array's offset in that BAR.
    pub pba_offset: u32,
}

/// `cfg_type` of a virtio capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioCfgType {
    /// Common configuration (feature bits, queues, status).
    Common,
    /// Queue notification addresses.
    Notify,
    /// The ISR status byte.
    Isr,
    /// Device-specific configuration.
    Device,
    /// The configuration-space access window.
    PciCfg,
    /// Shared memory regions.
    SharedMemory,
    /// Vendor data.
    Vendor,
    /// A type this crate does not know (the spec says to ignore it).
    Other(u8),
}

impl VirtioCfgType {
    /// Decodes the `cfg_type` byte.
    pub const fn from_raw(raw: u8) -> VirtioCfgType {
        match raw {
            1 => VirtioCfgType::Common,
            2 => VirtioCfgType::Notify,
            3 => VirtioCfgType::Isr,
            4 => VirtioCfgType::Device,
            5 => VirtioCfgType::PciCfg,
            8 => VirtioCfgType::SharedMemory,
            9 => VirtioCfgType::Vendor,
            other => VirtioCfgType::Other(other),
        }
    }
}

/// A virtio structure capability: where in which BAR a structure lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCap {
    /// Which structure.
    pub cfg_type: VirtioCfgType,
    /// The BAR it lives in, as the device wrote it. Values above 5 are
    /// reserved: [`VirtioCap::bar_index`] gives `None` for them and a
    /// driver must skip the capability.
    pub bar: u8,
    /// Tells several capabilities of one type apart.
    pub id: u8,
    /// Offset of the structure in the BAR.
    pub offset: u32,
    /// Length of the structure in bytes.
    pub length: u32,
    /// For a notify capability: the queue notify offset multiplier.
    pub notify_off_multiplier: Option<u32>,
}

impl VirtioCap {
    /// The BAR index, if it names one (0–5).
    pub const fn bar_index(&self) -> Option<u8> {
        if self.bar < 6 {
            Some(self.bar)
        } else {
            None
        }
    }
    /// The range `offset .. offset + length` of the BAR, if it does not
    /// overflow and fits in a BAR of `bar_size` bytes.
    pub fn range_in(&self, bar_size: u64) -> Option<core::ops::Range<u64>> {
        let start = self.offset as u64;
        let end = start + self.length as u64;
        (end <= bar_size).then_some(start..end)
    }
}

/// A set of the 64 dword slots of configuration space.
#[derive(Clone, Copy, Default)]
struct Visited(u64);

/// The iterator [`capabilities`] returns. Yields `Err` at most once, then
/// ends.
pub struct Capabilities<'a, C: ConfigAccess + ?Sized> {
    access: &'a mut C,
    address: Address,
    /// The next entry's offset, 0 at the end of the list.
    next: u8,
    visited: Visited,
    virtio: bool,
}

/// Walks the capability list of the function at `address`. Empty when the
/// status register says the function has none. Vendor capabilities are
/// decoded as virtio ones only when the function's vendor ID is
/// [`VIRTIO_VENDOR_ID`].
pub fn capabilities<'a, C: ConfigAccess + ?Sized>(
    access: &'a mut C,
    address: Address,
    header: &Header,
) -> Capabilities<'a, C> {
    let next = if header.status & regs::STATUS_CAP_LIST != 0 {
        read8(access, address, regs::CAP_POINTER) & 0xfc
    } else {
        0
    };
    Capabilities {
        access,
        address,
        next,
        visited: Visited(0),
        virtio: header.vendor_id == VIRTIO_VENDOR_ID,
    }
}

impl<C: ConfigAccess + ?Sized> Capabilities<'_, C> {
    fn fail(&mut self, error: Error) -> Option<Result<Capability, Error>> {
        self.next = 0;
        Some(Err(error))
    }

    /// Reads the dword at `offset + at` of the current capability, after
    /// its caller checked it lies below byte 256.
    fn dword(&mut self, offset: u8, at: u8) -> u32 {
        self.access.read32(self.address, offset + at)
    }
}

/// Checks that a capability of `len` bytes at `offset` ends by byte 256.
fn fits(offset: u8, len: u8, id: u8) -> Result<(), Error> {
    if offset as usize + len as usize <= 256 {
        Ok(())
    } else {
        Err(Error::CapabilityTooShort { offset, id })
    }
}

impl<C: ConfigAccess + ?Sized> Iterator for Capabilities<'_, C> {
    type Item = Result<Capability, Error>;

    fn next(&mut self) -> Option<Result<Capability, Error>> {
        let offset = self.next;
        if offset == 0 {
            return None;
        }
        if offset < 0x40 {
            return self.fail(Error::CapabilityPointer { pointer: offset });
        }
        let slot = offset / 4;
        if self.visited.0 & (1 << slot) != 0 {
            return self.fail(Error::CapabilityLoop { offset });
        }
        self.visited.0 |= 1 << slot;
        let head = self.access.read32(self.address, offset);
        let id = head as u8;
        self.next = (head >> 8) as u8 & 0xfc;
        let kind = match id {
            CAP_ID_MSI => {
                let control = (head >> 16) as u16;
                let msi = Msi {
                    enabled: control & 1 != 0,
                    multiple_message_capable: ((control >> 1) & 0x7) as u8,
                    address_64: control & (1 << 7) != 0,
                    per_vector_masking: control & (1 << 8) != 0,
                };
                if let Err(e) = fits(offset, msi.len(), id) {
                    return self.fail(e);
                }
                CapabilityKind::Msi(msi)
            }
            CAP_ID_MSIX => {
                if let Err(e) = fits(offset, 12, id) {
                    return self.fail(e);
                }
                let control = (head >> 16) as u16;
                let table = self.dword(offset, 4);
                let pba = self.dword(offset, 8);
                let (table_bar, pba_bar) = ((table & 7) as u8, (pba & 7) as u8);
                if table_bar > 5 || pba_bar > 5 {
                    let bar = table_bar.max(pba_bar);
                    return self.fail(Error::CapabilityBar { offset, bar });
                }
                CapabilityKind::MsiX(MsiX {
                    table_size: (control & 0x7ff) + 1,
                    enabled: control & (1 << 15) != 0,
                    function_mask: control & (1 << 14) != 0,
                    table_bar,
                    table_offset: table & !7,
                    pba_bar,
                    pba_offset: pba & !7,
                })
            }
            CAP_ID_VENDOR if self.virtio => {
                let cap_len = (head >> 16) as u8;
                let cfg_type = VirtioCfgType::from_raw((head >> 24) as u8);
                let needed = if cfg_type == VirtioCfgType::Notify { 20 } else { 16 };
                if cap_len < needed {
                    return self.fail(Error::CapabilityTooShort { offset, id });
                }
                if let Err(e) = fits(offset, cap_len, id) {
                    return self.fail(e);
                }
                let bar_word = self.dword(offset, 4);
                let notify_off_multiplier =
                    (cfg_type == VirtioCfgType::Notify).then(|| self.dword(offset, 16));
                CapabilityKind::Virtio(VirtioCap {
                    cfg_type,
                    bar: bar_word as u8,
                    id: (bar_word >> 8) as u8,
                    offset: self.dword(offset, 8),
                    length: self.dword(offset, 12),
                    notify_off_multiplier,
                })
            }
            CAP_ID_VENDOR => CapabilityKind::Vendor,
            _ => CapabilityKind::Other,
        };
        Some(Ok(Capability { offset, id, kind }))
    }
}

/// The first capability with ID `id`, if the list is well formed up to it.
pub fn find_capability<C: ConfigAccess + ?Sized>(
    access: &mut C,
    address: Address,
    header: &Header,
    id: u8,
) -> Result<Option<Capability>, Error> {
    for cap in capabilities(access, address, header) {
        let cap = cap?;
        if cap.id == id {
            return Ok(Some(cap));
        }
    }
    Ok(None)
}

/// Reads the 16-bit MSI or MSI-X message control of a capability (for
/// drivers that re-read it after enabling).
pub fn message_control<C: ConfigAccess + ?Sized>(
    access: &mut C,
    address: Address,
    cap: &Capability,
) -> u16 {
    read16(access, address, cap.offset.wrapping_add(2))
}
