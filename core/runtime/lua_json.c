/* lua_json.c - the runtime's JSON <-> Lua codec: events into strategies and
 * back, command arguments and results, messages between plugins, what a
 * waiting call brings back, and the plugins' own `cjson` (bind_json.c,
 * through lua_json_encode_opts: lua-cjson's array rules, fixed limits, a
 * budget check). Integers stay integers both ways (an eventId or a
 * parameter of 2^53+1 survives a strategy; lua-cjson reads every number as
 * a double). Encoding ignores metatables (rawget/rawlen only), so plugin
 * code never runs inside it.
 * Decoding checks the text with json_scan first, then builds each table
 * once at its final size (its members are gathered on the Lua stack).
 * Uses: json_scan, buf, Lua 5.4 C API. */
#include "runtime/lua_json.h"
#include "lib/json_plain.h"
#include "wire/json_scan.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64
#define CHECK_EVERY 256          /* values encoded between two opts->check calls */

struct enc {
    const struct lua_json_opts *o;
    struct buf *out;
    unsigned values;             /* since the last check */
    char *err;
    size_t errlen;
    struct json_member *members; /* the top-level object's members, as offsets into out */
    size_t max_members;
    size_t nmembers;
    bool skip_event_id;          /* the top-level "eventId" is the caller's to write */
    uint64_t skip_mask;          /* the top-level lazy object's members left out for it */
    struct lua_json_copied *copied;  /* members copied from a lazy text: runs, not notes */
};

static const struct lua_json_opts runtime_opts = {MAX_DEPTH, 0, false, false, NULL};
/* an event written back: no longer than an app may send one, whatever a
 * table refers to many times (the text is the daemon's memory, not the
 * plugin's) */
static const struct lua_json_opts event_opts = {MAX_DEPTH, LUA_JSON_EVENT_MAX, false, false, NULL};

static int encode(lua_State *L, int idx, struct enc *e, int depth);

static void too_long(struct enc *e)
{
    if (e->o->cjson_arrays)                /* the plugins' cjson: the cap is their memory */
        snprintf(e->err, e->errlen, "not enough memory: the JSON text passes %zu bytes", e->o->max_len);
    else
        snprintf(e->err, e->errlen, "the JSON text passes %zu bytes", e->o->max_len);
}

const char lua_json_lazy_tag = 0;

/* The key below the top of the stack is a lazy object's state key: walks
 * of a lazy table's raw part skip it. */
static inline bool at_lazy_tag(lua_State *L)
{
    return lua_type(L, -2) == LUA_TLIGHTUSERDATA && lua_touserdata(L, -2) == &lua_json_lazy_tag;
}

/* lua-cjson's rule: every key a positive integer makes an array as long as
 * the largest, holes are null; one much larger than the count of keys is
 * "excessively sparse" (an error: a table {[1e9] = 1} is not a gigabyte
 * of nulls). Returns the length, 0 for an object, -1 with err set. */
#define SPARSE_RATIO 2
#define SPARSE_SAFE  10
static lua_Integer cjson_array_len(lua_State *L, int idx, struct enc *e)
{
    lua_Integer max = 0, items = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (at_lazy_tag(L)) {
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max)
            max = k;
        items++;
    }
    if (max > SPARSE_SAFE && max > items * SPARSE_RATIO) {
        snprintf(e->err, e->errlen, "Cannot serialise table: excessively sparse array");
        return -1;
    }
    return max;
}

