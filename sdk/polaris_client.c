/* polaris_client.c - libpolaris_client: report events to polarisd without
 * ever blocking or crashing the caller (DESIGN 6).
 *
 * The caller's thread only records: polaris_event_create and the adds copy
 * their arguments, tagged, into the event's own buffer (inline up to
 * EV_INLINE bytes, one allocation), and commit links the event into a
 * bounded queue under one short mutex section. One sender thread per
 * process turns each event into its JSON frame (escaping, number
 * formatting: the work a caller would otherwise pay for), writes a batch
 * with one sendmsg() on a non-blocking socket, and reconnects with backoff.
 * A full queue, an absent or a stalled daemon means the event is dropped
 * and counted, and the count is sent as event 1000002 once the daemon is
 * reachable again.
 *
 * fork: a child must not touch a lock another thread of the parent may have
 * held at fork time, so the atfork child handler only forgets the parent's
 * client (leaving it untouched); the child's next call builds its own. */
#include "polaris_api.h"
#include "buf.h"
#include "json_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>  /* struct iovec */
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

#define QUEUE_MAX_EVENTS 16384
#define QUEUE_MAX_BYTES  (16u << 20)
#define BATCH            64
#define HDR              12
#define DEINIT_BOUND_MS  500
#define BACKOFF_MIN_MS   10
#define BACKOFF_MAX_MS   1000
#define EV_SDK_DROPPED   1000002ull
#define LINGER_US        200      /* sender re-checks this often while busy */
#define IDLE_MS          20       /* ...and sleeps until signalled after this */

#define EV_INLINE 448             /* most events fit: one allocation each */
#define EV_MAX    4194304         /* an event's JSON, as the daemon accepts it */

/* Parameter tags in an event's record. */
enum { P_STRING = 1, P_NULL, P_INT, P_DOUBLE, P_BOOL };

/* An event as the caller built it: eventId, timestamp and pid, then its
 * record: processName and processVer (u32 length + bytes each), then per
 * parameter u8 tag | u32 key length | key | value (u32 length + bytes for a
 * string, 8 bytes for a number, 1 for a bool). A raw event (report_raw)
 * holds its JSON text instead. */
struct polaris_event {
    struct polaris_event *next;   /* queue link once committed */
    uint64_t event_id;
    int64_t ts_ms;
    struct buf b;                 /* the record; b.p is inl until it outgrows it */
    bool raw;
    bool bad;
    char inl[];
};

struct client {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct polaris_event *head, *tail;
    size_t count, bytes;
    uint64_t dropped;             /* not yet reported */
    bool stop;
    bool sleeping;                /* the sender is in an untimed wait: signal it */
    long long stop_deadline_ms;
    pthread_t thread;
    pid_t pid;
    char comm[32];
    char path[108];
};

static _Atomic(struct client *) g_client;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static long long now_ms(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* An absolute CLOCK_REALTIME time us microseconds from now, for
 * pthread_cond_timedwait. */
static struct timespec after_us(long long us)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += us / 1000000;
    t.tv_nsec += (us % 1000000) * 1000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

static void forget_after_fork(void)
{
    /* the parent's client stays as it is: its lock may be held, its thread
     * does not exist here; the child builds its own on next use */
    atomic_store(&g_client, NULL);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_after_fork);
}

static void free_event(struct polaris_event *ev)
{
    if (ev) {
        if (ev->b.p != ev->inl)
            free(ev->b.p);
        free(ev);
    }
}

static struct polaris_event *new_event(void)
{
    struct polaris_event *ev = malloc(sizeof *ev + EV_INLINE);
    if (!ev)
        return NULL;
    ev->next = NULL;
    ev->b.p = ev->inl;
    ev->b.len = 0;
    ev->b.cap = EV_INLINE;
    ev->raw = false;
    ev->bad = false;
    return ev;
}

/* Appends to the record; the first time the inline space is not enough it
 * moves to the heap, where buf's own growth takes over. */
