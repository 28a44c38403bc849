//! A single-producer single-consumer ring over a region of memory two
//! tasks share: a byte stream ([`Writer::write`], [`Reader::read`]) and a
//! message variant with length-prefixed records ([`Writer::send`],
//! [`Reader::recv`]), with basic IPC as the doorbell. See
//! `docs/shared-memory.md`.
//!
//! The crate owns the region's layout, the index arithmetic and the
//! waiting protocol: it says when a side must signal its peer and when it
//! must wait on its connection, and the caller does the system calls. It
//! never blocks, allocates, makes a system call or uses `unsafe`: the
//! region is reached through [`SharedMem`] (volatile and atomic accesses
//! over the mapped region in the runtime, a `Vec` in the tests).
//!
//! The region is foreign memory. The peer can write any value into any
//! byte of it at any time, so the crate must never trust what it reads
//! there: each side keeps its own counter privately and never reads it
//! back; the peer's counter is checked against what is possible on every
//! load (never behind our own counter, never more than the capacity
//! ahead, never going back), a record's length is copied out once and
//! checked on the copy, and payloads are copied into the caller's buffer
//! before anyone looks at them. A bad value gives [`Error::Corrupt`],
//! never an access outside the region, a panic or a loop; the error is
//! sticky, as the stream's position can no longer be trusted.
//!
//! # Layout
//!
//! | offset | field         | written by | read by | ordering                    |
//! |--------|---------------|------------|---------|-----------------------------|
//! | 0      | `head`        | writer     | reader  | store Release, load Acquire |
//! | 8      | `writer_wait` | writer     | reader  | store, fence, load          |
//! | 64     | `tail`        | reader     | writer  | store Release, load Acquire |
//! | 72     | `reader_wait` | reader     | writer  | store, fence, load          |
//! | 128    | data          | writer     | reader  | ordered by `head`/`tail`    |
//!
//! `head` and `tail` are monotonically increasing counts of bytes (u64,
//! they never wrap in practice): the writer has produced `head` bytes, the
//! reader has consumed `tail`, and `head - tail` bytes (at most the
//! capacity) are in the ring; byte `n` of the stream lives at data offset
//! `n % capacity`. The capacity is the region's length less the 128-byte
//! header, any size from 1 byte (the message variant needs at least the
//! 4-byte record header). Each side's fields share a 64-byte line that the
//! other side only reads. A wait field is 0 when its side is not waiting,
//! or the number of its latest wait (1, 2, …), so that the peer signals
//! once per wait and not once per write.
//!
//! # Waiting protocol
//!
//! The reader waits only when the ring is empty: it stores a fresh wait
//! number in `reader_wait`, issues [`SharedMem::fence`], and loads `head`
//! again; only if the ring is still empty does it tell its caller to wait
//! on its connection ([`ReadOutcome::must_wait`]). The writer stores
//! `head`, issues the fence, and loads `reader_wait`: when it holds a wait
//! number it has not signalled yet, the writer must signal the reader
//! ([`WriteOutcome::must_signal`]). No wake-up is lost: the two fences
//! order the four accesses into one sequence, so either the writer's store
//! of `head` comes before the reader's second load (the reader sees the
//! data and does not wait) or the reader's store of its wait number comes
//! before the writer's load (the writer signals, and the signal stays
//! pending on the connection until the reader polls). Without the fences
//! a store could pass the later load of the other field (x86 allows
//! exactly that reordering) and both sides could miss each other. The
//! same holds with the roles swapped when the writer waits for space.
//! A spurious wake-up is harmless: the next call finds the ring still
//! empty and waits again with a new number.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;

/// Offset of `head`, the count of bytes the writer has produced.
pub const HEAD: usize = 0;
/// Offset of `writer_wait`: 0, or the number of the writer's latest wait
/// for space.
pub const WRITER_WAIT: usize = 8;
/// Offset of `tail`, the count of bytes the reader has consumed.
pub const TAIL: usize = 64;
/// Offset of `reader_wait`: 0, or the number of the reader's latest wait
/// for data.
pub const READER_WAIT: usize = 72;
/// Size of the header; the data area starts here.
pub const HEADER_SIZE: usize = 128;
/// Size of a record's length prefix in the message variant (little-endian
/// u32, the payload's length).
pub const RECORD_HEADER: usize = 4;

