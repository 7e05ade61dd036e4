/*
 * snapshot.c - guest snapshots: capture and restore of every VCPU's state
 * and of guest memory.  Restoring the snapshot memory last equalled copies
 * back only the pages dirtied since (dirty.c merges the guest's and the
 * host's writes); any other snapshot is restored by a full copy, which then
 * becomes the new base.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "snapshot.h"

static uint64_t next_id = 1;   /* snapshot ids: only compared for equality */

void mv_snapshot_free(mv_snapshot *s) {
  if (!s) return;
  for (int i = 0; i < s->nvcpus; i++) free(s->vcpus[i].blob);
  for (int i = 0; i < s->nmaps; i++) free(s->maps[i].data);
  free(s->guest_blob);
  free(s->vcpus);
  free(s->maps);
  free(s);
}

uint64_t mv_snapshot_memory_size(const mv_snapshot *s) {
  uint64_t n = 0;
  for (int i = 0; i < s->nmaps; i++) n += s->maps[i].size;
  return n;
}

int mv_snapshot_vcpu_count(const mv_snapshot *s) { return s->nvcpus; }
uint64_t mv_guest_last_restore_pages(const mv_guest *g) { return g->last_restore_pages; }

mv_snapshot *mv__snapshot_new(int nvcpus, int nmaps) {
  mv_snapshot *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
  s->nvcpus = nvcpus;
  s->nmaps = nmaps;
  s->vcpus = calloc(nvcpus ? (size_t)nvcpus : 1, sizeof *s->vcpus);
  s->maps = calloc(nmaps ? (size_t)nmaps : 1, sizeof *s->maps);
  if (!s->vcpus || !s->maps) {
    mv_snapshot_free(s);
    return NULL;
  }
  return s;
}

static int live_vcpus(mv_guest *g, mv_vcpu **out) {
  int n = 0;
  for (int i = 0; i < g->nvcpus; i++)
    if (g->vcpus[i] && !g->vcpus[i]->destroyed) out[n++] = g->vcpus[i];
  return n;
}

static int in_enter(mv_guest *g, const char *what, mv_err *err) {
  if (g->smp) return mv__fail(err, -EBUSY, "guest:%s: the guest's VCPUs are in guest:run (stop it first)", what);
  for (int i = 0; i < g->nvcpus; i++)
    if (g->vcpus[i] && g->vcpus[i]->in_enter)
      return mv__fail(err, -EBUSY, "guest:%s: a VCPU of this guest is running (called from a trap handler?)", what);
  return 0;
}

int mv_guest_snapshot(mv_guest *g, mv_snapshot **out, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:snapshot: guest is closed");
  int r = in_enter(g, "snapshot", err);
  if (r) return r;
  if (!g->tracking && (r = mv__dirty_track_all(g, err)) < 0) return r;
  for (size_t i = 0; i < g->nmaps; i++)   /* start a new round of dirty pages */
    if ((r = mv__dirty_collect(g, &g->maps[i], false, err)) < 0) return r;
  mv_vcpu *cpus[MV_MAX_VCPUS];
  int n = live_vcpus(g, cpus);
  mv_snapshot *s = mv__snapshot_new(n, (int)g->nmaps);
  if (!s) return mv__fail(err, -ENOMEM, "guest:snapshot: out of memory");
  for (int i = 0; i < n; i++) {
    mv_snap_vcpu *v = &s->vcpus[i];
    v->id = cpus[i]->id;
    if ((r = mv_vcpu_read_state(cpus[i], &v->regs, err)) < 0 || (r = mv_vcpu_read_sregs(cpus[i], &v->sregs, err)) < 0 ||
        (r = g->be->vcpu_save(cpus[i], &v->blob, &v->blob_len, err)) < 0)
      goto fail;
    v->portable = g->be == &mv__kvm_backend;
    memcpy(v->pending_irq, cpus[i]->pending_irq, sizeof v->pending_irq);
  }
  for (int i = 0; i < n; i++) cpus[i]->state_snap = s->id;
  for (size_t i = 0; i < g->nmaps; i++) {
    mv_mapping *m = &g->maps[i];
    mv_snap_map *sm = &s->maps[i];
    *sm = (mv_snap_map){ .gpa = m->gpa, .size = m->size, .flags = m->flags, .data = malloc(m->size) };
    if (!sm->data) {
      r = mv__fail(err, -ENOMEM, "guest:snapshot: out of memory for 0x%" PRIx64 " bytes", m->size);
      goto fail;
    }
    memcpy(sm->data, m->vmo->mem + m->offset, m->size);
    memset(m->dirty_snap, 0, (m->size / MV_PAGE_SIZE + 63) / 64 * sizeof(uint64_t));
    memset(m->dirty_maybe, 0, (m->size / MV_PAGE_SIZE + 63) / 64 * sizeof(uint64_t));
  }
  if (g->be->guest_save && (r = g->be->guest_save(g, &s->guest_blob, &s->guest_blob_len, err)) < 0) goto fail;
  s->backend = g->be->name;
  g->base_snapshot = s->id;
  *out = s;
  return 0;
fail:
  mv_snapshot_free(s);
  return r;
}

