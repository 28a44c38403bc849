//! Unit and property tests against fake configuration spaces.

use std::collections::BTreeSet;
use std::vec::Vec;

use proptest::prelude::*;

use crate::fake::{FakeFunction, FakeSpace};
use crate::*;

fn addr(bus: u8, device: u8, function: u8) -> Address {
    Address::new(bus, device, function).unwrap()
}

fn header(space: &mut FakeSpace, a: Address) -> Header {
    Header::read(space, a).unwrap()
}

fn caps(space: &mut FakeSpace, a: Address) -> Vec<Result<Capability, Error>> {
    let h = header(space, a);
    capabilities(space, a, &h).collect()
}

/// A virtio capability body: cap_vndr, next, cap_len, cfg_type, bar, id,
/// padding, offset, length (and the notify multiplier when given).
fn virtio_cap(
    next: u8,
    cfg_type: u8,
    bar: u8,
    offset: u32,
    length: u32,
    mult: Option<u32>,
) -> Vec<u8> {
    let len = if mult.is_some() { 20 } else { 16 };
    let mut v = std::vec![CAP_ID_VENDOR, next, len, cfg_type, bar, 0, 0, 0];
    v.extend_from_slice(&offset.to_le_bytes());
    v.extend_from_slice(&length.to_le_bytes());
    if let Some(m) = mult {
        v.extend_from_slice(&m.to_le_bytes());
    }
    v
}

/// A function laid out like QEMU's virtio-blk-pci (transitional): an I/O
/// BAR 0, a memory BAR 1 for MSI-X, a 64-bit prefetchable BAR 4 holding the
/// virtio structures, and MSI-X plus five virtio capabilities.
fn qemu_virtio_blk() -> FakeFunction {
    FakeFunction::new(0x1af4, 0x1001)
        .interrupt(11, 1)
        .io_bar(0, 0xc000, 0x80)
        .mem32_bar(1, 0xfebf_1000, 0x1000, false)
        .mem64_bar(4, 0xfe00_0000, 0x4000, true)
        .cap_pointer(0x98)
        .bytes(0x98, &[CAP_ID_MSIX, 0x84, 0x01, 0x00, 0x01, 0, 0, 0, 0x01, 0x08, 0, 0])
        .bytes(0x84, &virtio_cap(0x74, 5, 0, 0, 0, None))
        .bytes(0x74, &virtio_cap(0x60, 4, 4, 0x3000, 0x1000, None))
        .bytes(0x60, &virtio_cap(0x50, 2, 4, 0x2000, 0x1000, Some(4)))
        .bytes(0x50, &virtio_cap(0x40, 3, 4, 0x1000, 0x1000, None))
        .bytes(0x40, &virtio_cap(0x00, 1, 4, 0x0000, 0x1000, None))
}

#[test]
fn cam_address_packs_bus_device_function_offset() {
    assert_eq!(cam_address(addr(0, 0, 0), 0), 0x8000_0000);
    assert_eq!(cam_address(addr(0x12, 0x1f, 7), 0x3c), 0x8012_ff3c);
    assert_eq!(cam_address(addr(1, 2, 3), 0x13), 0x8001_1310, "offset is dword aligned");
}

#[test]
fn address_checks_device_and_function() {
    assert!(Address::new(255, 31, 7).is_some());
    assert!(Address::new(0, 32, 0).is_none());
    assert!(Address::new(0, 0, 8).is_none());
    assert_eq!(std::format!("{}", addr(0, 3, 1)), "00:03.1");
}