/// The shared region as one side reaches it. Offsets are from the start
/// of the region; the ring only passes offsets and lengths that lie
/// within [`SharedMem::len`], and 8-byte aligned offsets to the u64
/// accesses. The peer may change any byte at any time, so implementations
/// must make each u64 access a single atomic (or volatile, naturally
/// aligned) access and must never hand out a reference into the region;
/// the byte copies too must be volatile (or atomic) copies, since a
/// hostile peer may write the bytes while they are copied.
pub trait SharedMem {
    /// Length of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty (it is then too small for a ring).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Loads the u64 at `offset` with Acquire ordering: what the peer
    /// wrote before its Release store of this value is visible after.
    fn load_u64(&self, offset: usize) -> u64;
    /// Stores `v` at `offset` with Release ordering: every earlier access
    /// of this side is visible to a peer that loads `v`.
    fn store_u64(&self, offset: usize, v: u64);
    /// A sequentially consistent fence (`mfence` or a locked instruction
    /// on x86): a store before it is visible to the peer before any load
    /// after it. The waiting protocol needs it between a side's store and
    /// its load of the other side's field.
    fn fence(&self);
    /// Copies `out.len()` bytes at `offset` into `out`.
    fn read_bytes(&self, offset: usize, out: &mut [u8]);
    /// Copies `data` to `offset`.
    fn write_bytes(&self, offset: usize, data: &[u8]);
}

/// What the peer did to the shared region that cannot happen with an
/// honest peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The peer's counter is further behind ours than the ring allows
    /// (`head` below `tail`, or `tail` more than the capacity behind
    /// `head`).
    Behind,
    /// The peer's counter is further ahead of ours than the ring allows
    /// (`head` more than the capacity past `tail`, or `tail` past `head`).
    TooFarAhead,
    /// The peer's counter is lower than it was before.
    WentBack,
    /// Fewer bytes than a record's length prefix are in the ring.
    PartialHeader,
    /// A record's length does not fit in the ring at all.
    RecordTooLong,
    /// A record's length is more than the bytes in the ring (the writer
    /// publishes a record whole).
    RecordIncomplete,
}

/// The ring's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The region has no room for a data area after the header (or, for
    /// the message variant, for a record of one byte).
    RegionTooSmall,
    /// The peer broke the ring's rules; the ring stays broken (each later
    /// call returns the same error) and the caller should close the
    /// connection.
    Corrupt(Fault),
    /// The message can never fit in this ring.
    TooLarge,
    /// The next record's payload is longer than the caller's buffer; it
    /// stays in the ring.
    BufferTooSmall {
        /// The payload's length.
        needed: usize,
    },
}

/// The result of a write or a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Bytes of the caller's data now in the ring (for a send, all of the
    /// payload or nothing).
    pub written: usize,
    /// The reader is waiting for data: signal it on the connection.
    pub must_signal: bool,
    /// Nothing could be written: wait on the connection for the reader's
    /// signal, then write again.
    pub must_wait: bool,
}

/// The result of a read or a receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes copied into the caller's buffer (for a receive, the
    /// payload's length).
    pub n: usize,
    /// The ring is empty (no record for a receive): wait on the
    /// connection for the writer's signal, then read again.
    pub must_wait: bool,
    /// The writer is waiting for space: signal it on the connection.
    pub must_signal_writer: bool,
}

/// The data area's size for a region of `len` bytes.
pub fn capacity(len: usize) -> Result<u64, Error> {
    match len.checked_sub(HEADER_SIZE) {
        Some(cap) if cap > 0 => Ok(cap as u64),
        _ => Err(Error::RegionTooSmall),
    }
}

