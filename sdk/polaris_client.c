/* polaris_client.c - libpolaris_client: report events to polarisd without
 * ever blocking or crashing the caller (DESIGN 6).
 *
 * The caller's thread only records: polaris_event_create and the adds
 * copy their arguments, tagged, into the event's own buffer, and commit
 * copies that record into a slot of a bounded lock-free ring (many
 * producers, one consumer: a producer claims a position with one CAS and
 * publishes the slot with one store). One sender thread per process turns
 * each record into its JSON frame (escaping, number formatting: the work a
 * caller would otherwise pay for), writes up to 64 frames with one send()
 * on a non-blocking socket, and reconnects with backoff. It waits on a
 * futex that commits touch only when it sleeps or lingers on an empty ring,
 * so a stream of events costs the callers no system call. A full ring, an
 * absent or a stalled daemon means the event is dropped and counted, and
 * the count is sent as event 1000002 once the daemon is reachable again.
 *
 * fork: a child must not touch state another thread of the parent may
 * have been changing at fork time, so the atfork child handler only
 * forgets the parent's client (leaving it untouched); the child's next
 * call builds its own. */
#include "polaris_api.h"
#include "lib/buf.h"
#include "wire/json_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

#define RING_SLOTS       16384    /* events queued; a power of two */
#define SLOT_BYTES       256
#define HEAP_MAX_BYTES   (16u << 20)  /* records too big for a slot, held outside the ring */
#define BATCH            64
#define HDR              12
#define DEINIT_BOUND_MS  500
#define BACKOFF_MIN_MS   10
#define BACKOFF_MAX_MS   1000
#define EV_SDK_DROPPED   1000002ull
#define LINGER_US        200      /* sender re-checks this often while busy */
#define IDLE_MS          20       /* ...and sleeps until woken after this */
#define CLAIM_WAIT_US    20       /* an event claimed, not yet published: look again after this */
#define POPULATE_AHEAD   2048     /* slots the sender keeps faulted in ahead of commits */
#define POPULATE_STEP    128      /* slots faulted in at a time: 8 pages */
#define PREFETCH_AHEAD   4        /* slots ahead of a commit that it fetches for the next ones */

#define EV_MAX    4194304         /* an event's JSON, as the daemon accepts it */

/* Parameter tags in an event's record. P_PARAMS (the params object as JSON
 * text, from report_raw) and P_LOGF (the attachment path, from commit)
 * carry a string and no key; P_PARAMS comes first and alone, P_LOGF last. */
enum { P_STRING = 1, P_NULL, P_INT, P_DOUBLE, P_BOOL, P_PARAMS, P_LOGF };

/* What the sender is doing, as producers read it to decide on a wakeup. */
enum { W_RUNNING, W_LINGER, W_SLEEP };

/* One queued event. turn says whose the slot is for the position p that
 * maps to it (lap = p with the index bits cleared): lap when a producer may
 * fill it, lap + 1 once filled, lap + RING_SLOTS once the sender has taken
 * it. All three are 0-based per slot, so a zeroed mapping is an empty ring
 * and no page is touched before it is used. */
struct slot {
    _Atomic uint64_t turn;
    uint64_t event_id;
    int64_t stamp;                /* see struct PolarisEventBuilderInternal */
    uint32_t len;
    bool raw;
    bool on_heap;                 /* the record outgrew data: heap holds it */
    bool tsc;
    union {
        char *heap;
        char data[SLOT_BYTES - 32];
    };
};
_Static_assert(sizeof(struct slot) == SLOT_BYTES, "slot layout");

#define EV_INLINE (sizeof ((struct slot *)0)->data)

/* An event as the caller builds it: eventId, timestamp, then its record:
 * processName and processVer (u32 length + bytes each), then per parameter
 * u8 tag | u32 key length | key | value (u32 length + bytes for a string,
 * 8 bytes for a number, 1 for a bool), or instead of the parameters a
 * P_PARAMS string, then optionally a P_LOGF string. A raw event
 * (report_json) holds its whole JSON text instead. The record starts inline, sized like a slot's, and
 * moves to the heap only when it outgrows it; commit copies an inline
 * record into the slot or hands the heap one over. */
struct PolarisEventBuilderInternal {
    uint64_t event_id;
    int64_t stamp;                /* wall-clock ms, or when tsc a TSC reading (see stamp_now) */
    struct buf b;                 /* the record; b.p is inl until it outgrows it */
    bool raw;
    bool bad;
    bool tsc;
    char inl[EV_INLINE];
};

/* A record as the sender reads it, from a slot or a temporary event. */
struct record {
    uint64_t event_id;
    int64_t ts_ms;
    bool raw;
    const char *p;
    size_t len;
};

/* Producers touch tail and read waiting; the sender writes head and
 * waiting; each sits on its own cache line so that neither side's writes
 * evict what the other reads on every event. */
