/* lua_event.c - the event table a strategy handler gets (DESIGN 5.4's
 * `ev`), made lazy: the handler pays for the members it reads, not for the
 * whole event, and the write-back copies every member it did not touch
 * from the event's text (lua_json.c's encode_lazy). A typical strategy
 * reads one or two members of an event's seven or more; decoding all of
 * them and encoding them again was most of its cost (docs/performance.md,
 * session 10).
 *
 * The table is a real Lua table with a metatable: __index decodes a member
 * into it on first read, __newindex notes which members were set, __len
 * and __pairs settle it. Every way Lua has to see a table's raw part
 * (next, rawget, rawset, getmetatable, setmetatable, and the runtime's own
 * C: JSON, the plugin-host channel) settles it first: the members all
 * decoded in, the metatable and state gone, a plain table from then on.
 * The state hangs in the table under a light userdata key only C can make,
 * and since the raw `next` a plugin could use is replaced too (pairs of a
 * plain table hands out this file's next), no plugin can see it.
 *
 * Uses: lua_json (lazy objects, decoding), json_scan, Lua 5.4 C API. */
#include "runtime/lua_event.h"
#include "runtime/lua_json.h"
#include "wire/json_scan.h"
#include "lib/json_index.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const char mt_tag = 0;
static const char eventid_anchor = 0;

static void push_member(lua_State *L, struct lua_json_lazy *z, uint32_t i);
static int event_pairs(lua_State *L);

/* Keeps the key at index key in the next free key user value of the lazy
 * state z, whose userdata is at ud (lua_json.h); past those the encoder
 * must walk the table. */
static void keep_key(lua_State *L, struct lua_json_lazy *z, int key, int ud)
{
    if (z->nkeys >= LUA_JSON_LAZY_KEYS) {
        z->walk = true;
        return;
    }
    ud = lua_absindex(L, ud);
    lua_pushvalue(L, key);
    lua_setiuservalue(L, ud, lua_json_lazy_key_uv(z->nkeys++));
}

static int lazy_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    lua_settop(L, 2);
    struct lua_json_lazy *z = lua_json_lazy_at(L, 1);      /* its state at 3 */
    if (!z)
        return 0;
    size_t kl;
    const char *k = lua_tolstring(L, 2, &kl);
    int i = lua_json_lazy_find(z, k, kl);
    if (i < 0 || (z->loaded >> i & 1))
        return 0;                            /* no such member, or deleted */
    push_member(L, z, (uint32_t)i);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    keep_key(L, z, 2, 3);
    z->loaded |= UINT64_C(1) << i;           /* only once it is in the table */
    return 1;
}

/* For set_noting: the key at -3 is being set in the lazy table whose state
 * z is at -1. A key the table does not hold yet is kept in the next free
 * user value (lua_json.h); past those, or for a key not a string, the
 * encoder must walk the table. Noted before the rawset, which may raise
 * (out of memory): a key noted is looked for among the noted ones first,
 * so one set again after that is not noted twice; and a key noted and
 * not in the table reads as nil (deleted) wherever a note is read.
 * Returns the member it is (its bit in loaded is the caller's to set,
 * once the key is in the table), or -1. */
static int note_key(lua_State *L, struct lua_json_lazy *z)
{
    if (lua_type(L, -3) != LUA_TSTRING) {
        z->walk = true;
        return -1;
    }
    size_t kl;
    const char *k = lua_tolstring(L, -3, &kl);
    int i = lua_json_lazy_find(z, k, kl);
    if (z->walk || (i >= 0 && (z->loaded >> i & 1)))
        return i;                            /* walked, or noted when read or set */
    /* set again after it was deleted (t.k = nil leaves no raw value, so
     * __newindex sees it again), or after a rawset that failed */
    for (int j = 0; j < z->nkeys; j++) {
        lua_getiuservalue(L, -1, lua_json_lazy_key_uv(j));
        bool same = lua_rawequal(L, -1, -4);
        lua_pop(L, 1);
        if (same)
            return i;
    }
    keep_key(L, z, -3, -1);
    return i;
}

/* t[k] = v, raw, for the key and value on top of the stack (popped) and
 * the table at t; a lazy table notes a member set or deleted (its text is
 * stale from then on). Raises for a nil or NaN key, as t[k] = v does. */
static void set_noting(lua_State *L, int t)
{
    struct lua_json_lazy *z = lua_json_lazy_at(L, t);       /* its state on top */
    int i = -1;
    if (z) {
        z->root->written = true;
        i = note_key(L, z);
    }
    lua_pop(L, 1);
    lua_rawset(L, t);
    if (i >= 0)
        z->loaded |= UINT64_C(1) << i;
}

static int lazy_newindex(lua_State *L)
{
    lua_settop(L, 3);
    set_noting(L, 1);
    return 0;
}

void lua_event_set(lua_State *L, int idx, const char *key)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, key);
    lua_insert(L, -2);
    set_noting(L, idx);                    /* no __newindex: the note is made here */
}

void lua_event_settle(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    struct lua_json_lazy *z = lua_json_lazy_of(L, idx);
    if (!z)
        return;
    luaL_checkstack(L, 4, "no Lua stack to settle an event table");
    /* its keys are no longer only those its state noted (lua_json.h), even
     * if this stops halfway, out of memory, and leaves it lazy */
    z->walk = true;
    lua_rawgetp(L, idx, &lua_json_lazy_tag);    /* z stays alive while its members go in */
    const char *text = lua_json_lazy_text(z);
    for (uint32_t i = 0; i < z->n; i++) {
        if (z->loaded >> i & 1)
            continue;
        lua_pushlstring(L, text + z->span[i].key, z->span[i].key_len);
        lua_json_lazy_push(L, z, i);
        lua_rawset(L, idx);
        z->loaded |= UINT64_C(1) << i;
    }
    lua_pushnil(L);
    lua_setmetatable(L, idx);
    lua_pushnil(L);
    lua_rawsetp(L, idx, &lua_json_lazy_tag);
    lua_pop(L, 1);
}

static int lazy_len(lua_State *L)
{
    lua_event_settle(L, 1);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
    return 1;
}

static int event_next(lua_State *L)
{
    lua_event_settle(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

void lua_event_push_metatable(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mt_tag) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    static const luaL_Reg mm[] = {
        {"__index", lazy_index}, {"__newindex", lazy_newindex}, {"__len", lazy_len},
        {"__pairs", event_pairs}, {NULL, NULL},
    };
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);                    /* each metamethod's upvalue: for the tables it makes */
    luaL_setfuncs(L, mm, 1);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &mt_tag);
}

/* Whether no key of the k spans sp of s is given twice (the last would
 * win: such an object is decoded whole). A key is compared with the ones
 * before it only when one of them has its length and first byte (a bit
 * of 64 for each pair). */
static bool keys_unique(const char *s, const struct json_span *sp, int k)
{
    uint64_t seen = 0;
    for (int i = 0; i < k; i++) {
        const char *key = s + sp[i].key;
        uint64_t bit = UINT64_C(1) << ((sp[i].key_len * 31u + (unsigned char)key[0]) & 63u);
        if (seen & bit)
            for (int j = 0; j < i; j++)
                if (sp[j].key_len == sp[i].key_len && memcmp(s + sp[j].key, key, sp[i].key_len) == 0)
                    return false;
        seen |= bit;
    }
    return true;
}

/* The k members m of the object s[0..n) as spans sp and their digits-only
 * marks, when a lazy table can stand for them: at most LUA_JSON_LAZY_MAX
 * (and max), no key escaped or given twice. */
static bool lazy_spans(const char *s, size_t n, const struct json_member *m, int k, size_t max,
                       struct json_span *sp, uint64_t *uint_mask)
{
    if (k > LUA_JSON_LAZY_MAX || (size_t)k > max || n >= UINT32_MAX)
        return false;
    *uint_mask = 0;
    for (int i = 0; i < k; i++) {
        if (m[i].key_escaped)
            return false;
        sp[i] = (struct json_span){(uint32_t)(m[i].key - s), (uint32_t)m[i].key_len,
                                   (uint32_t)(m[i].val - s), (uint32_t)m[i].val_len};
        *uint_mask |= (uint64_t)m[i].is_uint << i;
    }
    return keys_unique(s, sp, k);
}

