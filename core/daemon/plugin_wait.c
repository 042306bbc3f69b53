/* plugin_wait.c - the core's half of the waiting calls (DESIGN 5.4, the
 * OpenResty cosocket model): a plugin's coroutine yields on a worker, the
 * request comes here, the core waits (ev_timer, ev_child + pipes) without
 * holding any worker, and the result goes back into the plugin's mailbox as
 * ENV_WAIT_DONE, where the coroutine is resumed.
 *
 * exec runs argv directly (posix_spawn, never a shell), in its own process
 * group, stdin from /dev/null, no inherited descriptors, stdout and stderr
 * captured up to plugins.exec_output_max bytes each; at the timeout the
 * group is killed. The result: {code, signal, stdout, stderr, timed_out,
 * truncated}. A spawn failure is {error = "..."}: the waiting call raises.
 *
 * Uses: libev (default loop), plugin (post, refs). */
#include "daemon/plugin_wait.h"
#include "daemon/exec_confine.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "wire/json_scan.h"
#include "runtime/plugin.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct waiter {
    struct waiter *next, *prev;
    struct waits *w;
    struct plugin *p;           /* a ref */
    uint32_t op;
    uint32_t plugin_host_run;          /* the asking plugin host's run, echoed back */
    int kind;
    int fn_ref;
    ev_timer timer;
    ev_child child;
    ev_io out_w, err_w;
    pid_t pid;
    struct buf out, err;
    bool timed_out, exited, truncated;
    int status;
};

struct waits {
    struct ev_loop *loop;
    struct waiter head;
    size_t output_max;
};

struct waits *waits_new(struct ev_loop *loop, size_t output_max)
{
    struct waits *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->loop = loop;
    w->output_max = output_max;
    w->head.next = w->head.prev = &w->head;
    return w;
}

static void unlink_waiter(struct waiter *x)
{
    x->prev->next = x->next;
    x->next->prev = x->prev;
}

static void free_waiter(struct waiter *x)
{
    struct ev_loop *loop = x->w->loop;
    ev_timer_stop(loop, &x->timer);
    if (x->pid > 0)
        ev_child_stop(loop, &x->child);
    if (ev_is_active(&x->out_w) || x->out_w.fd >= 0) {
        ev_io_stop(loop, &x->out_w);
        if (x->out_w.fd >= 0)
            close(x->out_w.fd);
    }
    if (ev_is_active(&x->err_w) || x->err_w.fd >= 0) {
        ev_io_stop(loop, &x->err_w);
        if (x->err_w.fd >= 0)
            close(x->err_w.fd);
    }
    buf_free(&x->out);
    buf_free(&x->err);
    unlink_waiter(x);
    plugin_unref(x->p);
    free(x);
}

/* Resumes the parked call with this JSON (empty: no value). */
static void complete(struct waiter *x, const char *json, size_t len)
{
    struct envelope *e = envelope_new(ENV_WAIT_DONE, json, len);
    if (e) {
        e->wait.op = x->op;
        e->plugin_host_run = x->plugin_host_run;
        plugin_post(x->p, e);
    } else {
        log_error("plugin %s: out of memory resuming a waiting call", x->p->id);
    }
    free_waiter(x);
}

static void complete_error(struct waiter *x, const char *msg)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "{\"__polaris_error\":");
    buf_json_cstr(&b, msg);
    buf_putc(&b, '}');
    complete(x, b.p, b.len);
    buf_free(&b);
}

static void exec_maybe_done(struct waiter *x)
{
    if (!x->exited || ev_is_active(&x->out_w) || ev_is_active(&x->err_w))
        return;
    struct buf b = BUF_INIT;
    buf_puts(&b, "{\"code\":");
    if (WIFEXITED(x->status))
        buf_printf(&b, "%d", WEXITSTATUS(x->status));
    else
        buf_puts(&b, "null");
    buf_puts(&b, ",\"signal\":");
    if (WIFSIGNALED(x->status))
        buf_printf(&b, "%d", WTERMSIG(x->status));
    else
        buf_puts(&b, "null");
    buf_printf(&b, ",\"timed_out\":%s,\"truncated\":%s,\"stdout\":",
               x->timed_out ? "true" : "false", x->truncated ? "true" : "false");
    buf_json_str(&b, x->out.p ? x->out.p : "", x->out.len);
    buf_puts(&b, ",\"stderr\":");
    buf_json_str(&b, x->err.p ? x->err.p : "", x->err.len);
    buf_putc(&b, '}');
    x->pid = 0;                          /* already reaped */
    complete(x, b.p, b.len);
    buf_free(&b);
}

static void pipe_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct waiter *x = io->data;
    struct buf *b = io == &x->out_w ? &x->out : &x->err;
    char tmp[16384];
    ssize_t n = read(io->fd, tmp, sizeof tmp);
    if (n > 0) {
        size_t room = x->w->output_max > b->len ? x->w->output_max - b->len : 0;
        if ((size_t)n > room)
            x->truncated = true;
        buf_append(b, tmp, (size_t)n < room ? (size_t)n : room);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    ev_io_stop(loop, io);
    close(io->fd);
    io->fd = -1;
    exec_maybe_done(x);
}

