/*
 * lpaths.c - where the moonvisor executable finds its Lua library: the
 * scripts/ directory beside it on package.path (and MOONVISOR_SCRIPTS before
 * it), moonvisor.core in package.preload, and a searcher that loads the
 * library's precompiled chunks (build/lua-bc, made by `make`) instead of
 * parsing the sources.
 *
 * A require is most of a start's work after the parse of the script: the
 * searcher answers the library's modules first, with what Lua's own
 * searchers would find (package.preload's entry wins; else the file
 * package.searchpath names), and builds its paths in C.  bench/counts.sh:
 * ~6K instructions a require less than through the preload searcher's miss
 * and package.searchpath.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <lauxlib.h>
#include "lmoonvisor.h"
#include "lpaths.h"

int luaopen_moonvisor_core(lua_State *L);

/* Loads the precompiled chunk at path (size bytes) with one read() instead
 * of stdio's buffered reads: LUA_OK, or an error status with the message
 * on the stack, as luaL_loadfilex. */
static int load_bytecode(lua_State *L, const char *path, off_t size, const char *chunkname) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    lua_pushfstring(L, "cannot open %s: %s", path, strerror(errno));
    return LUA_ERRFILE;
  }
  char *buf = size > 0 ? malloc((size_t)size) : NULL;
  ssize_t got = 0;
  while (buf && got < size) {
    ssize_t n = read(fd, buf + got, (size_t)(size - got));
    if (n <= 0 && !(n < 0 && errno == EINTR)) break;
    if (n > 0) got += n;
  }
  close(fd);
  int status;
  if (!buf || got != size) {
    lua_pushfstring(L, "cannot read %s", path);
    status = LUA_ERRFILE;
  } else {
    status = luaL_loadbufferx(L, buf, (size_t)size, chunkname, "b");
  }
  free(buf);
  return status;
}

/* out = the strings of parts, up to a NULL, joined; false when they do
 * not fit.  (snprintf cost ~800 instructions a call, 5 calls a require.) */
static bool join(char *out, size_t size, const char *const *parts) {
  size_t at = 0;
  for (; *parts; parts++) {
    size_t n = strlen(*parts);
    if (n >= size - at) return false;
    memcpy(out + at, *parts, n);
    at += n;
  }
  out[at] = '\0';
  return true;
}

/* True when a is not older than b (modification times). */
static bool not_older(const struct stat *a, const struct stat *b) {
  return a->st_mtim.tv_sec > b->st_mtim.tv_sec ||
         (a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec >= b->st_mtim.tv_nsec);
}

/* The source file of module `name` that package.searchpath would find on
 * package.path, into src (a path under scripts, the executable's scripts
 * directory, or anywhere searchpath says), or false.  When package.path
 * begins with scripts' two templates (upvalue 4, as mv_paths_init leaves
 * it without MOONVISOR_SCRIPTS), those are the first candidates searchpath
 * would try, so they are tried here in C; anything else asks searchpath. */