/// Copies `data` into the ring at stream position `pos`, wrapping at the
/// end of the data area. `data.len() <= cap`.
fn copy_in(mem: &impl SharedMem, cap: u64, pos: u64, data: &[u8]) {
    let at = (pos % cap) as usize;
    let first = data.len().min(cap as usize - at);
    mem.write_bytes(HEADER_SIZE + at, &data[..first]);
    mem.write_bytes(HEADER_SIZE, &data[first..]);
}

/// Copies `out.len()` bytes of the ring at stream position `pos` out,
/// wrapping at the end of the data area. `out.len() <= cap`.
fn copy_out(mem: &impl SharedMem, cap: u64, pos: u64, out: &mut [u8]) {
    let at = (pos % cap) as usize;
    let first = out.len().min(cap as usize - at);
    let (a, b) = out.split_at_mut(first);
    mem.read_bytes(HEADER_SIZE + at, a);
    mem.read_bytes(HEADER_SIZE, b);
}

/// One side's half of the waiting protocol: its own wait field, and what
/// it has signalled of the peer's.
#[derive(Clone, Copy, Debug)]
struct Doorbell {
    /// Offset of our wait field.
    own: usize,
    /// Offset of the peer's wait field.
    peer: usize,
    /// The number of our latest wait.
    waits: u64,
    /// Whether our wait field holds a wait number.
    waiting: bool,
    /// The peer's wait number we last signalled.
    signalled: u64,
}

impl Doorbell {
    fn new(own: usize, peer: usize) -> Doorbell {
        Doorbell { own, peer, waits: 0, waiting: false, signalled: 0 }
    }

    /// Announces a wait: a fresh wait number in our field, then the fence
    /// that orders it before the caller's re-check of the peer's counter.
    fn announce(&mut self, mem: &impl SharedMem) {
        self.waits = self.waits.wrapping_add(1).max(1);
        self.waiting = true;
        mem.store_u64(self.own, self.waits);
        mem.fence();
    }

    /// Withdraws a wait once there is something to do.
    fn withdraw(&mut self, mem: &impl SharedMem) {
        if self.waiting {
            self.waiting = false;
            mem.store_u64(self.own, 0);
        }
    }

    /// After our counter's store: the fence, then whether the peer waits
    /// with a number we have not signalled yet.
    fn must_signal(&mut self, mem: &impl SharedMem) -> bool {
        mem.fence();
        let peer = mem.load_u64(self.peer);
        if peer != 0 && peer != self.signalled {
            self.signalled = peer;
            true
        } else {
            false
        }
    }
}

/// Checks `head` as the reader loaded it (`theirs`) against its `tail`
/// (`ours`): at most `cap` ahead, and never below the `last` one seen.
/// Returns the bytes in the ring.
fn check_head(theirs: u64, ours: u64, last: u64, cap: u64) -> Result<u64, Fault> {
    let ahead = theirs.checked_sub(ours).ok_or(Fault::Behind)?;
    if ahead > cap {
        return Err(Fault::TooFarAhead);
    }
    if theirs < last {
        return Err(Fault::WentBack);
    }
    Ok(ahead)
}

/// The producing side of a ring. It owns `head` and `writer_wait`.
#[derive(Debug)]
pub struct Writer {
    cap: u64,
    /// Bytes produced; the only source of truth for `head`.
    head: u64,
    /// The highest `tail` seen, which never goes back.
    last_tail: u64,
    bell: Doorbell,
    broken: Option<Fault>,
}

impl Writer {
    /// The writer of a ring over a zeroed region of `len` bytes.
    pub fn new(len: usize) -> Result<Writer, Error> {
        Ok(Writer {
            cap: capacity(len)?,
            head: 0,
            last_tail: 0,
            bell: Doorbell::new(WRITER_WAIT, READER_WAIT),
            broken: None,
        })
    }

    /// The data area's size.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// The largest payload [`Writer::send`] accepts; `None` when the
    /// ring is too small for even an empty record.
    pub fn max_message(&self) -> Option<usize> {
        max_message(self.cap)
    }

