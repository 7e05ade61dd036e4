/*
 * guest.c - guests (zx_guest_create) and their guest-physical memory
 * (zx_vmar_map): the sorted mapping table, host reads and writes through it,
 * and dirty-page tracking that merges guest writes (backend dirty log) with
 * host writes (the VMO's host-dirty bitmap).
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define GPA_LIMIT (UINT64_C(1) << 52)   /* x86-64 physical address width cap */

static const mv_backend_ops *backend_for(mv_backend_kind k) {
  switch (k) {
  case MV_BACKEND_KVM: return &mv__kvm_backend;
  case MV_BACKEND_SOFT: return &mv__soft_backend;
  }
  return NULL;
}

int mv_guest_create(const mv_guest_opts *opts, mv_guest **out, mv_err *err) {
  mv_guest_opts defaults = { .backend = MV_BACKEND_KVM };
  if (!opts) opts = &defaults;
  const mv_backend_ops *be = backend_for(opts->backend);
  if (!be) return mv__fail(err, -EINVAL, "guest: unknown backend %d", (int)opts->backend);
  mv_guest *g = calloc(1, sizeof *g);
  if (!g) return mv__fail(err, -ENOMEM, "guest: out of memory");
  g->be = be;
  g->refs = 1;
  int r = be->guest_create(g, opts, err);
  if (r < 0) {
    free(g);
    return r;
  }
  *out = g;
  return 0;
}

const char *mv_guest_backend_name(const mv_guest *g) { return g->be->name; }

void mv_guest_get_mechanisms(const mv_guest *g, mv_guest_mechanisms *out) {
  *out = (mv_guest_mechanisms){ .sync_regs = false, .dirty_log = "hooks" };
  if (g->be->mechanisms && !g->closed) g->be->mechanisms(g, out);
}
bool mv_guest_is_closed(const mv_guest *g) { return g->closed; }
void mv_guest_retain(mv_guest *g) { g->refs++; }

/* A guest's backend frees much heap when it closes (a Unicorn engine is tens
 * of MiB), into the middle of the process's heap, where later allocations
 * fragment it: thousands of guest lifecycles then keep hundreds of MiB
 * resident with nothing leaked.  When much lies free, hand it back
 * (malloc_trim costs milliseconds, so not after every guest). */
#define HEAP_FREE_MAX ((size_t)32 << 20)
static void give_back_free_heap(void) {
  struct mallinfo2 mi = mallinfo2();
  if (mi.fordblks > HEAP_FREE_MAX) malloc_trim(0);
}

void mv_guest_close(mv_guest *g) {
  if (g->closed) return;
  if (g->smp) {   /* inside guest:run (smp.c): it stops every VCPU, then closes */
    __atomic_store_n(&g->close_requested, true, __ATOMIC_RELEASE);
    mv_guest_stop(g);
    return;
  }
  for (int i = 0; i < g->nvcpus; i++)
    if (g->vcpus[i] && g->vcpus[i]->in_enter) {   /* from inside a callback: close when enter returns */
      g->close_requested = true;
      return;
    }
  if (g->rec) mv__rec_guest_closing(g);   /* writes the log's end while memory is there */
  for (int i = 0; i < g->nvcpus; i++)
    if (g->vcpus[i] && !g->vcpus[i]->destroyed) {
      g->be->vcpu_destroy(g->vcpus[i]);
      g->vcpus[i]->destroyed = true;
    }
  mv__traps_clear(g);
  for (size_t i = 0; i < g->nmaps; i++) {   /* the VM fd takes its slots along */
    mv__dirty_free(&g->maps[i]);
    g->maps[i].vmo->mappings--;
    mv_vmo_release(g->maps[i].vmo);
  }
  g->nmaps = 0;
  g->nbells = 0;
  g->be->guest_destroy(g);
  g->closed = true;
  give_back_free_heap();
}

void mv_guest_release(mv_guest *g) {
  if (!g || --g->refs > 0) return;
  mv_guest_close(g);
  free(g);
}

/* {====================================================== mappings */

static int free_slot(mv_guest *g) {
  for (int s = 0; s < 64; s++)
    if (!(g->slot_bits & (UINT64_C(1) << s))) return s;
  return -1;
}

