/* command_msg.c - parsing command requests and writing results. */
#include "wire/command_msg.h"
#include "wire/json_scan.h"

#include <string.h>

static int action_ok(const char *a)
{
    if (!*a)
        return 0;
    for (; *a; a++) {
        char c = *a;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

int cmd_request_parse(const char *json, size_t len, int need_target,
                      struct cmd_request *r, const char **err)
{
    struct json_member m[16];
    int n = json_object_members(json, len, m, 16, err);
    if (n < 0)
        return -1;
    if (n > 16) {
        *err = "too many members in command request";
        return -1;
    }
    memset(r, 0, sizeof *r);
    const struct json_member *t = json_find(m, (size_t)n, "target");
    if (need_target) {
        char tv[16];
        if (!t || t->kind != JSON_STRING || json_string_decode(t->val, t->val_len, tv, sizeof tv) < 0 ||
            (strcmp(tv, "guest") != 0 && strcmp(tv, "host") != 0)) {
            *err = "target must be \"guest\" or \"host\"";
            return -1;
        }
        r->target_guest = strcmp(tv, "guest") == 0;
    }
    const struct json_member *a = json_find(m, (size_t)n, "action");
    if (!a || a->kind != JSON_STRING ||
        json_string_decode(a->val, a->val_len, r->action, sizeof r->action) < 0 ||
        !action_ok(r->action)) {
        *err = "action must be a string of letters, digits, '_', '-', '.' (at most 47)";
        return -1;
    }
    const struct json_member *args = json_find(m, (size_t)n, "args");
    if (args && args->kind != JSON_OBJECT && args->kind != JSON_NULL) {
        *err = "args must be an object";
        return -1;
    }
    if (args && args->kind == JSON_OBJECT) {
        r->args = args->val;
        r->args_len = args->val_len;
    } else {
        r->args = "{}";
        r->args_len = 2;
    }
    const struct json_member *to = json_find(m, (size_t)n, "timeout");
    if (to) {
        uint64_t v;
        if (to->kind != JSON_NUMBER || json_to_u64(to->val, to->val_len, &v) < 0 || v > UINT32_MAX) {
            *err = "timeout must be a non-negative integer (ms)";
            return -1;
        }
        r->timeout_ms = (uint32_t)v;
    }
    return 0;
}

int cmd_result_write(struct buf *out, uint32_t req_id, int code, const char *msg,
                     const char *data_json, size_t data_len)
{
    int rc = buf_printf(out, "{\"reqId\":%u,\"code\":%d,\"msg\":", req_id, code);
    rc |= buf_json_cstr(out, msg ? msg : cmd_code_str(code));
    rc |= buf_puts(out, ",\"data\":");
    if (data_json && data_len)
        rc |= buf_append(out, data_json, data_len);
    else
        rc |= buf_puts(out, "{}");
    rc |= buf_putc(out, '}');
    return rc ? -1 : 0;
}

int cmd_result_parse(const char *json, size_t len, int64_t *code,
                     const char **msg, size_t *msg_len,
                     const char **data, size_t *data_len)
{
    struct json_member m[16];
    const char *err;
    int n = json_object_members(json, len, m, 16, &err);
    if (n < 0 || n > 16)
        return -1;
    const struct json_member *c = json_find(m, (size_t)n, "code");
    if (!c || c->kind != JSON_NUMBER || json_to_i64(c->val, c->val_len, code) < 0)
        return -1;
    const struct json_member *s = json_find(m, (size_t)n, "msg");
    *msg = s && s->kind == JSON_STRING ? s->val : NULL;
    *msg_len = *msg ? s->val_len : 0;
    const struct json_member *d = json_find(m, (size_t)n, "data");
    *data = d && d->kind != JSON_NULL ? d->val : NULL;
    *data_len = *data ? d->val_len : 0;
    return 0;
}

const char *cmd_code_str(int code)
{
    switch (code) {
    case CMD_OK: return "Success";
    case CMD_UNKNOWN_ACTION: return "unknown action";
    case CMD_TIMEOUT: return "timeout";
    case CMD_GUEST_ABSENT: return "guest not connected";
    case CMD_BAD_REQUEST: return "bad request";
    case CMD_DENIED: return "permission denied";
    case CMD_HANDLER_ERROR: return "handler error";
    case CMD_BUSY: return "busy: too many commands in flight";
    default: return code > 0 ? "action failed" : "error";
    }
}

bool cmd_action_reserved(const char *action)
{
    static const char *const reserved[] = {"status", "reload", "unload"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(action, reserved[i]) == 0)
            return true;
    return false;
}
