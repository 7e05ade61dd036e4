/*
 * soft_paging.c - the guest's page tables as the software backend reads
 * them: a walk for one linear address (exceptions, descriptor reads, the
 * debugger's view), and the visit of every paging-structure page for the
 * dirty log (Unicorn's page walker sets accessed and dirty bits there
 * without any write hook, so those pages count as written).
 */
#include <stdlib.h>
#include <string.h>
#include "soft.h"

#define CR0_PG UINT64_C(0x80000000)
#define CR4_PSE 0x10u
#define CR4_PAE 0x20u
#define ADDR_MASK UINT64_C(0x000ffffffffff000)

static bool read_phys(mv_vcpu *c, uint64_t pa, void *buf, size_t n) {
  return mv_guest_read(c->guest, pa, buf, n, NULL) == 0;
}

/* Walks the guest's page tables for va: false when a level is not present;
 * otherwise w holds the physical address and what every level allows
 * (user, write; nx when any level forbids execution).  Paging off: the
 * identity, everything allowed. */
bool soft_walk_page(mv_vcpu *c, uint64_t va, soft_walk *w) {
  uc_engine *uc = SV(c)->uc;
  uint64_t cr0 = reg(uc, UC_X86_REG_CR0), cr3 = reg(uc, UC_X86_REG_CR3), cr4 = reg(uc, UC_X86_REG_CR4);
  *w = (soft_walk){ .phys = va, .user = true, .write = true, .nx = false };
  if (!(cr0 & CR0_PG)) return true;
  if (!(cr4 & CR4_PAE)) {   /* two levels of 32-bit entries */
    uint32_t pde, pte;
    if (!read_phys(c, (cr3 & 0xfffff000) + ((va >> 22) & 0x3ff) * 4, &pde, 4) || !(pde & 1)) return false;
    w->user = pde & 4;
    w->write = pde & 2;
    if ((pde & 0x80) && (cr4 & CR4_PSE)) {
      w->phys = (pde & 0xffc00000u) + (va & 0x3fffff);
      return true;
    }
    if (!read_phys(c, (pde & 0xfffff000u) + ((va >> 12) & 0x3ff) * 4, &pte, 4) || !(pte & 1)) return false;
    w->user = w->user && (pte & 4);
    w->write = w->write && (pte & 2);
    w->phys = (pte & 0xfffff000u) + (va & 0xfff);
    return true;
  }
  bool four = SV(c)->mode == UC_MODE_64;   /* PAE: 3 levels; long mode: 4 */
  uint64_t table = four ? cr3 & ~UINT64_C(0xfff) : cr3 & ~UINT64_C(0x1f);
  int shift = four ? 39 : 30;
  for (int level = four ? 4 : 3; level >= 1; level--, shift -= 9) {
    uint64_t e;
    bool pdpte = level == 3 && !four;   /* PAE's four PDPTEs hold no access bits */
    unsigned idx = (unsigned)((va >> shift) & (pdpte ? 3 : 0x1ff));
    if (!read_phys(c, table + idx * 8, &e, 8) || !(e & 1)) return false;
    if (!pdpte) {
      w->user = w->user && (e & 4);
      w->write = w->write && (e & 2);
      w->nx = w->nx || (e >> 63);
    }
    if (level <= 3 && level >= 2 && !pdpte && (e & 0x80)) {   /* 1 GiB or 2 MiB page */
      uint64_t size = UINT64_C(1) << shift;
      w->phys = (e & ADDR_MASK & ~(size - 1)) + (va & (size - 1));
      return true;
    }
    table = e & ADDR_MASK;
  }
  w->phys = table + (va & 0xfff);
  return true;
}

bool soft_translate(mv_vcpu *c, uint64_t va, uint64_t *pa) {
  soft_walk w;
  if (!soft_walk_page(c, va, &w)) return false;
  *pa = w.phys;
  return true;
}

/* {====================================================== every table */

/* One visit of the paging structures.  Each table is read where it lies
 * in the guest's memory, a page at a time, and visited once per level it is
 * reached at (the key: its address with the level in the low bits), so
 * however many entries point at one table, or a table at itself, the visit
 * is bounded by four times the guest's pages. */
