/* plugin.h - one plugin: a sandboxed lua_State run as an actor. Its mailbox
 * is drained by one worker at a time, so the state is never used by two
 * threads at once and events to one plugin keep their order. */
#ifndef POLARIS_PLUGIN_H
#define POLARIS_PLUGIN_H

#include <pthread.h>
#include <stdatomic.h>
#include "lib/buf.h"
#include "lib/envelope.h"
#include "lib/job.h"
#include "runtime/sandbox.h"
#include "wire/event_json.h"

struct plugin_home;
struct plugin_host;

/* A status() result larger than this (as JSON) is shown as an error note. */
#define PLUGIN_STATUS_MAX 1024
#define PLUGIN_STATUS_EVERY_NS 1000000000ull

enum plugin_state {
    PLUGIN_UNLOADED, PLUGIN_LOADING, PLUGIN_LOADED, PLUGIN_INITIALIZING,
    PLUGIN_ACTIVE, PLUGIN_ERROR, PLUGIN_UNLOADING,
};

enum permission {
    PERM_FS = 1u << 0, PERM_EXEC = 1u << 1, PERM_NET = 1u << 2,
    PERM_VM_READ = 1u << 3, PERM_VM_WRITE = 1u << 4, PERM_MEM = 1u << 5,
    PERM_HOST_READ = 1u << 6,     /* polaris.sys, process crash notices */
};

/* What a plugin may register while it loads: the tables are the daemon's
 * memory, outside the plugin's memory_limit, and every handler for an
 * event is an argument of one call (docs/security.md). */
#define PLUGIN_MAX_HANDLERS 1024
#define PLUGIN_MAX_COMMANDS 256

/* What else a plugin can make the daemon hold on its behalf, per plugin
 * ([plugins] keys, docs/security.md). Over a bound the call fails with a
 * Lua error or returns nil, "busy ..." and the refusal is counted. */
struct plugin_limits {
    unsigned timers;              /* timers_max: live polaris.timer/every */
    unsigned waits;               /* waits_max: calls parked on sleep/exec/guest.request */
    unsigned execs;               /* exec_max: of those, programs running */
    unsigned emit_per_s;          /* emit_per_s: polaris.emit, a bucket refilled per second */
    unsigned mailbox;             /* mailbox_max: messages waiting for on_message */
    unsigned shared_bytes;        /* shared_plugin_max_bytes: what its keys hold in the store */
};

enum refusal { REFUSED_TIMERS, REFUSED_WAITS, REFUSED_EXECS, REFUSED_EMITS, REFUSED_MAILBOX,
               REFUSED_SHARED, REFUSED_N };

struct handler {
    uint64_t event_id;
    bool any;                     /* "*" */
    int ref;                      /* Lua function in the registry */
};

struct command_handler {
    char name[48];
    int ref;
};

enum route_verdict { ROUTE_DEFAULT, ROUTE_FORWARD, ROUTE_DROP, ROUTE_LIST };

/* A Router plugin's rule for one eventId (or "*"). */
struct route_rule {
    uint64_t event_id;
    bool any;
    enum route_verdict verdict;
    char (*ids)[64];              /* ROUTE_LIST: strategy ids, in order */
    size_t nids;
};

enum call_kind { CALL_STRATEGY, CALL_COMMAND, CALL_MESSAGE, CALL_TIMER };

/* One callback invocation, run as a coroutine so it can wait. */
#define CALL_IDENT_MAX 4

struct call {
    struct call *next;
    enum call_kind kind;
    lua_State *co;
    int co_ref;
    struct envelope *e;           /* the event or command it handles */
    uint32_t op;                  /* the wait it is parked on */
    uint8_t wait;                 /* its enum wait_kind, while parked */
    /* a strategy's event: its identity members as its decode found them
     * (nident < 0: not known; the restamp then looks for them) */
    int8_t nident;
    /* its text is the daemon's own stamp, as the index it carries says
     * (read_event): valid as event_stamp checks an app's */
    bool stamped;
    struct json_span ident[CALL_IDENT_MAX];
};

enum wait_kind { WAIT_SLEEP = 1, WAIT_EXEC, WAIT_TIMER, WAIT_EVERY, WAIT_GUEST };

/* The fields are grouped by who writes them, each group on cache lines of
 * its own (PLUGIN_LINE): the core thread takes refs and posts to the
 * mailbox for every event while a worker runs the plugin, and a line one
 * writes and the other reads moves between their cores each time, which
 * no instruction count shows (docs/performance.md, session 16). A
 * struct plugin is allocated aligned to them (plugin_alloc). */
