/*
 * lguest.c - the moonvisor.Guest userdata (mv.guest{...}): mappings, host
 * access to guest-physical memory, traps with Lua handlers, VCPU creation,
 * dirty pages, close.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "lmoonvisor.h"

LGuest *lmv_toguest(lua_State *L, int idx) { return luaL_testudata(L, idx, MV_GUEST); }

mv_guest *lmv_checkguest(lua_State *L, int idx, const char *what) {
  LGuest *g = lmv_toguest(L, idx);
  if (!g) {
    luaL_error(L, "%s: expected a moonvisor.Guest, got %s", what, lmv_typename(L, idx));
    return NULL;
  }
  if (!g->g || mv_guest_is_closed(g->g)) luaL_error(L, "%s: attempt to use a closed guest", what);
  return g->g;
}

static int opt_bool(lua_State *L, int t, const char *key, const char *what) {
  int ty = lua_getfield(L, t, key);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
    return luaL_error(L, "%s: option '%s' must be a boolean, got %s", what, key, lua_typename(L, ty));
  return v;
}

static int guest_new(lua_State *L) {
  mv_guest_opts opts = { .backend = MV_BACKEND_KVM };
  if (!lua_isnoneornil(L, 1)) {
    lmv_checktable(L, 1, "mv.guest", "options");
    opts.irqchip = opt_bool(L, 1, "irqchip", "mv.guest");
    if (lua_getfield(L, 1, "sync_regs") != LUA_TNIL) opts.no_sync_regs = !opt_bool(L, 1, "sync_regs", "mv.guest");
    if (lua_getfield(L, 1, "dirty_ring") != LUA_TNIL) opts.no_dirty_ring = !opt_bool(L, 1, "dirty_ring", "mv.guest");
    lua_pop(L, 2);
    if (lua_getfield(L, 1, "backend") != LUA_TNIL) {
      const char *b = lua_tostring(L, -1);
      if (lua_type(L, -1) != LUA_TSTRING || (strcmp(b, "kvm") && strcmp(b, "soft")))
        return luaL_error(L, "mv.guest: backend must be \"kvm\" or \"soft\", got %s",
                          lua_type(L, -1) == LUA_TSTRING ? b : luaL_typename(L, -1));
      opts.backend = strcmp(b, "soft") == 0 ? MV_BACKEND_SOFT : MV_BACKEND_KVM;
    }
    lua_pop(L, 1);
  }
  LGuest *g = lua_newuserdatauv(L, sizeof *g, 1);
  g->g = NULL;
  g->trace = NULL;
  luaL_setmetatable(L, MV_GUEST);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);   /* trap id -> handler */
  mv_err err;
  if (mv_guest_create(&opts, &g->g, &err) < 0) return lmv_raise_renamed(L, "mv.guest", "guest", &err);
  return 1;
}

static int guest_map(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:map");
  lua_Integer gpa = lmv_checkint(L, 2, "guest:map", "gpa");
  mv_vmo *vmo = lmv_checkvmo(L, 3, "guest:map");
  lua_Integer offset = 0, size = (lua_Integer)mv_vmo_size(vmo);
  unsigned flags = 0;
  if (!lua_isnoneornil(L, 4)) {
    lmv_checktable(L, 4, "guest:map", "options");
    if (lua_getfield(L, 4, "offset") != LUA_TNIL) offset = lmv_checkint(L, -1, "guest:map", "offset");
    if (lua_getfield(L, 4, "size") != LUA_TNIL) size = lmv_checkint(L, -1, "guest:map", "size");
    lua_pop(L, 2);
    if (opt_bool(L, 4, "readonly", "guest:map")) flags |= MV_MAP_READONLY;
    if (opt_bool(L, 4, "log_dirty", "guest:map")) flags |= MV_MAP_LOG_DIRTY;
  }
  if (gpa < 0 || offset < 0 || size < 0)
    return luaL_error(L, "guest:map: negative gpa, offset or size (%I, %I, %I)", (LUAI_UACINT)gpa,
                      (LUAI_UACINT)offset, (LUAI_UACINT)size);
  mv_err err;
  if (mv_guest_map(g, (uint64_t)gpa, vmo, (uint64_t)offset, (uint64_t)size, flags, &err) < 0)
    return lmv_raise(L, &err);
  return 0;
}

