/*
 * trap.c - the trap table (zx_guest_set_trap): IO port ranges in one sorted
 * array, MMIO and doorbell ranges in another, each searched by binary search
 * so dispatch costs O(log n) however many traps a guest has.  An access is
 * claimed by the trap whose range holds its first address.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

/* Index of the first trap whose range ends after addr. */
static size_t lower_bound(const mv_trap_table *t, uint64_t addr) {
  size_t lo = 0, hi = t->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const mv_trap *tr = &t->items[mid];
    if (tr->addr + tr->size <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* mv__trap_find's search when the last trap found does not hold addr. */
mv_trap *mv__trap_search(mv_trap_table *t, uint64_t addr) {
  size_t i = lower_bound(t, addr);
  if (i < t->count && t->items[i].addr <= addr) return t->hit = &t->items[i];
  return NULL;
}

bool mv__trap_overlaps(const mv_trap_table *t, uint64_t addr, uint64_t size) {
  size_t i = lower_bound(t, addr);
  return i < t->count && t->items[i].addr < addr + size;
}

static int table_insert(mv_trap_table *t, const mv_trap *tr) {
  if (t->count == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    mv_trap *items = realloc(t->items, cap * sizeof *items);
    if (!items) return -ENOMEM;
    t->items = items;
    t->cap = cap;
  }
  size_t i = lower_bound(t, tr->addr);
  memmove(&t->items[i + 1], &t->items[i], (t->count - i) * sizeof *tr);
  t->items[i] = *tr;
  t->count++;
  t->hit = NULL;   /* the items moved */
  return 0;
}

static const char *kind_name(mv_trap_kind k) {
  return k == MV_TRAP_IO ? "io" : k == MV_TRAP_MEM ? "mem" : "bell";
}

int mv_guest_set_trap(mv_guest *g, mv_trap_kind kind, uint64_t addr, uint64_t size,
                      mv_trap_fn fn, mv_trap_release_fn release, void *cookie,
                      mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:trap: guest is closed");
  if (kind > MV_TRAP_BELL) return mv__fail(err, -EINVAL, "guest:trap: unknown kind %d", (int)kind);
  if (size == 0) return mv__fail(err, -EINVAL, "guest:trap: size must be positive");
  uint64_t limit = kind == MV_TRAP_IO ? 0x10000 : UINT64_C(1) << 52;
  if (addr >= limit || size > limit - addr)
    return mv__fail(err, -ERANGE, "guest:trap: %s range 0x%" PRIx64 "+0x%" PRIx64 " exceeds 0x%" PRIx64,
                    kind_name(kind), addr, size, limit);
  mv_trap_table *t = kind == MV_TRAP_IO ? &g->io : &g->mem;
  if (mv__trap_overlaps(t, addr, size))
    return mv__fail(err, -EEXIST, "guest:trap: %s range 0x%" PRIx64 "+0x%" PRIx64 " overlaps an existing trap",
                    kind_name(kind), addr, size);
  if (kind != MV_TRAP_IO) {
    for (size_t i = 0; i < g->nmaps; i++) {
      const mv_mapping *m = &g->maps[i];
      if (addr < m->gpa + m->size && m->gpa < addr + size)
        return mv__fail(err, -EEXIST, "guest:trap: %s range 0x%" PRIx64 "+0x%" PRIx64
                        " overlaps memory mapped at 0x%" PRIx64 " (map memory around device ranges)",
                        kind_name(kind), addr, size, m->gpa);
    }
  }
  mv_trap tr = { .id = ++g->next_trap_id, .kind = kind, .addr = addr, .size = size,
                 .fn = fn, .release = release, .cookie = cookie, .bell_fd = -1 };
  if (kind == MV_TRAP_BELL && g->be->bell_add) {
    int r = g->be->bell_add(g, &tr, err);
    if (r < 0) return r;
  }
  mv__smp_lock(g);   /* VCPU threads of guest:run look traps up */
  int ins = table_insert(t, &tr);
  mv__smp_unlock(g);
  if (ins < 0) {
    if (tr.bell_fd >= 0) g->be->bell_remove(g, &tr);
    return mv__fail(err, -ENOMEM, "guest:trap: out of memory");
  }
  return tr.id;
}

/* Drops the trap at index i of t, running its release callback. */
static void table_remove_at(mv_guest *g, mv_trap_table *t, size_t i) {
  mv_trap tr = t->items[i];
  memmove(&t->items[i], &t->items[i + 1], (t->count - i - 1) * sizeof tr);
  t->count--;
  t->hit = NULL;
  if (tr.bell_fd >= 0) g->be->bell_remove(g, &tr);
  for (int b = 0; b < g->nbells; b++)   /* queued writes of a removed bell go nowhere */
    if (g->bells[b].trap_id == tr.id) g->bells[b].trap_id = 0;
  if (tr.release) tr.release(tr.cookie);
}

/* The table holding trap trap_id (its index in *index), or NULL. */
static mv_trap_table *table_with(mv_guest *g, int trap_id, size_t *index) {
  mv_trap_table *tables[2] = { &g->io, &g->mem };
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < tables[k]->count; i++)
      if (tables[k]->items[i].id == trap_id) {
        *index = i;
        return tables[k];
      }
  return NULL;
}

int mv_guest_remove_trap(mv_guest *g, int trap_id, mv_err *err) {
  size_t i;
  mv_trap_table *t = table_with(g, trap_id, &i);
  if (!t) return mv__fail(err, -ENOENT, "trap:remove: no trap %d in this guest", trap_id);
  if (g->threaded && t->items[i].release)   /* its cookie may be in use on a VCPU thread */
    return mv__fail(err, -EBUSY, "trap:remove: trap %d has a C callback and the guest's VCPUs run on "
                    "threads (guest:run): remove it once the run returned", trap_id);
  mv__smp_lock(g);
  table_remove_at(g, t, i);
  mv__smp_unlock(g);
  return 0;
}

int mv_guest_set_trap_cookie(mv_guest *g, int trap_id, void *cookie, mv_err *err) {
  size_t i;
  mv_trap_table *t = table_with(g, trap_id, &i);
  if (!t) return mv__fail(err, -ENOENT, "trap:handler: no trap %d in this guest", trap_id);
  if (t->items[i].release)
    return mv__fail(err, -EINVAL, "trap:handler: trap %d has a release callback: its cookie cannot change", trap_id);
  mv__smp_lock(g);   /* VCPU threads of guest:run call it */
  t->items[i].cookie = cookie;
  mv__smp_unlock(g);
  return 0;
}

size_t mv_guest_trap_count(const mv_guest *g) { return g->io.count + g->mem.count; }

void mv__traps_clear(mv_guest *g) {
  while (g->io.count) table_remove_at(g, &g->io, g->io.count - 1);
  while (g->mem.count) table_remove_at(g, &g->mem, g->mem.count - 1);
  free(g->io.items);
  free(g->mem.items);
  memset(&g->io, 0, sizeof g->io);
  memset(&g->mem, 0, sizeof g->mem);
}

/* Delivers doorbell writes: those queued from exits and those the backend
 * collected on its own (kvm ioeventfd).  Callbacks run in arrival order for
 * queued ones; a callback's MV_TRAP_FAIL stops delivery and is reported. */
int mv__bells_drain(mv_guest *g, mv_vcpu *cpu, mv_exit *failed) {
  if (g->threaded) return mv__smp_bells_drain(g, cpu, failed);   /* VCPU threads: smp.c */
  for (int b = 0; b < g->nbells; b++) {
    mv_trap *tr = g->bells[b].trap_id ? mv__trap_find(&g->mem, g->bells[b].addr) : NULL;
    if (!tr || tr->id != g->bells[b].trap_id) continue;
    mv_exit e = { .type = MV_EXIT_BELL, .addr = g->bells[b].addr, .write = true, .trap_id = tr->id };
    uint64_t ignored = 0;
    if (mv__call_trap(cpu, tr, &e, &ignored) == MV_TRAP_FAIL) {
      memmove(&g->bells[0], &g->bells[b + 1], (size_t)(g->nbells - b - 1) * sizeof g->bells[0]);
      g->nbells -= b + 1;
      e.handler_failed = true;
      *failed = e;
      return MV_TRAP_FAIL;
    }
  }
  g->nbells = 0;
  if (!g->be->bell_take) return MV_TRAP_DONE;
  for (size_t i = 0; i < g->mem.count && !g->closed; i++) {
    if (g->mem.items[i].bell_fd < 0) continue;
    uint64_t addr = g->mem.items[i].addr;
    int id = g->mem.items[i].id;
    for (uint64_t n = g->be->bell_take(g, &g->mem.items[i]); n > 0; n--) {
      mv_trap *tr = mv__trap_find(&g->mem, addr);   /* a callback may remove traps */
      if (!tr || tr->id != id) break;
      mv_exit e = { .type = MV_EXIT_BELL, .addr = addr, .write = true, .trap_id = id };
      uint64_t ignored = 0;
      if (mv__call_trap(cpu, tr, &e, &ignored) == MV_TRAP_FAIL) {
        e.handler_failed = true;
        *failed = e;
        return MV_TRAP_FAIL;
      }
    }
  }
  return MV_TRAP_DONE;
}