static int is_array(lua_State *L, int idx, lua_Integer *n)
{
    lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
    if (len == 0)
        return 0;                  /* no [1]: an object (events, params), no walk needed */
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (at_lazy_tag(L)) {
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    *n = len;
    return count == len && len > 0;
}

static int put_member(lua_State *L, struct enc *e, int depth, bool *first);
static int put_members(lua_State *L, int idx, struct enc *e, int depth, bool *first);

/* The key at idx is the string "eventId". */
static inline bool is_event_id(lua_State *L, int idx)
{
    size_t kl;
    const char *k;
    return lua_type(L, idx) == LUA_TSTRING && (k = lua_tolstring(L, idx, &kl)) && kl == 7 &&
           memcmp(k, "eventId", 7) == 0;
}

static int encode_table(lua_State *L, int idx, struct enc *e, int depth)
{
    struct buf *out = e->out;
    char *err = e->err;
    size_t errlen = e->errlen;
    if (depth > e->o->max_depth) {
        snprintf(err, errlen, "table nested deeper than %d (or a cycle)", e->o->max_depth);
        return -1;
    }
    if (!lua_checkstack(L, 4)) {
        snprintf(err, errlen, "out of Lua stack");
        return -1;
    }
    lua_Integer n = 0;
    bool array;
    if (e->o->cjson_arrays) {
        n = cjson_array_len(L, idx, e);
        if (n < 0)
            return -1;
        array = n > 0;
    } else {
        array = is_array(L, idx, &n);
    }
    if (array) {
        buf_putc(out, '[');
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                buf_putc(out, ',');
            lua_rawgeti(L, idx, i);
            int rc = encode(L, lua_gettop(L), e, depth + 1);
            lua_pop(L, 1);
            if (rc < 0)
                return -1;
        }
        return buf_putc(out, ']');
    }
    buf_putc(out, '{');
    bool first = true;
    if (put_members(L, idx, e, depth, &first) < 0)
        return -1;
    return buf_putc(out, '}');
}

/* Writes the members the table at idx holds (a lazy one's state key
 * skipped), a comma before each but the first. */
static int put_members(lua_State *L, int idx, struct enc *e, int depth, bool *first)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (at_lazy_tag(L) || (depth == 0 && e->skip_event_id && is_event_id(L, -2))) {
            lua_pop(L, 1);
            continue;
        }
        if (put_member(L, e, depth, first) < 0) {
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Notes a top-level member written from key_at (its first byte after the
 * quote) on: offsets for now, out may move while the rest is written (its
 * kind is note_kind's, once it is done). Members copied from a lazy text
 * are noted as runs instead (note_run). */
static void note_member(struct enc *e, int depth, size_t key_at, size_t key_len, size_t val_at,
                        size_t val_len, bool key_escaped)
{
    if (depth != 0 || !e->members || e->nmembers++ >= e->max_members)
        return;
    struct json_member *m = &e->members[e->nmembers - 1];
    m->key = (const char *)(uintptr_t)key_at;
    m->key_len = key_len;
    m->val = (const char *)(uintptr_t)val_at;
    m->val_len = val_len;
    m->key_escaped = key_escaped;
}

/* Notes the top-level lazy text's members first..last, copied "key":value
 * one after the other with the first one's key's first byte at key_at, as
 * one run (lua_json.h: struct lua_json_copied). */
static void note_run(struct enc *e, int depth, uint32_t first, uint32_t last, size_t key_at)
{
    if (depth != 0 || !e->members)
        return;                                  /* only the top level's are noted */
    struct lua_json_copied *c = e->copied;
    c->run[c->nruns++] = (typeof(c->run[0])){first, last, key_at};
    c->n += last - first + 1;
    e->nmembers += last - first + 1;
}

/* Writes the member whose key and value are on top of the stack (both
 * left there), a comma first unless *first. */
static int put_member(lua_State *L, struct enc *e, int depth, bool *first)
{
    struct buf *out = e->out;
    int kt = lua_type(L, -2);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
        if (e->o->cjson_arrays)
            snprintf(e->err, e->errlen, "Cannot serialise %s: table key must be a number or string",
                     lua_typename(L, kt));
        else
            snprintf(e->err, e->errlen, "table key of type %s cannot be a JSON key", lua_typename(L, kt));
        return -1;
    }
    if (!*first)
        buf_putc(out, ',');
    *first = false;
    size_t key_at = out->len + 1, key_len = 0;
    if (kt == LUA_TSTRING) {
        const char *k = lua_tolstring(L, -2, &key_len);
        buf_json_str(out, k, key_len);
    } else {
        char tmp[64];
        if (lua_isinteger(L, -2))
            snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, -2));
        else
            snprintf(tmp, sizeof tmp, "%.17g", lua_tonumber(L, -2));
        buf_json_cstr(out, tmp);
    }
    size_t key_end = out->len - 1;
    buf_putc(out, ':');
    size_t val_at = out->len;
    if (encode(L, lua_gettop(L), e, depth + 1) < 0)
        return -1;
    /* an escape makes the key longer than the string: a key as long as
     * its string has none (a longer one without any, UTF-8 put right, is
     * only taken for escaped: it is decoded before it is compared) */
    note_member(e, depth, key_at, key_end - key_at, val_at, out->len - val_at,
                kt == LUA_TSTRING && key_end - key_at != key_len);
    return 0;
}

