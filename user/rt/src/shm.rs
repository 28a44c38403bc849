//! Shared memory between the two ends of a connection: a region negotiated
//! through memd ([`SharedRegion::negotiate`]), and a [`Channel`] over it,
//! two `alux-ring` rings (one each way) with the connection as doorbell.
//! See `docs/shared-memory.md`.
//!
//! This module owns the mapping of the region into a ring's view
//! ([`RegionMem`]), the copy routine in and out of foreign memory, and the
//! waiting that the ring asks for (poll the connection, signal the peer).
//! It must never read the region except through [`RegionMem`] (volatile and
//! atomic accesses, never a reference into it), and never trust what it
//! reads there: the ring checks every value.

use alux_abi::ipc::Events;
use alux_abi::Error;
use alux_memd_proto::{Reply, Request, Status};
use alux_ring::{ReadOutcome, Reader, SharedMem, WriteOutcome, Writer};
use core::sync::atomic::{fence, AtomicU64, Ordering};
use core::time::Duration;

use crate::ipc::Connection;
use crate::mem;

/// Why a region could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareError {
    /// A system call failed (no memd, the connection is gone, …).
    Sys(Error),
    /// memd refused, with its status (`SizeMismatch`, `TimedOut`,
    /// `NotAnEnd`, `OutOfMemory`, …).
    Refused(Status),
}

impl From<Error> for ShareError {
    fn from(e: Error) -> Self {
        ShareError::Sys(e)
    }
}

/// A region shared with the other end of a connection, mapped read-write in
/// this task. Released (from this task only) when dropped.
#[derive(Debug)]
pub struct SharedRegion {
    addr: u64,
    len: usize,
    side: u8,
}

impl SharedRegion {
    /// Asks memd for a region of `len` bytes shared with the other end of
    /// `conn`, which must ask for the same length within `wait` (at most
    /// ten minutes). Blocks until both have asked, or memd refuses.
    pub fn negotiate(
        conn: &Connection,
        len: usize,
        wait: Duration,
    ) -> Result<SharedRegion, ShareError> {
        let conn_id = conn.info()?.conn_id;
        let wait_ms = (wait.as_millis().min(u64::MAX as u128) as u64).max(1);
        let req = Request::ShareRequest { conn: conn_id, len: len as u64, wait_ms };
        match mem::ask(req)? {
            Ok(Reply::Shared { addr, len, side }) => {
                Ok(SharedRegion { addr, len: len as usize, side })
            }
            Ok(_) => Err(ShareError::Sys(Error::InvalidArgument)),
            Err(s) => Err(ShareError::Refused(s)),
        }
    }

    /// The first byte.
    pub fn addr(&self) -> *mut u8 {
        self.addr as *mut u8
    }

    /// Its length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a region has at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This task's side: 0 if its end connected, 1 if its port was taken.
    pub fn side(&self) -> u8 {
        self.side
    }

    /// The ring view of bytes `[offset, offset + len)` of the region.
    pub fn mem(&self, offset: usize, len: usize) -> Option<RegionMem<'_>> {
        if !offset.is_multiple_of(8) || offset.checked_add(len)? > self.len {
            return None;
        }
        Some(RegionMem { base: self.addr as usize + offset, len, _region: self })
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        let _ = mem::ask(Request::ShareRelease { addr: self.addr });
    }
}

/// Part of a shared region as a ring reaches it: every access is a single
/// atomic or volatile access, as `SharedMem` requires.
#[derive(Debug)]
pub struct RegionMem<'r> {
    base: usize,
    len: usize,
    _region: &'r SharedRegion,
}

impl RegionMem<'_> {
    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "ring offset out of its region"
        );
        // SAFETY: the word lies inside the region (checked above; the ring
        // only passes such offsets), which stays mapped read-write while
        // `_region` lives; `base` is 8-aligned (a page plus a multiple of
        // 8). An atomic may be shared with a writer in another task.
        unsafe { &*((self.base + offset) as *const AtomicU64) }
    }
}

impl SharedMem for RegionMem<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn load_u64(&self, offset: usize) -> u64 {
        self.word(offset).load(Ordering::Acquire)
    }
    fn store_u64(&self, offset: usize, v: u64) {
        self.word(offset).store(v, Ordering::Release)
    }
    fn fence(&self) {
        fence(Ordering::SeqCst)
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= self.len, "ring copy out of its region");
        // SAFETY: the source lies inside the mapped region (checked), the
        // destination is the caller's buffer.
        unsafe { copy_from_foreign((self.base + offset) as *const u8, out.as_mut_ptr(), out.len()) }
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.len, "ring copy out of its region");
        // SAFETY: as for `read_bytes`, the other way.
        unsafe { copy_to_foreign(data.as_ptr(), (self.base + offset) as *mut u8, data.len()) }
    }
}

