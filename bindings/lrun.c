/*
 * lrun.c - guest:run{ cpu0, cpu1, ... } (several VCPUs at once: the core's
 * mv_guest_run), guest:stop() and the Lua lock.
 *
 * During a run every VCPU gets a Lua thread of its own (a coroutine of the
 * caller's state, laid out as cpu:enter lays out its stack, so lguest.c's
 * trap callback works unchanged) and the Lua lock: a mutex that a handler
 * holds while it runs.  On KVM each VCPU has an OS thread, so handlers of
 * different VCPUs would otherwise meet in the one Lua state; the caller's
 * thread waits in C, outside Lua, until the run ends.  C trap callbacks and
 * ioeventfd doorbells never take it.  There is one lock per Lua state, so a
 * run started from a handler of another run (of another guest) shares it:
 * the handler's thread lets go of it while it waits for the inner run.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include "lmoonvisor.h"

struct lmv_lock {
  pthread_mutex_t mu;
};

static _Thread_local bool holding;   /* this thread holds the Lua lock (it runs a handler) */

void lmv_lock_acquire(lmv_lock *k) {
  pthread_mutex_lock(&k->mu);
  holding = true;
}

void lmv_lock_release(lmv_lock *k) {
  holding = false;
  pthread_mutex_unlock(&k->mu);
}

#define MV_LUA_LOCK "moonvisor.LuaLock"
static const char lock_key = 0;

static int lock_gc(lua_State *L) {
  lmv_lock *k = luaL_checkudata(L, 1, MV_LUA_LOCK);
  pthread_mutex_destroy(&k->mu);
  return 0;
}

/* The Lua state's lock, made with its first run. */
static lmv_lock *state_lock(lua_State *L) {
  lmv_lock *k;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &lock_key) == LUA_TUSERDATA) {
    k = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return k;
  }
  lua_pop(L, 1);
  k = lua_newuserdatauv(L, sizeof *k, 0);
  pthread_mutex_init(&k->mu, NULL);
  if (luaL_newmetatable(L, MV_LUA_LOCK)) {
    lua_pushcfunction(L, lock_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &lock_key);
  return k;
}

/* The guest the thread waits in guest:run for, for the SIGINT handler. */
static _Thread_local mv_guest *volatile waiting_in;

int lmv_stop_running(void) {
  mv_guest *g = waiting_in;
  if (!g) return 0;
  mv_guest_stop(g);
  return 1;
}

static const char *const reasons[] = { "stop", "halted", "timeout", "exit" };

/* timeout_ms and quantum of the options at idx. */
static void run_options(lua_State *L, int idx, mv_run_opts *o) {
  int isnum = 0;
  if (lua_getfield(L, idx, "timeout_ms") != LUA_TNIL) {
    lua_Number ms = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumberx(L, -1, &isnum) : 0;
    if (!isnum || !(ms >= 0) || ms > 1e9)
      luaL_error(L, "guest:run: timeout_ms must be a number of milliseconds in 0..1e9, got %s",
                 isnum ? lua_tostring(L, -1) : lmv_typename(L, -1));
    o->timeout_ns = (uint64_t)(ms * 1e6);
    if (ms > 0 && o->timeout_ns == 0) o->timeout_ns = 1;
  }
  if (lua_getfield(L, idx, "quantum") != LUA_TNIL) {
    lua_Integer q = lua_tointegerx(L, -1, &isnum);
    if (!isnum || q < 1 || q > ((lua_Integer)1 << 40))
      luaL_error(L, "guest:run: quantum must be a number of instructions in 1..2^40, got %s",
                 lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                                                 : lmv_typename(L, -1));
    o->quantum = (uint64_t)q;
  }
  lua_pop(L, 2);
}

/* Raises the failing handler's error (kept in the VCPU's user value 3 by
 * lguest.c) with the VCPU, the exit and the traceback. */
static int raise_handler_error(lua_State *L, int vcpu, const mv_exit *e) {
  LVcpu *v = lua_touserdata(L, vcpu);
  lua_getiuservalue(L, vcpu, 3);
  const char *msg = lua_tostring(L, -1);
  char hex[20];
  if (!msg) msg = "the handler could not be called (Lua stack exhausted)";
  int id = v->cpu ? mv_vcpu_id(v->cpu) : -1;
  if (e->type == MV_EXIT_IO)
    lua_pushfstring(L, "guest:run: vcpu %d: io handler for port %s (%s, %d bytes) failed: %s", id, lmv_hex(hex, e->addr),
                    e->write ? "out" : "in", (int)e->size, msg);
  else
    lua_pushfstring(L, "guest:run: vcpu %d: %s handler for %s (%s, %d bytes) failed: %s", id, mv_exit_type_name(e->type),
                    lmv_hex(hex, e->addr), e->write ? "write" : "read", (int)e->size, msg);
  lua_pushnil(L);
  lua_setiuservalue(L, vcpu, 3);
  return lua_error(L);
}

/* g:run{ cpu0, cpu1, ..., timeout_ms = N, quantum = N } or g:run({ cpu0, ... }, { timeout_ms = N, ... })
 * -> { reason, cpu, exit, turns } */
