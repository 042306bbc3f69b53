/* plugin_reload.c - building the plugin set from the plugin paths:
 * manifests, versions and dependency order are decided in Lua
 * (lua/polaris/loader.lua) in one trusted loader state per load; this side
 * loads each plugin (in process or in its plugin host) and swaps the set.
 * A reload rebuilds only plugins whose files changed; a rebuilt plugin
 * replaces the old one only if it initialises, and the old one finishes
 * what is already in its mailbox before it is freed (envelopes hold
 * references). registry_prepare runs off the core thread, registry_commit
 * on it (DESIGN 5.5).
 *
 * Uses: plugin_policy, plugin_host, plugin_routing (the index), Lua 5.4. */
#include "daemon/plugin_registry_internal.h"
#include "daemon/daemon.h"
#include "lib/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daemon/plugin_host.h"
#include "runtime/plugin_trust.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- loading ---- */

static int l_list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *dir = opendir(path);
    if (!dir) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_newtable(L);
    int i = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        if (de->d_name[0] == '.')
            continue;
        lua_pushstring(L, de->d_name);
        lua_rawseti(L, -2, ++i);
    }
    closedir(dir);
    return 1;
}

static int l_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    FILE *f = fopen(path, "rb");
    if (!f) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char tmp[4096];
    size_t n, total = 0;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0 && total < (1u << 20)) {
        luaL_addlstring(&b, tmp, n);
        total += n;
    }
    fclose(f);
    luaL_pushresult(&b);
    return 1;
}

static struct plugin *find_in(struct plugin **v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i]->id, id) == 0)
            return v[i];
    return NULL;
}

/* Whether every dependency of the entry on the top of L runs now, in a
 * version its range accepts. Decided against the set being built (next),
 * not the files: a dependency whose reload failed keeps its running
 * version, and that is what its dependents use. The loader's reason
 * (dependency_error) names a dependency that is not there at all. */
static bool deps_loaded(lua_State *L, struct plugin **v, size_t n, char *why, size_t whylen)
{
    bool ok = true;
    lua_getfield(L, -1, "dependencies");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return true;
    }
    lua_pushnil(L);
    while (ok && lua_next(L, -2)) {
        const char *dep = lua_tostring(L, -2);
        const char *range = lua_tostring(L, -1);
        struct plugin *d = dep ? find_in(v, n, dep) : NULL;
        if (!d || atomic_load(&d->state) != PLUGIN_ACTIVE) {
            lua_getfield(L, -4, "dependency_error");
            if (lua_isstring(L, -1))
                snprintf(why, whylen, "%s", lua_tostring(L, -1));
            else
                snprintf(why, whylen, "dependency '%s' did not load%s%s", dep ? dep : "?",
                         d && d->last_error[0] ? ": " : "", d ? d->last_error : "");
            lua_pop(L, 1);
            ok = false;
        } else if (range) {
            lua_getglobal(L, "package");
            lua_getfield(L, -1, "loaded");
            lua_getfield(L, -1, "polaris.semver");
            lua_getfield(L, -1, "satisfies");
            lua_pushstring(L, d->version);
            lua_pushstring(L, range);
            if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
                snprintf(why, whylen, "dependency '%s': cannot check version %s against %s: %s", dep,
                         d->version, range, lua_tostring(L, -1));
                ok = false;
            } else if (!lua_toboolean(L, -1)) {
                snprintf(why, whylen, "dependency '%s' is %s, needs %s", dep, d->version, range);
                ok = false;
            }
            lua_pop(L, 4);
        }
        lua_pop(L, 1);
    }
    if (!ok)
        lua_pop(L, 1);                 /* the key lua_next left */
    lua_pop(L, 1);
    return ok;
}

static bool command_taken(struct plugin **v, size_t n, const struct plugin *p, char *why, size_t whylen)
{
    for (size_t k = 0; k < p->ncmds; k++)
        for (size_t i = 0; i < n; i++)
            if (v[i] != p && strcmp(v[i]->id, p->id) != 0 && v[i]->sb.L &&
                plugin_has_command(v[i], p->cmds[k].name)) {
                snprintf(why, whylen, "action '%s' is already offered by plugin '%s'",
                         p->cmds[k].name, v[i]->id);
                return true;
            }
    return false;
}

static lua_State *loader_state(const struct config *cfg, char *err, size_t errlen)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    luaL_openlibs(L);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua", cfg->lua_dir);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "polaris.loader");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(err, errlen, "cannot load the plugin loader from %s: %s", cfg->lua_dir,
                 lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    policy_push_permissions(L);
    lua_setfield(L, -2, "permissions");
    return L;
}

