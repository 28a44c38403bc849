//! System call numbers and the argument and result layouts they use.
//!
//! See the crate docs for the register convention, and `docs/syscalls.md`
//! for each call's arguments, results and errors.

crate::code_enum! {
    /// System call numbers, passed in `rax`.
    pub enum Sys: u64 {
        // --- tasks, threads, time, memory (kernel core) ---
        /// `(ptr, len)`: write UTF-8 bytes to the kernel debug console.
        DebugPrint = 0,
        /// `(entry, stack_top, arg) -> thread`: start a thread in this task.
        ThreadCreate = 1,
        /// `(code)`: end the calling thread; never returns.
        ThreadExit = 2,
        /// `(code)`: end the calling task and all its threads; never returns.
        TaskExit = 3,
        /// `()`: give up the rest of the time slice.
        Yield = 4,
        /// `(nanoseconds)`: sleep at least this long.
        Sleep = 5,
        /// `() -> nanoseconds`: the monotonic clock since boot.
        Clock = 6,
        /// `(&SpawnArgs) -> task`: start a task from an ELF image. Privileged.
        Spawn = 7,
        /// `(task, timeout_ns) -> (kind, detail)`: wait for a task to end.
        /// Privileged, or the task's parent.
        TaskWait = 8,
        /// `(task)`: kill a task: itself, a child, or (privileged) any task.
        TaskKill = 9,
        /// `(&mut KernelStats)`: kernel resource usage.
        KernelStats = 10,
        /// `(code)`: stop the machine with an exit code. Privileged.
        Shutdown = 11,
        /// `(len, flags) -> addr`: map zeroed anonymous memory.
        MemMap = 12,
        /// `(addr, len)`: unmap memory mapped with `MemMap`.
        MemUnmap = 13,
        /// `() -> (task, thread, uid, flags)`: who am I.
        SelfInfo = 14,
        /// `(thread, timeout_ns) -> code`: wait for a thread of this task to end.
        ThreadJoin = 15,
        /// `(thread, cpu)`: run a thread of this task only on CPU `cpu` (an
        /// index below `CpuInfo`'s count), or on any CPU ([`CPU_ANY`]). It
        /// moves at once (a running thread within an interrupt's time).
        ThreadSetCpu = 16,
        /// `() -> (cpu, count)`: the CPU the caller runs on (its index) and
        /// how many CPUs run threads.
        CpuInfo = 17,

        // --- basic IPC (see `crate::ipc`) ---
        /// `() -> handle`: create a port (an unconnected end of this thread).
        PortCreate = 32,
        /// `(port)`: push a port onto this task's listen queue.
        ListenPush = 33,
        /// `(port)`: withdraw a port from the listen queue.
        ListenWithdraw = 34,
        /// `(task, timeout_ns) -> handle`: connect to a task.
        Connect = 35,
        /// `(handle, ptr, len)`: overwrite this end's 32-byte buffer.
        Write = 36,
        /// `(handle, &mut [u8; 32]) -> (len, seq)`: read the peer's buffer.
        Read = 37,
        /// `(handle)`: signal the peer end.
        Signal = 38,
        /// `(handle, ptr, len)`: write then signal, in one call.
        WriteSignal = 39,
        /// `(handles_ptr, count, timeout_ns) -> (handle, events)`: poll a set.
        Poll = 40,
        /// `(timeout_ns) -> (handle, events)`: poll all ends of this thread.
        PollAll = 41,
        /// `(handle)`: close an end.
        Close = 42,
        /// `(handle, &mut ConnectionInfo)`: identity of a connection.
        ConnectionInfo = 43,
        /// `(uid, allow)`: allow or deny a uid to connect to this task.
        SetConnectPermission = 44,
        /// `(kind) -> handle`: open an end whose far side is the kernel. Privileged.
        KernelEndOpen = 45,
        /// `(connection_id, &mut ConnectionEnds)`: the two ends of a live
        /// connection. Privileged.
        ConnectionQuery = 46,
        /// `(handle, len, w0, w1, w2, w3)`: write and signal with the message in
        /// registers (bytes little-endian in `w0..w3`); the fast path.
        Send = 47,
        /// `(timeout_ns) -> (handle, info, w0, w1, w2, w3)`: poll all ends and
        /// read the ready end's peer buffer, all in registers (see
        /// [`Received`]); results in `rdi, rsi, rdx, r10, r8, r9`.
        Receive = 48,
        /// `(handle, len, w0, w1, w2, w3) -> (handle, info, w0, w1, w2, w3)`:
        /// `Send`, then `Receive` without a time limit, in one call: the
        /// request/reply step of an RPC client or server.
        SendReceive = 49,
        /// `(handle, timeout_ns) -> (handle, events)`: `Poll` of this one end,
        /// its handle in a register (no set in memory to read).
        PollOne = 50,

        // --- device access for drivers (privileged; see `docs/drivers.md`) ---
        /// `(first_port, count)`: let this task use I/O ports
        /// `first_port..first_port + count` with `in`/`out`. Privileged.
        IoPortGrant = 64,
        /// `(phys, len) -> addr`: map device memory (not RAM) into this task,
        /// uncached, read-write, never executable. Privileged.
        MmioMap = 65,
        /// `(len) -> (addr, phys)`: map physically contiguous zeroed RAM for
        /// device DMA into this task, with its physical address. Privileged.
        DmaAlloc = 66,
        /// `(phys, len)`: keep the frames of `[phys, phys + len)` from being
        /// reused while a device may access them, even if their owner lets
        /// them go; the driver's pin on a client's buffer. Privileged.
        DmaPin = 67,
        /// `(phys, len)`: end a pin made with the same range. Privileged.
        DmaUnpin = 68,

        // --- the pager (the memory daemon only; see `crate::pager`) ---
        /// `() -> (window, frames, phys)`: become the pager; the pool is mapped
        /// at `window`. Privileged, and the caller must hold the `PAGE_FAULTS`
        /// kernel end.
        PagerAttach = 80,
        /// `() -> (w0..w5)`: the next pager event (`PagerEvent::encode`), in
        /// `rdi, rsi, rdx, r10, r8, r9`; `TimedOut` when there is none.
        PagerNext = 81,
        /// `(task, va, frame, flags)`: map pool frame `frame` at `va` in a paged
        /// task.
        PageMap = 82,
        /// `(task, va) -> (frame, bits)`: unmap a pool page of a paged task.
        PageUnmap = 83,
        /// `(task, va, clear) -> (frame, bits)`: read a pool page's accessed and
        /// dirty bits, clearing accessed if `clear` is 1.
        PageBits = 84,
        /// `(fault, verdict)`: settle a fault (`pager::verdict`).
        FaultResolve = 85,
        /// `(task, offset, dst, len)`: copy bytes of a pending spawn's image
        /// into the pager's memory.
        SpawnRead = 86,
        /// `(task, error)`: finish a pending spawn (`error` 0) or fail it with
        /// that error code.
        SpawnFinish = 87,
        /// `(bus, device, function)`: this task drives that PCI function; when
        /// the task ends, the kernel stops the device's DMA (clears Bus Master
        /// Enable) before it frees the task's memory and pins. Privileged.
        DeviceClaim = 69,
    }
}

