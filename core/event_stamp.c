/* event_stamp.c - the ingress's one pass over an app's event: validate,
 * stamp identity, splice the rest through unchanged. */
#include "event_stamp.h"
#include "json_scan.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_MEMBERS 64

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

int event_stamp(const char *json, size_t len, pid_t pid, uid_t uid,
                struct buf *out, uint64_t *event_id, const char **err)
{
    struct json_member m[MAX_MEMBERS];
    int n = json_object_members(json, len, m, MAX_MEMBERS, err);
    if (n < 0)
        return -1;
    if (n > MAX_MEMBERS) {
        *err = "event has more than 64 top-level members";
        return -1;
    }
    const struct json_member *id = json_find(m, (size_t)n, "eventId");
    if (!id) {
        *err = "missing eventId";
        return -1;
    }
    if (id->kind != JSON_NUMBER || json_to_u64(id->val, id->val_len, event_id) < 0) {
        *err = "eventId must be an integer in 0..18446744073709551615";
        return -1;
    }
    const struct json_member *ts = json_find(m, (size_t)n, "timestamp");
    uint64_t ts_val;
    if (ts && (ts->kind != JSON_NUMBER || json_to_u64(ts->val, ts->val_len, &ts_val) < 0)) {
        *err = "timestamp must be a non-negative integer (ms since the epoch)";
        return -1;
    }
    const struct json_member *p = json_find(m, (size_t)n, "pid");
    int64_t claimed = 0;
    if (p && (p->kind != JSON_NUMBER || json_to_i64(p->val, p->val_len, &claimed) < 0)) {
        *err = "pid must be an integer";
        return -1;
    }
    const struct json_member *params = json_find(m, (size_t)n, "params");
    if (params && params->kind != JSON_OBJECT) {
        *err = "params must be an object";
        return -1;
    }
    static const char *str_fields[] = {"processName", "processVer", "logf"};
    for (size_t i = 0; i < 3; i++) {
        const struct json_member *s = json_find(m, (size_t)n, str_fields[i]);
        if (s && s->kind != JSON_STRING && s->kind != JSON_NULL) {
            *err = i == 0 ? "processName must be a string"
                 : i == 1 ? "processVer must be a string" : "logf must be a string";
            return -1;
        }
    }

    int rc = buf_reserve(out, len + 128);
    rc |= buf_puts(out, "{\"eventId\":");
    rc |= buf_append(out, id->val, id->val_len);
    rc |= buf_puts(out, ",\"timestamp\":");
    if (ts)
        rc |= buf_append(out, ts->val, ts->val_len);
    else
        rc |= buf_json_u64(out, wall_ms());
    rc |= buf_printf(out, ",\"pid\":%d,\"uid\":%u", (int)pid, (unsigned)uid);
    if (p && claimed != (int64_t)pid)
        rc |= buf_printf(out, ",\"claimedPid\":%lld", (long long)claimed);
    if (!params)
        rc |= buf_puts(out, ",\"params\":{}");
    if (!json_find(m, (size_t)n, "processName")) {
        char comm[32];
        if (proc_comm(pid, comm, sizeof comm) == 0) {
            rc |= buf_puts(out, ",\"processName\":");
            rc |= buf_json_cstr(out, comm);
        }
    }
    for (int i = 0; i < n; i++) {
        const struct json_member *x = &m[i];
        /* the identity fields are ours to set; duplicates are dropped */
        if (json_key_is(x, "eventId") || json_key_is(x, "timestamp") || json_key_is(x, "pid") ||
            json_key_is(x, "uid") || json_key_is(x, "claimedPid"))
            continue;
        if (json_key_is(x, "params") && x != params)
            continue;
        rc |= buf_putc(out, ',');
        rc |= buf_append(out, x->key - 1, x->key_len + 2);
        rc |= buf_putc(out, ':');
        rc |= buf_append(out, x->val, x->val_len);
    }
    rc |= buf_putc(out, '}');
    if (rc) {
        *err = "out of memory";
        return -1;
    }
    return 0;
}
