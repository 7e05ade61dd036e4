/*
 * record.c - record and replay: the log format, its streamed writer and
 * reader, the recording hooks the core calls (mv__rec_*) and the replayer
 * that feeds the guest from the log and names the first divergence.
 *
 * The log (all integers little-endian; "varint" is unsigned LEB128):
 *
 *   header, 80 bytes: "MVREPLAY", u32 version (1), u32 header size (80),
 *     char backend[8] ("kvm"/"soft"), u32 VCPUs, u32 flags (bit 0: the
 *     backend counts instructions), u64 CPUID hash (kvm: the host CPUID
 *     leaves the guest's derive from; soft: 0, the same everywhere), u64
 *     layout hash (mappings), u64 memory hash, u64 register hash (every
 *     VCPU), u64 largest block payload, u32 0, u32 CRC-32 of bytes 0..75.
 *   blocks: u32 payload length, u32 checksum of the payload (block_check:
 *     a 64-bit multiply-xorshift hash folded to 32 bits), payload = whole
 *     records, each a varint length and that many bytes.  A record never
 *     spans blocks, so a reader holds one block (at most 1 MiB) at a time.
 *   a record: byte 0 = kind | 0x80 when a trap handler (or a doorbell
 *     callback) made it, then (see enc_* below):
 *     ACCESS  vcpu, type|write<<2, size, addr, rip, [data if write],
 *             outcome (1 stop, 2 handler failed), [value if read]
 *     RET     vcpu, type, addr, rip, detail0, icount  (an exit enter returned)
 *     IRQ     vcpu, vector                  (mv_vcpu_interrupt)
 *     DELIVER vcpu, vector, icount          (the backend injected it)
 *     HOSTW   gpa, len, hash, [bytes when a handler made it]
 *     REGS    vcpu, 18 varints   SREGS vcpu, fields   MSR vcpu, index, value
 *     FPU     vcpu, 345 bytes    CPUID vcpu, leaf, subleaf, eax..edx
 *     IRQLINE line, level        MAP gpa, size, flags, offset   UNMAP gpa
 *     END     exits, u64 state hash (the last record of a complete log)
 *   Exits (ACCESS and RET records) are numbered from 0 in log order: the
 *   "exit index" of reports.  Records between two exits took effect there.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "record_int.h"


static const uint32_t crc_table[256] = {
  0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f,
  0xe963a535, 0x9e6495a3, 0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
  0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91, 0x1db71064, 0x6ab020f2,
  0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
  0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9,
  0xfa0f3d63, 0x8d080df5, 0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
  0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b, 0x35b5a8fa, 0x42b2986c,
  0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
  0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423,
  0xcfba9599, 0xb8bda50f, 0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
  0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d, 0x76dc4190, 0x01db7106,
  0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
  0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d,
  0x91646c97, 0xe6635c01, 0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
  0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457, 0x65b0d9c6, 0x12b7e950,
  0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
  0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7,
  0xa4d1c46d, 0xd3d6f4fb, 0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
  0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9, 0x5005713c, 0x270241aa,
  0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
  0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81,
  0xb7bd5c3b, 0xc0ba6cad, 0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
  0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683, 0xe3630b12, 0x94643b84,
  0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
  0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb,
  0x196c3671, 0x6e6b06e7, 0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
  0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5, 0xd6d6a3e8, 0xa1d1937e,
  0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
  0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55,
  0x316e8eef, 0x4669be79, 0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
  0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f, 0xc5ba3bbe, 0xb2bd0b28,
  0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
  0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f,
  0x72076785, 0x05005713, 0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
  0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21, 0x86d3d2d4, 0xf1d4e242,
  0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
  0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69,
  0x616bffd3, 0x166ccf45, 0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
  0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db, 0xaed16a4a, 0xd9d65adc,
  0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
  0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693,
  0x54de5729, 0x23d967bf, 0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
  0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

static uint32_t crc32(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

/* A block's checksum: a 64-bit multiply-xorshift hash of the payload folded
 * to 32 bits (a byte-wise CRC-32 cost recording a fifth of its time). */
static uint32_t block_check(const unsigned char *p, size_t n) {
  uint64_t h = mv__hash_bytes(6, p, n);
  return (uint32_t)(h ^ (h >> 32));
}

/* {====================================================== encoding */

static const char *const reg_names[18] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9",
                                           "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags" };

