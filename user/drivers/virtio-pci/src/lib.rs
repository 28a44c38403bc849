//! The virtio 1.x PCI transport ("modern", virtio 1.x §4.1): where a
//! device's common, notify, ISR and device structures are, and the
//! register protocol of the common structure: reset, device status,
//! feature negotiation, queue set-up and notification.
//!
//! It owns the register offsets of `virtio_pci_common_cfg` and the checks
//! on everything the device tells: which BAR and range each structure is
//! in (checked against the BAR's size), and each queue's notify offset
//! (checked against the notify structure). It never touches hardware: the
//! BAR is reached through [`Regs`], which the driver implements over its
//! mapped BAR and the tests over a fake device; it never allocates, and
//! it must not use `unsafe`. Every loop that waits on the device is
//! bounded.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;

use alux_pci::{Bar, VirtioCap, VirtioCfgType, BAR_SLOTS};
use core::ops::Range;

/// Device status bits (virtio 1.x §2.1).
pub mod status {
    /// The guest saw the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is done.
    pub const FEATURES_OK: u8 = 8;
    /// The driver gave up.
    pub const FAILED: u8 = 128;
}

/// Feature bit: the device follows virtio 1.x (required here).
pub const F_VERSION_1: u64 = 1 << 32;

/// `virtio_pci_common_cfg` register offsets.
pub mod common {
    /// Selects which 32 feature bits `DEVICE_FEATURE` shows.
    pub const DEVICE_FEATURE_SELECT: usize = 0;
    /// 32 bits of the device's features.
    pub const DEVICE_FEATURE: usize = 4;
    /// Selects which 32 feature bits `DRIVER_FEATURE` takes.
    pub const DRIVER_FEATURE_SELECT: usize = 8;
    /// 32 bits of the driver's accepted features.
    pub const DRIVER_FEATURE: usize = 12;
    /// Number of queues.
    pub const NUM_QUEUES: usize = 18;
    /// Device status (8 bits).
    pub const DEVICE_STATUS: usize = 20;
    /// Changes whenever the device configuration changes.
    pub const CONFIG_GENERATION: usize = 21;
    /// Selects the queue the `QUEUE_*` registers show.
    pub const QUEUE_SELECT: usize = 22;
    /// Queue size (the device's maximum until written).
    pub const QUEUE_SIZE: usize = 24;
    /// Queue enable.
    pub const QUEUE_ENABLE: usize = 28;
    /// The queue's notify offset, in multiples of the notify multiplier.
    pub const QUEUE_NOTIFY_OFF: usize = 30;
    /// Descriptor table address (64 bits as two halves).
    pub const QUEUE_DESC: usize = 32;
    /// Available ring address.
    pub const QUEUE_DRIVER: usize = 40;
    /// Used ring address.
    pub const QUEUE_DEVICE: usize = 48;
    /// Length of the structure this crate uses.
    pub const LEN: usize = 56;
}

/// Accesses to the BAR holding the virtio structures, by offset from its
/// start. Implementations make each a single access of that width.
pub trait Regs {
    /// Reads 8 bits.
    fn read8(&self, offset: usize) -> u8;
    /// Reads 16 bits.
    fn read16(&self, offset: usize) -> u16;
    /// Reads 32 bits.
    fn read32(&self, offset: usize) -> u32;
    /// Writes 8 bits.
    fn write8(&self, offset: usize, v: u8);
    /// Writes 16 bits.
    fn write16(&self, offset: usize, v: u16);
    /// Writes 32 bits.
    fn write32(&self, offset: usize, v: u32);
}

/// Why the transport could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// A required structure (common, notify, ISR, device) is missing.
    Missing(&'static str),
    /// The structures are in different BARs, or not in a memory BAR.
    Layout,
    /// A structure does not fit its BAR, or is too short.
    OutOfBar(&'static str),
    /// The device did not reset (status never read back 0).
    NoReset,
    /// The device lacks `VERSION_1`.
    NotVersion1,
    /// The device refused the features the driver accepted.
    FeaturesRefused,
    /// The queue is absent, or its notify address is outside the notify
    /// structure.
    Queue,
}

/// Where a device's structures are, all in one memory BAR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Structures {
    /// The BAR's index.
    pub bar: u8,
    /// The BAR's physical address.
    pub bar_phys: u64,
    /// The BAR's size.
    pub bar_size: u64,
    /// The common structure's range in the BAR.
    pub common: Range<usize>,
    /// The notify structure's range.
    pub notify: Range<usize>,
    /// The notify offset multiplier.
    pub notify_multiplier: u32,
    /// The ISR byte's offset.
    pub isr: usize,
    /// The device-specific structure's range.
    pub device: Range<usize>,
}

