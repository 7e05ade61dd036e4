/*
 * stats.c - exit statistics and the trace hook.  Every trap callback runs
 * through mv__access_trap_path (internal.h), which counts it and, only when
 * timing or tracing is on (g->hooked), comes here to read the clock around
 * it; with both off an exit costs two increments.
 */
#include <string.h>
#include <time.h>
#include "internal.h"

uint64_t mv__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int mv__call_trap_timed(mv_vcpu *c, mv_trap *tr, mv_exit *e, uint64_t *value) {
  mv_guest *g = c->guest;
  int id = tr->id;
  uint64_t t0 = mv__now_ns();
  int r = tr->fn(tr->cookie, c, e, value);
  uint64_t dt = mv__now_ns() - t0;
  c->stats.handler_ns += dt;
  mv_trap *still = mv__trap_find(e->type == MV_EXIT_IO ? &g->io : &g->mem, e->addr);
  if (still && still->id == id) still->ns += dt;   /* the callback may have removed it */
  if (g->trace) {
    if (!e->write && r != MV_TRAP_FAIL) e->data = *value;
    g->trace(g->trace_cookie, c, e, t0, dt);
  }
  return r;
}

void mv__note_exit(mv_vcpu *c, const mv_exit *e, uint64_t start_ns) {
  c->stats.exits[e->type < MV_EXIT_TYPE_COUNT ? e->type : MV_EXIT_UNKNOWN]++;
  mv_guest *g = c->guest;
  if (__atomic_load_n(&g->trace, __ATOMIC_RELAXED)) {
    mv__smp_lock(g);   /* VCPU threads of guest:run share the trace */
    if (g->trace) g->trace(g->trace_cookie, c, e, start_ns, mv__now_ns() - start_ns);
    mv__smp_unlock(g);
  }
}

void mv_vcpu_stats_get(const mv_vcpu *c, mv_vcpu_stats *out) { *out = c->stats; }

void mv_guest_set_timing(mv_guest *g, bool on) {
  g->timing = on;
  mv__guest_rehook(g);
}

void mv_guest_set_trace(mv_guest *g, mv_trace_fn fn, void *cookie) {
  mv__smp_lock(g);   /* a handler may start or stop it while other VCPUs run */
  __atomic_store_n(&g->trace, fn, __ATOMIC_RELAXED);
  g->trace_cookie = cookie;
  mv__guest_rehook(g);
  mv__smp_unlock(g);
}

bool mv_guest_trap_stats(const mv_guest *g, size_t i, mv_trap_stats *out) {
  const mv_trap *tr;
  if (i < g->io.count) tr = &g->io.items[i];
  else if (i - g->io.count < g->mem.count) tr = &g->mem.items[i - g->io.count];
  else return false;
  *out = (mv_trap_stats){ tr->id, tr->kind, tr->addr, tr->size, tr->calls, tr->ns };
  return true;
}
