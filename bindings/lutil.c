/*
 * lutil.c - helpers every binding file uses: integer arguments, raising the
 * core's errors, exit tables (with their keys interned once per state), and
 * the u8/u16/u32/u64 accessors.
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

/* {====================================================== exit tables */

static const char *const key_names[] = {
  [LMV_K_TYPE] = "type", [LMV_K_PORT] = "port", [LMV_K_ADDR] = "addr", [LMV_K_SIZE] = "size",
  [LMV_K_WRITE] = "write", [LMV_K_DATA] = "data", [LMV_K_REASON] = "reason", [LMV_K_RIP] = "rip",
  [LMV_K_EXCEPTION] = "exception", [LMV_K_DR6] = "dr6", [LMV_K_DR7] = "dr7", [LMV_K_VECTOR] = "vector",
  [LMV_K_HW_REASON] = "hardware_entry_failure_reason", [LMV_K_CPU] = "cpu", [LMV_K_SUBERROR] = "suberror",
  [LMV_K_EVENT] = "event", [LMV_K_ERROR_CODE] = "error_code",
};

static const char keys_id = 0;   /* its address is the key table's registry key */

void lmv_pushkeys(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &keys_id) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, LMV_K_REG + 24, 0);
  for (int k = 1; k < (int)(sizeof key_names / sizeof key_names[0]); k++) {
    lua_pushstring(L, key_names[k]);
    lua_rawseti(L, -2, k);
  }
  for (int t = 0; t < MV_EXIT_TYPE_COUNT; t++) {
    lua_pushstring(L, mv_exit_type_name((mv_exit_type)t));
    lua_rawseti(L, -2, LMV_K_TYPENAME + t);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &keys_id);
}

void lmv_setkeys_regs(lua_State *L, const char *const *regs, int n) {
  lmv_pushkeys(L);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, regs[i]);
    lua_rawseti(L, -2, LMV_K_REG + i);
  }
  lua_pop(L, 1);
}

/* t[keys[k]] = v, for each kind of value. */
static void setint(lua_State *L, int t, int keys, int k, lua_Integer v) {
  lua_rawgeti(L, keys, k);
  lua_pushinteger(L, v);
  lua_rawset(L, t);
}

static void setnil(lua_State *L, int t, int keys, int k) {
  lua_rawgeti(L, keys, k);
  lua_pushnil(L);
  lua_rawset(L, t);
}

static void setbool(lua_State *L, int t, int keys, int k, bool v) {
  lua_rawgeti(L, keys, k);
  lua_pushboolean(L, v);
  lua_rawset(L, t);
}

static void settype(lua_State *L, int t, int keys, mv_exit_type type) {
  lua_rawgeti(L, keys, LMV_K_TYPE);
  lua_rawgeti(L, keys, LMV_K_TYPENAME + (int)(type < MV_EXIT_TYPE_COUNT ? type : MV_EXIT_UNKNOWN));
  lua_rawset(L, t);
}

void lmv_fillexit_changed(lua_State *L, LVcpu *v, const mv_exit *e) {
  int t = v->base + 1, keys = v->base + 4;
  lmv_exit_fields *f = &v->filled;
  bool io = e->type == MV_EXIT_IO, all = !f->valid;
  if (all || f->type != (int)e->type) settype(L, t, keys, e->type);
  if (all || f->io != io) {   /* port for IO, addr for the rest; the other one nil */
    setnil(L, t, keys, io ? LMV_K_ADDR : LMV_K_PORT);
    setint(L, t, keys, io ? LMV_K_PORT : LMV_K_ADDR, (lua_Integer)e->addr);
  } else if (f->addr != e->addr) {
    setint(L, t, keys, io ? LMV_K_PORT : LMV_K_ADDR, (lua_Integer)e->addr);
  }
  if (all || f->size != e->size) setint(L, t, keys, LMV_K_SIZE, e->size);
  if (all || f->write != e->write) setbool(L, t, keys, LMV_K_WRITE, e->write);
  if (e->write) {
    if (all || !f->has_data || f->data != e->data) setint(L, t, keys, LMV_K_DATA, (lua_Integer)e->data);
  } else if (all || f->has_data) {
    setnil(L, t, keys, LMV_K_DATA);
  }
  *f = (lmv_exit_fields){ .valid = true, .io = io, .write = e->write, .has_data = e->write, .type = (int)e->type,
                          .size = e->size, .addr = e->addr, .data = e->data };
}

void lmv_pushexit(lua_State *L, int keys, const mv_exit *e) {
  keys = lua_absindex(L, keys);
  lua_createtable(L, 0, 6);
  int t = lua_gettop(L);
  settype(L, t, keys, e->type);
  switch (e->type) {
  case MV_EXIT_IO:
  case MV_EXIT_MEM:
    setint(L, t, keys, e->type == MV_EXIT_IO ? LMV_K_PORT : LMV_K_ADDR, (lua_Integer)e->addr);
    setint(L, t, keys, LMV_K_SIZE, e->size);
    setbool(L, t, keys, LMV_K_WRITE, e->write);
    setint(L, t, keys, LMV_K_DATA, (lua_Integer)e->data);   /* written, or what the guest read */
    return;
  case MV_EXIT_BELL:
    setint(L, t, keys, LMV_K_ADDR, (lua_Integer)e->addr);
    return;
  default:
    break;
  }
  setint(L, t, keys, LMV_K_REASON, (lua_Integer)e->reason);
  switch (e->type) {
  case MV_EXIT_DEBUG:
    setint(L, t, keys, LMV_K_RIP, (lua_Integer)e->rip);
    setint(L, t, keys, LMV_K_EXCEPTION, (lua_Integer)e->detail[0]);
    setint(L, t, keys, LMV_K_DR6, (lua_Integer)e->detail[1]);
    setint(L, t, keys, LMV_K_DR7, (lua_Integer)e->detail[2]);
    break;
  case MV_EXIT_EXCEPTION:
    setint(L, t, keys, LMV_K_RIP, (lua_Integer)e->rip);
    setint(L, t, keys, LMV_K_VECTOR, (lua_Integer)e->detail[0]);
    if (e->detail[2]) setint(L, t, keys, LMV_K_ERROR_CODE, (lua_Integer)e->detail[1]);
    break;
  case MV_EXIT_SYSCALL:
    setint(L, t, keys, LMV_K_RIP, (lua_Integer)e->rip);
    break;
  case MV_EXIT_FAIL_ENTRY:
    setint(L, t, keys, LMV_K_HW_REASON, (lua_Integer)e->detail[0]);
    setint(L, t, keys, LMV_K_CPU, (lua_Integer)e->detail[1]);
    break;
  case MV_EXIT_INTERNAL_ERROR:
    setint(L, t, keys, LMV_K_SUBERROR, (lua_Integer)e->detail[0]);
    if (e->rip) setint(L, t, keys, LMV_K_RIP, (lua_Integer)e->rip);
    break;
  case MV_EXIT_SYSTEM_EVENT:
    setint(L, t, keys, LMV_K_EVENT, (lua_Integer)e->detail[0]);
    break;
  case MV_EXIT_HLT:
  case MV_EXIT_UNKNOWN:
    if (e->rip) setint(L, t, keys, LMV_K_RIP, (lua_Integer)e->rip);
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
