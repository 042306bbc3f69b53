/* lua_json.h - JSON text to Lua values and back, integers exact (lua-cjson
 * would pass them through a double). */
#ifndef POLARIS_LUA_JSON_H
#define POLARIS_LUA_JSON_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/buf.h"
#include "wire/json_scan.h"               /* struct json_span */

/* Encodes the value at idx. Tables with keys 1..n are arrays, others objects
 * (string or number keys); depth is limited. Returns 0, or -1 with a message
 * in err (never raises). */
int lua_json_encode(lua_State *L, int idx, struct buf *out, char *err, size_t errlen);

/* The same with limits and lua-cjson's conventions (the `cjson` plugins
 * see, bind_json.c). */
struct lua_json_opts {
    int max_depth;               /* tables nested deeper are refused */
    size_t max_len;              /* a longer text is refused; 0: no cap */
    bool cjson_arrays;           /* lua-cjson's arrays (holes are null, "excessively sparse"
                                  * is an error) and its error messages */
    bool refuse_nonfinite;       /* NaN and infinities are errors, not null */
    void (*check)(lua_State *L); /* called every few hundred values; may raise, so
                                  * out must then be freed by whoever owns it */
};
int lua_json_encode_opts(lua_State *L, int idx, struct buf *out, const struct lua_json_opts *o,
                         char *err, size_t errlen);

/* The same as lua_json_encode for an event (a strategy's result), and for
 * a table written as an object, each of its members as json_object_members
 * would find them in out (up to max; pointers into out, good until it next
 * grows). The text is refused past LUA_JSON_EVENT_MAX bytes (what an app's
 * LSP frame may carry). Returns the count of members (which may exceed
 * max; 0 for anything but an object with members), or -1 with a message
 * in err. z is lua_json_lazy_at(L, idx), which the caller has looked up,
 * and zi where that left its userdata.
 * With skip_event_id the top-level "eventId" (a key of the table, or a
 * member of z's text) is left out, for the caller to write; the table is
 * not changed. */
#define LUA_JSON_EVENT_MAX (4u << 20)
struct json_member;
struct lua_json_lazy;
/* The top-level members copied from z's text are counted but not noted
 * in m: they are its first copied->n, noted as runs in copied, for
 * lua_json_copied_members to fill if the caller needs them (the
 * write-back's restamp rarely does: ~40 instructions a member an event
 * saved). */
#define LUA_JSON_LAZY_MAX 64
struct lua_json_copied {
    uint32_t n, nruns;
    struct {
        uint32_t first, last;     /* z's members first..last, one after the other */
        size_t key_at;            /* the first one's key, as an offset into out */
    } run[LUA_JSON_LAZY_MAX];     /* a member a run at most */
};
int lua_json_encode_members(lua_State *L, int idx, const struct lua_json_lazy *z, int zi, bool skip_event_id,
                            struct buf *out, struct json_member *m, size_t max,
                            struct lua_json_copied *copied, char *err, size_t errlen);
/* Fills m[0..copied->n) (up to max) as lua_json_encode_members would have
 * noted them, from z's spans and out, the text it wrote. */
void lua_json_copied_members(const struct lua_json_lazy *z, const struct lua_json_copied *copied,
                             const struct buf *out, struct json_member *m, size_t max);

/* Pushes the Lua value of the JSON text s[0..n): objects and arrays as
 * tables, integers that fit in 64 bits as integers, other numbers as floats,
 * null as cjson.null (a NULL light userdata). Returns 0, or -1 with *err set
 * to a static message and nothing pushed when s is not valid JSON (RFC 8259,
 * depth <= JSON_MAX_DEPTH). Raises only when out of memory. */
int lua_json_decode(lua_State *L, const char *s, size_t n, const char **err);

/* The same, calling check every few hundred values (it may raise). */
int lua_json_decode_opts(lua_State *L, const char *s, size_t n, void (*check)(lua_State *L),
                         const char **err);