    /// Free bytes, from a checked load of `tail`.
    fn free(&mut self, mem: &impl SharedMem) -> Result<u64, Error> {
        if let Some(f) = self.broken {
            return Err(Error::Corrupt(f));
        }
        let tail = mem.load_u64(TAIL);
        // The reader claims bytes we never wrote.
        let Some(used) = self.head.checked_sub(tail) else {
            return Err(self.fail(Fault::TooFarAhead));
        };
        if used > self.cap {
            return Err(self.fail(Fault::Behind));
        }
        if tail < self.last_tail {
            return Err(self.fail(Fault::WentBack));
        }
        self.last_tail = tail;
        Ok(self.cap - used)
    }

    fn fail(&mut self, f: Fault) -> Error {
        self.broken = Some(f);
        Error::Corrupt(f)
    }

    /// At least `need` free bytes, announcing a wait (and re-checking) if
    /// there are not; `None` when the caller must wait.
    fn space(&mut self, mem: &impl SharedMem, need: u64) -> Result<Option<u64>, Error> {
        let mut free = self.free(mem)?;
        if free < need {
            self.bell.announce(mem);
            free = self.free(mem)?;
            if free < need {
                return Ok(None);
            }
        }
        self.bell.withdraw(mem);
        Ok(Some(free))
    }

    /// Publishes `n` more bytes and says whether to signal the reader.
    fn publish(&mut self, mem: &impl SharedMem, n: u64) -> bool {
        self.head += n;
        mem.store_u64(HEAD, self.head);
        self.bell.must_signal(mem)
    }

    /// Writes as much of `data` as fits (stream variant).
    pub fn write(&mut self, mem: &impl SharedMem, data: &[u8]) -> Result<WriteOutcome, Error> {
        if let Some(f) = self.broken {
            return Err(Error::Corrupt(f));
        }
        if data.is_empty() {
            return Ok(WriteOutcome { written: 0, must_signal: false, must_wait: false });
        }
        let Some(free) = self.space(mem, 1)? else {
            return Ok(WriteOutcome { written: 0, must_signal: false, must_wait: true });
        };
        let n = data.len().min(free as usize);
        copy_in(mem, self.cap, self.head, &data[..n]);
        let must_signal = self.publish(mem, n as u64);
        Ok(WriteOutcome { written: n, must_signal, must_wait: false })
    }

    /// Sends `payload` as one record, whole or not at all (message
    /// variant).
    pub fn send(&mut self, mem: &impl SharedMem, payload: &[u8]) -> Result<WriteOutcome, Error> {
        if let Some(f) = self.broken {
            return Err(Error::Corrupt(f));
        }
        if self.max_message().is_none_or(|max| payload.len() > max) {
            return Err(Error::TooLarge);
        }
        let need = (RECORD_HEADER + payload.len()) as u64;
        if self.space(mem, need)?.is_none() {
            return Ok(WriteOutcome { written: 0, must_signal: false, must_wait: true });
        }
        let prefix = (payload.len() as u32).to_le_bytes();
        copy_in(mem, self.cap, self.head, &prefix);
        copy_in(mem, self.cap, self.head + RECORD_HEADER as u64, payload);
        let must_signal = self.publish(mem, need);
        Ok(WriteOutcome { written: payload.len(), must_signal, must_wait: false })
    }
}

/// The largest payload of a record in a data area of `cap` bytes.
fn max_message(cap: u64) -> Option<usize> {
    let max = cap.checked_sub(RECORD_HEADER as u64)?;
    Some(max.min(u64::from(u32::MAX)) as usize)
}

/// The consuming side of a ring. It owns `tail` and `reader_wait`.
#[derive(Debug)]
pub struct Reader {
    cap: u64,
    /// Bytes consumed; the only source of truth for `tail`.
    tail: u64,
    /// The highest `head` seen, which never goes back.
    last_head: u64,
    bell: Doorbell,
    broken: Option<Fault>,
}

