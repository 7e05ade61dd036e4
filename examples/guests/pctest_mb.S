/* pctest_mb.S - the Multiboot v1 entry of pctest.c, linked the ordinary
 * way (ld -m elf_i386 -Ttext ADDR, no linker script: the ELF headers land in
 * a loadable segment one page below ADDR).  Loads its own GDT, sets a stack
 * and calls kmain(eax, ebx, 0). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003               /* page-aligned modules, memory info */

        .text
        .globl _start
        .align 4
mb_header:
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
_start:
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
        push $0                           /* protocol: Multiboot */
        push %ebx
        push %eax
        call kmain
2:      cli
        hlt
        jmp 2b

        .data
        .align 8
gdt:    .quad 0
        .quad 0x00cf9a000000ffff          /* 0x08: code, 32-bit, 4 GiB */
        .quad 0x00cf92000000ffff          /* 0x10: data, 4 GiB */
gdt_desc:
        .word gdt_desc - gdt - 1
        .long gdt

        .bss
        .align 16
        .space 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