/* Loads p (in process or in its host) while status shows it: Loading,
 * Loaded, Initializing as it goes (a reload runs off the core thread). */
static int load_shown(struct plugin_registry *r, struct plugin *p)
{
    pthread_mutex_lock(&r->mu);
    r->loading_now = p;
    pthread_mutex_unlock(&r->mu);
    int rc = p->isolated ? plugin_host_load(r->d->hosts, p) : plugin_load(p);
    pthread_mutex_lock(&r->mu);
    r->loading_now = NULL;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* A plugin set built by registry_prepare, waiting for registry_commit. */
struct reload {
    struct plugin **next, **old;
    size_t nn, nold;
    int failures;
};

struct reload *registry_prepare(struct plugin_registry *r, const struct config *cfg, struct buf *report)
{
    char err[512];
    struct reload *rl = calloc(1, sizeof *rl);
    if (!rl) {
        log_error("reload: out of memory");
        return NULL;
    }
    r->max_errors = cfg->plugin_max_errors;
    r->kv_max = cfg->shared_max_bytes;
    r->loading_cfg = cfg;
    if (!r->proc_root[0])
        snprintf(r->proc_root, sizeof r->proc_root, "%s", cfg->proc_root);
    if (!r->lua_dir[0])
        snprintf(r->lua_dir, sizeof r->lua_dir, "%s", cfg->lua_dir);
    int failures = 0;
    size_t nreported = 0;
    if (report)
        buf_putc(report, '[');
    r->runtime_err[0] = '\0';
    lua_State *L = loader_state(cfg, err, sizeof err);
    if (!L) {
        log_error("%s", err);
        snprintf(r->runtime_err, sizeof r->runtime_err, "%s", err);
        if (report) {
            buf_puts(report, "{\"id\":null,\"outcome\":\"failed\",\"reason\":");
            buf_json_cstr(report, err);
            buf_puts(report, "}]");
        }
        rl->failures = 1;
        return rl;
    }
    lua_getfield(L, -1, "plan");
    lua_newtable(L);
    for (int i = 0; i < cfg->plugin_paths.n; i++) {
        lua_pushstring(L, cfg->plugin_paths.v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, l_list_dir);
    lua_pushcfunction(L, l_read_file);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        log_error("plugin loader failed: %s", lua_tostring(L, -1));
        snprintf(r->runtime_err, sizeof r->runtime_err, "plugin loader failed: %s", lua_tostring(L, -1));
        lua_close(L);
        if (report)
            buf_putc(report, ']');
        rl->failures = 1;
        return rl;
    }
    size_t count = lua_rawlen(L, -1);
    struct plugin **next = calloc(count + 1, sizeof *next);
    size_t nn = 0;
    pthread_mutex_lock(&r->mu);
    struct plugin **old = r->plugins;
    size_t nold = r->n;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 1; next && i <= count; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        struct plugin *p = registry_plugin_new(r);
        if (!p) {
            lua_pop(L, 1);
            continue;
        }
        policy_from_entry(L, p, cfg);
        struct plugin *prev = find_in(old, nold, p->id);
        const char *outcome;
        char why[300] = "";
        /* a dependent whose dependency left or changed incompatibly stops:
         * its running version is not kept, as it would be when its own
         * files fail */
        bool dep_failed = false;
        if (atomic_load(&p->state) != PLUGIN_ERROR && !deps_loaded(L, next, nn, why, sizeof why)) {
            snprintf(p->last_error, sizeof p->last_error, "%s", why);
            atomic_store(&p->state, PLUGIN_ERROR);
            dep_failed = true;
        }
        if (prev && prev->sb.L && atomic_load(&prev->state) == PLUGIN_ACTIVE &&
            prev->file_sig == p->file_sig && prev->manifest_sig == p->manifest_sig &&
            prev->config_sig == p->config_sig &&
            atomic_load(&p->state) != PLUGIN_ERROR) {
            plugin_unref(p);                   /* unchanged: keep the running one */
            p = prev;
            plugin_ref(p);
            next[nn++] = p;
            outcome = "unchanged";
        } else if (atomic_load(&p->state) != PLUGIN_ERROR && load_shown(r, p) == 0 &&
                   !command_taken(next, nn, p, why, sizeof why)) {
            next[nn++] = p;
            outcome = prev ? "reloaded" : "loaded";
            log_info("plugin %s %s (%s)", p->id, outcome, p->version);
        } else {
            if (why[0] && atomic_load(&p->state) == PLUGIN_ACTIVE) {
                snprintf(p->last_error, sizeof p->last_error, "%s", why);
                atomic_store(&p->state, PLUGIN_ERROR);
                p->callbacks_ref = LUA_NOREF;
                if (p->host)
                    plugin_host_retire(p);
                else
                    sandbox_close(&p->sb);
            }
            failures++;
            if (prev && prev->sb.L && atomic_load(&prev->state) == PLUGIN_ACTIVE && !dep_failed) {
                /* a failed reload keeps the running version */
                plugin_set_error(prev, "reload failed, still running %s: %s", prev->version, p->last_error);
                log_error("plugin %s: reload failed, keeping version %s: %s", p->id, prev->version,
                          p->last_error);
                plugin_ref(prev);
                next[nn++] = prev;
                outcome = "kept";
                snprintf(why, sizeof why, "%s", p->last_error);
                plugin_unref(p);
                p = prev;
            } else {
                if (prev && prev->sb.L && atomic_load(&prev->state) == PLUGIN_ACTIVE)
                    log_error("plugin %s stopped: %s", p->id, p->last_error);
                else
                    log_error("plugin %s not loaded: %s", p->id, p->last_error);
                next[nn++] = p;
                outcome = prev && prev->sb.L && atomic_load(&prev->state) == PLUGIN_ACTIVE ? "stopped" : "failed";
                snprintf(why, sizeof why, "%s", p->last_error);
            }
        }
        if (report) {
            if (nreported++)
                buf_putc(report, ',');
            buf_puts(report, "{\"id\":");
            buf_json_cstr(report, p->id);
            buf_puts(report, ",\"outcome\":");
            buf_json_cstr(report, outcome);
            buf_puts(report, ",\"reason\":");
            buf_json_cstr(report, why[0] ? why : NULL);
            buf_putc(report, '}');
        }
        lua_pop(L, 1);
    }
    lua_close(L);
    r->loading_cfg = NULL;
    /* plugins whose files went away: the operator sees them leave too */
    for (size_t i = 0; report && i < nold; i++)
        if (!find_in(next, nn, old[i]->id)) {
            if (nreported++)
                buf_putc(report, ',');
            buf_puts(report, "{\"id\":");
            buf_json_cstr(report, old[i]->id);
            buf_puts(report, ",\"outcome\":\"removed\",\"reason\":null}");
        }
    if (report)
        buf_putc(report, ']');
    rl->next = next;
    rl->nn = nn;
    rl->old = old;
    rl->nold = nold;
    rl->failures = failures;
    return rl;
}

