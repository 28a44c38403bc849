//! System call decoding and result encoding: the one place where raw
//! registers become a typed [`Syscall`], and the one place where a handler's
//! result becomes registers again.
//!
//! Decoding checks everything that can be checked without the caller's page
//! tables: the call number, flags, sizes, and that every user pointer range
//! is non-null, does not overflow and lies wholly in the user half. Whether
//! the pages are really mapped is checked later, against the address space,
//! when the kernel copies (see [`UserSlice`]). Nothing here dereferences
//! anything.

use alux_abi::pager::{page_flags, verdict};
use alux_abi::syscall::{
    map_flags, DEBUG_PRINT_MAX, DMA_ALLOC_MAX, DMA_PIN_MAX, MEM_MAP_MAX, MMIO_MAP_MAX, PAGE_SIZE,
    SPAWN_READ_MAX,
};
use alux_abi::{Error, Sys, TaskId, ThreadId};

/// One past the highest address a user pointer may reach. The last page
/// below the canonical boundary (`paging::USER_END`) is never mapped, so a
/// `syscall` can never return to a non-canonical address.
pub const USER_POINTER_END: u64 = 0x0000_7fff_ffff_f000;

/// An unvalidated user address range: in bounds of the user half, but not
/// yet known to be mapped. Only the address space can turn it into bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserSlice {
    addr: u64,
    len: u64,
}

impl UserSlice {
    /// Checks that `[addr, addr + len)` is non-null and inside the user
    /// half. A zero-length slice names no byte: it is accepted at any user
    /// address, null included (an empty Rust slice may have any pointer).
    pub fn new(addr: u64, len: u64) -> Result<Self, Error> {
        let end = addr.checked_add(len).ok_or(Error::BadAddress)?;
        if (addr == 0 && len != 0) || end > USER_POINTER_END {
            return Err(Error::BadAddress);
        }
        Ok(UserSlice { addr, len })
    }
    /// The first address.
    pub fn addr(&self) -> u64 {
        self.addr
    }
    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A user range holding one value of type `T` (a `#[repr(C)]` ABI record).
#[derive(Debug, PartialEq, Eq)]
pub struct UserRef<T> {
    slice: UserSlice,
    _t: core::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for UserRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for UserRef<T> {}

impl<T> UserRef<T> {
    /// Checks the range `[addr, addr + size_of::<T>())` and its alignment.
    pub fn new(addr: u64) -> Result<Self, Error> {
        if !addr.is_multiple_of(core::mem::align_of::<T>() as u64) {
            return Err(Error::BadAddress);
        }
        Ok(UserRef {
            slice: UserSlice::new(addr, core::mem::size_of::<T>() as u64)?,
            _t: core::marker::PhantomData,
        })
    }
    /// The range the value occupies.
    pub fn slice(&self) -> UserSlice {
        self.slice
    }
}

/// A timeout argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Do not block.
    Now,
    /// Block at most this many nanoseconds.
    After(u64),
    /// Block until the event.
    Never,
}

impl Timeout {
    fn decode(ns: u64) -> Timeout {
        match ns {
            alux_abi::syscall::NO_WAIT => Timeout::Now,
            alux_abi::syscall::WAIT_FOREVER => Timeout::Never,
            ns => Timeout::After(ns),
        }
    }
}

/// A decoded system call with validated arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Syscall {
    DebugPrint { text: UserSlice },
    ThreadCreate { entry: u64, stack_top: u64, arg: u64 },
    ThreadExit { code: u64 },
    ThreadJoin { thread: ThreadId, timeout: Timeout },
    TaskExit { code: u64 },
    Yield,
    Sleep { nanos: u64 },
    Clock,
    Spawn { args: UserRef<alux_abi::syscall::SpawnArgs> },
    TaskWait { task: TaskId, timeout: Timeout },
    TaskKill { task: TaskId },
    KernelStats { out: UserRef<alux_abi::syscall::KernelStats> },
    Shutdown { code: u64 },
    MemMap { len: u64, flags: u64 },
    MemUnmap { range: UserSlice },
    SelfInfo,
    ThreadSetCpu { thread: ThreadId, cpu: Option<u32> },
    CpuInfo,
    IoPortGrant { first: u16, count: u32 },
    MmioMap { phys: u64, len: u64 },
    DmaAlloc { len: u64 },
    DmaPin { first_frame: u64, frames: u64 },
    DmaUnpin { first_frame: u64, frames: u64 },
    PagerAttach,
    PagerNext,
    PageMap { task: TaskId, va: u64, frame: u64, flags: u64 },
    PageUnmap { task: TaskId, va: u64 },
    PageBits { task: TaskId, va: u64, clear: bool },
    FaultResolve { fault: u64, verdict: u64 },
    SpawnRead { task: TaskId, offset: u64, dst: UserSlice },
    SpawnFinish { task: TaskId, error: u64 },
    DeviceClaim { bdf: u16 },
    Ipc(IpcCall),
}

