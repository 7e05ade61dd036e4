/*
 * record_int.h - what record.c (the log format), record_run.c (recording
 * and replaying) and record_hash.c (hashes) share: the recorder, the record
 * encoding, the hashes of a guest's state (nothing else includes it).
 */
#ifndef MV_RECORD_INT_H
#define MV_RECORD_INT_H

#include <stdio.h>
#include <string.h>
#include "internal.h"
#include "record.h"

#define HDR_SIZE 80
#define LOG_VERSION 1
#define BLOCK_CAP 65536u          /* what the writer fills before writing a block */
#define BLOCK_MAX (1u << 20)      /* what a reader accepts */
#define HOSTW_CHUNK 16384u        /* handler writes are logged in pieces of at most this */
#define REC_MAX 512                /* an encoded record but a handler write's bytes (appended apart) */
#define H_FLAG 0x80

enum { K_ACCESS = 1, K_RET, K_IRQ, K_DELIVER, K_HOSTW, K_REGS, K_SREGS, K_MSR, K_FPU, K_CPUID, K_IRQLINE,
       K_MAP, K_UNMAP, K_END = 15 };

struct mv_rec {
  mv_guest *g;              /* NULL once detached (the guest closed) */
  bool replay;
  unsigned flags;           /* MV_REPLAY_* */
  FILE *f;
  char path[4096];
  unsigned char *blk;       /* writer: the block being filled; reader: the block read */
  size_t blen, bpos;        /* writer: bytes filled; reader: payload length and cursor */
  uint64_t foff;            /* reader: file offset of the next block */
  bool at_end;              /* reader: the END record is next (or was taken) */
  uint64_t exits, records, bytes;
  int in_handler;           /* > 0 inside a trap callback or doorbell drain */
  int enter_depth;          /* > 0 inside mv_vcpu_enter */
  bool applying;            /* the replayer is applying a handler's record itself (or is paused) */
  uint64_t stop_at;         /* time travel: stop the run once exits reaches it (0: never) */
  bool forced;              /* that stop's kick is on its way */
  bool failed;              /* the replayed access's handler had failed in the recording */
  uint64_t block_off;       /* reader: file offset of the block in blk */
  bool io_error;
  bool finished;
  int finish_code;
  char finish_msg[256];
  uint64_t state_hash, expected_hash, inexact;
  uint64_t icount0[MV_MAX_VCPUS];   /* each VCPU's instruction count when the log began:
                                       logged counts are relative to it */
  bool diverged;
  mv_divergence div;
  char div_msg[512];        /* the one-line form (mv_err keeps its first 255 bytes) */
};

/* {====================================================== encoding */

typedef struct enc {
  unsigned char b[REC_MAX];
  size_t n;
} enc;

static inline void put8(enc *e, unsigned v) { e->b[e->n++] = (unsigned char)v; }
static inline void putv(enc *e, uint64_t v) {
  size_t n = e->n;   /* a local: stores through unsigned char may alias e->n */
  while (v >= 0x80) {
    e->b[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  e->b[n++] = (unsigned char)v;
  e->n = n;
}
static inline void put64(enc *e, uint64_t v) {
  for (int i = 0; i < 8; i++) put8(e, (unsigned)(v >> (8 * i)) & 0xff);
}
static inline void putraw(enc *e, const void *p, size_t n) {
  memcpy(e->b + e->n, p, n);
  e->n += n;
}

/* A reader over one record's bytes. */
typedef struct dec {
  const unsigned char *p;
  size_t n, i;
  bool bad;
} dec;

static inline unsigned get8(dec *d) {
  if (d->i >= d->n) {
    d->bad = true;
    return 0;
  }
  return d->p[d->i++];
}
static inline uint64_t getv(dec *d) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    unsigned byte = get8(d);
    v |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return v;
  }
  d->bad = true;
  return v;
}
static inline uint64_t get64(dec *d) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)get8(d) << (8 * i);
  return v;
}


/* record_apply.c: a divergence (the first one is kept; returns -EILSEQ
 * with err filled), and the records at the head of the log the replayer
 * applies itself (script_only: not a handler's). */
int mv__rec_diverge(mv_rec *r, mv_vcpu *c, const char *what, const unsigned char *exp, size_t en, const enc *got,
                    const char *got_text, mv_err *err);
int mv__rec_apply(mv_rec *r, mv_vcpu *at, bool script_only, mv_err *err);

/* record.c: the log format */
int mv__rec_write_header(mv_rec *r, mv_err *err);
int mv__rec_check_header(mv_rec *r, mv_err *err);
int mv__rec_scan(mv_rec *r, mv_err *err);
/* Appends a record (with n more bytes from data at its end). */
void mv__rec_append_data(mv_rec *r, const enc *e, const void *data, size_t n);
static inline void mv__rec_append(mv_rec *r, const enc *e) {
  if (e->n < 128 && r->blen + e->n + 1 <= BLOCK_CAP) {   /* the common case: one length byte, room left */
    size_t n = e->n;
    unsigned char *p = r->blk + r->blen;
    *p++ = (unsigned char)n;
    for (size_t i = 0; i < n; i++) p[i] = e->b[i];
    r->blen += n + 1;
    r->records++;
  } else {
    mv__rec_append_data(r, e, NULL, 0);
  }
}
void mv__rec_flush(mv_rec *r);
bool mv__rec_peek(mv_rec *r, const unsigned char **p, size_t *n);
void mv__rec_consume(mv_rec *r);
void mv__rec_describe(const unsigned char *p, size_t n, char *out, size_t cap);

uint64_t mv__hash_bytes(uint64_t h, const void *p, size_t n);
static inline uint64_t mv__hash_u64(uint64_t h, uint64_t w) {
  h ^= w;
  h *= UINT64_C(0x9e3779b97f4a7c15);
  return h ^ (h >> 29);
}
uint64_t mv__rec_layout_hash(const mv_guest *g);
uint64_t mv__rec_memory_hash(const mv_guest *g);
int mv__rec_regs_hash(mv_guest *g, uint64_t *out, mv_err *err);
uint64_t mv__rec_cpuid_hash(const mv_guest *g);
/* Appends the fields of s (no padding) at p; returns the byte count (at most MV_SREGS_BYTES). */
size_t mv__rec_put_sregs(unsigned char *p, const mv_sregs *s);
#define MV_SREGS_BYTES 352
bool mv__rec_get_sregs(const unsigned char *p, size_t n, mv_sregs *s);

#endif
