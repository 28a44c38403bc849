//! Host tests: structure discovery against capability lists, and the
//! register protocol against a fake device that follows the spec's rules
//! (and can be told to break them).

use super::*;
use core::cell::{Cell, RefCell};
use std::vec;
use std::vec::Vec;

const COMMON: usize = 0;
const ISR: usize = 0x1000;
const DEVICE: usize = 0x2000;
const NOTIFY: usize = 0x3000;
const MULT: u32 = 4;

fn cap(cfg_type: VirtioCfgType, bar: u8, offset: u32, length: u32) -> VirtioCap {
    VirtioCap {
        cfg_type,
        bar,
        id: 0,
        offset,
        length,
        notify_off_multiplier: (cfg_type == VirtioCfgType::Notify).then_some(MULT),
    }
}

/// QEMU's layout: everything in BAR 4 (16 KiB, 64-bit).
fn qemu_caps() -> Vec<VirtioCap> {
    vec![
        cap(VirtioCfgType::Common, 4, COMMON as u32, 0x38),
        cap(VirtioCfgType::Isr, 4, ISR as u32, 1),
        cap(VirtioCfgType::Device, 4, DEVICE as u32, 0x40),
        cap(VirtioCfgType::Notify, 4, NOTIFY as u32, 0x1000),
        cap(VirtioCfgType::PciCfg, 0, 0, 0),
    ]
}

fn qemu_bars() -> [Option<Bar>; BAR_SLOTS] {
    let mut b = [None; BAR_SLOTS];
    b[1] =
        Some(Bar::Memory { address: 0xfebf_1000, size: 0x1000, prefetchable: false, wide: false });
    b[4] = Some(Bar::Memory { address: 0xfe00_0000, size: 0x4000, prefetchable: true, wide: true });
    b
}

#[test]
fn locates_qemus_layout() {
    let s = Structures::locate(qemu_caps(), &qemu_bars()).unwrap();
    assert_eq!(s.bar, 4);
    assert_eq!((s.bar_phys, s.bar_size), (0xfe00_0000, 0x4000));
    assert_eq!(s.common, 0..0x38);
    assert_eq!(s.isr, ISR);
    assert_eq!(s.device, DEVICE..DEVICE + 0x40);
    assert_eq!(s.notify, NOTIFY..NOTIFY + 0x1000);
    assert_eq!(s.notify_multiplier, MULT);
}

#[test]
fn refuses_bad_layouts() {
    let bars = qemu_bars();
    let without = |t: VirtioCfgType| -> Vec<VirtioCap> {
        qemu_caps().into_iter().filter(|c| c.cfg_type != t).collect()
    };
    assert_eq!(
        Structures::locate(without(VirtioCfgType::Common), &bars),
        Err(SetupError::Missing("common"))
    );
    assert_eq!(
        Structures::locate(without(VirtioCfgType::Notify), &bars),
        Err(SetupError::Missing("notify"))
    );
    assert_eq!(
        Structures::locate(without(VirtioCfgType::Isr), &bars),
        Err(SetupError::Missing("isr"))
    );
    assert_eq!(
        Structures::locate(without(VirtioCfgType::Device), &bars),
        Err(SetupError::Missing("device"))
    );
    // Split over two BARs.
    let mut caps = qemu_caps();
    caps[1].bar = 1;
    assert_eq!(Structures::locate(caps, &bars), Err(SetupError::Layout));
    // In a BAR that is not there, or is I/O.
    let mut io = qemu_bars();
    io[4] = Some(Bar::Io { port: 0xc000, size: 0x40 });
    assert_eq!(Structures::locate(qemu_caps(), &io), Err(SetupError::Layout));
    assert_eq!(Structures::locate(qemu_caps(), &[None; BAR_SLOTS]), Err(SetupError::Layout));
    // Past the BAR's end, overflowing, or too short.
    let mut caps = qemu_caps();
    caps[3].offset = 0x3800;
    assert_eq!(Structures::locate(caps, &bars), Err(SetupError::OutOfBar("notify")));
    let mut caps = qemu_caps();
    caps[2] = cap(VirtioCfgType::Device, 4, u32::MAX, u32::MAX);
    assert_eq!(Structures::locate(caps, &bars), Err(SetupError::OutOfBar("device")));
    let mut caps = qemu_caps();
    caps[0].length = 0x20;
    assert_eq!(Structures::locate(caps, &bars), Err(SetupError::OutOfBar("common")));
    // A reserved BAR index is skipped; a later valid one is used.
    let mut caps = qemu_caps();
    caps.insert(0, cap(VirtioCfgType::Common, 7, 0x100, 0x38));
    assert_eq!(Structures::locate(caps, &bars).unwrap().common, 0..0x38);
    // The first of each type wins.
    let mut caps = qemu_caps();
    caps.push(cap(VirtioCfgType::Isr, 4, 0x1004, 1));
    assert_eq!(Structures::locate(caps, &bars).unwrap().isr, ISR);
}

