/* bzkernel_head.S - entry points of the protocol test kernel, where the boot
 * protocol puts them: startup_32 at the load address (32-bit boot protocol),
 * startup_64 at load address + 0x200 (64-bit boot protocol).  Each records
 * the machine state the loader handed over (segment selectors, RFLAGS, CR0,
 * the boot_params pointer in ESI/RSI, where it runs) in entry_state, clears
 * .bss, sets up a stack (the protocol promises none) and calls the checks:
 *   64-bit: kmain(boot_params, &entry_state), bzkernel.c built with -m64;
 *   32-bit: the same bzkernel.c built with -m32 (bzkernel32.ld), included
 *           below at KERNEL32 (its kmain is first), called with both
 *           arguments on the stack.  The 32-bit path stays in protected mode:
 *           on the soft backend a 32-bit engine's CPU has no long mode to
 *           switch to (EFER.LME does not stick), so a real kernel's own
 *           switch could not be imitated there.
 * Built into build/guests/bzImage by the Makefile with bzkernel.ld. */
#define KERNEL32 0x120000

/* struct entry_state in bzkernel.c */
#define ES_RSI 0
#define ES_CR0 8
#define ES_RFLAGS 16
#define ES_WHERE 24
#define ES_CS 48
#define ES_DS 50
#define ES_ES 52
#define ES_SS 54
#define ES_BITS 56

        .section .text.head, "ax"
        .code32
        .globl startup_32
startup_32:
        cli
        cld
        movl %esi, entry_state + ES_RSI
        movw %cs, entry_state + ES_CS
        movw %ds, entry_state + ES_DS
        movw %es, entry_state + ES_ES
        movw %ss, entry_state + ES_SS
        movl %cr0, %eax
        movl %eax, entry_state + ES_CR0
        movl $stack_top, %esp
        pushfl
        popl entry_state + ES_RFLAGS
        movl $32, entry_state + ES_BITS
        call 1f                         /* where we run, against where we are linked */
1:      popl %eax
        subl $(1b - startup_64), %eax
        movl %eax, entry_state + ES_WHERE

        movl $__bss_start, %edi         /* clear .bss */
        movl $_end, %ecx
        subl %edi, %ecx
        xorl %eax, %eax
        rep stosb

        pushl $entry_state
        pushl entry_state + ES_RSI
        movl $KERNEL32, %eax
        call *%eax
2:      cli
        hlt
        jmp 2b

        .code64
        .org 0x200                      /* load address + 0x200 */
        .globl startup_64
startup_64:
        cli
        cld
        movq %rsi, entry_state + ES_RSI(%rip)
        movw %cs, entry_state + ES_CS(%rip)
        movw %ds, entry_state + ES_DS(%rip)
        movw %es, entry_state + ES_ES(%rip)
        movw %ss, entry_state + ES_SS(%rip)
        movq %cr0, %rax
        movq %rax, entry_state + ES_CR0(%rip)
        leaq stack_top(%rip), %rsp
        pushfq
        popq entry_state + ES_RFLAGS(%rip)
        movl $64, entry_state + ES_BITS(%rip)
        leaq startup_64(%rip), %rax
        movq %rax, entry_state + ES_WHERE(%rip)

        leaq __bss_start(%rip), %rdi    /* clear .bss */
        leaq _end(%rip), %rcx
        subq %rdi, %rcx
        xorl %eax, %eax
        rep stosb

        movq entry_state + ES_RSI(%rip), %rdi
        leaq entry_state(%rip), %rsi
        call kmain
3:      cli
        hlt
        jmp 3b

        .section .data
        .balign 8
        .globl entry_state
entry_state:
        .quad 0, 0, 0, 0                /* rsi, cr0, rflags, where */
        .quad startup_64                /* linked: startup_64's link address */
        .quad image_size                /* size: the whole image with .bss (bzkernel.ld) */
        .word 0, 0, 0, 0                /* cs, ds, es, ss */
        .long 0, 0                      /* bits, pad */

        .section .kernel32, "ax"
        .incbin BZKERNEL32              /* bzkernel.c, -m32, linked at KERNEL32 */

        .section .bss
        .balign 4096
        .skip 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
