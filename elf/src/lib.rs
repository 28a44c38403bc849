//! Validation of ELF images to be loaded as user programs, shared by the
//! kernel (`Spawn` of kernel-backed tasks, and the check of every image)
//! and the memory daemon (which fills paged tasks from the same plan).
//!
//! This module owns the decision whether an ELF image is loadable and turns
//! it into a [`LoadPlan`]: the entry point and the `PT_LOAD` segments, each
//! checked against the image bounds and the user load range. It must never
//! touch memory or page tables (the kernel carries the plan out) and must
//! never panic, whatever the bytes: every field of the image is untrusted
//! and all arithmetic on it is overflow-checked.
//!
//! Accepted images are static, non-PIE x86_64 executables (`ET_EXEC`,
//! ELF64, little-endian, no `PT_INTERP`), such as `ld -static -no-pie`
//! produces. Decisions:
//!
//! * **No page sharing.** Two segments may not touch the same 4 KiB page,
//!   even if their byte ranges do not overlap, so every page gets exactly one
//!   set of permissions. GNU ld (with or without `-z separate-code`) and LLD
//!   place each segment on its own pages: when segments are contiguous in
//!   the file, the linker shifts the next one's address by a page instead of
//!   sharing. Images that would need shared pages (`ld -N`/`--omagic`) are
//!   rejected with [`ElfError::SegmentsOverlap`] (or, being RWX, with
//!   [`ElfError::WritableAndExecutable`]).
//! * **W^X.** A segment both writable and executable is rejected.
//! * **Readability** is implied: on x86_64 every mapped page is readable, so
//!   `PF_R` is ignored.
//! * **File pages may be shared**: the kernel copies segment data out of the
//!   image rather than mapping it, so segments may overlap in the *file*
//!   (LLD does this); only their virtual pages must be distinct.
//! * **Other program headers** (`PT_TLS`, `PT_GNU_STACK`, `PT_NOTE`...) are
//!   ignored; only `PT_INTERP` is rejected.
//! * **Empty segments** (`p_memsz == 0`) are skipped but still count towards
//!   [`MAX_LOAD_SEGMENTS`].
//! * Page-granular limits: the load range and [`MAX_IMAGE_MEMORY`] are
//!   checked on the page-rounded extent of the segments, which is what gets
//!   mapped.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use elf::abi;
use elf::endian::AnyEndian;
use elf::ElfBytes;

/// Page size used for the layout checks.
pub const PAGE_SIZE: u64 = 4096;

/// Lowest address a segment may occupy (the first 64 KiB stay unmapped so
/// that null-pointer dereferences with small offsets fault).
pub const USER_LOAD_START: u64 = 0x1_0000;

/// Exclusive upper bound of segment addresses (16 TiB); the space above it
/// is the kernel's for anonymous mappings (`MemMap`), the boot module and
/// stacks, so an image can never collide with them.
pub const USER_LOAD_END: u64 = 0x0000_1000_0000_0000;

/// Maximum number of `PT_LOAD` program headers.
pub const MAX_LOAD_SEGMENTS: usize = 16;

/// Maximum total memory of the segments, in bytes (pages rounded out).
pub const MAX_IMAGE_MEMORY: u64 = 64 << 20;

/// Size of the ELF64 file header.
const EHDR_SIZE: usize = 64;

