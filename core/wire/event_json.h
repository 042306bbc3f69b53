/* event_json.h - validate an EVENT_REPORT payload and stamp it with the
 * sender's real identity (DESIGN 3.1). */
#ifndef POLARIS_EVENT_JSON_H
#define POLARIS_EVENT_JSON_H

#include <stdint.h>
#include <sys/types.h>
#include "lib/buf.h"

/* Writes the stamped event JSON to out. The original members are copied
 * byte for byte (eventId is never converted), except: pid is replaced by the
 * real pid (a differing claim kept as claimedPid), uid is set to the real
 * uid, timestamp is added when absent, params {} when absent, processName
 * from /proc when absent. pid < 0 validates and normalises without stamping
 * identity (events a trusted plugin emits about other processes).
 * Returns 0, or -1 with *err naming the problem. */
int event_stamp(const char *json, size_t len, pid_t pid, uid_t uid,
                struct buf *out, uint64_t *event_id, const char **err);

/* For an event a strategy returned (json, encoded by the daemon) in place of
 * orig (an event already stamped): checks it as event_stamp checks an app's
 * (params an object, timestamp a non-negative integer, processName,
 * processVer and logf strings) and writes it to out with the identity the
 * daemon stamped (pid, uid, claimedPid) taken from orig, whatever the
 * strategy did to them. Returns 0, or -1 with *err naming the problem. */
int event_restamp(const char *orig, size_t olen, const char *json, size_t len,
                  struct buf *out, const char **err);

uint64_t wall_ms(void);

#endif