/// A virtio device's BAR, following the spec's register rules.
#[derive(Default)]
struct Fake {
    features: u64,
    /// Refuse any feature set (clear `FEATURES_OK`).
    refuse: bool,
    /// Never finish a reset.
    stuck: bool,
    queue_max: u16,
    notify_off: u16,
    status: Cell<u8>,
    dfsel: Cell<u32>,
    drfsel: Cell<u32>,
    driver_features: Cell<u64>,
    qsel: Cell<u16>,
    qsize: Cell<u16>,
    enabled: Cell<bool>,
    addrs: RefCell<[u32; 6]>,
    generation: Cell<u8>,
    /// Generation reads left during which the configuration "changes".
    churn: Cell<u32>,
    config: RefCell<Vec<u8>>,
    isr: Cell<u8>,
    notified: RefCell<Vec<(usize, u16)>>,
}

impl Fake {
    fn new() -> Fake {
        let f = Fake {
            features: F_VERSION_1 | 1 << 9 | 1 << 6,
            queue_max: 256,
            notify_off: 3,
            config: RefCell::new(vec![0; 0x40]),
            ..Default::default()
        };
        f.config.borrow_mut()[..8].copy_from_slice(&524_288u64.to_le_bytes());
        f
    }
    fn transport(self) -> Transport<Fake> {
        let s = Structures::locate(qemu_caps(), &qemu_bars()).unwrap();
        Transport::new(self, s)
    }
}

impl Regs for Fake {
    fn read8(&self, o: usize) -> u8 {
        match o {
            o if o == COMMON + common::DEVICE_STATUS => self.status.get(),
            o if o == COMMON + common::CONFIG_GENERATION => {
                if self.churn.get() > 0 {
                    self.churn.set(self.churn.get() - 1);
                    self.generation.set(self.generation.get().wrapping_add(1));
                }
                self.generation.get()
            }
            ISR => self.isr.replace(0),
            _ => panic!("read8 at {o:#x}"),
        }
    }
    fn read16(&self, o: usize) -> u16 {
        match o - COMMON {
            common::QUEUE_SIZE => {
                if self.qsel.get() == 0 {
                    self.qsize.get().max(if self.enabled.get() { 0 } else { self.queue_max })
                } else {
                    0
                }
            }
            common::QUEUE_NOTIFY_OFF => self.notify_off,
            _ => panic!("read16 at {o:#x}"),
        }
    }
    fn read32(&self, o: usize) -> u32 {
        if (DEVICE..DEVICE + 0x40).contains(&o) {
            let c = self.config.borrow();
            let i = o - DEVICE;
            return u32::from_le_bytes(c[i..i + 4].try_into().unwrap());
        }
        match o - COMMON {
            common::DEVICE_FEATURE => match self.dfsel.get() {
                0 => self.features as u32,
                1 => (self.features >> 32) as u32,
                _ => 0,
            },
            _ => panic!("read32 at {o:#x}"),
        }
    }
    fn write8(&self, o: usize, v: u8) {
        assert_eq!(o, COMMON + common::DEVICE_STATUS, "write8 at {o:#x}");
        if v == 0 {
            if !self.stuck {
                self.status.set(0);
                self.enabled.set(false);
                self.qsize.set(0);
            }
            return;
        }
        // Status bits are only ever added, never cleared, until a reset.
        assert_eq!(v & self.status.get(), self.status.get(), "status bits cleared");
        let mut v = v;
        if v & status::FEATURES_OK != 0 && self.status.get() & status::FEATURES_OK == 0 {
            let extra = self.driver_features.get() & !self.features;
            if self.refuse || extra != 0 {
                v &= !status::FEATURES_OK;
            }
        }
        self.status.set(v);
    }
    fn write16(&self, o: usize, v: u16) {
        if (NOTIFY..NOTIFY + 0x1000).contains(&o) {
            self.notified.borrow_mut().push((o, v));
            return;
        }
        match o - COMMON {
            common::QUEUE_SELECT => self.qsel.set(v),
            common::QUEUE_SIZE => {
                assert!(v <= self.queue_max && v.is_power_of_two());
                self.qsize.set(v)
            }
            common::QUEUE_ENABLE => {
                assert_eq!(v, 1);
                // Rings and size must be set before the queue is enabled.
                assert_ne!(self.qsize.get(), 0);
                self.enabled.set(true)
            }
            _ => panic!("write16 at {o:#x}"),
        }
    }
    fn write32(&self, o: usize, v: u32) {
        match o - COMMON {
            common::DEVICE_FEATURE_SELECT => self.dfsel.set(v),
            common::DRIVER_FEATURE_SELECT => self.drfsel.set(v),
            common::DRIVER_FEATURE => {
                assert_eq!(
                    self.status.get() & status::FEATURES_OK,
                    0,
                    "features after FEATURES_OK"
                );
                let shift = 32 * self.drfsel.get();
                let mask = 0xffff_ffffu64 << shift;
                self.driver_features.set(self.driver_features.get() & !mask | (v as u64) << shift);
            }
            r @ common::QUEUE_DESC..=0x37 => {
                self.addrs.borrow_mut()[(r - common::QUEUE_DESC) / 4] = v
            }
            _ => panic!("write32 at {o:#x}"),
        }
    }
}

