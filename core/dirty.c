/*
 * dirty.c - dirty-page tracking.  Two consumers want "pages written since
 * I last looked": guest:dirty_pages() and snapshot restore.  Guest writes
 * come from the backend's log (KVM_GET_DIRTY_LOG, Unicorn write hooks), host
 * writes from the VMO's bits (mv_vmo_write, mv_guest_write, loaders); both
 * are merged here into each consumer's bitmap, so neither steals the
 * other's pages.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static size_t words(const mv_mapping *m) { return (m->size / MV_PAGE_SIZE + 63) / 64; }

int mv__dirty_alloc(mv_mapping *m) {
  m->dirty_user = calloc(words(m), sizeof(uint64_t));
  m->dirty_snap = calloc(words(m), sizeof(uint64_t));
  m->dirty_maybe = calloc(words(m), sizeof(uint64_t));
  if (m->dirty_user && m->dirty_snap && m->dirty_maybe) return 0;
  mv__dirty_free(m);
  return -ENOMEM;
}

void mv__dirty_free(mv_mapping *m) {
  free(m->dirty_user);
  free(m->dirty_snap);
  free(m->dirty_maybe);
  m->dirty_user = m->dirty_snap = m->dirty_maybe = NULL;
}

int mv__dirty_collect(mv_guest *g, mv_mapping *m, bool exact, mv_err *err) {
  size_t n = words(m);
  if (m->tracked) {
    uint64_t *bits = calloc(n, sizeof *bits);
    if (!bits) return mv__fail(err, -ENOMEM, "guest: out of memory");
    int r = g->be->dirty_log(g, m, bits, err);
    if (r < 0) {
      free(bits);
      return r;
    }
    for (size_t i = 0; i < n; i++) {
      m->dirty_user[i] |= bits[i];
      m->dirty_snap[i] |= bits[i];
    }
    free(bits);
    /* pages written without a log entry were logged once before: they are
     * in dirty_user already (exact re-arms the log before that is consumed) */
    if (g->be->dirty_unlogged && (r = g->be->dirty_unlogged(g, m, m->dirty_maybe, exact, err)) < 0) return r;
  }
  uint64_t first = m->offset / MV_PAGE_SIZE, npages = m->size / MV_PAGE_SIZE;
  uint64_t *host = m->vmo->host_dirty;
  for (uint64_t p = 0; p < npages; p++) {
    uint64_t hp = first + p, hbit = UINT64_C(1) << (hp % 64);
    if (!(host[hp / 64] & hbit)) {
      if ((host[hp / 64] >> (hp % 64)) == 0) p += 63 - hp % 64;   /* nothing more in this word */
      continue;
    }
    host[hp / 64] &= ~hbit;
    m->dirty_user[p / 64] |= UINT64_C(1) << (p % 64);
    m->dirty_snap[p / 64] |= UINT64_C(1) << (p % 64);
  }
  return 0;
}

int mv__dirty_track_all(mv_guest *g, mv_err *err) {
  for (size_t i = 0; i < g->nmaps; i++) {
    mv_mapping *m = &g->maps[i];
    if (m->tracked) continue;
    int r = g->be->track(g, m, err);
    if (r < 0) return r;
    m->tracked = true;
  }
  g->tracking = true;
  return 0;
}