static inline int rec_put(struct polaris_event *ev, const void *data, size_t n)
{
    if (ev->b.p == ev->inl && ev->b.cap - ev->b.len <= n) {
        if (ev->b.len + n > EV_MAX)
            return -1;
        size_t cap = EV_INLINE * 2;
        while (cap <= ev->b.len + n)
            cap *= 2;
        char *h = malloc(cap);
        if (!h)
            return -1;
        memcpy(h, ev->inl, ev->b.len);
        ev->b.p = h;
        ev->b.cap = cap;
    }
    return buf_append(&ev->b, data, n);
}

static int rec_str(struct polaris_event *ev, const char *s)
{
    size_t n = strlen(s);
    if (n > EV_MAX)
        return -1;
    uint32_t l = (uint32_t)n;
    return rec_put(ev, &l, 4) | rec_put(ev, s, n);
}

/* Reads a length-prefixed string back out of a record at *at. */
static const char *rec_take_str(const struct polaris_event *ev, size_t *at, size_t *len)
{
    uint32_t l;
    memcpy(&l, ev->b.p + *at, 4);
    *len = l;
    const char *s = ev->b.p + *at + 4;
    *at += 4 + (size_t)l;
    return s;
}

/* ---- the sender thread ---- */

static int connect_daemon(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes iov fully within deadline. 0, or -1 (connection lost or too slow). */
static int write_all(int fd, struct iovec *iov, int n, long long deadline)
{
    while (n > 0) {
        /* sendmsg, not writev: MSG_NOSIGNAL keeps a vanished daemon from
         * raising SIGPIPE in the app */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)(n > IOV_MAX ? IOV_MAX : n)};
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            long long left = deadline - now_ms(CLOCK_MONOTONIC);
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (left <= 0 || poll(&p, 1, left > 200 ? 200 : (int)left) < 0)
                return -1;
            continue;
        }
        if (w < 0)
            return -1;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* The LSP header of the frame that starts at b->p + at and ends at b->len. */
static void put_header(struct buf *b, size_t at, uint32_t req_id)
{
    uint32_t total = (uint32_t)(b->len - at);
    unsigned char *h = (unsigned char *)b->p + at;
    h[0] = (unsigned char)total; h[1] = (unsigned char)(total >> 8);
    h[2] = (unsigned char)(total >> 16); h[3] = (unsigned char)(total >> 24);
    h[4] = 0x01; h[5] = 0; h[6] = 0; h[7] = 0;         /* EVENT_REPORT */
    h[8] = (unsigned char)req_id; h[9] = (unsigned char)(req_id >> 8);
    h[10] = (unsigned char)(req_id >> 16); h[11] = (unsigned char)(req_id >> 24);
}

/* The event's frame (LSP header and JSON) appended to w. -1 (w as it was)
 * when it would be larger than the daemon accepts, or without memory. */