/* Pushes a lazy table for the object s[0..n) whose k members are sp
 * (uint_mask: which are digits only; unchecked: its values not validated,
 * compact: written "k":v,"k":v, lua_json.h). With anchor 0 it keeps a copy of s; else s lies
 * in the text of the lazy object whose state is at anchor, kept alive as
 * this one's user value, and that object's metatable (this one's too) is
 * at mt. Returns its state. */
static struct lua_json_lazy *push_lazy(lua_State *L, const char *s, size_t n, const struct json_span *sp,
                                       int k, uint64_t uint_mask, bool unchecked, bool compact, int anchor,
                                       struct lua_json_lazy *parent, int mt)
{
    luaL_checkstack(L, 4, "no Lua stack for an event table");
    /* room for four keys, not one for each member: the state's, the
     * eventId read sets, and the one or two members a strategy reads or
     * adds (a read member is in the table; one nobody reads never is).
     * More grow it as any table grows. Allocating every member's node
     * up front cost ~2% of an event (callgrind), in memory and in the
     * collector's work and the write-back's walk over empty nodes. */
    lua_createtable(L, 0, k + 2 < 4 ? k + 2 : 4);
    size_t size = sizeof(struct lua_json_lazy) + (size_t)k * sizeof(struct json_span);
    struct lua_json_lazy *z = lua_newuserdatauv(L, size + (anchor ? 0 : n + 1), LUA_JSON_LAZY_UVS);
    z->loaded = 0;
    z->nkeys = 0;
    z->walk = false;
    z->uint_mask = uint_mask;
    memcpy(z->span, sp, (size_t)k * sizeof *sp);
    z->n = (uint32_t)k;
    z->len = (uint32_t)n;
    z->written = false;
    z->unchecked = unchecked;
    z->compact = compact;
    z->first_known = false;
    z->root = parent ? parent->root : z;
    if (anchor) {
        z->text = s;
        lua_pushvalue(L, anchor);
        lua_setiuservalue(L, -2, 1);
    } else {
        char *text = (char *)z + size;
        memcpy(text, s, n);
        text[n] = '\0';
        z->text = text;
    }
    lua_rawsetp(L, -2, &lua_json_lazy_tag);
    if (mt)
        lua_pushvalue(L, mt);
    else
        lua_event_push_metatable(L);
    lua_setmetatable(L, -2);
    return z;
}

int lua_event_push(lua_State *L, const char *s, size_t n, const struct json_index *ix,
                   struct json_member *m, size_t max, const char **err, int mt,
                   struct lua_json_lazy **indexed)
{
    struct json_span sp[LUA_JSON_LAZY_MAX];
    uint64_t uint_mask = 0;
    int k = ix ? json_index_spans(ix, s, n, sp, max < JSON_INDEX_MAX ? max : JSON_INDEX_MAX) : -1;
    if (indexed)
        *indexed = NULL;
    mt = mt ? lua_absindex(L, mt) : 0;
    if (k >= 0 && (ix->keys_unique || keys_unique(s, sp, k))) {
        /* the members as the stamp noted them, straight into the state:
         * not scanned, and not made json_members on the way (no key of
         * an indexed text is escaped) */
        for (int i = 0; i < k; i++)
            if ((ix->uint_mask >> i & 1) && json_kind_of(s[sp[i].val]) == JSON_NUMBER)
                uint_mask |= UINT64_C(1) << i;
        struct lua_json_lazy *z = push_lazy(L, s, n, sp, k, uint_mask, true, true, 0, NULL, mt);
        if (indexed)
            *indexed = z;
        return k;
    }
    if ((k = json_object_members(s, n, m, max, err)) < 0)
        return -1;
    if (!lazy_spans(s, n, m, k, max, sp, &uint_mask))
        return lua_json_decode_members(L, s, n, m, max, err);    /* validates it */
    push_lazy(L, s, n, sp, k, uint_mask, false, false, 0, NULL, mt);
    return k;
}

