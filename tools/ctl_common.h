/* ctl_common.h - what polarisctl's subcommands share: the control request
 * over the daemon's socket, result parsing, and small JSON accessors. The
 * subcommands (tools/ctl_*.c) use these; nothing here calls a subcommand. */
#ifndef POLARIS_CTL_COMMON_H
#define POLARIS_CTL_COMMON_H

#include "lib/buf.h"
#include "wire/json_scan.h"
#include <stdbool.h>
#include <stddef.h>

/* Exit status: scripts can trust these. */
enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2, CTL_UNREACHABLE = 3,
       CTL_PLUGIN_ERROR = 4 };    /* status, plugins: answered, but a plugin is in Error */

struct ctl_result {
    long long code;
    char msg[512];
    const char *data;             /* points into the answer buffer */
    size_t data_len;
};

/* Connects to a Unix stream socket; -1 with a message on stderr. */
int ctl_connect_unix(const char *path);
/* Writes all of p to fd (MSG_NOSIGNAL); 0, or -1 with a message on stderr. */
int ctl_send_all(int fd, const void *p, size_t n);
/* Sends a CMD_REQ for action on fd and waits for its CMD_RESP; 0 or -1. */
int ctl_roundtrip(int fd, const char *action, const char *args, struct buf *out);
/* Connect, roundtrip, parse: returns CTL_OK (r filled, code may be != 0),
 * CTL_UNREACHABLE or CTL_FAILED (malformed answer). */
int ctl_call(const char *sock, const char *action, const char *args, struct buf *out,
             struct ctl_result *r);

/* A member of the object json[0..len) by key; false when absent. */
bool ctl_get(const char *json, size_t len, const char *key, struct json_member *out);
/* Decodes a string member (or copies any other value's text) into out. */
void ctl_text(const struct json_member *m, char *out, size_t cap);
/* A number member as double (0 when absent or not a number). */
double ctl_num(const char *json, size_t len, const char *key);
long long ctl_now_ms(void);       /* CLOCK_MONOTONIC */

#endif
