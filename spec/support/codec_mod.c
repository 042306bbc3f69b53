/* codec_mod.c - the `polaris.codec` Lua module: the C wire codecs, CRC32,
 * gzip and the JSON scanner, exposed so busted specs drive exactly the code
 * the daemon runs (and the guest simulator can speak PLP).
 *
 * Decoders are userdata with named metatables (liolib style): created in a
 * safe state before anything can fail, freed by __gc or __close. Misuse
 * raises; a protocol error is returned as nil, message, code. */
#include "lib/buf.h"
#include "lib/json_index.h"
#include "wire/event_json.h"
#include "wire/gzip_codec.h"
#include "wire/json_scan.h"
#include "wire/lsp_codec.h"
#include "runtime/lua_json.h"
#include "runtime/lua_event.h"
#include "runtime/bind_json.h"
#include "wire/plp_codec.h"

#include <lauxlib.h>
#include <lua.h>
#include <string.h>
#include <zlib.h>

#define LSP_MT "polaris.lsp_decoder"
#define PLP_MT "polaris.plp_decoder"

static int push_buf(lua_State *L, struct buf *b)
{
    lua_pushlstring(L, b->p ? b->p : "", b->len);
    buf_free(b);
    return 1;
}

static int l_lsp_encode(lua_State *L)
{
    lua_Integer type = luaL_checkinteger(L, 1);
    lua_Integer req_id = luaL_checkinteger(L, 2);
    size_t len;
    const char *payload = luaL_optlstring(L, 3, "", &len);
    luaL_argcheck(L, type >= 0 && type <= 0xFFFF, 1, "msg_type must fit in 16 bits");
    luaL_argcheck(L, req_id >= 0 && req_id <= 0xFFFFFFFF, 2, "req_id must fit in 32 bits");
    struct buf b = BUF_INIT;
    if (lsp_encode(&b, (uint16_t)type, (uint32_t)req_id, payload, len) < 0) {
        buf_free(&b);
        return luaL_error(L, "lsp_encode: payload too large");
    }
    return push_buf(L, &b);
}

static int l_lsp_decoder(lua_State *L)
{
    lua_Integer max = luaL_optinteger(L, 1, LSP_MAX_FRAME);
    struct lsp_decoder *d = lua_newuserdatauv(L, sizeof *d, 0);
    lsp_decoder_init(d, (uint32_t)max);
    luaL_setmetatable(L, LSP_MT);
    return 1;
}

static int l_lsp_feed(lua_State *L)
{
    struct lsp_decoder *d = luaL_checkudata(L, 1, LSP_MT);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    if (lsp_decoder_feed(d, s, len) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

static int l_lsp_next(lua_State *L)
{
    struct lsp_decoder *d = luaL_checkudata(L, 1, LSP_MT);
    struct lsp_frame f;
    int rc = lsp_decoder_next(d, &f);
    if (rc == LSP_NEED_MORE) {
        lua_pushnil(L);
        return 1;
    }
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, lsp_status_str(rc));
        lua_pushinteger(L, rc);
        return 3;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, f.type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, f.reserved);
    lua_setfield(L, -2, "reserved");
    lua_pushinteger(L, f.req_id);
    lua_setfield(L, -2, "req_id");
    lua_pushlstring(L, f.payload, f.len);
    lua_setfield(L, -2, "payload");
    return 1;
}

static int l_lsp_pending(lua_State *L)
{
    struct lsp_decoder *d = luaL_checkudata(L, 1, LSP_MT);
    lua_pushinteger(L, (lua_Integer)lsp_decoder_pending(d));
    return 1;
}

static int l_lsp_gc(lua_State *L)
{
    lsp_decoder_free(luaL_checkudata(L, 1, LSP_MT));
    return 0;
}