int mv_guest_map(mv_guest *g, uint64_t gpa, mv_vmo *vmo, uint64_t offset,
                 uint64_t size, unsigned flags, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:map: guest is closed");
  if ((gpa | offset | size) % MV_PAGE_SIZE)
    return mv__fail(err, -EINVAL, "guest:map: gpa 0x%" PRIx64 ", offset 0x%" PRIx64 " and size 0x%" PRIx64
                    " must be multiples of the page size (0x1000)", gpa, offset, size);
  if (size == 0) return mv__fail(err, -EINVAL, "guest:map: size must be positive");
  if (offset > vmo->size || size > vmo->size - offset)
    return mv__fail(err, -ERANGE, "guest:map: offset 0x%" PRIx64 " + size 0x%" PRIx64 " exceeds the vmo (0x%" PRIx64 " bytes)",
                    offset, size, vmo->size);
  if (gpa >= GPA_LIMIT || size > GPA_LIMIT - gpa)
    return mv__fail(err, -ERANGE, "guest:map: range 0x%" PRIx64 "+0x%" PRIx64 " exceeds the guest-physical limit 2^52",
                    gpa, size);
  if (flags & ~(unsigned)(MV_MAP_READONLY | MV_MAP_LOG_DIRTY))
    return mv__fail(err, -EINVAL, "guest:map: unknown flags 0x%x", flags);
  size_t at = 0;
  for (; at < g->nmaps; at++) {
    const mv_mapping *m = &g->maps[at];
    if (gpa < m->gpa + m->size && m->gpa < gpa + size)
      return mv__fail(err, -EEXIST, "guest:map: range 0x%" PRIx64 "+0x%" PRIx64 " overlaps the mapping at 0x%" PRIx64,
                      gpa, size, m->gpa);
    if (m->gpa > gpa) break;
  }
  if (mv__trap_overlaps(&g->mem, gpa, size))
    return mv__fail(err, -EEXIST, "guest:map: range 0x%" PRIx64 "+0x%" PRIx64 " overlaps a mem or bell trap", gpa, size);
  int slot = free_slot(g);
  if (g->nmaps == MV_MAX_MAPPINGS || slot < 0)
    return mv__fail(err, -ENOSPC, "guest:map: too many mappings (at most %d)", MV_MAX_MAPPINGS);
  mv_mapping m = { .gpa = gpa, .size = size, .offset = offset, .flags = flags, .vmo = vmo, .slot = (uint32_t)slot,
                   .tracked = (flags & MV_MAP_LOG_DIRTY) != 0 };
  if (mv__dirty_alloc(&m) < 0) return mv__fail(err, -ENOMEM, "guest:map: out of memory");
  int r = g->be->map(g, &m, err);
  if (r == 0 && g->tracking && !m.tracked) {   /* snapshots need to see its writes too */
    r = g->be->track(g, &m, err);
    if (r < 0) g->be->unmap(g, &m, NULL);
    else m.tracked = true;
  }
  if (r < 0) {
    mv__dirty_free(&m);
    return r;
  }
  mv_vmo_retain(vmo);
  vmo->mappings++;
  vmo->mappings_made++;
  g->map_gen++;
  g->slot_bits |= UINT64_C(1) << slot;
  memmove(&g->maps[at + 1], &g->maps[at], (g->nmaps - at) * sizeof m);
  g->maps[at] = m;
  g->nmaps++;
  return g->rec ? mv__rec_map(g, gpa, size, flags, offset, vmo, err) : 0;
}

int mv_guest_unmap(mv_guest *g, uint64_t gpa, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:unmap: guest is closed");
  for (size_t i = 0; i < g->nmaps; i++) {
    if (g->maps[i].gpa != gpa) continue;
    mv_mapping m = g->maps[i];
    int r = g->rec ? mv__rec_unmap(g, gpa, err) : 0;
    if (r == 0) r = g->be->unmap(g, &m, err);
    if (r < 0) return r;
    memmove(&g->maps[i], &g->maps[i + 1], (g->nmaps - i - 1) * sizeof m);
    g->nmaps--;
    g->slot_bits &= ~(UINT64_C(1) << m.slot);
    mv__dirty_free(&m);
    m.vmo->mappings--;
    mv_vmo_release(m.vmo);
    g->map_gen++;
    g->base_snapshot = 0;   /* memory no longer matches any snapshot's layout */
    return 0;
  }
  return mv__fail(err, -ENOENT, "guest:unmap: no mapping starts at 0x%" PRIx64, gpa);
}

size_t mv_guest_mapping_count(const mv_guest *g) { return g->nmaps; }