/// A decoded IPC system call. Handles stay raw `u64`s: only the IPC core can
/// say whether one is valid, stale, or another thread's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum IpcCall {
    PortCreate,
    ListenPush { port: u64 },
    ListenWithdraw { port: u64 },
    Connect { task: TaskId, timeout: Timeout },
    Write { handle: u64, data: UserSlice },
    Read { handle: u64, out: UserSlice },
    Signal { handle: u64 },
    WriteSignal { handle: u64, data: UserSlice },
    Poll { handles: UserSlice, count: u64, timeout: Timeout },
    PollOne { handle: u64, timeout: Timeout },
    PollAll { timeout: Timeout },
    Close { handle: u64 },
    ConnectionInfo { handle: u64, out: UserSlice },
    SetConnectPermission { uid: u64, allow: bool },
    KernelEndOpen { kind: u64 },
    ConnectionQuery { connection: u64, out: UserSlice },
    Send { handle: u64, len: u64, words: [u64; 4] },
    Receive { timeout: Timeout },
    SendReceive { handle: u64, len: u64, words: [u64; 4] },
}

/// One past the highest physical address x86_64 page tables can name
/// (52 bits).
pub const PHYS_ADDRESS_END: u64 = 1 << 52;

/// Most bytes one connection buffer holds.
pub const MESSAGE_MAX: u64 = alux_abi::ipc::MESSAGE_MAX as u64;
/// Most handles one `Poll` may name.
pub const POLL_SET_MAX: u64 = alux_abi::ipc::limits::POLL_SET_MAX as u64;

/// The raw system call registers: number and six arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawCall {
    /// `rax`.
    pub number: u64,
    /// `rdi, rsi, rdx, r10, r8, r9`.
    pub args: [u64; 6],
}

/// A page-aligned address in the user half (a page another task's pages
/// are mapped at).
fn user_page(va: u64) -> Result<u64, Error> {
    if !va.is_multiple_of(PAGE_SIZE as u64) || va == 0 || va >= crate::paging::USER_END {
        return Err(Error::InvalidArgument);
    }
    Ok(va)
}

fn bool_arg(v: u64) -> Result<bool, Error> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::InvalidArgument),
    }
}

