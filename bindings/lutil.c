/*
 * lutil.c - helpers every binding file uses: integer arguments, raising the
 * core's errors, exit tables, and the u8/u16/u32/u64 accessors.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "lmoonvisor.h"

lua_Integer lmv_checkint(lua_State *L, int idx, const char *what, const char *name) {
  int isnum = 0;
  lua_Integer v = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isnum) : 0;   /* no strings */
  if (!isnum) {
    if (lua_type(L, idx) == LUA_TNUMBER)
      luaL_error(L, "%s: %s must be an integer, got %s", what, name, lua_tostring(L, idx));
    else
      luaL_error(L, "%s: %s must be an integer, got %s", what, name, lmv_typename(L, idx));
  }
  return v;
}

const char *lmv_typename(lua_State *L, int idx) {
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
    const char *name = lua_tostring(L, -1);
    lua_pop(L, 1);   /* the metatable keeps the string alive */
    return name;
  }
  return luaL_typename(L, idx);
}

const char *lmv_hex(char buf[20], uint64_t v) {
  snprintf(buf, 20, "0x%" PRIx64, v);
  return buf;
}

void lmv_add_methods(lua_State *L, const char *type, const luaL_Reg *methods) {
  lua_getfield(L, -1, type);   /* stack: module, methods */
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 1);
}

/* As lua.c's msghandler: any error object becomes a string with a traceback. */
int lmv_msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int lmv_raise(lua_State *L, const mv_err *err) {
  return luaL_error(L, "%s", err->msg);
}

int lmv_raise_as(lua_State *L, const char *what, const mv_err *err) {
  const char *msg = strstr(err->msg, ": ");   /* drop the core's own "guest:read" prefix */
  return luaL_error(L, "%s: %s", what, msg ? msg + 2 : err->msg);
}

int lmv_raise_renamed(lua_State *L, const char *what, const char *from, const mv_err *err) {
  size_t n = strlen(from);
  if (strncmp(err->msg, from, n) == 0 && strncmp(err->msg + n, ": ", 2) == 0)
    return luaL_error(L, "%s: %s", what, err->msg + n + 2);
  return luaL_error(L, "%s: %s", what, err->msg);
}

void lmv_checktable(lua_State *L, int idx, const char *what, const char *name) {
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "%s: %s must be a table, got %s", what, name, lmv_typename(L, idx));
}

const char *lmv_checklstring(lua_State *L, int idx, size_t *len, const char *what, const char *name) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: %s must be a string, got %s", what, name, lmv_typename(L, idx));
  return lua_tolstring(L, idx, len);
}

static void setint(lua_State *L, int t, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, t, k);
}

static void setnil(lua_State *L, int t, const char *k) {
  lua_pushnil(L);
  lua_setfield(L, t, k);
}

void lmv_fillexit(lua_State *L, int t, const mv_exit *e) {
  t = lua_absindex(L, t);
  lua_pushstring(L, mv_exit_type_name(e->type));
  lua_setfield(L, t, "type");
  if (e->type == MV_EXIT_IO) {
    setint(L, t, "port", (lua_Integer)e->addr);
    setnil(L, t, "addr");
  } else {
    setint(L, t, "addr", (lua_Integer)e->addr);
    setnil(L, t, "port");
  }
  setint(L, t, "size", e->size);
  lua_pushboolean(L, e->write);
  lua_setfield(L, t, "write");
  if (e->write) setint(L, t, "data", (lua_Integer)e->data);
  else setnil(L, t, "data");
}

void lmv_pushexit(lua_State *L, const mv_exit *e) {
  lua_createtable(L, 0, 6);
  int t = lua_gettop(L);
  switch (e->type) {
  case MV_EXIT_IO:
  case MV_EXIT_MEM:
    lmv_fillexit(L, t, e);
    if (!e->write) setint(L, t, "data", (lua_Integer)e->data);   /* what the guest read */
    return;
  case MV_EXIT_BELL:
    lua_pushstring(L, "bell");
    lua_setfield(L, t, "type");
    setint(L, t, "addr", (lua_Integer)e->addr);
    return;
  default:
    break;
  }
  lua_pushstring(L, mv_exit_type_name(e->type));
  lua_setfield(L, t, "type");
  setint(L, t, "reason", (lua_Integer)e->reason);
  switch (e->type) {
  case MV_EXIT_DEBUG:
    setint(L, t, "rip", (lua_Integer)e->rip);
    setint(L, t, "exception", (lua_Integer)e->detail[0]);
    setint(L, t, "dr6", (lua_Integer)e->detail[1]);
    setint(L, t, "dr7", (lua_Integer)e->detail[2]);
    break;
  case MV_EXIT_EXCEPTION:
    setint(L, t, "rip", (lua_Integer)e->rip);
    setint(L, t, "vector", (lua_Integer)e->detail[0]);
    if (e->detail[2]) setint(L, t, "error_code", (lua_Integer)e->detail[1]);
    break;
  case MV_EXIT_SYSCALL:
    setint(L, t, "rip", (lua_Integer)e->rip);
    break;
  case MV_EXIT_FAIL_ENTRY:
    setint(L, t, "hardware_entry_failure_reason", (lua_Integer)e->detail[0]);
    setint(L, t, "cpu", (lua_Integer)e->detail[1]);
    break;
  case MV_EXIT_INTERNAL_ERROR:
    setint(L, t, "suberror", (lua_Integer)e->detail[0]);
    if (e->rip) setint(L, t, "rip", (lua_Integer)e->rip);
    break;
  case MV_EXIT_SYSTEM_EVENT:
    setint(L, t, "event", (lua_Integer)e->detail[0]);
    break;
  case MV_EXIT_HLT:
  case MV_EXIT_UNKNOWN:
    if (e->rip) setint(L, t, "rip", (lua_Integer)e->rip);
    break;
  default:
    break;
  }
}

int lmv_uint_access(lua_State *L, void *obj, lmv_rw_fn rw, const char *what, int bytes) {
  uint64_t off = (uint64_t)lmv_checkint(L, 2, what, "offset");
  mv_err err;
  if (lua_isnoneornil(L, 3)) {
    uint64_t v = 0;
    if (rw(obj, off, &v, (uint64_t)bytes, 0, &err) < 0) return lmv_raise_as(L, what, &err);
    lua_pushinteger(L, (lua_Integer)v);
    return 1;
  }
  lua_Integer v = lmv_checkint(L, 3, what, "value");
  if (bytes < 8) {
    lua_Integer lo = -((lua_Integer)1 << (8 * bytes - 1)), hi = ((lua_Integer)1 << (8 * bytes)) - 1;
    if (v < lo || v > hi)
      return luaL_error(L, "%s: value %I does not fit in %d bits", what, (LUAI_UACINT)v, 8 * bytes);
  }
  uint64_t u = (uint64_t)v;
  if (rw(obj, off, &u, (uint64_t)bytes, 1, &err) < 0) return lmv_raise_as(L, what, &err);
  return 0;
}
