//! The client protocol of memd, alux's memory daemon, over basic IPC: what
//! an unprivileged task sends to reserve and release address ranges and to
//! read memd's counters, and what memd answers. See `docs/memory.md`.
//!
//! Every message is exactly [`MESSAGE_LEN`] (32) bytes, the size of one IPC
//! buffer, little-endian:
//!
//! | bytes  | request            | reply                        |
//! |--------|--------------------|------------------------------|
//! | 0      | opcode             | opcode of the request        |
//! | 1      | 0                  | 0 (`Stats`: the counter group) |
//! | 2..4   | 0                  | status (0: success)          |
//! | 4..8   | sequence number    | sequence number of the request |
//! | 8..32  | three u64 arguments | three u64 results           |
//!
//! Unused argument and result words, and every byte marked 0, must be zero:
//! they are refused otherwise, so later versions can give them meaning.
//! Opcodes 4 to 6 negotiate and release regions shared between the two
//! ends of a connection (`docs/shared-memory.md`). A share request is
//! answered only when the other end has asked too (or it timed out, was
//! withdrawn, or failed), so its reply may come after replies to later
//! requests: the sequence number says which request a reply answers.
//!
//! This crate owns only layouts, codes and pure encode/decode: it must
//! never hold state or decide policy (that is `alux-memd-core`), and no
//! input may make it panic.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Bytes in every memd message.
pub const MESSAGE_LEN: usize = 32;
const _: () = assert!(MESSAGE_LEN == alux_abi::ipc::MESSAGE_MAX);

/// Request opcodes. Stable numbers.
pub mod op {
    /// Reserve an address range.
    pub const RESERVE: u8 = 1;
    /// Release an address range.
    pub const RELEASE: u8 = 2;
    /// Read one group of counters.
    pub const STATS: u8 = 3;
    /// Ask for a region shared with the other end of a connection.
    pub const SHARE_REQUEST: u8 = 4;
    /// Withdraw a share request that still waits.
    pub const SHARE_WITHDRAW: u8 = 5;
    /// Release a shared region.
    pub const SHARE_RELEASE: u8 = 6;
}

/// The longest a share request may wait for the other end (ms): ten
/// minutes.
pub const MAX_SHARE_WAIT_MS: u64 = 600_000;

/// Flags of [`Request::Reserve`]: the range is readable, plus these. Bit
/// values are those of `alux_abi::map_flags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReserveFlags(u8);

impl ReserveFlags {
    /// Read only.
    pub const READ: ReserveFlags = ReserveFlags(0);
    /// Writable.
    pub const WRITE: ReserveFlags = ReserveFlags(1);
    /// Executable.
    pub const EXEC: ReserveFlags = ReserveFlags(2);
    const ALL: u64 = 3;

    /// Decodes flag bits; `None` if an undefined bit is set. (Write with
    /// execute decodes, and memd refuses it: `InvalidArgument`.)
    pub const fn from_bits(bits: u64) -> Option<ReserveFlags> {
        if bits & !Self::ALL == 0 {
            Some(ReserveFlags(bits as u8))
        } else {
            None
        }
    }
    /// The bits.
    pub const fn bits(self) -> u64 {
        self.0 as u64
    }
    /// Both sets of bits.
    pub const fn union(self, other: ReserveFlags) -> ReserveFlags {
        ReserveFlags(self.0 | other.0)
    }
}

alux_abi::code_enum! {
    /// The counter groups of [`Request::Stats`]: three counters each.
    pub enum StatsGroup: u8 {
        /// Frames in the pool, free, pinned by I/O.
        Frames = 0,
        /// Swap slots in the area, used; evictions.
        Swap = 1,
        /// Faults served with a zero page, from swap, without I/O.
        Faults = 2,
        /// Pages written out, read in; faults answered with a kill.
        Paging = 3,
        /// Failed swap writes, failed swap reads; known tasks.
        Errors = 4,
        /// The caller's own quota, reserved pages, resident pages.
        Caller = 5,
        /// Shared regions: how many, their pages in memory, their pages
        /// in swap.
        Shares = 6,
    }
}

