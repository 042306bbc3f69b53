/* plugin_policy.c - what a manifest may ask for and what the operator
 * grants: permission names, trusted paths and modules (strict modes,
 * signatures), the limits a manifest may only lower, isolation, and the
 * [plugin.<id>] settings; policy_from_entry turns one loader entry into a plugin's
 * fields.
 *
 * Uses: plugin_trust, config. */
#include "daemon/plugin_registry_internal.h"
#include "daemon/daemon.h"
#include "lib/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/plugin_trust.h"

#include <errno.h>
#include <lauxlib.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

/* The only list of permission names (DESIGN 5.1): the loader checks
 * manifests against it too (policy_push_permissions). */
static const struct {
    const char *name;
    unsigned bit;
} perm_names[] = {
    {"FileSystemAccess", PERM_FS}, {"ExecuteSyscall", PERM_EXEC}, {"NetworkAccess", PERM_NET},
    {"ReadVmState", PERM_VM_READ}, {"WriteVmState", PERM_VM_WRITE}, {"MemoryAllocation", PERM_MEM},
    {"ReadHostState", PERM_HOST_READ},
};

void policy_push_permissions(lua_State *L)
{
    size_t n = sizeof perm_names / sizeof perm_names[0];
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, perm_names[i].name);
    }
}

uint64_t policy_config_sig(const struct config *cfg, const char *id)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a over "key=value;" */
    for (int i = 0; i < cfg->nplugin_cfg; i++) {
        const struct plugin_kv *kv = &cfg->plugin_cfg[i];
        if (strcmp(kv->plugin, id) != 0)
            continue;
        for (const char *parts[] = {kv->key, "=", kv->value, ";"}, **s = parts; s < parts + 4; s++)
            for (const char *c = *s; *c; c++)
                h = (h ^ (unsigned char)*c) * 1099511628211ull;
    }
    return h;
}

/* A module runs inside the plugin that requires it, with its permissions:
 * it passes the same checks as the plugin's own file, at the config in
 * force, wherever it comes from (the plugin's folder or the runtime's
 * plugins.lua_dir). */
int policy_module_trusted(struct plugin_registry *r, const char *path, char *err, size_t errlen)
{
    const struct config *cfg = r->d->cfg;
    char why[300];
    if (cfg && cfg->strict_modes && trust_check_modes(path, why, sizeof why) < 0) {
        snprintf(err, errlen, "untrusted: %s", why);
        return -1;
    }
    if (cfg && cfg->require_signed) {
        const char *keys[CONFIG_MAX_LIST];
        for (int i = 0; i < cfg->trusted_keys.n; i++)
            keys[i] = cfg->trusted_keys.v[i];
        if (trust_verify(path, path, keys, (size_t)cfg->trusted_keys.n, why, sizeof why) < 0) {
            snprintf(err, errlen, "unsigned: %s", why);
            return -1;
        }
    }
    return 0;
}

uint64_t policy_file_sig(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    /* ownership and mode too: a plugin made writable by others, or a new
     * signature beside it, is rebuilt, so the trust checks run again */
    char sig[PATH_MAX];
    struct stat ss;
    trust_sig_path(path, sig, sizeof sig);
    uint64_t sigm = stat(sig, &ss) == 0 ? (uint64_t)ss.st_mtim.tv_nsec ^ (uint64_t)ss.st_ino << 20 : 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    if (stat(dirname(dir), &ss) == 0)
        sigm ^= ((uint64_t)ss.st_mode << 24) ^ ((uint64_t)ss.st_uid << 8);
    return (uint64_t)st.st_mtim.tv_sec * 1000000007u ^ (uint64_t)st.st_mtim.tv_nsec ^
           (uint64_t)st.st_size << 40 ^ (uint64_t)st.st_ino ^
           ((uint64_t)st.st_mode << 48) ^ ((uint64_t)st.st_uid << 32) ^ sigm;
}

static void field_str(lua_State *L, const char *k, char *out, size_t cap)
{
    lua_getfield(L, -1, k);
    snprintf(out, cap, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
}

static char **field_list(lua_State *L, const char *k, size_t *n)
{
    *n = 0;
    lua_getfield(L, -1, k);
    size_t len = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    char **v = len ? calloc(len, sizeof *v) : NULL;
    for (size_t i = 0; v && i < len; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (lua_isstring(L, -1))
            v[(*n)++] = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return v;
}

/* The keys of the entry's table k (its dependencies' ids); -1 without
 * memory for them. */
static int field_keys(lua_State *L, const char *k, char ***out, size_t *n)
{
    int rc = 0;
    *n = 0;
    *out = NULL;
    lua_getfield(L, -1, k);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pop(L, 1);
            if (rc < 0 || lua_type(L, -1) != LUA_TSTRING)
                continue;
            char **v = realloc(*out, (*n + 1) * sizeof *v);
            char *dup = v ? strdup(lua_tostring(L, -1)) : NULL;
            if (v)
                *out = v;
            if (!dup)
                rc = -1;
            else
                (*out)[(*n)++] = dup;
        }
    }
    lua_pop(L, 1);
    return rc;
}