/* Pushes member i of the lazy table at 1 (state z, its userdata at 3),
 * for __index (the metatable its upvalue): an object lazy in its turn (a
 * handler that sets ev.params.x then touches none of params' other
 * members), anything else decoded. The object's text is part of z's,
 * valid as z's is, so its members are found without validating it again
 * (json_valid_spans): as z's values, its values are validated before
 * they are decoded if z's text came with an index and was never scanned. */
static void push_member(lua_State *L, struct lua_json_lazy *z, uint32_t i)
{
    const struct json_span *sp = &z->span[i];
    const char *v = lua_json_lazy_text(z) + sp->val;
    if (v[0] == '{' && sp->val_len > 2) {
        struct json_span msp[LUA_JSON_LAZY_MAX];
        uint64_t uint_mask;
        bool compact;
        int k = json_valid_spans(v, sp->val_len, msp, LUA_JSON_LAZY_MAX, &uint_mask, &compact);
        if (k > 0 && keys_unique(v, msp, k)) {
            /* the metatable: __index's upvalue (lua_event_push_metatable) */
            push_lazy(L, v, sp->val_len, msp, k, uint_mask, z->unchecked, compact, 3, z,
                      lua_upvalueindex(1));
            return;
        }
    }
    lua_json_lazy_push(L, z, i);
}

/* ---- a returned table that says what its text says ---- */

static bool member_as_text(lua_State *L, const struct lua_json_lazy *z, const struct json_span *sp,
                           int depth);

/* Whether the lazy table at t (state z, its userdata at zi) holds nothing
 * but members of its text, each as it was read, and lacks none it read.
 * The keys it holds are the state's (lua_json.h), unless it took more
 * than those (walk): then the table is walked. */
static bool table_as_text(lua_State *L, int t, const struct lua_json_lazy *z, int zi, int depth)
{
    if (depth > 16 || !lua_checkstack(L, 4))
        return false;                           /* deep enough: the encoder decides */
    if (!z->walk) {
        for (int j = 0; j < z->nkeys; j++) {
            size_t kl;
            const char *k;
            int i = -1;
            if (lua_getiuservalue(L, zi, lua_json_lazy_key_uv(j)) == LUA_TSTRING &&
                (k = lua_tolstring(L, -1, &kl)))
                i = lua_json_lazy_find(z, k, kl);
            if (i < 0) {
                lua_pop(L, 1);
                return false;                   /* a new key */
            }
            /* a member read (or deleted) and not in the table now was deleted */
            bool same = lua_rawget(L, t) != LUA_TNIL && member_as_text(L, z, &z->span[i], depth);
            lua_pop(L, 1);
            if (!same)
                return false;
        }
        return true;
    }
    uint32_t members = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TLIGHTUSERDATA && lua_touserdata(L, -2) == &lua_json_lazy_tag) {
            lua_pop(L, 1);
            continue;
        }
        int i = -1;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, -2, &kl);
            i = lua_json_lazy_find(z, k, kl);
        }
        if (i < 0 || !(z->loaded >> i & 1) || !member_as_text(L, z, &z->span[i], depth)) {
            lua_pop(L, 2);
            return false;                       /* a new key, or a member changed */
        }
        members++;
        lua_pop(L, 1);
    }
    /* a member read (or deleted) and not in the table now was deleted */
    return members == (uint32_t)__builtin_popcountll(z->loaded);
}

/* Whether the value on top of the stack reads as z's member sp decodes:
 * the same lazy table (as its text), an empty table for an empty object or
 * array, the same string (no escape in the text), integer, boolean or
 * null. Anything else (a float, a non-empty array, an object a lazy table
 * could not stand for) counts as changed, and the write-back encodes it. */