int lua_json_lazy_find(const struct lua_json_lazy *z, const char *k, size_t kl)
{
    const char *text = lua_json_lazy_text(z);
    for (uint32_t i = 0; i < z->n; i++)
        if (z->span[i].key_len == kl && memcmp(text + z->span[i].key, k, kl) == 0)
            return (int)i;
    return -1;
}

/* How deep the containers in valid JSON text s[0..n) nest (0 for a
 * scalar). */
static int nesting(const char *s, size_t n)
{
    int d = 0, max = 0;
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '"':
            for (i++; i < n && s[i] != '"'; i++)
                i += s[i] == '\\';
            break;
        case '{':
        case '[':
            if (++d > max)
                max = d;
            break;
        case '}':
        case ']':
            d--;
            break;
        }
    }
    return max;
}

/* A member copied from a lazy object's text: held to the depth a table
 * written there would be, and counted toward the budget check. */
static inline int copy_check(lua_State *L, struct enc *e, int depth, const char *v, size_t vl)
{
    if ((v[0] == '{' || v[0] == '[') && depth + nesting(v, vl) > e->o->max_depth) {
        snprintf(e->err, e->errlen, "table nested deeper than %d (or a cycle)", e->o->max_depth);
        return -1;
    }
    if (e->o->check && ++e->values >= CHECK_EVERY) {
        e->values = 0;
        e->o->check(L);
    }
    return 0;
}

/* "key":value, nothing around the colon */
static inline bool compact_member(const struct json_span *sp)
{
    return sp->val == sp->key + sp->key_len + 2;
}

/* The members a lazy table (state z, its userdata at zi) holds, as
 * put_members writes them, each key taken from the state's user values
 * (lua_json.h) in the order the table took it: the table is not walked
 * and no string made. A table holding keys the state does not know
 * (walk) is walked. */