#[test]
fn initialises_like_the_spec() {
    let mut t = Fake::new().transport();
    let accepted = t.negotiate(1 << 9 | 1 << 5).unwrap();
    // RO (bit 5) is not offered: not accepted; VERSION_1 always is.
    assert_eq!(accepted, F_VERSION_1 | 1 << 9);
    assert_eq!(t.regs.driver_features.get(), accepted);
    assert_eq!(t.status(), status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(t.queue_max(0), 256);
    assert_eq!(t.queue_max(1), 0);
    t.setup_queue(0, 128, 0x1_2345_6000, 0x1_2345_7000, 0x8000).unwrap();
    assert_eq!(*t.regs.addrs.borrow(), [0x2345_6000, 1, 0x2345_7000, 1, 0x8000, 0]);
    assert!(t.regs.enabled.get());
    t.driver_ok();
    assert_eq!(t.status() & status::DRIVER_OK, status::DRIVER_OK);
    t.notify(0);
    assert_eq!(*t.regs.notified.borrow(), [(NOTIFY + 3 * MULT as usize, 0)]);
    assert_eq!(t.device_read64(0), Some(524_288));
    t.regs.isr.set(1);
    assert_eq!(t.isr(), 1);
    assert_eq!(t.isr(), 0, "reading the ISR clears it");
    // A second initialisation starts from a reset.
    t.negotiate(0).unwrap();
    assert!(!t.regs.enabled.get());
}

#[test]
fn refusals_leave_the_device_failed() {
    let mut f = Fake::new();
    f.features = 1 << 9;
    let mut t = f.transport();
    assert_eq!(t.negotiate(1 << 9), Err(SetupError::NotVersion1));
    assert_eq!(t.status() & status::FAILED, status::FAILED);
    let mut f = Fake::new();
    f.refuse = true;
    let mut t = f.transport();
    assert_eq!(t.negotiate(0), Err(SetupError::FeaturesRefused));
    assert_eq!(t.status() & status::FAILED, status::FAILED);
    let mut f = Fake::new();
    f.stuck = true;
    f.status.set(status::ACKNOWLEDGE);
    assert_eq!(f.transport().negotiate(0), Err(SetupError::NoReset));
}

#[test]
fn queue_checks() {
    // Notify offset past the notify structure: refused, never written.
    let mut f = Fake::new();
    f.notify_off = 0x400;
    let mut t = f.transport();
    t.negotiate(0).unwrap();
    assert_eq!(t.setup_queue(0, 64, 0, 0, 0), Err(SetupError::Queue));
    assert!(!t.regs.enabled.get());
    t.notify(0);
    assert!(t.regs.notified.borrow().is_empty(), "no notify without a queue");
    // Bigger than the device allows, zero, or a missing queue.
    let mut t = Fake::new().transport();
    t.negotiate(0).unwrap();
    assert_eq!(t.setup_queue(0, 512, 0, 0, 0), Err(SetupError::Queue));
    assert_eq!(t.setup_queue(0, 0, 0, 0, 0), Err(SetupError::Queue));
    assert_eq!(t.setup_queue(1, 8, 0, 0, 0), Err(SetupError::Queue));
}

#[test]
fn configuration_reads_are_consistent_and_bounded() {
    let t = Fake::new().transport();
    // The generation changes twice: the read is retried until it holds.
    t.regs.churn.set(2);
    assert_eq!(t.device_read64(0), Some(524_288));
    // It never settles: no value rather than a torn one.
    t.regs.churn.set(u32::MAX);
    assert_eq!(t.device_read64(0), None);
    t.regs.churn.set(0);
    // Past the device structure's end.
    assert_eq!(t.device_read64(0x3c), None);
    assert_eq!(t.device_read64(usize::MAX - 2), None);
}