int registry_commit(struct plugin_registry *r, struct reload *rl)
{
    if (!rl)
        return 1;
    int failures = rl->failures;
    struct plugin **next = rl->next, **old = rl->old;
    size_t nn = rl->nn, nold = rl->nold;
    free(rl);
    if (!next)
        return failures;                        /* the loader could not run: nothing changes */
    /* isolated plugins came up on the reload's thread; their channels are
     * watched from the core's loop, so from here */
    for (size_t i = 0; i < nn; i++)
        if (next[i]->host && find_in(old, nold, next[i]->id) != next[i])
            plugin_host_activate(next[i]);
    pthread_mutex_lock(&r->mu);
    r->plugins = next;
    r->n = nn;
    routing_index_rebuild(r);
    pthread_mutex_unlock(&r->mu);
    /* the old set: each keeps running what is in its mailbox, then frees */
    for (size_t i = 0; i < nold; i++) {
        if (find_in(next, nn, old[i]->id) != old[i]) {
            if (atomic_load(&old[i]->state) == PLUGIN_ACTIVE)
                log_info("plugin %s %s", old[i]->id, find_in(next, nn, old[i]->id) ? "replaced" : "unloaded");
            registry_retire_now(r, old[i]);    /* its timers, its process; Unloading in status */
        } else {
            plugin_unref(old[i]);
        }
    }
    free(old);
    return failures;
}

void registry_configure_hosts(struct plugin_registry *r, const struct config *cfg)
{
    policy_set_limits(r, cfg);
    if (r->d->hosts)
        plugin_hosts_configure(r->d->hosts, cfg);
}

int registry_load(struct plugin_registry *r, const struct config *cfg, struct buf *report)
{
    registry_configure_hosts(r, cfg);
    return registry_commit(r, registry_prepare(r, cfg, report));
}
