/*
 * lstats.c - where a guest's time goes: cpu:stats() (exits by type, trap
 * calls and handler time), g:timing(on), and g:trace(path), which writes
 * every exit as a Chrome trace event (JSON, opened by Perfetto's UI and
 * chrome://tracing): one complete event ("ph":"X") per handled access or
 * returned exit, on a track per VCPU.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "lmoonvisor.h"

struct lmv_trace {
  FILE *f;
  uint64_t t0_ns;   /* ts 0 in the file */
  int events;
};

static const char *const kind_names[] = { "io", "mem", "bell" };

static void trace_event(void *cookie, const mv_vcpu *cpu, const mv_exit *e, uint64_t start_ns, uint64_t dur_ns) {
  lmv_trace *t = cookie;
  double ts = (double)(start_ns - t->t0_ns) / 1000.0, dur = (double)dur_ns / 1000.0;
  const char *type = mv_exit_type_name(e->type);
  fprintf(t->f, "%s{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,", t->events ? ",\n" : "",
          (int)getpid(), mv_vcpu_id(cpu), ts, dur);
  if (e->type == MV_EXIT_IO || e->type == MV_EXIT_MEM || e->type == MV_EXIT_BELL)
    fprintf(t->f, "\"name\":\"%s 0x%" PRIx64 " %s\",\"cat\":\"%s\",\"args\":{\"size\":%u,\"data\":\"0x%" PRIx64
            "\",\"trap\":%u}}", type, e->addr, e->write ? "write" : "read", e->trap_id ? "handler" : "exit",
            e->size, e->data, e->trap_id);
  else
    fprintf(t->f, "\"name\":\"%s\",\"cat\":\"exit\",\"args\":{\"rip\":\"0x%" PRIx64 "\"}}", type, e->rip);
  t->events++;
}

void lmv_trace_close(LGuest *g) {
  if (!g->trace) return;
  if (g->g) mv_guest_set_trace(g->g, NULL, NULL);
  fputs("\n]}\n", g->trace->f);
  fclose(g->trace->f);
  free(g->trace);
  g->trace = NULL;
}

/* g:trace(path) starts writing (replacing any earlier trace); g:trace()
 * stops and closes the file. */
static int guest_trace(lua_State *L) {
  lmv_checkguest(L, 1, "guest:trace");
  LGuest *g = lmv_toguest(L, 1);
  lmv_trace_close(g);
  if (lua_isnoneornil(L, 2)) return 0;
  const char *path = lmv_checklstring(L, 2, NULL, "guest:trace", "path");
  lmv_trace *t = calloc(1, sizeof *t);
  if (!t) return luaL_error(L, "guest:trace: out of memory");
  t->f = fopen(path, "w");
  if (!t->f) {
    free(t);
    return luaL_error(L, "guest:trace: %s: cannot open for writing", path);
  }
  fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", t->f);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  t->t0_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  g->trace = t;
  mv_guest_set_trace(g->g, trace_event, t);
  return 0;
}

static int guest_timing(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:timing");
  if (!lua_isboolean(L, 2)) return luaL_error(L, "guest:timing: expected a boolean, got %s", lmv_typename(L, 2));
  mv_guest_set_timing(g, lua_toboolean(L, 2));
  return 0;
}

static void set_int(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* cpu:stats() -> { exits = { type = n }, handled = { type = n }, handler_ns,
 *                  traps = { { kind, addr, size, calls, time_ns }, ... } } */
static int vcpu_stats(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:stats");
  mv_vcpu_stats st;
  mv_vcpu_stats_get(v->cpu, &st);
  lua_createtable(L, 0, 4);
  const uint64_t *counts[2] = { st.exits, st.handled };
  const char *names[2] = { "exits", "handled" };
  for (int k = 0; k < 2; k++) {
    lua_newtable(L);
    for (int t = 0; t < MV_EXIT_TYPE_COUNT; t++)
      if (counts[k][t]) set_int(L, mv_exit_type_name((mv_exit_type)t), counts[k][t]);
    lua_setfield(L, -2, names[k]);
  }
  set_int(L, "handler_ns", st.handler_ns);
  mv_guest *g = mv_vcpu_guest(v->cpu);
  lua_createtable(L, (int)mv_guest_trap_count(g), 0);
  mv_trap_stats ts;
  for (size_t i = 0; mv_guest_trap_stats(g, i, &ts); i++) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kind_names[ts.kind]);
    lua_setfield(L, -2, "kind");
    set_int(L, "addr", ts.addr);
    set_int(L, "size", ts.size);
    set_int(L, "calls", ts.calls);
    set_int(L, "time_ns", ts.ns);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "traps");
  return 1;
}

static const luaL_Reg guest_methods[] = { { "trace", guest_trace }, { "timing", guest_timing }, { NULL, NULL } };
static const luaL_Reg vcpu_methods[] = { { "stats", vcpu_stats }, { NULL, NULL } };

/* stack: module table */
int lmv_open_stats(lua_State *L) {
  lmv_add_methods(L, "Guest", guest_methods);
  lmv_add_methods(L, "Vcpu", vcpu_methods);
  return 0;
}