static int encode(const struct client *c, const struct polaris_event *ev, struct buf *w)
{
    size_t at = w->len;
    int rc = buf_append(w, "\0\0\0\0\0\0\0\0\0\0\0\0", HDR);
    if (ev->raw) {
        rc |= buf_append(w, ev->b.p, ev->b.len);
    } else {
        rc |= buf_append(w, "{\"eventId\":", 11);
        rc |= buf_json_u64(w, ev->event_id);
        rc |= buf_append(w, ",\"timestamp\":", 13);
        rc |= buf_json_i64(w, ev->ts_ms);
        rc |= buf_append(w, ",\"pid\":", 7);
        rc |= buf_json_i64(w, c->pid);
        size_t i = 0, n;
        const char *s = rec_take_str(ev, &i, &n);
        rc |= buf_append(w, ",\"processName\":", 15);
        rc |= buf_json_str(w, s, n);
        s = rec_take_str(ev, &i, &n);
        rc |= buf_append(w, ",\"processVer\":", 14);
        rc |= buf_json_str(w, s, n);
        rc |= buf_append(w, ",\"params\":{", 11);
        for (bool first = true; i < ev->b.len; first = false) {
            unsigned char tag = (unsigned char)ev->b.p[i++];
            s = rec_take_str(ev, &i, &n);
            if (!first)
                rc |= buf_putc(w, ',');
            rc |= buf_json_str(w, s, n);
            rc |= buf_putc(w, ':');
            int64_t iv;
            double dv;
            switch (tag) {
            case P_STRING:
                s = rec_take_str(ev, &i, &n);
                rc |= buf_json_str(w, s, n);
                break;
            case P_NULL:
                rc |= buf_append(w, "null", 4);
                break;
            case P_INT:
                memcpy(&iv, ev->b.p + i, 8);
                i += 8;
                rc |= buf_json_i64(w, iv);
                break;
            case P_DOUBLE:
                memcpy(&dv, ev->b.p + i, 8);
                i += 8;
                rc |= buf_json_double(w, dv);
                break;
            default: {
                bool t = ev->b.p[i++] != 0;
                rc |= buf_append(w, t ? "true" : "false", t ? 4 : 5);
                break;
            }
            }
        }
        rc |= buf_append(w, "}}", 2);
    }
    if (rc || w->len - at > EV_MAX) {
        w->len = at;
        return -1;
    }
    put_header(w, at, 0);
    return 0;
}

static struct polaris_event *drop_notice(struct client *c, uint64_t dropped)
{
    struct polaris_event *ev = new_event();
    if (!ev)
        return NULL;
    ev->event_id = EV_SDK_DROPPED;
    ev->ts_ms = now_ms(CLOCK_REALTIME);
    int64_t n = (int64_t)dropped;
    unsigned char t_int = P_INT, t_str = P_STRING;
    int rc = rec_str(ev, c->comm) | rec_str(ev, "libpolaris_client");
    rc |= rec_put(ev, &t_int, 1) | rec_str(ev, "dropped") | rec_put(ev, &n, 8);
    rc |= rec_put(ev, &t_str, 1) | rec_str(ev, "reason") | rec_str(ev, "queue full or daemon unreachable");
    if (rc) {
        free_event(ev);
        return NULL;
    }
    return ev;
}

