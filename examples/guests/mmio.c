/*
 * mmio.c - the guest of examples/mmio_device.lua: 64-bit C driving a
 * checksum device (modelled in Lua) through memory-mapped registers at
 * 0xfeb00000 and a doorbell at 0xfeb01000.  For each message: reset the
 * device, write the bytes to its DATA registers, ring the doorbell, wait
 * (hlt: the host handles the doorbell when the VCPU leaves the guest), poll
 * STATUS until DONE, read RESULT and check it against its own Adler-32.
 * Prints on COM1; tells the host it is done with an OUT to port 0x501.
 */
#include "guest.h"

#define DEV        0xfeb00000ul
#define REG_ID     0x00   /* reads "CSUM" */
#define REG_STATUS 0x04   /* bit 0 BUSY, bit 1 DONE */
#define REG_CTRL   0x08   /* write 1: reset */
#define REG_DATA8  0x10   /* write: one byte */
#define REG_DATA32 0x14   /* write: four bytes, little-endian */
#define REG_RESULT 0x18
#define REG_COUNT  0x1c   /* bytes received since the reset */
#define DOORBELL   0xfeb01000ul
#define ST_BUSY 1
#define ST_DONE 2
#define DONE_PORT 0x501

static inline unsigned int rd(unsigned long reg) { return *(volatile unsigned int *)(DEV + reg); }
static inline void wr(unsigned long reg, unsigned int v) { *(volatile unsigned int *)(DEV + reg) = v; }
static inline void wr8(unsigned long reg, unsigned char v) { *(volatile unsigned char *)(DEV + reg) = v; }

static unsigned int adler32(const char *p, unsigned long n) {
  unsigned int a = 1, b = 0;
  while (n--) { a = (a + (unsigned char)*p++) % 65521; b = (b + a) % 65521; }
  return (b << 16) | a;
}

static unsigned long len(const char *s) { unsigned long n = 0; while (s[n]) n++; return n; }

static const char *messages[] = {
  "Wikipedia",
  "moonvisor drives a device model written in Lua",
  "",
  "The quick brown fox jumps over the lazy dog",
};

int main(void) {
  serial_init();
  unsigned int id = rd(REG_ID);
  puts("device id: ");
  for (int i = 0; i < 4; i++) putc((char)(id >> (8 * i)));
  putc('\n');
  int bad = 0;
  for (unsigned i = 0; i < sizeof messages / sizeof messages[0]; i++) {
    const char *m = messages[i];
    unsigned long n = len(m), k = 0;
    wr(REG_CTRL, 1);
    for (; k + 4 <= n; k += 4)
      wr(REG_DATA32, (unsigned char)m[k] | (unsigned char)m[k + 1] << 8 |
                     (unsigned char)m[k + 2] << 16 | (unsigned)(unsigned char)m[k + 3] << 24);
    for (; k < n; k++) wr8(REG_DATA8, (unsigned char)m[k]);
    *(volatile unsigned int *)DOORBELL = 1;
    halt();                                  /* wait for the host to take the doorbell */
    unsigned polls = 1;
    while (!(rd(REG_STATUS) & ST_DONE)) polls++;
    unsigned int sum = rd(REG_RESULT), mine = adler32(m, n);
    puts("adler32(\""); puts(m); puts("\") = "); puthex(sum, 8);
    puts(" ("); putu(rd(REG_COUNT)); puts(" bytes, "); putu(polls); puts(" status polls) ");
    puts(sum == mine ? "ok\n" : "WRONG\n");
    bad += sum != mine;
  }
  outb(DONE_PORT, (unsigned char)bad);
  return 0;
}
