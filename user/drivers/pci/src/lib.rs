//! PCI configuration space, read from user space: finding functions on the
//! bus, decoding their headers and BARs, and walking their capability lists
//! (MSI, MSI-X and the virtio vendor capabilities).
//!
//! The crate owns the *meaning* of configuration space, never the access to
//! it: every read and write goes through [`ConfigAccess`], which a driver
//! implements over the ports the kernel granted it (`0xcf8`/`0xcfc`, see
//! [`cam_address`]) and the tests implement over a fake space. It must never
//! touch hardware, hold global state, allocate or use `unsafe`.
//!
//! Configuration space is device-controlled data: every pointer and size
//! read from it is checked, and a malformed one gives an [`Error`], never a
//! panic or an endless walk (a capability walk visits at most 48 entries, an
//! enumeration scans each bus at most once).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

mod bar;
mod cap;
mod enumerate;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use bar::{bar, bars, Bar, BAR_SLOTS};
pub use cap::{
    capabilities, find_capability, message_control, Capabilities, Capability, CapabilityKind, Msi,
    MsiX, VirtioCap, VirtioCfgType, CAP_ID_MSI, CAP_ID_MSIX, CAP_ID_VENDOR,
};
pub use enumerate::{enumerate, find, Enumerate, Function};

/// One function on the bus: bus 0–255, device 0–31, function 0–7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    bus: u8,
    device: u8,
    function: u8,
}

impl Address {
    /// The address, or `None` if `device > 31` or `function > 7`.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Address> {
        if device < 32 && function < 8 {
            Some(Address { bus, device, function })
        } else {
            None
        }
    }
    /// The bus number.
    pub const fn bus(self) -> u8 {
        self.bus
    }
    /// The device number (0–31).
    pub const fn device(self) -> u8 {
        self.device
    }
    /// The function number (0–7).
    pub const fn function(self) -> u8 {
        self.function
    }
}

impl core::fmt::Display for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Reads and writes the configuration space of one PCI segment, a dword at
/// a time.
///
/// `offset` is always a multiple of 4 below 256 when this crate calls it.
/// A read of an absent function must return `0xffff_ffff` (what the
/// hardware returns), and writes to it must be ignored.
pub trait ConfigAccess {
    /// Reads the dword at `offset` of `address`'s configuration space.
    fn read32(&mut self, address: Address, offset: u8) -> u32;
    /// Writes the dword at `offset` of `address`'s configuration space.
    fn write32(&mut self, address: Address, offset: u8, value: u32);
}

/// The value a driver writes to the configuration address port (`0xcf8`)
/// before reading or writing the data port (`0xcfc`): the enable bit, the
/// function and the dword-aligned offset ("configuration mechanism #1").
pub const fn cam_address(address: Address, offset: u8) -> u32 {
    0x8000_0000
        | (address.bus as u32) << 16
        | (address.device as u32) << 11
        | (address.function as u32) << 8
        | (offset & 0xfc) as u32
}

/// The configuration address port of mechanism #1.
pub const CAM_ADDRESS_PORT: u16 = 0xcf8;
/// The configuration data port of mechanism #1.
pub const CAM_DATA_PORT: u16 = 0xcfc;

/// Offsets and bits of the standard header.
pub mod regs {
    /// Vendor ID (low 16 bits) and device ID (high 16 bits).
    pub const ID: u8 = 0x00;
    /// Command (low 16 bits) and status (high 16 bits).
    pub const COMMAND_STATUS: u8 = 0x04;
    /// Revision, programming interface, subclass, class (low to high).
    pub const CLASS: u8 = 0x08;
    /// Cache line size, latency timer, header type, BIST (low to high).
    pub const HEADER_TYPE: u8 = 0x0c;
    /// The first BAR.
    pub const BAR0: u8 = 0x10;
    /// Primary, secondary and subordinate bus numbers of a bridge.
    pub const BRIDGE_BUSES: u8 = 0x18;
    /// The capability list pointer (low byte).
    pub const CAP_POINTER: u8 = 0x34;
    /// Interrupt line (low byte) and pin (next byte).
    pub const INTERRUPT: u8 = 0x3c;

    /// Command bit: the function decodes its I/O BARs.
    pub const COMMAND_IO: u16 = 1 << 0;
    /// Command bit: the function decodes its memory BARs.
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    /// Command bit: the function may master the bus (DMA, MSI writes).
    pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
    /// Command bit: legacy INTx assertion disabled.
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
    /// Status bit: the capability list pointer is valid.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
}