/* The same, and for an object each of its top-level members (key, key_len,
 * key_escaped, val, val_len: pointers into s) in m, up to max. Returns the
 * count of members (which may exceed max; 0 for anything but an object),
 * or -1 as lua_json_decode does. */
int lua_json_decode_members(lua_State *L, const char *s, size_t n, struct json_member *m, size_t max,
                            const char **err);

/* The same as a Lua function: decode(text) -> value; raises on bad text. */
int lua_json_decode_fn(lua_State *L);

/* ---- lazy objects (made and served by lua_event.c) ----
 *
 * A table that stands for a JSON object whose text it keeps: a member is
 * decoded into the table when it is first read, and the encoder copies a
 * member nobody read from the text as it came. The table holds its state
 * (this userdata) under the light userdata key &lua_json_lazy_tag, which no
 * plugin can make or see (lua_event.c). The text was validated when the
 * table was made and is never changed, so a member's value is decoded
 * without being validated again. */
struct lua_json_lazy {
    uint64_t loaded;       /* bit i: member i is in the table, or was deleted
                            * from it: its text no longer speaks for it */
    uint64_t uint_mask;    /* bit i: member i's value is digits only (json_member's is_uint) */
    uint32_t n;            /* members (<= 64; keys plain, none twice) */
    uint32_t len;          /* the text's length */
    bool written;          /* (the root's) a key was set through __newindex in
                            * this table or any lazy table made from its text */
    bool unchecked;        /* the spans came from an index (lib/json_index.h) or
                            * from json_valid_spans over an index's text, not a
                            * validating scan: a value is validated before it
                            * is decoded */
    bool compact;          /* every member is written "key":value, one after the
                            * other with a comma between (an index's text, or
                            * json_valid_spans found no blank): the encoder copies
                            * them in runs without looking */
    uint8_t nkeys;         /* keys the table holds (members read or set, and keys
                            * set that are not members), each in a user value */
    bool walk;             /* more keys than LUA_JSON_LAZY_KEYS, one not a string,
                            * or a settle begun: the table is walked for them */
    bool first_known;      /* member 0's value is the digits of first (whoever made
                            * the table read it: an event's eventId) */
    uint64_t first;
    struct lua_json_lazy *root;  /* the outermost lazy object of this text: this
                            * one's, or kept alive through the user values */
    const char *text;      /* the object's text: after the spans (a copy of
                            * the event's), or inside the text of the lazy
                            * object it is a member of, whose state this
                            * one's user value keeps alive */
    struct json_span span[];
};
/* The state's user values: 1, the state whose text this one's lies in
 * (nil for a root); 2 to LUA_JSON_LAZY_KEYS + 1, the keys the table holds
 * (members once read or set, other keys once set: nkeys of them, in that
 * order), a deleted one's too. With them the encoder finds what the table
 * holds without walking it (lua_next, ~200 instructions a key), and
 * without making a string: it runs where no call protects an
 * allocation. */
#define LUA_JSON_LAZY_KEYS 4
#define LUA_JSON_LAZY_UVS (1 + LUA_JSON_LAZY_KEYS)
static inline int lua_json_lazy_key_uv(int j)          /* the j-th key's user value */
{
    return 2 + j;
}
static inline const char *lua_json_lazy_text(const struct lua_json_lazy *z)
{
    return z->text;
}
extern const char lua_json_lazy_tag;

/* The lazy object's state if the value at idx is one, else NULL. */
struct lua_json_lazy *lua_json_lazy_of(lua_State *L, int idx);
/* The same, its userdata (or nil) left on the stack, for whoever must keep
 * the state alive (the stack needs room for one more value). */
struct lua_json_lazy *lua_json_lazy_at(lua_State *L, int idx);

/* z's member whose key is k[0..kl), or -1. */
int lua_json_lazy_find(const struct lua_json_lazy *z, const char *k, size_t kl);

/* Pushes the value of z's member i, decoded from its text. Raises only
 * when out of memory. */
void lua_json_lazy_push(lua_State *L, const struct lua_json_lazy *z, uint32_t i);

#endif