static void child_cb(struct ev_loop *loop, ev_child *c, int revents)
{
    (void)revents;
    struct waiter *x = c->data;
    ev_child_stop(loop, c);
    x->status = c->rstatus;
    x->exited = true;
    ev_timer_stop(loop, &x->timer);
    exec_maybe_done(x);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop; (void)revents;
    struct waiter *x = t->data;
    switch (x->kind) {
    case WAIT_SLEEP:
        complete(x, "", 0);
        return;
    case WAIT_EXEC:
        x->timed_out = true;
        kill(-x->pid, SIGKILL);          /* the whole group; child_cb finishes */
        return;
    case WAIT_TIMER:
    case WAIT_EVERY: {
        struct envelope *e = envelope_new(ENV_TIMER_FIRE, NULL, 0);
        if (e) {
            e->wait.op = x->op;
            e->plugin_host_run = x->plugin_host_run;
            e->wait.fn_ref = x->fn_ref;
            e->wait.kind = (uint8_t)x->kind;
            plugin_post(x->p, e);
        }
        if (x->kind == WAIT_TIMER) {
            x->fn_ref = 0;               /* the plugin releases it when it runs */
            free_waiter(x);
        }
        return;
    }
    }
}

static void free_argv(char **argv);

/* argv from the JSON array the plugin sent, or NULL when it cannot be
 * made whole: a command run with some of its arguments missing is a
 * different command. */
static char **parse_argv(const char *json, size_t len)
{
    /* ["a","b"]: walk string tokens with the validated scanner's decoder */
    size_t cap = 8, n = 0;
    char **argv = calloc(cap + 1, sizeof *argv);
    size_t i = 0;
    while (argv && i < len) {
        if (json[i] != '"') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < len && json[j] != '"')
            j += json[j] == '\\' ? 2 : 1;
        char *s = malloc(j - i + 8);
        if (!s || json_string_decode(json + i, j - i + 1, s, j - i + 8) < 0) {
            free(s);
            goto fail;
        }
        if (n == cap) {
            char **nv = realloc(argv, (cap * 2 + 1) * sizeof *argv);
            if (!nv) {
                free(s);
                goto fail;
            }
            argv = nv;
            cap *= 2;
        }
        argv[n++] = s;
        argv[n] = NULL;
        i = j + 1;
    }
    return argv;
fail:
    free_argv(argv);
    return NULL;
}

static void free_argv(char **argv)
{
    for (char **a = argv; a && *a; a++)
        free(*a);
    free(argv);
}

/* argv[0] as a path: as given when it has a slash, else the first
 * executable in path. 0, or an errno. */
static int find_program(const char *name, const char *path, char *out, size_t cap)
{
    if (strchr(name, '/'))
        return snprintf(out, cap, "%s", name) < (int)cap ? 0 : ENAMETOOLONG;
    for (const char *dir = path; *dir;) {
        size_t n = strcspn(dir, ":");
        if (snprintf(out, cap, "%.*s/%s", (int)n, dir, name) < (int)cap && access(out, X_OK) == 0)
            return 0;
        dir += n + (dir[n] == ':');
    }
    return ENOENT;
}

/* fork, not posix_spawn: the child confines itself (exec_confine_child)
 * before exec. It only makes system calls; a failure before exec comes
 * back as an errno over a close-on-exec pipe. Returns 0 or an errno. */
static int spawn_confined(pid_t *pid, const char *prog, char **argv, char **envp, int out, int err,
                          const struct exec_confine *conf)
{
    int status[2];
    if (pipe2(status, O_CLOEXEC) < 0)
        return errno;
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(status[0]);
        close(status[1]);
        return e;
    }
    if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (int sig = 1; sig < NSIG; sig++)
            sigaction(sig, &dfl, NULL);         /* fails harmlessly for KILL, STOP and RT gaps */
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int e = 0;
        if (setpgid(0, 0) < 0 || sigprocmask(SIG_SETMASK, &none, NULL) < 0 || devnull < 0 ||
            dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || exec_confine_child(conf) < 0)
            e = errno;
        if (!e) {
            execve(prog, argv, envp);
            e = errno;
        }
        ssize_t w = write(status[1], &e, sizeof e);
        (void)w;                                /* the parent sees a short read as a failure too */
        _exit(127);
    }
    close(status[1]);
    int e = 0;
    ssize_t n;
    while ((n = read(status[0], &e, sizeof e)) < 0 && errno == EINTR)
        ;
    close(status[0]);
    if (n > 0) {                                /* it never got to exec: reap it now */
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
        return e ? e : EIO;
    }
    *pid = child;
    return 0;
}

