/*
 * long.c - the guest of examples/long.lua: 64-bit long mode, freestanding
 * C.  main(buf, len) gets a buffer the host wrote into guest memory (RDI,
 * RSI), computes its CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320,
 * the zlib one) with a table built at run time, and hands the result to the
 * host on port 0x500 (a 32-bit OUT).
 */
#include "guest.h"

#define RESULT_PORT 0x500

static unsigned int table[256];

static unsigned int crc32(const unsigned char *p, unsigned long len) {
  for (unsigned int i = 0; i < 256; i++) {
    unsigned int c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  unsigned int crc = 0xffffffffu;
  while (len--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

int main(const unsigned char *buf, unsigned long len) {
  outl(RESULT_PORT, crc32(buf, len));
  return 0;
}
