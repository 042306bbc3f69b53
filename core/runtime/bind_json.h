/* bind_json.h - the `cjson` table plugins see: lua-cjson's API (encode,
 * decode, null, safe) on the runtime's own codec, with fixed limits. */
#ifndef POLARIS_BIND_JSON_H
#define POLARIS_BIND_JSON_H

#include "runtime/rt_limits.h"

/* Pushes a new cjson table (its safe twin at .safe) whose functions keep a
 * pointer to lim (NULL: no limits), and keeps it in the registry for
 * require("cjson") / require("cjson.safe"). */
void bind_json_push(lua_State *L, const struct rt_limits *lim);

#endif
