//! The virtio 1.x PCI transport ("modern"), over `alux-pci` and one mapped
//! BAR: finding the common, notify, ISR and device structures through the
//! vendor capabilities, device status and feature negotiation, queue
//! set-up, notification and the ISR byte.
//!
//! It owns the register offsets of `virtio_pci_common_cfg` and the order of
//! the initialisation steps (virtio 1.x §3.1.1). Offsets the device gives
//! (capability offsets and lengths, the queue's notify offset) are checked
//! against the mapped BAR before use, so a lying device can make the
//! driver refuse it but not fault it.

use alux_pci::{Bar, ConfigAccess, VirtioCap, VirtioCfgType};
use alux_rt::dev::Mmio;

/// Device status bits.
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

// virtio_pci_common_cfg offsets.
const DEVICE_FEATURE_SELECT: usize = 0;
const DEVICE_FEATURE: usize = 4;
const DRIVER_FEATURE_SELECT: usize = 8;
const DRIVER_FEATURE: usize = 12;
const DEVICE_STATUS: usize = 20;
const CONFIG_GENERATION: usize = 21;
const QUEUE_SELECT: usize = 22;
const QUEUE_SIZE: usize = 24;
const QUEUE_ENABLE: usize = 28;
const QUEUE_NOTIFY_OFF: usize = 30;
const QUEUE_DESC: usize = 32;
const QUEUE_DRIVER: usize = 40;
const QUEUE_DEVICE: usize = 48;
const COMMON_LEN: usize = 56;