/// Copies `n` bytes out of memory another task may write at any time, with
/// volatile loads (16 bytes at a time where aligned, eight per loop), so
/// the compiler assumes nothing about it. Also the routine the benchmark's
/// plain copy uses, so the two are compared like for like. (Not `memcpy`:
/// its `rep movsb` would count as one instruction under `-icount`.)
///
/// # Safety
/// `src..src+n` readable, `dst..dst+n` writable, not overlapping.
pub unsafe fn copy_from_foreign(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: the caller's promise, passed on; `Foreign::Src` makes the
    // 16-byte accesses of `src` the aligned volatile ones.
    unsafe { copy(src, dst, n, Foreign::Src) }
}

/// Copies `n` bytes into memory another task may read at any time, with
/// volatile stores (see [`copy_from_foreign`]).
///
/// # Safety
/// `src..src+n` readable, `dst..dst+n` writable, not overlapping.
pub unsafe fn copy_to_foreign(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: as above, with the volatile side `dst`.
    unsafe { copy(src, dst, n, Foreign::Dst) }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Foreign {
    Src,
    Dst,
}

/// The copy behind both: bytes until the foreign side is 16-aligned, then
/// 128 bytes per loop (eight aligned volatile 16-byte accesses on the
/// foreign side, unaligned plain ones on ours), then 16 at a time, then
/// bytes.
///
/// # Safety
/// As [`copy_from_foreign`].
#[inline(always)]
unsafe fn copy(src: *const u8, dst: *mut u8, n: usize, foreign: Foreign) {
    use core::arch::x86_64::__m128i;
    let far = if foreign == Foreign::Src { src as usize } else { dst as usize };
    let head = far.wrapping_neg() % 16;
    let head = head.min(n);
    // SAFETY (all blocks): every access stays inside `src..src+n` and
    // `dst..dst+n` (the caller's promise): `i` only grows to `n`, and each
    // block checks its width first; the foreign side's 16-byte accesses
    // start at `far + head`, which is 16-aligned.
    unsafe {
        let byte = |i: usize| match foreign {
            Foreign::Src => dst.add(i).write(src.add(i).read_volatile()),
            Foreign::Dst => dst.add(i).write_volatile(src.add(i).read()),
        };
        let vec = |i: usize| {
            let (s, d) = (src.add(i) as *const __m128i, dst.add(i) as *mut __m128i);
            match foreign {
                Foreign::Src => d.write_unaligned(s.read_volatile()),
                Foreign::Dst => d.write_volatile(s.read_unaligned()),
            }
        };
        for i in 0..head {
            byte(i);
        }
        let mut i = head;
        let bulk = head + (n - head) / 128 * 128;
        while i < bulk {
            vec(i);
            vec(i + 16);
            vec(i + 32);
            vec(i + 48);
            vec(i + 64);
            vec(i + 80);
            vec(i + 96);
            vec(i + 112);
            i += 128;
        }
        while i + 16 <= n {
            vec(i);
            i += 16;
        }
        while i < n {
            byte(i);
            i += 1;
        }
    }
}

/// Why a channel operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The peer broke the ring (its counters or a record length are
    /// impossible): the channel stays broken; close the connection.
    Corrupt(alux_ring::Fault),
    /// The peer closed the connection (a writer cannot go on; a reader
    /// gets this only once the ring is empty).
    PeerClosed,
    /// The message can never fit the ring, or the buffer is too small for
    /// the next one (`needed` bytes; it stays in the ring).
    TooLarge {
        /// The next record's length (0 when sending).
        needed: usize,
    },
    /// A system call failed.
    Sys(Error),
}

/// The ring side `side` writes: its half of the region (whole 64-byte
/// lines).
fn ring(region: &SharedRegion, side: u8) -> RegionMem<'_> {
    let half = region.len() / 2 / 64 * 64;
    region.mem(side as usize * half, half).expect("both halves are inside the region")
}

fn ring_error(e: alux_ring::Error) -> ChannelError {
    match e {
        alux_ring::Error::Corrupt(f) => ChannelError::Corrupt(f),
        alux_ring::Error::BufferTooSmall { needed } => ChannelError::TooLarge { needed },
        alux_ring::Error::TooLarge | alux_ring::Error::RegionTooSmall => {
            ChannelError::TooLarge { needed: 0 }
        }
    }
}

/// A two-way byte stream (or message channel) between the two ends of a
/// connection, over a region shared through memd: the region's first half
/// is the ring side 0 writes, its second half the ring side 1 writes. The
/// connection is only the doorbell: a busy stream makes no system call
/// per write or read.
#[derive(Debug)]
pub struct Channel<'c> {
    conn: &'c Connection,
    region: SharedRegion,
    tx: Writer,
    rx: Reader,
    /// The peer closed the connection.
    closed: bool,
}

