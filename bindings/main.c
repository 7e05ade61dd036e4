/*
 * main.c - the moonvisor executable: a Lua 5.4 host with moonvisor.core
 * preloaded and scripts/ on package.path.  Runs a script (arg set as lua
 * does), -e chunks, or a basic prompt; every chunk runs under lua_pcall with
 * a traceback, so errors print and exit non-zero instead of crashing.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include "lmoonvisor.h"

int luaopen_moonvisor_core(lua_State *L);

static const char *progname = "moonvisor";

static void usage(void) {
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "  -e chunk   run the string 'chunk'\n"
          "  -i         enter the prompt after running the script\n"
          "  -v         show the version\n"
          "  -          run stdin\n"
          "With no script, reads statements from the prompt (or stdin when it is not a terminal).\n",
          progname);
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* package.path gets <dir of the executable>/../scripts, so build/moonvisor
 * finds the Lua library of its source tree, and MOONVISOR_SCRIPTS if set. */
static void set_paths(lua_State *L) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *old = lua_tostring(L, -1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *env = getenv("MOONVISOR_SCRIPTS");
  if (env && *env) {
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", env, env);
    luaL_addvalue(&b);
  }
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    lua_pushfstring(L, "%s/../scripts/?.lua;%s/../scripts/?/init.lua;%s/../share/lua/5.4/?.lua;%s/../share/lua/5.4/?/init.lua;",
                    exe, exe, exe, exe);
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
}

static int run_script(lua_State *L, char **argv, int script, int argc) {
  lua_createtable(L, argc - script, script + 1);   /* arg, as lua.c builds it */
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
  const char *fname = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
  int status = luaL_loadfile(L, fname);
  if (status != LUA_OK) return report(L, status);
  int nargs = argc - script - 1;
  luaL_checkstack(L, nargs, "too many arguments to script");
  for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
  return report(L, docall(L, nargs, 0));
}

/* The basic prompt: each line is tried as an expression first, then as a
 * statement; results are printed.  The full REPL lives in scripts/. */
static void prompt_loop(lua_State *L) {
  int tty = isatty(STDIN_FILENO);
  char line[8192];
  for (;;) {
    if (tty) {
      fputs("moonvisor> ", stdout);
      fflush(stdout);
    }
    if (!fgets(line, sizeof line, stdin)) break;
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    if (len == 0) continue;
    const char *ret = lua_pushfstring(L, "return %s", line);
    int status = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
    lua_remove(L, -2);
    if (status != LUA_OK) {
      lua_pop(L, 1);
      status = luaL_loadbuffer(L, line, len, "=stdin");
    }
    int top = lua_gettop(L) - 1;
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status != LUA_OK) {
      report(L, status);
      continue;
    }
    int nres = lua_gettop(L) - top;
    if (nres > 0) {
      lua_getglobal(L, "print");
      lua_insert(L, top + 1);
      report(L, docall(L, nres, 0));
    }
  }
  if (tty) fputc('\n', stdout);
}

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) progname = argv[0];
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "%s: cannot create the Lua state: out of memory\n", progname);
    return 1;
  }
  luaL_openlibs(L);
  set_paths(L);
  int interactive = 0, ran = 0, script = 0, status = LUA_OK;
  for (int i = 1; i < argc && status == LUA_OK && !script; i++) {
    if (strcmp(argv[i], "-e") == 0) {
      if (++i >= argc) {
        usage();
        status = LUA_ERRRUN;
        break;
      }
      status = luaL_loadbuffer(L, argv[i], strlen(argv[i]), "=(command line)");
      if (status == LUA_OK) status = docall(L, 0, 0);
      report(L, status);
      ran = 1;
    } else if (strcmp(argv[i], "-i") == 0) {
      interactive = 1;
    } else if (strcmp(argv[i], "-v") == 0) {
      printf("moonvisor %s (%s)\n", MV_VERSION, LUA_RELEASE);
      ran = 1;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage();
      ran = 1;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, argv[i]);
      usage();
      status = LUA_ERRRUN;
    } else {
      script = i;
    }
  }
  if (status == LUA_OK && script) {
    status = run_script(L, argv, script, argc);
    ran = 1;
  }
  if (status == LUA_OK && (interactive || !ran)) prompt_loop(L);
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