/// Turns registers into a typed call, rejecting every malformed argument.
pub fn decode(raw: &RawCall) -> Result<Syscall, Error> {
    let [a0, a1, a2, a3, _a4, _a5] = raw.args;
    let sys = Sys::from_code(raw.number).ok_or(Error::UnknownSyscall)?;
    let call = match sys {
        Sys::DebugPrint => {
            if a1 > DEBUG_PRINT_MAX as u64 {
                return Err(Error::InvalidArgument);
            }
            Syscall::DebugPrint { text: UserSlice::new(a0, a1)? }
        }
        Sys::ThreadCreate => {
            UserSlice::new(a0, 1)?;
            if a1 == 0 || a1 > USER_POINTER_END {
                return Err(Error::BadAddress);
            }
            if a1 % 16 != 0 {
                return Err(Error::InvalidArgument);
            }
            Syscall::ThreadCreate { entry: a0, stack_top: a1, arg: a2 }
        }
        Sys::ThreadExit => Syscall::ThreadExit { code: a0 },
        Sys::ThreadJoin => {
            Syscall::ThreadJoin { thread: ThreadId::from_raw(a0), timeout: Timeout::decode(a1) }
        }
        Sys::TaskExit => Syscall::TaskExit { code: a0 },
        Sys::Yield => Syscall::Yield,
        Sys::Sleep => Syscall::Sleep { nanos: a0 },
        Sys::Clock => Syscall::Clock,
        Sys::Spawn => Syscall::Spawn { args: UserRef::new(a0)? },
        Sys::TaskWait => {
            Syscall::TaskWait { task: TaskId::from_raw(a0), timeout: Timeout::decode(a1) }
        }
        Sys::TaskKill => Syscall::TaskKill { task: TaskId::from_raw(a0) },
        Sys::KernelStats => Syscall::KernelStats { out: UserRef::new(a0)? },
        Sys::Shutdown => Syscall::Shutdown { code: a0 },
        Sys::MemMap => {
            // W^X: never writable and executable at once.
            let wx = map_flags::WRITE | map_flags::EXEC;
            if a0 == 0 || a0 > MEM_MAP_MAX as u64 || a1 & !map_flags::ALL != 0 || a1 & wx == wx {
                return Err(Error::InvalidArgument);
            }
            Syscall::MemMap { len: a0, flags: a1 }
        }
        Sys::MemUnmap => {
            if a0 % PAGE_SIZE as u64 != 0 || a1 == 0 || a1 % PAGE_SIZE as u64 != 0 {
                return Err(Error::InvalidArgument);
            }
            Syscall::MemUnmap { range: UserSlice::new(a0, a1)? }
        }
        Sys::SelfInfo => Syscall::SelfInfo,
        Sys::ThreadSetCpu => Syscall::ThreadSetCpu {
            thread: ThreadId::from_raw(a0),
            cpu: match a1 {
                alux_abi::syscall::CPU_ANY => None,
                c if c < alux_abi::syscall::MAX_CPUS as u64 => Some(c as u32),
                _ => return Err(Error::InvalidArgument),
            },
        },
        Sys::CpuInfo => Syscall::CpuInfo,
        Sys::IoPortGrant => {
            // `a1` is checked before it is added: any u64 may come in.
            if a0 > u16::MAX as u64 || a1 == 0 || a1 > (1 << 16) - a0 {
                return Err(Error::InvalidArgument);
            }
            Syscall::IoPortGrant { first: a0 as u16, count: a1 as u32 }
        }
        Sys::MmioMap => {
            if !a0.is_multiple_of(PAGE_SIZE as u64)
                || a1 == 0
                || a1 > MMIO_MAP_MAX as u64
                || a0 >= PHYS_ADDRESS_END
                || a0 + a1 > PHYS_ADDRESS_END
            {
                return Err(Error::InvalidArgument);
            }
            Syscall::MmioMap { phys: a0, len: a1.next_multiple_of(PAGE_SIZE as u64) }
        }
        Sys::DmaAlloc => {
            if a0 == 0 || a0 > DMA_ALLOC_MAX as u64 {
                return Err(Error::InvalidArgument);
            }
            Syscall::DmaAlloc { len: a0.next_multiple_of(PAGE_SIZE as u64) }
        }
        Sys::PagerAttach => Syscall::PagerAttach,
        Sys::PagerNext => Syscall::PagerNext,
        Sys::PageMap => {
            let wx = page_flags::WRITE | page_flags::EXEC;
            if a3 & !wx != 0 || a3 & wx == wx {
                return Err(Error::InvalidArgument);
            }
            Syscall::PageMap {
                task: TaskId::from_raw(a0),
                va: user_page(a1)?,
                frame: a2,
                flags: a3,
            }
        }
        Sys::PageUnmap => Syscall::PageUnmap { task: TaskId::from_raw(a0), va: user_page(a1)? },
        Sys::PageBits => Syscall::PageBits {
            task: TaskId::from_raw(a0),
            va: user_page(a1)?,
            clear: bool_arg(a2)?,
        },
        Sys::FaultResolve => {
            if a1 > verdict::ERROR {
                return Err(Error::InvalidArgument);
            }
            Syscall::FaultResolve { fault: a0, verdict: a1 }
        }
        Sys::SpawnRead => {
            if a3 > SPAWN_READ_MAX as u64 {
                return Err(Error::InvalidArgument);
            }
            Syscall::SpawnRead {
                task: TaskId::from_raw(a0),
                offset: a1,
                dst: UserSlice::new(a2, a3)?,
            }
        }
        Sys::SpawnFinish => Syscall::SpawnFinish { task: TaskId::from_raw(a0), error: a1 },
        Sys::DeviceClaim => {
            if a0 > 255 || a1 > 31 || a2 > 7 {
                return Err(Error::InvalidArgument);
            }
            Syscall::DeviceClaim { bdf: (a0 << 8 | a1 << 3 | a2) as u16 }
        }
        Sys::DmaPin | Sys::DmaUnpin => {
            if a1 == 0
                || a1 > DMA_PIN_MAX as u64
                || a0 >= PHYS_ADDRESS_END
                || a1 > PHYS_ADDRESS_END - a0
            {
                return Err(Error::InvalidArgument);
            }
            // Every frame the range touches.
            let first_frame = a0 & !(PAGE_SIZE as u64 - 1);
            let frames = (a0 + a1 - first_frame).div_ceil(PAGE_SIZE as u64);
            if sys == Sys::DmaPin {
                Syscall::DmaPin { first_frame, frames }
            } else {
                Syscall::DmaUnpin { first_frame, frames }
            }
        }
        Sys::PortCreate => Syscall::Ipc(IpcCall::PortCreate),
        Sys::ListenPush => Syscall::Ipc(IpcCall::ListenPush { port: a0 }),
        Sys::ListenWithdraw => Syscall::Ipc(IpcCall::ListenWithdraw { port: a0 }),
        Sys::Connect => Syscall::Ipc(IpcCall::Connect {
            task: TaskId::from_raw(a0),
            timeout: Timeout::decode(a1),
        }),
        Sys::Write | Sys::WriteSignal => {
            if a2 > MESSAGE_MAX {
                return Err(Error::MessageTooLong);
            }
            let data = UserSlice::new(a1, a2)?;
            if sys == Sys::Write {
                Syscall::Ipc(IpcCall::Write { handle: a0, data })
            } else {
                Syscall::Ipc(IpcCall::WriteSignal { handle: a0, data })
            }
        }
        Sys::Read => {
            Syscall::Ipc(IpcCall::Read { handle: a0, out: UserSlice::new(a1, MESSAGE_MAX)? })
        }
        Sys::Signal => Syscall::Ipc(IpcCall::Signal { handle: a0 }),
        Sys::Poll => {
            if a1 == 0 || a1 > POLL_SET_MAX {
                return Err(Error::InvalidArgument);
            }
            if a0 % 8 != 0 {
                return Err(Error::BadAddress);
            }
            Syscall::Ipc(IpcCall::Poll {
                handles: UserSlice::new(a0, a1 * 8)?,
                count: a1,
                timeout: Timeout::decode(a2),
            })
        }
        Sys::PollOne => Syscall::Ipc(IpcCall::PollOne { handle: a0, timeout: Timeout::decode(a1) }),
        Sys::PollAll => Syscall::Ipc(IpcCall::PollAll { timeout: Timeout::decode(a0) }),
        Sys::Close => Syscall::Ipc(IpcCall::Close { handle: a0 }),
        Sys::ConnectionInfo => {
            Syscall::Ipc(IpcCall::ConnectionInfo { handle: a0, out: aligned_out(a1)? })
        }
        Sys::SetConnectPermission => {
            if a0 >= alux_abi::ids::UID_COUNT as u64 {
                return Err(Error::InvalidArgument);
            }
            Syscall::Ipc(IpcCall::SetConnectPermission { uid: a0, allow: bool_arg(a1)? })
        }
        Sys::KernelEndOpen => Syscall::Ipc(IpcCall::KernelEndOpen { kind: a0 }),
        Sys::Send | Sys::SendReceive => {
            if a1 > MESSAGE_MAX {
                return Err(Error::MessageTooLong);
            }
            let [.., w0, w1, w2, w3] = raw.args;
            let words = [w0, w1, w2, w3];
            Syscall::Ipc(if sys == Sys::Send {
                IpcCall::Send { handle: a0, len: a1, words }
            } else {
                IpcCall::SendReceive { handle: a0, len: a1, words }
            })
        }
        Sys::Receive => Syscall::Ipc(IpcCall::Receive { timeout: Timeout::decode(a0) }),
        Sys::ConnectionQuery => {
            Syscall::Ipc(IpcCall::ConnectionQuery { connection: a0, out: aligned_out(a1)? })
        }
    };
    Ok(call)
}

