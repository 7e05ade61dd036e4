/*
 * lonce.c - once-breakpoints from Lua (mv_vcpu_set_once_breakpoints):
 *   cpu:once_breakpoints{ addr, ... }   sets them, armed; {} or nil removes them
 *   cpu:arm_breakpoints()             arms every one again (O(1))
 * A run stops before the first instruction at an armed address with a debug
 * exit (exception 3, rip there), as at an int3, without any int3 in guest
 * memory.  Backends that cannot (kvm) raise an error saying so.
 */
#include <stdlib.h>
#include "lmoonvisor.h"

static int vcpu_once_breakpoints(lua_State *L) {
  const char *what = "vcpu:once_breakpoints";
  LVcpu *v = lmv_checkvcpu(L, 1, what);
  size_t n = 0;
  uint64_t *addrs = NULL;
  if (!lua_isnoneornil(L, 2)) {
    lmv_checktable(L, 2, what, "addresses");
    lua_Integer len = luaL_len(L, 2);
    if (len < 0 || len > (1 << 24)) return luaL_error(L, "%s: %I addresses (at most 2^24)", what, (LUAI_UACINT)len);
    n = (size_t)len;
    addrs = lua_newuserdatauv(L, n ? n * sizeof *addrs : 1, 0);   /* freed by the GC, also after an error */
    for (size_t i = 0; i < n; i++) {
      lua_geti(L, 2, (lua_Integer)i + 1);
      if (!lua_isinteger(L, -1))
        return luaL_error(L, "%s: addresses[%I] must be an integer, got %s", what, (LUAI_UACINT)(i + 1),
                          lmv_typename(L, -1));
      addrs[i] = (uint64_t)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  }
  mv_err err;
  if (mv_vcpu_set_once_breakpoints(v->cpu, addrs, n, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

static int vcpu_arm_breakpoints(lua_State *L) {
  LVcpu *v = lmv_checkvcpu(L, 1, "vcpu:arm_breakpoints");
  mv_err err;
  if (mv_vcpu_arm_once_breakpoints(v->cpu, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

/* stack: module table */
int lmv_open_once(lua_State *L) {
  static const luaL_Reg methods[] = {
    { "once_breakpoints", vcpu_once_breakpoints }, { "arm_breakpoints", vcpu_arm_breakpoints }, { NULL, NULL },
  };
  lmv_add_methods(L, "Vcpu", methods);
  return 0;
}
