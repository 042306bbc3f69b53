/* sandbox.c - the restricted Lua state every plugin runs in (DESIGN 5.3).
 *
 * - Globals: only the whitelist below survives; `load` is text-only and
 *   always loads into the sandbox globals; `setmetatable` refuses __gc (Lua
 *   runs finalizers with hooks off, so a __gc loop would escape the budget);
 *   the string metatable is sealed with __metatable; xpcall's message
 *   handler is skipped once the budget is spent (see guarded_handler).
 * - Memory: the allocator counts every byte and refuses past the limit; Lua
 *   turns that into a "not enough memory" error inside the plugin. Small
 *   blocks freed are kept for reuse (block_cache), within the limit.
 * - CPU: a count hook every 1000 VM instructions compares the call's CPU
 *   time with its budget and raises once it is spent; pcall/xpcall cannot
 *   swallow it for long: it fires again at the next check outside the
 *   protected call. The CPU clock is read only where wall time could not
 *   settle it (see budget_spent). A count hook makes Lua run every VM
 *   instruction through luaG_traceexec (twice the cost of plain Lua code),
 *   so handlers run without one: a CPU-time timer per worker thread ticks
 *   every millisecond of that thread's CPU, and its signal sets the hook on
 *   the call it interrupts, the way lua.c stops a loop on SIGINT (see
 *   on_tick). Coroutines a plugin creates, and lifecycle calls, always have
 *   the hook.
 *
 * - C functions: the string library's pattern functions and rep are
 *   lua_strmatch.c's, and `cjson` is bind_json.c's; both ask
 *   sandbox_check_budget as they go and size what they build by
 *   sandbox_mem_room.
 *
 * Uses: Lua 5.4 C API, block_cache, lua_strmatch, bind_json. */
#include "runtime/sandbox.h"
#include "runtime/lua_event.h"
#include "lib/block_cache.h"
#include "lib/clock.h"
#include "runtime/bind_json.h"
#include "runtime/lua_strmatch.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HOOK_EVERY 1000
#define MSG_MAX 480
#define TICK_NS    1000000         /* the worker's CPU time between two ticks */
#define SIG_TICK   (SIGRTMIN + 4)

uint64_t thread_cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* Small blocks a plugin frees are kept for its next ones (block_cache.c),
 * up to this many bytes. They are not in mem_used (what status shows), but
 * they go back to malloc before an allocation that, with them, would pass
 * the limit: the daemon holds no more on the plugin's behalf than the limit
 * (give or take the rounding of each block to its 16-byte class, as
 * malloc's own). Off under AddressSanitizer: a block kept is a block it
 * cannot see used after its free. */
#if defined(__SANITIZE_ADDRESS__)
#define SB_CACHE_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_CACHE_MAX 0
#endif
#endif
#ifndef SB_CACHE_MAX
#define SB_CACHE_MAX (64 * 1024)
#endif

/* Whether Lua may hold n bytes more (a block of osize given back for
 * nsize). */
static inline bool sb_within(const struct sandbox *sb, size_t osize, size_t nsize)
{
    return !sb->mem_limit || nsize <= osize || sb->mem_used - osize + nsize <= sb->mem_limit;
}

static __attribute__((noinline)) void *sb_alloc_slow(struct sandbox *sb, void *ptr, size_t osize, size_t nsize)
{
    if (!sb_within(sb, osize, nsize))
        return NULL;
    if (sb->mem_limit && nsize > osize && sb->mem_used - osize + nsize + sb->cache.bytes > sb->mem_limit)
        block_cache_flush(&sb->cache);
    void *p = ptr ? block_cache_realloc(&sb->cache, ptr, osize, nsize) : block_cache_alloc(&sb->cache, nsize);
    if (p)
        sb->mem_used = sb->mem_used - osize + nsize;
    return p;
}

/* The fast paths in line, the rest (malloc, realloc, the limit's edge)
 * out of it: most calls free a block into the cache or take one. */
static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sandbox *sb = ud;
    if (nsize == 0) {
        if (ptr) {
            block_cache_free(&sb->cache, ptr, osize);
            sb->mem_used -= osize;
        }
        return NULL;
    }
    if (!ptr) {
        void *p;
        if (nsize <= BLOCK_CACHE_SMALL && sb_within(sb, 0, nsize) &&
            (p = block_cache_take(&sb->cache, nsize))) {
            sb->mem_used += nsize;
            return p;
        }
        osize = 0;                         /* osize is a type tag then */
    }
    return sb_alloc_slow(sb, ptr, osize, nsize);
}