#[test]
fn header_fields_decode() {
    let mut space =
        FakeSpace::default().with(0, 4, 0, qemu_virtio_blk().bytes(0x08, &[2, 0, 0, 1]));
    let h = header(&mut space, addr(0, 4, 0));
    assert_eq!((h.vendor_id, h.device_id), (0x1af4, 0x1001));
    assert_eq!((h.class, h.subclass, h.prog_if, h.revision), (1, 0, 0, 2));
    assert_eq!((h.interrupt_line, h.interrupt_pin), (11, 1));
    assert_eq!(h.kind, HeaderKind::General);
    assert!(!h.multifunction);
    assert_eq!(Header::read(&mut space, addr(0, 5, 0)), Err(Error::NoFunction(addr(0, 5, 0))));
}

#[test]
fn enumeration_follows_multifunction_and_bridges() {
    let mut space = FakeSpace::default()
        .with(0, 0, 0, FakeFunction::new(0x8086, 0x1237))
        // Single-function device: function 1 answers but must not be listed
        // (some devices mirror function 0 in every function).
        .with(0, 1, 0, FakeFunction::new(0x8086, 0x7000))
        .with(0, 1, 1, FakeFunction::new(0x8086, 0x7000))
        // Multifunction device with a hole at function 1.
        .with(0, 3, 0, FakeFunction::new(0x1234, 1).multifunction())
        .with(0, 3, 2, FakeFunction::new(0x1234, 2))
        // Function 0 absent: the device is skipped.
        .with(0, 5, 1, FakeFunction::new(0x1234, 3))
        // A bridge to bus 2, with a device behind it and a bridge there
        // pointing back at bus 0 (malformed: must not loop).
        .with(0, 6, 0, FakeFunction::new(0x1b36, 1).bridge(2))
        .with(2, 0, 0, FakeFunction::new(0x1af4, 0x1042))
        .with(2, 1, 0, FakeFunction::new(0x1b36, 1).bridge(0))
        // Behind no bridge: never reached.
        .with(3, 0, 0, FakeFunction::new(0xdead, 0xbeef));
    let found: Vec<_> = enumerate(&mut space).map(|f| f.address).collect();
    assert_eq!(
        found,
        [
            addr(0, 0, 0),
            addr(0, 1, 0),
            addr(0, 3, 0),
            addr(0, 3, 2),
            addr(0, 6, 0),
            addr(2, 0, 0),
            addr(2, 1, 0)
        ]
    );
    assert_eq!(find(&mut space, 0x1af4, 0x1042).map(|f| f.address), Some(addr(2, 0, 0)));
    assert_eq!(find(&mut space, 0xdead, 0xbeef), None);
}

#[test]
fn bars_decode_every_kind_and_restore_registers() {
    let mut space = FakeSpace::default().with(0, 4, 0, qemu_virtio_blk());
    let a = addr(0, 4, 0);
    update_command(&mut space, a, regs::COMMAND_IO | regs::COMMAND_MEMORY, 0);
    let before = space.function(0, 4, 0).regs;
    let h = header(&mut space, a);
    let all = bars(&mut space, a, &h).unwrap();
    assert_eq!(all[0], Some(Bar::Io { port: 0xc000, size: 0x80 }));
    assert_eq!(
        all[1],
        Some(Bar::Memory { address: 0xfebf_1000, size: 0x1000, prefetchable: false, wide: false })
    );
    assert_eq!(all[2], None);
    assert_eq!(all[3], None);
    assert_eq!(
        all[4],
        Some(Bar::Memory { address: 0xfe00_0000, size: 0x4000, prefetchable: true, wide: true })
    );
    assert_eq!(all[5], None, "the high half of BAR 4");
    assert_eq!(space.function(0, 4, 0).regs, before, "probing restores BARs and command");
    assert!(!space.bar_written_while_decoding, "decoding is off while a BAR holds all-ones");
}

#[test]
fn sixty_four_bit_bar_above_4g() {
    let f = FakeFunction::new(1, 1).mem64_bar(2, 0x8_0000_0000, 1 << 33, false);
    let mut space = FakeSpace::default().with(0, 0, 0, f);
    let a = addr(0, 0, 0);
    let h = header(&mut space, a);
    assert_eq!(
        bar(&mut space, a, &h, 2),
        Ok(Some(Bar::Memory {
            address: 0x8_0000_0000,
            size: 1 << 33,
            prefetchable: false,
            wide: true
        }))
    );
}

