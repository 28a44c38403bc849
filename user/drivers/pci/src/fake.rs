//! A fake configuration space for the tests: functions as 64 dwords each,
//! with BARs that behave like hardware (only their address bits are
//! writable) and a writable command register. Absent functions read all
//! ones.

use std::collections::BTreeMap;

use crate::{regs, Address, ConfigAccess};

#[derive(Clone, Debug)]
pub struct FakeFunction {
    pub regs: [u32; 64],
    /// Writable bits of each BAR dword (0: read-only, unimplemented).
    pub bar_masks: [u32; 6],
}

impl FakeFunction {
    pub fn new(vendor: u16, device: u16) -> FakeFunction {
        let mut f = FakeFunction { regs: [0; 64], bar_masks: [0; 6] };
        f.regs[0] = (device as u32) << 16 | vendor as u32;
        f
    }
    pub fn set8(&mut self, offset: u8, value: u8) {
        let word = &mut self.regs[offset as usize / 4];
        let shift = (offset % 4) * 8;
        *word = (*word & !(0xff << shift)) | (value as u32) << shift;
    }
    pub fn set32(&mut self, offset: u8, value: u32) {
        self.regs[offset as usize / 4] = value;
    }
    pub fn multifunction(mut self) -> FakeFunction {
        self.set8(regs::HEADER_TYPE + 2, self.regs[3].to_le_bytes()[2] | 0x80);
        self
    }
    pub fn bridge(mut self, secondary: u8) -> FakeFunction {
        let mf = self.regs[3].to_le_bytes()[2] & 0x80;
        self.set8(regs::HEADER_TYPE + 2, mf | 1);
        self.set8(regs::BRIDGE_BUSES + 1, secondary);
        self.set8(regs::BRIDGE_BUSES + 2, secondary);
        self
    }
    pub fn interrupt(mut self, line: u8, pin: u8) -> FakeFunction {
        self.set8(regs::INTERRUPT, line);
        self.set8(regs::INTERRUPT + 1, pin);
        self
    }
    pub fn io_bar(mut self, index: usize, port: u32, size: u32) -> FakeFunction {
        // A 16-bit decoder: the high half reads back zero.
        self.bar_masks[index] = !(size - 1) & 0xfffc;
        self.regs[4 + index] = port | 1;
        self
    }
    pub fn mem32_bar(
        mut self,
        index: usize,
        address: u32,
        size: u32,
        prefetch: bool,
    ) -> FakeFunction {
        self.bar_masks[index] = !(size - 1) & !0xf;
        self.regs[4 + index] = address | if prefetch { 8 } else { 0 };
        self
    }
    pub fn mem64_bar(
        mut self,
        index: usize,
        address: u64,
        size: u64,
        prefetch: bool,
    ) -> FakeFunction {
        let mask = !(size - 1);
        self.bar_masks[index] = mask as u32 & !0xf;
        self.bar_masks[index + 1] = (mask >> 32) as u32;
        self.regs[4 + index] = address as u32 | 0x4 | if prefetch { 8 } else { 0 };
        self.regs[5 + index] = (address >> 32) as u32;
        self
    }
    /// Points the capability list at `pointer` and sets the status bit.
    pub fn cap_pointer(mut self, pointer: u8) -> FakeFunction {
        self.regs[1] |= (regs::STATUS_CAP_LIST as u32) << 16;
        self.set8(regs::CAP_POINTER, pointer);
        self
    }
    /// Writes `bytes` at `offset` (a capability body).
    pub fn bytes(mut self, offset: u8, bytes: &[u8]) -> FakeFunction {
        for (i, b) in bytes.iter().enumerate() {
            self.set8(offset + i as u8, *b);
        }
        self
    }
    fn bar_slots(&self) -> usize {
        match self.regs[3].to_le_bytes()[2] & 0x7f {
            0 => 6,
            1 => 2,
            _ => 0,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct FakeSpace {
    pub functions: BTreeMap<Address, FakeFunction>,
    /// A BAR was written while the function decoded that kind of BAR.
    pub bar_written_while_decoding: bool,
    pub reads: usize,
}

impl FakeSpace {
    pub fn with(mut self, bus: u8, device: u8, function: u8, f: FakeFunction) -> FakeSpace {
        self.functions.insert(Address::new(bus, device, function).unwrap(), f);
        self
    }
    pub fn function(&self, bus: u8, device: u8, function: u8) -> &FakeFunction {
        &self.functions[&Address::new(bus, device, function).unwrap()]
    }
}

impl ConfigAccess for FakeSpace {
    fn read32(&mut self, address: Address, offset: u8) -> u32 {
        assert_eq!(offset % 4, 0, "unaligned configuration read");
        self.reads += 1;
        self.functions.get(&address).map_or(u32::MAX, |f| f.regs[offset as usize / 4])
    }

    fn write32(&mut self, address: Address, offset: u8, value: u32) {
        assert_eq!(offset % 4, 0, "unaligned configuration write");
        let Some(f) = self.functions.get_mut(&address) else { return };
        let index = offset as usize / 4;
        if offset == regs::COMMAND_STATUS {
            f.regs[1] = (f.regs[1] & 0xffff_0000) | (value & 0xffff);
        } else if (4..4 + f.bar_slots()).contains(&index) {
            let bar = index - 4;
            let command = f.regs[1] as u16;
            let io = f.regs[index] & 1 == 1;
            let decoding = if io {
                command & regs::COMMAND_IO != 0
            } else {
                command & regs::COMMAND_MEMORY != 0
            };
            if decoding {
                self.bar_written_while_decoding = true;
            }
            let mask = f.bar_masks[bar];
            f.regs[index] = (value & mask) | (f.regs[index] & !mask);
        }
    }
}