typedef struct visit {
  mv_vcpu *c;
  void (*mark)(mv_guest *, uint64_t);
  bool wide;              /* 64-bit entries (PAE, long mode), else 32-bit */
  bool pse;               /* 32-bit paging: a PDE with bit 7 maps 4 MiB */
  uint64_t *seen;         /* open addressing (soft_slot), 0 = empty; NULL: none yet, or no memory */
  uint32_t mask;          /* slots - 1 */
  uint32_t n;             /* keys in it */
} visit;

/* Where key is in seen, or the empty slot where it goes. */
static uint32_t slot_of(const uint64_t *seen, uint32_t mask, uint64_t key) {
  uint32_t j = soft_slot(key, mask);
  while (seen[j] && seen[j] != key) j = (j + 1) & mask;
  return j;
}

/* True when key was not in the set yet (or the set could not grow: then
 * tables may be visited again, which costs time, not correctness). */
static bool first_visit(visit *v, uint64_t key) {
  if (!v->seen || (v->n + 1) * 2 > v->mask + 1) {
    uint32_t slots = v->seen ? 2 * (v->mask + 1) : 64;
    uint64_t *seen = slots ? calloc(slots, sizeof *seen) : NULL;
    if (!seen) return true;
    for (uint32_t i = 0; v->seen && i <= v->mask; i++)
      if (v->seen[i]) seen[slot_of(seen, slots - 1, v->seen[i])] = v->seen[i];
    free(v->seen);
    v->seen = seen;
    v->mask = slots - 1;
  }
  uint32_t j = slot_of(v->seen, v->mask, key);
  if (v->seen[j]) return false;
  v->seen[j] = key;
  v->n++;
  return true;
}

/* The table at `table` (a page) of the given level and the tables below it. */
static void visit_table(visit *v, uint64_t table, int level) {
  if (!first_visit(v, table | (uint64_t)level)) return;
  v->mark(v->c->guest, table);
  if (level == 1) return;
  const mv_mapping *m = mv__guest_find_mapping(v->c->guest, table);
  if (!m) return;   /* not in guest memory: no entries to follow */
  const unsigned char *page = m->vmo->mem + m->offset + (table - m->gpa);
  /* (most entries of most tables are not present: the loops test that first) */
  if (v->wide) {
    bool large_ok = level <= 3;   /* bit 7 maps a 1 GiB or 2 MiB page */
    for (int i = 0; i < 512; i++) {
      uint64_t e;
      memcpy(&e, page + 8 * i, 8);
      if ((e & 1) && !((e & 0x80) && large_ok)) visit_table(v, e & ADDR_MASK, level - 1);
    }
  } else {
    for (int i = 0; i < 1024; i++) {
      uint32_t e;
      memcpy(&e, page + 4 * i, 4);
      if ((e & 1) && !((e & 0x80) && v->pse)) visit_table(v, e & 0xfffff000u, level - 1);
    }
  }
}

void soft_paging_pages(mv_vcpu *c, void (*mark)(mv_guest *g, uint64_t gpa)) {
  uc_engine *uc = SV(c)->uc;
  uint64_t cr0 = reg(uc, UC_X86_REG_CR0), cr3 = reg(uc, UC_X86_REG_CR3), cr4 = reg(uc, UC_X86_REG_CR4);
  if (!(cr0 & CR0_PG)) return;
  visit v = { .c = c, .mark = mark, .wide = (cr4 & CR4_PAE) != 0, .pse = (cr4 & CR4_PSE) != 0 };
  if (SV(c)->mode == UC_MODE_64) visit_table(&v, cr3 & ADDR_MASK, 4);
  else if (!(cr4 & CR4_PAE)) visit_table(&v, cr3 & 0xfffff000u, 2);
  else {   /* PAE: four PDPT entries (32 bytes inside a page), then two 512-entry levels */
    mark(c->guest, cr3 & ~UINT64_C(0x1f));
    for (int i = 0; i < 4; i++) {
      uint64_t e = 0;
      if (read_phys(c, (cr3 & ~UINT64_C(0x1f)) + (uint64_t)i * 8, &e, 8) && (e & 1))
        visit_table(&v, e & ADDR_MASK, 2);
    }
  }
  free(v.seen);
}