/* The operator may grant a plugin more paths than its manifest names:
 * [plugin.<id>] allowed_paths = /srv/logs /tmp/captures (the config is the
 * operator's, so this widens nothing a plugin author controls). */
static void add_configured_paths(const struct config *cfg, struct plugin *p)
{
    for (int i = 0; i < cfg->nplugin_cfg; i++) {
        const struct plugin_kv *kv = &cfg->plugin_cfg[i];
        if (strcmp(kv->plugin, p->id) != 0 || strcmp(kv->key, "allowed_paths") != 0)
            continue;
        char tmp[sizeof kv->value];
        snprintf(tmp, sizeof tmp, "%s", kv->value);
        for (char *save = NULL, *t = strtok_r(tmp, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
            char **n = realloc(p->allowed_paths, (p->nallowed + 1) * sizeof *n);
            char *dup = n ? strdup(t) : NULL;
            if (n)
                p->allowed_paths = n;
            if (!dup) {
                log_error("plugin %s: out of memory adding allowed path %s", p->id, t);
                return;
            }
            p->allowed_paths[p->nallowed++] = dup;
        }
    }
}

static bool under_trusted(const struct config *cfg, const char *file);

/* [plugin.<id>] key as a number with an optional K, M or G; def when unset
 * or unreadable (logged). */
static uint64_t operator_setting(const struct config *cfg, const char *id, const char *key, uint64_t def)
{
    for (int i = 0; i < cfg->nplugin_cfg; i++) {
        const struct plugin_kv *kv = &cfg->plugin_cfg[i];
        if (strcmp(kv->plugin, id) != 0 || strcmp(kv->key, key) != 0)
            continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(kv->value, &end, 10);
        uint64_t mul = *end == 'K' ? 1u << 10 : *end == 'M' ? 1u << 20 : *end == 'G' ? 1u << 30 : 1;
        if (mul > 1)
            end++;
        if (errno || end == kv->value || *end || v > UINT64_MAX / mul) {
            log_error("plugin %s: [plugin.%s] %s = %s is not a number; using %llu", id, id, key,
                      kv->value, (unsigned long long)def);
            return def;
        }
        return v * mul;
    }
    return def;
}

/* A manifest's limits only lower what the operator set: [plugins] or
 * [plugin.<id>] in the config. Raising memory takes a granted
 * MemoryAllocation, and stops at [plugins] memory_limit_max (an operator's
 * own higher setting stands). CPU is never raised by a manifest. */
static void apply_limits(lua_State *L, struct plugin *p, const struct config *cfg, bool final)
{
    uint64_t mem = operator_setting(cfg, p->id, "memory_limit", cfg->plugin_memory_limit);
    uint64_t ms = operator_setting(cfg, p->id, "cpu_time_limit_ms", cfg->plugin_cpu_ms);
    lua_getfield(L, -1, "memory_limit");
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
        uint64_t want = (uint64_t)lua_tointeger(L, -1);
        uint64_t cap = cfg->plugin_memory_limit_max > mem ? cfg->plugin_memory_limit_max : mem;
        if (want <= mem)
            mem = want;
        else if (p->perms & PERM_MEM)
            mem = want < cap ? want : cap;
        else if (final)
            log_warn("plugin %s: its manifest's memory_limit %llu is above the config's %llu, and it was "
                     "not granted MemoryAllocation: %llu", p->id, (unsigned long long)want,
                     (unsigned long long)mem, (unsigned long long)mem);
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "cpu_time_limit_ms");
    if (lua_isnumber(L, -1) && lua_tonumber(L, -1) > 0 && lua_tonumber(L, -1) < (double)ms)
        p->budget_ns = (uint64_t)(lua_tonumber(L, -1) * 1e6);
    else
        p->budget_ns = ms * 1000000;
    lua_pop(L, 1);
    p->mem_limit = (size_t)mem;
}

