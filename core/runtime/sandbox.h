/* sandbox.h - one restricted lua_State: whitelisted globals, a memory limit
 * in the allocator, a CPU budget per call in an instruction-count hook. */
#ifndef POLARIS_SANDBOX_H
#define POLARIS_SANDBOX_H

#include "lib/block_cache.h"

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sandbox {
    lua_State *L;
    size_t mem_used;             /* what Lua holds; the cache's blocks are not in it */
    size_t mem_limit;
    struct block_cache cache;    /* small blocks freed, kept for the next */
    uint64_t budget_ns;          /* CPU time allowed per call */
    uint64_t call_start_wall;    /* CLOCK_MONOTONIC when the call began */
    uint64_t cpu_mark;           /* thread CPU clock at the call's first hook */
    uint64_t pre_mark_ns;        /* the call's CPU before that hook, at most */
    uint64_t cpu_floor;          /* thread CPU clock at or before the call's start */
    bool cpu_floor_known;
    uint64_t next_check_wall;    /* no CPU clock read is needed before this */
    bool cpu_marked;
    bool in_call;
    bool over_budget;
    uint64_t cpu_ns_total;       /* sandbox_call's own; the rest is added by
                                  * whoever runs resumes (plugin_run_job) */
};

/* Creates the state. Returns 0, or -1 with a message in err. */
int  sandbox_open(struct sandbox *sb, size_t mem_limit, uint64_t budget_ns, char *err, size_t errlen);
void sandbox_close(struct sandbox *sb);

/* Loads text-only Lua source as a chunk into the sandbox's globals and
 * leaves the function on the stack. 0 or -1 with err. */
int  sandbox_load(struct sandbox *sb, const char *code, size_t len, const char *chunkname,
                  char *err, size_t errlen);

/* lua_pcall with the budget armed and a traceback-free, side-effect-free
 * error message: an error object's __tostring is never called. 0 or -1. */
int  sandbox_call(struct sandbox *sb, int nargs, int nresults, char *err, size_t errlen);

/* lua_resume of a coroutine of this sandbox with the budget armed.
 * Returns LUA_OK, LUA_YIELD, or -1 with err (the coroutine is then dead).
 * *nres receives the number of results or yielded values. Its CPU time is
 * not added to cpu_ns_total: the caller accounts for a whole batch. */
int  sandbox_resume(struct sandbox *sb, lua_State *co, int nargs, int *nres, char *err, size_t errlen);

/* Two calls in one resume (the strategy driver runs the next event of a
 * batch without returning, plugin.c): sandbox_call_end stops the budget
 * counting for what the runtime does between them (the write-back, which
 * may run other plugins' jobs inline at shutdown), sandbox_call_next arms
 * it afresh for the next call, as sandbox_resume does for the first. */
void sandbox_call_end(struct sandbox *sb);
void sandbox_call_next(struct sandbox *sb, lua_State *co);

/* Makes a coroutine that failed or was left suspended ready to run again.
 * Its pending to-be-closed variables are closed here, and their __close is
 * plugin code: it runs under the budget and the memory limit like any call
 * (an endless __close is stopped, not run on a worker forever). Returns 0,
 * or -1 when the budget ran out while closing, or 1 when the call had
 * already spent its budget: the coroutine is left as it is (its hooks may
 * be off, see sandbox.c), and must not run again. */
int  sandbox_reset(struct sandbox *sb, lua_State *co);

/* For C functions that run long without VM instructions: raises the
 * hook's "cpu budget exceeded" error once the running call's budget is
 * spent, and arms the hook so a pcall cannot keep it. L must be a thread
 * of a sandbox's state. */
void sandbox_check_budget(lua_State *L);

/* Pushes "file:line: " of the innermost plugin code on L's stack (C
 * functions and the runtime's drivers skipped), or "" if there is none. */
void sandbox_where(lua_State *L);

/* luaL_error, but located by sandbox_where: the plugin's line, not the
 * runtime's wrapper that called the C function. */
int sandbox_raise(lua_State *L, const char *fmt, ...);

/* The sandbox whose state L (any of its threads) is: its allocator's. */
struct sandbox *sandbox_of(lua_State *L);

/* The bytes L's sandbox may still allocate (SIZE_MAX without a limit). */
size_t sandbox_mem_room(lua_State *L);

uint64_t thread_cpu_ns(void);

/* A thread that ran sandbox_resume calls this before it exits: its CPU-time
 * timer (see sandbox.c) is deleted. */
void sandbox_thread_end(void);

#endif
