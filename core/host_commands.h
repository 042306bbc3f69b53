/* host_commands.h - host command handlers run on the worker pool. Until the
 * Lua plugin runtime exists these are built in; the table is the one place
 * that says which actions the host offers. */
#ifndef POLARIS_HOST_COMMANDS_H
#define POLARIS_HOST_COMMANDS_H

#include <stddef.h>
#include "buf.h"

struct daemon;

/* A handler writes its data object (JSON) to data and may set msg; it
 * returns the result code (0 success, >0 its own failure code). */
typedef int (*host_cmd_fn)(struct daemon *d, const char *args, size_t args_len,
                           struct buf *data, char *msg, size_t msgcap);

host_cmd_fn host_command_find(const char *action);
/* Appends the offered action names as a JSON array. */
int host_command_list(struct buf *out);

#endif