/// Why an ELF image cannot be loaded. `index` fields are program header
/// indices in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElfError {
    /// The image is shorter than an ELF64 file header.
    TooShort {
        /// Length of the image in bytes.
        len: usize,
    },
    /// The image does not start with the ELF magic `\x7fELF`.
    BadMagic,
    /// The image is not a 64-bit (ELFCLASS64) object.
    Not64Bit,
    /// The image is not little-endian.
    NotLittleEndian,
    /// The file header or program header table is malformed (bad version,
    /// entry size or table outside the image).
    Malformed,
    /// The image is for another architecture (`e_machine`).
    WrongMachine(u16),
    /// The image is not a static executable (`e_type` is not `ET_EXEC`;
    /// PIE and shared objects are `ET_DYN`).
    NotExecutable(u16),
    /// The image asks for a program interpreter (dynamic linking).
    NeedsInterpreter,
    /// The image has no non-empty `PT_LOAD` segment.
    NoLoadSegments,
    /// The image has more than [`MAX_LOAD_SEGMENTS`] `PT_LOAD` segments.
    TooManySegments(usize),
    /// A segment's file size exceeds its memory size.
    FileSizeExceedsMemSize {
        /// Program header index.
        index: usize,
    },
    /// A segment's file bytes lie (partly) outside the image.
    FileRangeOutOfBounds {
        /// Program header index.
        index: usize,
    },
    /// A segment's pages are not wholly inside
    /// `[USER_LOAD_START, USER_LOAD_END)`.
    OutsideUserRange {
        /// Program header index.
        index: usize,
    },
    /// A segment's alignment is not a power of two, or its address and file
    /// offset are not congruent modulo the page size or `p_align`.
    BadAlignment {
        /// Program header index.
        index: usize,
    },
    /// Two segments share at least one page.
    SegmentsOverlap {
        /// Program header index of one segment.
        first: usize,
        /// Program header index of the other.
        second: usize,
    },
    /// The segments need more than [`MAX_IMAGE_MEMORY`] bytes of pages.
    TooLarge {
        /// Bytes needed (pages rounded out).
        bytes: u64,
    },
    /// A segment is both writable and executable.
    WritableAndExecutable {
        /// Program header index.
        index: usize,
    },
    /// The entry point is not inside an executable segment.
    EntryNotExecutable(u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::TooShort { len } => write!(
                f,
                "ELF image is {len} bytes, shorter than an ELF64 header ({EHDR_SIZE} bytes)"
            ),
            ElfError::BadMagic => write!(f, "not an ELF image (bad magic number)"),
            ElfError::Not64Bit => write!(f, "ELF image is not 64-bit"),
            ElfError::NotLittleEndian => write!(f, "ELF image is not little-endian"),
            ElfError::Malformed => {
                write!(f, "ELF header or program header table is malformed or out of bounds")
            }
            ElfError::WrongMachine(m) => {
                write!(f, "ELF image is for machine {m}, not x86_64 (62)")
            }
            ElfError::NotExecutable(t) => {
                write!(f, "ELF type {t} is not a static executable (ET_EXEC); PIE is not supported")
            }
            ElfError::NeedsInterpreter => write!(
                f,
                "ELF image requests a program interpreter; only static executables are supported"
            ),
            ElfError::NoLoadSegments => write!(f, "ELF image has no loadable segment"),
            ElfError::TooManySegments(n) => {
                write!(f, "ELF image has {n} loadable segments, more than {MAX_LOAD_SEGMENTS}")
            }
            ElfError::FileSizeExceedsMemSize { index } => {
                write!(f, "ELF segment {index}: file size exceeds memory size")
            }
            ElfError::FileRangeOutOfBounds { index } => {
                write!(f, "ELF segment {index}: file data lies outside the image")
            }
            ElfError::OutsideUserRange { index } => write!(
                f,
                "ELF segment {index}: not inside the user load range \
                 [{USER_LOAD_START:#x}, {USER_LOAD_END:#x})"
            ),
            ElfError::BadAlignment { index } => write!(
                f,
                "ELF segment {index}: bad alignment (address and file offset not congruent)"
            ),
            ElfError::SegmentsOverlap { first, second } => {
                write!(f, "ELF segments {first} and {second} overlap or share a page")
            }
            ElfError::TooLarge { bytes } => {
                write!(f, "ELF image needs {bytes} bytes of memory, more than {MAX_IMAGE_MEMORY}")
            }
            ElfError::WritableAndExecutable { index } => {
                write!(f, "ELF segment {index}: both writable and executable (W^X violation)")
            }
            ElfError::EntryNotExecutable(entry) => {
                write!(f, "ELF entry point {entry:#x} is not inside an executable segment")
            }
        }
    }
}

/// One `PT_LOAD` segment to load: map the pages of
/// `[vaddr, vaddr + mem_size)`, copy `file_size` bytes from `file_offset`
/// of the image to `vaddr`, and zero the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    /// Virtual address of the first byte (need not be page-aligned).
    pub vaddr: u64,
    /// Size in memory, in bytes (non-zero).
    pub mem_size: u64,
    /// Offset of the segment's data in the image.
    pub file_offset: u64,
    /// Bytes to copy from the image (at most `mem_size`).
    pub file_size: u64,
    /// Whether the pages are writable.
    pub writable: bool,
    /// Whether the pages are executable.
    pub executable: bool,
}

impl Segment {
    /// The page-aligned virtual range covering the segment. (For a segment
    /// from [`plan`] this cannot overflow: it lies below [`USER_LOAD_END`].)
    pub fn pages(&self) -> Range<u64> {
        let start = self.vaddr & !(PAGE_SIZE - 1);
        let end = (self.vaddr + self.mem_size).next_multiple_of(PAGE_SIZE);
        start..end
    }

    /// The range of the image holding the segment's file data. (For a
    /// segment from [`plan`] this range is inside the image, even when
    /// empty, so indexing the image with it cannot panic.)
    pub fn file_range(&self) -> Range<usize> {
        let start = self.file_offset as usize;
        start..start + self.file_size as usize
    }
}

/// What to load: segments sorted by address, pairwise on distinct pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Virtual address of the entry point, inside an executable segment.
    pub entry: u64,
    /// The non-empty `PT_LOAD` segments, sorted by `vaddr`.
    pub segments: Vec<Segment>,
}

