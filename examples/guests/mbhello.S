/* mbhello.S - a small Multiboot v1 kernel for examples/multiboot.lua
 * (ELF, linked at 1 MiB by kernel.ld).  It checks the boot magic, sets up
 * COM1 as a 16550 (8N1, FIFOs, polling LSR before each byte), prints the
 * boot loader's name, its command line and each module (its command line
 * and contents), then leaves through QEMU's isa-debug-exit port 0xf4:
 * writes 0x10 (the runner exits with status 0x10 << 1 | 1 = 33), or 0x11
 * when EAX did not hold the Multiboot magic. */
#define MB_MAGIC      0x1BADB002
#define MB_FLAGS      0x00000003          /* page-aligned modules, memory info */
#define BOOT_MAGIC    0x2BADB002
#define COM1          0x3f8
#define EXIT_PORT     0xf4

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .text
        .globl _start
_start:
        mov $stack_top, %esp
        mov %ebx, %ebp                    /* the info structure, kept in EBP */
        cmp $BOOT_MAGIC, %eax
        jne bad_magic
        call uart_init

        mov $s_hello, %esi
        call puts
        testl $(1 << 9), (%ebp)           /* flags bit 9: boot_loader_name */
        jz 1f
        mov 64(%ebp), %esi
        call puts
1:      mov $s_cmdline, %esi
        call puts
        testl $(1 << 2), (%ebp)           /* flags bit 2: cmdline */
        jz 2f
        mov 16(%ebp), %esi
        call puts
2:      mov $s_nl, %esi
        call puts

        testl $(1 << 3), (%ebp)           /* flags bit 3: mods_count, mods_addr */
        jz done
        mov 20(%ebp), %ecx                /* mods_count */
        mov 24(%ebp), %ebx                /* mods_addr: { start, end, string, reserved } */
next_module:
        test %ecx, %ecx
        jz done
        mov $s_module, %esi
        call puts
        mov 8(%ebx), %esi                 /* its command line */
        call puts
        mov $s_colon, %esi
        call puts
        mov 0(%ebx), %esi                 /* its contents, start..end */
        mov 4(%ebx), %edi
3:      cmp %edi, %esi
        jae 4f
        mov (%esi), %al
        call putc
        inc %esi
        jmp 3b
4:      add $16, %ebx
        dec %ecx
        jmp next_module

done:   mov $0x10, %al
        jmp 5f
bad_magic:
        mov $0x11, %al
5:      out %al, $EXIT_PORT
6:      cli                               /* not under the runner: stop here */
        hlt
        jmp 6b

uart_init:
        mov $COM1 + 1, %dx; mov $0x00, %al; out %al, %dx   /* IER: no interrupts */
        mov $COM1 + 3, %dx; mov $0x80, %al; out %al, %dx   /* LCR: DLAB */
        mov $COM1 + 0, %dx; mov $0x01, %al; out %al, %dx   /* DLL: 115200 baud */
        mov $COM1 + 1, %dx; mov $0x00, %al; out %al, %dx   /* DLM */
        mov $COM1 + 3, %dx; mov $0x03, %al; out %al, %dx   /* LCR: 8N1 */
        mov $COM1 + 2, %dx; mov $0xc7, %al; out %al, %dx   /* FCR: FIFOs on, cleared */
        mov $COM1 + 4, %dx; mov $0x03, %al; out %al, %dx   /* MCR: DTR, RTS */
        ret

/* putc: AL to COM1 once LSR says the transmitter has room.  Keeps ESI/EDI/ECX. */
putc:   push %edx
        push %eax
        mov $COM1 + 5, %dx
1:      in %dx, %al
        test $0x20, %al
        jz 1b
        pop %eax
        mov $COM1, %dx
        out %al, %dx
        pop %edx
        ret

/* puts: the NUL-terminated string at ESI. */
puts:   lodsb
        test %al, %al
        jz 1f
        call putc
        jmp puts
1:      ret

        .section .rodata
s_hello:   .asciz "mbhello: booted by "
s_cmdline: .asciz "\ncommand line: "
s_nl:      .asciz "\n"
s_module:  .asciz "module "
s_colon:   .asciz ": "

        .bss
        .align 16
        .space 4096
stack_top:
        .section .note.GNU-stack, "", @progbits
