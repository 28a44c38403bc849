//! ACPI tables, read-only: from the RSDP that the PVH start-info block names
//! to the MADT, which lists the CPUs' local APICs, the I/O APICs and how ISA
//! interrupt lines map onto global system interrupts (GSIs).
//!
//! This module owns the parsing and the validation (signatures, lengths,
//! checksums, bounds) of the tables the kernel needs. It never touches
//! memory itself: every byte comes through [`PhysRead`], which the kernel
//! implements over its direct map and the tests over a fake memory. It must
//! never trust a length or a pointer it read: every walk is bounded, and a
//! malformed table is an error, never a panic or an endless loop.

use alloc::vec::Vec;
use core::fmt;

/// Reads physical memory for the parser.
pub trait PhysRead {
    /// Fills `buf` from physical address `phys`; `false` if any of it lies
    /// outside memory the kernel can read.
    fn read(&self, phys: u64, buf: &mut [u8]) -> bool;
}

/// Why the tables could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// A table or the RSDP lies outside readable memory.
    Unreadable {
        /// Its physical address.
        at: u64,
    },
    /// A signature is not the one expected.
    BadSignature {
        /// Its physical address.
        at: u64,
    },
    /// A checksum does not add up to zero.
    BadChecksum {
        /// Its physical address.
        at: u64,
    },
    /// A length field is too small, too large, or runs past its table.
    BadLength {
        /// Its physical address.
        at: u64,
    },
    /// No MADT is listed.
    NoMadt,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::Unreadable { at } => write!(f, "ACPI table at {at:#x} is not readable"),
            AcpiError::BadSignature { at } => write!(f, "bad ACPI signature at {at:#x}"),
            AcpiError::BadChecksum { at } => write!(f, "bad ACPI checksum at {at:#x}"),
            AcpiError::BadLength { at } => write!(f, "bad ACPI table length at {at:#x}"),
            AcpiError::NoMadt => write!(f, "no MADT in the ACPI tables"),
        }
    }
}

/// The largest table read, in bytes: far above any MADT or XSDT a machine
/// has, and a bound on what a corrupt length can make the kernel copy.
pub const TABLE_MAX: usize = 64 * 1024;
/// The most root-table entries looked at.
const ROOT_ENTRIES_MAX: usize = 256;
/// Size of the common table header.
const HEADER_LEN: usize = 36;

/// A CPU's local APIC, as the MADT lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalApic {
    /// The firmware's processor UID.
    pub processor_uid: u32,
    /// The APIC ID (the INIT/SIPI target).
    pub apic_id: u32,
    /// Enabled now (else it may only be brought online later, or never).
    pub enabled: bool,
}

/// An I/O APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// Its ID.
    pub id: u8,
    /// Physical address of its registers.
    pub address: u32,
    /// The first GSI its inputs carry.
    pub gsi_base: u32,
}

/// Electrical polarity of an interrupt input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Active when high (ISA's default).
    High,
    /// Active when low (PCI's).
    Low,
}

/// How an interrupt input signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// On an edge (ISA's default).
    Edge,
    /// While asserted: must be masked until the device is served.
    Level,
}

/// An ISA interrupt line routed elsewhere than its own number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOverride {
    /// The ISA line (0..16).
    pub isa_irq: u8,
    /// The GSI it arrives on.
    pub gsi: u32,
    /// Its polarity.
    pub polarity: Polarity,
    /// Its trigger mode.
    pub trigger: Trigger,
}

/// What the kernel keeps of the MADT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Madt {
    /// Physical address of the local APICs.
    pub local_apic_address: u64,
    /// Whether legacy 8259 PICs are present (and must be masked).
    pub has_8259: bool,
    /// Every CPU, in table order.
    pub cpus: Vec<LocalApic>,
    /// Every I/O APIC.
    pub io_apics: Vec<IoApic>,
    /// ISA lines that do not map one to one.
    pub overrides: Vec<SourceOverride>,
}

/// Where a GSI arrives and how it signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The GSI.
    pub gsi: u32,
    /// Index into [`Madt::io_apics`].
    pub io_apic: usize,
    /// The input pin on that I/O APIC.
    pub pin: u32,
    /// Its polarity.
    pub polarity: Polarity,
    /// Its trigger mode.
    pub trigger: Trigger,
}

impl Madt {
    /// The route of ISA line `irq` (0..16): its override if the MADT has
    /// one, else the same-numbered GSI, edge-triggered and active high.
    /// `pins_of` says how many inputs each I/O APIC has (read from its
    /// version register). `None` if no I/O APIC carries that GSI.
    pub fn isa_route(&self, irq: u8, pins_of: impl Fn(usize) -> u32) -> Option<Route> {
        let (gsi, polarity, trigger) = match self.overrides.iter().find(|o| o.isa_irq == irq) {
            Some(o) => (o.gsi, o.polarity, o.trigger),
            None => (irq as u32, Polarity::High, Trigger::Edge),
        };
        self.gsi_route(gsi, polarity, trigger, pins_of)
    }