impl LoadPlan {
    /// Total bytes of the pages the segments cover.
    pub fn memory_size(&self) -> u64 {
        self.segments.iter().map(|s| s.pages().end - s.pages().start).sum()
    }
}

/// Validates `image` as a static x86_64 user executable and returns what
/// to load. See the module documentation for the rules.
pub fn plan(image: &[u8]) -> Result<LoadPlan, ElfError> {
    if image.len() < abi::EI_NIDENT {
        return Err(if image.len() >= 4 && image[..4] != abi::ELFMAGIC {
            ElfError::BadMagic
        } else {
            ElfError::TooShort { len: image.len() }
        });
    }
    if image[..4] != abi::ELFMAGIC {
        return Err(ElfError::BadMagic);
    }
    if image[abi::EI_CLASS] != abi::ELFCLASS64 {
        return Err(ElfError::Not64Bit);
    }
    if image[abi::EI_DATA] != abi::ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian);
    }
    if image.len() < EHDR_SIZE {
        return Err(ElfError::TooShort { len: image.len() });
    }
    let file = ElfBytes::<AnyEndian>::minimal_parse(image).map_err(|_| ElfError::Malformed)?;
    let header = &file.ehdr;
    if header.e_machine != abi::EM_X86_64 {
        return Err(ElfError::WrongMachine(header.e_machine));
    }
    if header.e_type != abi::ET_EXEC {
        return Err(ElfError::NotExecutable(header.e_type));
    }
    let phdrs = file.segments().ok_or(ElfError::NoLoadSegments)?;

    let mut loads = 0usize;
    let mut segments: Vec<(usize, Segment)> = Vec::new();
    for (index, ph) in phdrs.iter().enumerate() {
        if ph.p_type == abi::PT_INTERP {
            return Err(ElfError::NeedsInterpreter);
        }
        if ph.p_type != abi::PT_LOAD {
            continue;
        }
        loads += 1;
        if loads > MAX_LOAD_SEGMENTS {
            // Count them all for the message; the table is in the image.
            let total = phdrs.iter().filter(|p| p.p_type == abi::PT_LOAD).count();
            return Err(ElfError::TooManySegments(total));
        }
        if let Some(segment) = check_segment(image, index, &ph)? {
            segments.push((index, segment));
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadSegments);
    }

    segments.sort_unstable_by_key(|(_, s)| s.vaddr);
    for pair in segments.windows(2) {
        let ((i, a), (j, b)) = (pair[0], pair[1]);
        if a.pages().end > b.pages().start {
            return Err(ElfError::SegmentsOverlap { first: i.min(j), second: i.max(j) });
        }
    }
    let segments: Vec<Segment> = segments.into_iter().map(|(_, s)| s).collect();
    let plan = LoadPlan { entry: header.e_entry, segments };
    // No overflow: at most 16 segments, each below 2^47 bytes.
    let bytes = plan.memory_size();
    if bytes > MAX_IMAGE_MEMORY {
        return Err(ElfError::TooLarge { bytes });
    }
    let entry = plan.entry;
    if !plan
        .segments
        .iter()
        .any(|s| s.executable && entry >= s.vaddr && entry - s.vaddr < s.mem_size)
    {
        return Err(ElfError::EntryNotExecutable(entry));
    }
    Ok(plan)
}

