/*
 * sandbox.c - the guest of examples/sandbox.lua: one freestanding 64-bit C
 * function, sandbox_call(op, arg), that the host calls again and again.
 * It runs at CPL3 in moonvisor's "user" mode.  The host enters at
 * sandbox_entry with RDI = op and RSI = arg; the result leaves through
 * system call 60 ("exit") with the value in RDI.  Some ops misbehave on
 * purpose.
 */
long calls;   /* how many calls this guest has seen: the host's snapshot resets it */

enum { OP_COLLATZ = 0, OP_NULL = 1, OP_UD2 = 2, OP_WILD = 3, OP_CALLS = 4 };

long sandbox_call(long op, long arg) {
  calls++;
  switch (op) {
  case OP_COLLATZ: {                   /* steps until arg reaches 1 */
    long steps = 0;
    unsigned long n = (unsigned long)arg;
    while (n > 1) { n = (n & 1) ? 3 * n + 1 : n / 2; steps++; }
    return steps;
  }
  case OP_NULL:                        /* a NULL-pointer read */
    return *(volatile int *)(unsigned long)arg;
  case OP_UD2:                         /* an invalid opcode */
    __builtin_trap();
  case OP_WILD:                        /* a write far outside the page tables */
    *(volatile long *)0x123400000000ul = arg;
    return 0;
  case OP_CALLS:
    return calls;
  }
  return -1;
}

__asm__(".globl sandbox_entry\n"
        "sandbox_entry:\n"
        "  lea stack_top(%rip), %rsp\n"
        "  call sandbox_call\n"
        "  mov %rax, %rdi\n"
        "1: mov $60, %eax\n"                /* exit(result): the host sees a syscall exit */
        "  syscall\n"
        "  jmp 1b\n");

int main(void) { return 0; }   /* start.S wants one; the host never runs it */