/// What went wrong reading a function's configuration space. Offsets are
/// configuration-space byte offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No function answers at this address (vendor ID `0xffff`).
    NoFunction(Address),
    /// The function's header type has no BAR with this index.
    NoSuchBar {
        /// The BAR index asked for.
        index: u8,
    },
    /// A BAR has a reserved memory type, or its size mask is not a power of
    /// two.
    BadBar {
        /// The BAR index.
        index: u8,
        /// The value the BAR read back after all-ones were written.
        probe: u32,
    },
    /// A 64-bit memory BAR sits in the last slot, with no room for its high
    /// half.
    Bar64InLastSlot {
        /// The BAR index.
        index: u8,
    },
    /// A capability pointer points into the standard header (below `0x40`).
    CapabilityPointer {
        /// The offending pointer.
        pointer: u8,
    },
    /// The capability list comes back to an entry it already visited.
    CapabilityLoop {
        /// The entry seen twice.
        offset: u8,
    },
    /// A capability is shorter than its kind needs, or runs past the end of
    /// configuration space.
    CapabilityTooShort {
        /// Where the capability starts.
        offset: u8,
        /// Its capability ID.
        id: u8,
    },
    /// A capability names a BAR index above 5.
    CapabilityBar {
        /// Where the capability starts.
        offset: u8,
        /// The BAR index it names.
        bar: u8,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::NoFunction(a) => write!(f, "no PCI function at {a}"),
            Error::NoSuchBar { index } => write!(f, "no BAR {index} in this header type"),
            Error::BadBar { index, probe } => write!(f, "BAR {index} is malformed ({probe:#x})"),
            Error::Bar64InLastSlot { index } => write!(f, "64-bit BAR {index} in the last slot"),
            Error::CapabilityPointer { pointer } => {
                write!(f, "capability pointer {pointer:#x} points into the header")
            }
            Error::CapabilityLoop { offset } => {
                write!(f, "capability list loops back to {offset:#x}")
            }
            Error::CapabilityTooShort { offset, id } => {
                write!(f, "capability {id:#x} at {offset:#x} is too short")
            }
            Error::CapabilityBar { offset, bar } => {
                write!(f, "capability at {offset:#x} names BAR {bar}")
            }
        }
    }
}

/// Reads the byte at any `offset`.
pub fn read8<C: ConfigAccess + ?Sized>(access: &mut C, address: Address, offset: u8) -> u8 {
    (access.read32(address, offset & 0xfc) >> ((offset & 3) * 8)) as u8
}

/// Reads the 16-bit value at an even `offset`.
pub fn read16<C: ConfigAccess + ?Sized>(access: &mut C, address: Address, offset: u8) -> u16 {
    (access.read32(address, offset & 0xfc) >> ((offset & 2) * 8)) as u16
}

/// The layout that follows the first 16 bytes of a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// Type 0: an ordinary function, six BARs.
    General,
    /// Type 1: a PCI-to-PCI bridge, two BARs, and the buses behind it.
    Bridge {
        /// The bus directly behind the bridge.
        secondary_bus: u8,
        /// The highest bus behind the bridge.
        subordinate_bus: u8,
    },
    /// Type 2: a CardBus bridge (not scanned behind).
    CardBus,
    /// A reserved header type.
    Unknown(u8),
}

impl HeaderKind {
    /// How many BAR slots this header type has.
    pub const fn bar_slots(self) -> u8 {
        match self {
            HeaderKind::General => 6,
            HeaderKind::Bridge { .. } => 2,
            HeaderKind::CardBus | HeaderKind::Unknown(_) => 0,
        }
    }
}

/// The fixed fields of a function's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Command register.
    pub command: u16,
    /// Status register.
    pub status: u16,
    /// Revision ID.
    pub revision: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Subclass code.
    pub subclass: u8,
    /// Class code.
    pub class: u8,
    /// Bit 7 of the header type: the device has functions 1–7.
    pub multifunction: bool,
    /// The rest of the header type.
    pub kind: HeaderKind,
    /// The interrupt line firmware routed INTx to (`0xff`: none).
    pub interrupt_line: u8,
    /// The INTx pin: 0 none, 1–4 INTA–INTD.
    pub interrupt_pin: u8,
}

impl Header {
    /// Reads the header, or `NoFunction` if nothing answers at `address`.
    pub fn read<C: ConfigAccess + ?Sized>(
        access: &mut C,
        address: Address,
    ) -> Result<Header, Error> {
        let id = access.read32(address, regs::ID);
        if id as u16 == 0xffff {
            return Err(Error::NoFunction(address));
        }
        let cs = access.read32(address, regs::COMMAND_STATUS);
        let class = access.read32(address, regs::CLASS);
        let header_type = (access.read32(address, regs::HEADER_TYPE) >> 16) as u8;
        let kind = match header_type & 0x7f {
            0 => HeaderKind::General,
            1 => {
                let buses = access.read32(address, regs::BRIDGE_BUSES);
                HeaderKind::Bridge {
                    secondary_bus: (buses >> 8) as u8,
                    subordinate_bus: (buses >> 16) as u8,
                }
            }
            2 => HeaderKind::CardBus,
            other => HeaderKind::Unknown(other),
        };
        let int = access.read32(address, regs::INTERRUPT);
        Ok(Header {
            vendor_id: id as u16,
            device_id: (id >> 16) as u16,
            command: cs as u16,
            status: (cs >> 16) as u16,
            revision: class as u8,
            prog_if: (class >> 8) as u8,
            subclass: (class >> 16) as u8,
            class: (class >> 24) as u8,
            multifunction: header_type & 0x80 != 0,
            kind,
            interrupt_line: int as u8,
            interrupt_pin: (int >> 8) as u8,
        })
    }
}

/// Sets and clears bits of the command register (e.g. memory decode and bus
/// mastering before a driver uses a device), leaving the status register
/// alone (its error bits are write-one-to-clear). Returns the new command.
pub fn update_command<C: ConfigAccess + ?Sized>(
    access: &mut C,
    address: Address,
    set: u16,
    clear: u16,
) -> u16 {
    let old = access.read32(address, regs::COMMAND_STATUS) as u16;
    let new = (old & !clear) | set;
    access.write32(address, regs::COMMAND_STATUS, new as u32);
    new
}
