/* event_json.c - the one module that writes an event's JSON shape: the
 * ingress's one pass over an app's event (validate, stamp identity, splice
 * the rest through unchanged), a strategy's result restamped, an event a
 * plugin emits with the daemon's defaults, and the drop notice (1000001).
 * Kept below the runtime and the daemon (it knows neither Lua nor the
 * egress), so the fields an event carries are decided in one place.
 *
 * Uses: json_scan, buf, event_ids. */
#include "wire/event_json.h"
#include "wire/event_ids.h"
#include "wire/json_scan.h"
#include "lib/json_index.h"

#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_MEMBERS EVENT_MEMBERS_MAX

uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int proc_comm(pid_t pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n <= 0)
        return -1;
    if (out[n - 1] == '\n')
        n--;
    out[n] = '\0';
    return 0;
}

enum field { F_OTHER, F_EVENT_ID, F_TIMESTAMP, F_PID, F_UID, F_CLAIMED_PID, F_PARAMS,
             F_PROCESS_NAME, F_PROCESS_VER, F_LOGF, F_COUNT };

/* Plain keys by length, then one fixed-size compare (inlined); escaped
 * keys are decoded by json_key_is, so "p\u0069d" is "pid" here too. */
static enum field classify(const struct json_member *m)
{
#define IS(lit) (memcmp(m->key, lit, sizeof lit - 1) == 0)
    if (m->key_escaped) {
        static const char *const names[F_COUNT] = {
            NULL, "eventId", "timestamp", "pid", "uid", "claimedPid",
            "params", "processName", "processVer", "logf",
        };
        for (int f = 1; f < F_COUNT; f++)
            if (json_key_is(m, names[f]))
                return (enum field)f;
        return F_OTHER;
    }
    switch (m->key_len) {
    case 3: return IS("pid") ? F_PID : IS("uid") ? F_UID : F_OTHER;
    case 4: return IS("logf") ? F_LOGF : F_OTHER;
    case 6: return IS("params") ? F_PARAMS : F_OTHER;
    case 7: return IS("eventId") ? F_EVENT_ID : F_OTHER;
    case 9: return IS("timestamp") ? F_TIMESTAMP : F_OTHER;
    case 10: return IS("claimedPid") ? F_CLAIMED_PID : IS("processVer") ? F_PROCESS_VER : F_OTHER;
    case 11: return IS("processName") ? F_PROCESS_NAME : F_OTHER;
    default: return F_OTHER;
    }
#undef IS
}

/* Whether member i goes out as the app wrote it: the identity fields are
 * ours to set, and a duplicate of any known field is dropped so the guest
 * sees exactly what was checked. */
static bool kept(const struct json_member *m, const enum field *kind,
                 const struct json_member *const *f, int i, bool stamp)
{
    if (kind[i] == F_EVENT_ID || kind[i] == F_TIMESTAMP)
        return false;
    if (stamp && (kind[i] == F_PID || kind[i] == F_UID || kind[i] == F_CLAIMED_PID))
        return false;
    if (kind[i] == F_PROCESS_VER && m[i].kind == JSON_NULL)
        return false;                              /* written as "unknown" */
    return kind[i] == F_OTHER || &m[i] == f[kind[i]];
}

/* "key":value with nothing around the colon */
static bool compact(const struct json_member *m)
{
    return m->val - (m->key - 1) == (ptrdiff_t)(m->key_len + 3);
}

/* The top-level members of an event, each classified; f[] names the last
 * of each known field (the last duplicate wins, as in cjson). n or -1. */
static int scan_members(const char *json, size_t len, struct json_member *m, enum field *kind,
                        const struct json_member **f, const char **err)
{
    int n = json_object_members(json, len, m, MAX_MEMBERS, err);
    if (n < 0)
        return -1;
    if (n > MAX_MEMBERS) {
        *err = "event has more than 64 top-level members";
        return -1;
    }
    for (int i = 0; i < n; i++) {
        kind[i] = classify(&m[i]);
        f[kind[i]] = &m[i];
    }
    return n;
}