    /// The I/O APIC input that carries `gsi`, with the given signalling.
    pub fn gsi_route(
        &self,
        gsi: u32,
        polarity: Polarity,
        trigger: Trigger,
        pins_of: impl Fn(usize) -> u32,
    ) -> Option<Route> {
        self.io_apics.iter().enumerate().find_map(|(i, a)| {
            let pin = gsi.checked_sub(a.gsi_base)?;
            (pin < pins_of(i)).then_some(Route { gsi, io_apic: i, pin, polarity, trigger })
        })
    }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    (u32_at(b, off) as u64) | ((u32_at(b, off + 4) as u64) << 32)
}

/// Reads a whole table at `phys` after checking its header, length and
/// checksum; `signature` is checked if given.
fn read_table(
    mem: &impl PhysRead,
    phys: u64,
    signature: Option<&[u8; 4]>,
) -> Result<Vec<u8>, AcpiError> {
    let mut header = [0u8; HEADER_LEN];
    if !mem.read(phys, &mut header) {
        return Err(AcpiError::Unreadable { at: phys });
    }
    if signature.is_some_and(|s| header[..4] != s[..]) {
        return Err(AcpiError::BadSignature { at: phys });
    }
    let len = u32_at(&header, 4) as usize;
    if !(HEADER_LEN..=TABLE_MAX).contains(&len) {
        return Err(AcpiError::BadLength { at: phys });
    }
    // Bounded by TABLE_MAX; read at boot only.
    let mut table = alloc::vec![0u8; len];
    if !mem.read(phys, &mut table) {
        return Err(AcpiError::Unreadable { at: phys });
    }
    if !checksum_ok(&table) {
        return Err(AcpiError::BadChecksum { at: phys });
    }
    Ok(table)
}

/// The physical addresses the root table (XSDT if the RSDP has one, else
/// RSDT) lists.
fn root_entries(mem: &impl PhysRead, rsdp: u64) -> Result<Vec<u64>, AcpiError> {
    let mut r = [0u8; 36];
    if !mem.read(rsdp, &mut r[..20]) {
        return Err(AcpiError::Unreadable { at: rsdp });
    }
    if &r[..8] != b"RSD PTR " {
        return Err(AcpiError::BadSignature { at: rsdp });
    }
    if !checksum_ok(&r[..20]) {
        return Err(AcpiError::BadChecksum { at: rsdp });
    }
    let revision = r[15];
    let (root, entry_size, signature) = if revision >= 2 {
        if !mem.read(rsdp, &mut r) {
            return Err(AcpiError::Unreadable { at: rsdp });
        }
        if !checksum_ok(&r) {
            return Err(AcpiError::BadChecksum { at: rsdp });
        }
        (u64_at(&r, 24), 8, b"XSDT")
    } else {
        (u32_at(&r, 16) as u64, 4, b"RSDT")
    };
    let table = read_table(mem, root, Some(signature))?;
    let body = &table[HEADER_LEN..];
    if body.len() % entry_size != 0 {
        return Err(AcpiError::BadLength { at: root });
    }
    Ok(body
        .chunks_exact(entry_size)
        .take(ROOT_ENTRIES_MAX)
        .map(|e| if entry_size == 8 { u64_at(e, 0) } else { u32_at(e, 0) as u64 })
        .collect())
}

fn polarity(flags: u16) -> Polarity {
    // Bits 0-1: 0 = the bus's default (high for ISA), 3 = active low.
    if flags & 0b11 == 0b11 {
        Polarity::Low
    } else {
        Polarity::High
    }
}

fn trigger(flags: u16) -> Trigger {
    // Bits 2-3: 0 = the bus's default (edge for ISA), 3 = level.
    if (flags >> 2) & 0b11 == 0b11 {
        Trigger::Level
    } else {
        Trigger::Edge
    }
}

