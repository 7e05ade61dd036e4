/*
 * fuzz_target.c - the example fuzz target (examples/fuzz_parser.lua):
 * a parser for a small length-prefixed record format, with a planted bug.
 * Freestanding, 64-bit, linked at 1 MiB by kernel.ld with fuzz_entry.S.
 *
 * Format (all integers little-endian):
 *   header  "MVFZ" version(u8, must be 1) count(u8)
 *   record  type(u8) len(u8) payload[len]       repeated count times
 * Record types: 1 text (bytes are summed), 2 numbers (u16 each, summed),
 * 7 config: len >= 8, key u16 at +0 must be 0x1337, the payload's bytes
 * must add up to 0 mod 16 (a "checksum"), then the u8 at +2 indexes
 * `slots`, whose bounds check is off by a lot: an index >= 0x80 reaches
 * slot_base + index * 1 MiB, far outside RAM, and the write there is the bug
 * (a mem exit at an unmapped address on moonvisor).
 * fuzz_one returns 0 for a well-formed input, a small error code otherwise.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned long u64;

unsigned char input_buf[4096];
static u64 slots[16];
static u64 totals[8];

#define MAX_INDEX 0x80   /* should have been 16 */

static int config(const u8 *p, unsigned len) {
  if (len < 8) return 10;
  if (p[0] != 0x37) return 11;
  if (p[1] != 0x13) return 12;
  unsigned sum = 0;
  for (unsigned i = 0; i < len; i++) sum += p[i];
  if ((sum & 0x0f) != 0) return 13;
  unsigned idx = p[2];
  if (idx < 16) {
    slots[idx] = p[3] | (u64)p[4] << 8;
    return 0;
  }
  if (idx < MAX_INDEX) return 14;
  /* the planted bug: slot index used as a 1 MiB stride into "extended slots" */
  volatile u64 *ext = (volatile u64 *)((u64)slots + (u64)idx * 0x100000);
  *ext = p[3];
  return 0;
}

int fuzz_one(const u8 *buf, u64 len) {
  if (len < 6 || len > sizeof input_buf) return 1;
  if (buf[0] != 'M') return 2;
  if (buf[1] != 'V') return 2;
  if (buf[2] != 'F') return 2;
  if (buf[3] != 'Z') return 2;
  if (buf[4] != 1) return 3;
  unsigned count = buf[5];
  u64 at = 6;
  for (unsigned r = 0; r < count; r++) {
    if (at + 2 > len) return 4;
    unsigned type = buf[at], rlen = buf[at + 1];
    const u8 *p = buf + at + 2;
    if (at + 2 + rlen > len) return 5;
    int err = 0;
    switch (type) {
    case 1:
      for (unsigned i = 0; i < rlen; i++) totals[1] += p[i];
      break;
    case 2:
      if (rlen & 1) return 6;
      for (unsigned i = 0; i + 1 < rlen; i += 2) totals[2] += p[i] | (u16)p[i + 1] << 8;
      break;
    case 7:
      err = config(p, rlen);
      break;
    default:
      return 7;
    }
    if (err) return err;
    at += 2 + rlen;
  }
  return 0;
}