/* digits only, at most 2^64-1 (the scanner already refused leading zeros) */
static bool timestamp_ok(const struct json_member *ts)
{
    return ts->is_uint && (ts->val_len < 20 ||
                           (ts->val_len == 20 && memcmp(ts->val, "18446744073709551615", 20) <= 0));
}

/* processName, processVer and logf: strings (or null). NULL, or the error. */
static const char *strings_bad(const struct json_member *const *f)
{
    static const struct { enum field f; const char *msg; } strings[] = {
        {F_PROCESS_NAME, "processName must be a string"},
        {F_PROCESS_VER, "processVer must be a string"},
        {F_LOGF, "logf must be a string"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        const struct json_member *x = f[strings[i].f];
        if (x && x->kind != JSON_STRING && x->kind != JSON_NULL)
            return strings[i].msg;
    }
    return NULL;
}

/* Notes, in ix (if any), that a member of the text being written begins
 * with the key whose opening quote is at offset at, key_len bytes long,
 * its value digits only or not (is_uint). */
static inline void index_note(struct json_index *ix, size_t at, size_t key_len, bool is_uint)
{
    if (!ix)
        return;
    if (key_len > UINT8_MAX)
        ix->n = JSON_INDEX_MAX + 1;            /* not indexed */
    if (ix->n < JSON_INDEX_MAX && at <= UINT16_MAX) {
        ix->key_at[ix->n] = (uint16_t)at;
        ix->key_len[ix->n] = (uint8_t)key_len;
        ix->uint_mask |= (uint16_t)(is_uint << ix->n);
    }
    if (ix->n <= JSON_INDEX_MAX)
        ix->n++;                               /* past the max: not indexed (at the end) */
}

/* The same for the app's member m, copied as it came: a key with an
 * escape, which a reader would have to decode, leaves the text without
 * an index. */
static inline void index_note_kept(struct json_index *ix, size_t at, const struct json_member *m)
{
    if (ix && m->key_escaped)
        ix->n = JSON_INDEX_MAX + 1;
    index_note(ix, at, m->key_len, m->is_uint);
}

/* The one pass both app events (pid >= 0: identity stamped) and emitted
 * events (src: the daemon's defaults for what the plugin left out) take, so
 * the two cannot drift apart in what they check or how they write it. */
static int stamp_event(const char *json, size_t len, pid_t pid, uid_t uid,
                       const struct event_source *src, struct buf *out, uint64_t *event_id,
                       const struct event_index_ask *ask, const char **err)
{
    struct json_index *ix = ask ? ask->ix : NULL;
    if (ix) {
        ix->n = ix->ident_n = 0;
        ix->uint_mask = 0;
        ix->id_first = false;
    }
    struct json_member m[MAX_MEMBERS];
    enum field kind[MAX_MEMBERS];
    const struct json_member *f[F_COUNT] = {0};
    int n = scan_members(json, len, m, kind, f, err);
    if (n < 0)
        return -1;
    const struct json_member *id = f[F_EVENT_ID];
    if (!id) {
        *err = "missing eventId";
        return -1;
    }
    if (id->kind != JSON_NUMBER || json_to_u64(id->val, id->val_len, event_id) < 0) {
        *err = "eventId must be an integer in 0..18446744073709551615";
        return -1;
    }
    const struct json_member *ts = f[F_TIMESTAMP];
    if (ts && !timestamp_ok(ts)) {                /* only checked, never read */
        *err = "timestamp must be a non-negative integer (ms since the epoch)";
        return -1;
    }
    const struct json_member *p = f[F_PID];
    int64_t claimed = 0;
    if (p && (p->kind != JSON_NUMBER || json_to_i64(p->val, p->val_len, &claimed) < 0)) {
        *err = "pid must be an integer";
        return -1;
    }
    const struct json_member *params = f[F_PARAMS];
    if (params && params->kind != JSON_OBJECT) {
        *err = "params must be an object";
        return -1;
    }
    if ((*err = strings_bad(f)))
        return -1;

    if (ix && ask->wanted && !ask->wanted(ask->ctx, *event_id))
        ix = NULL;                                /* not wanted: none, and no notes taken */
    /* every member below is written "key":value after a comma, none with
     * a key escaped unless copied from the app's: the stamped text can be
     * indexed (lib/json_index.h) as it is written */
    size_t base = out->len;
    int rc = buf_reserve(out, len + 128);
    index_note(ix, 1, 7, true);                      /* json_to_u64 took it: digits */
    if (ix)
        ix->id_first = true;
    rc |= buf_append(out, "{\"eventId\":", 11);
    rc |= buf_append(out, id->val, id->val_len);
    index_note(ix, out->len + 1 - base, 9, true);    /* timestamp_ok, or wall_ms */
    rc |= buf_append(out, ",\"timestamp\":", 13);
    if (ts)
        rc |= buf_append(out, ts->val, ts->val_len);
    else
        rc |= buf_json_u64(out, wall_ms());
    bool stamp = pid >= 0;
    if (stamp) {
        /* a connection's events all carry the same pid and uid: their text
         * is made once per change, not per event */
        static __thread struct { pid_t pid; uid_t uid; int len, uid_at; char text[48]; } ident = {.pid = -1};
        if (ident.pid != pid || ident.uid != uid) {
            ident.len = snprintf(ident.text, sizeof ident.text, ",\"pid\":%d,\"uid\":%u", (int)pid,
                                 (unsigned)uid);
            ident.uid_at = (int)(strchr(ident.text + 1, ',') - ident.text) + 1;
            ident.pid = pid;
            ident.uid = uid;
        }
        /* the app's own pid, uid and claimedPid are not kept: these
         * are all the identity the text has */
        uint8_t ident_at = ix ? ix->n : 0;
        index_note(ix, out->len + 1 - base, 3, true);
        index_note(ix, out->len + (size_t)ident.uid_at - base, 3, true);
        rc |= buf_append(out, ident.text, (size_t)ident.len);
        if (p && claimed != (int64_t)pid) {
            index_note(ix, out->len + 1 - base, 10, claimed >= 0);
            rc |= buf_append(out, ",\"claimedPid\":", 14);
            rc |= buf_json_i64(out, claimed);
        }
        if (ix) {
            ix->ident_at = ident_at;
            ix->ident_n = (uint8_t)(ix->n - ident_at);
        }
    }
    if (!params) {
        index_note(ix, out->len + 1 - base, 6, false);
        rc |= buf_append(out, ",\"params\":{}", 12);
    }
    if (src && !p) {
        index_note(ix, out->len + 1 - base, 3, src->pid >= 0);
        rc |= buf_append(out, ",\"pid\":", 7);
        rc |= buf_json_i64(out, src->pid);
    }
    if (src && !f[F_PROCESS_NAME]) {
        index_note(ix, out->len + 1 - base, 11, false);
        rc |= buf_puts(out, ",\"processName\":");
        rc |= buf_json_cstr(out, src->process_name);
    }
    if (!f[F_PROCESS_NAME] && stamp) {
        char comm[32];
        if (proc_comm(pid, comm, sizeof comm) == 0) {
            index_note(ix, out->len + 1 - base, 11, false);
            rc |= buf_puts(out, ",\"processName\":");
            rc |= buf_json_cstr(out, comm);
        }
    }
    /* DESIGN 6: a process that gives no version is "unknown", on every path;
     * only an absent one takes the source's (null was the plugin's say) */
    if (src && !f[F_PROCESS_VER]) {
        index_note(ix, out->len + 1 - base, 10, false);
        rc |= buf_puts(out, ",\"processVer\":");
        rc |= buf_json_cstr(out, src->process_ver);
    } else if (!f[F_PROCESS_VER] || f[F_PROCESS_VER]->kind == JSON_NULL) {
        index_note(ix, out->len + 1 - base, 10, false);
        rc |= buf_puts(out, ",\"processVer\":\"unknown\"");
    }
    /* every member written here has a key of its own (one of each known
     * field: kept drops the others), so only the app's own keys (F_OTHER)
     * can come twice */
    int others = 0;
    for (int i = 0; i < n; i++) {
        if (!kept(m, kind, f, i, stamp))
            continue;
        /* a member written "key":value goes out with the kept members
         * after it written the same way, as one run of the input */
        const char *from = m[i].key - 1, *to = m[i].val + m[i].val_len;
        index_note_kept(ix, out->len + 1 - base, &m[i]);
        others += kind[i] == F_OTHER;
        if (!compact(&m[i])) {
            rc |= buf_putc(out, ',');             /* spaces around the colon */
            rc |= buf_append(out, m[i].key - 1, m[i].key_len + 2);
            rc |= buf_putc(out, ':');
            rc |= buf_append(out, m[i].val, m[i].val_len);
            continue;
        }
        while (i + 1 < n && m[i + 1].key - 1 == to + 1 && compact(&m[i + 1]) &&
               kept(m, kind, f, i + 1, stamp)) {
            i++;
            to = m[i].val + m[i].val_len;
            index_note_kept(ix, out->len + 1 + (size_t)(m[i].key - 1 - from) - base, &m[i]);
            others += kind[i] == F_OTHER;
        }
        rc |= buf_putc(out, ',');
        rc |= buf_append(out, from, (size_t)(to - from));
    }
    rc |= buf_putc(out, '}');
    if (rc) {
        *err = "out of memory";
        return -1;
    }
    if (ix) {
        ix->keys_unique = others <= 1;
        if (ix->n > JSON_INDEX_MAX || out->len - base > UINT16_MAX)
            ix->n = 0;                            /* too many members, or too long, to index */
        ix->len = (uint16_t)(out->len - base);
    }
    return 0;
}

int event_json_rewritten_id(const char *json, size_t len, uint64_t *id)
{
    struct json_member m[MAX_MEMBERS];
    const char *err;
    int n = json_object_members(json, len, m, MAX_MEMBERS, &err);
    if (n < 0 || n > MAX_MEMBERS)             /* past the array: never searched */
        return -1;
    const struct json_member *idm = json_find(m, (size_t)n, "eventId");
    return idm && json_to_u64(idm->val, idm->val_len, id) == 0 ? 0 : -1;
}

int event_stamp(const char *json, size_t len, pid_t pid, uid_t uid, struct buf *out, uint64_t *event_id,
                const struct event_index_ask *ask, const char **err)
{
    return stamp_event(json, len, pid, uid, NULL, out, event_id, ask, err);
}

int event_json_emitted(const char *json, size_t len, const struct event_source *src,
                       struct buf *out, uint64_t *event_id, struct json_index *ix, const char **err)
{
    const struct event_index_ask ask = {ix, NULL, NULL};
    return stamp_event(json, len, -1, 0, src, out, event_id, &ask, err);
}

int event_json_drop_notice(struct buf *out, uint64_t timestamp, const struct event_source *src,
                           const struct drop_counts *d)
{
    int rc = buf_printf(out, "{\"eventId\":%llu,\"timestamp\":%llu,\"pid\":%lld,\"processName\":",
                        POLARIS_EV_EVENTS_DROPPED, (unsigned long long)timestamp,
                        (long long)src->pid);
    rc |= buf_json_cstr(out, src->process_name);
    rc |= buf_puts(out, ",\"processVer\":");
    rc |= buf_json_cstr(out, src->process_ver);
    /* the reason names the cause that dropped events for good; lost ones
     * alone mean the guest may have read them */
    rc |= buf_printf(out, ",\"params\":{\"dropped\":%llu,\"reason\":\"%s\",\"buffer_full\":%llu,"
                     "\"lost_with_session\":%llu,\"first_drop_ts\":%llu,\"last_drop_ts\":%llu}}",
                     (unsigned long long)(d->buffer_full + d->lost_with_session),
                     d->buffer_full ? "outbound buffer full" : "lost with the guest session (no acks)",
                     (unsigned long long)d->buffer_full, (unsigned long long)d->lost_with_session,
                     (unsigned long long)d->first_drop_ms, (unsigned long long)d->last_drop_ms);
    return rc ? -1 : 0;
}

static bool identity(enum field f)
{
    return f == F_PID || f == F_UID || f == F_CLAIMED_PID;
}

static int put_member(struct buf *out, const struct json_member *m, bool first)
{
    int rc = first ? 0 : buf_putc(out, ',');
    rc |= buf_append(out, m->key - 1, m->key_len + 2);
    rc |= buf_putc(out, ':');
    return rc | buf_append(out, m->val, m->val_len);
}

/* What event_restamp holds a returned event to. NULL, or the error. */
static const char *restamp_bad(const struct json_member *const *f)
{
    const struct json_member *ts = f[F_TIMESTAMP];
    if (!ts || !timestamp_ok(ts))
        return "timestamp must be a non-negative integer (ms since the epoch)";
    if (!f[F_PARAMS] || f[F_PARAMS]->kind != JSON_OBJECT)
        return "params must be an object";
    return strings_bad(f);
}

int event_identity_spans(const char *text, const struct json_member *m, int n,
                         struct json_span *out, int max, const struct json_member **event_id)
{
    int k = 0;
    const struct json_member *id = NULL;
    for (int i = 0; i < n && i < MAX_MEMBERS; i++) {
        enum field f = classify(&m[i]);
        if (f == F_EVENT_ID)
            id = &m[i];                        /* the last wins, as a decode keeps it */
        if (identity(f)) {
            if (k < max)
                out[k] = (struct json_span){(uint32_t)(m[i].key - text), (uint32_t)m[i].key_len,
                                             (uint32_t)(m[i].val - text), (uint32_t)m[i].val_len};
            k++;
        }
    }
    if (event_id)
        *event_id = n > MAX_MEMBERS ? NULL : id;
    return n > MAX_MEMBERS ? max + 1 : k;
}

/* Whether the identity members among m[0..n) are, in order, byte for
 * byte the original's (ident, nident): then the returned event already
 * says what the daemon stamped, where it stands. */
static bool identity_as_orig(const char *orig, const struct json_span *ident, int nident,
                             const struct json_member *m, const enum field *kind, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!identity(kind[i]))
            continue;
        if (k >= nident)
            return false;
        const struct json_span *x = &ident[k++];
        if (m[i].key_len != x->key_len || m[i].val_len != x->val_len ||
            memcmp(m[i].key, orig + x->key, x->key_len) != 0 ||
            memcmp(m[i].val, orig + x->val, x->val_len) != 0)
            return false;
    }
    return k == nident;
}