/// Parses a MADT's body (the bytes after the common header). Entries of
/// unknown types are skipped; a zero or overlong entry length is an error.
fn parse_madt(table: &[u8], at: u64) -> Result<Madt, AcpiError> {
    if table.len() < HEADER_LEN + 8 {
        return Err(AcpiError::BadLength { at });
    }
    let mut madt = Madt {
        local_apic_address: u32_at(table, HEADER_LEN) as u64,
        has_8259: u32_at(table, HEADER_LEN + 4) & 1 != 0,
        ..Madt::default()
    };
    let mut off = HEADER_LEN + 8;
    while off < table.len() {
        let rest = &table[off..];
        if rest.len() < 2 {
            return Err(AcpiError::BadLength { at: at + off as u64 });
        }
        let (kind, len) = (rest[0], rest[1] as usize);
        if len < 2 || len > rest.len() {
            return Err(AcpiError::BadLength { at: at + off as u64 });
        }
        let e = &rest[..len];
        match (kind, len) {
            (0, 8..) => madt.cpus.push(LocalApic {
                processor_uid: e[2] as u32,
                apic_id: e[3] as u32,
                enabled: u32_at(e, 4) & 1 != 0,
            }),
            (1, 12..) => madt.io_apics.push(IoApic {
                id: e[2],
                address: u32_at(e, 4),
                gsi_base: u32_at(e, 8),
            }),
            (2, 10..) => {
                let flags = u16::from_le_bytes([e[8], e[9]]);
                // Only bus 0 (ISA) is defined.
                if e[2] == 0 && e[3] < 16 {
                    madt.overrides.push(SourceOverride {
                        isa_irq: e[3],
                        gsi: u32_at(e, 4),
                        polarity: polarity(flags),
                        trigger: trigger(flags),
                    });
                }
            }
            (5, 12..) => madt.local_apic_address = u64_at(e, 4),
            (9, 16..) => madt.cpus.push(LocalApic {
                processor_uid: u32_at(e, 12),
                apic_id: u32_at(e, 4),
                enabled: u32_at(e, 8) & 1 != 0,
            }),
            (0 | 1 | 2 | 5 | 9, _) => return Err(AcpiError::BadLength { at: at + off as u64 }),
            _ => {}
        }
        off += len;
    }
    Ok(madt)
}