static int put_lazy_members(lua_State *L, int idx, struct enc *e, int depth, bool *first,
                            const struct lua_json_lazy *z, int zi)
{
    if (z->walk)
        return put_members(L, idx, e, depth, first);
    for (int j = 0; j < z->nkeys; j++) {
        if (lua_getiuservalue(L, zi, lua_json_lazy_key_uv(j)) != LUA_TSTRING ||
            (depth == 0 && e->skip_event_id && is_event_id(L, -1))) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -1);
        if (lua_rawget(L, idx) == LUA_TNIL) {            /* deleted */
            lua_pop(L, 2);
            continue;
        }
        int rc = put_member(L, e, depth, first);
        lua_pop(L, 2);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* A lazy object (lua_json.h) written back: first each member nobody read
 * or set, copied from its text in its order, then what the table itself
 * holds (the members read or set, and new keys), as any table's members
 * are. With no member left to copy it is written as any table (it may
 * now be an array). Nothing here allocates from the state, so it cannot
 * raise where no call protects it (reencode, a command's result). */
static int encode_lazy(lua_State *L, int idx, struct enc *e, int depth, const struct lua_json_lazy *z, int zi)
{
    uint64_t loaded = z->loaded | (depth == 0 ? e->skip_mask : 0);
    if (loaded == (z->n == 64 ? UINT64_MAX : (UINT64_C(1) << z->n) - 1))
        return encode_table(L, idx, e, depth);
    struct buf *out = e->out;
    if (depth > e->o->max_depth) {
        snprintf(e->err, e->errlen, "table nested deeper than %d (or a cycle)", e->o->max_depth);
        return -1;
    }
    if (!lua_checkstack(L, 6)) {
        snprintf(e->err, e->errlen, "out of Lua stack");
        return -1;
    }
    const char *text = lua_json_lazy_text(z);
    bool first = true;
    buf_putc(out, '{');
    for (uint32_t i = 0; i < z->n; i++) {
        if (loaded >> i & 1)
            continue;
        const struct json_span *sp = &z->span[i];
        const char *v = text + sp->val;
        if (copy_check(L, e, depth, v, sp->val_len) < 0)
            return -1;
        if (!first)
            buf_putc(out, ',');
        first = false;
        size_t at = out->len;
        if (!z->compact && !compact_member(sp)) {   /* blanks around the colon go */
            buf_putc(out, '"');
            buf_append(out, text + sp->key, sp->key_len);
            buf_append(out, "\":", 2);
            buf_append(out, v, sp->val_len);
            note_run(e, depth, i, i, at + 1);
        } else {
            /* it and the compact members right after it that nobody read
             * or set go as one run of the text, in one copy (a daemon-made
             * event's text is all compact: every member of an event nobody
             * touched); a compact object's members are (json_index_spans
             * or json_valid_spans saw to that) and are not looked at again */
            uint32_t from = sp->key - 1, run_first = i;
            while (i + 1 < z->n && !(loaded >> (i + 1) & 1) &&
                   (z->compact || (compact_member(&sp[1]) && sp[1].key == sp->val + sp->val_len + 2 &&
                                     text[sp->val + sp->val_len] == ','))) {
                i++;
                sp++;
                if (copy_check(L, e, depth, text + sp->val, sp->val_len) < 0)
                    return -1;
            }
            buf_append(out, text + from, sp->val + sp->val_len - from);
            note_run(e, depth, run_first, i, at + 1);
        }
        if (e->o->max_len && out->len > e->o->max_len) {
            too_long(e);
            return -1;
        }
    }
    if (put_lazy_members(L, idx, e, depth, &first, z, zi) < 0)
        return -1;
    return buf_putc(out, '}');
}

static int encode_value(lua_State *L, int idx, struct enc *e, int depth)
{
    struct buf *out = e->out;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return buf_append(out, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? buf_append(out, "true", 4) : buf_append(out, "false", 5);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return buf_json_i64(out, (int64_t)lua_tointeger(L, idx));
        if (e->o->refuse_nonfinite && !isfinite(lua_tonumber(L, idx))) {
            snprintf(e->err, e->errlen, "Cannot serialise number: must not be NaN or Inf");
            return -1;
        }
        return buf_json_double(out, lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, idx, &l);
        return buf_json_str(out, s, l);
    }
    case LUA_TTABLE: {
        if (!lua_checkstack(L, 1)) {
            snprintf(e->err, e->errlen, "out of Lua stack");
            return -1;
        }
        const struct lua_json_lazy *z = lua_json_lazy_at(L, idx);   /* kept on the stack */
        int rc = z ? encode_lazy(L, idx, e, depth, z, lua_gettop(L)) : encode_table(L, idx, e, depth);
        lua_pop(L, 1);
        return rc;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)        /* cjson.null */
            return buf_append(out, "null", 4);
        /* fall through */
    default:
        if (e->o->cjson_arrays)
            snprintf(e->err, e->errlen, "Cannot serialise %s: type not supported", luaL_typename(L, idx));
        else
            snprintf(e->err, e->errlen, "a %s value cannot be encoded as JSON", luaL_typename(L, idx));
        return -1;
    }
}

/* Every value: the budget, then the size cap (checked after the value, so
 * the text passes it by at most one scalar, which the caller's own memory
 * already holds). */
static int encode(lua_State *L, int idx, struct enc *e, int depth)
{
    if (e->o->check && ++e->values >= CHECK_EVERY) {
        e->values = 0;
        e->o->check(L);
    }
    if (encode_value(L, idx, e, depth) < 0)
        return -1;
    if (e->o->max_len && e->out->len > e->o->max_len) {
        too_long(e);
        return -1;
    }
    return 0;
}

int lua_json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen)
{
    return lua_json_encode_opts(L, idx, out, &runtime_opts, err, errlen);
}