/* Describes a record for a divergence report ("io in port 0x60 size 1 rip 0x1003 value 0x5"). */
void mv__rec_describe(const unsigned char *p, size_t n, char *out, size_t cap) {
  dec d = { p, n, 0, false };
  unsigned k = get8(&d);
  const char *by = k & H_FLAG ? " (by a handler)" : "";
  unsigned vcpu;
  switch (k & 0x7f) {
  case K_ACCESS: {
    vcpu = get8(&d);
    unsigned tw = get8(&d), size = get8(&d);
    uint64_t addr = getv(&d), rip = getv(&d);
    bool write = tw & 4;
    uint64_t data = write ? getv(&d) : 0;
    bool tail = d.i < d.n;   /* what the run did has no outcome yet */
    unsigned outcome = tail ? get8(&d) : 0;
    uint64_t value = write || !tail ? 0 : getv(&d);
    int w = snprintf(out, cap, "vcpu %u %s %s %s 0x%" PRIx64 " size %u rip 0x%" PRIx64, vcpu,
                     mv_exit_type_name((mv_exit_type)(tw & 3)), write ? "write" : "read",
                     (tw & 3) == MV_EXIT_IO ? "port" : "addr", addr, size, rip);
    if (w > 0 && (size_t)w < cap && (write || tail))
      snprintf(out + w, cap - (size_t)w, " %s 0x%" PRIx64 "%s", write ? "data" : "value", write ? data : value,
               outcome & 2 ? " (handler failed)" : outcome & 1 ? " (returned by enter)" : "");
    break;
  }
  case K_RET: {
    vcpu = get8(&d);
    unsigned type = get8(&d);
    uint64_t addr = getv(&d), rip = getv(&d), d0 = getv(&d), ic = getv(&d);
    snprintf(out, cap,
             "vcpu %u exit %s addr 0x%" PRIx64 " rip 0x%" PRIx64 " detail 0x%" PRIx64 " instructions %" PRIu64,
             vcpu, mv_exit_type_name((mv_exit_type)type), addr, rip, d0, ic);
    break;
  }
  case K_IRQ:
    vcpu = get8(&d);
    snprintf(out, cap, "vcpu %u interrupt %u queued%s", vcpu, get8(&d), by);
    break;
  case K_DELIVER: {
    vcpu = get8(&d);
    unsigned v = get8(&d);
    snprintf(out, cap, "vcpu %u interrupt %u delivered after %" PRIu64 " instructions", vcpu, v, getv(&d));
    break;
  }
  case K_HOSTW: {
    uint64_t gpa = getv(&d), len = getv(&d), h = get64(&d);
    snprintf(out, cap, "host write gpa 0x%" PRIx64 " len %" PRIu64 " hash 0x%016" PRIx64 "%s", gpa, len, h, by);
    break;
  }
  case K_REGS: {
    vcpu = get8(&d);
    int w = snprintf(out, cap, "vcpu %u write_state", vcpu);
    for (int i = 0; i < 18 && w > 0 && (size_t)w < cap; i++) {
      uint64_t v = getv(&d);
      if (i == 0 || i == 16 || i == 7) w += snprintf(out + w, cap - (size_t)w, " %s=0x%" PRIx64, reg_names[i], v);
    }
    if (w > 0 && (size_t)w < cap) snprintf(out + w, cap - (size_t)w, "%s", by);
    break;
  }
  case K_SREGS: snprintf(out, cap, "vcpu %u write_sregs%s", get8(&d), by); break;
  case K_MSR: {
    vcpu = get8(&d);
    uint64_t idx = getv(&d), v = getv(&d);
    snprintf(out, cap, "vcpu %u write_msr 0x%" PRIx64 " = 0x%" PRIx64 "%s", vcpu, idx, v, by);
    break;
  }
  case K_FPU: snprintf(out, cap, "vcpu %u write_fpu%s", get8(&d), by); break;
  case K_CPUID: {
    vcpu = get8(&d);
    uint64_t leaf = getv(&d), sub = getv(&d);
    snprintf(out, cap, "vcpu %u cpuid_set 0x%" PRIx64 "/%" PRIu64 "%s", vcpu, leaf, sub, by);
    break;
  }
  case K_IRQLINE: {
    uint64_t line = getv(&d);
    snprintf(out, cap, "irq line %" PRIu64 " level %u%s", line, get8(&d), by);
    break;
  }
  case K_MAP: {
    uint64_t gpa = getv(&d), size = getv(&d), flags = getv(&d);
    snprintf(out, cap, "map gpa 0x%" PRIx64 " size 0x%" PRIx64 " flags %" PRIu64 "%s", gpa, size, flags, by);
    break;
  }
  case K_UNMAP: snprintf(out, cap, "unmap gpa 0x%" PRIx64 "%s", getv(&d), by); break;
  case K_END: {
    uint64_t ex = getv(&d);
    snprintf(out, cap, "the end of the log after %" PRIu64 " exits (state hash 0x%016" PRIx64 ")", ex, get64(&d));
    break;
  }
  default: snprintf(out, cap, "record kind %u", k & 0x7f); break;
  }
}