#[test]
fn malformed_bars_are_errors() {
    let a = addr(0, 0, 0);
    // Reserved memory type 0b11.
    let mut f = FakeFunction::new(1, 1);
    f.set32(0x10, 0x6);
    f.bar_masks[0] = 0xffff_f000;
    // Size bits not contiguous from the top: not a power of two.
    f.set32(0x14, 0);
    f.bar_masks[1] = 0xff0f_f000;
    // 64-bit BAR in the last slot.
    f.set32(0x24, 0x4);
    f.bar_masks[5] = 0xffff_f000;
    let mut space = FakeSpace::default().with(0, 0, 0, f);
    let h = header(&mut space, a);
    assert_eq!(bar(&mut space, a, &h, 0), Err(Error::BadBar { index: 0, probe: 0x6 }));
    assert_eq!(bar(&mut space, a, &h, 1), Err(Error::BadBar { index: 1, probe: 0xff0f_f000 }));
    assert_eq!(bar(&mut space, a, &h, 5), Err(Error::Bar64InLastSlot { index: 5 }));
    assert_eq!(bar(&mut space, a, &h, 6), Err(Error::NoSuchBar { index: 6 }));
    assert_eq!(bars(&mut space, a, &h), Err(Error::BadBar { index: 0, probe: 0x6 }));
    // A bridge has two BAR slots.
    let mut space = FakeSpace::default().with(0, 0, 0, FakeFunction::new(1, 1).bridge(1));
    let h = header(&mut space, a);
    assert_eq!(bar(&mut space, a, &h, 2), Err(Error::NoSuchBar { index: 2 }));
    assert_eq!(bars(&mut space, a, &h), Ok([None; 6]));
}

#[test]
fn virtio_capabilities_decode() {
    let a = addr(0, 4, 0);
    let mut space = FakeSpace::default().with(0, 4, 0, qemu_virtio_blk());
    let all: Vec<_> = caps(&mut space, a).into_iter().map(Result::unwrap).collect();
    assert_eq!(all.len(), 6);
    assert_eq!(
        all[0].kind,
        CapabilityKind::MsiX(MsiX {
            table_size: 2,
            enabled: false,
            function_mask: false,
            table_bar: 1,
            table_offset: 0,
            pba_bar: 1,
            pba_offset: 0x800,
        })
    );
    let virtio: Vec<_> = all[1..]
        .iter()
        .map(|c| match c.kind {
            CapabilityKind::Virtio(v) => v,
            other => panic!("not virtio: {other:?}"),
        })
        .collect();
    let types: Vec<_> = virtio.iter().map(|v| v.cfg_type).collect();
    assert_eq!(
        types,
        [
            VirtioCfgType::PciCfg,
            VirtioCfgType::Device,
            VirtioCfgType::Notify,
            VirtioCfgType::Isr,
            VirtioCfgType::Common
        ]
    );
    let notify = virtio[2];
    assert_eq!((notify.bar, notify.offset, notify.length), (4, 0x2000, 0x1000));
    assert_eq!(notify.notify_off_multiplier, Some(4));
    assert_eq!(virtio[4].notify_off_multiplier, None);
    assert_eq!(virtio[4].range_in(0x4000), Some(0..0x1000));
    assert_eq!(virtio[1].range_in(0x3800), None, "device cfg ends past a smaller BAR");
    let h = header(&mut space, a);
    assert_eq!(find_capability(&mut space, a, &h, CAP_ID_MSI), Ok(None));
    assert_eq!(
        find_capability(&mut space, a, &h, CAP_ID_MSIX).map(|c| c.map(|c| c.offset)),
        Ok(Some(0x98))
    );
}