impl Structures {
    /// Picks the first common, notify, ISR and device capability (virtio
    /// §4.1.4: a driver may use the first of each type it understands),
    /// skipping those that name a reserved BAR, and checks that they are
    /// in one memory BAR and fit in it.
    pub fn locate(
        caps: impl IntoIterator<Item = VirtioCap>,
        bars: &[Option<Bar>; BAR_SLOTS],
    ) -> Result<Structures, SetupError> {
        let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
        for v in caps {
            let slot = match v.cfg_type {
                VirtioCfgType::Common => &mut common,
                VirtioCfgType::Notify => &mut notify,
                VirtioCfgType::Isr => &mut isr,
                VirtioCfgType::Device => &mut device,
                _ => continue,
            };
            if slot.is_none() && v.bar_index().is_some() {
                *slot = Some(v);
            }
        }
        let common = common.ok_or(SetupError::Missing("common"))?;
        let notify = notify.ok_or(SetupError::Missing("notify"))?;
        let isr = isr.ok_or(SetupError::Missing("isr"))?;
        let device = device.ok_or(SetupError::Missing("device"))?;
        let bar = common.bar;
        if [notify.bar, isr.bar, device.bar].iter().any(|&b| b != bar) {
            return Err(SetupError::Layout);
        }
        let Some(Some(Bar::Memory { address, size, .. })) = bars.get(bar as usize) else {
            return Err(SetupError::Layout);
        };
        let (bar_phys, bar_size) = (*address, *size);
        let range = |c: &VirtioCap, min: u64, what| {
            c.range_in(bar_size)
                .filter(|r| r.end - r.start >= min)
                .and_then(|r| Some(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?))
                .ok_or(SetupError::OutOfBar(what))
        };
        Ok(Structures {
            bar,
            bar_phys,
            bar_size,
            common: range(&common, common::LEN as u64, "common")?,
            notify: range(&notify, 2, "notify")?,
            notify_multiplier: notify.notify_off_multiplier.unwrap_or(0),
            isr: range(&isr, 1, "isr")?.start,
            device: range(&device, 1, "device")?,
        })
    }
}

/// Times a reset is polled before giving up.
const RESET_POLLS: usize = 1_000_000;
/// Times a configuration read is retried while the generation changes.
const GENERATION_TRIES: usize = 16;

/// A virtio PCI device, driven through its BAR.
pub struct Transport<R: Regs> {
    regs: R,
    s: Structures,
    /// Offset of the set-up queue's notify register.
    queue_notify: Option<usize>,
}

impl<R: Regs> Transport<R> {
    /// The transport over `regs`, which reach the BAR `s` describes.
    pub fn new(regs: R, s: Structures) -> Self {
        Transport { regs, s, queue_notify: None }
    }

    /// Where the structures are.
    pub fn structures(&self) -> &Structures {
        &self.s
    }

    fn c(&self, offset: usize) -> usize {
        self.s.common.start + offset
    }

    /// The device status.
    pub fn status(&self) -> u8 {
        self.regs.read8(self.c(common::DEVICE_STATUS))
    }

    /// Sets the device status (0 resets the device).
    pub fn set_status(&self, s: u8) {
        self.regs.write8(self.c(common::DEVICE_STATUS), s)
    }

    /// Gives up on the device: adds `FAILED` to its status.
    pub fn fail(&self) {
        let s = self.status();
        self.set_status(s | status::FAILED);
    }