struct sandbox *sandbox_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static void budget_arm(struct sandbox *sb)
{
    sb->in_call = true;
    sb->over_budget = false;
    sb->call_start_wall = mono_ns();
    sb->cpu_marked = false;
    sb->cpu_floor_known = false;
}

/* Whether the call has spent its CPU budget. The thread's CPU clock is a
 * system call (~0.3 us here; one at each end of every call was a tenth of
 * a trivial strategy's cost), the wall clock is not, and a call's CPU time
 * is at most its wall time. So: nothing is read at the start; the call's
 * first hook marks the CPU clock and takes the CPU before it as at most
 * the wall time since the start, or, where the tick says the thread's CPU
 * clock at or before the start (cpu_floor), at most the CPU since then,
 * whichever is less (a worker descheduled early in a call must not lose
 * its budget to the wait; the floor is at most one tick old: 1 ms, or the
 * kernel's 1/HZ, with which it checks CPU timers). Later hooks read the
 * CPU clock only once wall time alone could put the call over, and then
 * not again before the rest of the budget could be spent. A call that ends
 * before its first hook, nearly every strategy, reads no CPU clock at all. */
static bool budget_spent(struct sandbox *sb)
{
    uint64_t now = mono_ns();
    if (!sb->cpu_marked) {
        sb->cpu_marked = true;
        sb->cpu_mark = thread_cpu_ns();
        sb->pre_mark_ns = now - sb->call_start_wall;
        if (sb->cpu_floor_known && sb->cpu_mark - sb->cpu_floor < sb->pre_mark_ns)
            sb->pre_mark_ns = sb->cpu_mark - sb->cpu_floor;
        sb->next_check_wall = now;
    }
    if (now < sb->next_check_wall)
        return false;
    uint64_t used = sb->pre_mark_ns + (thread_cpu_ns() - sb->cpu_mark);
    if (used > sb->budget_ns)
        return true;
    sb->next_check_wall = now + (sb->budget_ns - used);
    return false;
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/* The runtime's own Lua (the drivers in bind_polaris.c) is not where a
 * plugin's error is: luaL_where's fixed level names the driver line that
 * called a handler when the hook interrupts the handler itself, and the
 * driver's wrapper when a C function under it refuses. */
void sandbox_where(lua_State *L)
{
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar))
            break;
        if (ar.currentline <= 0 || strcmp(ar.source, "=polaris") == 0)
            continue;
        lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
        return;
    }
    lua_pushliteral(L, "");
}

/* Once a call is over budget the hook fires on every instruction of every
 * thread that reaches it, so the error re-raises in the first Lua frame
 * outside whatever pcall caught it, and nothing can swallow it for good. */
static int budget_raise(lua_State *L, struct sandbox *sb)
{
    if (!sb->over_budget || lua_gethookcount(L) != 1) {
        sb->over_budget = true;
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    }
    sandbox_where(L);
    lua_pushfstring(L, "cpu budget exceeded (%d ms)", (int)(sb->budget_ns / 1000000));
    lua_concat(L, 2);
    return lua_error(L);
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sandbox *sb = sandbox_of(L);
    if (!sb->in_call)
        return;
    if (!sb->over_budget && !budget_spent(sb))
        return;
    budget_raise(L, sb);
}

int sandbox_raise(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    sandbox_where(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

/* C functions a plugin calls run no VM instructions, so the hook cannot
 * see them: the long-running ones (lua_strmatch.c) ask here. */
void sandbox_check_budget(lua_State *L)
{
    struct sandbox *sb = sandbox_of(L);
    if (!sb->in_call)
        return;
    if (!sb->over_budget && !budget_spent(sb))
        return;
    budget_raise(L, sb);
}

size_t sandbox_mem_room(lua_State *L)
{
    struct sandbox *sb = sandbox_of(L);
    if (!sb->mem_limit)
        return SIZE_MAX;
    return sb->mem_used < sb->mem_limit ? sb->mem_limit - sb->mem_used : 0;
}

static const struct rt_limits g_limits = {sandbox_check_budget, sandbox_mem_room};

/* ---- the tick: the budget's hook, set only on calls that run long ---- */

/* The call this thread is running, for the tick's signal handler. */
static __thread struct sandbox *t_running;
static __thread lua_State *t_running_co;
static __thread int t_tick;                /* 0 not tried, 1 ticking, -1 none: hook always */
static __thread timer_t t_timer;
static __thread _Atomic uint64_t t_tick_cpu;   /* this thread's CPU clock at the last tick */

/* Runs on the worker's own thread, between two of its instructions. Lua
 * allows lua_sethook there (ldebug.c: "can be called during a signal"):
 * the interpreter looks at its traps again at the next jump or call, so a
 * loop sees the hook within one iteration. */
static void on_tick(int sig)
{
    (void)sig;
    int saved = errno;
    atomic_store_explicit(&t_tick_cpu, thread_cpu_ns(), memory_order_relaxed);
    lua_State *co = t_running_co;
    atomic_signal_fence(memory_order_seq_cst);
    /* once set, left alone: over budget it fires on every instruction */
    if (t_running && co && lua_gethook(co) != budget_hook)
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    errno = saved;
}

static pthread_once_t g_tick_once = PTHREAD_ONCE_INIT;
static bool g_tick_handler;

static void install_tick_handler(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_tick;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    g_tick_handler = sigaction(SIG_TICK, &sa, NULL) == 0;
}

/* This thread's CPU-time timer, made the first time it runs a call. Where
 * it cannot be had, calls on this thread keep the hook from their start. */
static void tick_start(void)
{
    pthread_once(&g_tick_once, install_tick_handler);
    t_tick = -1;
    if (!g_tick_handler)
        return;
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIG_TICK;
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &t_timer) != 0)
        return;
    atomic_store_explicit(&t_tick_cpu, thread_cpu_ns(), memory_order_relaxed);
    struct itimerspec it = {{0, TICK_NS}, {0, TICK_NS}};
    if (timer_settime(t_timer, 0, &it, NULL) != 0) {
        timer_delete(t_timer);
        return;
    }
    t_tick = 1;
}

void sandbox_thread_end(void)
{
    if (t_tick == 1)
        timer_delete(t_timer);
    t_tick = 0;
}

/* coroutine.create and coroutine.wrap: the new coroutine gets the hook
 * (the tick sets it only on the call's own coroutine). */
static int hooked_create(lua_State *L)
{
    lua_CFunction orig = lua_tocfunction(L, lua_upvalueindex(1));
    orig(L);
    lua_State *co = lua_tothread(L, -1);
    if (co)
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    return 1;
}

static int hooked_wrap(lua_State *L)
{
    lua_CFunction orig = lua_tocfunction(L, lua_upvalueindex(1));
    orig(L);
    if (lua_getupvalue(L, -1, 1)) {            /* auxwrap's coroutine */
        lua_State *co = lua_tothread(L, -1);
        if (co)
            lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
        lua_pop(L, 1);
    }
    return 1;
}

/* coroutine.close nested through __close handlers: Lua 5.4.4 does not
 * count these calls against its C-stack limit (fixed in 5.4.5, "C-stack
 * overflow with deep nesting of coroutine.close" on lua.org/bugs.html), so
 * some 20,000 levels overflow the worker's stack and crash the daemon. The
 * depth is per thread: nested closes all run on the thread of the call. */
#define CLOSE_DEPTH_MAX 100
static __thread unsigned t_close_depth;

/* What luaB_close accepts (dead or suspended in a yield); anything else
 * goes to it unguarded, to raise its own error before nesting anything. */