/* The snapshot must describe this guest: same mappings, same VCPUs. */
static int check_shape(mv_guest *g, const mv_snapshot *s, mv_vcpu **cpus, int n, mv_err *err) {
  if (s->nmaps != (int)g->nmaps)
    return mv__fail(err, -EINVAL, "guest:restore: the snapshot has %d mappings, the guest %zu", s->nmaps, g->nmaps);
  for (int i = 0; i < s->nmaps; i++)
    if (s->maps[i].gpa != g->maps[i].gpa || s->maps[i].size != g->maps[i].size)
      return mv__fail(err, -EINVAL, "guest:restore: the snapshot maps 0x%" PRIx64 "+0x%" PRIx64 ", the guest 0x%" PRIx64 "+0x%" PRIx64,
                      s->maps[i].gpa, s->maps[i].size, g->maps[i].gpa, g->maps[i].size);
  if (s->nvcpus != n) return mv__fail(err, -EINVAL, "guest:restore: the snapshot has %d VCPUs, the guest %d", s->nvcpus, n);
  for (int i = 0; i < n; i++)
    if (s->vcpus[i].id != cpus[i]->id)
      return mv__fail(err, -EINVAL, "guest:restore: the snapshot has VCPU %d where the guest has VCPU %d", s->vcpus[i].id, cpus[i]->id);
  return 0;
}

/* Copies back the pages written since the base snapshot (all of them when
 * not incremental); pages only maybe written are copied when they differ. */
static uint64_t restore_memory(mv_mapping *m, const mv_snap_map *sm, bool incremental) {
  uint64_t npages = m->size / MV_PAGE_SIZE, copied = 0;
  unsigned char *mem = m->vmo->mem + m->offset;
  for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
    uint64_t sure = incremental ? m->dirty_snap[w] : ~UINT64_C(0);
    uint64_t bits = incremental ? sure | m->dirty_maybe[w] : sure;
    m->dirty_maybe[w] = 0;
    while (bits) {
      uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits), bit = bits & -bits;
      bits &= bits - 1;
      if (p >= npages) break;
      if (!(sure & bit) && memcmp(mem + p * MV_PAGE_SIZE, sm->data + p * MV_PAGE_SIZE, MV_PAGE_SIZE) == 0)
        continue;
      memcpy(mem + p * MV_PAGE_SIZE, sm->data + p * MV_PAGE_SIZE, MV_PAGE_SIZE);
      m->dirty_user[p / 64] |= UINT64_C(1) << (p % 64);   /* a restore's writes are changes too */
      uint64_t vp = m->offset / MV_PAGE_SIZE + p;
      m->vmo->code_dirty[vp / 64] |= UINT64_C(1) << (vp % 64);
      copied++;
    }
    m->dirty_snap[w] = 0;
  }
  if (copied) m->vmo->host_writes++;
  return copied;
}

int mv_guest_restore(mv_guest *g, mv_snapshot *s, mv_err *err) {
  if (g->closed) return mv__fail(err, -EBADF, "guest:restore: guest is closed");
  int r = in_enter(g, "restore", err);
  if (r) return r;
  if (strcmp(s->backend, g->be->name) != 0)
    return mv__fail(err, -EINVAL, "guest:restore: a %s snapshot cannot go into a %s guest", s->backend, g->be->name);
  mv_vcpu *cpus[MV_MAX_VCPUS];
  int n = live_vcpus(g, cpus);
  if ((r = check_shape(g, s, cpus, n, err)) < 0) return r;
  if (!g->tracking && (r = mv__dirty_track_all(g, err)) < 0) return r;
  bool incremental = g->base_snapshot == s->id;
  uint64_t copied = 0;
  for (size_t i = 0; i < g->nmaps; i++)   /* first: the VCPUs' loads may look at what was written */
    if ((r = mv__dirty_collect(g, &g->maps[i], false, err)) < 0) return r;
  for (int i = 0; i < n; i++) {
    const mv_snap_vcpu *v = &s->vcpus[i];
    if ((r = mv_vcpu_write_sregs(cpus[i], &v->sregs, err)) < 0 || (r = mv_vcpu_write_state(cpus[i], &v->regs, err)) < 0)
      return r;
    if (v->blob) {
      bool same = incremental && cpus[i]->state_snap == s->id && g->be->vcpu_load_changed;
      cpus[i]->state_snap = 0;   /* until it is all in */
      r = (same ? g->be->vcpu_load_changed : g->be->vcpu_load)(cpus[i], v->blob, v->blob_len, err);
      if (r < 0) return r;
      cpus[i]->state_snap = s->id;
    }
    memcpy(cpus[i]->pending_irq, v->pending_irq, sizeof v->pending_irq);
    cpus[i]->npending_irq = 0;
    for (int w = 0; w < 8; w++) cpus[i]->npending_irq += __builtin_popcount(v->pending_irq[w]);
    cpus[i]->kick_pending = 0;
  }
  for (size_t i = 0; i < g->nmaps; i++) copied += restore_memory(&g->maps[i], &s->maps[i], incremental);
  if (g->be->guest_load && (s->guest_blob || g->be == &mv__kvm_backend) &&
      (r = g->be->guest_load(g, s->guest_blob, s->guest_blob_len, err)) < 0)
    return r;
  g->nbells = 0;   /* doorbells rung after the snapshot never happened */
  g->base_snapshot = s->id;
  g->last_restore_pages = copied;
  return 0;
}
