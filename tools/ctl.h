/* ctl.h - polarisctl's subcommands, one group per tools/ctl_*.c: what
 * polarisctl.c dispatches to. What they share is in ctl_common.h. */
#ifndef POLARIS_CTL_H
#define POLARIS_CTL_H

#include "ctl_common.h"

/* status [--json], reload, unload PLUGIN_ID, call ACTION [JSON]: cmd is
 * which, argv what follows it. */
int ctl_cmd_control(const char *sock, const char *cmd, int argc, char **argv);
int ctl_cmd_plugins(const char *sock, int argc, char **argv);
int ctl_cmd_metrics(const char *sock, int argc, char **argv);
int ctl_cmd_send(const char *sock, int argc, char **argv);
int ctl_cmd_guest(int argc, char **argv);
int ctl_cmd_plugin_test(int argc, char **argv);
int ctl_cmd_keygen(int argc, char **argv);
int ctl_cmd_sign(int argc, char **argv);
int ctl_cmd_verify(int argc, char **argv);

#endif