/// Finds and parses the MADT, starting from the RSDP at `rsdp`.
pub fn madt(mem: &impl PhysRead, rsdp: u64) -> Result<Madt, AcpiError> {
    for table in root_entries(mem, rsdp)? {
        let mut signature = [0u8; 4];
        if !mem.read(table, &mut signature) || &signature != b"APIC" {
            continue;
        }
        let bytes = read_table(mem, table, Some(b"APIC"))?;
        return parse_madt(&bytes, table);
    }
    Err(AcpiError::NoMadt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A sparse fake physical memory.
    #[derive(Default)]
    struct Memory(Vec<(u64, Vec<u8>)>);

    impl Memory {
        fn put(&mut self, at: u64, bytes: Vec<u8>) {
            self.0.push((at, bytes));
        }
    }

    impl PhysRead for Memory {
        fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
            self.0.iter().any(|(at, bytes)| {
                let Some(off) = phys.checked_sub(*at) else { return false };
                let Some(src) = bytes.get(off as usize..off as usize + buf.len()) else {
                    return false;
                };
                buf.copy_from_slice(src);
                true
            })
        }
    }

    fn fix_checksum(bytes: &mut [u8], at: usize, over: usize) {
        bytes[at] = 0;
        let sum = bytes[..over].iter().fold(0u8, |s, b| s.wrapping_add(*b));
        bytes[at] = 0u8.wrapping_sub(sum);
    }

    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER_LEN];
        t[..4].copy_from_slice(signature);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        let n = t.len();
        fix_checksum(&mut t, 9, n);
        t
    }

    fn rsdp_v2(xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = 2;
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut r, 8, 20);
        fix_checksum(&mut r, 32, 36);
        r
    }

    fn rsdp_v1(rsdt: u32) -> Vec<u8> {
        let mut r = vec![0u8; 20];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        fix_checksum(&mut r, 8, 20);
        r
    }

    /// The MADT body QEMU's `pc` machine builds for two CPUs, in shape.
    fn qemu_like_madt_body() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // CPU 0, APIC 0, enabled
        b.extend_from_slice(&[0, 8, 1, 1, 1, 0, 0, 0]); // CPU 1, APIC 1, enabled
        b.extend_from_slice(&[1, 12, 0, 0]);
        b.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        // IRQ 0 -> GSI 2, bus defaults.
        b.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
        // IRQ 9 -> GSI 9, active high, level.
        b.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]);
        b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]); // local NMI: skipped
        b
    }

    fn machine(body: &[u8], v2: bool) -> Memory {
        let mut m = Memory::default();
        m.put(0x1000, table(b"FACP", &[0; 8]));
        m.put(0x2000, table(b"APIC", body));
        if v2 {
            let mut x = Vec::new();
            x.extend_from_slice(&0x1000u64.to_le_bytes());
            x.extend_from_slice(&0x2000u64.to_le_bytes());
            m.put(0x3000, table(b"XSDT", &x));
            m.put(0xe0000, rsdp_v2(0x3000));
        } else {
            let mut x = Vec::new();
            x.extend_from_slice(&0x1000u32.to_le_bytes());
            x.extend_from_slice(&0x2000u32.to_le_bytes());
            m.put(0x3000, table(b"RSDT", &x));
            m.put(0xe0000, rsdp_v1(0x3000));
        }
        m
    }

    #[test]
    fn finds_cpus_io_apic_and_overrides_through_either_root() {
        for v2 in [false, true] {
            let m = machine(&qemu_like_madt_body(), v2);
            let madt = madt(&m, 0xe0000).unwrap();
            assert_eq!(madt.local_apic_address, 0xfee0_0000);
            assert!(madt.has_8259);
            assert_eq!(
                madt.cpus,
                vec![
                    LocalApic { processor_uid: 0, apic_id: 0, enabled: true },
                    LocalApic { processor_uid: 1, apic_id: 1, enabled: true },
                ]
            );
            assert_eq!(madt.io_apics, vec![IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 }]);
            assert_eq!(madt.overrides.len(), 2);
            assert_eq!(madt.overrides[1].trigger, Trigger::Level);
            assert_eq!(madt.overrides[1].polarity, Polarity::High);
        }
    }

    #[test]
    fn isa_routes_follow_overrides_and_default_to_identity() {
        let madt = madt(&machine(&qemu_like_madt_body(), true), 0xe0000).unwrap();
        let pins = |_| 24;
        let timer = madt.isa_route(0, pins).unwrap();
        assert_eq!((timer.gsi, timer.pin, timer.trigger), (2, 2, Trigger::Edge));
        let com1 = madt.isa_route(4, pins).unwrap();
        assert_eq!((com1.gsi, com1.polarity, com1.trigger), (4, Polarity::High, Trigger::Edge));
        assert_eq!(madt.isa_route(9, pins).unwrap().trigger, Trigger::Level);
        // No I/O APIC input carries GSI 30.
        assert_eq!(madt.gsi_route(30, Polarity::Low, Trigger::Level, pins), None);
    }

    #[test]
    fn corrupt_tables_are_errors() {
        let good = machine(&qemu_like_madt_body(), true);
        // A wrong RSDP signature.
        assert_eq!(madt(&good, 0x1000), Err(AcpiError::BadSignature { at: 0x1000 }));
        // Nothing there.
        assert_eq!(madt(&good, 0x9_0000), Err(AcpiError::Unreadable { at: 0x9_0000 }));
        // A flipped byte in the MADT breaks its checksum.
        let mut m = machine(&qemu_like_madt_body(), true);
        m.0[1].1[50] ^= 1;
        assert_eq!(madt(&m, 0xe0000), Err(AcpiError::BadChecksum { at: 0x2000 }));
        // An entry of length 0 would loop forever: an error instead.
        let mut body = qemu_like_madt_body();
        body.extend_from_slice(&[7, 0]);
        assert!(matches!(madt(&machine(&body, false), 0xe0000), Err(AcpiError::BadLength { .. })));
        // An I/O APIC entry too short for its fields.
        let mut body = qemu_like_madt_body();
        body.extend_from_slice(&[1, 4, 0, 0]);
        assert!(matches!(madt(&machine(&body, false), 0xe0000), Err(AcpiError::BadLength { .. })));
        // No MADT listed.
        let mut m = Memory::default();
        m.put(0x3000, table(b"RSDT", &0x1000u32.to_le_bytes()));
        m.put(0x1000, table(b"FACP", &[0; 8]));
        m.put(0xe0000, rsdp_v1(0x3000));
        assert_eq!(madt(&m, 0xe0000), Err(AcpiError::NoMadt));
    }

    proptest! {
        /// Any bytes in the MADT body (with a valid checksum) give a result
        /// or an error, never a panic; a result lists only entries whose
        /// declared type the body held.
        #[test]
        fn any_madt_body_is_parsed_or_refused(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let m = machine(&body, true);
            if let Ok(madt) = madt(&m, 0xe0000) {
                prop_assert!(madt.overrides.iter().all(|o| o.isa_irq < 16));
            }
        }

        /// Random mutations of a good machine never make the parser panic.
        #[test]
        fn mutated_tables_never_panic(at in 0usize..400, byte in any::<u8>()) {
            let mut m = machine(&qemu_like_madt_body(), true);
            let region = at % m.0.len();
            let bytes = &mut m.0[region].1;
            let i = at % bytes.len();
            bytes[i] = byte;
            let _ = madt(&m, 0xe0000);
        }
    }
}
