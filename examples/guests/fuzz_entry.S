/* fuzz_entry.S - the entry stub of the fuzz target (fuzz_target.c), 64-bit.
 * Sets a stack, says "ready" on port 0x500 (the host takes its start
 * snapshot there, writes an input into input_buf and its length into RSI),
 * calls fuzz_one(input_buf, len) and reports its result on port 0x501. */
        .text
        .globl _start
_start:
        lea     stack_top(%rip), %rsp
        xor     %esi, %esi
        mov     $0x500, %dx
        out     %al, %dx                /* ready: snapshot point */
        lea     input_buf(%rip), %rdi
        call    fuzz_one
        mov     $0x501, %dx
        out     %eax, %dx               /* done: parse result */
1:      hlt
        jmp     1b

        .bss
        .balign 16
        .space  16384
stack_top:
        .section .note.GNU-stack,"",@progbits
