use core::arch::asm;

/// Copies `n` bytes forward.
///
/// # Safety
/// `dest` and `src` must be valid for `n` bytes and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid for `n` bytes;
    // `rep movsq` copies the whole words and `rep movsb` the tail, forward
    // (DF is clear by the ABI). Words first keeps emulated instruction
    // counts low: every repetition counts as one instruction under QEMU.
    unsafe {
        asm!("rep movsq", "mov ecx, {tail:e}", "rep movsb",
             tail = in(reg) (n % 8) as u32,
             inout("rcx") n / 8 => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dest
}

/// Copies `n` bytes between possibly overlapping ranges.
///
/// # Safety
/// `dest` and `src` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // No harmful overlap: `dest` is below `src` or past its end.
        // SAFETY: as for `memcpy`; a forward copy is correct here.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    } else {
        // `dest` overlaps the tail of `src`: copy backward, last byte first.
        // SAFETY: the ranges are valid for `n` bytes; DF is set only for
        // this instruction and cleared again, as the ABI requires.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _,
                 inout("rdi") dest.wrapping_add(n).wrapping_sub(1) => _,
                 inout("rsi") src.wrapping_add(n).wrapping_sub(1) => _,
                 options(nostack));
        }
    }
    dest
}

/// Fills `n` bytes with `c`.
///
/// # Safety
/// `dest` must be valid for writes of `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    let pattern = (c as u8 as u64) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees `dest` is writable for `n` bytes; whole
    // words are stored first, then the tail bytes (the low byte of rax is
    // the fill byte either way).
    unsafe {
        asm!("rep stosq", "mov ecx, {tail:e}", "rep stosb",
             tail = in(reg) (n % 8) as u32,
             inout("rcx") n / 8 => _, inout("rdi") dest => _, in("rax") pattern,
             options(nostack, preserves_flags));
    }
    dest
}

/// Compares `n` bytes; the sign of the result orders the first difference.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`, and the caller guarantees `n` readable bytes.
        // Volatile reads keep the compiler from recognising this loop as a
        // memcmp idiom and calling ourselves.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// Tests `n` bytes for equality (0 when equal).
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}

/// The prebuilt `core` refers to this symbol; with `panic = "abort"` no
/// unwinding ever happens, so it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// The prebuilt `alloc` refers to this unwinder entry point from landing
/// pads that `panic = "abort"` never reaches.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    loop {
        core::hint::spin_loop();
    }
}
