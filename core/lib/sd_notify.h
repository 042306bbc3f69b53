/* sd_notify.h - the systemd notify protocol (one datagram), without libsystemd. */
#ifndef POLARIS_SD_NOTIFY_H
#define POLARIS_SD_NOTIFY_H

/* Sends state (e.g. "READY=1") to $NOTIFY_SOCKET. Returns 1 if sent, 0 when
 * not running under a notify socket, -1 on error. */
int sd_notify_send(const char *state);

#endif