/// Why the transport could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// Reading configuration space failed.
    Pci(alux_pci::Error),
    /// A required structure (common, notify, ISR, device) is missing.
    Missing(&'static str),
    /// The structures live in different BARs, or in an I/O BAR.
    Layout,
    /// A structure does not fit its BAR, or is too short.
    OutOfBar(&'static str),
    /// `MmioMap` of the BAR failed.
    Map(alux_rt::Error),
    /// The device refused the features we accepted.
    FeaturesRefused,
    /// The queue cannot be used (absent, or its notify address outside
    /// the notify structure).
    Queue,
}

/// A mapped virtio PCI device.
pub struct Transport {
    bar: Mmio,
    common: usize,
    notify: core::ops::Range<usize>,
    notify_mult: u32,
    isr: usize,
    device: core::ops::Range<usize>,
    /// Offset of queue 0's notify register.
    queue_notify: usize,
}

impl Transport {
    /// Finds the structures of the virtio function at `address` and maps
    /// the BAR holding them.
    pub fn new<C: ConfigAccess>(
        access: &mut C,
        address: alux_pci::Address,
        header: &alux_pci::Header,
    ) -> Result<Transport, SetupError> {
        let bars = alux_pci::bars(access, address, header).map_err(SetupError::Pci)?;
        let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
        for cap in alux_pci::capabilities(access, address, header) {
            let cap = cap.map_err(SetupError::Pci)?;
            let alux_pci::CapabilityKind::Virtio(v) = cap.kind else { continue };
            // The first of each type wins (virtio §4.1.4: the driver may use
            // the first one it understands).
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
        let index = common.bar;
        if [notify.bar, isr.bar, device.bar].iter().any(|&b| b != index) {
            return Err(SetupError::Layout);
        }
        let Some(Some(Bar::Memory { address: phys, size, .. })) = bars.get(index as usize) else {
            return Err(SetupError::Layout);
        };
        let (phys, size) = (*phys, *size);
        let range = |c: &VirtioCap, min: u64, what| {
            c.range_in(size)
                .filter(|r| r.end - r.start >= min)
                .map(|r| r.start as usize..r.end as usize)
                .ok_or(SetupError::OutOfBar(what))
        };
        let common_r = range(&common, COMMON_LEN as u64, "common")?;
        let notify_r = range(&notify, 2, "notify")?;
        let isr_r = range(&isr, 1, "isr")?;
        let device_r = range(&device, 8, "device")?;
        // The BAR must be decoded before it is mapped and used.
        alux_pci::update_command(
            access,
            address,
            alux_pci::regs::COMMAND_MEMORY | alux_pci::regs::COMMAND_BUS_MASTER,
            alux_pci::regs::COMMAND_INTX_DISABLE,
        );
        let len = usize::try_from(size).map_err(|_| SetupError::Layout)?;
        let bar = Mmio::map(phys, len).map_err(SetupError::Map)?;
        Ok(Transport {
            bar,
            common: common_r.start,
            notify: notify_r,
            notify_mult: notify.notify_off_multiplier.unwrap_or(0),
            isr: isr_r.start,
            device: device_r,
            queue_notify: 0,
        })
    }

    /// The device status.
    pub fn status(&self) -> u8 {
        self.bar.read8(self.common + DEVICE_STATUS)
    }

    /// Sets the device status (0 resets the device).
    pub fn set_status(&self, s: u8) {
        self.bar.write8(self.common + DEVICE_STATUS, s)
    }

    /// Resets the device and waits (bounded) until it reads back 0.
    pub fn reset(&self) -> bool {
        self.set_status(0);
        for _ in 0..1_000_000 {
            if self.status() == 0 {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }

    /// The 64 feature bits the device offers.
    pub fn device_features(&self) -> u64 {
        let mut f = 0u64;
        for half in 0..2u32 {
            self.bar.write32(self.common + DEVICE_FEATURE_SELECT, half);
            f |= (self.bar.read32(self.common + DEVICE_FEATURE) as u64) << (32 * half);
        }
        f
    }

    /// Accepts `features` and sets `FEATURES_OK`; fails if the device does
    /// not keep it set.
    pub fn negotiate(&self, features: u64) -> Result<(), SetupError> {
        for half in 0..2u32 {
            self.bar.write32(self.common + DRIVER_FEATURE_SELECT, half);
            self.bar.write32(self.common + DRIVER_FEATURE, (features >> (32 * half)) as u32);
        }
        let s = self.status();
        self.set_status(s | status::FEATURES_OK);
        if self.status() & status::FEATURES_OK == 0 {
            return Err(SetupError::FeaturesRefused);
        }
        Ok(())
    }

    /// The maximum size of queue `q` (0: no such queue).
    pub fn queue_max(&self, q: u16) -> u16 {
        self.bar.write16(self.common + QUEUE_SELECT, q);
        self.bar.read16(self.common + QUEUE_SIZE)
    }

    /// Sets queue `q`'s size and ring addresses, checks its notify
    /// address, and enables it.
    pub fn setup_queue(
        &mut self,
        q: u16,
        size: u16,
        desc: u64,
        driver: u64,
        device: u64,
    ) -> Result<(), SetupError> {
        let c = self.common;
        self.bar.write16(c + QUEUE_SELECT, q);
        self.bar.write16(c + QUEUE_SIZE, size);
        for (off, v) in [(QUEUE_DESC, desc), (QUEUE_DRIVER, driver), (QUEUE_DEVICE, device)] {
            self.bar.write32(c + off, v as u32);
            self.bar.write32(c + off + 4, (v >> 32) as u32);
        }
        let off = self.bar.read16(c + QUEUE_NOTIFY_OFF) as u64 * self.notify_mult as u64;
        let at = self.notify.start as u64 + off;
        if at + 2 > self.notify.end as u64 {
            return Err(SetupError::Queue);
        }
        self.queue_notify = at as usize;
        self.bar.write16(c + QUEUE_ENABLE, 1);
        Ok(())
    }

    /// Tells the device queue `q` has new buffers.
    pub fn notify(&self, q: u16) {
        self.bar.write16(self.queue_notify, q)
    }

    /// Reads (and so clears) the ISR status: bit 0 queue, bit 1 config.
    pub fn isr(&self) -> u8 {
        self.bar.read8(self.isr)
    }

    /// Reads 32 bits of the device-specific configuration at `offset`,
    /// or `None` past its end.
    fn device_read32(&self, offset: usize) -> Option<u32> {
        let at = self.device.start.checked_add(offset)?;
        (at + 4 <= self.device.end).then(|| self.bar.read32(at))
    }

    /// Reads a consistent 64-bit device configuration field at `offset`
    /// (retrying while the configuration generation changes, bounded).
    pub fn device_read64(&self, offset: usize) -> Option<u64> {
        for _ in 0..16 {
            let g = self.bar.read8(self.common + CONFIG_GENERATION);
            let lo = self.device_read32(offset)?;
            let hi = self.device_read32(offset + 4)?;
            if self.bar.read8(self.common + CONFIG_GENERATION) == g {
                return Some(lo as u64 | (hi as u64) << 32);
            }
        }
        None
    }
}