/// A timeout of `u64::MAX` nanoseconds waits forever.
pub const WAIT_FOREVER: u64 = u64::MAX;
/// A timeout of 0 never blocks.
pub const NO_WAIT: u64 = 0;

/// Longest debug print accepted in one call.
pub const DEBUG_PRINT_MAX: usize = 4096;
/// Largest ELF image `Spawn` accepts.
pub const SPAWN_IMAGE_MAX: usize = 4 << 20;
/// Largest argument block `Spawn` accepts.
pub const SPAWN_ARGS_MAX: usize = 2048;
/// Largest single `MemMap` request.
pub const MEM_MAP_MAX: usize = 64 << 20;
/// Page size of user mappings.
pub const PAGE_SIZE: usize = 4096;
/// Largest single `MmioMap` request.
pub const MMIO_MAP_MAX: usize = 256 << 20;
/// Largest single `DmaAlloc` request (physically contiguous).
pub const DMA_ALLOC_MAX: usize = 2 << 20;
/// Most bytes one `SpawnRead` copies.
pub const SPAWN_READ_MAX: usize = 64 * 1024;
/// Largest single `DmaPin` range.
pub const DMA_PIN_MAX: usize = 16 << 20;

/// Most CPUs the kernel runs threads on (CPU indexes are below this).
pub const MAX_CPUS: usize = 16;