impl StatsGroup {
    /// Decodes a group number.
    pub fn from_u64(n: u64) -> Option<StatsGroup> {
        StatsGroup::from_code(u8::try_from(n).ok()?)
    }
}

/// Every counter memd reports, gathered from the groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames in the pool.
    pub frames_total: u64,
    /// Free frames.
    pub frames_free: u64,
    /// Frames pinned by disk requests.
    pub frames_io: u64,
    /// Swap slots.
    pub slots_total: u64,
    /// Swap slots used.
    pub slots_used: u64,
    /// Pages evicted.
    pub evictions: u64,
    /// Faults served with a zero-filled page.
    pub faults_zero: u64,
    /// Faults served from swap.
    pub faults_swap: u64,
    /// Faults served without I/O.
    pub faults_minor: u64,
    /// Pages written to swap.
    pub pages_out: u64,
    /// Pages read from swap.
    pub pages_in: u64,
    /// Faults answered with a kill.
    pub faults_killed: u64,
    /// Failed swap writes.
    pub write_errors: u64,
    /// Failed swap reads.
    pub read_errors: u64,
    /// Tasks memd knows.
    pub tasks: u64,
    /// The caller's quota (pages).
    pub quota: u64,
    /// Pages the caller reserved.
    pub reserved: u64,
    /// Pages of the caller in memory.
    pub resident: u64,
    /// Shared regions (of all tasks).
    pub shares: u64,
    /// Pages of shared regions in memory.
    pub shared_resident: u64,
    /// Pages of shared regions in swap.
    pub shared_swapped: u64,
}

impl Stats {
    /// The three counters of `group`.
    pub fn group(&self, group: StatsGroup) -> [u64; 3] {
        match group {
            StatsGroup::Frames => [self.frames_total, self.frames_free, self.frames_io],
            StatsGroup::Swap => [self.slots_total, self.slots_used, self.evictions],
            StatsGroup::Faults => [self.faults_zero, self.faults_swap, self.faults_minor],
            StatsGroup::Paging => [self.pages_out, self.pages_in, self.faults_killed],
            StatsGroup::Errors => [self.write_errors, self.read_errors, self.tasks],
            StatsGroup::Caller => [self.quota, self.reserved, self.resident],
            StatsGroup::Shares => [self.shares, self.shared_resident, self.shared_swapped],
        }
    }

    /// Stores the three counters of `group` (from a reply).
    pub fn set_group(&mut self, group: StatsGroup, v: [u64; 3]) {
        let [a, b, c] = v;
        match group {
            StatsGroup::Frames => (self.frames_total, self.frames_free, self.frames_io) = (a, b, c),
            StatsGroup::Swap => (self.slots_total, self.slots_used, self.evictions) = (a, b, c),
            StatsGroup::Faults => {
                (self.faults_zero, self.faults_swap, self.faults_minor) = (a, b, c)
            }
            StatsGroup::Paging => (self.pages_out, self.pages_in, self.faults_killed) = (a, b, c),
            StatsGroup::Errors => (self.write_errors, self.read_errors, self.tasks) = (a, b, c),
            StatsGroup::Caller => (self.quota, self.reserved, self.resident) = (a, b, c),
            StatsGroup::Shares => {
                (self.shares, self.shared_resident, self.shared_swapped) = (a, b, c)
            }
        }
    }
}