int lua_json_encode_opts(lua_State *L, int idx, struct buf *out, const struct lua_json_opts *o,
                         char *err, size_t errlen)
{
    idx = lua_absindex(L, idx);
    size_t start = out->len;
    struct enc e = {o, out, 0, err, errlen, NULL, 0, 0, false, 0, NULL};
    if (encode(L, idx, &e, 0) < 0) {
        out->len = start;
        if (out->p)
            out->p[start] = '\0';
        return -1;
    }
    return 0;
}

/* What json_scan would say of a value this encoder wrote (valid JSON by
 * construction: strings come out as valid UTF-8, nothing nests past
 * MAX_DEPTH), read from its first byte; uint as the scanner means it.
 * (Whether its key has an escape was noted as it was written: a lazy
 * object's keys have none.) */
static void note_kind(struct json_member *m)
{
    m->kind = json_kind_of(m->val[0]);
    m->is_uint = m->kind == JSON_NUMBER && json_digits_only(m->val, m->val_len);
}

int lua_json_encode_members(lua_State *L, int idx, const struct lua_json_lazy *z, int zi, bool skip_event_id,
                            struct buf *out, struct json_member *m, size_t max,
                            struct lua_json_copied *copied, char *err, size_t errlen)
{
    idx = lua_absindex(L, idx);
    zi = lua_absindex(L, zi);
    size_t start = out->len;
    struct enc e = {&event_opts, out, 0, err, errlen, m, max, 0, skip_event_id, 0, copied};
    copied->n = copied->nruns = 0;
    if (skip_event_id && z) {
        int mi = lua_json_lazy_find(z, "eventId", 7);
        if (mi >= 0)
            e.skip_mask = UINT64_C(1) << mi;
    }
    int rc = z ? encode_lazy(L, idx, &e, 0, z, zi) : encode(L, idx, &e, 0);
    if (rc == 0 && out->len > event_opts.max_len) {
        too_long(&e);
        rc = -1;
    }
    if (rc < 0) {
        out->len = start;
        if (out->p)
            out->p[start] = '\0';
        return -1;
    }
    for (size_t i = copied->n; i < e.nmembers && i < max; i++) {
        m[i].key = out->p + (uintptr_t)m[i].key;
        m[i].val = out->p + (uintptr_t)m[i].val;
        note_kind(&m[i]);
    }
    return (int)e.nmembers;
}

void lua_json_copied_members(const struct lua_json_lazy *z, const struct lua_json_copied *copied,
                             const struct buf *out, struct json_member *m, size_t max)
{
    size_t k = 0;
    for (uint32_t r = 0; r < copied->nruns; r++) {
        uint32_t first = copied->run[r].first;
        for (uint32_t x = first; x <= copied->run[r].last && k < max; x++, k++) {
            const struct json_span *sp = &z->span[x];
            const char *key = out->p + copied->run[r].key_at + (sp->key - z->span[first].key);
            const char *val = key + sp->key_len + 2;          /* copied "key":value */
            enum json_kind kind = json_kind_of(val[0]);
            m[k] = (struct json_member){key, sp->key_len, val, sp->val_len, kind, false,
                                        kind == JSON_NUMBER && (z->uint_mask >> x & 1)};
        }
    }
}

/* ---- JSON -> Lua ---- */

/* Members gathered on the stack before they go into their table: a table
 * made at its final size is never rehashed; a longer one is filled in
 * steps of this many. */
#define GATHER 64

/* Object keys repeat from one event to the next, and pushing one Lua has
 * already interned still costs its hash and a walk of the string table
 * (~4x a rawgeti). So a state keeps the last keys it decoded: their bytes
 * in a full userdata in its registry, two ways to a set, beside a table of
 * the same strings (its user value; slot i at index i + 1). A hit is
 * checked byte for byte; a miss pushes the key as before and takes the
 * set's older way. */
#define KEY_SETS  32               /* h >> 27 picks one */
#define KEY_MAX   23
struct key_cache {
    struct { unsigned char len; char bytes[KEY_MAX]; } slot[2 * KEY_SETS];
    unsigned char older[KEY_SETS];
};
static const char key_cache_tag = 0;

