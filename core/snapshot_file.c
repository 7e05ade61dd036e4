/*
 * snapshot_file.c - snapshots in files.  Little-endian, in this order:
 *
 *   "MVSNAP\0\0"  u32 version (1)  u32 backend-name length, the name
 *   u32 nvcpus  u32 nmaps
 *   per VCPU: i32 id, 18 x u64 registers (rax..r15, rip, rflags),
 *     8 segments (cs ds es fs gs ss tr ldt) x { u64 base, u32 limit,
 *     u16 selector, 9 x u8 type present dpl db s l g avl unusable },
 *     gdt, idt x { u64 base, u16 limit }, 7 x u64 cr0 cr2 cr3 cr4 cr8 efer
 *     apic_base, 8 x u32 pending interrupt bitmap, u32 n + n bytes of
 *     backend state (kvm; 0 for soft, whose CPU context only lives in memory)
 *   u32 n + n bytes of guest-wide state (kvm irqchip/PIT/clock)
 *   per mapping: u64 gpa, u64 size, u32 flags, size bytes of memory
 *   u32 CRC-32 (IEEE) of everything before it
 *
 * Loading checks the magic, version and checksum before it parses, and every
 * length against what is left, so a corrupt file is an error, never a crash.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "snapshot.h"

#define MAGIC "MVSNAP\0\0"
#define VERSION 1u

static uint32_t crc_table[256];

static void crc_init(void) {
  if (crc_table[1]) return;
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
}

static uint32_t crc32_update(uint32_t crc, const void *buf, size_t n) {
  const unsigned char *p = buf;
  crc = ~crc;
  while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* {====================================================== writing */

typedef struct writer {
  FILE *f;
  uint32_t crc;
  bool failed;
} writer;

static void put(writer *w, const void *p, size_t n) {
  if (w->failed || n == 0) return;
  if (fwrite(p, 1, n, w->f) != n) w->failed = true;
  w->crc = crc32_update(w->crc, p, n);
}

