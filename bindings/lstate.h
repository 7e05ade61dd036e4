/*
 * lstate.h - the executable's Lua state (lstate.c): made with moonvisor's
 * allocator, closed with mv_state_close so its memory pools go too.
 */
#ifndef LSTATE_H
#define LSTATE_H

#include <lua.h>

lua_State *mv_state_new(void);
void mv_state_close(lua_State *L);

#endif