static int guest_run(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:run");
  lmv_checktable(L, 2, "guest:run", "the VCPU list");
  if (!lua_isnoneornil(L, 3)) lmv_checktable(L, 3, "guest:run", "options");
  mv_run_opts o = { 0 };
  run_options(L, lua_istable(L, 3) ? 3 : 2, &o);   /* g:run{ cpus..., opts } or g:run(cpus, opts) */
  lua_settop(L, 2);
  lua_Integer n = luaL_len(L, 2);
  if (n < 1) return luaL_error(L, "guest:run: no VCPUs given (g:run{ cpu0, cpu1, ... })");
  if (n > 64) return luaL_error(L, "guest:run: %I VCPUs given (at most 64)", (LUAI_UACINT)n);
  if (mv_guest_running(g)) return luaL_error(L, "guest:run: the guest is running already (guest:run from a trap handler?)");
  luaL_checkstack(L, (int)n * 2 + 8, "guest:run");
  mv_vcpu *cpus[64];
  LVcpu *lv[64];
  int first = lua_gettop(L) + 1;   /* stack: guest, list, n VCPUs, n threads */
  for (int i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    LVcpu *v = luaL_testudata(L, -1, MV_VCPU);
    if (!v) return luaL_error(L, "guest:run: [%d] must be a moonvisor.Vcpu, got %s", i + 1, lmv_typename(L, -1));
    if (!v->cpu) return luaL_error(L, "guest:run: [%d] is a closed vcpu", i + 1);
    if (mv_vcpu_guest(v->cpu) != g) return luaL_error(L, "guest:run: [%d] (vcpu %d) belongs to another guest", i + 1, mv_vcpu_id(v->cpu));
    if (v->L) return luaL_error(L, "guest:run: vcpu %d is inside cpu:enter (guest:run from its trap handler?)", mv_vcpu_id(v->cpu));
    for (int j = 0; j < i; j++)
      if (lv[j] == v) return luaL_error(L, "guest:run: vcpu %d is listed twice", mv_vcpu_id(v->cpu));
    lv[i] = v;
    cpus[i] = v->cpu;
  }
  for (int i = 0; i < n; i++) {   /* each VCPU's Lua thread, laid out as cpu:enter's stack */
    lua_State *T = lua_newthread(L);
    luaL_checkstack(T, 16, "guest:run");
    lua_pushvalue(L, first + i);
    lua_xmove(L, T, 1);                /* base: the VCPU */
    lua_getiuservalue(T, 1, 2);        /* base+1: its exit table */
    lua_pushcfunction(T, lmv_msghandler);   /* base+2 */
    lua_getiuservalue(T, 1, 1);
    lua_getiuservalue(T, -1, 1);       /* base+3: the guest's handlers */
    lua_remove(T, -2);
    lmv_pushkeys(T);                   /* base+4 */
    lua_pushnil(T);                    /* base+5: the last handler called */
  }
  lmv_lock *k = state_lock(L);
  for (int i = 0; i < n; i++) {
    lv[i]->L = lua_tothread(L, first + (int)n + i);
    lv[i]->base = 1;
    lmv_forget_handler(lv[i]);   /* fast_key 0: no short path while the lock is needed (lguest.c) */
    lv[i]->lock = k;
  }
  mv_run_result res;
  mv_err err;
  mv_guest *outer = waiting_in;
  waiting_in = g;
  bool held = holding;   /* a run from a handler of another run: its VCPUs' handlers need the lock */
  if (held) lmv_lock_release(k);
  int r = mv_guest_run(g, cpus, (int)n, &o, &res, &err);
  if (held) lmv_lock_acquire(k);
  waiting_in = outer;
  for (int i = 0; i < n; i++) {
    lv[i]->L = NULL;
    lv[i]->lock = NULL;
  }
  if (r < 0) {
    LGuest *lg = lmv_toguest(L, 1);
    if (lg->g && mv_guest_is_closed(lg->g)) {   /* closed by a handler: as guest:close would */
      lmv_trace_close(lg);
      mv_guest_release(lg->g);
      lg->g = NULL;
    }
    return lmv_raise(L, &err);
  }
  if (res.reason == MV_RUN_EXIT && res.exit.handler_failed) return raise_handler_error(L, first + res.cpu, &res.exit);
  lmv_pushkeys(L);
  int keys = lua_gettop(L);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, reasons[res.reason]);
  lua_setfield(L, -2, "reason");
  if (res.cpu >= 0) {
    lua_pushvalue(L, first + res.cpu);
    lua_setfield(L, -2, "cpu");
  }
  if (res.reason == MV_RUN_EXIT) {
    lmv_pushexit(L, keys, &res.exit);
    lua_setfield(L, -2, "exit");
  }
  lua_pushinteger(L, (lua_Integer)res.turns);
  lua_setfield(L, -2, "turns");
  return 1;
}

static int guest_stop(lua_State *L) {
  mv_guest_stop(lmv_checkguest(L, 1, "guest:stop"));
  return 0;
}

static const luaL_Reg run_methods[] = {
  { "run", guest_run }, { "stop", guest_stop }, { NULL, NULL },
};

int lmv_open_run(lua_State *L) {
  lmv_add_methods(L, "Guest", run_methods);
  return 0;
}