static int l_plp_encode(lua_State *L)
{
    lua_Integer type = luaL_checkinteger(L, 1);
    lua_Integer seq = luaL_checkinteger(L, 2);
    size_t len;
    const char *payload = luaL_optlstring(L, 3, "", &len);
    lua_Integer gzip_min = 0, flags = PLP_FLAG_JSON;
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "gzip_min");
        gzip_min = luaL_optinteger(L, -1, 0);
        lua_getfield(L, 4, "flags");
        flags = luaL_optinteger(L, -1, PLP_FLAG_JSON);
        lua_pop(L, 2);
    }
    luaL_argcheck(L, type >= 0 && type <= 0xFFFF, 1, "type must fit in 16 bits");
    luaL_argcheck(L, seq >= 0 && seq <= 0xFFFFFFFF, 2, "seq must fit in 32 bits");
    struct buf b = BUF_INIT;
    if (plp_encode(&b, (uint16_t)type, (uint16_t)flags, (uint32_t)seq, payload, len,
                   (size_t)gzip_min) < 0) {
        buf_free(&b);
        return luaL_error(L, "plp_encode: payload too large or out of memory");
    }
    return push_buf(L, &b);
}

static int l_plp_decoder(lua_State *L)
{
    struct plp_decoder *d = lua_newuserdatauv(L, sizeof *d, 0);
    plp_decoder_init(d);
    luaL_setmetatable(L, PLP_MT);
    return 1;
}

static int l_plp_feed(lua_State *L)
{
    struct plp_decoder *d = luaL_checkudata(L, 1, PLP_MT);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    if (plp_decoder_feed(d, s, len) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

/* frame table | nil (need more) | false, reason (frame skipped) |
 * nil, message, code (session must close) */
static int l_plp_next(lua_State *L)
{
    struct plp_decoder *d = luaL_checkudata(L, 1, PLP_MT);
    struct plp_frame f;
    int rc = plp_decoder_next(d, &f);
    if (rc == PLP_NEED_MORE) {
        lua_pushnil(L);
        return 1;
    }
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, plp_status_str(rc));
        lua_pushinteger(L, rc);
        return 3;
    }
    if (rc != PLP_FRAME) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, rc == PLP_SKIP_CRC ? "crc" : rc == PLP_SKIP_BOMB ? "bomb" : "gzip");
        lua_pushinteger(L, f.seq);
        return 3;
    }
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, f.type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, f.flags);
    lua_setfield(L, -2, "flags");
    lua_pushinteger(L, f.seq);
    lua_setfield(L, -2, "seq");
    lua_pushinteger(L, f.crc);
    lua_setfield(L, -2, "crc");
    lua_pushlstring(L, f.payload ? f.payload : "", f.len);
    lua_setfield(L, -2, "payload");
    return 1;
}

static int l_plp_pending(lua_State *L)
{
    struct plp_decoder *d = luaL_checkudata(L, 1, PLP_MT);
    lua_pushinteger(L, (lua_Integer)plp_decoder_pending(d));
    return 1;
}

static int l_plp_gc(lua_State *L)
{
    plp_decoder_free(luaL_checkudata(L, 1, PLP_MT));
    return 0;
}

static int l_crc32(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushinteger(L, (lua_Integer)crc32(0L, (const Bytef *)s, (uInt)len));
    return 1;
}

static int l_gzip(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    struct buf b = BUF_INIT;
    if (gzip_compress(s, len, &b) < 0) {
        buf_free(&b);
        return luaL_error(L, "gzip failed");
    }
    return push_buf(L, &b);
}

static int l_gunzip(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer max = luaL_optinteger(L, 2, PLP_MAX_INFLATED);
    struct buf b = BUF_INIT;
    int rc = gzip_decompress(s, len, &b, (size_t)max);
    if (rc < 0) {
        buf_free(&b);
        lua_pushnil(L);
        lua_pushstring(L, rc == -2 ? "output too large" : "not a gzip stream");
        return 2;
    }
    return push_buf(L, &b);
}

static int l_json_validate(lua_State *L)
{
    static const char *kinds[] = {"invalid", "object", "array", "string", "number",
                                  "true", "false", "null"};
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *err = NULL;
    enum json_kind k = json_validate(s, len, &err);
    if (k == JSON_INVALID) {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "invalid");
        return 2;
    }
    lua_pushstring(L, kinds[k]);
    return 1;
}

