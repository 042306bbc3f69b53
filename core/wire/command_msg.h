/* command_msg.h - CommandRequest / CommandResult JSON (DESIGN 3.1, 3.3). */
#ifndef POLARIS_COMMAND_MSG_H
#define POLARIS_COMMAND_MSG_H

#include <stddef.h>
#include <stdint.h>
#include "lib/buf.h"
#include <stdbool.h>

enum cmd_code {
    CMD_OK = 0,
    CMD_UNKNOWN_ACTION = -1,
    CMD_TIMEOUT = -2,
    CMD_GUEST_ABSENT = -3,
    CMD_BAD_REQUEST = -4,
    CMD_DENIED = -5,
    CMD_HANDLER_ERROR = -6,
    CMD_BUSY = -7,
};

#define CMD_ACTION_MAX 48

struct cmd_request {
    int target_guest;             /* 1: "guest", 0: "host" */
    char action[CMD_ACTION_MAX];
    const char *args;             /* JSON text of args ("{}" when absent) */
    size_t args_len;
    uint32_t timeout_ms;          /* 0 when absent */
};

/* Parses a CommandRequest. need_target: the "target" field is required (app
 * requests) rather than ignored (guest requests). Returns 0 or -1 with *err. */
int cmd_request_parse(const char *json, size_t len, int need_target,
                      struct cmd_request *r, const char **err);

/* Appends {"reqId":..,"code":..,"msg":..,"data":..}. data_json may be NULL
 * (written as {}); it must be valid JSON. */
int cmd_result_write(struct buf *out, uint32_t req_id, int code, const char *msg,
                     const char *data_json, size_t data_len);

/* Reads code/msg/data out of a CommandResult from the guest. Returns 0, or
 * -1 if it is not a CommandResult. msg points into json (quoted). */
int cmd_result_parse(const char *json, size_t len, int64_t *code,
                     const char **msg, size_t *msg_len,
                     const char **data, size_t *data_len);

const char *cmd_code_str(int code);
/* The actions the daemon answers itself (polarisctl's status, reload,
 * unload): an app may ask them, a plugin may not register them. */
bool cmd_action_reserved(const char *action);

#endif