#[test]
fn msi_and_other_capabilities() {
    let a = addr(0, 0, 0);
    let f = FakeFunction::new(0x8086, 0x100e)
        .cap_pointer(0xdc)
        .bytes(0xdc, &[0x01, 0xe4, 0, 0]) // power management
        .bytes(0xe4, &[CAP_ID_MSI, 0xf0, 0x87, 0x01]) // enabled, 8 vectors, 64-bit, masking
        .bytes(0xf0, &[CAP_ID_VENDOR, 0, 2, 0]); // vendor cap of a non-virtio device
    let mut space = FakeSpace::default().with(0, 0, 0, f);
    let all: Vec<_> = caps(&mut space, a).into_iter().map(Result::unwrap).collect();
    assert_eq!(all[0], Capability { offset: 0xdc, id: 1, kind: CapabilityKind::Other });
    let msi = Msi {
        enabled: true,
        multiple_message_capable: 3,
        address_64: true,
        per_vector_masking: true,
    };
    assert_eq!(all[1].kind, CapabilityKind::Msi(msi));
    assert_eq!(msi.len(), 24);
    assert_eq!(all[2].kind, CapabilityKind::Vendor);
    assert_eq!(message_control(&mut space, a, &all[1]), 0x0187);
}

#[test]
fn no_capability_list_without_status_bit() {
    let a = addr(0, 0, 0);
    let f = FakeFunction::new(1, 1).bytes(regs::CAP_POINTER, &[0x40]).bytes(0x40, &[1, 0, 0, 0]);
    let mut space = FakeSpace::default().with(0, 0, 0, f);
    assert!(caps(&mut space, a).is_empty());
}