/* Appends orig's identity members (the original was stamped by us: valid,
 * its members in reach). */
static int put_identity(const char *orig, size_t olen, struct buf *out, bool first, const char **err)
{
    struct json_member o[MAX_MEMBERS];
    int no = json_object_members(orig, olen, o, MAX_MEMBERS, err);
    if (no < 0)
        return -1;
    if (no > MAX_MEMBERS)
        no = MAX_MEMBERS;
    int rc = 0;
    for (int i = 0; i < no; i++)
        if (identity(classify(&o[i]))) {
            rc |= put_member(out, &o[i], first);
            first = false;
        }
    if (rc) {
        *err = "out of memory";
        return -1;
    }
    return 0;
}

/* orig's identity spans, found by scanning it: how many (more than
 * MAX_MEMBERS when orig has more members than an event may), or -1. */
static int scan_identity(const char *orig, size_t olen, struct json_span *ident, const char **err)
{
    struct json_member o[MAX_MEMBERS];
    int no = json_object_members(orig, olen, o, MAX_MEMBERS, err);
    return no < 0 ? -1 : event_identity_spans(orig, o, no, ident, MAX_MEMBERS, NULL);
}

static int restamp(const char *orig, size_t olen, const struct json_member *m, const enum field *kind,
                   int n, size_t len, struct buf *out, const char **err)
{
    struct json_span ident[MAX_MEMBERS];
    int nident = scan_identity(orig, olen, ident, err);
    if (nident < 0)
        return -1;
    bool as_orig = nident <= MAX_MEMBERS && identity_as_orig(orig, ident, nident, m, kind, n);
    int rc = buf_reserve(out, len + 64) | buf_putc(out, '{');
    bool first = true;
    for (int i = 0; i < n; i++)
        if (as_orig || !identity(kind[i])) {
            rc |= put_member(out, &m[i], first);
            first = false;
        }
    if (rc) {
        *err = "out of memory";
        return -1;
    }
    if (!as_orig && put_identity(orig, olen, out, first, err) < 0)
        return -1;
    if (buf_putc(out, '}') < 0) {
        *err = "out of memory";
        return -1;
    }
    return 0;
}

