/* polarisctl.c - the operator's command-line client for polarisd: global
 * options, usage, and the dispatch to a subcommand. The subcommands live in
 * tools/ctl_*.c (declared in ctl.h); what they share, in ctl_common.c.
 *
 * Uses: the ctl_cmd_* entry points, version. */
#include "ctl.h"
#include "lib/version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SOCKET "/run/polaris/polaris.sock"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: polarisctl [--socket PATH] COMMAND [ARGS]\n"
        "       polarisctl --version | --help | COMMAND --help\n"
        "\n"
        "talking to a running polarisd:\n"
        "  status [--json]              counters, guest link, plugins\n"
        "  plugins                      one line per plugin: version, state, host (pid, state,\n"
        "                               restarts) when out of process, memory, cpu, errors\n"
        "  reload                       re-read the config and plugins (like SIGHUP); exit 1 if any failed\n"
        "  unload PLUGIN_ID             take one plugin out until the next reload\n"
        "  call ACTION [JSON]           run a host command and print its result\n"
        "  send EVENT_ID [KEY=VALUE | KEY:=JSON ...]\n"
        "  send --json FILE|-           report an event as an app would\n"
        "  metrics                      every counter and gauge, Prometheus text format\n"
        "\n"
        "playing the guest:\n"
        "  guest URI [--cmd 'ACTION [JSON]']... [--answer JSON] [--count N] [--timeout MS]\n"
        "                               connect to the daemon's guest link (unix:PATH,\n"
        "                               tcp://HOST:PORT, vsock://CID:PORT), print every event\n"
        "                               as a line of JSON, answer its commands, send yours\n"
        "                               (--cmd, or typed one per line on stdin)\n"
        "\n"
        "working on plugins (no daemon needed):\n"
        "  plugin-test PLUGIN EVENTS.json [-c CONF] [--polarisd PATH]\n"
        "                               run one plugin in the real sandbox against sample\n"
        "                               events; print what it would forward\n"
        "  keygen KEYFILE               make an Ed25519 key pair (KEYFILE, KEYFILE.pub)\n"
        "  sign KEYFILE PLUGIN.json     sign a plugin (manifest + Lua file) -> PLUGIN.sig\n"
        "  verify PUBFILE PLUGIN.json   check a plugin's signature\n"
        "\n"
        "The socket is --socket, else $POLARIS_SOCKET, else " DEFAULT_SOCKET ".\n"
        "Exit status: 0 success, 1 the daemon (or the check) said no, 2 usage error,\n"
        "3 the daemon could not be reached, 4 (status, plugins) a plugin is in Error.\n");
}

int main(int argc, char **argv)
{
    const char *sock = getenv("POLARIS_SOCKET");
    if (!sock || !*sock)
        sock = DEFAULT_SOCKET;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            sock = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return CTL_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("polarisctl %s (git %s)\n", polaris_version, polaris_git_rev);
            return CTL_OK;
        } else {
            fprintf(stderr, "polarisctl: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return CTL_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CTL_USAGE;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **rv = argv + i;
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CTL_OK;
    }
    /* "polarisctl reload --help" asks, it does not reload: checked before
     * any subcommand sees (or acts on) its arguments */
    for (int k = 0; k < rest; k++)
        if (strcmp(rv[k], "--help") == 0 || strcmp(rv[k], "-h") == 0) {
            usage(stdout);
            return CTL_OK;
        }
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "reload") == 0 || strcmp(cmd, "unload") == 0 ||
        strcmp(cmd, "call") == 0)
        return ctl_cmd_control(sock, cmd, rest, rv);
    if (strcmp(cmd, "plugins") == 0)
        return ctl_cmd_plugins(sock, rest, rv);
    if (strcmp(cmd, "metrics") == 0)
        return ctl_cmd_metrics(sock, rest, rv);
    if (strcmp(cmd, "send") == 0)
        return ctl_cmd_send(sock, rest, rv);
    if (strcmp(cmd, "guest") == 0)
        return ctl_cmd_guest(rest, rv);
    if (strcmp(cmd, "plugin-test") == 0)
        return ctl_cmd_plugin_test(rest, rv);
    if (strcmp(cmd, "keygen") == 0)
        return ctl_cmd_keygen(rest, rv);
    if (strcmp(cmd, "sign") == 0)
        return ctl_cmd_sign(rest, rv);
    if (strcmp(cmd, "verify") == 0)
        return ctl_cmd_verify(rest, rv);
    fprintf(stderr, "polarisctl: unknown command '%s'\n", cmd);
    usage(stderr);
    return CTL_USAGE;
}