/// Checks one `PT_LOAD` header; `None` for an empty segment.
fn check_segment(
    image: &[u8],
    index: usize,
    ph: &elf::segment::ProgramHeader,
) -> Result<Option<Segment>, ElfError> {
    if ph.p_filesz > ph.p_memsz {
        return Err(ElfError::FileSizeExceedsMemSize { index });
    }
    match ph.p_offset.checked_add(ph.p_filesz) {
        Some(end) if end <= image.len() as u64 => {}
        _ => return Err(ElfError::FileRangeOutOfBounds { index }),
    }
    if ph.p_memsz == 0 {
        return Ok(None);
    }
    let align = ph.p_align;
    if (align > 1 && !align.is_power_of_two())
        || ph.p_vaddr % PAGE_SIZE != ph.p_offset % PAGE_SIZE
        || (align > 1 && ph.p_vaddr % align != ph.p_offset % align)
    {
        return Err(ElfError::BadAlignment { index });
    }
    let start = ph.p_vaddr & !(PAGE_SIZE - 1);
    match ph.p_vaddr.checked_add(ph.p_memsz) {
        Some(end) if start >= USER_LOAD_START && end <= USER_LOAD_END => {}
        _ => return Err(ElfError::OutsideUserRange { index }),
    }
    let writable = ph.p_flags & abi::PF_W != 0;
    let executable = ph.p_flags & abi::PF_X != 0;
    if writable && executable {
        return Err(ElfError::WritableAndExecutable { index });
    }
    Ok(Some(Segment {
        vaddr: ph.p_vaddr,
        mem_size: ph.p_memsz,
        file_offset: ph.p_offset,
        file_size: ph.p_filesz,
        writable,
        executable,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const R: u32 = abi::PF_R;
    const RX: u32 = abi::PF_R | abi::PF_X;
    const RW: u32 = abi::PF_R | abi::PF_W;

    #[derive(Clone, Copy, Debug)]
    struct Ph {
        kind: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    }

    fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph { kind: abi::PT_LOAD, flags, offset, vaddr, filesz, memsz, align: 0x1000 }
    }

    /// A hand-made ELF64 image: header, program headers at offset 64, then
    /// zero padding up to `len` bytes.
    #[derive(Clone, Debug)]
    struct Builder {
        class: u8,
        data: u8,
        version: u8,
        kind: u16,
        machine: u16,
        entry: u64,
        phoff: u64,
        phentsize: u16,
        phnum: Option<u16>,
        phdrs: Vec<Ph>,
        len: usize,
    }

    impl Builder {
        /// Like `ld -static -no-pie -nostdlib`: headers, text, rodata, data+bss.
        fn valid() -> Self {
            Builder {
                class: abi::ELFCLASS64,
                data: abi::ELFDATA2LSB,
                version: 1,
                kind: abi::ET_EXEC,
                machine: abi::EM_X86_64,
                entry: 0x40_1000,
                phoff: 64,
                phentsize: 56,
                phnum: None,
                phdrs: vec![
                    load(R, 0, 0x40_0000, 0x120, 0x120),
                    load(RX, 0x1000, 0x40_1000, 0x7, 0x7),
                    load(R, 0x2000, 0x40_2000, 0x8, 0x8),
                    load(RW, 0x2008, 0x40_3008, 0x8, 0x2008),
                ],
                len: 0x2010,
            }
        }

        fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }

        fn build(&self) -> Vec<u8> {
            let mut b = vec![0u8; 64];
            b[..4].copy_from_slice(&abi::ELFMAGIC);
            b[4] = self.class;
            b[5] = self.data;
            b[6] = self.version;
            b[16..18].copy_from_slice(&self.kind.to_le_bytes());
            b[18..20].copy_from_slice(&self.machine.to_le_bytes());
            b[20..24].copy_from_slice(&1u32.to_le_bytes());
            b[24..32].copy_from_slice(&self.entry.to_le_bytes());
            b[32..40].copy_from_slice(&self.phoff.to_le_bytes());
            b[52..54].copy_from_slice(&64u16.to_le_bytes());
            b[54..56].copy_from_slice(&self.phentsize.to_le_bytes());
            let phnum = self.phnum.unwrap_or(self.phdrs.len() as u16);
            b[56..58].copy_from_slice(&phnum.to_le_bytes());
            b[58..60].copy_from_slice(&64u16.to_le_bytes());
            for p in &self.phdrs {
                b.extend_from_slice(&p.kind.to_le_bytes());
                b.extend_from_slice(&p.flags.to_le_bytes());
                for v in [p.offset, p.vaddr, p.vaddr, p.filesz, p.memsz, p.align] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
            if b.len() < self.len {
                b.resize(self.len, 0);
            }
            b
        }

        fn plan(&self) -> Result<LoadPlan, ElfError> {
            plan(&self.build())
        }
    }

    #[test]
    fn valid_image_plan() {
        let p = Builder::valid().plan().unwrap();
        assert_eq!(p.entry, 0x40_1000);
        assert_eq!(p.segments.len(), 4);
        assert_eq!(
            p.segments[3],
            Segment {
                vaddr: 0x40_3008,
                mem_size: 0x2008,
                file_offset: 0x2008,
                file_size: 8,
                writable: true,
                executable: false,
            }
        );
        assert!(p.segments[1].executable && !p.segments[1].writable);
        assert!(!p.segments[0].executable && !p.segments[0].writable);
        assert_eq!(p.segments[3].pages(), 0x40_3000..0x40_6000);
        assert_eq!(p.segments[3].file_range(), 0x2008..0x2010);
        assert_eq!(p.memory_size(), 6 * PAGE_SIZE);
    }

    #[test]
    fn lld_layout_is_accepted() {
        // What `rust-lld -static` emits: segments share file pages but not
        // virtual pages (addresses bumped by a page).
        let lld = Builder::valid().with(|b| {
            b.entry = 0x20_1160;
            b.phdrs = vec![
                load(R, 0, 0x20_0000, 0x160, 0x160),
                load(RX, 0x160, 0x20_1160, 7, 7),
                load(RW, 0x167, 0x20_2167, 8, 0x2008),
            ];
        });
        let p = lld.plan().unwrap();
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.memory_size(), 5 * PAGE_SIZE);
    }

    #[test]
    fn segments_are_sorted_and_others_ignored() {
        let p = Builder::valid()
            .with(|b| {
                b.phdrs.reverse();
                b.phdrs.insert(1, Ph { kind: abi::PT_NOTE, ..load(R, 0, 0, 0x20, 0x20) });
                b.phdrs.push(Ph { kind: abi::PT_GNU_STACK, ..load(RW, 0, 0, 0, 0) });
                b.phdrs.push(load(R, 0, 0x50_0000, 0, 0)); // empty: skipped
            })
            .plan()
            .unwrap();
        let addrs: Vec<u64> = p.segments.iter().map(|s| s.vaddr).collect();
        assert_eq!(addrs, vec![0x40_0000, 0x40_1000, 0x40_2000, 0x40_3008]);
    }

    #[test]
    fn header_errors() {
        let img = Builder::valid().build();
        assert_eq!(plan(&[]), Err(ElfError::TooShort { len: 0 }));
        assert_eq!(plan(&img[..3]), Err(ElfError::TooShort { len: 3 }));
        assert_eq!(plan(&img[..40]), Err(ElfError::TooShort { len: 40 }));
        assert_eq!(plan(&img[..63]), Err(ElfError::TooShort { len: 63 }));
        assert_eq!(plan(b"MZ\x90\x00"), Err(ElfError::BadMagic));
        assert_eq!(plan(&[0u8; 4096]), Err(ElfError::BadMagic));
        let mut bad = img.clone();
        bad[1] = b'e';
        assert_eq!(plan(&bad), Err(ElfError::BadMagic));
        let b = Builder::valid();
        assert_eq!(b.clone().with(|b| b.class = abi::ELFCLASS32).plan(), Err(ElfError::Not64Bit));
        assert_eq!(b.clone().with(|b| b.class = 7).plan(), Err(ElfError::Not64Bit));
        assert_eq!(
            b.clone().with(|b| b.data = abi::ELFDATA2MSB).plan(),
            Err(ElfError::NotLittleEndian)
        );
        assert_eq!(b.clone().with(|b| b.data = 0).plan(), Err(ElfError::NotLittleEndian));
        assert_eq!(b.clone().with(|b| b.version = 2).plan(), Err(ElfError::Malformed));
        assert_eq!(
            b.clone().with(|b| b.machine = abi::EM_386).plan(),
            Err(ElfError::WrongMachine(3))
        );
        assert_eq!(
            b.clone().with(|b| b.machine = abi::EM_AARCH64).plan(),
            Err(ElfError::WrongMachine(183))
        );
        assert_eq!(
            b.clone().with(|b| b.kind = abi::ET_DYN).plan(),
            Err(ElfError::NotExecutable(3))
        );
        assert_eq!(
            b.clone().with(|b| b.kind = abi::ET_REL).plan(),
            Err(ElfError::NotExecutable(1))
        );
    }

    #[test]
    fn program_header_table_errors() {
        let b = Builder::valid();
        assert_eq!(b.clone().with(|b| b.phentsize = 32).plan(), Err(ElfError::Malformed));
        assert_eq!(b.clone().with(|b| b.phoff = 0x10_0000).plan(), Err(ElfError::Malformed));
        assert_eq!(b.clone().with(|b| b.phoff = u64::MAX).plan(), Err(ElfError::Malformed));
        assert_eq!(b.clone().with(|b| b.phnum = Some(200)).plan(), Err(ElfError::Malformed));
        // No program header table at all, or one without PT_LOAD.
        assert_eq!(b.clone().with(|b| b.phoff = 0).plan(), Err(ElfError::NoLoadSegments));
        assert_eq!(b.clone().with(|b| b.phdrs.clear()).plan(), Err(ElfError::NoLoadSegments));
        let notes = b.clone().with(|b| {
            for p in &mut b.phdrs {
                p.kind = abi::PT_NOTE;
            }
        });
        assert_eq!(notes.plan(), Err(ElfError::NoLoadSegments));
        let empty = b.clone().with(|b| b.phdrs = vec![load(RX, 0, 0x40_0000, 0, 0)]);
        assert_eq!(empty.plan(), Err(ElfError::NoLoadSegments));
        let interp = b.with(|b| {
            b.phdrs.insert(0, Ph { kind: abi::PT_INTERP, ..load(R, 0x100, 0, 0x1c, 0x1c) })
        });
        assert_eq!(interp.plan(), Err(ElfError::NeedsInterpreter));
    }

    fn pages(n: usize) -> Builder {
        Builder::valid().with(|b| {
            b.phdrs = (0..n as u64)
                .map(|i| load(if i == 0 { RX } else { R }, 0, 0x40_0000 + i * 0x1000, 0, 0x10))
                .collect();
            b.entry = 0x40_0000;
        })
    }

    #[test]
    fn segment_count_limit() {
        assert_eq!(pages(MAX_LOAD_SEGMENTS).plan().unwrap().segments.len(), 16);
        assert_eq!(pages(MAX_LOAD_SEGMENTS + 1).plan(), Err(ElfError::TooManySegments(17)));
        assert_eq!(pages(40).plan(), Err(ElfError::TooManySegments(40)));
    }

    fn one(ph: Ph) -> Builder {
        Builder::valid().with(|b| {
            b.phdrs[1] = ph;
        })
    }

    #[test]
    fn file_size_and_range_errors() {
        let e = |ph| one(ph).plan();
        assert_eq!(
            e(load(RX, 0x1000, 0x40_1000, 9, 8)),
            Err(ElfError::FileSizeExceedsMemSize { index: 1 })
        );
        assert_eq!(
            e(load(RX, 0x1000, 0x40_1000, 1, 0)),
            Err(ElfError::FileSizeExceedsMemSize { index: 1 })
        );
        // The image is 0x2010 bytes long; the data segment ends it.
        let data = |filesz| Builder::valid().with(|b| b.phdrs[3].filesz = filesz).plan();
        assert!(data(8).is_ok());
        assert_eq!(data(9), Err(ElfError::FileRangeOutOfBounds { index: 3 }));
        assert_eq!(
            e(load(RX, 0x3000, 0x40_1000, 0x10, 0x10)),
            Err(ElfError::FileRangeOutOfBounds { index: 1 })
        );
        let far = !0xfff_u64;
        assert_eq!(
            e(load(RX, far, 0x40_1000, 0x2000, 0x2000)),
            Err(ElfError::FileRangeOutOfBounds { index: 1 })
        );
        assert_eq!(
            e(load(RX, 0x1000, 0x40_1000, u64::MAX, u64::MAX)),
            Err(ElfError::FileRangeOutOfBounds { index: 1 })
        );
        // Even a bss-only segment's (empty) file range must be in the image,
        // so that `Segment::file_range` can always index it.
        let bss =
            |offset| Builder::valid().with(|b| b.phdrs[3] = load(RW, offset, 0x40_3008, 0, 0x100));
        assert!(bss(0x2008).plan().is_ok());
        assert!(bss(0x2010 - 0x1000).plan().is_err()); // not congruent
        assert_eq!(bss(0x3008).plan(), Err(ElfError::FileRangeOutOfBounds { index: 3 }));
    }

    #[test]
    fn user_range_errors() {
        let e = |vaddr, memsz| {
            Builder::valid()
                .with(|b| {
                    b.phdrs[3] = load(RW, 0x1000 + (vaddr & 0xfff), vaddr, 0, memsz);
                })
                .plan()
        };
        let out = Err(ElfError::OutsideUserRange { index: 3 });
        assert!(e(USER_LOAD_START, 0x10).is_ok());
        assert_eq!(e(USER_LOAD_START - 0x1000, 0x10), out);
        assert_eq!(e(USER_LOAD_START - 8, 0x10), out); // partly below
        assert_eq!(e(0, 0x10), out);
        assert!(e(USER_LOAD_END - 0x10, 0x10).is_ok());
        assert_eq!(e(USER_LOAD_END - 0x10, 0x11), out);
        assert_eq!(e(USER_LOAD_END, 0x10), out);
        assert_eq!(e(0x0000_8000_0000_0000, 0x10), out);
        assert_eq!(e(0xffff_ffff_8000_0000, 0x10), out);
        assert_eq!(e(!0xfff_u64, 0x2000), out); // address overflow
        assert_eq!(e(0x40_5000, u64::MAX), out);
    }

    #[test]
    fn alignment_errors() {
        let bad = Err(ElfError::BadAlignment { index: 1 });
        assert_eq!(
            one(load(RX, 0x1000, 0x40_1010, 7, 7)).with(|b| b.entry = 0x40_1010).plan(),
            bad
        );
        assert_eq!(one(Ph { align: 0x3000, ..load(RX, 0x1000, 0x40_1000, 7, 7) }).plan(), bad);
        // Congruent modulo 4 KiB but not modulo a 2 MiB p_align.
        assert_eq!(
            one(Ph { align: 0x20_0000, ..load(RX, 0x1000, 0x40_2000, 7, 7) })
                .with(|b| {
                    b.entry = 0x40_2000;
                    b.phdrs[2].vaddr = 0x40_3000;
                    b.phdrs[3].vaddr = 0x40_4008;
                })
                .plan(),
            bad
        );
        // Accepted: 0 and 1 mean "no constraint" (beyond the page rule).
        for align in [0, 1, 0x10, 0x1000, 0x20_0000] {
            let b = one(Ph { align, ..load(RX, 0x1000, 0x40_1000, 7, 7) });
            assert!(b.plan().is_ok(), "align {align:#x}");
        }
    }

    #[test]
    fn page_sharing_segments_are_rejected() {
        // rodata ends at 0x402008, data starts on the same page.
        let shared = Builder::valid().with(|b| b.phdrs[3] = load(RW, 0x2008, 0x40_2008, 8, 0x10));
        assert_eq!(shared.plan(), Err(ElfError::SegmentsOverlap { first: 2, second: 3 }));
        // Byte overlap, whatever the header order.
        let overlap = Builder::valid().with(|b| {
            b.phdrs.swap(0, 3);
            b.phdrs[0] = load(RW, 0x1000, 0x40_1000, 0, 0x10);
        });
        assert_eq!(overlap.plan(), Err(ElfError::SegmentsOverlap { first: 0, second: 1 }));
        // Identical segments.
        let twice = Builder::valid().with(|b| b.phdrs[2] = b.phdrs[1]);
        assert_eq!(twice.plan(), Err(ElfError::SegmentsOverlap { first: 1, second: 2 }));
        // Adjacent pages are fine.
        let adjacent = Builder::valid().with(|b| b.phdrs[1].memsz = 0x1000);
        assert!(adjacent.plan().is_ok());
        let over = Builder::valid().with(|b| b.phdrs[1].memsz = 0x1001);
        assert_eq!(over.plan(), Err(ElfError::SegmentsOverlap { first: 1, second: 2 }));
    }

    #[test]
    fn total_size_limit() {
        let sized = |memsz| Builder::valid().with(|b| b.phdrs[3].memsz = memsz).plan();
        // 3 pages before the data segment, which starts 8 bytes into a page.
        let room = MAX_IMAGE_MEMORY - 3 * PAGE_SIZE - 8;
        assert!(sized(room).is_ok());
        assert_eq!(
            sized(room + 1),
            Err(ElfError::TooLarge { bytes: MAX_IMAGE_MEMORY + PAGE_SIZE })
        );
        assert_eq!(sized(1 << 40), Err(ElfError::TooLarge { bytes: (1 << 40) + 4 * PAGE_SIZE }));
    }

    #[test]
    fn writable_and_executable_is_rejected() {
        let rwx = one(load(RX | abi::PF_W, 0x1000, 0x40_1000, 7, 7));
        assert_eq!(rwx.plan(), Err(ElfError::WritableAndExecutable { index: 1 }));
        let wx = one(load(abi::PF_W | abi::PF_X, 0x1000, 0x40_1000, 7, 7));
        assert_eq!(wx.plan(), Err(ElfError::WritableAndExecutable { index: 1 }));
    }

    #[test]
    fn entry_must_be_in_an_executable_segment() {
        let at = |entry| Builder::valid().with(|b| b.entry = entry).plan();
        assert!(at(0x40_1000).is_ok());
        assert!(at(0x40_1006).is_ok());
        assert_eq!(at(0x40_1007), Err(ElfError::EntryNotExecutable(0x40_1007)));
        assert_eq!(at(0x40_0fff), Err(ElfError::EntryNotExecutable(0x40_0fff)));
        assert_eq!(at(0x40_0000), Err(ElfError::EntryNotExecutable(0x40_0000))); // readable only
        assert_eq!(at(0x40_3008), Err(ElfError::EntryNotExecutable(0x40_3008))); // data
        assert_eq!(at(0), Err(ElfError::EntryNotExecutable(0)));
        assert_eq!(at(u64::MAX), Err(ElfError::EntryNotExecutable(u64::MAX)));
        let no_exec = Builder::valid().with(|b| b.phdrs[1].flags = R);
        assert_eq!(no_exec.plan(), Err(ElfError::EntryNotExecutable(0x40_1000)));
    }

    #[test]
    fn errors_display_a_message() {
        let cases = [
            (ElfError::TooShort { len: 3 }, "3 bytes"),
            (ElfError::BadMagic, "magic"),
            (ElfError::Not64Bit, "64-bit"),
            (ElfError::NotLittleEndian, "little-endian"),
            (ElfError::Malformed, "malformed"),
            (ElfError::WrongMachine(3), "machine 3"),
            (ElfError::NotExecutable(3), "ELF type 3"),
            (ElfError::NeedsInterpreter, "interpreter"),
            (ElfError::NoLoadSegments, "no loadable"),
            (ElfError::TooManySegments(17), "17 loadable"),
            (ElfError::FileSizeExceedsMemSize { index: 2 }, "segment 2: file size"),
            (ElfError::FileRangeOutOfBounds { index: 2 }, "outside the image"),
            (ElfError::OutsideUserRange { index: 2 }, "user load range [0x10000, 0x100000000000)"),
            (ElfError::BadAlignment { index: 2 }, "alignment"),
            (ElfError::SegmentsOverlap { first: 1, second: 2 }, "segments 1 and 2"),
            (ElfError::TooLarge { bytes: 5 }, "5 bytes"),
            (ElfError::WritableAndExecutable { index: 2 }, "W^X"),
            (ElfError::EntryNotExecutable(0x1234), "0x1234"),
        ];
        for (e, needle) in cases {
            let s = e.to_string();
            assert!(s.contains(needle), "{s:?} lacks {needle:?}");
        }
    }

    /// Invariants every accepted plan satisfies.
    fn check_plan(image: &[u8], p: &LoadPlan) {
        assert!(!p.segments.is_empty() && p.segments.len() <= MAX_LOAD_SEGMENTS);
        assert!(p.memory_size() <= MAX_IMAGE_MEMORY);
        for s in &p.segments {
            assert!(s.mem_size > 0 && s.file_size <= s.mem_size);
            assert!(s.pages().start >= USER_LOAD_START && s.pages().end <= USER_LOAD_END);
            assert!(image.get(s.file_range()).is_some());
            assert!(!(s.writable && s.executable));
        }
        for w in p.segments.windows(2) {
            assert!(w[0].pages().end <= w[1].pages().start);
        }
        assert!(p
            .segments
            .iter()
            .any(|s| s.executable && (s.vaddr..s.vaddr + s.mem_size).contains(&p.entry)));
    }

    proptest! {
        #[test]
        fn mutated_images_never_panic(
            edits in prop::collection::vec((0usize..0x2010, any::<u8>()), 1..12),
            truncate in prop::option::weighted(0.2, 0usize..0x2010),
        ) {
            let mut img = Builder::valid().build();
            for (at, byte) in edits {
                img[at] = byte;
            }
            if let Some(len) = truncate {
                img.truncate(len);
            }
            if let Ok(p) = plan(&img) {
                check_plan(&img, &p);
            }
        }

        #[test]
        fn mutated_headers_never_panic(
            edits in prop::collection::vec((0usize..64 + 4 * 56, any::<u64>()), 1..6),
        ) {
            // Whole 8-byte words in the headers, to reach large field values.
            let mut img = Builder::valid().build();
            for (at, word) in edits {
                let end = (at + 8).min(img.len());
                img[at..end].copy_from_slice(&word.to_le_bytes()[..end - at]);
            }
            if let Ok(p) = plan(&img) {
                check_plan(&img, &p);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut img = bytes;
            if img.len() >= 8 {
                img[..4].copy_from_slice(&abi::ELFMAGIC);
                img[4] = abi::ELFCLASS64;
                img[5] = abi::ELFDATA2LSB;
                img[6] = 1;
            }
            if let Ok(p) = plan(&img) {
                check_plan(&img, &p);
            }
        }
    }

    /// Links a tiny program with the host's `as` and `ld` and checks the
    /// plan of the real binary. The tools are a hard requirement: they come
    /// with binutils, which the C compiler driver the build links with
    /// (`cc`) needs anyway, and `.ci/run` installs them if missing.
    #[test]
    fn real_static_binary() {
        use std::process::Command;
        const INSTALL: &str = "install binutils (Debian: apt-get install binutils)";
        let dir = std::env::temp_dir().join(format!("alux-elf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("t.s");
        std::fs::write(
            &src,
            ".globl _start\n.text\n_start:\n mov $60, %eax\n syscall\n\
             .section .rodata\nmsg: .ascii \"hello\"\n\
             .data\nx: .quad 1\n.bss\nbig: .space 10000\n",
        )
        .unwrap();
        let obj = dir.join("t.o");
        let run = |tool: &str, cmd: &mut Command| match cmd.status() {
            Ok(s) => assert!(s.success(), "`{tool}` failed ({s}) on the test program"),
            Err(e) => panic!("cannot run `{tool}` ({e}): this test needs it; {INSTALL}"),
        };
        run("as", Command::new("as").arg(&src).arg("-o").arg(&obj));
        for (name, extra) in [("sep", &[][..]), ("nosep", &["-z", "noseparate-code"][..])] {
            let exe = dir.join(name);
            run(
                "ld",
                Command::new("ld")
                    .args(["-static", "-no-pie", "-nostdlib", "-z", "max-page-size=0x1000"])
                    .args(extra)
                    .arg(&obj)
                    .arg("-o")
                    .arg(&exe),
            );
            let image = std::fs::read(&exe).unwrap();
            let p = plan(&image).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_plan(&image, &p);
            assert!(p.segments.iter().any(|s| s.writable && s.mem_size > s.file_size));
        }
        // `ld -N` packs everything into one RWX segment sharing pages.
        let exe = dir.join("omagic");
        run(
            "ld",
            Command::new("ld")
                .args(["-static", "-no-pie", "-nostdlib", "-N"])
                .arg(&obj)
                .arg("-o")
                .arg(&exe)
                .stderr(std::process::Stdio::null()),
        );
        let image = std::fs::read(&exe).unwrap();
        assert!(matches!(plan(&image), Err(ElfError::WritableAndExecutable { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
