/* event_json.h - an event's JSON shape, written in one place: an app's
 * EVENT_REPORT validated and stamped with the sender's real identity
 * (DESIGN 3.1), a strategy's result restamped, an event a plugin emits, and
 * the daemon's drop notice (event 1000001, DESIGN 4). */
#ifndef POLARIS_EVENT_JSON_H
#define POLARIS_EVENT_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "lib/buf.h"
#include "wire/json_scan.h"          /* struct json_span: where a member is */

/* Writes the stamped event JSON to out. The original members are copied
 * byte for byte (eventId is never converted), except: pid is replaced by the
 * real pid (a differing claim kept as claimedPid), uid is set to the real
 * uid, timestamp is added when absent, params {} when absent, processName
 * from /proc when absent. pid < 0 validates and normalises without stamping
 * identity (events a trusted plugin emits about other processes).
 * ix (or NULL) gets the written text's index (lib/json_index.h; n = 0
 * when it cannot have one, or when wanted, if given, says an event with
 * this id needs none: the ingress asks its routing index). Returns 0, or
 * -1 with *err naming the problem. */
struct json_index;
struct event_index_ask {
    struct json_index *ix;
    bool (*wanted)(void *ctx, uint64_t event_id);
    void *ctx;
};
int event_stamp(const char *json, size_t len, pid_t pid, uid_t uid, struct buf *out, uint64_t *event_id,
                const struct event_index_ask *ask, const char **err);

/* For an event a strategy returned (json, encoded by the daemon) in place of
 * orig (an event already stamped): checks it as event_stamp checks an app's
 * (params an object, timestamp a non-negative integer, processName,
 * processVer and logf strings) and writes it to out with the identity the
 * daemon stamped (pid, uid, claimedPid) taken from orig, whatever the
 * strategy did to them: where the returned event's identity members are,
 * in order, byte for byte orig's, they stay where they stand; else they
 * are taken out and orig's put in before the close. Returns 0, or -1 with
 * *err naming the problem.
 * The daemon calls event_restamp_members (below); this general form is what
 * test_event_json holds that one to, case by case. */
int event_restamp(const char *orig, size_t olen, const char *json, size_t len,
                  struct buf *out, const char **err);

/* An event has at most this many top-level members. */
#define EVENT_MEMBERS_MAX 64

/* The identity members (pid, uid, claimedPid) among the top-level members
 * m[0..n) of text (as json_object_members finds them): up to max of them
 * into out. Returns how many there are; more than max (then out is not
 * all of them) also when n is more than an event may have. With event_id,
 * also the member a decode would take the eventId from (the last, keys
 * decoded), or NULL (none, or n more than an event may have). */
struct json_member;
int event_identity_spans(const char *text, const struct json_member *m, int n,
                         struct json_span *out, int max, const struct json_member **event_id);

/* The same as event_restamp for a returned event whose n (>= 1) top-level
 * members the caller has in hand (m, as json_object_members would find
 * them in json, a valid JSON object the caller wrote itself), so it is not
 * scanned again; nor is orig when its identity members are given (ident,
 * nident: event_identity_spans of orig; nident < 0: not known). The result
 * replaces json's text (made in place). */
int event_restamp_members(const char *orig, size_t olen, const struct json_span *ident, int nident,
                          const struct json_member *m, int n, struct buf *json, const char **err);

/* What the daemon makes of a top-level key of an event (plain, without
 * escapes): one of the members it stamps or checks (timestamp, pid, uid,
 * claimedPid, processName, processVer, logf), params, the eventId, or
 * any other, which it passes as it is. */
enum event_key_role { EVENT_KEY_OTHER, EVENT_KEY_PARAMS, EVENT_KEY_EVENT_ID, EVENT_KEY_CHECKED };
enum event_key_role event_key_role(const char *key, size_t len);

/* The eventId of an event a plugin host returned in place of one it was
 * given (its reencode made and checked it; the daemon, which treats the
 * host as hostile, checks only this): json must be one JSON object of at
 * most EVENT_MEMBERS_MAX members whose "eventId" (the last, keys decoded)
 * is an integer in 0..2^64-1. Returns 0 with *id, or -1. */
int event_json_rewritten_id(const char *json, size_t len, uint64_t *id);

/* Who an event comes from when the daemon is its source: the values an
 * emitted event takes for what the plugin left out, and the drop notice's. */
struct event_source {
    int64_t pid;
    const char *process_name;     /* not NULL */
    const char *process_ver;      /* not NULL */
};

/* For an event a plugin emits (polaris.emit; json: its table as encoded):
 * checked and written as event_stamp does with pid < 0 (no identity
 * stamped: a trusted plugin may speak for another process), and pid,
 * processName and processVer, when absent, are src's. A processVer of null
 * stays the plugin's choice and is written "unknown", as for an app. The
 * defaults follow eventId, timestamp (and params {} when absent), then the
 * plugin's members as it wrote them. Returns 0, or -1 with *err naming the
 * problem. */
int event_json_emitted(const char *json, size_t len, const struct event_source *src,
                       struct buf *out, uint64_t *event_id, struct json_index *ix, const char **err);

/* What a drop notice reports: events dropped for good while the guest was
 * away (buffer_full) and events a session without acks may not have
 * delivered (lost_with_session), with the first and last drop's wall time. */
struct drop_counts {
    uint64_t buffer_full;
    uint64_t lost_with_session;
    uint64_t first_drop_ms;
    uint64_t last_drop_ms;
};

/* Appends the drop notice (eventId POLARIS_EV_EVENTS_DROPPED) at timestamp,
 * from src, to out: params dropped (the sum), reason (the buffer's when any
 * were dropped for good, else the session's), buffer_full,
 * lost_with_session, first_drop_ts, last_drop_ts. 0, or -1 out of memory. */
int event_json_drop_notice(struct buf *out, uint64_t timestamp, const struct event_source *src,
                           const struct drop_counts *d);

/* Milliseconds since the epoch: an event's timestamp. */
uint64_t wall_ms(void);

#endif