static bool closable(lua_State *L, lua_State *co)
{
    if (!co || co == L)
        return false;
    lua_Debug ar;
    switch (lua_status(co)) {
    case LUA_YIELD:
        return true;
    case LUA_OK:
        return !lua_getstack(co, 0, &ar) && lua_gettop(co) == 0;
    default:
        return true;                           /* dead by an error */
    }
}

static int guarded_close(lua_State *L)
{
    lua_CFunction orig = lua_tocfunction(L, lua_upvalueindex(1));
    if (!closable(L, lua_tothread(L, 1)))
        return orig(L);
    if (t_close_depth >= CLOSE_DEPTH_MAX)
        return luaL_error(L, "coroutine.close: nested too deeply (more than %d closes inside __close handlers)",
                          CLOSE_DEPTH_MAX);
    t_close_depth++;
    int n = orig(L);                           /* lua_resetthread is protected: it returns */
    t_close_depth--;
    return n;
}

/* load(chunk [, chunkname [, mode [, env]]]): text only, into the globals
 * unless an env table is given. */
static int safe_load(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "=(load)");
    if (len > 0 && s[0] == LUA_SIGNATURE[0])
        return luaL_error(L, "load: binary chunks are not allowed");
    int status = luaL_loadbufferx(L, s, len, name, "t");
    if (status != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_pushvalue(L, 4);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

static int safe_setmetatable(lua_State *L)
{
    /* a lazy event table's metatable is the runtime's, and one used as a
     * metatable would be read raw by Lua (its members not there yet) */
    lua_event_settle(L, 1);
    lua_event_settle(L, 2);
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "__gc");
        bool has_gc = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (has_gc)
            return luaL_error(L, "setmetatable: __gc is not allowed in plugins");
    }
    lua_CFunction orig = lua_tocfunction(L, lua_upvalueindex(1));
    return orig(L);
}

/* A message handler runs with hooks disabled when the error came from the
 * budget hook itself, so a looping handler could never be stopped. Once the
 * budget is spent the plugin's handler is skipped and the error goes on. */
static int guarded_handler(lua_State *L)
{
    if (sandbox_of(L)->over_budget)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int safe_xpcall(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, guarded_handler, 1);
    lua_replace(L, 2);
    lua_CFunction orig = lua_tocfunction(L, lua_upvalueindex(1));
    return orig(L);
}

static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") == 0) {
        lua_pushnumber(L, (lua_Number)sandbox_of(L)->mem_used / 1024.0);
        return 1;
    }
    if (strcmp(opt, "collect") == 0 || strcmp(opt, "step") == 0) {
        lua_gc(L, LUA_GCCOLLECT);
        lua_pushinteger(L, 0);
        return 1;
    }
    return luaL_error(L, "collectgarbage: only \"count\", \"collect\" and \"step\" are allowed");
}