static bool find_source(lua_State *L, const char *name, const char *scripts, char *src, size_t size) {
  lua_getfield(L, lua_upvalueindex(2), "path");
  const char *path = lua_tostring(L, -1);
  size_t own_len;
  const char *own = lua_tolstring(L, lua_upvalueindex(4), &own_len);
  char rel[PATH_MAX];
  if (path && strncmp(path, own, own_len) == 0 && join(rel, sizeof rel, (const char *[]){ name, NULL })) {
    for (char *p = rel; *p; p++)
      if (*p == '.') *p = '/';
    static const char *const ends[] = { ".lua", "/init.lua" };
    for (int i = 0; i < 2; i++) {
      if (join(src, size, (const char *[]){ scripts, "/", rel, ends[i], NULL }) && access(src, R_OK) == 0) {
        lua_pop(L, 1);
        return true;
      }
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, lua_upvalueindex(2), "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, lua_upvalueindex(2), "path");
  lua_call(L, 2, 1);
  const char *found = lua_tostring(L, -1);
  bool ok = found && join(src, size, (const char *[]){ found, NULL });
  lua_pop(L, 1);
  return ok;
}

/* The searcher, first in package.searchers, for the moonvisor.* modules:
 * package.preload's entry wins (nothing is returned, so the preload
 * searcher takes it); else the source file (find_source) and, when that is
 * <exe dir>/../scripts/x.lua and <exe dir>/lua-bc/x.luac is not older, the
 * precompiled chunk instead, which skips parsing.  The chunk must carry the
 * source's name (so error messages and tracebacks do not change); anything
 * else loads the source.  Returns the loader and the file name, as Lua's
 * searcher does.  Upvalues: the executable's directory, package, the
 * scripts directory, its two package.path templates. */
static int search_precompiled(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (strncmp(name, "moonvisor", 9) != 0 || (name[9] != '\0' && name[9] != '.')) return 0;
  lua_getfield(L, lua_upvalueindex(2), "preload");
  bool preloaded = lua_istable(L, -1) && lua_getfield(L, -1, name) != LUA_TNIL;
  if (preloaded) return 0;
  lua_settop(L, 1);
  const char *dir = lua_tostring(L, lua_upvalueindex(1)), *scripts = lua_tostring(L, lua_upvalueindex(3));
  char src[PATH_MAX * 2], bc[PATH_MAX * 2];
  if (!find_source(L, name, scripts, src, sizeof src)) return 0;   /* Lua's own searcher says why */
  size_t n = strlen(scripts), len = strlen(src);
  struct stat ss, bs;
  lua_pushfstring(L, "@%s", src);   /* the chunk's name: the source's */
  if (strncmp(src, scripts, n) == 0 && src[n] == '/' && len > n + 5 && strcmp(src + len - 4, ".lua") == 0 &&
      join(bc, sizeof bc, (const char *[]){ dir, "/lua-bc/", src + n + 1, "c", NULL }) &&
      stat(src, &ss) == 0 && stat(bc, &bs) == 0 && not_older(&bs, &ss) &&
      load_bytecode(L, bc, bs.st_size, lua_tostring(L, -1)) == LUA_OK) {
    lua_Debug ar;
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">S", &ar);
    if (ar.source[0] == '@' && strcmp(ar.source + 1, src) == 0) {
      lua_pushstring(L, src);
      return 2;
    }
  }
  lua_settop(L, 1);
  if (luaL_loadfilex(L, src, NULL) != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, src, lua_tostring(L, -1));
  lua_pushstring(L, src);
  return 2;
}

/* Pushes dir's two package.path templates: "dir/?.lua;dir/?/init.lua;". */
static const char *push_templates(lua_State *L, const char *dir) {
  return lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
}

void mv_paths_init(lua_State *L) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
  }
  int scripts = lua_gettop(L) + 1;   /* the scripts directory and its templates (n > 0) */
  if (n > 0) {
    push_templates(L, lua_pushfstring(L, "%s/../scripts", exe));
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *old = lua_tostring(L, -1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *env = getenv("MOONVISOR_SCRIPTS");
  if (env && *env) {
    push_templates(L, env);
    luaL_addvalue(&b);
  }
  if (n > 0) {
    lua_pushvalue(L, scripts + 1);
    luaL_addvalue(&b);
    push_templates(L, lua_pushfstring(L, "%s/../share/lua/5.4", exe));
    lua_remove(L, -2);
    luaL_addvalue(&b);
  }
  luaL_addstring(&b, old ? old : "");
  luaL_pushresult(&b);
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_moonvisor_core);
  lua_setfield(L, -2, "moonvisor.core");
  lua_pop(L, 1);
  if (n > 0) {   /* the searcher, first (its upvalues: search_precompiled's) */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_pushstring(L, exe);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, scripts);
    lua_pushvalue(L, scripts + 1);
    lua_pushcclosure(L, search_precompiled, 4);
    for (lua_Integer i = (lua_Integer)luaL_len(L, -2); i >= 1; i--) {   /* insert at 1 */
      lua_rawgeti(L, -2, i);
      lua_rawseti(L, -3, i + 1);
    }
    lua_rawseti(L, -2, 1);
    lua_pop(L, 4);   /* searchers, package, the scripts directory and its templates */
  }
}