struct dec {
    lua_State *L;
    const char *p;          /* the text was validated: every scan ends in it */
    const char *end;
    void (*check)(lua_State *L);
    unsigned values;        /* since the last check */
    struct key_cache *keys;
    int keys_at;            /* the stack index of the table of key strings */
    struct json_member *members;  /* the top-level object's members, noted */
    size_t max_members, nmembers;
};

static void dec_value(struct dec *d);

static inline void skip_ws(struct dec *d)
{
    while (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t')
        d->p++;
}

static void dec_string(struct dec *d)
{
    const char *s = ++d->p, *q = s;
    for (;;) {
        q += json_plain_run((const unsigned char *)q, 0, (size_t)(d->end - q));
        if (*q == '"' || *q == '\\')
            break;
        q++;                                /* UTF-8, or the last few bytes */
    }
    if (*q == '"') {
        lua_pushlstring(d->L, s, (size_t)(q - s));
        d->p = q + 1;
        return;
    }
    while (*q != '"')
        q += *q == '\\' ? 2 : 1;
    /* escapes only shorten a string: the token's length is room enough */
    size_t n = (size_t)(q + 1 - (s - 1));
    luaL_Buffer b;
    char *out = luaL_buffinitsize(d->L, &b, n);
    int len = json_string_decode(s - 1, n, out, n);
    luaL_pushresultsize(&b, len > 0 ? (size_t)len : 0);
    d->p = q + 1;
}

/* A key: from the cache when it is plain and short, else as any string. */
static void dec_key(struct dec *d)
{
    const char *s = d->p + 1;
    size_t n = json_plain_run((const unsigned char *)s, 0, (size_t)(d->end - s));
    if (s[n] != '"' || n == 0 || n > KEY_MAX) {
        dec_string(d);
        return;
    }
    /* the length and three of its bytes: enough to tell an event's keys
     * apart (a set holds two), and a hit is compared in full anyway */
    uint32_t h = ((uint32_t)n | (uint32_t)(unsigned char)s[0] << 8 |
                  (uint32_t)(unsigned char)s[n - 1] << 16 | (uint32_t)(unsigned char)s[n >> 1] << 24) *
                 0x9E3779B1u;
    unsigned set = h >> 27, at = 2 * set;
    struct key_cache *c = d->keys;
    if (c->slot[at].len != n || memcmp(c->slot[at].bytes, s, n) != 0)
        at++;
    if (c->slot[at].len == n && memcmp(c->slot[at].bytes, s, n) == 0) {
        lua_rawgeti(d->L, d->keys_at, (lua_Integer)at + 1);
    } else {
        at = 2 * set + c->older[set];
        lua_pushlstring(d->L, s, n);          /* may raise: the slot is still as it was */
        lua_pushvalue(d->L, -1);
        lua_rawseti(d->L, d->keys_at, (lua_Integer)at + 1);
        memcpy(c->slot[at].bytes, s, n);
        c->slot[at].len = (unsigned char)n;
        c->older[set] ^= 1;
    }
    d->p = s + n + 1;
}

/* Pushes the state's key cache's table and returns the cache (made on the
 * state's first decode). */
static struct key_cache *keys_push(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_cache_tag) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        struct key_cache *c = lua_newuserdatauv(L, sizeof *c, 1);
        memset(c, 0, sizeof *c);
        /* the array part made whole now: a slot taken later never allocates */
        lua_createtable(L, 2 * KEY_SETS, 0);
        for (int i = 1; i <= 2 * KEY_SETS; i++) {
            lua_pushboolean(L, 0);
            lua_rawseti(L, -2, i);
        }
        lua_setiuservalue(L, -2, 1);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &key_cache_tag);
    }
    struct key_cache *c = lua_touserdata(L, -1);
    lua_getiuservalue(L, -1, 1);
    lua_remove(L, -2);
    return c;
}

/* Lua's own reading of a numeral: an integer when it fits in 64 bits, else
 * a float (with a decimal point in any locale). */
static void push_numeral(lua_State *L, const char *s, size_t n)
{
    char tmp[64];
    if (n < sizeof tmp) {
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        if (lua_stringtonumber(L, tmp) == 0)
            luaL_error(L, "JSON number %s cannot be read", tmp);
        return;
    }
    lua_pushlstring(L, s, n);
    if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0)
        luaL_error(L, "a JSON number of %d characters cannot be read", (int)n);
    lua_remove(L, -2);
}

