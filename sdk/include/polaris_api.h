/* polaris_api.h - report events to polarisd (libpolaris_client).
 *
 * Every function is safe to call from any thread, never blocks on I/O and
 * never raises a signal: events go into a bounded in-process queue and a
 * background thread (started on first use) sends them. When the queue is
 * full, or the daemon is absent or stalled, polaris_event_commit() drops the
 * event and returns a negative value; the drop is counted and reported to
 * the daemon (as event 1000002) once it is reachable again.
 *
 * A NULL event handle is accepted everywhere as a no-op, so an allocation
 * failure in polaris_event_create() needs no special handling.
 *
 * The socket is /run/polaris/polaris.sock unless $POLARIS_SOCKET is set
 * (read once, at first use). After fork() a child that uses the SDK gets
 * its own queue and sender thread and reports its own pid.
 *
 * Link with -lpolaris_client (pkg-config polaris-client). */
#ifndef POLARIS_API_H
#define POLARIS_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct polaris_event polaris_event_t;

/* Starts an event. process_name NULL: /proc/self/comm; process_ver NULL:
 * "unknown". Returns NULL only when memory is short. */
polaris_event_t *polaris_event_create(uint64_t event_id, const char *process_name,
                                      const char *process_ver);

/* Adds params[key] = value. Strings are escaped; invalid UTF-8 becomes
 * U+FFFD. Numbers are written without locale influence; non-finite doubles
 * become null. Returns 0, or -1 (bad argument, out of memory). */
int polaris_event_add_string(polaris_event_t *ev, const char *key, const char *value);
int polaris_event_add_int(polaris_event_t *ev, const char *key, int32_t value);
int polaris_event_add_long(polaris_event_t *ev, const char *key, int64_t value);
int polaris_event_add_double(polaris_event_t *ev, const char *key, double value);
int polaris_event_add_bool(polaris_event_t *ev, const char *key, bool value);

/* Queues the event and frees the handle (also on failure). Returns 0 when
 * queued, < 0 when dropped (queue full: -2, invalid: -1, e.g. over 4 MiB).
 * The JSON is made on the library's own thread; an event whose escaping
 * alone pushes it over 4 MiB is dropped there and counted like a full
 * queue (event 1000002). */
int polaris_event_commit(polaris_event_t *ev);

/* Frees the handle without sending. */
void polaris_event_cancel(polaris_event_t *ev);

/* Queues a complete PolarisEvent JSON object (it must be valid JSON with an
 * integer eventId). Returns 0, or < 0 when invalid (-1) or dropped (-2). */
int polaris_report_raw(const char *json, size_t len);

/* Sends what it can within a short bound (500 ms), stops the sender thread
 * and frees everything. Safe to call twice and without any earlier use;
 * a later call to the SDK starts it again. */
void polaris_deinit(void);

#ifdef __cplusplus
}
#endif

#endif