/* {====================================================== writer */

void mv__rec_flush(mv_rec *r) {
  if (r->blen == 0 || !r->f) return;
  unsigned char h[8];
  uint32_t len = (uint32_t)r->blen, crc = block_check(r->blk, r->blen);
  for (int i = 0; i < 4; i++) h[i] = (unsigned char)(len >> (8 * i)), h[4 + i] = (unsigned char)(crc >> (8 * i));
  if (fwrite(h, 1, 8, r->f) != 8 || fwrite(r->blk, 1, r->blen, r->f) != r->blen) r->io_error = true;
  r->bytes += 8 + r->blen;
  r->blen = 0;
}

void mv__rec_append_data(mv_rec *r, const enc *e, const void *data, size_t more) {
  if (r->blen + e->n + more + 3 > BLOCK_CAP) mv__rec_flush(r);
  unsigned char *p = r->blk + r->blen;
  size_t n = e->n + more;
  do {   /* the record's length, a varint */
    *p = n & 0x7f;
    n >>= 7;
    *p++ |= n ? 0x80 : 0;
  } while (n);
  for (size_t i = 0; i < e->n; i++) p[i] = e->b[i];   /* a dozen bytes: no memcpy call */
  p += e->n;
  if (more) memcpy(p, data, more);
  r->blen = (size_t)(p - r->blk) + more;
  r->records++;
}


/* {====================================================== reader */

static void get_le(const unsigned char *p, int n, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  *out = v;
}

/* Reads the block at r->foff.  1: read; 0: the file ends there; < 0: bad (err filled). */
static int rd_block(mv_rec *r, const char *what, mv_err *err) {
  unsigned char h[8];
  if (fseek(r->f, (long)r->foff, SEEK_SET) != 0)
    return mv__fail(err, -EIO, "%s: %s: cannot seek to byte %" PRIu64, what, r->path, r->foff);
  size_t got = fread(h, 1, 8, r->f);
  if (got == 0) return 0;
  if (got < 8)
    return mv__fail(err, -EINVAL, "%s: %s: truncated: the block header at byte %" PRIu64 " has %zu of 8 bytes", what,
                    r->path, r->foff, got);
  uint64_t len, crc;
  get_le(h, 4, &len);
  get_le(h + 4, 4, &crc);
  if (len == 0 || len > BLOCK_MAX)
    return mv__fail(err, -EINVAL, "%s: %s: field block length at byte %" PRIu64 ": %" PRIu64 " (1..%u)", what,
                    r->path, r->foff, len, BLOCK_MAX);
  got = fread(r->blk, 1, len, r->f);
  if (got < len)
    return mv__fail(err, -EINVAL, "%s: %s: truncated: the block at byte %" PRIu64 " has %zu of %" PRIu64 " bytes",
                    what, r->path, r->foff, got, len);
  uint32_t c = block_check(r->blk, len);
  if (c != crc)
    return mv__fail(err, -EINVAL, "%s: %s: field block checksum at byte %" PRIu64 ": 0x%08" PRIx64
                    " in the log, 0x%08" PRIx32 " computed (the log is corrupted)", what, r->path, r->foff, crc, c);
  r->blen = len;
  r->bpos = 0;
  r->block_off = r->foff;
  r->foff += 8 + len;
  return 1;
}

/* The record at the cursor: its bytes and length, or 0 at the end of a block. */
static int rd_record(mv_rec *r, const unsigned char **p, size_t *n) {
  if (r->bpos >= r->blen) return 0;
  dec d = { r->blk, r->blen, r->bpos, false };
  uint64_t len = getv(&d);
  if (d.bad || len == 0 || len > r->blen - d.i) return -1;
  *p = r->blk + d.i;
  *n = len;
  return 1;
}

/* Peeks the next record of the replay; false at the end of the log (or a
 * read error, which only a log changed under a running replay gives). */