static int l_json_string(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    struct buf b = BUF_INIT;
    if (buf_json_str(&b, s, len) < 0) {
        buf_free(&b);
        return luaL_error(L, "out of memory");
    }
    return push_buf(L, &b);
}

static int l_event_stamp(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer pid = luaL_checkinteger(L, 2);
    lua_Integer uid = luaL_checkinteger(L, 3);
    struct buf b = BUF_INIT;
    uint64_t id;
    const char *err = NULL;
    if (event_stamp(s, len, (pid_t)pid, (uid_t)uid, &b, &id, NULL, &err) < 0) {
        buf_free(&b);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    push_buf(L, &b);
    char idtxt[24];
    snprintf(idtxt, sizeof idtxt, "%llu", (unsigned long long)id);
    lua_pushstring(L, idtxt);
    return 2;
}

static const luaL_Reg lsp_methods[] = {
    {"feed", l_lsp_feed}, {"next", l_lsp_next}, {"pending", l_lsp_pending}, {NULL, NULL},
};
static const luaL_Reg plp_methods[] = {
    {"feed", l_plp_feed}, {"next", l_plp_next}, {"pending", l_plp_pending}, {NULL, NULL},
};
/* The runtime's JSON <-> Lua codec (lua_json.c): decode(text) -> value or
 * nil, message; encode(value) -> text or nil, message. */
static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *err;
    if (lua_json_decode(L, s, len, &err) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

static int l_json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    struct buf b = BUF_INIT;
    char err[256];
    if (lua_json_encode(L, 1, &b, err, sizeof err) < 0) {
        buf_free(&b);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return push_buf(L, &b);
}

/* A strategy's event table as the runtime makes it (lua_event.c):
 * lazy_event(text [, index]) -> table or nil, message; index true: text
 * must be an event as the ingress stamps it (pid -1), made with the
 * index the stamp notes, as the worker makes an app's event, and a
 * second result says whether the index was taken; index a list of key
 * offsets (0-based): that index, right or wrong (each key's length: to
 * the next quote). event_env() -> a table with
 * the plugins' next, pairs, rawget, rawset, getmetatable and a
 * setmetatable that settles first, as the sandbox has them;
 * lazy_state(t) -> nil for a plain table, else its members read or set
 * (a bit mask). */
static int l_lazy_event(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *err;
    struct json_member m[LUA_JSON_LAZY_MAX];
    struct json_index ix = {0};
    if (lua_istable(L, 2)) {
        ix.len = (uint16_t)len;
        ix.n = (uint8_t)luaL_len(L, 2);
        luaL_argcheck(L, ix.n <= JSON_INDEX_MAX, 2, "too many offsets");
        for (int i = 0; i < ix.n; i++) {
            lua_rawgeti(L, 2, i + 1);
            ix.key_at[i] = (uint16_t)luaL_checkinteger(L, -1);
            lua_pop(L, 1);
            /* the key's length as its writer would note it: to the next quote */
            const char *q = ix.key_at[i] + 1u < len ? memchr(s + ix.key_at[i] + 1, '"', len - ix.key_at[i] - 1) : NULL;
            ix.key_len[i] = q ? (uint8_t)(q - (s + ix.key_at[i] + 1)) : 0;
        }
    } else if (lua_toboolean(L, 2)) {
        struct buf b = BUF_INIT;
        uint64_t id;
        int rc = event_stamp(s, len, -1, 0, &b, &id, &(struct event_index_ask){&ix, NULL, NULL}, &err);
        bool same = rc == 0 && b.len == len && memcmp(b.p, s, len) == 0;
        buf_free(&b);
        if (!same)
            return luaL_error(L, "lazy_event: not an event as the ingress stamps it: %s",
                              rc < 0 ? err : "stamped, it reads otherwise");
    }
    struct lua_json_lazy *indexed;
    if (lua_event_push(L, s, len, lua_isnoneornil(L, 2) ? NULL : &ix, m, LUA_JSON_LAZY_MAX, &err, 0,
                       &indexed) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    if (lua_isnoneornil(L, 2))
        return 1;
    lua_pushboolean(L, indexed != NULL);
    return 2;
}

static int l_settling_setmetatable(lua_State *L)
{
    lua_event_settle(L, 1);
    lua_event_settle(L, 2);
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

static int l_event_env(lua_State *L)
{
    lua_newtable(L);
    lua_getglobal(L, "getmetatable");
    lua_setfield(L, -2, "getmetatable");
    lua_event_open(L, -1);
    lua_pushcfunction(L, l_settling_setmetatable);
    lua_setfield(L, -2, "setmetatable");
    return 1;
}

/* The plugins' cjson (bind_json.c) from this module's own copy of the
 * codec: a lazy table is known by an address in the codec that made it. */
static int l_plugin_cjson(lua_State *L)
{
    bind_json_push(L, NULL);
    return 1;
}

static int l_lazy_state(lua_State *L)
{
    const struct lua_json_lazy *z = lua_json_lazy_of(L, 1);
    if (!z)
        return 0;
    lua_pushinteger(L, (lua_Integer)z->loaded);
    return 1;
}

/* lazy_as_text(t, text) -> whether the write-back may send text itself */
static int l_lazy_as_text(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    lua_pushboolean(L, lua_event_as_text(L, 1, lua_json_lazy_of(L, 1), s, len));
    return 1;
}

static const luaL_Reg funcs[] = {
    {"lazy_event", l_lazy_event}, {"event_env", l_event_env}, {"lazy_state", l_lazy_state},
    {"lazy_as_text", l_lazy_as_text},
    {"plugin_cjson", l_plugin_cjson},
    {"lsp_encode", l_lsp_encode}, {"lsp_decoder", l_lsp_decoder},
    {"plp_encode", l_plp_encode}, {"plp_decoder", l_plp_decoder},
    {"crc32", l_crc32}, {"gzip", l_gzip}, {"gunzip", l_gunzip},
    {"json_validate", l_json_validate}, {"json_string", l_json_string},
    {"event_stamp", l_event_stamp}, {"json_decode", l_json_decode}, {"json_encode", l_json_encode},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
}

int luaopen_polaris_codec(lua_State *L)
{
    new_class(L, LSP_MT, lsp_methods, l_lsp_gc);
    new_class(L, PLP_MT, plp_methods, l_plp_gc);
    luaL_newlib(L, funcs);
    static const struct { const char *k; lua_Integer v; } consts[] = {
        {"LSP_EVENT_REPORT", LSP_EVENT_REPORT}, {"LSP_CMD_REQ", LSP_CMD_REQ},
        {"LSP_CMD_RESP", LSP_CMD_RESP}, {"LSP_MAX_FRAME", LSP_MAX_FRAME},
        {"PLP_HEARTBEAT", PLP_HEARTBEAT}, {"PLP_EVENT_H2G", PLP_EVENT_H2G},
        {"PLP_CMD_RESP_H2G", PLP_CMD_RESP_H2G}, {"PLP_CMD_REQ_H2G", PLP_CMD_REQ_H2G},
        {"PLP_CMD_REQ_G2H", PLP_CMD_REQ_G2H}, {"PLP_CMD_RESP_G2H", PLP_CMD_RESP_G2H},
        {"PLP_EVENT_ACK_G2H", PLP_EVENT_ACK_G2H},
        {"PLP_FLAG_JSON", PLP_FLAG_JSON}, {"PLP_FLAG_GZIP", PLP_FLAG_GZIP},
        {"PLP_MAGIC", PLP_MAGIC}, {"PLP_MAX_PAYLOAD", PLP_MAX_PAYLOAD},
    };
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        lua_pushinteger(L, consts[i].v);
        lua_setfield(L, -2, consts[i].k);
    }
    return 1;
}