#[test]
fn malformed_capability_lists_are_errors() {
    let a = addr(0, 0, 0);
    let walk = |f: FakeFunction| {
        let mut space = FakeSpace::default().with(0, 0, 0, f);
        caps(&mut space, a)
    };
    let base = || FakeFunction::new(0x1af4, 0x1042);
    // a -> b -> a
    let r = walk(base().cap_pointer(0x40).bytes(0x40, &[1, 0x50]).bytes(0x50, &[1, 0x40]));
    assert_eq!(r.len(), 3);
    assert_eq!(r[2], Err(Error::CapabilityLoop { offset: 0x40 }));
    // Points at itself; the low two pointer bits are ignored.
    let r = walk(base().cap_pointer(0x40).bytes(0x40, &[1, 0x43]));
    assert_eq!(r.last(), Some(&Err(Error::CapabilityLoop { offset: 0x40 })));
    // First pointer, then a next pointer, into the standard header.
    assert_eq!(walk(base().cap_pointer(0x20)), [Err(Error::CapabilityPointer { pointer: 0x20 })]);
    let r = walk(base().cap_pointer(0x40).bytes(0x40, &[1, 0x3c]));
    assert_eq!(r[1], Err(Error::CapabilityPointer { pointer: 0x3c }));
    // MSI-X at the last dword runs past byte 255.
    let r = walk(base().cap_pointer(0xfc).bytes(0xfc, &[CAP_ID_MSIX, 0, 0, 0]));
    assert_eq!(r, [Err(Error::CapabilityTooShort { offset: 0xfc, id: CAP_ID_MSIX })]);
    // Virtio capability shorter than 16 bytes; notify shorter than 20.
    let r = walk(base().cap_pointer(0x40).bytes(0x40, &[CAP_ID_VENDOR, 0, 8, 1]));
    assert_eq!(r, [Err(Error::CapabilityTooShort { offset: 0x40, id: CAP_ID_VENDOR })]);
    let r = walk(base().cap_pointer(0x40).bytes(0x40, &virtio_cap(0, 2, 4, 0, 0, None)));
    assert_eq!(r, [Err(Error::CapabilityTooShort { offset: 0x40, id: CAP_ID_VENDOR })]);
    // Virtio capability whose cap_len runs past byte 255.
    let r = walk(base().cap_pointer(0xf0).bytes(0xf0, &[CAP_ID_VENDOR, 0, 0x20, 1]));
    assert_eq!(r, [Err(Error::CapabilityTooShort { offset: 0xf0, id: CAP_ID_VENDOR })]);
    // MSI-X naming BAR 7.
    let r =
        walk(base().cap_pointer(0x40).bytes(0x40, &[CAP_ID_MSIX, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(r, [Err(Error::CapabilityBar { offset: 0x40, bar: 7 })]);
    // 64-bit MSI with masking (24 bytes) at 0xf0.
    let r = walk(base().cap_pointer(0xf0).bytes(0xf0, &[CAP_ID_MSI, 0, 0x80, 0x01]));
    assert_eq!(r, [Err(Error::CapabilityTooShort { offset: 0xf0, id: CAP_ID_MSI })]);
}

#[test]
fn update_command_keeps_status() {
    let a = addr(0, 0, 0);
    let mut space = FakeSpace::default().with(0, 0, 0, FakeFunction::new(1, 1).cap_pointer(0));
    let new = update_command(
        &mut space,
        a,
        regs::COMMAND_MEMORY | regs::COMMAND_BUS_MASTER,
        regs::COMMAND_IO,
    );
    assert_eq!(new, 0x6);
    let h = header(&mut space, a);
    assert_eq!(h.command, 0x6);
    assert_eq!(h.status, regs::STATUS_CAP_LIST);
}

#[test]
fn reserved_virtio_bar_is_reported_not_used() {
    let a = addr(0, 0, 0);
    let f = FakeFunction::new(0x1af4, 0x1042)
        .cap_pointer(0x40)
        .bytes(0x40, &virtio_cap(0, 1, 6, 0, 0x38, None));
    let mut space = FakeSpace::default().with(0, 0, 0, f);
    let r = caps(&mut space, a);
    let Ok(Capability { kind: CapabilityKind::Virtio(v), .. }) = r[0] else { panic!("{r:?}") };
    assert_eq!((v.bar, v.bar_index()), (6, None));
}

/// Walks everything a driver would read from a function: header, BARs and
/// capabilities, counting capabilities. Errors are fine; panics and endless
/// walks are not.
fn read_everything(space: &mut FakeSpace) -> usize {
    let functions: Vec<_> = enumerate(space).collect();
    let mut caps_seen = 0;
    for f in functions {
        let _ = bars(space, f.address, &f.header);
        for i in 0..8 {
            let _ = bar(space, f.address, &f.header, i);
        }
        let mut n = 0;
        let mut errors = 0;
        for c in capabilities(space, f.address, &f.header) {
            n += 1;
            errors += c.is_err() as usize;
        }
        assert!(n <= 49, "at most 48 entries and one error");
        assert!(errors <= 1);
        caps_seen += n;
    }
    caps_seen
}

proptest! {
    /// Any configuration space contents: reading it ends, without panics.
    #[test]
    fn arbitrary_config_space_never_panics(
        regs in proptest::array::uniform32(any::<u32>()),
        tail in proptest::array::uniform32(any::<u32>()),
        masks in proptest::array::uniform6(any::<u32>()),
        status_caps in any::<bool>(),
    ) {
        let mut f = FakeFunction::new(0, 0);
        f.regs[..32].copy_from_slice(&regs);
        f.regs[32..].copy_from_slice(&tail);
        if f.regs[0] as u16 == 0xffff {
            f.regs[0] ^= 1;
        }
        if status_caps {
            f.regs[1] |= 1 << 20;
        }
        f.bar_masks = masks;
        let mut space = FakeSpace::default().with(0, 0, 0, f.clone()).with(0, 0, 1, f.clone()).with(1, 0, 0, f);
        read_everything(&mut space);
    }

    /// A chain of plain capabilities with random next pointers gives exactly
    /// the entries a reference walk visits, then the error it predicts.
    #[test]
    fn capability_chain_matches_model(first in any::<u8>(), nexts in proptest::collection::vec(any::<u8>(), 64)) {
        let mut f = FakeFunction::new(0x8086, 1).cap_pointer(first);
        for slot in 16..64u8 {
            f = f.bytes(slot * 4, &[0x01, nexts[slot as usize]]);
        }
        let mut space = FakeSpace::default().with(0, 0, 0, f);
        let got = caps(&mut space, addr(0, 0, 0));
        // The model.
        let mut expected = Vec::new();
        let mut seen = BTreeSet::new();
        let mut p = first & 0xfc;
        while p != 0 {
            if p < 0x40 {
                expected.push(Err(Error::CapabilityPointer { pointer: p }));
                break;
            }
            if !seen.insert(p) {
                expected.push(Err(Error::CapabilityLoop { offset: p }));
                break;
            }
            expected.push(Ok(Capability { offset: p, id: 1, kind: CapabilityKind::Other }));
            p = nexts[p as usize / 4] & 0xfc;
        }
        prop_assert_eq!(got, expected);
    }

    /// Any well-formed BAR decodes to what was programmed, and probing it
    /// leaves configuration space as it was.
    #[test]
    fn bar_round_trip(kind in 0..4u8, size_log in 4..40u32, frame in any::<u64>(), index in 0..5usize, prefetch in any::<bool>()) {
        let f = FakeFunction::new(1, 2);
        let (f, expected) = match kind {
            0 => {
                let size = 1u32 << (size_log % 8).max(2);
                let port = (frame as u32 & 0xffff) & !(size - 1);
                (f.io_bar(index, port, size), Bar::Io { port, size })
            }
            1 => {
                let size = 1u32 << size_log.min(31);
                let address = (frame as u32) & !(size - 1) & !0xf;
                (f.mem32_bar(index, address, size, prefetch),
                 Bar::Memory { address: address as u64, size: size as u64, prefetchable: prefetch, wide: false })
            }
            _ => {
                let size = 1u64 << size_log;
                let address = frame & ((1 << 52) - 1) & !(size - 1) & !0xf;
                (f.mem64_bar(index, address, size, prefetch),
                 Bar::Memory { address, size, prefetchable: prefetch, wide: true })
            }
        };
        let mut space = FakeSpace::default().with(0, 0, 0, f);
        let a = addr(0, 0, 0);
        let before = space.function(0, 0, 0).regs;
        let h = header(&mut space, a);
        prop_assert_eq!(bar(&mut space, a, &h, index as u8), Ok(Some(expected)));
        let all = bars(&mut space, a, &h).unwrap();
        prop_assert_eq!(all[index], Some(expected));
        prop_assert_eq!(all.iter().flatten().count(), 1);
        prop_assert_eq!(space.function(0, 0, 0).regs, before);
    }

    /// Enumeration of bus 0 lists exactly the functions whose device has a
    /// function 0, and functions above 0 only of multifunction devices.
    #[test]
    fn enumeration_matches_model(present in proptest::collection::btree_set((0..32u8, 0..8u8), 0..40), multi in any::<u32>()) {
        let mut space = FakeSpace::default();
        for &(d, f) in &present {
            let mut func = FakeFunction::new(0x1000 + d as u16, f as u16);
            if multi & (1 << d) != 0 {
                func = func.multifunction();
            }
            space = space.with(0, d, f, func);
        }
        let got: Vec<_> = enumerate(&mut space).map(|f| (f.address.device(), f.address.function())).collect();
        let expected: Vec<_> = present
            .iter()
            .copied()
            .filter(|&(d, f)| present.contains(&(d, 0)) && (f == 0 || multi & (1 << d) != 0))
            .collect();
        prop_assert_eq!(got, expected);
    }
}
