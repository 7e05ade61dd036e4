/* start.S - entry of the C guests (see guest.ld): a stack, then
 * main(arg0, arg1) with the host's RDI/RSI (64-bit) or EDI/ESI (32-bit)
 * as its arguments, then halt for good. */
        .section .text.start, "ax"
        .globl _start
_start:
#ifdef __x86_64__
        lea stack_top(%rip), %rsp
        call main
#else
        mov $stack_top, %esp
        push %esi
        push %edi
        call main
#endif
1:      cli
        hlt
        jmp 1b
        .section .note.GNU-stack, "", @progbits
