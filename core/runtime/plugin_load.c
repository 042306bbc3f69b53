/* plugin_load.c - building a plugin: its sandbox, the tables it sees
 * (bind_polaris), its file (or the source a plugin host was sent), the
 * original manifest's entry function, then init() and start(). On any
 * failure the plugin is left in Error with the reason and nothing of the
 * half-built state survives.
 *
 * Uses: sandbox, bind_polaris, plugin (callbacks, status). */
#include "runtime/plugin.h"
#include "lib/buf.h"
#include "lib/clock.h"

#include <lauxlib.h>
#include <stdio.h>

#define MAX_FILE (1u << 20)

/* The original manifest form (DESIGN 5.1): entry_point names a function
 * that the file defines (a global, or a member of the table it returned)
 * and that returns the plugin table. Replaces the chunk's result on the
 * top of the stack with the function's. */
static int call_entry_function(struct plugin *p, char *err, size_t errlen)
{
    lua_State *L = p->sb.L;
    lua_pushglobaltable(L);
    lua_pushstring(L, p->entry_fn);
    lua_rawget(L, -2);                         /* no plugin metamethod runs here */
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1) && lua_istable(L, -2)) {
        lua_pop(L, 1);
        lua_pushstring(L, p->entry_fn);
        lua_rawget(L, -2);
    }
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "%s: entry_point '%s' is not a function the file defines", p->file,
                 p->entry_fn);
        lua_pop(L, 2);
        return -1;
    }
    lua_remove(L, -2);                         /* the chunk's own result */
    return sandbox_call(&p->sb, 0, 1, err, errlen);
}

int plugin_load(struct plugin *p)
{
    char err[512];
    struct buf code = BUF_INIT;
    if (buf_read_file(&code, p->file, MAX_FILE, err, sizeof err) < 0) {
        buf_free(&code);
        plugin_set_error(p, "%s", err);
        atomic_store(&p->state, PLUGIN_ERROR);
        return -1;
    }
    int rc = plugin_load_code(p, code.p ? code.p : "", code.len);
    buf_free(&code);
    return rc;
}

int plugin_load_code(struct plugin *p, const char *code, size_t len)
{
    char err[512];
    atomic_store(&p->state, PLUGIN_LOADING);
    if (sandbox_open(&p->sb, p->mem_limit, p->budget_ns, err, sizeof err) < 0)
        goto fail;
    lua_State *L = p->sb.L;
    bind_polaris(p);
    if (p->bound)
        p->bound(p);
    char chunk[600];
    snprintf(chunk, sizeof chunk, "@%s", p->file);
    if (sandbox_load(&p->sb, code, len, chunk, err, sizeof err) < 0)
        goto fail;
    p->loading = true;
    if (sandbox_call(&p->sb, 0, 1, err, sizeof err) < 0)
        goto fail;
    if (p->entry_fn[0] && call_entry_function(p, err, sizeof err) < 0)
        goto fail;
    if (lua_istable(L, -1)) {
        p->callbacks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
    } else {
        snprintf(err, sizeof err, "%s%s%s must return a table of callbacks (or nothing), not a %s",
                 p->file, p->entry_fn[0] ? ": " : "", p->entry_fn, luaL_typename(L, -1));
        goto fail;
    }
    atomic_store(&p->state, PLUGIN_LOADED);
    atomic_store(&p->state, PLUGIN_INITIALIZING);
    lua_newtable(L);                           /* ctx */
    lua_pushstring(L, p->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, p->version);
    lua_setfield(L, -2, "version");
    lua_getglobal(L, "polaris");
    lua_getfield(L, -1, "config");
    lua_setfield(L, -3, "config");
    lua_pop(L, 1);
    if (plugin_callback(p, "init", 1) < 0 || plugin_callback(p, "start", 0) < 0) {
        pthread_mutex_lock(&p->mu);             /* status reads it meanwhile */
        snprintf(err, sizeof err, "%s", p->last_error);
        pthread_mutex_unlock(&p->mu);
        goto fail;
    }
    p->loading = false;
    p->loaded_mono_ns = mono_ns();
    atomic_store(&p->state, PLUGIN_ACTIVE);
    plugin_refresh_status(p, true);
    return 0;
fail:
    p->loading = false;
    plugin_set_error(p, "%s", err);
    atomic_store(&p->state, PLUGIN_ERROR);
    if (p->sb.L) {
        p->callbacks_ref = LUA_NOREF;         /* a half-built plugin gets no stop() */
        sandbox_close(&p->sb);
    }
    return -1;
}