#define PLUGIN_LINE 64
struct plugin {
    struct job job;               /* first: the worker runs it */
    struct plugin_home *home;     /* the program running the runtime (port.h) */
    _Alignas(PLUGIN_LINE) _Atomic int refs;   /* the core's, for each event it routes */
    _Alignas(PLUGIN_LINE) char id[64];
    char name[96], version[32], type[16];
    char file[512], manifest[512];
    char module_dir[512];         /* a plugin folder: its own modules, searched first */
    char entry_fn[64];            /* manifest entry_point naming a function in file, or "" */
    uint64_t file_sig, manifest_sig;  /* mtime/size, to see what a reload changed */
    uint64_t config_sig;          /* its [plugin.<id>] settings */
    unsigned perms;
    size_t mem_limit;
    uint64_t budget_ns;
    _Alignas(PLUGIN_LINE) struct sandbox sb;  /* the worker's, for each allocation of Lua's */
    int callbacks_ref;            /* the table the file returned */
    _Alignas(PLUGIN_LINE) _Atomic int state;  /* read by the core for each event */
    bool loading;                 /* registration calls are allowed */
    char last_error[256];
    uint64_t loaded_mono_ns;
    _Alignas(PLUGIN_LINE) _Atomic uint64_t events, errors, messages, commands;   /* the worker's */
    unsigned consecutive_errors;
    _Alignas(PLUGIN_LINE) struct handler *handlers;   /* the daemon's memory: at most
                                                       * PLUGIN_MAX_HANDLERS; read by the core */
    size_t nhandlers;
    struct command_handler *cmds;
    size_t ncmds;
    struct route_rule *routes;    /* Router plugins only */
    size_t nroutes;
    _Alignas(PLUGIN_LINE) pthread_mutex_t mu;   /* guards the mailbox, last_error */
    struct envlist mailbox;
    bool scheduled;
    /* The command lane (DESIGN 2): command requests wait in their own list,
     * go first, and have their own job, which the pool runs ahead of any
     * other (on a worker kept for it when every other one is busy). One
     * job at a time runs the plugin (job_running); the other finds it
     * running, leaves, and is scheduled again by it if its work remains. */
    struct job cmd_job;
    struct envlist urgent;
    bool cmd_scheduled;
    bool job_running;
    _Alignas(PLUGIN_LINE) int driver_ref;   /* (to next_op: the worker's) runs a plugin's
                                             * strategy handlers in order */
    int strategy_ref, strategy1_ref;   /* its strategy drivers: any handlers, one */
    int reader_ref;               /* read_event, the lazy tables' metatable its upvalue */
    struct call *running;         /* the call on the CPU now (worker thread) */
    struct call *parked;          /* calls waiting for the core */
    struct call *idle;            /* finished calls kept with their coroutine */
    uint64_t nil_checks;          /* handlers' nils seen (nil_sampled; worker thread) */
    struct buf rewrite;           /* a returned event's text is written here (worker thread),
                                   * kept from one event to the next (not a malloc and a
                                   * free an event); let go when it grew past REWRITE_KEEP */
    unsigned nidle;
    bool strategy_parked;         /* later events wait behind it (order) */
    struct envlist held;          /* events waiting behind a parked strategy */
    struct envelope *batch;       /* the rest of the batch the job is running (worker thread):
                                   * the one-handler driver takes its next events from it */
    int batch_taken;              /* envelopes of it taken so far */
    uint32_t next_op;
    _Alignas(PLUGIN_LINE) _Atomic unsigned ntimers;   /* live timers (ids in the state's registry) */
    _Atomic unsigned nmsgs;       /* messages in the mailbox */
    double emit_tokens;           /* polaris.emit's bucket (stand-in's RPCs or in-process) */
    uint64_t emit_refill_ns;
    _Atomic uint64_t refused[REFUSED_N];
    _Atomic uint64_t remote_refused;  /* a plugin host's own refusals (timers, waits) */
    _Atomic bool abandoned;       /* the watchdog left its worker stuck in it: nothing runs it again */
    char **allowed_paths, **forbidden_paths;
    size_t nallowed, nforbidden;
    /* the ids its manifest depends on: unloading one of them stops it */
    char **deps;
    size_t ndeps;
    /* out of its registry's set, finishing its mailbox (status shows it
     * Unloading); written under the registry's lock */
    bool leaving;
    /* events a handler edited in place and then returned nil for: the
     * edits went nowhere (warned about once, counted each time) */
    _Atomic uint64_t ignored_edits;
    /* isolation "process": this struct stands in for a plugin that runs in
     * a polaris-plugin-host. Its own state only serves the host's calls
     * (polaris.fs, polaris.sys, ...) with the same permission checks. */
    bool isolated;
    struct plugin_host *host;
    void (*remote_post)(struct plugin *, struct envelope *);
    void (*remote_rpc)(struct plugin *, struct envelope *);
    void (*bound)(struct plugin *);          /* after bind_polaris (the host swaps in proxies) */
    /* refs fell to 1 (only its host holds it): called with unpinned_arg,
     * which outlives the plugin; p itself may be gone by then */
    void (*unpinned)(void *);
    void *unpinned_arg;
    _Atomic uint64_t remote_mem, remote_cpu_ns;
    /* what its status() callback last returned, as JSON (guarded by mu);
     * refreshed on a worker, at most once per PLUGIN_STATUS_EVERY_NS */
    char status_json[PLUGIN_STATUS_MAX];
    uint64_t status_mono_ns;
};