    /// Resets the device and waits (bounded) until it reads back 0.
    pub fn reset(&mut self) -> Result<(), SetupError> {
        self.queue_notify = None;
        self.set_status(0);
        for _ in 0..RESET_POLLS {
            if self.status() == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(SetupError::NoReset)
    }

    /// The 64 feature bits the device offers.
    pub fn device_features(&self) -> u64 {
        let mut f = 0u64;
        for half in 0..2u32 {
            self.regs.write32(self.c(common::DEVICE_FEATURE_SELECT), half);
            f |= (self.regs.read32(self.c(common::DEVICE_FEATURE)) as u64) << (32 * half);
        }
        f
    }

    /// The start of initialisation (virtio §3.1.1 steps 1–6): reset,
    /// `ACKNOWLEDGE`, `DRIVER`, then accept the offered features among
    /// `wanted` (`VERSION_1` is required) and check that `FEATURES_OK`
    /// sticks. Returns the accepted features. On an error after the reset
    /// the device is left `FAILED`.
    pub fn negotiate(&mut self, wanted: u64) -> Result<u64, SetupError> {
        self.reset()?;
        self.set_status(status::ACKNOWLEDGE);
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        let offered = self.device_features();
        if offered & F_VERSION_1 == 0 {
            self.fail();
            return Err(SetupError::NotVersion1);
        }
        let accepted = offered & (wanted | F_VERSION_1);
        for half in 0..2u32 {
            self.regs.write32(self.c(common::DRIVER_FEATURE_SELECT), half);
            self.regs.write32(self.c(common::DRIVER_FEATURE), (accepted >> (32 * half)) as u32);
        }
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        if self.status() & status::FEATURES_OK == 0 {
            self.fail();
            return Err(SetupError::FeaturesRefused);
        }
        Ok(accepted)
    }

    /// The maximum size of queue `q` (0: no such queue).
    pub fn queue_max(&self, q: u16) -> u16 {
        self.regs.write16(self.c(common::QUEUE_SELECT), q);
        self.regs.read16(self.c(common::QUEUE_SIZE))
    }

    /// Sets queue `q`'s size and ring addresses, checks its notify address
    /// against the notify structure, and enables it.
    pub fn setup_queue(
        &mut self,
        q: u16,
        size: u16,
        desc: u64,
        driver: u64,
        device: u64,
    ) -> Result<(), SetupError> {
        let max = self.queue_max(q);
        if max == 0 || size == 0 || size > max {
            return Err(SetupError::Queue);
        }
        self.regs.write16(self.c(common::QUEUE_SIZE), size);
        for (off, v) in [
            (common::QUEUE_DESC, desc),
            (common::QUEUE_DRIVER, driver),
            (common::QUEUE_DEVICE, device),
        ] {
            self.regs.write32(self.c(off), v as u32);
            self.regs.write32(self.c(off + 4), (v >> 32) as u32);
        }
        let off = self.regs.read16(self.c(common::QUEUE_NOTIFY_OFF)) as u64
            * self.s.notify_multiplier as u64;
        let at = self.s.notify.start as u64 + off;
        if at + 2 > self.s.notify.end as u64 {
            return Err(SetupError::Queue);
        }
        self.queue_notify = Some(at as usize);
        self.regs.write16(self.c(common::QUEUE_ENABLE), 1);
        Ok(())
    }

    /// Ends initialisation: `DRIVER_OK`.
    pub fn driver_ok(&self) {
        let s = self.status();
        self.set_status(s | status::DRIVER_OK);
    }

    /// Tells the device that queue `q` (the one set up) has new buffers.
    pub fn notify(&self, q: u16) {
        if let Some(at) = self.queue_notify {
            self.regs.write16(at, q)
        }
    }

    /// Reads (and so clears) the ISR status: bit 0 queue, bit 1 config.
    pub fn isr(&self) -> u8 {
        self.regs.read8(self.s.isr)
    }

    /// Reads 32 bits of device configuration at `offset`, or `None` past
    /// its end.
    fn device_read32(&self, offset: usize) -> Option<u32> {
        let at = self.s.device.start.checked_add(offset)?;
        (at.checked_add(4)? <= self.s.device.end).then(|| self.regs.read32(at))
    }

    /// Reads a 64-bit device configuration field at `offset` consistently:
    /// retried while the configuration generation changes (bounded);
    /// `None` past the structure's end or if it never settles.
    pub fn device_read64(&self, offset: usize) -> Option<u64> {
        for _ in 0..GENERATION_TRIES {
            let g = self.regs.read8(self.c(common::CONFIG_GENERATION));
            let lo = self.device_read32(offset)?;
            let hi = self.device_read32(offset + 4)?;
            if self.regs.read8(self.c(common::CONFIG_GENERATION)) == g {
                return Some(lo as u64 | (hi as u64) << 32);
            }
        }
        None
    }
}