bool mv__rec_peek(mv_rec *r, const unsigned char **p, size_t *n) {
  for (;;) {
    int k = rd_record(r, p, n);
    if (k > 0) return true;
    if (k < 0) return false;
    mv_err e;
    if (rd_block(r, "guest:replay", &e) <= 0) return false;
  }
}

void mv__rec_consume(mv_rec *r) {
  dec d = { r->blk, r->blen, r->bpos, false };
  uint64_t len = getv(&d);
  r->bpos = d.i + len;
  r->records++;
  r->bytes += len;
}

void mv_rec_tell(const mv_rec *r, mv_rec_pos *o) {
  memset(o, 0, sizeof *o);
  o->block = r->blen ? r->block_off : 0;
  o->at = r->bpos;
  o->exits = r->exits, o->records = r->records, o->bytes = r->bytes;
  for (int i = 0; r->g && i < r->g->nvcpus && i < 64; i++)
    if (r->g->vcpus[i]) o->icount[i] = r->g->vcpus[i]->icount - r->icount0[i];
}

int mv_rec_seek(mv_rec *r, const mv_rec_pos *p, mv_err *err) {
  if (!r->replay || r->finished || !r->g)
    return mv__fail(err, -EINVAL, "record:seek: %s: not a running replay", r->path);
  if (p->block) {
    r->foff = p->block;
    int k = rd_block(r, "record:seek", err);
    if (k <= 0 || p->at > r->blen)
      return k < 0 ? k : mv__fail(err, -EINVAL, "record:seek: %s: no block at byte %" PRIu64, r->path, p->block);
    r->bpos = (size_t)p->at;
  } else {
    r->foff = HDR_SIZE;
    r->blen = r->bpos = 0;
  }
  r->exits = p->exits, r->records = p->records, r->bytes = p->bytes;
  for (int i = 0; i < r->g->nvcpus && i < 64; i++)
    if (r->g->vcpus[i]) {
      r->icount0[i] = r->g->vcpus[i]->icount - p->icount[i];
      r->g->vcpus[i]->stop_icount = 0;
      r->g->vcpus[i]->kick_pending = 0;
    }
  r->forced = false;
  return 0;
}

/* {====================================================== reading a log on its own */

int mv_log_next(mv_rec *r, char *text, size_t cap, bool *is_exit) {
  const unsigned char *p;
  size_t n;
  if (!r->replay || r->g || !mv__rec_peek(r, &p, &n)) return 0;
  unsigned kind = p[0] & 0x7f;
  mv__rec_describe(p, n, text, cap);
  *is_exit = kind == K_ACCESS || kind == K_RET;
  mv__rec_consume(r);
  if (*is_exit) r->exits++;
  return kind == K_END ? 2 : 1;
}

/* Checks every block and record of the log after the header (streamed),
 * and that it ends with an END record. */
int mv__rec_scan(mv_rec *r, mv_err *err) {
  bool ended = false;
  uint64_t nrec = 0;
  for (;;) {
    uint64_t at = r->foff;
    int k = rd_block(r, "guest:replay", err);
    if (k < 0) return k;
    if (k == 0) break;
    if (ended)
      return mv__fail(err, -EINVAL, "guest:replay: %s: field block at byte %" PRIu64 ": data after the end record",
                      r->path, at);
    const unsigned char *p;
    size_t n;
    int rr;
    while ((rr = rd_record(r, &p, &n)) > 0) {
      unsigned kind = p[0] & 0x7f;
      if (kind < K_ACCESS || kind > K_END || (kind > K_UNMAP && kind < K_END))
        return mv__fail(err, -EINVAL, "guest:replay: %s: field record kind in the block at byte %" PRIu64 ": %u",
                        r->path, at, kind);
      if (ended)
        return mv__fail(err, -EINVAL, "guest:replay: %s: field record %" PRIu64 ": a record after the end record",
                        r->path, nrec);
      if (kind == K_END) ended = true;
      r->bpos = (size_t)(p - r->blk) + n;
      nrec++;
    }
    if (rr < 0)
      return mv__fail(err, -EINVAL, "guest:replay: %s: field record length in the block at byte %" PRIu64
                      " (record %" PRIu64 " overruns it)", r->path, at, nrec);
  }
  if (!ended)
    return mv__fail(err, -EINVAL, "guest:replay: %s: truncated: the log ends at byte %" PRIu64
                    " without its end record (the recording did not finish)", r->path, r->foff);
  r->foff = HDR_SIZE;
  r->blen = r->bpos = 0;
  return 0;
}

