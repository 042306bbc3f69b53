/* lua_strmatch.h - string.find, match, gmatch, gsub and rep with Lua 5.4's
 * results and messages, bounded: every loop reports its work to a budget
 * callback, recursion is capped per match attempt, and rep refuses a
 * result larger than the memory its caller has left. */
#ifndef POLARIS_LUA_STRMATCH_H
#define POLARIS_LUA_STRMATCH_H

#include "runtime/rt_limits.h"

/* Sets find, match, gmatch, gsub and rep in the table at idx. lim must
 * outlive the state (the functions keep a pointer to it); NULL means no
 * limits, the stock library's behaviour except for the cases documented
 * in lua_strmatch.c. */
void lua_strmatch_register(lua_State *L, int idx, const struct rt_limits *lim);

#endif