impl<'c> Channel<'c> {
    /// Negotiates a region of `len` bytes on `conn` (the other end must
    /// call this with the same length within `wait`) and sets up both
    /// rings. Each ring gets half the region less its 128-byte header.
    pub fn open(conn: &'c Connection, len: usize, wait: Duration) -> Result<Self, ShareError> {
        let region = SharedRegion::negotiate(conn, len, wait)?;
        let half = region.len() / 2 / 64 * 64;
        let tx = Writer::new(half).map_err(|_| ShareError::Sys(Error::InvalidArgument))?;
        let rx = Reader::new(half).map_err(|_| ShareError::Sys(Error::InvalidArgument))?;
        Ok(Channel { conn, region, tx, rx, closed: false })
    }

    /// This end's side (see [`SharedRegion::side`]).
    pub fn side(&self) -> u8 {
        self.region.side()
    }

    /// The region.
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// Bytes each ring holds.
    pub fn capacity(&self) -> u64 {
        self.tx.capacity()
    }

    /// Waits for the peer's signal; notes a close.
    fn wait_peer(&mut self) -> Result<(), ChannelError> {
        if self.closed {
            return Err(ChannelError::PeerClosed);
        }
        match self.conn.wait(None) {
            Ok(r) => {
                if r.events.contains(Events::PEER_CLOSED) {
                    self.closed = true;
                }
                Ok(())
            }
            Err(Error::PeerClosed) | Err(Error::NoSuchConnection) => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(ChannelError::Sys(e)),
        }
    }

    fn signal(&self) -> Result<(), ChannelError> {
        match self.conn.signal() {
            Ok(()) | Err(Error::PeerClosed) => Ok(()),
            Err(e) => Err(ChannelError::Sys(e)),
        }
    }

    /// One attempt of the writer (`op` on its ring), signalling if the
    /// ring says so; with `wait`, waits and tries again while the ring is
    /// full. The bytes written.
    fn tx_step(
        &mut self,
        wait: bool,
        op: impl Fn(&mut Writer, &RegionMem<'_>) -> Result<WriteOutcome, alux_ring::Error>,
    ) -> Result<usize, ChannelError> {
        loop {
            if self.closed {
                return Err(ChannelError::PeerClosed);
            }
            let out =
                op(&mut self.tx, &ring(&self.region, self.region.side())).map_err(ring_error)?;
            if out.must_signal {
                self.signal()?;
            }
            if !out.must_wait || !wait {
                return Ok(out.written);
            }
            self.wait_peer()?;
        }
    }

    /// One attempt of the reader, the same way; `Ok(None)` when the ring
    /// is empty and the peer closed (with `wait`) or the ring is empty
    /// (without).
    fn rx_step(
        &mut self,
        wait: bool,
        mut op: impl FnMut(&mut Reader, &RegionMem<'_>) -> Result<ReadOutcome, alux_ring::Error>,
    ) -> Result<Option<usize>, ChannelError> {
        loop {
            let out = op(&mut self.rx, &ring(&self.region, 1 - self.region.side()))
                .map_err(ring_error)?;
            if out.must_signal_writer {
                self.signal()?;
            }
            if !out.must_wait {
                return Ok(Some(out.n));
            }
            if !wait || self.closed {
                return Ok(None);
            }
            self.wait_peer()?;
        }
    }

    /// Writes what fits of `data` without waiting; 0 when the ring is full
    /// (the reader will signal when it makes room: see [`Channel::wait`]).
    /// For a task that streams both ways from one thread.
    pub fn try_write(&mut self, data: &[u8]) -> Result<usize, ChannelError> {
        self.tx_step(false, |w, m| w.write(m, data))
    }

    /// Reads what is there without waiting; 0 when the ring is empty (the
    /// writer will signal when it writes: see [`Channel::wait`]).
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let n = self.rx_step(false, |r, m| r.read(m, buf))?;
        Ok(n.unwrap_or(0))
    }

    /// Waits until the peer signals (it wrote, or made room, after a
    /// `try_*` call found nothing to do) or closes. `PeerClosed` if it
    /// closed before.
    pub fn wait(&mut self) -> Result<(), ChannelError> {
        self.wait_peer()
    }

    /// Whether the peer closed the connection (seen by a wait).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes some of `data` (at least one byte; waits for room while the
    /// ring is full). Returns how many.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, ChannelError> {
        self.tx_step(true, |w, m| w.write(m, data))
    }

    /// Writes all of `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), ChannelError> {
        while !data.is_empty() {
            let n = self.write(data)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Reads what is there, up to `buf.len()` bytes (waits while the ring
    /// is empty). `Ok(0)` once the peer closed and everything it wrote was
    /// read.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        if buf.is_empty() {
            return Ok(0);
        }
        Ok(self.rx_step(true, |r, m| r.read(m, buf))?.unwrap_or(0))
    }

    /// Sends `msg` as one record (waits for room).
    pub fn send(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        self.tx_step(true, |w, m| w.send(m, msg)).map(|_| ())
    }

    /// Receives the next record into `buf`; returns its length. `PeerClosed`
    /// once the peer closed and every record was received.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        self.rx_step(true, |r, m| r.recv(m, buf))?.ok_or(ChannelError::PeerClosed)
    }
}
