//! Saved user-mode CPU state: the general registers the entry stubs store on
//! every kernel entry and restore on every return to user mode, and the
//! vector state, which is saved only when another thread needs the
//! registers (see `entry.rs`, "Vector state").
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

impl Regs {
    /// Writes a finished call's result registers: `rax`, then `rdi, rsi,
    /// rdx, r10` from `four`, and `r8, r9` from `wide` if given (the calls
    /// that return six registers). Plain 64-bit stores from general
    /// registers, never through a vector register: the system call fast
    /// paths write another thread's results while the caller's vector
    /// registers are still live (see `entry.rs`, "Vector state").
    #[inline(always)]
    pub fn set_results(&mut self, rax: u64, four: [u64; 4], wide: Option<[u64; 2]>) {
        let [rdi, rsi, rdx, r10] = four;
        // SAFETY: `self` is a live, exclusively borrowed `Regs`; the stores
        // stay inside it (offsets from `offset_of!`).
        unsafe {
            core::arch::asm!(
                "mov [{p} + {orax}], {rax}",
                "mov [{p} + {ordi}], {rdi}",
                "mov [{p} + {orsi}], {rsi}",
                "mov [{p} + {ordx}], {rdx}",
                "mov [{p} + {or10}], {r10}",
                p = in(reg) self as *mut Regs,
                rax = in(reg) rax, rdi = in(reg) rdi, rsi = in(reg) rsi,
                rdx = in(reg) rdx, r10 = in(reg) r10,
                orax = const core::mem::offset_of!(Regs, rax),
                ordi = const core::mem::offset_of!(Regs, rdi),
                orsi = const core::mem::offset_of!(Regs, rsi),
                ordx = const core::mem::offset_of!(Regs, rdx),
                or10 = const core::mem::offset_of!(Regs, r10),
                options(nostack, preserves_flags),
            );
        }
        if let Some([r8, r9]) = wide {
            // SAFETY: as above.
            unsafe {
                core::arch::asm!(
                    "mov [{p} + {or8}], {r8}",
                    "mov [{p} + {or9}], {r9}",
                    p = in(reg) self as *mut Regs,
                    r8 = in(reg) r8, r9 = in(reg) r9,
                    or8 = const core::mem::offset_of!(Regs, r8),
                    or9 = const core::mem::offset_of!(Regs, r9),
                    options(nostack, preserves_flags),
                );
            }
        }
    }
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

/// Bytes of [`FpuArea`]: the 512-byte legacy (`fxsave`) region and the
/// 64-byte XSAVE header. The kernel enables only the x87 and SSE
/// components in XCR0, so nothing follows the header.
pub const FPU_AREA_SIZE: usize = 576;

/// The saved x87/SSE state: an `fxsave` image, or an XSAVE image (standard
/// format) when the CPU has XSAVE. 64-byte aligned, as `xsave` needs.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct FpuArea(pub [u8; FPU_AREA_SIZE]);

impl FpuArea {
    /// The state a new thread starts with: x87 control word 0x37f (all
    /// exceptions masked), MXCSR 0x1f80, every register zero, and an XSAVE
    /// header of zeros (every component in its initial state, which
    /// `xrstor` loads as zeros). Nothing of any other thread or of the
    /// kernel is in it.
    pub const fn initial() -> Self {
        let mut a = [0u8; FPU_AREA_SIZE];
        a[0] = 0x7f;
        a[1] = 0x03;
        a[24] = 0x80;
        a[25] = 0x1f;
        FpuArea(a)
    }
}

/// The data-segment selectors DS, ES, FS and GS of a user thread, packed
/// 16 bits each in that order from the low end (as `mov m16, sreg` stores
/// them at offsets 0, 2, 4 and 6), so that they compare as one word.
///
/// In 64-bit mode they select nothing useful (every base the GDT offers is
/// 0, and FS/GS bases are never set: CR4.FSGSBASE is off and no call sets
/// them), but user code may load any user selector into them and read them
/// back, so they are per-thread state: saved and restored lazily, at a
/// switch between threads (`entry::set_current_context`), never on the
/// system call path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Selectors(u64);

impl Selectors {
    /// Stores the CPU's DS, ES, FS and GS into `*dst`.
    ///
    /// # Safety
    /// `dst` must be valid for an 8-byte write.
    #[inline]
    pub unsafe fn save(dst: *mut Selectors) {
        // SAFETY: the caller guarantees `dst` is writable; reading segment
        // registers has no side effects.
        unsafe {
            core::arch::asm!(
                "mov word ptr [{0}], ds",
                "mov word ptr [{0} + 2], es",
                "mov word ptr [{0} + 4], fs",
                "mov word ptr [{0} + 6], gs",
                in(reg) dst,
                options(nostack, preserves_flags),
            )
        }
    }

    /// The selectors loaded in the CPU now.
    #[inline]
    pub fn read() -> Self {
        let mut s = Selectors(0);
        // SAFETY: `s` is a local of the right size.
        unsafe { Self::save(&mut s) };
        s
    }

    /// Loads the selectors into the CPU, GS through `swapgs` so that the
    /// kernel's GS base (the per-CPU block) stays where it is.
    ///
    /// # Safety
    /// Interrupts must be off, and every selector must be one user code
    /// could load (null, or a user segment of the GDT): they were read from
    /// the CPU while that thread ran, and the GDT never changes.
    #[inline]
    pub unsafe fn load(self) {
        let [ds, es, fs, gs] = [self.0, self.0 >> 16, self.0 >> 32, self.0 >> 48].map(|v| v as u16);
        // SAFETY: the caller guarantees valid selectors. `mov gs` sets the
        // *current* GS base from the descriptor (0); between the two
        // `swapgs` that is the user's GS base, which is 0 already, and the
        // kernel's base is parked in KERNEL_GS_BASE meanwhile. Interrupts
        // are off; an NMI there enters through the kernel-mode path, which
        // does not use GS as long as it runs no SSE: with CR0.TS set, an
        // SSE instruction would raise #NM, whose stub reads the per-CPU
        // block through GS (see `traps::trap_from_kernel`, which must stay
        // free of SSE for its NMI arm).
        unsafe {
            core::arch::asm!(
                "mov ds, {0:x}", "mov es, {1:x}", "mov fs, {2:x}",
                "swapgs", "mov gs, {3:x}", "swapgs",
                in(reg) ds, in(reg) es, in(reg) fs, in(reg) gs,
                options(nostack, preserves_flags),
            )
        }
    }
}

/// A thread's complete saved user state.
#[repr(C, align(64))]
pub struct Context {
    /// General registers and return frame.
    pub regs: Regs,
    /// x87/SSE registers, as of the last time another thread (or the
    /// kernel) needed the CPU's: while this thread owns them
    /// (`entry::fpu_owner`), the CPU holds the current values.
    pub fpu: FpuArea,
    /// DS, ES, FS and GS, as of the last switch away from this thread
    /// (while it runs, the CPU holds them).
    pub selectors: Selectors,
}

impl Drop for Context {
    fn drop(&mut self) {
        // Its selectors may still be the CPU's: they belong to nobody now.
        super::entry::forget_context(self);
    }
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
            selectors: Selectors::default(),
        }
    }
}

const _: () = {
    assert!(core::mem::size_of::<Regs>() == 160);
    assert!(core::mem::offset_of!(Context, fpu) % 64 == 0);
    assert!(core::mem::size_of::<TrapFrame>() == 176);
};
