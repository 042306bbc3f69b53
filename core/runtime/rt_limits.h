/* rt_limits.h - how the C functions a plugin can call ask about its
 * limits: the sandbox passes its own (sandbox.c), a test module fakes or
 * leaves them out. */
#ifndef POLARIS_RT_LIMITS_H
#define POLARIS_RT_LIMITS_H

#include <lua.h>
#include <stddef.h>

struct rt_limits {
    /* Called every few thousand steps; raises (a Lua error) once the
     * calling state's CPU budget is spent. NULL: unbounded. */
    void (*check_budget)(lua_State *L);
    /* The bytes the calling state may still allocate. NULL: no limit. */
    size_t (*mem_room)(lua_State *L);
};

#endif