static void keep_only(lua_State *L, const char *lib, const char *const *names)
{
    if (lua_getglobal(L, lib) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_newtable(L);
    for (const char *const *n = names; *n; n++) {
        lua_getfield(L, -2, *n);
        lua_setfield(L, -2, *n);
    }
    lua_setglobal(L, lib);
    lua_pop(L, 1);
}

static void build_globals(lua_State *L)
{
    static const char *const drop[] = {
        "dofile", "loadfile", "require", "package", "io", "debug", "collectgarbage",
        "load", "setmetatable", NULL,
    };
    static const char *const os_keep[] = {"time", "clock", "date", "difftime", NULL};
    static const char *const string_keep[] = {
        "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match",
        "pack", "packsize", "rep", "reverse", "sub", "unpack", "upper", NULL,
    };
    lua_pushcfunction(L, luaopen_base);
    lua_call(L, 0, 1);
    lua_event_open(L, -1);                   /* next, pairs, raw*: event tables look plain */
    lua_getfield(L, -1, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setglobal(L, "_polaris_setmetatable");
    lua_getfield(L, -1, "xpcall");
    lua_pushcclosure(L, safe_xpcall, 1);
    lua_setglobal(L, "xpcall");
    lua_pop(L, 1);
    static const luaL_Reg libs[] = {
        {LUA_COLIBNAME, luaopen_coroutine}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_OSLIBNAME, luaopen_os}, {NULL, NULL},
    };
    for (const luaL_Reg *l = libs; l->name; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    /* the pattern functions and rep, bounded (lua_strmatch.c) */
    lua_getglobal(L, "string");
    lua_strmatch_register(L, -1, &g_limits);
    lua_pop(L, 1);
    lua_getglobal(L, "coroutine");
    static const struct { const char *name; lua_CFunction f; } hooked[] = {
        {"create", hooked_create}, {"wrap", hooked_wrap}, {"close", guarded_close},
    };
    for (size_t i = 0; i < sizeof hooked / sizeof hooked[0]; i++) {
        lua_getfield(L, -1, hooked[i].name);
        lua_pushcclosure(L, hooked[i].f, 1);
        lua_setfield(L, -2, hooked[i].name);
    }
    lua_pop(L, 1);
    bind_json_push(L, &g_limits);
    lua_setglobal(L, "cjson");
    for (const char *const *n = drop; *n; n++) {
        lua_pushnil(L);
        lua_setglobal(L, *n);
    }
    lua_getglobal(L, "_polaris_setmetatable");
    lua_setglobal(L, "setmetatable");
    lua_pushnil(L);
    lua_setglobal(L, "_polaris_setmetatable");
    lua_pushcfunction(L, safe_load);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, safe_collectgarbage);
    lua_setglobal(L, "collectgarbage");
    keep_only(L, "os", os_keep);
    keep_only(L, "string", string_keep);
    /* seal the string metatable: getmetatable("") returns false, and the
     * metatable's __index is the plugin's own string table */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_getglobal(L, "string");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 2);
}

int sandbox_open(struct sandbox *sb, size_t mem_limit, uint64_t budget_ns, char *err, size_t errlen)
{
    memset(sb, 0, sizeof *sb);
    block_cache_init(&sb->cache, SB_CACHE_MAX);
    sb->mem_limit = 0;                      /* no limit while the libraries load */
    sb->budget_ns = budget_ns;
    sb->L = lua_newstate(sb_alloc, sb);
    if (!sb->L) {
        block_cache_flush(&sb->cache);      /* what it freed on the way out */
        snprintf(err, errlen, "cannot create a Lua state (out of memory)");
        return -1;
    }
    lua_gc(sb->L, LUA_GCGEN, 0, 0);
    build_globals(sb->L);
    if (mem_limit && sb->mem_used >= mem_limit) {
        snprintf(err, errlen, "memory_limit %zu is below the %zu bytes a bare state needs",
                 mem_limit, sb->mem_used);
        sandbox_close(sb);
        return -1;
    }
    sb->mem_limit = mem_limit;
    lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    return 0;
}

void sandbox_close(struct sandbox *sb)
{
    if (sb->L) {
        sb->mem_limit = 0;                  /* let finalizers of ours run freely */
        lua_close(sb->L);
    }
    block_cache_flush(&sb->cache);
    sb->L = NULL;
}

int sandbox_load(struct sandbox *sb, const char *code, size_t len, const char *chunkname,
                 char *err, size_t errlen)
{
    if (len > 0 && code[0] == LUA_SIGNATURE[0]) {
        snprintf(err, errlen, "%s: binary chunks are not allowed", chunkname);
        return -1;
    }
    if (luaL_loadbufferx(sb->L, code, len, chunkname, "t") != LUA_OK) {
        const char *m = lua_tostring(sb->L, -1);
        snprintf(err, errlen, "%s", m ? m : "syntax error");
        lua_pop(sb->L, 1);
        return -1;
    }
    return 0;
}

/* The message handler: a string message gets a short traceback; any other
 * error value is described by its type only, so no plugin code (__tostring,
 * __index) runs in the host's error path. */
