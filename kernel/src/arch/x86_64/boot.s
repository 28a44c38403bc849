/* PVH entry: QEMU's `-kernel` finds `pvh_start32` through the Xen ELF note
 * and jumps to it in 32-bit protected mode, paging off, with %ebx holding
 * the physical address of the hvm_start_info block.
 *
 * This code builds early page tables (the first 4 GiB identity-mapped, the
 * same 4 GiB at the direct-map base, the first 1 GiB again at the kernel's
 * -2 GiB link address), turns on SSE (the prebuilt `core` uses it), long
 * mode and NX, zeroes .bss and calls `kernel_entry(start_info_phys)`.
 * These tables are writable and executable everywhere: they live only
 * until `kmap::install` switches to the final, W^X kernel half (which
 * checks that CR0.WP and EFER.NXE, set here, are on). */

.section .note.Xen, "a"
.p2align 2
.long 4                 /* name size: "Xen\0" */
.long 4                 /* descriptor size */
.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
.asciz "Xen"
.long pvh_start32

.section .boot.text, "ax"
.code32
.global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx

    /* PML4[0] and PML4[256] -> low PDPT; PML4[511] -> high PDPT. */
    lea eax, [boot_pdpt_low + 3]
    mov [boot_pml4], eax
    mov [boot_pml4 + 256 * 8], eax
    lea eax, [boot_pdpt_high + 3]
    mov [boot_pml4 + 511 * 8], eax

    /* Low PDPT[i] -> PD[i] for the first 4 GiB. */
    xor ecx, ecx
1:  mov eax, ecx
    shl eax, 12
    lea eax, [eax + boot_pd + 3]
    mov [boot_pdpt_low + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jb 1b

    /* High PDPT[510] -> PD[0]: 0xffffffff80000000 maps physical 0. */
    lea eax, [boot_pd + 3]
    mov [boot_pdpt_high + 510 * 8], eax

    /* 2048 PD entries of 2 MiB: present, writable, huge. */
    xor ecx, ecx
2:  mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jb 2b

    /* CR4: PAE, OSFXSR, OSXMMEXCPT. */
    mov eax, cr4
    or eax, 0x620
    mov cr4, eax

    lea eax, [boot_pml4]
    mov cr3, eax

    /* EFER: SCE (syscall), LME (long mode), NXE (no-execute). */
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x901
    wrmsr

    /* CR0: PE, MP, NE, WP, PG set; EM clear (x87/SSE usable). */
    mov eax, cr0
    and eax, 0xFFFFFFFB
    or eax, 0x80010023
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    push 0x08
    lea eax, [long_mode_entry]
    push eax
    retf

.code64
long_mode_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax

    /* Zero .bss (QEMU's loader does too, but do not depend on it). */
    movabs rdi, offset __bss_start
    movabs rcx, offset __bss_end
    sub rcx, rdi
    xor eax, eax
    rep stosb

    movabs rax, offset boot_stack_top
    mov rsp, rax
    xor ebp, ebp
    mov edi, esi
    movabs rax, offset kernel_entry
    call rax
3:  hlt
    jmp 3b

.section .boot.data, "aw"
.p2align 12
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096 * 4

.p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 64-bit code */
    .quad 0x00cf92000000ffff    /* data */
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

/* The boot CPU's kernel stack: system calls and the scheduler run on it. */
.section .bss.boot_stack, "aw", @nobits
.p2align 12
.global boot_stack_bottom
boot_stack_bottom:
    .skip 65536
.global boot_stack_top
boot_stack_top:
