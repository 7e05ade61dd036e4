/*
 * record_hash.c - the hashes record and replay compare: of the memory
 * layout, of guest memory, of every VCPU's registers, of the host CPUID a
 * KVM guest's derives from, and the state hash both runs print at the end.
 * The hash is a 64-bit multiply-xorshift over 8-byte words (not
 * cryptographic: it tells runs apart, it does not resist forgery).
 */
#include <cpuid.h>
#include <errno.h>
#include <string.h>
#include "record.h"
#include "record_int.h"

uint64_t mv__hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    h = mv__hash_u64(h, w);
  }
  uint64_t w = 0;
  if (i < n) memcpy(&w, b + i, n - i);
  return mv__hash_u64(mv__hash_u64(h, w), n);
}

uint64_t mv__rec_layout_hash(const mv_guest *g) {
  uint64_t h = 1;
  for (size_t i = 0; i < g->nmaps; i++) {
    const mv_mapping *m = &g->maps[i];
    h = mv__hash_u64(mv__hash_u64(mv__hash_u64(h, m->gpa), m->size), m->flags);
  }
  return h;
}

uint64_t mv__rec_memory_hash(const mv_guest *g) {
  uint64_t h = 2;
  for (size_t i = 0; i < g->nmaps; i++) {
    const mv_mapping *m = &g->maps[i];
    h = mv__hash_bytes(mv__hash_u64(h, m->gpa), m->vmo->mem + m->offset, m->size);
  }
  return h;
}

static unsigned char *put64b(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) *p++ = (unsigned char)(v >> (8 * i));
  return p;
}

static unsigned char *put_seg(unsigned char *p, const mv_segment *s) {
  p = put64b(p, s->base);
  p = put64b(p, s->limit);
  p = put64b(p, s->selector);
  const uint8_t f[9] = { s->type, s->present, s->dpl, s->db, s->s, s->l, s->g, s->avl, s->unusable };
  memcpy(p, f, 9);
  return p + 9;
}

size_t mv__rec_put_sregs(unsigned char *p0, const mv_sregs *s) {
  unsigned char *p = p0;
  const mv_segment *segs[8] = { &s->cs, &s->ds, &s->es, &s->fs, &s->gs, &s->ss, &s->tr, &s->ldt };
  for (int i = 0; i < 8; i++) p = put_seg(p, segs[i]);
  p = put64b(p, s->gdt.base);
  p = put64b(p, s->gdt.limit);
  p = put64b(p, s->idt.base);
  p = put64b(p, s->idt.limit);
  const uint64_t cr[7] = { s->cr0, s->cr2, s->cr3, s->cr4, s->cr8, s->efer, s->apic_base };
  for (int i = 0; i < 7; i++) p = put64b(p, cr[i]);
  return (size_t)(p - p0);   /* 8 * 33 + 32 + 56 = MV_SREGS_BYTES */
}

int mv__rec_regs_hash(mv_guest *g, uint64_t *out, mv_err *err) {
  uint64_t h = 3;
  for (int i = 0; i < g->nvcpus; i++) {
    mv_vcpu *c = g->vcpus[i];
    if (!c || c->destroyed) continue;
    mv_regs r;
    mv_sregs s;
    int rc = g->be->get_regs(c, &r, err);
    if (rc < 0 || (rc = g->be->get_sregs(c, &s, err)) < 0) return rc;
    unsigned char buf[MV_SREGS_BYTES];
    h = mv__hash_bytes(mv__hash_u64(h, (uint64_t)i), &r, sizeof r);   /* mv_regs: 18 uint64_t, no padding */
    h = mv__hash_bytes(h, buf, mv__rec_put_sregs(buf, &s));
  }
  *out = h;
  return 0;
}

/* kvm: the guest's CPUID is the host's as KVM filters it (plus what the
 * script sets, which the log records): vendor, family/model/stepping and
 * the feature leaves.  soft: Unicorn's model is the same on every host. */
uint64_t mv__rec_cpuid_hash(const mv_guest *g) {
  if (strcmp(g->be->name, "kvm") != 0) return 0;
  static const unsigned leaves[][2] = { { 0, 0 }, { 1, 0 }, { 7, 0 }, { 0xd, 0 }, { 0x80000001, 0 } };
  uint64_t h = 4;
  for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    __cpuid_count(leaves[i][0], leaves[i][1], a, b, c, d);
    if (leaves[i][0] == 1) b &= 0x0000ffff;   /* the initial APIC id and CLFLUSH count vary by core */
    h = mv__hash_u64(mv__hash_u64(h, (uint64_t)a << 32 | b), (uint64_t)c << 32 | d);
  }
  return h;
}

int mv_guest_state_hash(mv_guest *g, uint64_t *out, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:state_hash: guest is closed");
  uint64_t rh;
  int r = mv__rec_regs_hash(g, &rh, err);
  if (r < 0) return r;
  *out = mv__hash_u64(mv__hash_u64(mv__rec_memory_hash(g), mv__rec_layout_hash(g)), rh);
  return 0;
}

static uint64_t get64b(const unsigned char **p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)(*p)[i] << (8 * i);
  *p += 8;
  return v;
}

bool mv__rec_get_sregs(const unsigned char *p, size_t n, mv_sregs *s) {
  if (n < MV_SREGS_BYTES) return false;
  mv_segment *segs[8] = { &s->cs, &s->ds, &s->es, &s->fs, &s->gs, &s->ss, &s->tr, &s->ldt };
  memset(s, 0, sizeof *s);
  for (int i = 0; i < 8; i++) {
    mv_segment *g = segs[i];
    g->base = get64b(&p);
    g->limit = (uint32_t)get64b(&p);
    g->selector = (uint16_t)get64b(&p);
    g->type = p[0], g->present = p[1], g->dpl = p[2], g->db = p[3], g->s = p[4], g->l = p[5], g->g = p[6];
    g->avl = p[7], g->unusable = p[8];
    p += 9;
  }
  s->gdt.base = get64b(&p);
  s->gdt.limit = (uint16_t)get64b(&p);
  s->idt.base = get64b(&p);
  s->idt.limit = (uint16_t)get64b(&p);
  uint64_t *cr[7] = { &s->cr0, &s->cr2, &s->cr3, &s->cr4, &s->cr8, &s->efer, &s->apic_base };
  for (int i = 0; i < 7; i++) *cr[i] = get64b(&p);
  return true;
}