static int msgh(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING) {
        size_t l;
        const char *m = lua_tolstring(L, 1, &l);
        if (l > MSG_MAX)
            lua_pushfstring(L, "%s... (%d bytes)", lua_pushlstring(L, m, MSG_MAX), (int)l);
        else
            lua_pushvalue(L, 1);
    } else {
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    return 1;
}

int sandbox_call(struct sandbox *sb, int nargs, int nresults, char *err, size_t errlen)
{
    lua_State *L = sb->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    bool nested = sb->in_call;
    uint64_t cpu0 = 0;
    if (!nested) {
        cpu0 = thread_cpu_ns();            /* lifecycle calls: rare, accounted here */
        budget_arm(sb);
        if (lua_gethookcount(sb->L) != HOOK_EVERY)
            lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    }
    int rc = lua_pcall(L, nargs, nresults, base);
    if (!nested) {
        sb->in_call = false;
        sb->cpu_ns_total += thread_cpu_ns() - cpu0;
    }
    lua_remove(L, base);
    if (rc == LUA_OK)
        return 0;
    const char *m = rc == LUA_ERRMEM ? "not enough memory (memory_limit reached)"
                                     : lua_tostring(L, -1);
    snprintf(err, errlen, "%s", m ? m : "error");
    if (sb->over_budget && !strstr(err, "cpu budget exceeded"))
        snprintf(err, errlen, "cpu budget exceeded (%d ms)", (int)(sb->budget_ns / 1000000));
    lua_pop(L, 1);
    return -1;
}

int sandbox_reset(struct sandbox *sb, lua_State *co)
{
    /* An error raised inside a hook leaves the thread's hooks off for good
     * (Lua 5.4 restores them only where a pcall catches it): its __close
     * handlers could loop unstopped. A call its budget stopped is dropped
     * as it is, its pending variables left unclosed. */
    if (sb->over_budget)
        return 1;
    budget_arm(sb);
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_resetthread(co);        /* (its status is the call's own error, not news) */
    sb->in_call = false;
    lua_settop(co, 0);
    return sb->over_budget ? -1 : 0;
}

void sandbox_call_next(struct sandbox *sb, lua_State *co)
{
    budget_arm(sb);
    if (t_tick == 1) {
        /* between two calls of one resume the tick still sees this one
         * running: one landing inside the lua_sethook below could leave a
         * hook set with no mask, which it would never set again */
        t_running = NULL;
        atomic_signal_fence(memory_order_seq_cst);
        sb->cpu_floor = atomic_load_explicit(&t_tick_cpu, memory_order_relaxed);
        sb->cpu_floor_known = true;
        lua_sethook(co, NULL, 0, 0);         /* until a tick finds it running */
        t_running_co = co;
        atomic_signal_fence(memory_order_seq_cst);
        t_running = sb;
    } else {
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    }
}

void sandbox_call_end(struct sandbox *sb)
{
    sb->in_call = false;
}

int sandbox_resume(struct sandbox *sb, lua_State *co, int nargs, int *nres, char *err, size_t errlen)
{
    if (t_tick == 0)
        tick_start();
    sandbox_call_next(sb, co);
    int rc = lua_resume(co, sb->L, nargs, nres);
    t_running = NULL;
    atomic_signal_fence(memory_order_seq_cst);
    t_running_co = NULL;
    sb->in_call = false;
    if (rc == LUA_OK || rc == LUA_YIELD)
        return rc;
    if (rc == LUA_ERRMEM) {
        snprintf(err, errlen, "not enough memory (memory_limit reached)");
    } else if (lua_type(co, -1) == LUA_TSTRING) {
        size_t l;
        const char *m = lua_tolstring(co, -1, &l);
        snprintf(err, errlen, "%.*s%s", (int)(l > MSG_MAX ? MSG_MAX : l), m, l > MSG_MAX ? "..." : "");
    } else {
        snprintf(err, errlen, "(error object is a %s value)", luaL_typename(co, -1));
    }
    if (sb->over_budget && !strstr(err, "cpu budget exceeded"))
        snprintf(err, errlen, "cpu budget exceeded (%d ms)", (int)(sb->budget_ns / 1000000));
    return -1;
}