struct client {
    struct slot *ring;            /* RING_SLOTS slots, an anonymous mapping */
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint32_t waiting;
    _Atomic uint32_t wakeups;     /* the futex word the sender waits on */
    _Alignas(64) _Atomic uint64_t dropped;   /* not yet reported */
    _Atomic size_t heap_bytes;
    _Atomic bool stop;
    _Atomic long long stop_deadline_ms;
    uint64_t populated;           /* the sender's: slots faulted in so far */
    /* the sender's: the last timestamp it wrote, as text (events come
     * many to a millisecond), and the pid member, written once */
    int64_t ts_ms_last;
    size_t ts_text_len;
    char ts_text[24];
    size_t pid_json_len;
    char pid_json[24];
    bool has_thread;
    pthread_t thread;
    bool tsc_ok;                  /* stamps are TSC readings (see stamp_now) */
    uint64_t cal_tsc;             /* the TSC and CLOCK_MONOTONIC at creation, */
    int64_t cal_mono_ns;          /* before any event of this client was stamped */
    char comm[32];
    char path[108];
};

static _Atomic(struct client *) g_client;

static int64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- timestamps ----
 *
 * An event's timestamp is wall-clock milliseconds at create. clock_gettime
 * is a quarter of a whole SDK call (28 ns here; the vDSO orders its TSC
 * read with a fence and walks a seqlock), so where the kernel itself keeps
 * time with the TSC (its clocksource is "tsc": invariant and synchronised
 * across CPUs, checked at boot), the caller only reads the TSC and the
 * sender turns the reading into wall-clock time when it encodes the event:
 * now minus the event's age, the age in ns from the TSC rate the sender
 * measures against CLOCK_MONOTONIC since the client was created. Every
 * event is younger than that measurement, so the rate's error (clock-read
 * jitter over the measured span) moves a timestamp by at most about that
 * jitter, far below a millisecond. Anywhere else, the caller reads the
 * clock as before. */
#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t tsc_read(void)
{
    return __rdtsc();
}

static bool tsc_is_clocksource(void)
{
    char b[16] = "";
    int fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    return n == 4 && memcmp(b, "tsc\n", 4) == 0;
}
#else
static inline uint64_t tsc_read(void)
{
    return 0;
}

static bool tsc_is_clocksource(void)
{
    return false;
}
#endif

/* A clock and the TSC read together: the TSC at the clock read's midpoint.
 * A read the scheduler interrupted has its two TSC readings far apart and
 * a midpoint off by up to half that, so the tightest of a few tries is
 * kept (each a few tens of ns). */
static void tsc_pair(clockid_t clk, uint64_t *tsc, int64_t *ns)
{
    uint64_t best = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t a = tsc_read();
        int64_t t = now_ns(clk);
        uint64_t b = tsc_read();
        if (i == 0 || b - a < best) {
            best = b - a;
            *tsc = a + (b - a) / 2;
            *ns = t;
        }
    }
}

/* Converts TSC stamps to wall-clock ms, for one batch of events. The wall
 * clock is read in a pair of its own (read after the monotonic pair, it
 * stood for a later TSC than the one it was taken with, and every stamp
 * came out that much late: ~0.5% of events one ms late at a boundary). */
struct stamp_conv {
    bool ready;
    uint64_t tsc;
    int64_t real_ns;
    double ns_per_tick;
};

static int64_t stamp_to_ms(const struct client *c, struct stamp_conv *k, uint64_t stamp)
{
    if (!k->ready) {
        uint64_t mono_tsc;
        int64_t mono;
        tsc_pair(CLOCK_MONOTONIC, &mono_tsc, &mono);
        tsc_pair(CLOCK_REALTIME, &k->tsc, &k->real_ns);
        k->ns_per_tick = mono_tsc > c->cal_tsc
                             ? (double)(mono - c->cal_mono_ns) / (double)(mono_tsc - c->cal_tsc)
                             : 0.0;
        k->ready = true;
    }
    double age_ns = (double)(int64_t)(k->tsc - stamp) * k->ns_per_tick;
    return (k->real_ns - (int64_t)age_ns) / 1000000;
}
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static long long now_ms(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void forget_after_fork(void)
{
    /* the parent's client stays as it is: its ring may be mid-update, its
     * thread does not exist here; the child builds its own on next use */
    atomic_store(&g_client, NULL);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_after_fork);
}

/* The sender waits on c->wakeups for at most timeout_us (< 0: until woken);
 * the wait ends at once if a wakeup came after `seen` was read. */
static void sender_wait(struct client *c, uint32_t seen, long long timeout_us)
{
    struct timespec ts = {timeout_us / 1000000, (timeout_us % 1000000) * 1000};
    syscall(SYS_futex, &c->wakeups, FUTEX_WAIT_PRIVATE, seen, timeout_us < 0 ? NULL : &ts, NULL, 0);
}

