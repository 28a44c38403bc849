//! Enumeration: every function reachable from bus 0, following PCI-to-PCI
//! bridges to the buses behind them.
//!
//! Each bus is scanned at most once whatever the bridges claim (a bitmap of
//! buses seen), so a malformed bridge pointing back at its own bus or at
//! another bridge's bus cannot make the scan loop.

use crate::{Address, ConfigAccess, Header, HeaderKind};

/// A function found on the bus, with its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub address: Address,
    /// Its header.
    pub header: Header,
}

/// A set of 256 bus numbers.
#[derive(Clone, Copy, Default)]
struct BusSet([u64; 4]);

impl BusSet {
    fn contains(&self, bus: u8) -> bool {
        self.0[bus as usize / 64] & (1 << (bus % 64)) != 0
    }
    fn insert(&mut self, bus: u8) {
        self.0[bus as usize / 64] |= 1 << (bus % 64);
    }
    fn remove(&mut self, bus: u8) {
        self.0[bus as usize / 64] &= !(1 << (bus % 64));
    }
    fn first(&self) -> Option<u8> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| (i * 64) as u8 + w.trailing_zeros() as u8)
    }
}

/// The iterator [`enumerate`] returns: functions in bus order of discovery,
/// then device and function order.
pub struct Enumerate<'a, C: ConfigAccess + ?Sized> {
    access: &'a mut C,
    /// The bus being scanned; `None` once every bus is done.
    bus: Option<u8>,
    device: u8,
    function: u8,
    /// Function 0 of the current device said it is multifunction.
    multifunction: bool,
    /// Buses found behind bridges, not yet scanned.
    pending: BusSet,
    /// Buses scanned or being scanned.
    seen: BusSet,
}

/// Enumerates every function reachable from bus 0. Costs at most
/// 32 × 8 header reads per bus reached.
pub fn enumerate<C: ConfigAccess + ?Sized>(access: &mut C) -> Enumerate<'_, C> {
    let mut seen = BusSet::default();
    seen.insert(0);
    Enumerate {
        access,
        bus: Some(0),
        device: 0,
        function: 0,
        multifunction: false,
        pending: BusSet::default(),
        seen,
    }
}

/// The first function with this vendor and device ID.
pub fn find<C: ConfigAccess + ?Sized>(
    access: &mut C,
    vendor_id: u16,
    device_id: u16,
) -> Option<Function> {
    enumerate(access).find(|f| f.header.vendor_id == vendor_id && f.header.device_id == device_id)
}

impl<C: ConfigAccess + ?Sized> Iterator for Enumerate<'_, C> {
    type Item = Function;

    fn next(&mut self) -> Option<Function> {
        loop {
            let bus = self.bus?;
            if self.device >= 32 {
                self.bus = self.pending.first();
                if let Some(next) = self.bus {
                    self.pending.remove(next);
                }
                self.device = 0;
                self.function = 0;
                continue;
            }
            let address = Address { bus, device: self.device, function: self.function };
            let header = Header::read(self.access, address).ok();
            if self.function == 0 {
                self.multifunction = header.is_some_and(|h| h.multifunction);
            }
            if header.is_none() && self.function == 0 {
                self.device += 1;
                continue;
            }
            if self.multifunction && self.function < 7 {
                self.function += 1;
            } else {
                self.device += 1;
                self.function = 0;
            }
            let Some(header) = header else { continue };
            if let HeaderKind::Bridge { secondary_bus, .. } = header.kind {
                if !self.seen.contains(secondary_bus) {
                    self.seen.insert(secondary_bus);
                    self.pending.insert(secondary_bus);
                }
            }
            return Some(Function { address, header });
        }
    }
}