/// A request to memd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Reserve `len` bytes (rounded up to pages), backed lazily: answered
    /// with [`Reply::Reserved`]. Counts against the caller's quota.
    Reserve {
        /// Bytes (nonzero).
        len: u64,
        /// Permissions beyond read.
        flags: ReserveFlags,
    },
    /// Release `[addr, addr + len)`, which must be entirely reserved:
    /// answered with [`Reply::Released`].
    Release {
        /// Page-aligned start.
        addr: u64,
        /// Bytes (rounded up to pages).
        len: u64,
    },
    /// Read one group of counters: answered with [`Reply::Stats`].
    Stats {
        /// Which group.
        group: StatsGroup,
    },
    /// A region of `len` bytes shared with the other end of connection
    /// `conn`, whose thread must ask for the same length within `wait_ms`
    /// (1 to [`MAX_SHARE_WAIT_MS`]): answered with [`Reply::Shared`] when
    /// it has, else with a status (`TimedOut`, `SizeMismatch`, …). The
    /// asking thread must own its end of `conn`.
    ShareRequest {
        /// The connection's ID (`ConnectionInfo::conn_id`).
        conn: u64,
        /// Bytes (nonzero; rounded up to pages).
        len: u64,
        /// How long to wait for the other end, in milliseconds.
        wait_ms: u64,
    },
    /// Withdraws this thread's waiting request on `conn`, answered with
    /// [`Reply::ShareWithdrawn`]; the withdrawn request then gets no
    /// answer of its own (a connection holds one message at a time). If
    /// the request was granted before the withdrawal came, the answer is
    /// [`Reply::Shared`] (with this request's sequence number), so the
    /// region is never lost in a race.
    ShareWithdraw {
        /// The connection's ID.
        conn: u64,
    },
    /// Releases the shared region that starts at `addr` in the caller:
    /// answered with [`Reply::ShareReleased`]. The other task keeps its
    /// mapping; the pages go when both have released (or ended).
    ShareRelease {
        /// The region's first byte, as [`Reply::Shared`] gave it.
        addr: u64,
    },
}

impl Request {
    /// The request's opcode.
    pub fn opcode(&self) -> u8 {
        match self {
            Request::Reserve { .. } => op::RESERVE,
            Request::Release { .. } => op::RELEASE,
            Request::Stats { .. } => op::STATS,
            Request::ShareRequest { .. } => op::SHARE_REQUEST,
            Request::ShareWithdraw { .. } => op::SHARE_WITHDRAW,
            Request::ShareRelease { .. } => op::SHARE_RELEASE,
        }
    }
}

/// A successful answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The range was reserved at `addr`.
    Reserved {
        /// Its first byte (page aligned).
        addr: u64,
    },
    /// The range was released.
    Released,
    /// The counters of `group`.
    Stats {
        /// The group.
        group: StatsGroup,
        /// Its three counters (see [`Stats::group`]).
        values: [u64; 3],
    },
    /// The region is mapped read-write, zero-filled, in both tasks.
    Shared {
        /// Its first byte in the caller (page aligned).
        addr: u64,
        /// Its length (the request's, rounded up to pages).
        len: u64,
        /// The caller's side: 0 if its end is the one that connected, 1
        /// if its port was taken. (Two sides can tell who writes which
        /// ring of a channel without asking each other.)
        side: u8,
    },
    /// The waiting request was withdrawn.
    ShareWithdrawn,
    /// The region was released from the caller.
    ShareReleased,
}

impl Reply {
    /// The opcode of the request this answers.
    pub fn opcode(&self) -> u8 {
        match self {
            Reply::Reserved { .. } => op::RESERVE,
            Reply::Released => op::RELEASE,
            Reply::Stats { .. } => op::STATS,
            Reply::Shared { .. } => op::SHARE_REQUEST,
            Reply::ShareWithdrawn => op::SHARE_WITHDRAW,
            Reply::ShareReleased => op::SHARE_RELEASE,
        }
    }
}

alux_abi::code_enum! {
    /// Why memd refused a request. Stable numbers (0 is success).
    pub enum Status: u16 {
        /// A length, alignment or flag is out of range (e.g. write with
        /// execute, zero length, unaligned release).
        InvalidArgument = 1,
        /// The request would take the caller past its quota.
        OutOfMemory = 2,
        /// No free address range that large.
        NoSpace = 3,
        /// Part of the range to release is not reserved.
        NotReserved = 4,
        /// The opcode is not one memd knows.
        UnknownOpcode = 5,
        /// The opcode is reserved for a later version (no opcode is now:
        /// the code stays so that its number keeps its meaning).
        NotImplemented = 6,
        /// The message is not exactly 32 bytes.
        BadLength = 7,
        /// A byte that must be zero is not.
        BadReserved = 8,
        /// memd does not serve the caller (a privileged task, or one it was
        /// never told about).
        NoSuchTask = 9,
        /// The caller is being killed.
        Dying = 10,
        /// Shared memory: no live connection has this ID.
        NoSuchConnection = 11,
        /// Shared memory: the asking thread is not an end of the
        /// connection (another task's connection, or another thread's).
        NotAnEnd = 12,
        /// Shared memory: the other end is not a task memd serves.
        PeerNotServed = 13,
        /// Shared memory: the caller still maps a region shared on this
        /// connection.
        AlreadyShared = 14,
        /// Shared memory: the caller's earlier request on this connection
        /// still waits.
        AlreadyAsked = 15,
        /// Shared memory: the two ends asked for different lengths.
        SizeMismatch = 16,
        /// Shared memory: the other end could not take the region (quota,
        /// address space) or ended while the request waited.
        PeerFailed = 17,
        /// Shared memory: the other end did not ask in time.
        TimedOut = 18,
        /// Shared memory: no request of the caller waits on the
        /// connection, and it holds no region shared on it.
        NotPending = 19,
    }
}