static void put_u64(writer *w, uint64_t v) { put(w, &v, 8); }   /* x86 hosts: little-endian */
static void put_u32(writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u16(writer *w, uint16_t v) { put(w, &v, 2); }
static void put_u8(writer *w, uint8_t v) { put(w, &v, 1); }

static void put_segment(writer *w, const mv_segment *s) {
  put_u64(w, s->base);
  put_u32(w, s->limit);
  put_u16(w, s->selector);
  const uint8_t b[9] = { s->type, s->present, s->dpl, s->db, s->s, s->l, s->g, s->avl, s->unusable };
  for (int i = 0; i < 9; i++) put_u8(w, b[i]);
}

static void put_vcpu(writer *w, const mv_snap_vcpu *v) {
  put_u32(w, (uint32_t)v->id);
  const uint64_t *r = &v->regs.rax;
  for (int i = 0; i < 18; i++) put_u64(w, r[i]);
  const mv_segment *segs[8] = { &v->sregs.cs, &v->sregs.ds, &v->sregs.es, &v->sregs.fs,
                                &v->sregs.gs, &v->sregs.ss, &v->sregs.tr, &v->sregs.ldt };
  for (int i = 0; i < 8; i++) put_segment(w, segs[i]);
  put_u64(w, v->sregs.gdt.base); put_u16(w, v->sregs.gdt.limit);
  put_u64(w, v->sregs.idt.base); put_u16(w, v->sregs.idt.limit);
  const uint64_t crs[7] = { v->sregs.cr0, v->sregs.cr2, v->sregs.cr3, v->sregs.cr4, v->sregs.cr8, v->sregs.efer, v->sregs.apic_base };
  for (int i = 0; i < 7; i++) put_u64(w, crs[i]);
  for (int i = 0; i < 8; i++) put_u32(w, v->pending_irq[i]);
  uint32_t n = v->portable ? (uint32_t)v->blob_len : 0;
  put_u32(w, n);
  put(w, v->blob, n);
}

int mv_snapshot_save(const mv_snapshot *s, const char *path, mv_err *err) {
  crc_init();
  writer w = { .f = fopen(path, "wb") };
  if (!w.f) return mv__fail(err, -errno, "snapshot:save: %s: %s", path, strerror(errno));
  put(&w, MAGIC, 8);
  put_u32(&w, VERSION);
  put_u32(&w, (uint32_t)strlen(s->backend));
  put(&w, s->backend, strlen(s->backend));
  put_u32(&w, (uint32_t)s->nvcpus);
  put_u32(&w, (uint32_t)s->nmaps);
  for (int i = 0; i < s->nvcpus; i++) put_vcpu(&w, &s->vcpus[i]);
  put_u32(&w, (uint32_t)s->guest_blob_len);
  put(&w, s->guest_blob, s->guest_blob_len);
  for (int i = 0; i < s->nmaps; i++) {
    put_u64(&w, s->maps[i].gpa);
    put_u64(&w, s->maps[i].size);
    put_u32(&w, s->maps[i].flags);
    put(&w, s->maps[i].data, s->maps[i].size);
  }
  uint32_t crc = w.crc;
  put(&w, &crc, 4);
  int e = errno;
  if (fclose(w.f) != 0 || w.failed) {
    remove(path);
    return mv__fail(err, -(e ? e : EIO), "snapshot:save: %s: write failed: %s", path, strerror(e ? e : EIO));
  }
  return 0;
}

/* {====================================================== reading */

typedef struct reader {
  const unsigned char *p, *end;
  bool short_read;
} reader;

static bool take(reader *r, void *dst, uint64_t n) {
  if (r->short_read || (uint64_t)(r->end - r->p) < n) {
    r->short_read = true;
    if (dst && n < 64) memset(dst, 0, (size_t)n);
    return false;
  }
  if (dst) memcpy(dst, r->p, (size_t)n);
  r->p += n;
  return true;
}

static uint64_t get_u64(reader *r) { uint64_t v = 0; take(r, &v, 8); return v; }
static uint32_t get_u32(reader *r) { uint32_t v = 0; take(r, &v, 4); return v; }
static uint16_t get_u16(reader *r) { uint16_t v = 0; take(r, &v, 2); return v; }
static uint8_t get_u8(reader *r) { uint8_t v = 0; take(r, &v, 1); return v; }

static void get_segment(reader *r, mv_segment *s) {
  s->base = get_u64(r);
  s->limit = get_u32(r);
  s->selector = get_u16(r);
  uint8_t *b[9] = { &s->type, &s->present, &s->dpl, &s->db, &s->s, &s->l, &s->g, &s->avl, &s->unusable };
  for (int i = 0; i < 9; i++) *b[i] = get_u8(r);
}

/* Copies n bytes out of the reader into fresh memory (NULL when n is 0). */
static void *get_blob(reader *r, uint64_t n, bool *oom) {
  if (n == 0 || (uint64_t)(r->end - r->p) < n) {
    if (n) r->short_read = true;
    return NULL;
  }
  void *b = malloc((size_t)n);
  if (!b) {
    *oom = true;
    return NULL;
  }
  take(r, b, n);
  return b;
}

static void get_vcpu(reader *r, mv_snap_vcpu *v, bool *oom) {
  v->id = (int)get_u32(r);
  uint64_t *regs = &v->regs.rax;
  for (int i = 0; i < 18; i++) regs[i] = get_u64(r);
  mv_segment *segs[8] = { &v->sregs.cs, &v->sregs.ds, &v->sregs.es, &v->sregs.fs,
                          &v->sregs.gs, &v->sregs.ss, &v->sregs.tr, &v->sregs.ldt };
  for (int i = 0; i < 8; i++) get_segment(r, segs[i]);
  v->sregs.gdt.base = get_u64(r); v->sregs.gdt.limit = get_u16(r);
  v->sregs.idt.base = get_u64(r); v->sregs.idt.limit = get_u16(r);
  uint64_t *crs[7] = { &v->sregs.cr0, &v->sregs.cr2, &v->sregs.cr3, &v->sregs.cr4, &v->sregs.cr8,
                       &v->sregs.efer, &v->sregs.apic_base };
  for (int i = 0; i < 7; i++) *crs[i] = get_u64(r);
  for (int i = 0; i < 8; i++) v->pending_irq[i] = get_u32(r);
  v->blob_len = get_u32(r);
  v->blob = get_blob(r, v->blob_len, oom);
  v->portable = true;
}

static int parse(reader *r, const char *path, mv_snapshot **out, mv_err *err) {
  char magic[8];
  take(r, magic, 8);
  uint32_t version = get_u32(r), namelen = get_u32(r);
  char name[16] = { 0 };
  if (namelen < sizeof name) take(r, name, namelen);
  const char *backend = strcmp(name, "kvm") == 0 ? "kvm" : strcmp(name, "soft") == 0 ? "soft" : NULL;
  if (!backend) return mv__fail(err, -EINVAL, "mv.load_snapshot: %s: unknown backend in the header", path);
  uint32_t nvcpus = get_u32(r), nmaps = get_u32(r);
  if (r->short_read || nvcpus > MV_MAX_VCPUS || nmaps > MV_MAX_MAPPINGS)
    return mv__fail(err, -EINVAL, "mv.load_snapshot: %s: bad header (%u VCPUs, %u mappings)", path, nvcpus, nmaps);
  (void)version;
  mv_snapshot *s = mv__snapshot_new((int)nvcpus, (int)nmaps);
  if (!s) return mv__fail(err, -ENOMEM, "mv.load_snapshot: out of memory");
  s->backend = backend;
  bool oom = false;
  for (uint32_t i = 0; i < nvcpus; i++) get_vcpu(r, &s->vcpus[i], &oom);
  s->guest_blob_len = get_u32(r);
  s->guest_blob = get_blob(r, s->guest_blob_len, &oom);
  for (uint32_t i = 0; i < nmaps && !r->short_read && !oom; i++) {
    mv_snap_map *m = &s->maps[i];
    m->gpa = get_u64(r);
    m->size = get_u64(r);
    m->flags = get_u32(r);
    if (m->size % MV_PAGE_SIZE || m->gpa % MV_PAGE_SIZE) r->short_read = true;
    else m->data = get_blob(r, m->size, &oom);
  }
  if (r->short_read || oom || r->p != r->end) {
    mv_snapshot_free(s);
    return oom ? mv__fail(err, -ENOMEM, "mv.load_snapshot: %s: out of memory", path)
               : mv__fail(err, -EINVAL, "mv.load_snapshot: %s: malformed contents", path);
  }
  *out = s;
  return 0;
}

int mv_snapshot_load(const char *path, mv_snapshot **out, mv_err *err) {
  crc_init();
  FILE *f = fopen(path, "rb");
  if (!f) return mv__fail(err, -errno, "mv.load_snapshot: %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) < 0 || st.st_size < 8 + 4 + 4) {
    fclose(f);
    return mv__fail(err, -EINVAL, "mv.load_snapshot: %s: too short to be a snapshot", path);
  }
  unsigned char *buf = malloc((size_t)st.st_size);
  if (!buf) {
    fclose(f);
    return mv__fail(err, -ENOMEM, "mv.load_snapshot: %s: out of memory for %lld bytes", path, (long long)st.st_size);
  }
  size_t n = fread(buf, 1, (size_t)st.st_size, f);
  fclose(f);
  int r;
  uint32_t version, stored;
  if (n != (size_t)st.st_size) {
    r = mv__fail(err, -EIO, "mv.load_snapshot: %s: read failed", path);
  } else if (memcmp(buf, MAGIC, 8) != 0) {
    r = mv__fail(err, -EINVAL, "mv.load_snapshot: %s: not a moonvisor snapshot (bad magic)", path);
  } else if (memcpy(&version, buf + 8, 4), version != VERSION) {
    r = mv__fail(err, -EINVAL, "mv.load_snapshot: %s: snapshot format version %u, this build reads %u", path, version, VERSION);
  } else if (memcpy(&stored, buf + n - 4, 4), stored != crc32_update(0, buf, n - 4)) {
    r = mv__fail(err, -EINVAL, "mv.load_snapshot: %s: checksum mismatch (corrupt or truncated file)", path);
  } else {
    reader rd = { .p = buf, .end = buf + n - 4 };
    r = parse(&rd, path, out, err);
  }
  free(buf);
  return r;
}
