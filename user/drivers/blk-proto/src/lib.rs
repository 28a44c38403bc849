//! The alux block protocol: what a client and a block driver say to each
//! other over one basic-IPC connection (see `docs/drivers.md`).
//!
//! A client writes a 32-byte [`Request`] naming an operation, a sector
//! range and the *physical* address of its own DMA buffer, tagged so it can
//! keep several in flight; the driver answers each with a 16-byte
//! [`Completion`] carrying the tag and a [`Status`] with a stable numeric
//! code.
//!
//! The crate owns the message layouts, their encoding and decoding, and the
//! checks a driver applies before it touches the device ([`Request::check`]
//! against the device's [`Limits`]). It must never do I/O, hold state or
//! use `unsafe`. What it cannot check is the driver's job: that the peer is
//! privileged (only privileged tasks may name physical memory) and that the
//! buffer is memory the client owns.
//!
//! Any bytes decode to a request or to a [`Refusal`] naming the status to
//! answer with; decoding never panics.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;

use alux_abi::ipc::MESSAGE_MAX;

/// Bytes in a sector, the unit of every request.
pub const SECTOR_SIZE: u64 = 512;
/// A buffer's physical address must be a multiple of this.
pub const BUFFER_ALIGN: u64 = SECTOR_SIZE;
/// Physical addresses at or above this are refused (x86-64's architectural
/// 52-bit limit).
pub const PHYS_LIMIT: u64 = 1 << 52;
/// Bytes in an encoded request.
pub const REQUEST_LEN: usize = 32;
/// Bytes in an encoded completion.
pub const COMPLETION_LEN: usize = 16;

const _: () = assert!(REQUEST_LEN <= MESSAGE_MAX && COMPLETION_LEN <= MESSAGE_MAX);

alux_abi::code_enum! {
    /// What a request asks for. The code is byte 8 of a request.
    pub enum Operation: u8 {
        /// Read sectors from the disk into the buffer.
        Read = 1,
        /// Write sectors from the buffer to the disk.
        Write = 2,
        /// Make every completed write durable. Sector, count and buffer must be
        /// zero.
        Flush = 3,
    }
}

alux_abi::code_enum! {
    /// The result of a request. Codes are stable protocol: never renumber a
    /// variant; add new ones at the end.
    pub enum Status: u32 {
        /// Done: every sector was transferred (or the flush completed).
        Ok = 0,
        /// The message is not 32 bytes long.
        BadLength = 1,
        /// The operation code is not one of [`Operation`]'s.
        UnknownOperation = 2,
        /// A reserved field is not zero, or a flush names sectors or a buffer.
        ReservedNotZero = 3,
        /// A read or write of zero sectors.
        ZeroCount = 4,
        /// More sectors than the driver's [`Limits::max_sectors`].
        TooManySectors = 5,
        /// The range runs past the end of the disk.
        OutOfRange = 6,
        /// The buffer's physical address is not a multiple of
        /// [`BUFFER_ALIGN`].
        MisalignedBuffer = 7,
        /// The buffer runs past [`PHYS_LIMIT`], or is not memory the client may
        /// name.
        BadBuffer = 8,
        /// A write or flush to a read-only disk.
        ReadOnly = 9,
        /// The client may not pass physical addresses (it is not privileged).
        NotPrivileged = 10,
        /// The client already has as many requests in flight as the driver
        /// allows it; retry after a completion.
        Busy = 11,
        /// The device reported an I/O error.
        IoError = 12,
        /// The device does not support the operation (e.g. flush without the
        /// flush feature).
        Unsupported = 13,
    }
}

impl Status {
    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::BadLength => "bad message length",
            Status::UnknownOperation => "unknown operation",
            Status::ReservedNotZero => "reserved field not zero",
            Status::ZeroCount => "zero sector count",
            Status::TooManySectors => "too many sectors",
            Status::OutOfRange => "sector out of range",
            Status::MisalignedBuffer => "misaligned buffer",
            Status::BadBuffer => "bad buffer",
            Status::ReadOnly => "read-only disk",
            Status::NotPrivileged => "client not privileged",
            Status::Busy => "too many requests in flight",
            Status::IoError => "I/O error",
            Status::Unsupported => "unsupported operation",
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A request that cannot be served: the tag to answer (0 if the message
/// was too short to hold one) and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The request's tag.
    pub tag: u64,
    /// Why it is refused (never [`Status::Ok`]).
    pub status: Status,
}

impl Refusal {
    /// The completion that answers it.
    pub const fn completion(self) -> Completion {
        Completion { tag: self.tag, status: self.status, sectors: 0 }
    }
}

/// A request, as a client builds it and a driver decodes it.
///
/// Layout (little-endian): `tag: u64` at 0, `op: u8` at 8, `flags: u8` at 9
/// (0), `reserved: u16` at 10 (0), `sectors: u32` at 12, `first_sector:
/// u64` at 16, `buffer: u64` (physical address) at 24. The tag comes first
/// so that even a short message can be answered by tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The client's name for the request, echoed in its completion.
    pub tag: u64,
    /// What to do.
    pub op: Operation,
    /// The first sector.
    pub first_sector: u64,
    /// How many sectors.
    pub sectors: u32,
    /// The physical address of the client's DMA buffer: at least
    /// `sectors × 512` physically contiguous bytes.
    pub buffer: u64,
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

impl Request {
    /// A read of `sectors` sectors from `first_sector` into the buffer at
    /// physical address `buffer`.
    pub const fn read(tag: u64, first_sector: u64, sectors: u32, buffer: u64) -> Request {
        Request { tag, op: Operation::Read, first_sector, sectors, buffer }
    }
    /// A write of `sectors` sectors at `first_sector` from the buffer at
    /// physical address `buffer`.
    pub const fn write(tag: u64, first_sector: u64, sectors: u32, buffer: u64) -> Request {
        Request { tag, op: Operation::Write, first_sector, sectors, buffer }
    }
    /// A flush.
    pub const fn flush(tag: u64) -> Request {
        Request { tag, op: Operation::Flush, first_sector: 0, sectors: 0, buffer: 0 }
    }