int event_restamp(const char *orig, size_t olen, const char *json, size_t len,
                  struct buf *out, const char **err)
{
    struct json_member m[MAX_MEMBERS];
    enum field kind[MAX_MEMBERS];
    const struct json_member *f[F_COUNT] = {0};
    int n = scan_members(json, len, m, kind, f, err);
    if (n < 0)
        return -1;
    if ((*err = restamp_bad(f)))
        return -1;
    return restamp(orig, olen, m, kind, n, len, out, err);
}

enum event_key_role event_key_role(const char *key, size_t len)
{
    struct json_member m = {.key = key, .key_len = len};
    switch (classify(&m)) {
    case F_OTHER:
        return EVENT_KEY_OTHER;
    case F_PARAMS:
        return EVENT_KEY_PARAMS;
    case F_EVENT_ID:
        return EVENT_KEY_EVENT_ID;
    default:
        return EVENT_KEY_CHECKED;
    }
}

int event_restamp_members(const char *orig, size_t olen, const struct json_span *ident, int nident,
                          const struct json_member *m, int n, struct buf *json, const char **err)
{
    if (n > MAX_MEMBERS) {
        *err = "event has more than 64 top-level members";
        return -1;
    }
    enum field kind[MAX_MEMBERS];
    const struct json_member *f[F_COUNT] = {0};
    bool ours = false;
    for (int i = 0; i < n; i++) {
        kind[i] = classify(&m[i]);
        f[kind[i]] = &m[i];
        ours |= identity(kind[i]);
    }
    if ((*err = restamp_bad(f)))
        return -1;
    struct json_span own[MAX_MEMBERS];
    if (nident < 0) {
        int k = scan_identity(orig, olen, own, err);
        if (k < 0)
            return -1;
        if (k <= MAX_MEMBERS) {
            ident = own;
            nident = k;
        }
    }
    /* the usual case: a strategy that left pid and uid alone (nothing to
     * move: the members stay where they are) */
    if (nident >= 0 && identity_as_orig(orig, ident, nident, m, kind, n))
        return 0;
    /* in place: the returned identity members taken out (what is kept
     * only moves toward the start), orig's put in before the close; the
     * members are in text order and written "key":value, as the encoder
     * writes them */
    char *w = json->p + 1;
    for (int i = 0; i < n; i++) {
        if (ours && identity(kind[i]))
            continue;
        if (w != json->p + 1)
            *w++ = ',';
        size_t span = (size_t)(m[i].val + m[i].val_len - (m[i].key - 1));
        memmove(w, m[i].key - 1, span);
        w += span;
    }
    bool first = w == json->p + 1;
    json->len = (size_t)(w - json->p);
    if (nident < 0) {
        if (put_identity(orig, olen, json, first, err) < 0)
            return -1;
    } else {
        int rc = 0;
        for (int i = 0; i < nident; i++) {
            const struct json_span *x = &ident[i];
            if (!first)
                rc |= buf_putc(json, ',');
            first = false;
            rc |= buf_append(json, orig + x->key - 1, x->key_len + 2);
            rc |= buf_putc(json, ':');
            rc |= buf_append(json, orig + x->val, x->val_len);
        }
        if (rc) {
            *err = "out of memory";
            return -1;
        }
    }
    if (buf_putc(json, '}') < 0) {
        *err = "out of memory";
        return -1;
    }
    return 0;
}