/// Why bytes are not a valid message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Not exactly 32 bytes (the length is given).
    BadLength(usize),
    /// An opcode no version defines.
    UnknownOpcode(u8),
    /// An opcode reserved for a later version.
    NotImplemented(u8),
    /// A byte or word that must be zero is not.
    BadReserved,
    /// Undefined flag bits, or an unknown counter group.
    BadArgument,
    /// A reply status this version does not know (a newer memd): kept
    /// apart from every known status so the caller can tell.
    UnknownStatus(u16),
}

impl DecodeError {
    /// The status memd answers a request with this error.
    pub fn status(self) -> Status {
        match self {
            DecodeError::BadLength(_) => Status::BadLength,
            DecodeError::UnknownOpcode(_) => Status::UnknownOpcode,
            DecodeError::NotImplemented(_) => Status::NotImplemented,
            DecodeError::BadReserved => Status::BadReserved,
            DecodeError::BadArgument | DecodeError::UnknownStatus(_) => Status::InvalidArgument,
        }
    }
}

fn word(b: &[u8; MESSAGE_LEN], i: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[8 + 8 * i..16 + 8 * i]);
    u64::from_le_bytes(w)
}

fn seq_of(b: &[u8; MESSAGE_LEN]) -> u32 {
    u32::from_le_bytes([b[4], b[5], b[6], b[7]])
}

fn message(head: [u8; 4], seq: u32, words: [u64; 3]) -> [u8; MESSAGE_LEN] {
    let mut b = [0; MESSAGE_LEN];
    b[..4].copy_from_slice(&head);
    b[4..8].copy_from_slice(&seq.to_le_bytes());
    for (i, w) in words.iter().enumerate() {
        b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    b
}

fn exact(bytes: &[u8]) -> Result<&[u8; MESSAGE_LEN], DecodeError> {
    bytes.try_into().map_err(|_| DecodeError::BadLength(bytes.len()))
}

/// Encodes request `req` with sequence number `seq` (echoed in the reply).
pub fn encode_request(seq: u32, req: &Request) -> [u8; MESSAGE_LEN] {
    let words = match *req {
        Request::Reserve { len, flags } => [len, flags.bits(), 0],
        Request::Release { addr, len } => [addr, len, 0],
        Request::Stats { group } => [group as u64, 0, 0],
        Request::ShareRequest { conn, len, wait_ms } => [conn, len, wait_ms],
        Request::ShareWithdraw { conn } => [conn, 0, 0],
        Request::ShareRelease { addr } => [addr, 0, 0],
    };
    message([req.opcode(), 0, 0, 0], seq, words)
}

/// Decodes a request: its sequence number and the request. Any bytes give
/// a result or an error, never a panic.
pub fn decode_request(bytes: &[u8]) -> Result<(u32, Request), DecodeError> {
    let b = exact(bytes)?;
    let opcode = b[0];
    let req = match opcode {
        op::RESERVE..=op::SHARE_RELEASE => {
            if b[1..4] != [0; 3] {
                return Err(DecodeError::BadReserved);
            }
            let (w0, w1, w2) = (word(b, 0), word(b, 1), word(b, 2));
            match opcode {
                op::RESERVE if w2 == 0 => Request::Reserve {
                    len: w0,
                    flags: ReserveFlags::from_bits(w1).ok_or(DecodeError::BadArgument)?,
                },
                op::RELEASE if w2 == 0 => Request::Release { addr: w0, len: w1 },
                op::STATS if w1 == 0 && w2 == 0 => Request::Stats {
                    group: StatsGroup::from_u64(w0).ok_or(DecodeError::BadArgument)?,
                },
                op::SHARE_REQUEST => Request::ShareRequest { conn: w0, len: w1, wait_ms: w2 },
                op::SHARE_WITHDRAW if w1 == 0 && w2 == 0 => Request::ShareWithdraw { conn: w0 },
                op::SHARE_RELEASE if w1 == 0 && w2 == 0 => Request::ShareRelease { addr: w0 },
                _ => return Err(DecodeError::BadReserved),
            }
        }
        _ => return Err(DecodeError::UnknownOpcode(opcode)),
    };
    Ok((seq_of(b), req))
}

/// A decoded reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyMsg {
    /// The sequence number of the request.
    pub seq: u32,
    /// The opcode of the request.
    pub op: u8,
    /// The answer.
    pub result: Result<Reply, Status>,
}