/// `ThreadSetCpu`'s `cpu` for "any CPU": the thread is not pinned.
pub const CPU_ANY: u64 = u64::MAX;

/// Task flags: in `SpawnArgs::flags` and in `SelfInfo`.
pub mod task_flags {
    /// The task may use privileged calls.
    pub const PRIVILEGED: u32 = 1;
}

/// `MemMap` flags. `WRITE | EXEC` together is refused (W^X).
pub mod map_flags {
    /// Map writable (otherwise read-only).
    pub const WRITE: u64 = 1;
    /// Allow execution.
    pub const EXEC: u64 = 2;
    /// All defined flags.
    pub const ALL: u64 = WRITE | EXEC;
}

/// The argument block of `Spawn`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SpawnArgs {
    /// The ELF image, in the caller's memory.
    pub image_ptr: u64,
    /// Its length in bytes.
    pub image_len: u64,
    /// Bytes handed to the new task's first thread (see `StartInfo`).
    pub arg_ptr: u64,
    /// Their length.
    pub arg_len: u64,
    /// The new task's user ID.
    pub uid: u32,
    /// `task_flags`.
    pub flags: u32,
    /// Pages the new task may have from the memory daemon (0: its
    /// default); ignored for privileged tasks, whose memory is the
    /// kernel's.
    pub quota_pages: u64,
}

/// What a new task's first thread finds at the address in its `rdi`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct StartInfo {
    /// The task's own ID (raw `TaskId`).
    pub task: u64,
    /// The first thread's ID (raw `ThreadId`).
    pub thread: u64,
    /// The task's uid.
    pub uid: u32,
    /// `task_flags`.
    pub flags: u32,
    /// The spawn argument bytes, copied into the task's memory.
    pub arg_ptr: u64,
    /// Their length.
    pub arg_len: u64,
    /// The boot module (only for init; else 0), mapped read-only.
    pub boot_module_ptr: u64,
    /// Its length.
    pub boot_module_len: u64,
    /// The memory daemon's task (raw `TaskId`) if this task's memory is
    /// paged by it, else 0: where its runtime asks for memory.
    pub pager_task: u64,
}

/// Kernel resource usage, answered by `KernelStats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct KernelStats {
    /// Physical frames in use.
    pub frames_used: u64,
    /// Physical frames managed.
    pub frames_total: u64,
    /// Kernel heap bytes in use.
    pub heap_used: u64,
    /// Tasks, zombies (ended, status not yet collected) included.
    pub tasks: u64,
    /// Live threads.
    pub threads: u64,
    /// Live IPC objects (ends), kernel-wide.
    pub ipc_ends: u64,
    /// Timer interrupts so far.
    pub ticks: u64,
    /// Context switches so far.
    pub switches: u64,
    /// Frames the calling task holds: its pages and page tables (part of
    /// `frames_used`).
    pub caller_frames: u64,
    /// Hardware interrupts delivered to drivers' kernel ends so far.
    pub interrupts: u64,
    /// TSC ticks the kernel spent idle (halted with nothing to run, and the
    /// interrupt that ended each halt) since boot: what a benchmark that
    /// waits for a device takes out of its elapsed time.
    pub idle_tsc: u64,
}

/// How a task ended: `TaskWait` returns `(kind, detail)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// Its last thread exited, or it called `TaskExit`, with this code.
    Exited(u64),
    /// A CPU exception killed it. `detail` is the faulting address for page
    /// faults, else the instruction pointer.
    Faulted(Fault, u64),
    /// Another task killed it.
    Killed,
}

