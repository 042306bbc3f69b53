/* host_commands.c - the built-in host actions. */
#include "host_commands.h"
#include "daemon.h"
#include "event_stamp.h"

#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static int cmd_ping(struct daemon *d, const char *args, size_t args_len,
                    struct buf *data, char *msg, size_t msgcap)
{
    (void)args; (void)args_len; (void)msg; (void)msgcap;
    uint64_t up_ms = (mono_ns() - d->started_mono_ns) / 1000000u;
    int rc = buf_printf(data, "{\"pong\":true,\"time\":%llu,\"uptime_ms\":%llu,\"pid\":%d,\"version\":",
                        (unsigned long long)wall_ms(), (unsigned long long)up_ms, (int)getpid());
    rc |= buf_json_cstr(data, polaris_version);
    rc |= buf_putc(data, '}');
    return rc ? -1 : 0;
}

static int cmd_list_actions(struct daemon *d, const char *args, size_t args_len,
                            struct buf *data, char *msg, size_t msgcap)
{
    (void)d; (void)args; (void)args_len; (void)msg; (void)msgcap;
    int rc = buf_puts(data, "{\"actions\":");
    rc |= host_command_list(data);
    rc |= buf_putc(data, '}');
    return rc ? -1 : 0;
}

static const struct {
    const char *name;
    host_cmd_fn fn;
} commands[] = {
    {"ping", cmd_ping},
    {"list_actions", cmd_list_actions},
};

host_cmd_fn host_command_find(const char *action)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, action) == 0)
            return commands[i].fn;
    return NULL;
}

int host_command_list(struct buf *out)
{
    int rc = buf_putc(out, '[');
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (i)
            rc |= buf_putc(out, ',');
        rc |= buf_json_cstr(out, commands[i].name);
    }
    return rc | buf_putc(out, ']');
}
