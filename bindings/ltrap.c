/*
 * ltrap.c - the moonvisor.Trap userdata that g:trap() returns: t:remove()
 * and a readable __tostring.  The handler itself lives in the guest's
 * handler table (lguest.c).
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
  { "remove", trap_remove }, { NULL, NULL },
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