static bool member_as_text(lua_State *L, const struct lua_json_lazy *z, const struct json_span *sp,
                           int depth)
{
    const char *v = lua_json_lazy_text(z) + sp->val;
    size_t vl = sp->val_len;
    switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, -1, &l);
        return vl == l + 2 && v[0] == '"' && memchr(v + 1, '\\', l) == NULL && memcmp(v + 1, s, l) == 0;
    }
    case LUA_TNUMBER: {
        int64_t n;
        return lua_isinteger(L, -1) && json_to_i64(v, vl, &n) == 0 && n == (int64_t)lua_tointeger(L, -1);
    }
    case LUA_TBOOLEAN:
        return lua_toboolean(L, -1) ? vl == 4 && memcmp(v, "true", 4) == 0
                                    : vl == 5 && memcmp(v, "false", 5) == 0;
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, -1) == NULL && vl == 4 && memcmp(v, "null", 4) == 0;
    case LUA_TTABLE: {
        struct lua_json_lazy *c = lua_json_lazy_at(L, -1);     /* its userdata on top */
        if (c) {
            bool same = c->root == z->root && c->text == v && c->len == vl &&
                        table_as_text(L, lua_gettop(L) - 1, c, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
            return same;
        }
        lua_pop(L, 1);
        /* an empty object or array is decoded, not lazy (the "params":{}
         * of an event sent without): still empty, with no metatable */
        if ((v[0] != '{' && v[0] != '[') || vl < 2)
            return false;
        for (size_t j = 1; j + 1 < vl; j++)
            if (v[j] != ' ' && v[j] != '\t' && v[j] != '\n' && v[j] != '\r')
                return false;
        if (lua_getmetatable(L, -1)) {
            lua_pop(L, 1);
            return false;
        }
        lua_pushnil(L);
        if (lua_next(L, -2)) {
            lua_pop(L, 2);
            return false;
        }
        return true;
    }
    default:
        return false;
    }
}

bool lua_event_as_text(lua_State *L, int idx, const struct lua_json_lazy *z, const char *text,
                       size_t len)
{
    if (!z || z->root != z || z->written || z->len != len || memcmp(z->text, text, len) != 0 ||
        !lua_checkstack(L, 1))
        return false;
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, idx, &lua_json_lazy_tag);                   /* z's userdata */
    bool same = table_as_text(L, idx, z, lua_gettop(L), 0);
    lua_pop(L, 1);
    return same;
}

/* ---- the globals that see a table's raw part ---- */

static int event_rawget(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    lua_settop(L, 2);
    lua_event_settle(L, 1);
    lua_rawget(L, 1);
    return 1;
}

static int event_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    lua_event_settle(L, 1);
    lua_rawset(L, 1);
    return 1;
}

static int pairs_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)L, (void)status, (void)ctx;
    return 3;
}

static int event_pairs(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_event_settle(L, 1);
    if (luaL_getmetafield(L, 1, "__pairs") == LUA_TNIL) {
        lua_pushcfunction(L, event_next);
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        return 3;
    }
    lua_pushvalue(L, 1);                     /* the plugin's own __pairs */
    lua_callk(L, 1, 3, 0, pairs_done);
    return 3;
}

static int event_getmetatable(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_event_settle(L, 1);
    lua_CFunction orig = lua_tocfunction(L, lua_upvalueindex(1));
    return orig(L);
}

void lua_event_open(lua_State *L, int idx)
{
    static const luaL_Reg raw[] = {
        {"next", event_next}, {"pairs", event_pairs}, {"rawget", event_rawget},
        {"rawset", event_rawset}, {NULL, NULL},
    };
    idx = lua_absindex(L, idx);
    lua_pushvalue(L, idx);
    luaL_setfuncs(L, raw, 0);
    lua_pop(L, 1);
    lua_getfield(L, idx, "getmetatable");
    lua_pushcclosure(L, event_getmetatable, 1);
    lua_setfield(L, idx, "getmetatable");
    /* the key every event table gets (read_event) and every write-back
     * looks for where no call protects it (reencode): a short string Lua
     * has interned is found, not allocated, so one is kept alive for the
     * state's life (a plugin at its memory limit must not make that push
     * raise: Lua would abort the daemon) */
    lua_pushliteral(L, "eventId");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &eventid_anchor);
}