static void *sender_main(void *arg)
{
    struct client *c = arg;
    int fd = -1;
    long long backoff = BACKOFF_MIN_MS;
    struct polaris_event *batch = NULL;     /* taken from the queue, not yet sent */
    struct buf wire = BUF_INIT;             /* the batch's frames */
    long long last_work = now_ms(CLOCK_MONOTONIC);
    for (;;) {
        pthread_mutex_lock(&c->mu);
        /* While events flow the sender polls every LINGER_US, so commits need
         * no wakeup (a futex syscall each); only a sender idle for IDLE_MS
         * sleeps until a commit signals it. */
        while (!batch && !c->head && !c->stop) {
            if (now_ms(CLOCK_MONOTONIC) - last_work < IDLE_MS) {
                struct timespec until = after_us(LINGER_US);
                pthread_cond_timedwait(&c->cv, &c->mu, &until);
            } else {
                c->sleeping = true;
                pthread_cond_wait(&c->cv, &c->mu);
                c->sleeping = false;
            }
        }
        last_work = now_ms(CLOCK_MONOTONIC);
        bool stopping = c->stop;
        long long deadline = c->stop_deadline_ms;
        if (!batch) {
            struct polaris_event **tail = &batch;
            for (int n = 0; n < BATCH && c->head; n++) {
                struct polaris_event *ev = c->head;
                c->head = ev->next;
                c->count--;
                c->bytes -= ev->b.len;
                *tail = ev;
                tail = &ev->next;
            }
            *tail = NULL;
            if (!c->head)
                c->tail = NULL;
        }
        uint64_t dropped = fd >= 0 ? c->dropped : 0;
        c->dropped -= dropped;
        pthread_mutex_unlock(&c->mu);

        long long now = now_ms(CLOCK_MONOTONIC);
        if (stopping && (!batch || now >= deadline))
            break;
        if (dropped) {
            struct polaris_event *n = drop_notice(c, dropped);
            if (n) {
                n->next = batch;
                batch = n;
            }
        }
        if (fd < 0) {
            fd = connect_daemon(c->path);
            if (fd < 0) {
                /* wait with backoff, but wake at once for a stop */
                pthread_mutex_lock(&c->mu);
                struct timespec until = after_us((stopping ? 10 : backoff) * 1000);
                if (!c->stop || stopping)
                    pthread_cond_timedwait(&c->cv, &c->mu, &until);
                pthread_mutex_unlock(&c->mu);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            backoff = BACKOFF_MIN_MS;
        }
        /* the JSON is made here, off the callers' threads */
        buf_reset(&wire);
        uint64_t unsendable = 0;
        for (struct polaris_event *ev = batch; ev; ev = ev->next)
            if (encode(c, ev, &wire) < 0)
                unsendable++;
        if (unsendable) {
            pthread_mutex_lock(&c->mu);
            c->dropped += unsendable;     /* reported with the next batch */
            pthread_mutex_unlock(&c->mu);
        }
        struct iovec iov = {wire.p, wire.len};
        long long wdl = stopping ? deadline : now + 2000;
        if (wire.len && write_all(fd, &iov, 1, wdl) < 0) {
            close(fd);              /* the whole batch goes again on a new connection */
            fd = -1;
            continue;
        }
        while (batch) {
            struct polaris_event *next = batch->next;
            free_event(batch);
            batch = next;
        }
    }
    while (batch) {
        struct polaris_event *next = batch->next;
        free_event(batch);
        batch = next;
    }
    if (fd >= 0)
        close(fd);
    buf_free(&wire);
    return NULL;
}

/* ---- the client, created on first use in each process ---- */

static void read_comm(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n > 0) {
        if (out[n - 1] == '\n')
            n--;
        out[n] = '\0';
    }
}

static struct client *get_client(void)
{
    struct client *c = atomic_load_explicit(&g_client, memory_order_acquire);
    if (c)
        return c;
    pthread_once(&g_atfork_once, register_atfork);
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->pid = getpid();
    read_comm(c->comm, sizeof c->comm);
    const char *path = getenv("POLARIS_SOCKET");
    snprintf(c->path, sizeof c->path, "%s", path && *path ? path : "/run/polaris/polaris.sock");
    struct client *expected = NULL;
    if (!atomic_compare_exchange_strong(&g_client, &expected, c)) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return expected;                    /* another thread won the race */
    }
    /* the sender thread must not take the caller's signals */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->thread, NULL, sender_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        c->stop = true;                     /* no sender: every commit drops */
    return c;
}

/* ---- building events ---- */

API polaris_event_t *polaris_event_create(uint64_t event_id, const char *process_name,
                                          const char *process_ver)
{
    struct polaris_event *ev = new_event();
    if (!ev)
        return NULL;
    struct client *c = get_client();         /* the comm, cached per process */
    ev->event_id = event_id;
    ev->ts_ms = now_ms(CLOCK_REALTIME);
    if (rec_str(ev, process_name ? process_name : c ? c->comm : "unknown") < 0 ||
        rec_str(ev, process_ver ? process_ver : "unknown") < 0) {
        free_event(ev);
        return NULL;
    }
    return ev;
}

/* Tag and key of a parameter; -1 (and the event is spoiled) on failure. */
static int add_key(struct polaris_event *ev, unsigned char tag, const char *key)
{
    if (!ev || !key || ev->bad)
        return -1;
    if (rec_put(ev, &tag, 1) < 0 || rec_str(ev, key) < 0) {
        ev->bad = true;
        return -1;
    }
    return 0;
}

static int done(struct polaris_event *ev, int rc)
{
    if (rc)
        ev->bad = true;
    return rc ? -1 : 0;
}

