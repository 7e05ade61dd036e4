/*
 * ltrap.c - the moonvisor.Trap userdata that g:trap() returns: t:remove(),
 * t:handler([fn]) and a readable __tostring.  The handler itself lives in
 * the guest's handler table (lguest.c).
 */
#include "lmoonvisor.h"

static const char *const kind_names[] = { "io", "mem", "bell" };

static int trap_remove(lua_State *L) {
  LTrap *t = luaL_testudata(L, 1, MV_TRAP);
  if (!t) return luaL_error(L, "trap:remove: expected a moonvisor.Trap, got %s", lmv_typename(L, 1));
  if (t->id == 0) return 0;   /* removing twice is harmless */
  lua_getiuservalue(L, 1, 1);   /* stack: trap, guest */
  LGuest *lg = lmv_toguest(L, 2);
  if (lg && lg->g && !mv_guest_is_closed(lg->g)) {
    mv_err err;
    if (mv_guest_remove_trap(lg->g, t->id, &err) < 0) return lmv_raise(L, &err);
    lua_getiuservalue(L, 2, 1);
    lua_pushnil(L);
    lua_rawseti(L, -2, t->id);
  }
  t->id = 0;
  return 0;
}

/* t:handler() -> the handler (nil once removed); t:handler(fn) -> t, with fn
 * handling the trap's accesses from the next one on, its counters kept.
 * Each VCPU's cache of the last handler it called forgets this trap's, so
 * a handler can hand over to another for the access after its own. */
static int trap_handler(lua_State *L) {
  LTrap *t = luaL_testudata(L, 1, MV_TRAP);
  if (!t) return luaL_error(L, "trap:handler: expected a moonvisor.Trap, got %s", lmv_typename(L, 1));
  bool set = lua_gettop(L) >= 2;
  lua_getiuservalue(L, 1, 1);   /* the guest */
  LGuest *lg = lmv_toguest(L, -1);
  bool live = t->id != 0 && lg && lg->g && !mv_guest_is_closed(lg->g);
  if (!set) {
    if (!live) return 0;
    lua_getiuservalue(L, -1, 1);
    lua_rawgeti(L, -1, t->id);
    return 1;
  }
  void *nargs = lmv_handler_nargs(L, 2, "trap:handler");
  if (!live) return luaL_error(L, "trap:handler: the trap was removed (or its guest closed)");
  mv_err err;
  if (mv_guest_set_trap_cookie(lg->g, t->id, nargs, &err) < 0) return lmv_raise(L, &err);
  lua_getiuservalue(L, -1, 1);   /* the guest's handlers */
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, t->id);
  for (int i = 0, n = mv_guest_vcpu_count(lg->g); i < n; i++) {
    mv_vcpu *c = mv_guest_vcpu(lg->g, i);
    LVcpu *v = c ? mv_vcpu_user(c) : NULL;
    if (v && v->handler_trap == t->id) lmv_forget_handler(v);
  }
  lua_settop(L, 1);
  return 1;
}

static int trap_tostring(lua_State *L) {
  LTrap *t = luaL_checkudata(L, 1, MV_TRAP);
  if (t->id == 0) lua_pushliteral(L, "Trap(removed)");
  else {
    char a[20], n[20];
    lua_pushfstring(L, "Trap(%s %s+%s)", kind_names[t->kind], lmv_hex(a, (uint64_t)t->addr), lmv_hex(n, (uint64_t)t->size));
  }
  return 1;
}

static const luaL_Reg trap_methods[] = {
  { "remove", trap_remove }, { "handler", trap_handler }, { NULL, NULL },
};

int lmv_open_trap(lua_State *L) {
  luaL_newmetatable(L, MV_TRAP);
  lua_pushcfunction(L, trap_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, trap_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  return 0;
}
