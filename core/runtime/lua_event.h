/* lua_event.h - the table a strategy handler gets for its event: filled as
 * it is read, written back by copying what nobody touched (lua_json.h's
 * lazy objects), and a plain table to every way Lua can look at it. */
#ifndef POLARIS_LUA_EVENT_H
#define POLARIS_LUA_EVENT_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

struct json_member;

/* Pushes a table for the JSON object s[0..n), lazy when it can be (at most
 * LUA_JSON_LAZY_MAX members, no key escaped or given twice), else decoded
 * whole. mt: the index of lua_event_push_metatable's table, or 0 (it is
 * looked up). Returns the count of its top-level members, or -1 with *err
 * set (s is not a valid JSON object) and nothing pushed. Raises only when
 * out of memory.
 * ix (or NULL): the index its writer made of s (lib/json_index.h), which
 * spares the scan for its members when it fits s (s must then be the
 * valid JSON its writer made): the table is lazy, and *indexed (if given)
 * is its state, whose spans are the members. Else (*indexed NULL) the
 * members go to m (up to max), as json_object_members finds them. */
struct json_index;
struct lua_json_lazy;
int lua_event_push(lua_State *L, const char *s, size_t n, const struct json_index *ix,
                   struct json_member *m, size_t max, const char **err, int mt,
                   struct lua_json_lazy **indexed);

/* Pushes the metatable of the state's lazy tables (made the first time),
 * for whoever makes many and would keep it at hand (read_event's
 * upvalue). Raises only when out of memory. */
void lua_event_push_metatable(lua_State *L);

/* t[key] = v for the table t at idx and the value v on top of the stack
 * (popped), as an assignment would do it but with no metamethod call.
 * Raises only when out of memory. */
void lua_event_set(lua_State *L, int idx, const char *key);

/* Whether the value at idx (z: lua_json_lazy_of it, looked up by the
 * caller) is the lazy table made from the JSON object
 * text[0..len) and still says exactly what the text says: no key set in it
 * or in any lazy table made from its members, nothing deleted, every
 * member read since then still holding what was read (a read object
 * member: the same lazy table, holding what it read). Then the text
 * itself is the table's JSON. Raw access only; raises nothing (a stack it
 * cannot grow, at the plugin's memory limit, counts as changed). */
struct lua_json_lazy;
bool lua_event_as_text(lua_State *L, int idx, const struct lua_json_lazy *z, const char *text,
                       size_t len);

/* Makes the value at idx, if it is a lazy table, a plain one: every member
 * decoded into it, its metatable and state gone. Anything else is left as
 * it is. Raises only when out of memory. */
void lua_event_settle(lua_State *L, int idx);

/* Replaces next, pairs, rawget, rawset and getmetatable in the table at
 * idx (a plugin's globals: the base library's are there) with ones that
 * settle a lazy table first (what they see of a table is its raw part),
 * so a plugin cannot tell a lazy table from a plain one. setmetatable is
 * the sandbox's, which calls lua_event_settle itself. Also keeps the
 * string "eventId" alive in the state, so pushing it never allocates.
 * Called while the state has no memory limit yet (sandbox_open). */
void lua_event_open(lua_State *L, int idx);

#endif
