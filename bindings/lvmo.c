/*
 * lvmo.c - the moonvisor.Vmo userdata (mv.vmo(size)): host memory objects
 * that guests map.  #vmo, read/write of strings and little-endian integers.
 */
#include <inttypes.h>
#include "lmoonvisor.h"

mv_vmo *lmv_checkvmo(lua_State *L, int idx, const char *what) {
  LVmo *v = luaL_testudata(L, idx, MV_VMO);
  if (!v) {
    luaL_error(L, "%s: expected a moonvisor.Vmo, got %s", what, lmv_typename(L, idx));
    return NULL;
  }
  if (!v->vmo) luaL_error(L, "%s: attempt to use a closed vmo", what);
  return v->vmo;
}

static int vmo_new(lua_State *L) {
  lua_Integer size = lmv_checkint(L, 1, "mv.vmo", "size");
  if (size <= 0) return luaL_error(L, "mv.vmo: size must be positive, got %I", (LUAI_UACINT)size);
  LVmo *v = lua_newuserdatauv(L, sizeof *v, 0);
  v->vmo = NULL;   /* closed until the memory exists */
  luaL_setmetatable(L, MV_VMO);
  mv_err err;
  if (mv_vmo_create((uint64_t)size, &v->vmo, &err) < 0) return lmv_raise_renamed(L, "mv.vmo", "vmo", &err);
  return 1;
}

static int vmo_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mv_vmo_size(lmv_checkvmo(L, 1, "#vmo")));
  return 1;
}

static int vmo_read(lua_State *L) {
  mv_vmo *v = lmv_checkvmo(L, 1, "vmo:read");
  lua_Integer off = lmv_checkint(L, 2, "vmo:read", "offset");
  lua_Integer len = lmv_checkint(L, 3, "vmo:read", "length");
  if (off < 0 || len < 0 || (uint64_t)off > mv_vmo_size(v) || (uint64_t)len > mv_vmo_size(v) - (uint64_t)off)
    return luaL_error(L, "vmo:read: range %I+%I outside the %I-byte vmo", (LUAI_UACINT)off, (LUAI_UACINT)len,
                      (LUAI_UACINT)mv_vmo_size(v));
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)len);
  mv_err err;
  if (mv_vmo_read(v, (uint64_t)off, p, (uint64_t)len, &err) < 0) return lmv_raise(L, &err);
  luaL_pushresultsize(&b, (size_t)len);
  return 1;
}

static int vmo_write(lua_State *L) {
  mv_vmo *v = lmv_checkvmo(L, 1, "vmo:write");
  lua_Integer off = lmv_checkint(L, 2, "vmo:write", "offset");
  size_t len;
  const char *s = lmv_checklstring(L, 3, &len, "vmo:write", "data");
  mv_err err;
  if (off < 0) return luaL_error(L, "vmo:write: offset %I is negative", (LUAI_UACINT)off);
  if (mv_vmo_write(v, (uint64_t)off, s, len, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

static int vmo_rw(void *obj, uint64_t off, void *buf, uint64_t len, int write, mv_err *err) {
  return write ? mv_vmo_write(obj, off, buf, len, err) : mv_vmo_read(obj, off, buf, len, err);
}

#define VMO_UINT(name, bytes)                                                     \
  static int vmo_##name(lua_State *L) {                                           \
    mv_vmo *v = lmv_checkvmo(L, 1, "vmo:" #name);                                 \
    return lmv_uint_access(L, v, vmo_rw, "vmo:" #name, bytes);                    \
  }
VMO_UINT(u8, 1)
VMO_UINT(u16, 2)
VMO_UINT(u32, 4)
VMO_UINT(u64, 8)

static int vmo_close(lua_State *L) {   /* also accepts a closed vmo */
  LVmo *v = luaL_testudata(L, 1, MV_VMO);
  if (!v) return luaL_error(L, "vmo:close: expected a moonvisor.Vmo, got %s", lmv_typename(L, 1));
  if (v->vmo) {
    mv_vmo_release(v->vmo);   /* live mappings keep the memory */
    v->vmo = NULL;
  }
  return 0;
}

static int vmo_tostring(lua_State *L) {
  LVmo *v = luaL_checkudata(L, 1, MV_VMO);
  if (v->vmo) lua_pushfstring(L, "Vmo(%I bytes)", (LUAI_UACINT)mv_vmo_size(v->vmo));
  else lua_pushliteral(L, "Vmo(closed)");
  return 1;
}

static const luaL_Reg vmo_methods[] = {
  { "read", vmo_read }, { "write", vmo_write },
  { "u8", vmo_u8 }, { "u16", vmo_u16 }, { "u32", vmo_u32 }, { "u64", vmo_u64 },
  { "close", vmo_close }, { NULL, NULL },
};

static const luaL_Reg vmo_meta[] = {
  { "__len", vmo_len }, { "__gc", vmo_close }, { "__close", vmo_close },
  { "__tostring", vmo_tostring }, { "__index", NULL }, { NULL, NULL },
};

int lmv_open_vmo(lua_State *L) {
  luaL_newmetatable(L, MV_VMO);
  luaL_setfuncs(L, vmo_meta, 0);
  luaL_newlib(L, vmo_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, vmo_new);
  lua_setfield(L, -2, "vmo");
  return 0;
}