/// An output record pointer: 8-byte aligned; its length is checked by the
/// handler, which knows the record type.
fn aligned_out(addr: u64) -> Result<UserSlice, Error> {
    if !addr.is_multiple_of(8) {
        return Err(Error::BadAddress);
    }
    UserSlice::new(addr, 8)
}

/// What a handler answers: up to four result registers, or an error.
pub type SysResult = Result<[u64; 4], Error>;

/// What `Receive` answers: six result registers, or an error.
pub type WideResult = Result<[u64; 6], Error>;

/// Whether call `number` returns six result registers (`Receive`,
/// `SendReceive`, `PagerNext`): then `r8` and `r9` are results too, and every error,
/// from decoding on, must zero them like the other four.
pub fn returns_wide(number: u64) -> bool {
    // Two compares: this runs on every system call's return.
    number == Sys::Receive as u64
        || number == Sys::SendReceive as u64
        || number == Sys::PagerNext as u64
}

/// The registers `Receive` returns with: `rax` then `rdi, rsi, rdx, r10,
/// r8, r9`, zeroed on error.
pub fn encode_wide(result: WideResult) -> [u64; 7] {
    match result {
        Ok([a, b, c, d, e, f]) => [0, a, b, c, d, e, f],
        Err(e) => [e.code(), 0, 0, 0, 0, 0, 0],
    }
}