/// CPU exceptions that kill a user task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// #DE.
    DivideError = 0,
    /// #UD.
    InvalidOpcode = 6,
    /// #GP.
    GeneralProtection = 13,
    /// #PF.
    PageFault = 14,
    /// Any other exception vector.
    Other = 255,
}

impl Fault {
    /// Classifies an exception vector.
    pub fn from_vector(v: u8) -> Fault {
        match v {
            0 => Fault::DivideError,
            6 => Fault::InvalidOpcode,
            13 => Fault::GeneralProtection,
            14 => Fault::PageFault,
            _ => Fault::Other,
        }
    }
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Fault::DivideError => "divide error",
            Fault::InvalidOpcode => "invalid opcode",
            Fault::GeneralProtection => "general protection fault",
            Fault::PageFault => "page fault",
            Fault::Other => "exception",
        }
    }
}

impl TaskEnd {
    const EXITED: u64 = 0;
    const KILLED: u64 = 1;
    const FAULTED: u64 = 2;

    /// Encodes into `(kind, detail)` registers.
    pub fn encode(self) -> (u64, u64) {
        match self {
            TaskEnd::Exited(code) => (Self::EXITED, code),
            TaskEnd::Killed => (Self::KILLED, 0),
            TaskEnd::Faulted(f, addr) => (Self::FAULTED | ((f as u64) << 8), addr),
        }
    }