static int guest_unmap(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:unmap");
  lua_Integer gpa = lmv_checkint(L, 2, "guest:unmap", "gpa");
  mv_err err;
  if (mv_guest_unmap(g, (uint64_t)gpa, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

static int guest_read(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:read");
  lua_Integer gpa = lmv_checkint(L, 2, "guest:read", "gpa");
  lua_Integer len = lmv_checkint(L, 3, "guest:read", "length");
  if (len < 0) return luaL_error(L, "guest:read: length %I is negative", (LUAI_UACINT)len);
  mv_err err;
  if (mv_guest_check_range(g, "read", (uint64_t)gpa, (uint64_t)len, &err) < 0) return lmv_raise(L, &err);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)len);
  if (mv_guest_read(g, (uint64_t)gpa, p, (uint64_t)len, &err) < 0) return lmv_raise(L, &err);
  luaL_pushresultsize(&b, (size_t)len);
  return 1;
}

static int guest_write(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:write");
  lua_Integer gpa = lmv_checkint(L, 2, "guest:write", "gpa");
  size_t len;
  const char *s = lmv_checklstring(L, 3, &len, "guest:write", "data");
  mv_err err;
  if (mv_guest_write(g, (uint64_t)gpa, s, len, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

static int guest_rw(void *obj, uint64_t off, void *buf, uint64_t len, int write, mv_err *err) {
  return write ? mv_guest_write(obj, off, buf, len, err) : mv_guest_read(obj, off, buf, len, err);
}

#define GUEST_UINT(name, bytes)                                                   \
  static int guest_##name(lua_State *L) {                                         \
    mv_guest *g = lmv_checkguest(L, 1, "guest:" #name);                           \
    return lmv_uint_access(L, g, guest_rw, "guest:" #name, bytes);                \
  }
GUEST_UINT(u8, 1)
GUEST_UINT(u16, 2)
GUEST_UINT(u32, 4)
GUEST_UINT(u64, 8)

static int guest_dirty_pages(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:dirty_pages");
  lua_Integer gpa = lmv_checkint(L, 2, "guest:dirty_pages", "gpa");
  uint64_t npages = 0;
  mv_mapping_info m;
  for (size_t i = 0; mv_guest_mapping(g, i, &m); i++)
    if (m.gpa == (uint64_t)gpa) npages = m.size / MV_PAGE_SIZE;
  uint64_t *pages = lua_newuserdatauv(L, (npages ? npages : 1) * sizeof *pages, 0);   /* collected with the call */
  mv_err err;
  int64_t n = mv_guest_dirty_pages(g, (uint64_t)gpa, pages, npages, &err);
  if (n < 0) return lmv_raise(L, &err);
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    lua_pushinteger(L, gpa + (lua_Integer)(pages[i] * MV_PAGE_SIZE));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* {====================================================== traps */

/* A read's handler returned something other than an integer (on top). */
static __attribute__((noinline)) int trap_odd_answer(lua_State *L, LVcpu *lv, mv_exit *exit) {
  if (lua_isnil(L, -1)) {   /* nil: the access reads as all ones */
    lua_pop(L, 1);
    return MV_TRAP_DONE;
  }
  char hex[20];
  lua_pushfstring(L, "handler returned %s for %s %s read of %s (expected an integer or nil)",
                  lua_type(L, -1) == LUA_TNUMBER ? "a non-integer number" : luaL_typename(L, -1),
                  exit->type == MV_EXIT_IO ? "an" : "a", mv_exit_type_name(exit->type), lmv_hex(hex, exit->addr));
  lua_setiuservalue(L, lv->base, 3);
  lua_pop(L, 1);
  return MV_TRAP_FAIL;
}

/* Handlers live in the guest's user value table, keyed by trap id, so a
 * handler that captures its guest does not keep it alive forever.  During
 * cpu:enter() that table sits at base+3 of the entering thread's stack.
 * The exit table each handler gets is the VCPU's one, with only the fields
 * that changed since the previous handler call set again (lutil.c).  This
 * is the one place handlers are called: unprotected inside enter's
 * protected frame where the backend can be unwound (an IO/MMIO access on
 * kvm: a lua_pcall per exit cost ~110 instructions), else each protected.
 * A read's answer other than an integer is rare, and out of line. */
static inline __attribute__((always_inline)) int trap_call(LVcpu *lv, int nargs, mv_exit *exit, uint64_t *value) {
  lua_State *L = lv->L;
  if (!L) return MV_TRAP_FAIL;   /* (enter made room on the stack for what follows) */
  if ((int)exit->trap_id == lv->handler_trap) {   /* the same trap as last time: its handler is at base+5 */
    lua_pushvalue(L, lv->base + 5);
  } else {
    lua_rawgeti(L, lv->base + 3, exit->trap_id);
    lua_copy(L, -1, lv->base + 5);
    lv->handler_trap = (int)exit->trap_id;
    lv->fast_key = nargs == 0 && exit->type != MV_EXIT_BELL && lv->unwind && !lv->lock ? lv->handler_trap * 2 + 1 : 0;
  }
  if (nargs > 0) {   /* a handler without parameters gets none: no exit table to fill */
    lmv_fillexit(L, lv, exit);
    lua_pushvalue(L, lv->base + 1);
    if (nargs > 1) lua_pushvalue(L, lv->base);
  }
  int nres = exit->write ? 0 : 1;
  if (lv->unwind && exit->type != MV_EXIT_BELL)
    lua_call(L, nargs, nres);   /* an error unwinds to cpu:enter's protected frame (lvcpu.c) */
  else if (lua_pcall(L, nargs, nres, lv->base + 2) != LUA_OK) {
    lua_setiuservalue(L, lv->base, 3);   /* the error (with traceback) for enter to raise */
    return MV_TRAP_FAIL;
  }
  if (nres == 0) return MV_TRAP_DONE;   /* no result asked */
  int isnum = 0;
  lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isnum) : 0;
  if (__builtin_expect(!isnum, 0)) return trap_odd_answer(L, lv, exit);
  *value = (uint64_t)v;
  lua_pop(L, 1);
  return MV_TRAP_DONE;
}

/* guest:run: one handler at a time in the Lua state (never unwound:
 * lv->unwind is false), and (exit, cpu) whatever the handler declares: the
 * cookie came with this VCPU's copy of the trap (smp.c), taken before the
 * lock, and a handler of another VCPU may have given the trap a new handler
 * since (trap:handler).  Out of line, so the path without a lock keeps
 * fewer registers. */
static __attribute__((noinline)) int trap_call_locked(LVcpu *lv, mv_exit *exit, uint64_t *value) {
  lmv_lock_acquire(lv->lock);
  int r = trap_call(lv, 2, exit, value);
  lmv_lock_release(lv->lock);
  return r;
}

static __attribute__((noinline)) int trap_call_any(LVcpu *lv, int nargs, mv_exit *exit, uint64_t *value) {
  if (__builtin_expect(!lv->lock, 1)) return trap_call(lv, nargs, exit, value);
  return trap_call_locked(lv, exit, value);
}

/* The common case first, apart, so that it keeps one register across its
 * calls instead of six: a write (nothing to read back) to the trap whose
 * handler was called last, when that handler may take the short path
 * (fast_key: no parameters, inside enter's protected frame), tested with
 * one compare.  Everything else: trap_call_any. */
int lmv_trap_callback(void *cookie, mv_vcpu *cpu, mv_exit *exit, uint64_t *value) {
  LVcpu *lv = mv_vcpu_user(cpu);
  if (__builtin_expect((int)(exit->trap_id * 2 + exit->write) == lv->fast_key, 1)) {
    lua_State *L = lv->L;
    lua_pushvalue(L, lv->base + 5);
    lua_call(L, 0, 0);   /* an error unwinds to cpu:enter's protected frame (lvcpu.c) */
    return MV_TRAP_DONE;
  }
  return trap_call_any(lv, (int)(intptr_t)cookie, exit, value);   /* cookie: the parameters the handler declares */
}

void *lmv_handler_nargs(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TFUNCTION) {
    if (!luaL_getmetafield(L, idx, "__call"))
      luaL_error(L, "%s: handler must be a function, got %s", what, luaL_typename(L, idx));
    lua_pop(L, 1);
    return (void *)(intptr_t)2;
  }
  lua_Debug ar;
  lua_pushvalue(L, idx);
  if (lua_getinfo(L, ">u", &ar) && !ar.isvararg && ar.nparams < 2) return (void *)(intptr_t)ar.nparams;
  return (void *)(intptr_t)2;
}

static int guest_trap(lua_State *L) {
  static const char *const kinds[] = { "io", "mem", "bell", NULL };
  mv_guest *g = lmv_checkguest(L, 1, "guest:trap");
  int kind = -1;
  if (lua_type(L, 2) != LUA_TSTRING)
    return luaL_error(L, "guest:trap: kind must be \"io\", \"mem\" or \"bell\", got %s", lmv_typename(L, 2));
  const char *k = lua_tostring(L, 2);
  for (int i = 0; kinds[i]; i++)
    if (strcmp(k, kinds[i]) == 0) kind = i;
  if (kind < 0) return luaL_error(L, "guest:trap: kind must be \"io\", \"mem\" or \"bell\", got \"%s\"", k);
  lua_Integer addr = lmv_checkint(L, 3, "guest:trap", "addr");
  lua_Integer size = lmv_checkint(L, 4, "guest:trap", "size");
  void *nargs = lmv_handler_nargs(L, 5, "guest:trap");
  if (addr < 0 || size <= 0)
    return luaL_error(L, "guest:trap: bad range %I+%I (addr >= 0, size > 0)", (LUAI_UACINT)addr, (LUAI_UACINT)size);
  LTrap *t = lua_newuserdatauv(L, sizeof *t, 1);   /* stack: ..., trap */
  t->id = 0;
  luaL_setmetatable(L, MV_TRAP);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);   /* the trap keeps its guest alive */
  lua_getiuservalue(L, 1, 1);    /* stack: ..., trap, handlers */
  mv_err err;
  int id = mv_guest_set_trap(g, (mv_trap_kind)kind, (uint64_t)addr, (uint64_t)size,
                             lmv_trap_callback, NULL, nargs, &err);
  if (id < 0) return lmv_raise(L, &err);
  lua_pushvalue(L, 5);
  lua_rawseti(L, -2, id);
  lua_pop(L, 1);
  *t = (LTrap){ .id = id, .kind = kind, .addr = addr, .size = size };
  return 1;
}

/* {====================================================== lifetime */

/* Calls registry["moonvisor.on_close"](guest) if set (--stats uses it):
 * the last look at a guest's traps before they go. */
static void on_close_hook(lua_State *L, LGuest *g) {
  if (!g->g || mv_guest_is_closed(g->g)) return;
  if (lua_getfield(L, LUA_REGISTRYINDEX, "moonvisor.on_close") != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);   /* a report must not stop a close */
}

static int guest_close(lua_State *L) {   /* also accepts a closed guest */
  LGuest *g = lmv_toguest(L, 1);
  if (!g) return luaL_error(L, "guest:close: expected a moonvisor.Guest, got %s", lmv_typename(L, 1));
  on_close_hook(L, g);
  if (g->g) {
    mv_guest_close(g->g);         /* deferred to the end of enter when called from a handler */
    if (mv_guest_is_closed(g->g)) {
      lmv_trace_close(g);
      mv_guest_release(g->g);     /* VCPUs hold references of their own */
      g->g = NULL;
    }
  }
  return 0;
}

static int guest_gc(lua_State *L) {
  LGuest *g = luaL_checkudata(L, 1, MV_GUEST);
  on_close_hook(L, g);
  lmv_trace_close(g);
  if (g->g) {
    mv_guest_close(g->g);
    mv_guest_release(g->g);
    g->g = NULL;
  }
  return 0;
}

static int guest_tostring(lua_State *L) {
  LGuest *g = luaL_checkudata(L, 1, MV_GUEST);
  if (!g->g || mv_guest_is_closed(g->g)) {
    lua_pushliteral(L, "Guest(closed)");
  } else {
    lua_pushfstring(L, "Guest(%s, %d maps, %d traps)", mv_guest_backend_name(g->g),
                    (int)mv_guest_mapping_count(g->g), (int)mv_guest_trap_count(g->g));
  }
  return 1;
}

/* g:mechanisms() -> { sync_regs = bool, dirty_log = "ring" | "bitmap" | "hooks" }: the ways
 * taken where there is a fast and a slow one (mv.guest{ sync_regs = false, dirty_ring = false }
 * choose the slow ones, for tests). */
static int guest_mechanisms(lua_State *L) {
  mv_guest_mechanisms m;
  mv_guest_get_mechanisms(lmv_checkguest(L, 1, "guest:mechanisms"), &m);
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, m.sync_regs);
  lua_setfield(L, -2, "sync_regs");
  lua_pushstring(L, m.dirty_log);
  lua_setfield(L, -2, "dirty_log");
  return 1;
}

static int guest_backend(lua_State *L) {
  lua_pushstring(L, mv_guest_backend_name(lmv_checkguest(L, 1, "guest:backend")));
  return 1;
}

static int guest_mappings(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:mappings");
  size_t n = mv_guest_mapping_count(g);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    mv_mapping_info m;
    mv_guest_mapping(g, i, &m);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)m.gpa); lua_setfield(L, -2, "gpa");
    lua_pushinteger(L, (lua_Integer)m.size); lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)m.offset); lua_setfield(L, -2, "offset");
    lua_pushboolean(L, m.flags & MV_MAP_READONLY); lua_setfield(L, -2, "readonly");
    lua_pushboolean(L, m.flags & MV_MAP_LOG_DIRTY); lua_setfield(L, -2, "log_dirty");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

int lmv_vcpu_new(lua_State *L);   /* lvcpu.c */

static const luaL_Reg guest_methods[] = {
  { "map", guest_map }, { "unmap", guest_unmap }, { "mappings", guest_mappings },
  { "read", guest_read }, { "write", guest_write },
  { "u8", guest_u8 }, { "u16", guest_u16 }, { "u32", guest_u32 }, { "u64", guest_u64 },
  { "dirty_pages", guest_dirty_pages },
  { "trap", guest_trap }, { "vcpu", lmv_vcpu_new },
  { "backend", guest_backend }, { "mechanisms", guest_mechanisms }, { "close", guest_close }, { NULL, NULL },
};

static const luaL_Reg guest_meta[] = {
  { "__gc", guest_gc }, { "__close", guest_close }, { "__tostring", guest_tostring },
  { "__index", NULL }, { NULL, NULL },
};

int lmv_open_guest(lua_State *L) {
  luaL_newmetatable(L, MV_GUEST);
  luaL_setfuncs(L, guest_meta, 0);
  luaL_newlib(L, guest_methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Guest");   /* core.Guest: the method table, for Lua extensions */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, guest_new);
  lua_setfield(L, -2, "guest");
  return 0;
}
