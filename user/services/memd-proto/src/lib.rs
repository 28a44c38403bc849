//! What a task and the memory daemon (memd) say to each other over one
//! basic-IPC connection (see `docs/memory.md`): reserve an address range
//! (backed lazily, page by page, when first touched), release it, and read
//! memd's counters.
//!
//! Every message is one 32-byte connection buffer. A [`Request`] carries a
//! tag the client chooses; the [`Reply`] echoes it with a [`Status`] whose
//! numeric code is stable. The crate owns the layouts, their encoding and
//! decoding, and the checks of the fields; it must never hold state, do I/O
//! or use `unsafe`. Any 32 bytes decode to a request or to a refusal naming
//! the status to answer with; decoding never panics.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use alux_abi::ipc::MESSAGE_MAX;

/// Bytes in an encoded request or reply.
pub const MESSAGE_LEN: usize = 32;
const _: () = assert!(MESSAGE_LEN <= MESSAGE_MAX);

/// Page size: ranges are whole pages.
pub const PAGE_SIZE: u64 = 4096;

/// The largest range one request reserves (it is backed lazily, so this
/// bounds address space, not memory).
pub const RESERVE_MAX: u64 = 1 << 36;

/// Permission bits of a reservation (`Request::Reserve::flags`). Read is
/// implied; both together are refused (W^X).
pub mod flags {
    /// Writable.
    pub const WRITE: u8 = 1;
    /// Executable.
    pub const EXEC: u8 = 2;
}

/// The counters `Stats` reads, by index (two per reply).
pub mod counter {
    /// Frames in memd's pool.
    pub const FRAMES_TOTAL: u8 = 0;
    /// Frames free.
    pub const FRAMES_FREE: u8 = 1;
    /// Faults served with a zero-filled page.
    pub const FAULTS_ZERO: u8 = 2;
    /// Faults served from swap.
    pub const FAULTS_SWAP: u8 = 3;
    /// Pages written to swap.
    pub const PAGES_OUT: u8 = 4;
    /// Pages read from swap.
    pub const PAGES_IN: u8 = 5;
    /// Swap slots in use.
    pub const SLOTS_USED: u8 = 6;
    /// Swap slots in all.
    pub const SLOTS_TOTAL: u8 = 7;
    /// Pages the asking task has reserved.
    pub const MY_RESERVED: u8 = 8;
    /// Pages the asking task has in memory.
    pub const MY_RESIDENT: u8 = 9;
    /// The asking task's quota, in pages.
    pub const MY_QUOTA: u8 = 10;
    /// Faults answered by killing the task.
    pub const FAULTS_KILLED: u8 = 11;
    /// How many counters there are.
    pub const COUNT: u8 = 12;
}

/// What a client asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Reserve `len` bytes (rounded up to pages) of fresh address space with
    /// `flags`; memd answers the address. Pages start zero-filled when
    /// first touched.
    Reserve {
        /// The client's tag.
        tag: u64,
        /// Bytes.
        len: u64,
        /// `flags` bits.
        flags: u8,
    },
    /// Release `[addr, addr + len)`, which must lie in reservations of the
    /// task: its pages and their swap slots are freed.
    Release {
        /// The client's tag.
        tag: u64,
        /// First byte (page aligned).
        addr: u64,
        /// Bytes (whole pages).
        len: u64,
    },
    /// Read counters `first` and `first + 1` (`counter`).
    Stats {
        /// The client's tag.
        tag: u64,
        /// The first counter.
        first: u8,
    },
}

/// How a request ended. Codes are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// Malformed: unknown operation, reserved bytes not zero.
    BadRequest = 1,
    /// A field is out of range (length, alignment, flags, counter).
    InvalidArgument = 2,
    /// The task's quota would be exceeded.
    OutOfMemory = 3,
    /// No free address range that large.
    NoSpace = 4,
    /// Part of the range is not reserved by the task.
    NotReserved = 5,
    /// memd does not serve this task (it is not paged by memd).
    UnknownTask = 6,
}

impl Status {
    /// Decodes a status code.
    pub const fn from_code(code: u32) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::BadRequest,
            2 => Status::InvalidArgument,
            3 => Status::OutOfMemory,
            4 => Status::NoSpace,
            5 => Status::NotReserved,
            6 => Status::UnknownTask,
            _ => return None,
        })
    }
}

/// memd's answer: the tag, the status and two values (the address for
/// `Reserve`; two counters for `Stats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The request's tag.
    pub tag: u64,
    /// How it ended.
    pub status: Status,
    /// First value.
    pub a: u64,
    /// Second value.
    pub b: u64,
}

const RESERVE: u8 = 1;
const RELEASE: u8 = 2;
const STATS: u8 = 3;

fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl Request {
    /// The tag.
    pub const fn tag(&self) -> u64 {
        match *self {
            Request::Reserve { tag, .. }
            | Request::Release { tag, .. }
            | Request::Stats { tag, .. } => tag,
        }
    }

    /// The 32 bytes sent.
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut m = [0u8; MESSAGE_LEN];
        m[..8].copy_from_slice(&self.tag().to_le_bytes());
        let (op, f, a, b) = match *self {
            Request::Reserve { len, flags, .. } => (RESERVE, flags, len, 0),
            Request::Release { addr, len, .. } => (RELEASE, 0, addr, len),
            Request::Stats { first, .. } => (STATS, first, 0, 0),
        };
        m[8] = op;
        m[9] = f;
        m[16..24].copy_from_slice(&a.to_le_bytes());
        m[24..32].copy_from_slice(&b.to_le_bytes());
        m
    }

    /// Decodes and checks a request. A refusal carries the tag (0 if the
    /// message is too short to hold one) and the status to answer with.
    pub fn decode(m: &[u8]) -> Result<Request, (u64, Status)> {
        if m.len() != MESSAGE_LEN {
            let tag = if m.len() >= 8 { word(m, 0) } else { 0 };
            return Err((tag, Status::BadRequest));
        }
        let tag = word(m, 0);
        if m[10..16] != [0; 6] {
            return Err((tag, Status::BadRequest));
        }
        let (a, b) = (word(m, 16), word(m, 24));
        let bad = Err((tag, Status::InvalidArgument));
        match m[8] {
            RESERVE => {
                let f = m[9];
                let wx = flags::WRITE | flags::EXEC;
                if b != 0 || f & !wx != 0 || f == wx || a == 0 || a > RESERVE_MAX {
                    return bad;
                }
                Ok(Request::Reserve { tag, len: a, flags: f })
            }
            RELEASE => {
                if m[9] != 0
                    || a % PAGE_SIZE != 0
                    || b == 0
                    || b % PAGE_SIZE != 0
                    || b > RESERVE_MAX
                {
                    return bad;
                }
                Ok(Request::Release { tag, addr: a, len: b })
            }
            STATS => {
                if a != 0 || b != 0 || m[9] >= counter::COUNT {
                    return bad;
                }
                Ok(Request::Stats { tag, first: m[9] })
            }
            _ => Err((tag, Status::BadRequest)),
        }
    }
}

impl Reply {
    /// The 32 bytes sent.
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut m = [0u8; MESSAGE_LEN];
        m[..8].copy_from_slice(&self.tag.to_le_bytes());
        m[8..12].copy_from_slice(&(self.status as u32).to_le_bytes());
        m[16..24].copy_from_slice(&self.a.to_le_bytes());
        m[24..32].copy_from_slice(&self.b.to_le_bytes());
        m
    }

    /// Decodes a reply; `None` if it is not one memd sends.
    pub fn decode(m: &[u8]) -> Option<Reply> {
        if m.len() != MESSAGE_LEN || m[12..16] != [0; 4] {
            return None;
        }
        let status = Status::from_code(u32::from_le_bytes([m[8], m[9], m[10], m[11]]))?;
        Some(Reply { tag: word(m, 0), status, a: word(m, 16), b: word(m, 24) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_field_is_checked() {
        let ok = Request::Reserve { tag: 7, len: 8192, flags: flags::WRITE };
        assert_eq!(Request::decode(&ok.encode()), Ok(ok));
        let wx = Request::Reserve { tag: 7, len: 8192, flags: flags::WRITE | flags::EXEC };
        assert_eq!(Request::decode(&wx.encode()), Err((7, Status::InvalidArgument)));
        let empty = Request::Reserve { tag: 1, len: 0, flags: 0 };
        assert_eq!(Request::decode(&empty.encode()), Err((1, Status::InvalidArgument)));
        let huge = Request::Reserve { tag: 1, len: RESERVE_MAX + 1, flags: 0 };
        assert_eq!(Request::decode(&huge.encode()), Err((1, Status::InvalidArgument)));
        let odd = Request::Release { tag: 2, addr: 0x1001, len: 4096 };
        assert_eq!(Request::decode(&odd.encode()), Err((2, Status::InvalidArgument)));
        let rel = Request::Release { tag: 2, addr: 0x1000, len: 4096 };
        assert_eq!(Request::decode(&rel.encode()), Ok(rel));
        let st = Request::Stats { tag: 3, first: counter::COUNT };
        assert_eq!(Request::decode(&st.encode()), Err((3, Status::InvalidArgument)));
        let mut m = ok.encode();
        m[8] = 9;
        assert_eq!(Request::decode(&m), Err((7, Status::BadRequest)));
        let mut m = ok.encode();
        m[12] = 1;
        assert_eq!(Request::decode(&m), Err((7, Status::BadRequest)));
        assert_eq!(Request::decode(&m[..5]), Err((0, Status::BadRequest)));
        assert_eq!(Request::decode(&m[..12]), Err((7, Status::BadRequest)));
        let r = Reply { tag: 9, status: Status::NoSpace, a: 1, b: 2 };
        assert_eq!(Reply::decode(&r.encode()), Some(r));
        let mut m = r.encode();
        m[8] = 99;
        assert_eq!(Reply::decode(&m), None);
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused_with_their_tag(m in proptest::collection::vec(any::<u8>(), 0..40)) {
            match Request::decode(&m) {
                Ok(r) => prop_assert_eq!(Request::decode(&r.encode()), Ok(r)),
                Err((tag, _)) if m.len() >= 8 => prop_assert_eq!(tag, word(&m, 0)),
                Err((tag, _)) => prop_assert_eq!(tag, 0),
            }
            let _ = Reply::decode(&m);
        }

        #[test]
        fn replies_round_trip(tag in any::<u64>(), code in 0u32..7, a in any::<u64>(), b in any::<u64>()) {
            let r = Reply { tag, status: Status::from_code(code).unwrap(), a, b };
            prop_assert_eq!(Reply::decode(&r.encode()), Some(r));
        }
    }
}