static void start_exec(struct waiter *x, const char *json, size_t len, uint32_t ms)
{
    struct ev_loop *loop = x->w->loop;
    char **argv = parse_argv(json, len);
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    char msg[300];
    if (!argv || !argv[0]) {
        complete_error(x, argv ? "polaris.exec: empty argv" : "polaris.exec: cannot make argv (out of memory)");
        free_argv(argv);
        return;
    }
    if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(err, O_CLOEXEC | O_NONBLOCK) < 0) {
        snprintf(msg, sizeof msg, "polaris.exec: pipe: %s", strerror(errno));
        goto fail;
    }
    /* a fixed PATH: a name is looked up in system directories only */
    static const char path_var[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
    char prog[PATH_MAX];
    int rc = find_program(argv[0], path_var, prog, sizeof prog);
    struct exec_confine conf;
    char cerr[200];
    if (rc == 0 && exec_confine_prepare(&conf, x->p, cerr, sizeof cerr) < 0) {
        snprintf(msg, sizeof msg, "polaris.exec: cannot confine %s: %s", argv[0], cerr);
        goto fail;
    }
    if (rc == 0) {
        rc = spawn_confined(&x->pid, prog, argv, envp, out[1], err[1], &conf);
        exec_confine_release(&conf);
    }
    close(out[1]);
    close(err[1]);
    out[1] = err[1] = -1;
    if (rc != 0) {
        x->pid = 0;
        snprintf(msg, sizeof msg, "polaris.exec: cannot run %s: %s", argv[0], strerror(rc));
        goto fail;
    }
    log_info("plugin %s runs %s (pid %d)", x->p->id, argv[0], (int)x->pid);
    free_argv(argv);
    ev_io_init(&x->out_w, pipe_cb, out[0], EV_READ);
    ev_io_init(&x->err_w, pipe_cb, err[0], EV_READ);
    x->out_w.data = x->err_w.data = x;
    ev_io_start(loop, &x->out_w);
    ev_io_start(loop, &x->err_w);
    ev_child_init(&x->child, child_cb, x->pid, 0);
    x->child.data = x;
    ev_child_start(loop, &x->child);
    ev_timer_init(&x->timer, timer_cb, ms / 1000.0, 0.);
    ev_timer_start(loop, &x->timer);
    return;
fail:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    free_argv(argv);
    complete_error(x, msg);
}

void waits_request(struct waits *w, struct envelope *e)
{
    struct plugin *p = e->plugin;
    if (e->type == ENV_WAIT_CANCEL) {
        for (struct waiter *x = w->head.next; x != &w->head; x = x->next)
            if (x->p == p && x->op == e->wait.op && (x->kind == WAIT_TIMER || x->kind == WAIT_EVERY)) {
                free_waiter(x);
                break;
            }
        plugin_unref(p);
        envelope_free(e);
        return;
    }
    struct waiter *x = calloc(1, sizeof *x);
    if (!x) {
        plugin_unref(p);
        envelope_free(e);
        return;
    }
    x->w = w;
    x->p = p;                            /* the request's ref is now ours */
    x->op = e->wait.op;
    x->plugin_host_run = e->plugin_host_run;
    x->kind = e->wait.kind;
    x->fn_ref = e->wait.fn_ref;
    x->out_w.fd = x->err_w.fd = -1;
    ev_init(&x->timer, timer_cb);
    x->timer.data = x;
    x->next = &w->head;
    x->prev = w->head.prev;
    w->head.prev->next = x;
    w->head.prev = x;
    double s = e->wait.ms / 1000.0;
    switch (x->kind) {
    case WAIT_SLEEP:
    case WAIT_TIMER:
        ev_timer_set(&x->timer, s, 0.);
        ev_timer_start(w->loop, &x->timer);
        break;
    case WAIT_EVERY:
        ev_timer_set(&x->timer, s, s);
        ev_timer_start(w->loop, &x->timer);
        break;
    case WAIT_EXEC:
        start_exec(x, e->data, e->len, e->wait.ms);
        break;
    default:
        complete_error(x, "unknown wait");
    }
    envelope_free(e);
}

void waits_retire(void *ctx, struct plugin *p)
{
    struct waits *w = ctx;
    for (struct waiter *x = w->head.next, *n; x != &w->head; x = n) {
        n = x->next;
        if (x->p == p && (x->kind == WAIT_TIMER || x->kind == WAIT_EVERY))
            free_waiter(x);
    }
}

void waits_stop_all(struct waits *w)
{
    while (w->head.next != &w->head) {
        struct waiter *x = w->head.next;
        if (x->kind == WAIT_TIMER || x->kind == WAIT_EVERY) {
            free_waiter(x);
            continue;
        }
        if (x->pid > 0)
            kill(-x->pid, SIGKILL);
        complete_error(x, "the daemon is stopping");
    }
}

void waits_free(struct waits *w)
{
    if (!w)
        return;
    while (w->head.next != &w->head)
        free_waiter(w->head.next);
    free(w);
}