static void wake_sender(struct client *c)
{
    atomic_fetch_add(&c->wakeups, 1);
    syscall(SYS_futex, &c->wakeups, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Each thread keeps the memory of its last finished event for its next
 * one, so create and commit allocate nothing. A thread's spare is freed
 * when the thread exits (the key's destructor runs before its TLS goes)
 * or, for the calling thread, by polaris_deinit. initial-exec: a plain
 * %fs-relative load, no __tls_get_addr call per event. */
static __thread struct PolarisEventBuilderInternal *t_spare __attribute__((tls_model("initial-exec")));
static __thread bool t_spare_keyed __attribute__((tls_model("initial-exec")));
static pthread_key_t g_spare_key;
static bool g_spare_key_ok;
static pthread_once_t g_spare_once = PTHREAD_ONCE_INIT;

static void free_spare(void *unused)
{
    (void)unused;
    free(t_spare);
    t_spare = NULL;
}

static void make_spare_key(void)
{
    g_spare_key_ok = pthread_key_create(&g_spare_key, free_spare) == 0;
}

static void free_event(struct PolarisEventBuilderInternal *ev)
{
    if (!ev)
        return;
    if (ev->b.p != ev->inl)
        free(ev->b.p);
    if (t_spare) {
        free(ev);
        return;
    }
    if (!t_spare_keyed) {
        /* the first spare of this thread: arrange for it to be freed at
         * exit, or keep none if that cannot be arranged */
        pthread_once(&g_spare_once, make_spare_key);
        if (!g_spare_key_ok || pthread_setspecific(g_spare_key, (void *)1) != 0) {
            free(ev);
            return;
        }
        t_spare_keyed = true;
    }
    t_spare = ev;
}

static struct PolarisEventBuilderInternal *new_event(void)
{
    struct PolarisEventBuilderInternal *ev = t_spare;
    if (ev)
        t_spare = NULL;
    else if (!(ev = malloc(sizeof *ev)))
        return NULL;
    ev->b.p = ev->inl;
    ev->b.len = 0;
    ev->b.cap = EV_INLINE;
    ev->raw = false;
    ev->bad = false;
    return ev;
}

/* Copies the string s into d, at most max bytes: returns its length when
 * its NUL came within max (d then holds the string), else max. Eight bytes
 * at a time, the way libc's string functions go: a word is read whole only
 * when it does not cross into the next page, so reading past the string's
 * end can never fault; it is written whole while d has room (bytes after
 * the NUL land in space the record has not used yet); the first zero byte
 * is found with the borrow trick (false hits lie only above a true zero).
 * The read past the end is deliberate: ASan does not instrument this one
 * function. Elsewhere than little-endian x86-64 and arm64, a byte loop. */
#if (defined(__x86_64__) || defined(__aarch64__)) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
typedef uint64_t __attribute__((may_alias, aligned(1))) word_u;

__attribute__((no_sanitize_address)) static inline size_t copy_str(char *d, const char *s, size_t max)
{
    size_t n = 0;
    while (n + 8 <= max && ((uintptr_t)(s + n) & 4095) <= 4096 - 8) {
        uint64_t w = *(const word_u *)(const void *)(s + n);
        uint64_t z = (w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull;
        *(word_u *)(void *)(d + n) = w;
        if (z)
            return n + ((size_t)__builtin_ctzll(z) >> 3);
        n += 8;
    }
    while (n < max && (d[n] = s[n]) != '\0')
        n++;
    return n;
}
#else
static inline size_t copy_str(char *d, const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && (d[n] = s[n]) != '\0')
        n++;
    return n;
}
#endif

/* Two strings, each as u32 length + bytes, written at `at` within `room`
 * bytes (one kept free after them): the bytes used, or 0 when they do not
 * fit there. */
static inline size_t put_str_pair(char *at, size_t room, const char *a, const char *b)
{
    if (room <= 8)
        return 0;
    size_t max = room - 8;
    size_t n = copy_str(at + 4, a, max);
    if (n >= max)
        return 0;
    size_t m = copy_str(at + 8 + n, b, max - n);
    if (m >= max - n)
        return 0;
    uint32_t nl = (uint32_t)n, ml = (uint32_t)m;
    memcpy(at, &nl, 4);
    memcpy(at + 4 + n, &ml, 4);
    return 8 + n + m;
}

/* Appends to the record; the first time the inline space is not enough it
 * moves to the heap, where buf's own growth takes over. */
static int rec_grow(struct PolarisEventBuilderInternal *ev, size_t n)
{
    if (ev->b.len + n > EV_MAX)
        return -1;
    size_t cap = EV_INLINE * 4;
    while (cap <= ev->b.len + n)
        cap *= 2;
    char *h = malloc(cap);
    if (!h)
        return -1;
    memcpy(h, ev->inl, ev->b.len);
    ev->b.p = h;
    ev->b.cap = cap;
    return 0;
}

static inline int rec_put(struct PolarisEventBuilderInternal *ev, const void *data, size_t n)
{
    if (ev->b.p == ev->inl && ev->b.cap - ev->b.len <= n && rec_grow(ev, n) < 0)
        return -1;
    return buf_append(&ev->b, data, n);
}

static int rec_str_long(struct PolarisEventBuilderInternal *ev, const char *s)
{
    size_t n = strlen(s);
    if (n > EV_MAX)
        return -1;
    uint32_t l = (uint32_t)n;
    if (ev->b.p == ev->inl && ev->b.cap - ev->b.len <= n + 4 && rec_grow(ev, n + 4) < 0)
        return -1;
    if (buf_reserve(&ev->b, n + 4) < 0)
        return -1;
    memcpy(ev->b.p + ev->b.len, &l, 4);
    memcpy(ev->b.p + ev->b.len + 4, s, n);
    ev->b.len += n + 4;
    return 0;
}

/* A string as u32 length + bytes. Names and short values (nearly all) go
 * into the inline record in one pass that copies while it looks for the
 * end: no strlen and memcpy calls, a third of the cost of a short add. */
static inline int rec_str(struct PolarisEventBuilderInternal *ev, const char *s)
{
    if (ev->b.p == ev->inl && ev->b.cap - ev->b.len > 4) {
        char *d = ev->b.p + ev->b.len + 4;
        size_t max = ev->b.cap - ev->b.len - 4;
        size_t n = copy_str(d, s, max);
        if (n < max) {
            uint32_t l = (uint32_t)n;
            memcpy(d - 4, &l, 4);
            ev->b.len += n + 4;
            return 0;
        }
    }
    return rec_str_long(ev, s);
}

/* Reads a length-prefixed string back out of a record at *at. */
static const char *rec_take_str(const struct record *r, size_t *at, size_t *len)
{
    uint32_t l;
    memcpy(&l, r->p + *at, 4);
    *len = l;
    const char *s = r->p + *at + 4;
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

/* Writes w[*done..len). A daemon that does not read (it holds the apps
 * back while the guest is slow: backpressure) is waited for as long as it
 * takes; the ring absorbs meanwhile and a full one drops at commit. Only
 * polaris_deinit puts a deadline on it. 0 when all is written; -1 when the
 * connection is gone or the deadline passed, *done then says how far it
 * got. */
static int write_all(struct client *c, int fd, const struct buf *w, size_t *done)
{
    while (*done < w->len) {
        /* MSG_NOSIGNAL keeps a vanished daemon from raising SIGPIPE in the app */
        ssize_t n = send(fd, w->p + *done, w->len - *done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            int slice = 200;
            if (atomic_load(&c->stop)) {
                long long left = atomic_load(&c->stop_deadline_ms) - now_ms(CLOCK_MONOTONIC);
                if (left <= 0)
                    return -1;
                slice = left < slice ? (int)left : slice;
            }
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, slice) < 0 && errno != EINTR)
                return -1;
            continue;
        }
        if (n < 0)
            return -1;
        *done += (size_t)n;
    }
    return 0;
}

/* Where the first frame that was not completely written starts: frames
 * before it reached the daemon; it and the rest go again (the daemon drops
 * the cut one with the connection), so none arrives twice. */
static size_t first_unsent_frame(const struct buf *w, size_t done)
{
    size_t at = 0;
    while (at + HDR <= w->len) {
        const unsigned char *h = (const unsigned char *)w->p + at;
        size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        if (at + len > done)
            break;
        at += len;
    }
    return at;
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

/* The params object of a built event, from *at up to its P_LOGF or end. */
static int encode_params(const struct record *r, size_t *at, struct buf *w)
{
    size_t i = *at, n;
    const char *s;
    int rc = buf_putc(w, '{');
    for (bool first = true; i < r->len && r->p[i] != P_LOGF; first = false) {
        unsigned char tag = (unsigned char)r->p[i++];
        s = rec_take_str(r, &i, &n);
        if (!first)
            rc |= buf_putc(w, ',');
        rc |= buf_json_str(w, s, n);
        rc |= buf_putc(w, ':');
        int64_t iv;
        double dv;
        switch (tag) {
        case P_STRING:
            s = rec_take_str(r, &i, &n);
            rc |= buf_json_str(w, s, n);
            break;
        case P_NULL:
            rc |= buf_append(w, "null", 4);
            break;
        case P_INT:
            memcpy(&iv, r->p + i, 8);
            i += 8;
            rc |= buf_json_i64(w, iv);
            break;
        case P_DOUBLE:
            memcpy(&dv, r->p + i, 8);
            i += 8;
            rc |= buf_json_double(w, dv);
            break;
        default: {
            bool t = r->p[i++] != 0;
            rc |= buf_append(w, t ? "true" : "false", t ? 4 : 5);
            break;
        }
        }
    }
    *at = i;
    return rc | buf_putc(w, '}');
}

/* The event's frame (LSP header and JSON) appended to w. -1 (w as it was)
 * when it would be larger than the daemon accepts, or without memory. */
static int encode(struct client *c, const struct record *r, struct buf *w)
{
    size_t at = w->len;
    int rc = buf_append(w, "\0\0\0\0\0\0\0\0\0\0\0\0", HDR);
    if (r->raw) {
        rc |= buf_append(w, r->p, r->len);
    } else {
        rc |= buf_append(w, "{\"eventId\":", 11);
        rc |= buf_json_u64(w, r->event_id);
        rc |= buf_append(w, ",\"timestamp\":", 13);
        if (r->ts_ms != c->ts_ms_last || !c->ts_text_len) {
            c->ts_ms_last = r->ts_ms;
            c->ts_text_len = (size_t)snprintf(c->ts_text, sizeof c->ts_text, "%lld", (long long)r->ts_ms);
        }
        rc |= buf_append(w, c->ts_text, c->ts_text_len);
        rc |= buf_append(w, c->pid_json, c->pid_json_len);
        size_t i = 0, n;
        const char *s = rec_take_str(r, &i, &n);
        rc |= buf_append(w, ",\"processName\":", 15);
        rc |= buf_json_str(w, s, n);
        s = rec_take_str(r, &i, &n);
        rc |= buf_append(w, ",\"processVer\":", 14);
        rc |= buf_json_str(w, s, n);
        rc |= buf_append(w, ",\"params\":", 10);
        if (i < r->len && r->p[i] == P_PARAMS) {
            i++;
            s = rec_take_str(r, &i, &n);
            rc |= buf_append(w, s, n);          /* validated at report_raw */
        } else {
            rc |= encode_params(r, &i, w);
        }
        if (i < r->len && r->p[i] == P_LOGF) {
            i++;
            s = rec_take_str(r, &i, &n);
            rc |= buf_append(w, ",\"logf\":", 8);
            rc |= buf_json_str(w, s, n);
        }
        rc |= buf_putc(w, '}');
    }
    if (rc || w->len - at > EV_MAX) {
        w->len = at;
        return -1;
    }
    put_header(w, at, 0);
    return 0;
}

/* Event 1000002, telling the daemon how many events were dropped. */
static void encode_drop_notice(struct client *c, uint64_t dropped, struct buf *w)
{
    struct PolarisEventBuilderInternal *ev = new_event();
    if (!ev) {
        atomic_fetch_add(&c->dropped, dropped);   /* told next time */
        return;
    }
    int64_t n = (int64_t)dropped;
    unsigned char t_int = P_INT, t_str = P_STRING;
    /* rec_str_long: rec_str's word reads would meet these literals'
     * bounds at compile time (harmless, and GCC says so with an error) */
    int rc = rec_str_long(ev, c->comm) | rec_str_long(ev, "libpolaris_client");
    rc |= rec_put(ev, &t_int, 1) | rec_str_long(ev, "dropped") | rec_put(ev, &n, 8);
    rc |= rec_put(ev, &t_str, 1) | rec_str_long(ev, "reason") |
          rec_str_long(ev, "queue full or daemon unreachable");
    struct record r = {EV_SDK_DROPPED, now_ms(CLOCK_REALTIME), false, ev->b.p, ev->b.len};
    if (rc || encode(c, &r, w) < 0)
        atomic_fetch_add(&c->dropped, dropped);
    free_event(ev);
}

static struct slot *slot_at(const struct client *c, uint64_t pos)
{
    return &c->ring[pos & (RING_SLOTS - 1)];
}

static uint64_t lap_of(uint64_t pos)
{
    return pos & ~(uint64_t)(RING_SLOTS - 1);
}

/* Whether the slot at head holds an event. seq_cst: read after the sender
 * says it waits, it pairs with a producer's publish-then-read-waiting. */
static bool ring_ready(struct client *c)
{
    uint64_t head = atomic_load_explicit(&c->head, memory_order_relaxed);
    return atomic_load(&slot_at(c, head)->turn) == lap_of(head) + 1;
}

/* Frees a taken slot's heap record and gives the slot back to producers. */
static void release_slot(struct client *c, struct slot *s, uint64_t pos)
{
    if (s->on_heap) {
        atomic_fetch_sub_explicit(&c->heap_bytes, s->len, memory_order_relaxed);
        free(s->heap);
    }
    atomic_store_explicit(&s->turn, lap_of(pos) + RING_SLOTS, memory_order_release);
}

/* Takes up to BATCH events from the ring into w as frames; returns how many
 * could not be encoded (counted as drops). */
static uint64_t take_batch(struct client *c, struct buf *w)
{
    uint64_t head = atomic_load_explicit(&c->head, memory_order_relaxed);
    uint64_t bad = 0;
    struct stamp_conv k = {.ready = false};
    for (int n = 0; n < BATCH; n++, head++) {
        struct slot *s = slot_at(c, head);
        if (atomic_load_explicit(&s->turn, memory_order_acquire) != lap_of(head) + 1)
            break;
        int64_t ts_ms = s->tsc ? stamp_to_ms(c, &k, (uint64_t)s->stamp) : s->stamp;
        struct record r = {s->event_id, ts_ms, s->raw, s->on_heap ? s->heap : s->data, s->len};
        if (encode(c, &r, w) < 0)
            bad++;
        release_slot(c, s, head);
    }
    atomic_store_explicit(&c->head, head, memory_order_relaxed);
    return bad;
}

/* Waits for events with nothing to send: a short timed wait while events
 * have been flowing (commits then need no wakeup, each would be a futex
 * syscall), an untimed one after IDLE_MS without work.
 *
 * The sender says it waits, then looks at tail; a producer claims a
 * position (moves tail), then looks at whether the sender waits. Both are
 * seq_cst, so one of the two sees the other's store: the producer wakes
 * the sender, or the sender sees the claim and does not sleep. The
 * producer's barrier is the claim's own locked instruction; it needs no
 * fence of its own after the publish. A claim seen before its publish (the
 * producer is between the two, usually for nanoseconds) gets a short timed
 * wait, not an untimed one. waiting stays set across linger rounds and
 * goes back to W_RUNNING only when there is work, so a stale read costs a
 * producer at most one needless wakeup. */
static void wait_for_events(struct client *c, uint32_t mode)
{
    uint32_t seen = atomic_load(&c->wakeups);
    if (atomic_load_explicit(&c->waiting, memory_order_relaxed) != mode)
        atomic_store(&c->waiting, mode);
    if (atomic_load(&c->stop) || ring_ready(c))
        return;
    bool claimed = atomic_load(&c->tail) != atomic_load_explicit(&c->head, memory_order_relaxed);
    sender_wait(c, seen, claimed ? CLAIM_WAIT_US : mode == W_LINGER ? LINGER_US : -1);
}

/* Faults the ring's pages in, in the sender, ahead of the commits, so that
 * no commit takes a page fault on the ring's first lap (one per 16 slots;
 * a few microseconds each, and now and then a few hundred on this VM).
 * While a daemon reads, `ahead` is a little (memory grows with use); with
 * none, the ring is going to fill, and all of it is faulted in.
 *
 * A step is 8 pages (~25 us here), and between steps the CPU goes back to
 * whoever wants it. The sender is made on the caller's CPU and often runs
 * there first, preempting the caller: its first 2048 slots in one go held
 * a caller off for ~0.4-2 ms (a trace of sched_switch in the absent-daemon
 * bench showed it), now for one step at most.
 * Without MADV_POPULATE_WRITE (Linux < 5.14) commits fault as they go. */
static void populate_ahead(struct client *c, uint64_t ahead)
{
    uint64_t want = atomic_load_explicit(&c->tail, memory_order_relaxed) + ahead;
    while (c->populated < RING_SLOTS && c->populated < want) {
        uint64_t n = RING_SLOTS - c->populated < POPULATE_STEP ? RING_SLOTS - c->populated : POPULATE_STEP;
        if (madvise(&c->ring[c->populated], n * sizeof(struct slot), MADV_POPULATE_WRITE) != 0) {
            c->populated = RING_SLOTS;
            return;
        }
        c->populated += n;
        if (c->populated < want)
            sched_yield();
    }
}

static void *sender_main(void *arg)
{
    struct client *c = arg;
    int fd = -1;
    long long backoff = BACKOFF_MIN_MS;
    struct buf wire = BUF_INIT;           /* frames taken from the ring, not yet written */
    long long last_work = now_ms(CLOCK_MONOTONIC);
    for (;;) {
        bool stopping = atomic_load(&c->stop);
        long long deadline = atomic_load(&c->stop_deadline_ms);
        long long now = now_ms(CLOCK_MONOTONIC);
        if (stopping && (now >= deadline || (!wire.len && !ring_ready(c))))
            break;
        if (c->populated < RING_SLOTS)
            populate_ahead(c, POPULATE_AHEAD);
        if (fd < 0) {
            fd = connect_daemon(c->path);
            if (fd < 0) {
                if (c->populated < RING_SLOTS)
                    populate_ahead(c, RING_SLOTS);
                /* the ring keeps what it holds; wait with backoff, but
                 * wake at once for a stop */
                uint32_t seen = atomic_load(&c->wakeups);
                if (!atomic_load(&c->stop) || stopping)
                    sender_wait(c, seen, (stopping ? 10 : backoff) * 1000);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            backoff = BACKOFF_MIN_MS;
        }
        if (!wire.len) {
            uint64_t dropped = atomic_exchange(&c->dropped, 0);
            if (dropped)
                encode_drop_notice(c, dropped, &wire);
            /* the JSON is made here, off the callers' threads */
            uint64_t bad = take_batch(c, &wire);
            if (wire.len && atomic_load_explicit(&c->waiting, memory_order_relaxed) != W_RUNNING)
                atomic_store_explicit(&c->waiting, W_RUNNING, memory_order_relaxed);
            if (bad)
                atomic_fetch_add(&c->dropped, bad);     /* reported with the next batch */
            if (!wire.len) {
                if (!stopping)
                    wait_for_events(c, now - last_work < IDLE_MS ? W_LINGER : W_SLEEP);
                continue;
            }
            last_work = now;
        }
        size_t done = 0;
        if (write_all(c, fd, &wire, &done) < 0) {
            close(fd);
            fd = -1;
            /* what did not reach the daemon goes again on a new connection */
            buf_consume(&wire, first_unsent_frame(&wire, done));
            continue;
        }
        buf_reset(&wire);
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
    /* zero pages until used: an app that reports little pays for little */
    c->ring = mmap(NULL, sizeof(struct slot) * RING_SLOTS, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (c->ring == MAP_FAILED) {
        free(c);
        return NULL;
    }
    c->pid_json_len = (size_t)snprintf(c->pid_json, sizeof c->pid_json, ",\"pid\":%d", (int)getpid());
    read_comm(c->comm, sizeof c->comm);
    if ((c->tsc_ok = tsc_is_clocksource()))
        tsc_pair(CLOCK_MONOTONIC, &c->cal_tsc, &c->cal_mono_ns);
    const char *path = getenv("POLARIS_SOCKET");
    snprintf(c->path, sizeof c->path, "%s", path && *path ? path : "/run/polaris/polaris.sock");
    struct client *expected = NULL;
    if (!atomic_compare_exchange_strong(&g_client, &expected, c)) {
        munmap(c->ring, sizeof(struct slot) * RING_SLOTS);
        free(c);
        return expected;                    /* another thread won the race */
    }
    /* the sender thread must not take the caller's signals */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    c->has_thread = pthread_create(&c->thread, NULL, sender_main, c) == 0;
    if (c->has_thread)
        pthread_setname_np(c->thread, "polaris-sender");   /* the app's top -H tells it apart */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!c->has_thread)
        atomic_store(&c->stop, true);       /* no sender: every commit drops */
    return c;
}

/* ---- building events ---- */

/* Not inlined: its callers' literal strings must not meet copy_str's
 * page-safe word reads at compile time (GCC would call them out of bounds). */
static __attribute__((noinline)) PolarisEventHandle event_create(uint64_t event_id,
                                                                 const char *process_name,
                                                                 const char *process_ver);

API PolarisEventHandle polaris_event_create(uint64_t event_id, const char *process_name,
                                          const char *process_ver)
{
    return event_create(event_id, process_name, process_ver);
}

static PolarisEventHandle event_create(uint64_t event_id, const char *process_name,
                                       const char *process_ver)
{
    struct PolarisEventBuilderInternal *ev = new_event();
    if (!ev)
        return NULL;
    struct client *c = get_client();         /* the comm, cached per process */
    ev->event_id = event_id;
    if ((ev->tsc = c && c->tsc_ok))
        ev->stamp = (int64_t)tsc_read();
    else
        ev->stamp = now_ms(CLOCK_REALTIME);
    const char *name = process_name ? process_name : c ? c->comm : "unknown";
    const char *ver = process_ver ? process_ver : "unknown";
    /* both strings into the empty inline record in one pass each, the
     * position in locals (see add_fixed); longer ones take rec_str */
    size_t w = put_str_pair(ev->b.p, ev->b.cap, name, ver);
    if (w) {
        ev->b.len = w;
        return ev;
    }
    if (rec_str(ev, name) < 0 || rec_str(ev, ver) < 0) {
        free_event(ev);
        return NULL;
    }
    return ev;
}

/* Tag and key of a parameter; -1 (and the event is spoiled) on failure. */
static inline int add_key(struct PolarisEventBuilderInternal *ev, unsigned char tag, const char *key)
{
    if (!ev || !key || ev->bad)
        return -1;
    if (ev->b.cap - ev->b.len > 1)
        ev->b.p[ev->b.len++] = (char)tag;
    else if (rec_put(ev, &tag, 1) < 0)
        goto spoiled;
    if (rec_str(ev, key) < 0) {
spoiled:
        ev->bad = true;
        return -1;
    }
    return 0;
}

static inline int done(struct PolarisEventBuilderInternal *ev, int rc)
{
    if (rc)
        ev->bad = true;
    return rc ? -1 : 0;
}

/* A parameter with a fixed-size value, the way that works anywhere: the
 * record grows to the heap when it must. */
static __attribute__((noinline, cold)) int add_fixed_slow(struct PolarisEventBuilderInternal *ev, unsigned char tag,
                                                          const char *key, const void *v, size_t vlen)
{
    if (add_key(ev, tag, key) < 0)
        return -1;
    return done(ev, rec_put(ev, v, vlen));
}

/* The usual case in one pass, with the record's position in locals: tag,
 * key (u32 length, bytes) and value written where the record is when they
 * fit there. (A store of a char may alias the event's own fields; through
 * ev->b the compiler would reload them after every byte.) */
static inline int add_fixed(struct PolarisEventBuilderInternal *ev, unsigned char tag, const char *key,
                            const void *v, size_t vlen)
{
    if (!ev || !key || ev->bad)
        return -1;
    char *p = ev->b.p;
    size_t len = ev->b.len, room = ev->b.cap - len;
    if (room > 5 + vlen) {
        char *d = p + len + 5;
        size_t max = room - 5 - vlen;
        size_t n = copy_str(d, key, max);
        if (n < max) {
            uint32_t l = (uint32_t)n;
            p[len] = (char)tag;
            memcpy(p + len + 1, &l, 4);
            memcpy(d + n, v, vlen);
            ev->b.len = len + 5 + n + vlen;
            return 0;
        }
    }
    return add_fixed_slow(ev, tag, key, v, vlen);
}

static __attribute__((noinline, cold)) int add_string_slow(struct PolarisEventBuilderInternal *ev, const char *key,
                                                           const char *value)
{
    if (add_key(ev, value ? P_STRING : P_NULL, key) < 0)
        return -1;
    return value ? done(ev, rec_str(ev, value)) : 0;
}

static inline int add_string(struct PolarisEventBuilderInternal *ev, const char *key, const char *value)
{
    if (!ev || !key || !value || ev->bad)
        return add_string_slow(ev, key, value);
    char *p = ev->b.p;
    size_t len = ev->b.len, room = ev->b.cap - len;
    /* tag, then key and value, both copied while their ends are looked for */
    size_t w = room > 1 ? put_str_pair(p + len + 1, room - 1, key, value) : 0;
    if (w) {
        p[len] = (char)P_STRING;
        ev->b.len = len + 1 + w;
        return 0;
    }
    return add_string_slow(ev, key, value);
}

/* The original API's adds return nothing: a failed add marks the event
 * spoiled (ev->bad), and its commit then refuses it with -1. */
API void polaris_event_add_string(PolarisEventHandle ev, const char *key, const char *value)
{
    (void)add_string(ev, key, value);
}

API void polaris_event_add_int(PolarisEventHandle ev, const char *key, int32_t value)
{
    int64_t v = value;
    (void)add_fixed(ev, P_INT, key, &v, 8);
}

API void polaris_event_add_long(PolarisEventHandle ev, const char *key, int64_t value)
{
    (void)add_fixed(ev, P_INT, key, &value, 8);
}

API void polaris_event_add_double(PolarisEventHandle ev, const char *key, double value)
{
    (void)add_fixed(ev, P_DOUBLE, key, &value, 8);
}

API void polaris_event_add_bool(PolarisEventHandle ev, const char *key, bool value)
{
    unsigned char v = value;
    (void)add_fixed(ev, P_BOOL, key, &v, 1);
}

API void polaris_event_cancel(PolarisEventHandle ev)
{
    free_event(ev);
}

/* Moves the event into the ring and frees it. 0, or -2 (dropped, counted)
 * when the ring is full, the heap budget spent, or there is no sender. */
static int enqueue(struct PolarisEventBuilderInternal *ev)
{
    struct client *c = get_client();
    if (!c) {
        free_event(ev);
        return -2;
    }
    size_t len = ev->b.len;
    bool on_heap = ev->b.p != ev->inl;
    if (on_heap && atomic_fetch_add_explicit(&c->heap_bytes, len, memory_order_relaxed) + len >
                       HEAP_MAX_BYTES) {
        atomic_fetch_sub_explicit(&c->heap_bytes, len, memory_order_relaxed);
        goto drop;
    }
    if (atomic_load_explicit(&c->stop, memory_order_relaxed))
        goto unbudget;
    /* claim a position: the slot it maps to must be free for this lap;
     * one still holding an event of the lap before means the ring is full */
    uint64_t pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
    struct slot *s;
    for (;;) {
        s = slot_at(c, pos);
        int64_t dif = (int64_t)(atomic_load_explicit(&s->turn, memory_order_acquire) - lap_of(pos));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&c->tail, &pos, pos + 1, memory_order_seq_cst,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            goto unbudget;
        } else {
            pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
        }
    }
    /* whether the sender must be woken: read right after the claim, which
     * is the barrier (see wait_for_events); the wakeup itself comes after
     * the publish. It is woken when it sleeps, and when this event finds
     * the ring empty while it lingers (the event would otherwise wait out
     * the linger: most of an event's latency at moderate rates). Events
     * queued behind others wake nobody: the sender takes them in batches
     * as it comes round. */
    uint32_t w = atomic_load(&c->waiting);
    bool wake = w == W_SLEEP ||
                (w == W_LINGER && pos == atomic_load_explicit(&c->head, memory_order_relaxed));
    s->event_id = ev->event_id;
    s->stamp = ev->stamp;
    s->tsc = ev->tsc;
    s->len = (uint32_t)len;
    s->raw = ev->raw;
    if (on_heap) {
        s->on_heap = true;
        s->heap = ev->b.p;
        ev->b.p = ev->inl;
    } else {
        s->on_heap = false;
        memcpy(s->data, ev->inl, len);
    }
    free_event(ev);
    atomic_store_explicit(&s->turn, lap_of(pos) + 1, memory_order_release);
    /* a slot a few events ahead, owned before it is needed: its line was
     * last written by the sender, on another core, and fetching it takes
     * longer than one commit (ahead by 1: 95 ns a call, by 4: 87, by 8: 86,
     * medians of 12 interleaved runs) */
    struct slot *next = slot_at(c, pos + PREFETCH_AHEAD);
    __builtin_prefetch(next, 1, 3);
    __builtin_prefetch((char *)next + 64, 1, 3);
    __builtin_prefetch((char *)next + 128, 1, 3);
    if (wake)
        wake_sender(c);
    return 0;
unbudget:
    if (on_heap)
        atomic_fetch_sub_explicit(&c->heap_bytes, len, memory_order_relaxed);
drop:
    atomic_fetch_add_explicit(&c->dropped, 1, memory_order_relaxed);
    free_event(ev);
    return -2;
}

API int polaris_event_commit(PolarisEventHandle ev, const char *log_path)
{
    if (!ev)
        return -1;
    if (log_path && *log_path && !ev->bad) {
        unsigned char tag = P_LOGF;
        if (rec_put(ev, &tag, 1) < 0 || rec_str(ev, log_path) < 0)
            ev->bad = true;
    }
    /* its JSON is at least as long as its record: a record over the
     * limit can never be sent (one just under it whose escapes push the
     * JSON over is dropped by the sender, and counted) */
    if (ev->bad || ev->b.len > EV_MAX - HDR) {
        free_event(ev);
        return -1;
    }
    return enqueue(ev);
}

API int polaris_report_raw(uint64_t event_id, const char *process_name, const char *process_ver,
                           const char *json_body, const char *log_path)
{
    const char *body = json_body ? json_body : "{}";
    size_t len = strlen(body);
    const char *err;
    if (len > EV_MAX - HDR || json_validate(body, len, &err) != JSON_OBJECT)
        return -1;
    PolarisEventHandle ev = event_create(event_id, process_name, process_ver);
    if (!ev)
        return -2;
    unsigned char tag = P_PARAMS;
    if (rec_put(ev, &tag, 1) < 0 || rec_str(ev, body) < 0) {
        free_event(ev);
        return -2;
    }
    return polaris_event_commit(ev, log_path);
}

API int polaris_report_json(const char *json, size_t len)
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
    struct PolarisEventBuilderInternal *ev = new_event();
    if (!ev)
        return -2;
    ev->raw = true;
    ev->event_id = v;
    ev->stamp = 0;
    ev->tsc = false;
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
    atomic_store(&c->stop_deadline_ms, now_ms(CLOCK_MONOTONIC) + DEINIT_BOUND_MS);
    atomic_store(&c->stop, true);
    wake_sender(c);
    if (c->has_thread)
        pthread_join(c->thread, NULL);
    /* what the sender could not deliver in time */
    for (uint64_t head = atomic_load(&c->head);; head++) {
        struct slot *s = slot_at(c, head);
        if (atomic_load(&s->turn) != lap_of(head) + 1)
            break;
        release_slot(c, s, head);
    }
    munmap(c->ring, sizeof(struct slot) * RING_SLOTS);
    free(c);
    free_spare(NULL);
}