API int polaris_event_add_string(polaris_event_t *ev, const char *key, const char *value)
{
    if (add_key(ev, value ? P_STRING : P_NULL, key) < 0)
        return -1;
    return value ? done(ev, rec_str(ev, value)) : 0;
}

API int polaris_event_add_int(polaris_event_t *ev, const char *key, int32_t value)
{
    int64_t v = value;
    if (add_key(ev, P_INT, key) < 0)
        return -1;
    return done(ev, rec_put(ev, &v, 8));
}

API int polaris_event_add_long(polaris_event_t *ev, const char *key, int64_t value)
{
    if (add_key(ev, P_INT, key) < 0)
        return -1;
    return done(ev, rec_put(ev, &value, 8));
}

API int polaris_event_add_double(polaris_event_t *ev, const char *key, double value)
{
    if (add_key(ev, P_DOUBLE, key) < 0)
        return -1;
    return done(ev, rec_put(ev, &value, 8));
}

API int polaris_event_add_bool(polaris_event_t *ev, const char *key, bool value)
{
    unsigned char v = value;
    if (add_key(ev, P_BOOL, key) < 0)
        return -1;
    return done(ev, rec_put(ev, &v, 1));
}

API void polaris_event_cancel(polaris_event_t *ev)
{
    free_event(ev);
}

static int enqueue(struct polaris_event *ev)
{
    struct client *c = get_client();
    if (!c) {
        free_event(ev);
        return -2;
    }
    ev->next = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->stop || c->count >= QUEUE_MAX_EVENTS || c->bytes + ev->b.len > QUEUE_MAX_BYTES) {
        c->dropped++;
        pthread_mutex_unlock(&c->mu);
        free_event(ev);
        return -2;
    }
    /* The sender is woken when it sleeps, and when this event finds the
     * queue empty (it waits in a LINGER_US poll then, and the event would
     * wait with it: that is most of an event's latency at moderate rates).
     * While events queue up behind one another nobody is woken: the
     * sender takes them in batches as it comes round. */
    bool wake = c->sleeping || c->count == 0;
    if (c->tail)
        c->tail->next = ev;
    else
        c->head = ev;
    c->tail = ev;
    c->count++;
    c->bytes += ev->b.len;
    if (wake)
        pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

API int polaris_event_commit(polaris_event_t *ev)
{
    if (!ev)
        return -1;
    /* its JSON is at least as long as its record: a record over the
     * limit can never be sent (one just under it whose escapes push the
     * JSON over is dropped by the sender, and counted) */
    if (ev->bad || ev->b.len > EV_MAX - HDR) {
        free_event(ev);
        return -1;
    }
    return enqueue(ev);
}

API int polaris_report_raw(const char *json, size_t len)
{
    if (!json || len == 0 || len > EV_MAX - HDR)
        return -1;
    struct json_member m[64];
    const char *err;
    int n = json_object_members(json, len, m, 64, &err);
    const struct json_member *id = n > 0 ? json_find(m, (size_t)(n > 64 ? 64 : n), "eventId") : NULL;
    uint64_t v;
    if (!id || id->kind != JSON_NUMBER || json_to_u64(id->val, id->val_len, &v) < 0)
        return -1;
    struct polaris_event *ev = new_event();
    if (!ev)
        return -2;
    ev->raw = true;
    if (rec_put(ev, json, len) < 0) {
        free_event(ev);
        return -2;
    }
    return enqueue(ev);
}

API void polaris_deinit(void)
{
    struct client *c = atomic_exchange(&g_client, NULL);
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    bool had_thread = !c->stop;
    c->stop = true;
    c->stop_deadline_ms = now_ms(CLOCK_MONOTONIC) + DEINIT_BOUND_MS;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (had_thread)
        pthread_join(c->thread, NULL);
    while (c->head) {
        struct polaris_event *n = c->head->next;
        free_event(c->head);
        c->head = n;
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}
