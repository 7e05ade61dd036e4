/*
 * kvm_seal.c - whether a sandbox's declared content seals its ranges: under
 * the declared page tables ring 3 has no writable mapping of a range page,
 * and the stacks the CPU switches to on the way from ring 3 to ring 0 (the
 * TSS's RSP0 and the IST entries the IDT's gates name) keep their top 4 KiB
 * off the ranges, so the exception frames the CPU writes there miss them.
 *
 * A run that starts with the ranges holding the declared content then
 * cannot change them from the guest: ring 3 cannot write them, and the only
 * ring-0 code is the caller's, which writes nothing but the top of its stack.  That
 * lets kvm_sandbox.c trust a sandbox without the dirty log, which on some
 * hosts also holds pages only read or run and on any host may hold the
 * page tables the CPU walked.  Everything here reads the copy taken at
 * declaration, never guest memory.
 */
#include <string.h>
#include "kvm.h"

#define ADDR_MASK UINT64_C(0x000ffffffffff000)
#define PTE_P UINT64_C(1)
#define PTE_RW UINT64_C(2)
#define PTE_US UINT64_C(4)
#define PTE_PS UINT64_C(0x80)
#define CR0_PG (UINT64_C(1) << 31)
#define CR4_PAE (UINT64_C(1) << 5)
#define CR4_LA57 (UINT64_C(1) << 12)
#define EFER_LMA (UINT64_C(1) << 10)
#define MAX_TABLE_VISITS 512
#define STACK_GUARD 0x1000   /* the frame, the ring-0 code's pushes and a nested fault's frame */

/* The declared copy of the n bytes at gpa, or NULL where they are not all
 * in one range. */
static const unsigned char *declared(const kvm_sandbox *sb, uint64_t gpa, uint64_t n) {
  size_t at = 0;
  for (int i = 0; i < sb->nranges; i++) {
    uint64_t lo = sb->ranges[i][0], len = sb->ranges[i][1];
    if (gpa >= lo && gpa - lo <= len && n <= len - (gpa - lo)) return sb->content + at + (gpa - lo);
    at += (size_t)len;
  }
  return NULL;
}

static bool hits_ranges(const kvm_sandbox *sb, uint64_t gpa, uint64_t size) {
  for (int i = 0; i < sb->nranges; i++)
    if (gpa < sb->ranges[i][0] + sb->ranges[i][1] && sb->ranges[i][0] < gpa + size) return true;
  return false;
}

static uint64_t entry_at(const unsigned char *table, unsigned index) {
  uint64_t e;
  memcpy(&e, table + 8 * index, 8);
  return e;
}

/* The table at gpa of a level (4: PML4 .. 1: PT), reached through entries
 * that all allow ring 3 to write (user_rw) or not: false when it or a table
 * below lies outside the ranges, a leaf ring 3 may write maps a range page,
 * or the walk is larger than a sandbox's tables can be. */
static bool walk(const kvm_sandbox *sb, uint64_t gpa, int level, bool user_rw, int *visits) {
  const unsigned char *table = declared(sb, gpa, 4096);
  if (!table || ++*visits > MAX_TABLE_VISITS) return false;
  for (unsigned i = 0; i < 512; i++) {
    uint64_t e = entry_at(table, i);
    if (!(e & PTE_P)) continue;
    if (level == 4 && (e & PTE_PS)) return false;   /* reserved there: no shape to prove anything of */
    bool urw = user_rw && (e & PTE_US) && (e & PTE_RW);
    if (level == 1 || (level <= 3 && (e & PTE_PS))) {
      uint64_t size = UINT64_C(1) << (12 + 9 * (level - 1));
      if (urw && hits_ranges(sb, e & ADDR_MASK & ~(size - 1), size)) return false;
    } else if (!walk(sb, e & ADDR_MASK, level - 1, urw, visits)) {
      return false;
    }
  }
  return true;
}

enum { UNMAPPED, MAPPED, UNKNOWN };

/* The guest-physical address behind linear va under the declared tables,
 * as ring 0 sees them (any present mapping). */
static int translate(const kvm_sandbox *sb, uint64_t va, uint64_t *gpa) {
  uint64_t table = sb->frame.cr3 & ADDR_MASK;
  for (int level = 4; level >= 1; level--) {
    const unsigned char *t = declared(sb, table, 4096);
    if (!t) return UNKNOWN;
    unsigned shift = 12 + 9 * (unsigned)(level - 1);
    uint64_t e = entry_at(t, (va >> shift) & 511);
    if (!(e & PTE_P)) return UNMAPPED;
    if (level == 1 || (level <= 3 && (e & PTE_PS))) {
      uint64_t size = UINT64_C(1) << shift;
      *gpa = (e & ADDR_MASK & ~(size - 1)) | (va & (size - 1));
      return MAPPED;
    }
    table = e & ADDR_MASK;
  }
  return UNKNOWN;
}

/* The declared copy's 8 bytes at linear va (which the ranges must hold). */
static bool linear_u64(const kvm_sandbox *sb, uint64_t va, uint64_t *out) {
  unsigned char bytes[8];
  for (unsigned i = 0; i < 8; i++) {
    uint64_t gpa;
    const unsigned char *p;
    if (translate(sb, va + i, &gpa) != MAPPED || !(p = declared(sb, gpa, 1))) return false;
    bytes[i] = *p;
  }
  memcpy(out, bytes, 8);
  return true;
}

/* The stacks ring 3's way into ring 0 can switch to keep their top
 * STACK_GUARD bytes off the ranges (or unmapped, where a push faults). */
static bool stacks_clear(const kvm_sandbox *sb) {
  const struct kvm_sregs *s = &sb->frame;
  if (s->tr.limit < 0x5b) return false;   /* a 64-bit TSS holds RSP0 at +4, IST1-7 at +0x24 */
  bool used[8] = { true };                /* [0]: RSP0, which every gate without an IST uses */
  for (uint64_t off = 0; off + 16 <= (uint64_t)s->idt.limit + 1; off += 16) {
    uint64_t gate;
    if (!linear_u64(sb, s->idt.base + off, &gate)) return false;
    if (gate >> 47 & 1) used[gate >> 32 & 7] = true;
  }
  for (unsigned k = 0; k < 8; k++) {
    uint64_t top;
    if (!used[k] || !linear_u64(sb, s->tr.base + (k ? 0x24 + 8 * (k - 1) : 4), &top)) {
      if (used[k]) return false;
      continue;
    }
    uint64_t first = (top - 1) & ~UINT64_C(0xfff), last = (top - STACK_GUARD) & ~UINT64_C(0xfff);
    for (uint64_t n = 0; n <= ((first - last) >> 12); n++) {   /* down from top, wrapping as RSP does */
      uint64_t page = first - n * 0x1000, gpa = 0;
      int t = translate(sb, page, &gpa);
      if (t == UNKNOWN || (t == MAPPED && hits_ranges(sb, gpa & ~UINT64_C(0xfff), 0x1000))) return false;
    }
  }
  return true;
}

bool kvm_seal_proved(const kvm_sandbox *sb) {
  const struct kvm_sregs *s = &sb->frame;
  if (!(s->cr0 & CR0_PG) || !(s->cr4 & CR4_PAE) || (s->cr4 & CR4_LA57) || !(s->efer & EFER_LMA)) return false;
  int visits = 0;
  return walk(sb, s->cr3 & ADDR_MASK, 4, true, &visits) && stacks_clear(sb);
}
