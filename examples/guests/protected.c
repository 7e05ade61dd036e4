/*
 * protected.c - the guest of examples/protected.lua: 32-bit protected mode
 * (flat segments, paging off), freestanding C.  It drives COM1 like a
 * 16550 driver (moonvisor.dev.uart on the host answers), shows the mode it
 * runs in and does a little work, then halts.
 */
#include "guest.h"

static unsigned int primes_below(unsigned int n) {
  unsigned int count = 0;
  for (unsigned int i = 2; i < n; i++) {
    unsigned int d = 2;
    while (d * d <= i && i % d) d++;
    if (d * d > i) count++;
  }
  return count;
}

int main(void) {
  unsigned long cr0;
  unsigned short cs;
  __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  serial_init();
  puts("Hello from 32-bit protected mode!\n");
  puts("sizeof(void *) = "); putu(sizeof(void *));
  puts(", cs = "); puthex(cs, 4);
  puts(", cr0 = "); puthex(cr0, 8);
  puts(" (PE "); putu(cr0 & 1); puts(", PG "); putu(cr0 >> 31); puts(")\n");
  puts("primes below 10000: "); putu(primes_below(10000)); putc('\n');
  return 0;
}
