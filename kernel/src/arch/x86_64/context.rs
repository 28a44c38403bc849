//! Saved user-mode CPU state: what the entry stubs store on every kernel
//! entry and restore on every return to user mode.
//!
//! The layouts here are shared with the assembly in `entry.rs`; any change
//! must be mirrored there (the offsets are checked at compile time).

/// General registers and the interrupt-return frame of a user thread, in
/// the order the entry stubs push them (lowest address first).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
#[allow(missing_docs)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// What an interrupt or exception stub leaves on its stack: the general
/// registers, the vector and error code, and the CPU's frame.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// The user registers this frame saved.
    pub fn regs(&self) -> Regs {
        Regs {
            r15: self.r15,
            r14: self.r14,
            r13: self.r13,
            r12: self.r12,
            r11: self.r11,
            r10: self.r10,
            r9: self.r9,
            r8: self.r8,
            rbp: self.rbp,
            rdi: self.rdi,
            rsi: self.rsi,
            rdx: self.rdx,
            rcx: self.rcx,
            rbx: self.rbx,
            rax: self.rax,
            rip: self.rip,
            cs: self.cs,
            rflags: self.rflags,
            rsp: self.rsp,
            ss: self.ss,
        }
    }
}

/// The `fxsave` image of the x87/SSE state.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct FpuArea(pub [u8; 512]);

impl FpuArea {
    /// The state a new thread starts with: x87 control word 0x37f (all
    /// exceptions masked), MXCSR 0x1f80, every register zero. Nothing of any
    /// other thread or of the kernel is in it.
    pub const fn initial() -> Self {
        let mut a = [0u8; 512];
        a[0] = 0x7f;
        a[1] = 0x03;
        a[24] = 0x80;
        a[25] = 0x1f;
        FpuArea(a)
    }
}

/// A thread's complete saved user state.
#[repr(C, align(64))]
pub struct Context {
    /// General registers and return frame.
    pub regs: Regs,
    /// x87/SSE registers.
    pub fpu: FpuArea,
}

/// User code segment selector (GDT entry 4, RPL 3).
pub const USER_CS: u64 = 0x23;
/// User stack segment selector (GDT entry 3, RPL 3).
pub const USER_SS: u64 = 0x1b;
/// RFLAGS of a new user thread: interrupts on, reserved bit 1.
pub const USER_RFLAGS: u64 = 0x202;

impl Context {
    /// A context that starts user code at `rip` with stack `rsp`.
    pub fn new_user(rip: u64, rsp: u64) -> Self {
        Context {
            regs: Regs {
                rip,
                rsp,
                cs: USER_CS,
                ss: USER_SS,
                rflags: USER_RFLAGS,
                ..Regs::default()
            },
            fpu: FpuArea::initial(),
        }
    }
}

const _: () = {
    assert!(core::mem::size_of::<Regs>() == 160);
    assert!(core::mem::offset_of!(Context, fpu) == 160);
    assert!(core::mem::size_of::<TrapFrame>() == 176);
};
