//! `fault KIND`: commits one kind of CPU fault, which must kill this task
//! and nothing else.
#![no_std]
#![no_main]

use alux_rt::{println, Start};
use core::arch::asm;

fn main(start: &Start) -> u64 {
    let kind = start.arg_words().next().unwrap_or("");
    println!("fault: committing {}", kind);
    // SAFETY: none of this is safe on purpose: each arm makes the CPU raise
    // an exception, which the kernel answers by killing this task.
    unsafe {
        match kind {
            "page" => {
                core::ptr::read_volatile(0xdead_0000 as *const u64);
            }
            "kernel-write" => core::ptr::write_volatile(0xffff_8000_0010_0000 as *mut u64, 1),
            "non-canonical" => {
                core::ptr::read_volatile(0x8000_0000_0000_0000u64 as *const u64);
            }
            "divide" => {
                asm!("xor edx, edx", "xor eax, eax", "xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _)
            }
            "invalid-opcode" => asm!("ud2"),
            "privileged" => asm!("hlt"),
            "breakpoint" => asm!("int3"),
            // DF set when the kernel is entered by an exception: the kernel
            // must clear it before running any code (rep-string copies).
            "direction-flag" => asm!("std", "ud2"),
            // DF set across many timer interrupts, then a clean exit.
            "direction-flag-spin" => {
                asm!("std");
                for i in 0..3_000_000u64 {
                    core::hint::black_box(i);
                }
                asm!("cld");
                println!("fault: ran with DF set across preemptions");
                return 0;
            }
            // With UMIP these reveal nothing and fault; without it they
            // would give away kernel addresses (GDT, IDT) and CR0 bits.
            "sgdt" => {
                let mut gdtr = [0u8; 10];
                asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack));
                println!("fault: sgdt read {:x?}", gdtr);
            }
            "sidt" => {
                let mut idtr = [0u8; 10];
                asm!("sidt [{}]", in(reg) idtr.as_mut_ptr(), options(nostack));
                println!("fault: sidt read {:x?}", idtr);
            }
            "sldt" => {
                let v: u64;
                asm!("sldt {}", out(reg) v, options(nomem, nostack));
                println!("fault: sldt read {:#x}", v);
            }
            "str" => {
                let v: u64;
                asm!("str {}", out(reg) v, options(nomem, nostack));
                println!("fault: str read {:#x}", v);
            }
            "smsw" => {
                let v: u64;
                asm!("smsw {}", out(reg) v, options(nomem, nostack));
                println!("fault: smsw read {:#x}", v);
            }
            // Index 0 of the LDT, RPL 3: the LDT is null, so this faults.
            "ldt-selector" => asm!("mov ds, {0:x}", in(reg) 0x7u64, options(nostack)),
            "exec-stack" => {
                let code = [0xc3u8; 16];
                let f: extern "C" fn() = core::mem::transmute(code.as_ptr());
                f();
            }
            _ => return 2,
        }
    }
    println!("fault: {} did not fault", kind);
    1
}
alux_rt::entry!(main);