/* {====================================================== header */

static void le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* The header fields of g as it is now (memory and registers hashed). */
static int header_of(mv_rec *r, unsigned char h[HDR_SIZE], mv_err *err) {
  mv_guest *g = r->g;
  memset(h, 0, HDR_SIZE);
  memcpy(h, "MVREPLAY", 8);
  le(h + 8, LOG_VERSION, 4);
  le(h + 12, HDR_SIZE, 4);
  strncpy((char *)h + 16, g->be->name, 8);
  le(h + 24, (uint64_t)g->nvcpus, 4);
  le(h + 28, g->be->counts_instructions ? 1 : 0, 4);
  le(h + 32, mv__rec_cpuid_hash(g), 8);
  le(h + 40, mv__rec_layout_hash(g), 8);
  le(h + 48, mv__rec_memory_hash(g), 8);
  uint64_t rh;
  int rc = mv__rec_regs_hash(g, &rh, err);
  if (rc < 0) return rc;
  le(h + 56, rh, 8);
  le(h + 64, BLOCK_CAP, 8);
  le(h + 76, crc32(h, 76), 4);
  return 0;
}

int mv__rec_write_header(mv_rec *r, mv_err *err) {
  unsigned char h[HDR_SIZE];
  int rc = header_of(r, h, err);
  if (rc < 0) return rc;
  if (fwrite(h, 1, HDR_SIZE, r->f) != HDR_SIZE)
    return mv__fail(err, -EIO, "guest:record: %s: cannot write the header", r->path);
  r->bytes = HDR_SIZE;
  return 0;
}

int mv__rec_check_header(mv_rec *r, mv_err *err) {
  unsigned char h[HDR_SIZE], want[HDR_SIZE];
  size_t got = fread(h, 1, HDR_SIZE, r->f);
  const char *p = r->path;
  if (got >= 8 && memcmp(h, "MVREPLAY", 8) != 0)
    return mv__fail(err, -EINVAL, "guest:replay: %s: field magic: not a moonvisor replay log", p);
  if (got < HDR_SIZE)
    return mv__fail(err, -EINVAL, "guest:replay: %s: truncated: the header has %zu of %d bytes", p, got, HDR_SIZE);
  uint64_t v, w;
  get_le(h + 8, 4, &v);
  if (v != LOG_VERSION)
    return mv__fail(err, -EINVAL, "guest:replay: %s: field version: %" PRIu64 " (this moonvisor reads version %d)", p,
                    v, LOG_VERSION);
  get_le(h + 12, 4, &v);
  if (v != HDR_SIZE)
    return mv__fail(err, -EINVAL, "guest:replay: %s: field header size: %" PRIu64 " (expected %d)", p, v, HDR_SIZE);
  get_le(h + 76, 4, &v);
  if (v != crc32(h, 76))
    return mv__fail(err, -EINVAL, "guest:replay: %s: field header checksum: 0x%08" PRIx64 " in the log, 0x%08" PRIx32
                    " computed (the header is corrupted)", p, v, crc32(h, 76));
  if (!r->g) {   /* a log read on its own (mv_log_open): nothing to compare with */
    r->foff = HDR_SIZE;
    return 0;
  }
  int rc = header_of(r, want, err);
  if (rc < 0) return rc;
  if (memcmp(h + 16, want + 16, 8) != 0)
    return mv__fail(err, -EINVAL,
                    "guest:replay: %s: field backend: the log was recorded on %.8s, this guest runs on %s",
                    p, (const char *)h + 16, r->g->be->name);
  static const struct { int off, n; const char *name, *hint; } fields[] = {
    { 24, 4, "vcpus", "the guest has another number of VCPUs" },
    { 28, 4, "flags", "" },
    { 32, 8, "cpuid hash", "the host CPU differs: the guest would see another CPUID" },
    { 40, 8, "layout hash", "the guest maps other memory" },
    { 48, 8, "memory hash", "the log is for another guest image" },
    { 56, 8, "register hash", "the VCPUs start from other registers" },
  };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    get_le(h + fields[i].off, fields[i].n, &v);
    get_le(want + fields[i].off, fields[i].n, &w);
    if (v != w)
      return mv__fail(err, -EINVAL, "guest:replay: %s: field %s: 0x%" PRIx64 " in the log, 0x%" PRIx64 " here (%s)", p,
                      fields[i].name, v, w, fields[i].hint);
  }
  r->foff = HDR_SIZE;
  return 0;
}
