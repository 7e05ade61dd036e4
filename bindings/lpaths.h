/*
 * lpaths.h - where the moonvisor executable finds its Lua library (lpaths.c):
 * package.path, moonvisor.core preloaded, the precompiled library's searcher.
 */
#ifndef LPATHS_H
#define LPATHS_H

#include <lua.h>

void mv_paths_init(lua_State *L);

#endif