impl Reader {
    /// The reader of a ring over a zeroed region of `len` bytes.
    pub fn new(len: usize) -> Result<Reader, Error> {
        Ok(Reader {
            cap: capacity(len)?,
            tail: 0,
            last_head: 0,
            bell: Doorbell::new(READER_WAIT, WRITER_WAIT),
            broken: None,
        })
    }

    /// The data area's size.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    fn fail(&mut self, f: Fault) -> Error {
        self.broken = Some(f);
        Error::Corrupt(f)
    }

    /// Bytes in the ring, from a checked load of `head`.
    fn available(&mut self, mem: &impl SharedMem) -> Result<u64, Error> {
        if let Some(f) = self.broken {
            return Err(Error::Corrupt(f));
        }
        let head = mem.load_u64(HEAD);
        match check_head(head, self.tail, self.last_head, self.cap) {
            Ok(avail) => {
                self.last_head = head;
                Ok(avail)
            }
            Err(f) => Err(self.fail(f)),
        }
    }

    /// Some bytes in the ring, announcing a wait (and re-checking) if
    /// there are none; `None` when the caller must wait.
    fn data(&mut self, mem: &impl SharedMem) -> Result<Option<u64>, Error> {
        let mut avail = self.available(mem)?;
        if avail == 0 {
            self.bell.announce(mem);
            avail = self.available(mem)?;
            if avail == 0 {
                return Ok(None);
            }
        }
        self.bell.withdraw(mem);
        Ok(Some(avail))
    }

    /// Consumes `n` bytes and says whether to signal the writer.
    fn consume(&mut self, mem: &impl SharedMem, n: u64) -> bool {
        self.tail += n;
        mem.store_u64(TAIL, self.tail);
        self.bell.must_signal(mem)
    }

    /// Reads up to `buf.len()` bytes (stream variant).
    pub fn read(&mut self, mem: &impl SharedMem, buf: &mut [u8]) -> Result<ReadOutcome, Error> {
        if let Some(f) = self.broken {
            return Err(Error::Corrupt(f));
        }
        if buf.is_empty() {
            return Ok(ReadOutcome { n: 0, must_wait: false, must_signal_writer: false });
        }
        let Some(avail) = self.data(mem)? else {
            return Ok(ReadOutcome { n: 0, must_wait: true, must_signal_writer: false });
        };
        let n = buf.len().min(avail as usize);
        copy_out(mem, self.cap, self.tail, &mut buf[..n]);
        let must_signal_writer = self.consume(mem, n as u64);
        Ok(ReadOutcome { n, must_wait: false, must_signal_writer })
    }

    /// Receives the next record's payload into `buf` (message variant).
    /// The length prefix is copied out and checked before use, and the
    /// payload lands in `buf` before the caller looks at it.
    pub fn recv(&mut self, mem: &impl SharedMem, buf: &mut [u8]) -> Result<ReadOutcome, Error> {
        let Some(avail) = self.data(mem)? else {
            return Ok(ReadOutcome { n: 0, must_wait: true, must_signal_writer: false });
        };
        if avail < RECORD_HEADER as u64 {
            return Err(self.fail(Fault::PartialHeader));
        }
        let mut prefix = [0u8; RECORD_HEADER];
        copy_out(mem, self.cap, self.tail, &mut prefix);
        let len = u32::from_le_bytes(prefix) as usize;
        if max_message(self.cap).is_none_or(|max| len > max) {
            return Err(self.fail(Fault::RecordTooLong));
        }
        let need = (RECORD_HEADER + len) as u64;
        if need > avail {
            return Err(self.fail(Fault::RecordIncomplete));
        }
        if len > buf.len() {
            return Err(Error::BufferTooSmall { needed: len });
        }
        copy_out(mem, self.cap, self.tail + RECORD_HEADER as u64, &mut buf[..len]);
        let must_signal_writer = self.consume(mem, need);
        Ok(ReadOutcome { n: len, must_wait: false, must_signal_writer })
    }
}