    /// The 32 bytes to send.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut m = [0; REQUEST_LEN];
        m[0..8].copy_from_slice(&self.tag.to_le_bytes());
        m[8] = self.op.code();
        m[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        m[16..24].copy_from_slice(&self.first_sector.to_le_bytes());
        m[24..32].copy_from_slice(&self.buffer.to_le_bytes());
        m
    }

    /// Decodes a received message: the layout only (length, operation,
    /// reserved bytes). [`Request::check`] then checks it against the disk.
    pub fn decode(bytes: &[u8]) -> Result<Request, Refusal> {
        let tag = if bytes.len() >= 8 { u64_at(bytes, 0) } else { 0 };
        let refuse = |status| Err(Refusal { tag, status });
        if bytes.len() != REQUEST_LEN {
            return refuse(Status::BadLength);
        }
        let Some(op) = Operation::from_code(bytes[8]) else {
            return refuse(Status::UnknownOperation);
        };
        if bytes[9..12] != [0, 0, 0] {
            return refuse(Status::ReservedNotZero);
        }
        Ok(Request {
            tag,
            op,
            sectors: u32_at(bytes, 12),
            first_sector: u64_at(bytes, 16),
            buffer: u64_at(bytes, 24),
        })
    }

    /// Bytes the request transfers.
    pub const fn bytes(&self) -> u64 {
        self.sectors as u64 * SECTOR_SIZE
    }

    /// Checks the request against the disk, in this order: flush fields,
    /// read-only, count, sector range, buffer alignment, buffer range. The
    /// first failed check names the status.
    pub fn check(self, limits: &Limits) -> Result<Checked, Refusal> {
        let refuse = |status| Err(Refusal { tag: self.tag, status });
        if self.op == Operation::Flush {
            if self.first_sector != 0 || self.sectors != 0 || self.buffer != 0 {
                return refuse(Status::ReservedNotZero);
            }
            if limits.read_only {
                return refuse(Status::ReadOnly);
            }
            return Ok(Checked(self));
        }
        if self.op == Operation::Write && limits.read_only {
            return refuse(Status::ReadOnly);
        }
        if self.sectors == 0 {
            return refuse(Status::ZeroCount);
        }
        if self.sectors > limits.max_sectors {
            return refuse(Status::TooManySectors);
        }
        match self.first_sector.checked_add(self.sectors as u64) {
            Some(end) if end <= limits.capacity => {}
            _ => return refuse(Status::OutOfRange),
        }
        if !self.buffer.is_multiple_of(BUFFER_ALIGN) {
            return refuse(Status::MisalignedBuffer);
        }
        // `bytes()` is below 2^41, so the sum cannot overflow once the
        // address is below the limit.
        if self.buffer >= PHYS_LIMIT || self.buffer + self.bytes() > PHYS_LIMIT {
            return refuse(Status::BadBuffer);
        }
        Ok(Checked(self))
    }
}

/// What a driver serves: the disk's size and its per-request bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sectors on the disk.
    pub capacity: u64,
    /// The most sectors one request may transfer.
    pub max_sectors: u32,
    /// Writes and flushes are refused.
    pub read_only: bool,
}

/// A request that passed [`Request::check`]: only that function makes one,
/// so a driver holding a `Checked` knows its range is on the disk and its
/// buffer well formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checked(Request);

impl Checked {
    /// The request.
    pub const fn request(&self) -> &Request {
        &self.0
    }
    /// The physical byte range of the buffer (empty for a flush).
    pub const fn buffer_range(&self) -> core::ops::Range<u64> {
        self.0.buffer..self.0.buffer + self.0.bytes()
    }
    /// The completion of this request with `status`: all sectors for
    /// [`Status::Ok`], none otherwise.
    pub const fn complete(&self, status: Status) -> Completion {
        let sectors = if matches!(status, Status::Ok) { self.0.sectors } else { 0 };
        Completion { tag: self.0.tag, status, sectors }
    }
}

/// The answer to one request.
///
/// Layout (little-endian): `tag: u64` at 0, `status: u32` at 8, `sectors:
/// u32` at 12 (sectors transferred).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Completion {
    /// The request's tag.
    pub tag: u64,
    /// How it ended.
    pub status: Status,
    /// Sectors transferred.
    pub sectors: u32,
}

/// A completion message a client could not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadCompletion {
    /// The message is not 16 bytes long.
    Length(usize),
    /// The status code is not one this client knows (a newer driver?).
    UnknownStatus {
        /// The request's tag.
        tag: u64,
        /// The code.
        code: u32,
    },
}

impl Completion {
    /// The 16 bytes to send.
    pub fn encode(&self) -> [u8; COMPLETION_LEN] {
        let mut m = [0; COMPLETION_LEN];
        m[0..8].copy_from_slice(&self.tag.to_le_bytes());
        m[8..12].copy_from_slice(&self.status.code().to_le_bytes());
        m[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        m
    }

    /// Decodes a completion.
    pub fn decode(bytes: &[u8]) -> Result<Completion, BadCompletion> {
        if bytes.len() != COMPLETION_LEN {
            return Err(BadCompletion::Length(bytes.len()));
        }
        let tag = u64_at(bytes, 0);
        let code = u32_at(bytes, 8);
        let status = Status::from_code(code).ok_or(BadCompletion::UnknownStatus { tag, code })?;
        Ok(Completion { tag, status, sectors: u32_at(bytes, 12) })
    }
}
