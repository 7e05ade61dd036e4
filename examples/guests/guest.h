/*
 * guest.h - what the freestanding C guests of the examples share
 * (protected.c, long.c, mmio.c, hypercall.c, sandbox.c): port IO, a
 * polling 16550 driver for COM1 (served by moonvisor.dev.uart on the host),
 * and number printing.  No libc, no libgcc: 32-bit builds (-m32) must not
 * divide 64-bit numbers, so the printers use unsigned long (the native width).
 */
#ifndef GUEST_H
#define GUEST_H

#define COM1 0x3f8

static inline void outb(unsigned short port, unsigned char v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(unsigned short port, unsigned int v) {
  __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline unsigned char inb(unsigned short port) {
  unsigned char v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline void halt(void) { __asm__ volatile("hlt" ::: "memory"); }

/* 8N1 at 115200 baud (divisor 1), FIFOs on: what a real driver does first. */
static __attribute__((unused)) void serial_init(void) {
  outb(COM1 + 1, 0x00);   /* IER: no interrupts */
  outb(COM1 + 3, 0x80);   /* LCR: DLAB, to reach the divisor latch */
  outb(COM1 + 0, 0x01);   /* DLL */
  outb(COM1 + 1, 0x00);   /* DLM */
  outb(COM1 + 3, 0x03);   /* LCR: 8 data bits, no parity, 1 stop bit */
  outb(COM1 + 2, 0xc7);   /* FCR: enable and clear the FIFOs */
  outb(COM1 + 4, 0x03);   /* MCR: DTR, RTS */
}

static __attribute__((unused)) void putc(char c) {
  while (!(inb(COM1 + 5) & 0x20)) { }   /* LSR.THRE: room in the transmitter */
  outb(COM1, (unsigned char)c);
}

static __attribute__((unused)) void puts(const char *s) { while (*s) putc(*s++); }

static __attribute__((unused)) void putu(unsigned long v) {
  char buf[24];
  int i = 0;
  do { buf[i++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (i) putc(buf[--i]);
}

static __attribute__((unused)) void puthex(unsigned long v, int digits) {
  puts("0x");
  for (int i = digits - 1; i >= 0; i--) putc("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
}

#endif
