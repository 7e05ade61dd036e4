/* fuzz_entry.S - the entry stub of the fuzz target (fuzz_target.c), 64-bit
 * code at CPL3 in moonvisor's mode = "user" (the host sets RSP to stack_top
 * through g:vcpu's `stack`).  Nothing privileged: every exchange with the
 * host is a system call, which comes back to it as a "syscall" exit.
 * Says "ready" with system call 1 (the host takes its start snapshot there,
 * writes an input into input_buf and its length into RSI), calls
 * fuzz_one(input_buf, len) and ends with system call 60 ("exit") with the
 * parse result in RDI. */
#define SYS_READY 1
#define SYS_EXIT 60
        .text
        .globl _start
_start:
        xor     %esi, %esi
        mov     $SYS_READY, %eax
        syscall                         /* ready: snapshot point */
        lea     input_buf(%rip), %rdi
        call    fuzz_one
        mov     %rax, %rdi
1:      mov     $SYS_EXIT, %eax
        syscall                         /* done: parse result in rdi */
        jmp     1b

        .bss
        .balign 16
        .space  16384
        .globl  stack_top
stack_top:
        .section .note.GNU-stack,"",@progbits
