/*
 * lsnapshot.c - the moonvisor.Snapshot userdata: g:snapshot(), g:restore(s),
 * s:save(path), mv.load_snapshot(path).  A snapshot is plain data, usable
 * with any guest of the same shape (mappings and VCPUs) and backend.
 */
#include "lmoonvisor.h"

#define MV_SNAPSHOT "moonvisor.Snapshot"

typedef struct LSnapshot {
  mv_snapshot *s;   /* NULL once closed */
} LSnapshot;

static mv_snapshot *check_snapshot(lua_State *L, int idx, const char *what) {
  LSnapshot *ls = luaL_testudata(L, idx, MV_SNAPSHOT);
  if (!ls) luaL_error(L, "%s: expected a moonvisor.Snapshot, got %s", what, lmv_typename(L, idx));
  if (!ls->s) luaL_error(L, "%s: attempt to use a closed snapshot", what);
  return ls->s;
}

/* A closed Snapshot userdata, so an error while filling it leaks nothing. */
static LSnapshot *new_snapshot(lua_State *L) {
  LSnapshot *ls = lua_newuserdatauv(L, sizeof *ls, 0);
  ls->s = NULL;
  luaL_setmetatable(L, MV_SNAPSHOT);
  return ls;
}

static int guest_snapshot(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:snapshot");
  LSnapshot *ls = new_snapshot(L);
  mv_err err;
  if (mv_guest_snapshot(g, &ls->s, &err) < 0) return lmv_raise(L, &err);
  return 1;
}

static int guest_restore(lua_State *L) {
  mv_guest *g = lmv_checkguest(L, 1, "guest:restore");
  mv_snapshot *s = check_snapshot(L, 2, "guest:restore");
  mv_err err;
  if (mv_guest_restore(g, s, &err) < 0) return lmv_raise(L, &err);
  lua_pushinteger(L, (lua_Integer)mv_guest_last_restore_pages(g));   /* pages copied */
  return 1;
}

static int load_snapshot(lua_State *L) {
  const char *path = lmv_checklstring(L, 1, NULL, "mv.load_snapshot", "path");
  LSnapshot *ls = new_snapshot(L);
  mv_err err;
  if (mv_snapshot_load(path, &ls->s, &err) < 0) return lmv_raise(L, &err);
  return 1;
}

static int snapshot_save(lua_State *L) {
  mv_snapshot *s = check_snapshot(L, 1, "snapshot:save");
  const char *path = lmv_checklstring(L, 2, NULL, "snapshot:save", "path");
  mv_err err;
  if (mv_snapshot_save(s, path, &err) < 0) return lmv_raise(L, &err);
  return 0;
}

static int snapshot_memory_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mv_snapshot_memory_size(check_snapshot(L, 1, "snapshot:memory_size")));
  return 1;
}

static int snapshot_close(lua_State *L) {
  LSnapshot *ls = luaL_testudata(L, 1, MV_SNAPSHOT);
  if (!ls) return luaL_error(L, "snapshot:close: expected a moonvisor.Snapshot, got %s", lmv_typename(L, 1));
  mv_snapshot_free(ls->s);
  ls->s = NULL;
  return 0;
}

static int snapshot_tostring(lua_State *L) {
  LSnapshot *ls = luaL_checkudata(L, 1, MV_SNAPSHOT);
  if (!ls->s) lua_pushliteral(L, "Snapshot(closed)");
  else lua_pushfstring(L, "Snapshot(%I KiB, %d vcpus)", (LUAI_UACINT)(mv_snapshot_memory_size(ls->s) / 1024),
                       mv_snapshot_vcpu_count(ls->s));
  return 1;
}

static const luaL_Reg snapshot_methods[] = {
  { "save", snapshot_save }, { "memory_size", snapshot_memory_size }, { "close", snapshot_close }, { NULL, NULL },
};

static const luaL_Reg snapshot_meta[] = {
  { "__gc", snapshot_close }, { "__close", snapshot_close }, { "__tostring", snapshot_tostring },
  { "__index", NULL }, { NULL, NULL },
};

/* stack: module table */
int lmv_open_snapshot(lua_State *L) {
  luaL_newmetatable(L, MV_SNAPSHOT);
  luaL_setfuncs(L, snapshot_meta, 0);
  luaL_newlib(L, snapshot_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, load_snapshot);
  lua_setfield(L, -2, "load_snapshot");
  static const luaL_Reg guest_methods[] = { { "snapshot", guest_snapshot }, { "restore", guest_restore }, { NULL, NULL } };
  lmv_add_methods(L, "Guest", guest_methods);
  return 0;
}