/* Fills p from the loader's entry on the top of L; applies the policy. */
void policy_from_entry(lua_State *L, struct plugin *p, const struct config *cfg)
{
    field_str(L, "id", p->id, sizeof p->id);
    field_str(L, "name", p->name, sizeof p->name);
    field_str(L, "version", p->version, sizeof p->version);
    field_str(L, "plugin_type", p->type, sizeof p->type);
    field_str(L, "file", p->file, sizeof p->file);
    field_str(L, "entry_function", p->entry_fn, sizeof p->entry_fn);
    field_str(L, "manifest_file", p->manifest, sizeof p->manifest);
    field_str(L, "module_dir", p->module_dir, sizeof p->module_dir);
    apply_limits(L, p, cfg, false);            /* again once its permissions are known */
    p->allowed_paths = field_list(L, "allowed_paths", &p->nallowed);
    add_configured_paths(cfg, p);
    p->forbidden_paths = field_list(L, "forbidden_paths", &p->nforbidden);
    p->file_sig = policy_file_sig(p->file);
    p->manifest_sig = policy_file_sig(p->manifest);
    p->config_sig = policy_config_sig(cfg, p->id);
    lua_getfield(L, -1, "error");
    if (lua_isstring(L, -1)) {
        snprintf(p->last_error, sizeof p->last_error, "%s", lua_tostring(L, -1));
        atomic_store(&p->state, PLUGIN_ERROR);
    }
    lua_pop(L, 1);
    if (field_keys(L, "dependencies", &p->deps, &p->ndeps) < 0 && atomic_load(&p->state) != PLUGIN_ERROR) {
        snprintf(p->last_error, sizeof p->last_error, "out of memory reading its dependencies");
        atomic_store(&p->state, PLUGIN_ERROR);
    }
    if (atomic_load(&p->state) == PLUGIN_ERROR)
        return;
    /* trust before any of its code runs: who may write it, who signed it */
    char why[sizeof p->last_error - 32];
    const char *files[] = {p->manifest, p->file};
    for (int i = 0; i < 2 && cfg->strict_modes; i++)
        if (trust_check_modes(files[i], why, sizeof why) < 0) {
            snprintf(p->last_error, sizeof p->last_error, "untrusted: %s", why);
            atomic_store(&p->state, PLUGIN_ERROR);
            return;
        }
    if (cfg->require_signed) {
        const char *keys[CONFIG_MAX_LIST];
        for (int i = 0; i < cfg->trusted_keys.n; i++)
            keys[i] = cfg->trusted_keys.v[i];
        if (trust_verify(p->manifest, p->file, keys, (size_t)cfg->trusted_keys.n, why, sizeof why) < 0) {
            snprintf(p->last_error, sizeof p->last_error, "unsigned: %s", why);
            atomic_store(&p->state, PLUGIN_ERROR);
            return;
        }
    }
    bool whitelist = strcmp(cfg->policy, "whitelist") == 0;
    lua_getfield(L, -1, "permissions");
    size_t np = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    for (size_t i = 1; i <= np; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        const char *name = lua_tostring(L, -1);
        bool listed = name && str_list_has(&cfg->permissions, name);
        if (name && listed != whitelist) {
            snprintf(p->last_error, sizeof p->last_error,
                     "permission not granted by the %s policy: %s", cfg->policy, name);
            atomic_store(&p->state, PLUGIN_ERROR);
        }
        for (size_t k = 0; name && k < sizeof perm_names / sizeof perm_names[0]; k++)
            if (strcmp(name, perm_names[k].name) == 0)
                p->perms |= perm_names[k].bit;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (atomic_load(&p->state) == PLUGIN_ERROR)
        return;
    apply_limits(L, p, cfg, true);
    lua_getfield(L, -1, "isolation");
    bool asked = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "process") == 0;
    lua_pop(L, 1);
    bool forced = strcmp(cfg->isolation, "process") == 0 ||
                  (strcmp(cfg->isolation, "outside_trusted") == 0 && !under_trusted(cfg, p->file));
    bool router = strcmp(p->type, "Router") == 0;
    if (router && asked) {
        snprintf(p->last_error, sizeof p->last_error, "isolation \"process\": a Router is consulted "
                 "by the core for every event and cannot run out of process");
        atomic_store(&p->state, PLUGIN_ERROR);
    } else if (router && forced && strcmp(cfg->isolation, "outside_trusted") == 0) {
        snprintf(p->last_error, sizeof p->last_error, "untrusted: a Router outside plugins.trusted_paths "
                 "would have to run out of process, which a Router cannot");
        atomic_store(&p->state, PLUGIN_ERROR);
    } else {
        p->isolated = (asked || forced) && !router;
    }
}

/* plugins.trusted_paths, or the shipped plugin directories by default. */
static bool under_trusted(const struct config *cfg, const char *file)
{
    static const char *const shipped[] = {POLARIS_DATADIR "/plugins", POLARIS_DATADIR "/strategies"};
    size_t n = cfg->trusted_paths.n ? (size_t)cfg->trusted_paths.n : 2;
    for (size_t i = 0; i < n; i++) {
        const char *dir = cfg->trusted_paths.n ? cfg->trusted_paths.v[i] : shipped[i];
        char real[PATH_MAX];
        const char *d = realpath(dir, real) ? real : dir;
        size_t len = strlen(d);
        if (strncmp(file, d, len) == 0 && file[len] == '/')
            return true;
    }
    return false;
}

struct plugin_limits policy_limits_of(const struct config *cfg)
{
    return (struct plugin_limits){cfg->plugin_timers_max, cfg->plugin_waits_max, cfg->plugin_exec_max,
                                  cfg->plugin_emit_per_s, cfg->plugin_mailbox_max,
                                  cfg->plugin_shared_max_bytes};
}

void policy_set_limits(struct plugin_registry *r, const struct config *cfg)
{
    struct plugin_limits l = policy_limits_of(cfg);
    pthread_mutex_lock(&r->mu);
    r->limits = l;
    pthread_mutex_unlock(&r->mu);
}