bool mv_guest_mapping(const mv_guest *g, size_t i, mv_mapping_info *out) {
  if (i >= g->nmaps) return false;
  const mv_mapping *m = &g->maps[i];
  *out = (mv_mapping_info){ m->gpa, m->size, m->offset, m->flags, m->vmo };
  return true;
}

const mv_mapping *mv__guest_find_mapping(const mv_guest *g, uint64_t gpa) {
  size_t lo = 0, hi = g->nmaps;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (g->maps[mid].gpa + g->maps[mid].size <= gpa) lo = mid + 1;
    else hi = mid;
  }
  if (lo < g->nmaps && g->maps[lo].gpa <= gpa) return &g->maps[lo];
  return NULL;
}

/* {====================================================== host access */

/* Walks [gpa, gpa+len) mapping by mapping; fails before touching anything
 * when any byte of it is unmapped. */
int mv_guest_check_range(mv_guest *g, const char *what, uint64_t gpa, uint64_t len, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:%s: guest is closed", what);
  if (gpa + len < gpa)
    return mv__fail(err, -ERANGE, "guest:%s: range 0x%" PRIx64 "+0x%" PRIx64 " wraps around", what, gpa, len);
  for (uint64_t a = gpa; a < gpa + len;) {
    const mv_mapping *m = mv__guest_find_mapping(g, a);
    if (!m) return mv__fail(err, -EFAULT, "guest:%s: guest-physical address 0x%" PRIx64 " is not mapped", what, a);
    a = m->gpa + m->size;
  }
  return 0;
}

static int guest_copy(mv_guest *g, const char *what, uint64_t gpa, void *buf, const void *src,
                      uint64_t len, mv_err *err) {
  int r = mv_guest_check_range(g, what, gpa, len, err);
  if (r) return r;
  for (uint64_t done = 0; done < len;) {
    const mv_mapping *m = mv__guest_find_mapping(g, gpa + done);
    uint64_t in = gpa + done - m->gpa, n = m->size - in;
    if (n > len - done) n = len - done;
    uint64_t off = m->offset + in;
    if (src) {
      memcpy(m->vmo->mem + off, (const unsigned char *)src + done, n);
      mv__vmo_mark_dirty(m->vmo, off, n);
    } else {
      memcpy((unsigned char *)buf + done, m->vmo->mem + off, n);
    }
    done += n;
  }
  return 0;
}

int mv_guest_read(mv_guest *g, uint64_t gpa, void *dst, uint64_t len, mv_err *err) {
  return guest_copy(g, "read", gpa, dst, NULL, len, err);
}

int mv_guest_write(mv_guest *g, uint64_t gpa, const void *src, uint64_t len, mv_err *err) {
  if (g->rec && !g->closed) {   /* logged (or compared) only when it can happen */
    int r = mv_guest_check_range(g, "write", gpa, len, err);
    if (r == 0) r = mv__rec_hostw(g, gpa, src, len, "guest:write", err);
    if (r < 0) return r;
  }
  return guest_copy(g, "write", gpa, NULL, src, len, err);
}

int64_t mv_guest_dirty_pages(mv_guest *g, uint64_t gpa, uint64_t *pages, uint64_t max, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:dirty_pages: guest is closed");
  mv_mapping *m = (mv_mapping *)mv__guest_find_mapping(g, gpa);
  if (!m || m->gpa != gpa) return mv__fail(err, -ENOENT, "guest:dirty_pages: no mapping starts at 0x%" PRIx64, gpa);
  if (!(m->flags & MV_MAP_LOG_DIRTY))
    return mv__fail(err, -EINVAL, "guest:dirty_pages: the mapping at 0x%" PRIx64 " was not mapped with log_dirty", gpa);
  mv__smp_lock(g);   /* VCPU threads of guest:run harvest the dirty rings too */
  int r = mv__dirty_collect(g, m, true, err);
  mv__smp_unlock(g);
  if (r < 0) return r;
  int64_t count = 0;
  for (uint64_t p = 0; p < m->size / MV_PAGE_SIZE; p++) {
    if (!(m->dirty_user[p / 64] >> (p % 64) & 1)) continue;
    if ((uint64_t)count < max) pages[count] = p;
    count++;
  }
  memset(m->dirty_user, 0, (m->size / MV_PAGE_SIZE + 63) / 64 * sizeof(uint64_t));
  return count;
}