/// The registers a finished call returns with: `rax` then `rdi, rsi, rdx,
/// r10`. On error only `rax` carries meaning; the others are zeroed so no
/// stale kernel value leaks.
pub fn encode(result: SysResult) -> [u64; 5] {
    match result {
        Ok([a, b, c, d]) => [0, a, b, c, d],
        Err(e) => [e.code(), 0, 0, 0, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sys: u64, args: [u64; 6]) -> Result<Syscall, Error> {
        decode(&RawCall { number: sys, args })
    }

    #[test]
    fn unknown_numbers_are_rejected() {
        for n in [18u64, 31, 50, 1000, u64::MAX] {
            if Sys::from_code(n).is_none() {
                assert_eq!(call(n, [0; 6]), Err(Error::UnknownSyscall));
            }
        }
    }

    #[test]
    fn thread_set_cpu_checks_the_index() {
        let n = Sys::ThreadSetCpu as u64;
        let max = alux_abi::syscall::MAX_CPUS as u64;
        let t = ThreadId::new(3, 1);
        assert_eq!(
            call(n, [t.raw(), max - 1, 0, 0, 0, 0]),
            Ok(Syscall::ThreadSetCpu { thread: t, cpu: Some(max as u32 - 1) })
        );
        assert_eq!(
            call(n, [t.raw(), alux_abi::syscall::CPU_ANY, 0, 0, 0, 0]),
            Ok(Syscall::ThreadSetCpu { thread: t, cpu: None })
        );
        for bad in [max, max + 1, u64::MAX - 1] {
            assert_eq!(call(n, [t.raw(), bad, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        }
    }

    #[test]
    fn user_slice_bounds() {
        assert_eq!(UserSlice::new(0, 1), Err(Error::BadAddress));
        assert!(UserSlice::new(0, 0).is_ok());
        assert_eq!(UserSlice::new(u64::MAX, 2), Err(Error::BadAddress));
        assert_eq!(UserSlice::new(USER_POINTER_END - 4, 8), Err(Error::BadAddress));
        assert_eq!(UserSlice::new(0xffff_8000_0000_0000, 8), Err(Error::BadAddress));
        assert!(UserSlice::new(USER_POINTER_END - 8, 8).is_ok());
        assert!(UserSlice::new(0x1000, 0).is_ok());
    }

    #[test]
    fn debug_print_length_is_capped() {
        let max = DEBUG_PRINT_MAX as u64;
        assert!(call(Sys::DebugPrint as u64, [0x1000, max, 0, 0, 0, 0]).is_ok());
        assert_eq!(
            call(Sys::DebugPrint as u64, [0x1000, max + 1, 0, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
        assert_eq!(call(Sys::DebugPrint as u64, [0, 4, 0, 0, 0, 0]), Err(Error::BadAddress));
    }

    #[test]
    fn write_rejects_long_messages_and_kernel_pointers() {
        let w = Sys::WriteSignal as u64;
        assert_eq!(call(w, [1, 0x1000, 33, 0, 0, 0]), Err(Error::MessageTooLong));
        assert_eq!(call(w, [1, 0xffff_ffff_8000_0000, 8, 0, 0, 0]), Err(Error::BadAddress));
        assert_eq!(
            call(w, [1, 0x1000, 32, 0, 0, 0]),
            Ok(Syscall::Ipc(IpcCall::WriteSignal {
                handle: 1,
                data: UserSlice::new(0x1000, 32).unwrap()
            }))
        );
    }

    #[test]
    fn mem_map_checks_length_and_flags() {
        let m = Sys::MemMap as u64;
        assert_eq!(call(m, [0, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(m, [4096, 8, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(m, [4096, 3, 0, 0, 0, 0]), Err(Error::InvalidArgument), "W^X");
        assert_eq!(call(m, [4096, 2, 0, 0, 0, 0]), Ok(Syscall::MemMap { len: 4096, flags: 2 }));
        assert_eq!(call(m, [MEM_MAP_MAX as u64 + 1, 1, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(m, [4096, 1, 0, 0, 0, 0]), Ok(Syscall::MemMap { len: 4096, flags: 1 }));
        let u = Sys::MemUnmap as u64;
        assert_eq!(call(u, [0x1001, 4096, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(u, [0x1000, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
    }

    #[test]
    fn device_calls_check_ranges() {
        let g = Sys::IoPortGrant as u64;
        assert_eq!(
            call(g, [0xcf8, 8, 0, 0, 0, 0]),
            Ok(Syscall::IoPortGrant { first: 0xcf8, count: 8 })
        );
        assert_eq!(call(g, [0xcf8, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument), "empty");
        assert_eq!(call(g, [0x1_0000, 1, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(g, [0xffff, 2, 0, 0, 0, 0]), Err(Error::InvalidArgument), "wraps");
        assert!(call(g, [0, 1 << 16, 0, 0, 0, 0]).is_ok(), "every port");
        // A count that would overflow the sum is refused, not added.
        assert_eq!(call(g, [1, u64::MAX, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(g, [0xffff, u64::MAX - 0xfffe, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        let m = Sys::MmioMap as u64;
        assert_eq!(
            call(m, [0xfebf_0000, 100, 0, 0, 0, 0]),
            Ok(Syscall::MmioMap { phys: 0xfebf_0000, len: 4096 })
        );
        assert_eq!(call(m, [0xfebf_0010, 100, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(m, [0xfebf_0000, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(m, [0, MMIO_MAP_MAX as u64 + 1, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(m, [PHYS_ADDRESS_END, 4096, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(m, [!4095u64, 4096, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        let d = Sys::DmaAlloc as u64;
        assert_eq!(call(d, [1, 0, 0, 0, 0, 0]), Ok(Syscall::DmaAlloc { len: 4096 }));
        assert_eq!(call(d, [0, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(d, [DMA_ALLOC_MAX as u64 + 1, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        let c = Sys::DeviceClaim as u64;
        assert_eq!(call(c, [0, 3, 0, 0, 0, 0]), Ok(Syscall::DeviceClaim { bdf: 3 << 3 }));
        assert_eq!(call(c, [1, 2, 3, 0, 0, 0]), Ok(Syscall::DeviceClaim { bdf: 0x113 }));
        assert_eq!(call(c, [256, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(c, [0, 32, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(c, [0, 0, 8, 0, 0, 0]), Err(Error::InvalidArgument));
        let p = Sys::DmaPin as u64;
        assert_eq!(
            call(p, [0x1_0200, 0x1000, 0, 0, 0, 0]),
            Ok(Syscall::DmaPin { first_frame: 0x1_0000, frames: 2 }),
            "every frame the range touches"
        );
        assert_eq!(call(p, [0x1_0000, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(p, [0, DMA_PIN_MAX as u64 + 1, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(
            call(p, [PHYS_ADDRESS_END - 4096, 8192, 0, 0, 0, 0]),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            call(Sys::DmaUnpin as u64, [0x2000, 1, 0, 0, 0, 0]),
            Ok(Syscall::DmaUnpin { first_frame: 0x2000, frames: 1 })
        );
    }

    #[test]
    fn poll_set_size_is_bounded() {
        let p = Sys::Poll as u64;
        assert_eq!(call(p, [0x1000, 0, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(p, [0x1000, POLL_SET_MAX + 1, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(p, [0x1004, 1, 0, 0, 0, 0]), Err(Error::BadAddress));
        assert!(matches!(
            call(p, [0x1000, 3, u64::MAX, 0, 0, 0]),
            Ok(Syscall::Ipc(IpcCall::Poll { timeout: Timeout::Never, .. }))
        ));
        // One end in a register: any handle value decodes (the IPC core
        // judges it), as does any timeout.
        assert_eq!(
            call(Sys::PollOne as u64, [7, 0, 0, 0, 0, 0]),
            Ok(Syscall::Ipc(IpcCall::PollOne { handle: 7, timeout: Timeout::Now }))
        );
    }

    #[test]
    fn thread_create_needs_user_entry_and_aligned_stack() {
        let t = Sys::ThreadCreate as u64;
        assert_eq!(call(t, [0, 0x2000, 0, 0, 0, 0]), Err(Error::BadAddress));
        assert_eq!(call(t, [0x1000, 0x2008, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(t, [0x1000, 0xffff_8000_0000_0000, 0, 0, 0, 0]), Err(Error::BadAddress));
        assert_eq!(call(t, [0x1000, 0, 0, 0, 0, 0]), Err(Error::BadAddress));
        assert!(call(t, [0x1000, 0x2000, 7, 0, 0, 0]).is_ok());
    }

    #[test]
    fn structured_outputs_must_be_aligned() {
        assert_eq!(call(Sys::KernelStats as u64, [0x1001, 0, 0, 0, 0, 0]), Err(Error::BadAddress));
        assert_eq!(call(Sys::Spawn as u64, [0x1004, 0, 0, 0, 0, 0]), Err(Error::BadAddress));
        assert_eq!(
            call(Sys::ConnectionInfo as u64, [1, 0x1003, 0, 0, 0, 0]),
            Err(Error::BadAddress)
        );
    }

    #[test]
    fn permission_uid_and_flag_are_checked() {
        let s = Sys::SetConnectPermission as u64;
        assert_eq!(call(s, [65536, 1, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(call(s, [5, 2, 0, 0, 0, 0]), Err(Error::InvalidArgument));
        assert_eq!(
            call(s, [5, 0, 0, 0, 0, 0]),
            Ok(Syscall::Ipc(IpcCall::SetConnectPermission { uid: 5, allow: false }))
        );
    }

    #[test]
    fn encode_zeroes_results_on_error() {
        assert_eq!(encode(Ok([1, 2, 3, 4])), [0, 1, 2, 3, 4]);
        assert_eq!(encode(Err(Error::BadHandle)), [Error::BadHandle.code(), 0, 0, 0, 0]);
    }

    #[test]
    fn wide_calls_are_known_and_zero_all_six_on_error() {
        assert!(returns_wide(Sys::Receive as u64));
        assert!(returns_wide(Sys::SendReceive as u64));
        assert!(!returns_wide(Sys::Send as u64));
        assert!(!returns_wide(Sys::DebugPrint as u64));
        assert!(!returns_wide(u64::MAX));
        assert_eq!(encode_wide(Err(Error::TimedOut)), [Error::TimedOut.code(), 0, 0, 0, 0, 0, 0]);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(n in 0u64..64, args in proptest::array::uniform6(proptest::num::u64::ANY)) {
            let _ = decode(&RawCall { number: n, args });
        }
    }
}