static inline bool numeral_char(char c)
{
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

static void dec_number(struct dec *d)
{
    const char *s = d->p, *digits = s + (*s == '-'), *q = digits;
    int64_t v = 0;
    while (*q >= '0' && *q <= '9' && q - digits < 18)
        v = v * 10 + (*q++ - '0');
    if (!numeral_char(*q)) {
        /* at most 18 digits and nothing else: exact in an int64 */
        lua_pushinteger(d->L, *s == '-' ? -v : v);
        d->p = q;
        return;
    }
    while (numeral_char(*q))
        q++;
    push_numeral(d->L, s, (size_t)(q - s));
    d->p = q;
}

/* Moves the n values (pairs for an object) from index v on into the table
 * at t; the stack is then cut to keep what lies below v. */
static void dec_flush(lua_State *L, int t, int v, int n, bool object, lua_Integer *next)
{
    if (object) {
        for (int i = 0; i < n; i += 2) {
            lua_pushvalue(L, v + i);
            lua_pushvalue(L, v + 1 + i);
            lua_rawset(L, t);
        }
    } else {
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, v + i);
            lua_rawseti(L, t, ++*next);
        }
    }
}

/* Stack room is asked for every ROOM_EVERY values rather than before each
 * one: enough for them and the few slots a value needs while it is read
 * (a container asks for its own), and little enough that text nested
 * JSON_MAX_DEPTH deep needs no big stack. */
#define ROOM_EVERY 16
#define ROOM (ROOM_EVERY + 4)

static void dec_container(struct dec *d, bool object)
{
    lua_State *L = d->L;
    char close = object ? '}' : ']';
    int base = lua_gettop(L), t = 0, n = 0;
    lua_Integer next = 0;
    struct json_member *note = object ? d->members : NULL;
    d->members = NULL;                                  /* the top level's only */
    d->p++;
    skip_ws(d);
    if (*d->p != close) {
        for (;;) {
            if (n % ROOM_EVERY == 0)
                luaL_checkstack(L, ROOM, "JSON nested too deep");
            const char *key = d->p + 1, *key_end = key, *val = NULL;
            if (object) {
                dec_key(d);
                key_end = d->p - 1;
                skip_ws(d);
                d->p++;                                 /* ':' */
                skip_ws(d);
                val = d->p;
            }
            dec_value(d);
            if (note && d->nmembers++ < d->max_members) {
                struct json_member *m = &note[d->nmembers - 1];
                m->key = key;
                m->key_len = (size_t)(key_end - key);
                m->key_escaped = memchr(key, '\\', m->key_len) != NULL;
                m->val = val;
                m->val_len = (size_t)(d->p - val);
            }
            n += object ? 2 : 1;
            if (d->check && ++d->values >= CHECK_EVERY) {
                d->values = 0;
                d->check(L);
            }
            if (n >= 2 * GATHER) {
                if (!t) {
                    lua_createtable(L, object ? 0 : n, object ? n / 2 : 0);
                    lua_insert(L, base + 1);
                    t = base + 1;
                }
                dec_flush(L, t, t + 1, n, object, &next);
                lua_settop(L, t);
                n = 0;
            }
            skip_ws(d);
            if (*d->p++ != ',')
                break;                                  /* the close */
            skip_ws(d);
        }
    } else {
        d->p++;
    }
    if (t) {
        dec_flush(L, t, t + 1, n, object, &next);
        lua_settop(L, t);
        return;
    }
    /* an object gets room for one member more: a strategy that adds a
     * field (the common edit) then fills a free node instead of making Lua
     * rehash the table (~1,200 instructions for an event's params). Made
     * above its members, then moved down over the first: no rotation. */
    lua_createtable(L, object ? 0 : n, object ? n / 2 + 1 : 0);
    if (n) {
        dec_flush(L, lua_gettop(L), base + 1, n, object, &next);
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
    }
}