/* plugin_load.c: builds the state, runs the file and init()/start(). On failure the plugin
 * is in PLUGIN_ERROR with last_error set and -1 is returned. */
int  plugin_load(struct plugin *p);
/* The same, from source already in memory (a plugin host gets it over its
 * channel). */
int  plugin_load_code(struct plugin *p, const char *code, size_t len);
/* For a plugin host's results, given back in the daemon: the event goes on
 * to the next strategy (or the core), or goes on with strategyError; a
 * command's answer goes to the core. */
void plugin_strategy_done(struct plugin *p, struct envelope *e);
void plugin_strategy_failed(struct plugin *p, struct envelope *e, const char *reason);
void plugin_command_done(struct plugin *p, struct envelope *req, int code, const char *msg,
                         const char *data, size_t data_len);
/* A zeroed struct plugin, aligned to its cache-line groups (free() it). */
struct plugin *plugin_alloc(void);
void plugin_ref(struct plugin *p);
void plugin_unref(struct plugin *p);  /* the last one runs stop/cleanup and frees */
void plugin_unref_n(struct plugin *p, int n);   /* n of them at once */
/* The strategy drivers' read(id), made once per state (bind_polaris.c):
 * its registry reference. Raises only when out of memory. */
int  plugin_reader_ref(lua_State *L);
/* The same for the one-handler strategy driver (C), driver.lua's table at
 * driver. */
int  plugin_strategy1_ref(lua_State *L, int driver);
/* Pushes driver.lua's sampled(): whether a handler's nil is checked for
 * lost edits, one count a plugin with the C driver's. */
void plugin_push_nil_sampler(lua_State *L);
/* The worker pool's watchdog: j (a plugin's job or command lane) has been
 * running for ms, far past any budget. The plugin goes to Error and what
 * waits for it goes on without it. */
void plugin_job_stuck(struct job *j, uint64_t ms);
/* The plugin's two jobs (struct plugin's job and cmd_job): drain its
 * mailbox, and its command lane. */
void plugin_run_job(struct job *j);
void plugin_run_cmd_job(struct job *j);
/* Queues work for the plugin (takes e) and schedules it on a worker. */
void plugin_post(struct plugin *p, struct envelope *e);
bool plugin_handles(const struct plugin *p, uint64_t event_id);
bool plugin_has_command(const struct plugin *p, const char *name);
/* Counts a refusal and returns the Lua error text's start (the key named). */
const char *plugin_refuse(struct plugin *p, enum refusal what);
/* The plugin's live timer ids, a table in its state's registry, pushed;
 * plugin_timer_end: whether id was live (it is not any more). */
void plugin_timers_push(lua_State *L);
bool plugin_timer_end(struct plugin *p, lua_State *L, lua_Integer id);
/* Calls the plugin table's `name` callback with the nargs values on the
 * stack, if it defined one: 0, or -1 with last_error set (not fatal). */
int plugin_callback(struct plugin *p, const char *name, int nargs);
/* Refreshes status_json from its status() callback (at most once per
 * PLUGIN_STATUS_EVERY_NS unless force). */
void plugin_refresh_status(struct plugin *p, bool force);
void plugin_set_error(struct plugin *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *plugin_state_name(int s);

/* bind_polaris.c, bind_fs.c: push the tables a plugin sees */
void bind_polaris(struct plugin *p);
void bind_fs(struct plugin *p);          /* leaves polaris.fs on the stack */
void bind_sys(struct plugin *p);         /* leaves polaris.sys on the stack */

#endif
