/* pctest_pvh.S - the PVH entry of pctest.c: the Xen ELF note that makes
 * QEMU (and moonvisor run) boot an ELF kernel through PVH, and the 32-bit
 * entry it names (EBX = struct hvm_start_info).  Linked by pctest_pvh.ld. */
        .section .note.Xen, "a", @note
        .align 4
        .long 4                           /* namesz */
        .long 4                           /* descsz */
        .long 18                          /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long pvh_start

        .text
        .globl _start, pvh_start
_start:
pvh_start:
        cli
        lgdt gdt_desc
        ljmp $0x08, $1f
1:      mov $0x10, %cx
        mov %cx, %ds
        mov %cx, %es
        mov %cx, %fs
        mov %cx, %gs
        mov %cx, %ss
        mov $stack_top, %esp
        push $1                           /* protocol: PVH */
        push %ebx
        push $0x336ec578
        call kmain
2:      cli
        hlt
        jmp 2b

        .data
        .align 8
gdt:    .quad 0
        .quad 0x00cf9a000000ffff
        .quad 0x00cf92000000ffff
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt

        .bss
        .align 16
        .space 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
