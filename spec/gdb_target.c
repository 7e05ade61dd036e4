/*
 * gdb_target.c - the guest of spec/gdb_spec.lua (and the README's gdb
 * transcript): 64-bit long mode, freestanding, linked at 1 MiB with
 * examples/guests/kernel.ld.  main() calls tick(1..3), writes 'A' + counter
 * ("G") to COM1 and then spins incrementing counter (for Ctrl-C).
 */
volatile unsigned long counter;
unsigned long answer = 42;
unsigned char stack[4096];

static void outb(unsigned short port, unsigned char v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

__attribute__((noinline)) void tick(unsigned long i) { counter += i; }

int main(void) {
  for (unsigned long i = 1; i <= 3; i++) tick(i);
  outb(0x3f8, (unsigned char)('A' + counter));
  for (;;) counter++;
}

__asm__(".globl _start\n_start:\n"
        "  lea stack+4096(%rip), %rsp\n"
        "  call main\n"
        "1: hlt\n  jmp 1b\n");