static void dec_value(struct dec *d)
{
    switch (*d->p) {
    case '{':
        dec_container(d, true);
        return;
    case '[':
        dec_container(d, false);
        return;
    case '"':
        dec_string(d);
        return;
    case 't':
        lua_pushboolean(d->L, 1);
        d->p += 4;
        return;
    case 'f':
        lua_pushboolean(d->L, 0);
        d->p += 5;
        return;
    case 'n':
        lua_pushlightuserdata(d->L, NULL);              /* cjson.null */
        d->p += 4;
        return;
    default:
        dec_number(d);
    }
}

int lua_json_decode(lua_State *L, const char *s, size_t n, const char **err)
{
    return lua_json_decode_opts(L, s, n, NULL, err);
}

static int decode(lua_State *L, const char *s, size_t n, void (*check)(lua_State *L),
                  struct json_member *m, size_t max, const char **err);

int lua_json_decode_members(lua_State *L, const char *s, size_t n, struct json_member *m, size_t max,
                            const char **err)
{
    return decode(L, s, n, NULL, m, max, err);
}

int lua_json_decode_opts(lua_State *L, const char *s, size_t n, void (*check)(lua_State *L),
                         const char **err)
{
    return decode(L, s, n, check, NULL, 0, err) < 0 ? -1 : 0;
}

/* Pushes the value of s[0..n), text known to be valid JSON (json_scan
 * said so); returns the count of top-level members noted (0 unless m and
 * an object). */
static int decode_valid(lua_State *L, const char *s, size_t n, void (*check)(lua_State *L),
                        struct json_member *m, size_t max)
{
    luaL_checkstack(L, 4, "JSON nested too deep");
    size_t at = 0;
    while (s[at] == ' ' || s[at] == '\n' || s[at] == '\r' || s[at] == '\t')
        at++;
    if (s[at] == '-' || (s[at] >= '0' && s[at] <= '9')) {
        /* a number alone: the one token valid text may end with, so it
         * is measured within n rather than scanned to a stop byte */
        size_t end = at;
        while (end < n && numeral_char(s[end]))
            end++;
        push_numeral(L, s + at, end - at);
        return 0;
    }
    if (s[at] != '{' && s[at] != '[') {
        struct dec d = {L, s + at, s + n, check, 0, NULL, 0, NULL, 0, 0};
        dec_value(&d);
        return 0;
    }
    struct key_cache *keys = keys_push(L);
    struct dec d = {L, s + at, s + n, check, 0, keys, lua_gettop(L), m, max, 0};
    dec_value(&d);
    lua_remove(L, -2);                          /* the keys' table */
    return (int)d.nmembers;
}

/* Returns the count of top-level members noted (0 unless m and an object),
 * or -1. */
static int decode(lua_State *L, const char *s, size_t n, void (*check)(lua_State *L),
                  struct json_member *m, size_t max, const char **err)
{
    if (json_validate(s, n, err) == JSON_INVALID)
        return -1;
    return decode_valid(L, s, n, check, m, max);
}

struct lua_json_lazy *lua_json_lazy_at(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushnil(L);
        return NULL;
    }
    return lua_rawgetp(L, idx, &lua_json_lazy_tag) == LUA_TUSERDATA ? lua_touserdata(L, -1) : NULL;
}

struct lua_json_lazy *lua_json_lazy_of(lua_State *L, int idx)
{
    struct lua_json_lazy *z = lua_json_lazy_at(L, idx);
    lua_pop(L, 1);
    return z;
}

void lua_json_lazy_push(lua_State *L, const struct lua_json_lazy *z, uint32_t i)
{
    const struct json_span *sp = &z->span[i];
    const char *v = lua_json_lazy_text(z) + sp->val, *err;
    /* the decoder trusts its text; an index's spans are checked only
     * where they meet (its writer is the daemon, but a bug there must
     * not make the decoder read past a value) */
    if (z->unchecked && json_validate(v, sp->val_len, &err) == JSON_INVALID)
        luaL_error(L, "an event member's text is not valid JSON (%s): its index is wrong", err);
    decode_valid(L, v, sp->val_len, NULL, NULL, 0);
}

int lua_json_decode_fn(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *err;
    if (lua_json_decode(L, s, n, &err) < 0)
        return luaL_error(L, "invalid JSON: %s", err);
    return 1;
}