    /// Decodes `(kind, detail)`; `None` if malformed.
    pub fn decode(kind: u64, detail: u64) -> Option<TaskEnd> {
        match kind & 0xff {
            Self::EXITED if kind == Self::EXITED => Some(TaskEnd::Exited(detail)),
            Self::KILLED if kind == Self::KILLED => Some(TaskEnd::Killed),
            Self::FAULTED if kind >> 16 == 0 => {
                let f = Fault::from_vector((kind >> 8) as u8);
                if f as u64 == (kind >> 8) {
                    Some(TaskEnd::Faulted(f, detail))
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// Packs a poll result into the four result registers:
/// `rdi` = handle, `rsi` = events | close reason << 8 | peer uid << 16,
/// `rdx` = peer task, `r10` = connection ID.
pub fn encode_ready(r: &crate::ipc::Ready) -> [u64; 4] {
    let reason = r.close_reason.map_or(0, |c| c.code() as u64);
    [
        r.handle.raw(),
        r.events.bits() as u64 | (reason & 0xff) << 8 | (r.peer_uid as u64) << 16,
        r.peer_task.raw(),
        r.conn_id,
    ]
}

/// Unpacks [`encode_ready`]; `None` if the events or reason are malformed.
pub fn decode_ready(regs: [u64; 4]) -> Option<crate::ipc::Ready> {
    let events = crate::ipc::Events::from_bits((regs[1] & 0xff) as u32)?;
    let reason = match (regs[1] >> 8) & 0xff {
        0 => None,
        c => Some(crate::ipc::CloseReason::from_code(c as u32)?),
    };
    Some(crate::ipc::Ready {
        handle: crate::ipc::Handle::from_raw(regs[0]),
        events,
        conn_id: regs[3],
        peer_task: crate::TaskId::from_raw(regs[2]),
        peer_uid: (regs[1] >> 16) as crate::Uid,
        close_reason: reason,
    })
}

/// Packs up to 32 message bytes into four registers, little-endian.
#[inline]
pub fn pack_message(data: &[u8]) -> [u64; 4] {
    let mut bytes = [0u8; 32];
    if let Some(full) = data.first_chunk::<32>() {
        // The common full message: a fixed-size copy, four word loads.
        bytes = *full;
    } else {
        bytes[..data.len()].copy_from_slice(data);
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    [word(0), word(1), word(2), word(3)]
}

/// Unpacks [`pack_message`].
#[inline]
pub fn unpack_message(words: [u64; 4]) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, w) in words.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    bytes
}

/// What `Receive` returns: the ready end, its events, and its peer's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The end.
    pub handle: crate::ipc::Handle,
    /// Its events, which the call cleared.
    pub events: crate::ipc::Events,
    /// Set when `events` holds `PEER_CLOSED`.
    pub close_reason: Option<crate::ipc::CloseReason>,
    /// The peer task's uid.
    pub peer_uid: crate::Uid,
    /// The peer's buffer as it is now (`seq` is not reported: 0).
    pub message: crate::ipc::Message,
}

impl Received {
    /// Packs into the six result registers: `rdi` = handle, `rsi` = events
    /// | reason << 8 | uid << 16 | len << 32, `rdx, r10, r8, r9` = data.
    pub fn encode(&self) -> [u64; 6] {
        let reason = self.close_reason.map_or(0, |c| c.code() as u64);
        let info = self.events.bits() as u64
            | (reason & 0xff) << 8
            | (self.peer_uid as u64) << 16
            | (self.message.len as u64) << 32;
        let [a, b, c, d] = pack_message(&self.message.data);
        [self.handle.raw(), info, a, b, c, d]
    }

    /// Unpacks [`Received::encode`]; `None` if malformed.
    #[inline]
    pub fn decode(regs: [u64; 6]) -> Option<Received> {
        let info = regs[1];
        let events = crate::ipc::Events::from_bits((info & 0xff) as u32)?;
        let close_reason = match (info >> 8) & 0xff {
            0 => None,
            c => Some(crate::ipc::CloseReason::from_code(c as u32)?),
        };
        let len = (info >> 32) as usize;
        if len > crate::ipc::MESSAGE_MAX || info >> 40 != 0 {
            return None;
        }
        Some(Received {
            handle: crate::ipc::Handle::from_raw(regs[0]),
            events,
            close_reason,
            peer_uid: (info >> 16) as crate::Uid,
            message: crate::ipc::Message {
                data: unpack_message([regs[2], regs[3], regs[4], regs[5]]),
                len: len as u8,
                seq: 0,
            },
        })
    }
}

/// The value `isa-debug-exit` turns into QEMU exit status 33: success.
pub const SHUTDOWN_SUCCESS: u64 = 0x10;
/// The value `isa-debug-exit` turns into QEMU exit status 35: failure.
pub const SHUTDOWN_FAILURE: u64 = 0x11;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for s in Sys::ALL {
            assert_eq!(Sys::from_code(s as u64), Some(s));
        }
        let decodable = (0..256).filter(|n| Sys::from_code(*n).is_some()).count();
        assert_eq!(decodable, Sys::ALL.len(), "ALL lists every number from_code knows");
        assert_eq!(Sys::from_code(18), None);
        assert_eq!(Sys::from_code(u64::MAX), None);
    }

    #[test]
    fn messages_and_receipts_round_trip() {
        let data: [u8; 32] = core::array::from_fn(|i| i as u8 * 7 + 1);
        assert_eq!(unpack_message(pack_message(&data)), data);
        assert_eq!(unpack_message(pack_message(b"hi"))[..3], *b"hi\0");
        let r = Received {
            handle: crate::ipc::Handle::new(3, 9),
            events: crate::ipc::Events::SIGNAL | crate::ipc::Events::PEER_CLOSED,
            close_reason: Some(crate::ipc::CloseReason::TaskKilled),
            peer_uid: 65535,
            message: crate::ipc::Message { data, len: 32, seq: 0 },
        };
        assert_eq!(Received::decode(r.encode()), Some(r));
        let mut bad = r.encode();
        bad[1] |= 33 << 32;
        assert_eq!(Received::decode(bad), None);
    }

    #[test]
    fn task_end_round_trips() {
        let cases = [
            TaskEnd::Exited(0),
            TaskEnd::Exited(u64::MAX),
            TaskEnd::Killed,
            TaskEnd::Faulted(Fault::PageFault, 0xdead),
            TaskEnd::Faulted(Fault::Other, 1),
            TaskEnd::Faulted(Fault::DivideError, 2),
        ];
        for c in cases {
            let (k, d) = c.encode();
            assert_eq!(TaskEnd::decode(k, d), Some(c));
        }
        assert_eq!(TaskEnd::decode(3, 0), None);
        assert_eq!(TaskEnd::decode(2 | (5 << 8), 0), None);
    }
}