/// Encodes a successful reply to request `seq`.
pub fn encode_reply(seq: u32, reply: &Reply) -> [u8; MESSAGE_LEN] {
    let words = match *reply {
        Reply::Reserved { addr } => [addr, 0, 0],
        Reply::Released => [0; 3],
        Reply::Stats { group, values } => {
            return message([op::STATS, group as u8, 0, 0], seq, values);
        }
        Reply::Shared { addr, len, side } => [addr, len, side as u64],
        Reply::ShareWithdrawn | Reply::ShareReleased => [0; 3],
    };
    message([reply.opcode(), 0, 0, 0], seq, words)
}

/// Encodes a refusal of request `seq` with opcode `op`.
pub fn encode_error(seq: u32, op: u8, status: Status) -> [u8; MESSAGE_LEN] {
    let s = status.code().to_le_bytes();
    message([op, 0, s[0], s[1]], seq, [0; 3])
}

/// The answer memd sends to bytes that do not decode as a request: the
/// status of `err`, with the opcode and sequence number read from the bytes
/// where they are (0 otherwise).
pub fn error_reply(bytes: &[u8], err: DecodeError) -> [u8; MESSAGE_LEN] {
    let op = bytes.first().copied().unwrap_or(0);
    let seq = match bytes.get(4..8) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    };
    encode_error(seq, op, err.status())
}

/// Decodes a reply. Any bytes give a result or an error, never a panic.
/// In a reply to `Stats`, byte 1 holds the counter group.
pub fn decode_reply(bytes: &[u8]) -> Result<ReplyMsg, DecodeError> {
    let b = exact(bytes)?;
    let (opcode, seq) = (b[0], seq_of(b));
    let code = u16::from_le_bytes([b[2], b[3]]);
    let words = [word(b, 0), word(b, 1), word(b, 2)];
    if code != 0 {
        let status = Status::from_code(code).ok_or(DecodeError::UnknownStatus(code))?;
        if b[1] != 0 || words != [0; 3] {
            return Err(DecodeError::BadReserved);
        }
        return Ok(ReplyMsg { seq, op: opcode, result: Err(status) });
    }
    let reply = match opcode {
        op::RESERVE if b[1] == 0 && words[1..] == [0, 0] => Reply::Reserved { addr: words[0] },
        op::RELEASE if b[1] == 0 && words == [0; 3] => Reply::Released,
        op::STATS => Reply::Stats {
            group: StatsGroup::from_u64(b[1] as u64).ok_or(DecodeError::BadArgument)?,
            values: words,
        },
        op::SHARE_REQUEST if b[1] == 0 && words[2] <= 1 => {
            Reply::Shared { addr: words[0], len: words[1], side: words[2] as u8 }
        }
        op::SHARE_WITHDRAW if b[1] == 0 && words == [0; 3] => Reply::ShareWithdrawn,
        op::SHARE_RELEASE if b[1] == 0 && words == [0; 3] => Reply::ShareReleased,
        op::RESERVE..=op::SHARE_RELEASE => return Err(DecodeError::BadReserved),
        _ => return Err(DecodeError::UnknownOpcode(opcode)),
    };
    Ok(ReplyMsg { seq, op: opcode, result: Ok(reply) })
}
