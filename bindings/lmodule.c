/*
 * lmodule.c - luaopen_moonvisor_core: the C module under require "moonvisor".
 * Module functions (version, kvm_api_version, caps, clock, heap, sum8, typename) and the opening of each
 * userdata type in its own file; disasm (capstone) comes from ldis.c.  AFL++'s
 * part, the sockets and the terminal are opened when first named.
 */
#include <ctype.h>
#include <malloc.h>
#include <string.h>
#include <time.h>
#include "lmoonvisor.h"

static int mod_kvm_api_version(lua_State *L) {
  mv_err err;
  int v = mv_kvm_api_version(&err);
  if (v < 0) return lmv_raise(L, &err);
  lua_pushinteger(L, v);
  return 1;
}

static int mod_caps(lua_State *L) {
  size_t n;
  const mv_cap_info *caps = mv_kvm_cap_table(&n);
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    mv_err err;
    int r = mv_kvm_check_cap(caps[i].id, &err);
    if (r < 0) return lmv_raise(L, &err);
    char name[64];
    size_t k = 0;
    for (; caps[i].name[k] && k < sizeof name - 1; k++) name[k] = (char)tolower((unsigned char)caps[i].name[k]);
    name[k] = '\0';
    lua_pushinteger(L, r);
    lua_setfield(L, -2, name);
  }
  return 1;
}

/* mv.clock() -> seconds of CLOCK_MONOTONIC, for time limits kept in Lua. */
static int mod_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* mv.heap() -> { in_use = bytes, free = bytes }: the C heap (malloc's own
 * count, chunks it mmapped included).  Unlike RSS it does not move with
 * fragmentation, so leak checks and memory benches can rely on it. */
static int mod_heap(lua_State *L) {
  struct mallinfo2 mi = mallinfo2();
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)(mi.uordblks + mi.hblkhd));
  lua_setfield(L, -2, "in_use");
  lua_pushinteger(L, (lua_Integer)mi.fordblks);
  lua_setfield(L, -2, "free");
  return 1;
}

/* mv.sum8(s [, i [, j]]) -> the sum of the bytes s[i..j] modulo 256: the
 * checksum of ACPI tables, MP tables and GDB packets.  i and j count as
 * string.sub's do (negative from the end, clamped to the string); the
 * default is all of s.  In Lua the sum costs ~100 instructions a byte. */
static int mod_sum8(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer i = luaL_optinteger(L, 2, 1), j = luaL_optinteger(L, 3, -1), n = (lua_Integer)len;
  if (i < 0) i = i < -n ? 1 : n + i + 1;
  else if (i == 0) i = 1;
  if (j < 0) j = n + j + 1;
  else if (j > n) j = n;
  unsigned sum = 0;
  for (lua_Integer k = i; k <= j; k++) sum += (unsigned char)s[k - 1];
  lua_pushinteger(L, sum & 0xff);
  return 1;
}

/* mv.typename(v) -> "moonvisor.Vcpu" etc. for userdata with a named
 * metatable, type(v) otherwise: what the bindings' messages call a value. */
static int mod_typename(lua_State *L) {
  luaL_checkany(L, 1);
  lua_pushstring(L, lmv_typename(L, 1));
  return 1;
}

static const luaL_Reg mod_funcs[] = {
  { "kvm_api_version", mod_kvm_api_version }, { "caps", mod_caps }, { "clock", mod_clock },
  { "heap", mod_heap }, { "sum8", mod_sum8 }, { "typename", mod_typename }, { NULL, NULL },
};

/* Parts of the module made when a script first names one of their fields
 * (module.afl, module.tcp_listen, module.term_raw, ...): most scripts use
 * none of them, and their tables and metatables cost ~65K instructions of
 * every start.  Each opener adds its fields to the module on top. */
static const struct {
  const char *field;
  int (*open)(lua_State *L);
} lazy_parts[] = {
  { "afl", lmv_open_afl },
  { "tcp_listen", lmv_open_socket }, { "tcp_connect", lmv_open_socket },
  { "isatty", lmv_open_term }, { "term_raw", lmv_open_term }, { "read_fd", lmv_open_term },
};

/* module.__index(module, key): opens the part that has `key`, once (its
 * fields are then the module's own, so __index is not asked again). */
static int module_index(lua_State *L) {
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (!k) return 0;
  for (size_t i = 0; i < sizeof lazy_parts / sizeof lazy_parts[0]; i++) {
    if (strcmp(k, lazy_parts[i].field) != 0) continue;
    lua_settop(L, 2);
    lua_pushvalue(L, 1);
    lazy_parts[i].open(L);
    lua_pop(L, 1);
    lua_rawget(L, 1);   /* key */
    return 1;
  }
  return 0;
}

int luaopen_moonvisor_core(lua_State *L) {
  luaL_newlib(L, mod_funcs);
  lua_pushliteral(L, MV_VERSION);
  lua_setfield(L, -2, "version");
  lmv_open_vmo(L);
  lmv_open_guest(L);
  lmv_open_vcpu(L);
  lmv_open_trap(L);
  lmv_open_snapshot(L);
  lmv_open_stats(L);
  lmv_open_cpu(L);
  lmv_open_disasm(L);
  lmv_open_once(L);
  lmv_open_run(L);
  lmv_open_record(L);
  lua_createtable(L, 0, 1);   /* the parts made on first use */
  lua_pushcfunction(L, module_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 1;
}
