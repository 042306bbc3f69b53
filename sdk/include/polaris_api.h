/* polaris_api.h - report events to polarisd (libpolaris_client).
 *
 * The original Polaris C API (DESIGN 6): the functions below keep the
 * original header's exact signatures, so an app written against it
 * compiles and links unchanged.
 *
 * Every function is safe to call from any thread, never blocks on I/O and
 * never raises a signal: events go into a bounded in-process queue and a
 * background thread (started on first use: lazy initialisation) sends
 * them. When the queue is full, or the daemon is absent or stalled,
 * polaris_event_commit() drops the event and returns a negative value; the
 * drop is counted and reported to the daemon (as event 1000002) once it is
 * reachable again.
 *
 * A NULL handle is accepted everywhere as a no-op, so an allocation failure
 * in polaris_event_create() needs no special handling. An add that fails
 * (no memory, NULL key) spoils the event: its commit then returns -1, so
 * a half-built event is never sent.
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

/* Opaque: never dereferenced or freed by the caller. */
typedef struct PolarisEventBuilderInternal* PolarisEventHandle;
/* The same type under the name earlier versions of this header used. */
typedef struct PolarisEventBuilderInternal polaris_event_t;

/* Starts an event. process_name NULL: /proc/self/comm; process_ver NULL:
 * "unknown". Returns NULL only when memory is short. The first call in a
 * process starts the SDK. */
PolarisEventHandle polaris_event_create(uint64_t event_id, const char* process_name,
                                        const char* process_ver);

/* Adds params[key] = value. Strings are escaped; invalid UTF-8 becomes
 * U+FFFD; a NULL value becomes null. Numbers are written without locale
 * influence; non-finite doubles become null. */
void polaris_event_add_string(PolarisEventHandle handle, const char* key, const char* value);
void polaris_event_add_int(PolarisEventHandle handle, const char* key, int32_t value);
void polaris_event_add_long(PolarisEventHandle handle, const char* key, int64_t value);
void polaris_event_add_double(PolarisEventHandle handle, const char* key, double value);
void polaris_event_add_bool(PolarisEventHandle handle, const char* key, bool value);

/* Queues the event and frees the handle (also on failure): the handle must
 * not be used afterwards. log_path (NULL or "" for none) becomes the
 * event's "logf", the attachment the guest is told about. Returns 0 when
 * queued, < 0 when dropped: -2 queue full (or the daemon absent and the
 * queue full), -1 invalid (a NULL handle, an add that failed, over 4 MiB).
 * The JSON is made on the library's own thread; an event whose escaping
 * alone pushes it over 4 MiB is dropped there and counted like a full
 * queue (event 1000002). */
int  polaris_event_commit(PolarisEventHandle handle, const char* log_path); /* 0 queued, <0 dropped */

/* Frees the handle without sending. */
void polaris_event_cancel(PolarisEventHandle handle);

/* Reports an event whose params the caller already has as JSON text:
 * json_body is the params object (NULL: {}), e.g.
 * "{\"cpu\": 90, \"detail\": {\"core\": 1}}". process_name, process_ver
 * and log_path as for create and commit. Returns 0 when queued, -1 when
 * json_body is not a valid JSON object or the event would exceed 4 MiB,
 * -2 when dropped. */
int  polaris_report_raw(uint64_t event_id, const char* process_name, const char* process_ver,
                        const char* json_body, const char* log_path);      /* json_body: the params object */

/* Sends what it can within a short bound (500 ms), stops the sender thread
 * and frees everything. Safe to call twice and without any earlier use;
 * a later call to the SDK starts it again. */
void polaris_deinit(void);

/* ---- additions to the original API ---- */

/* Queues a complete PolarisEvent JSON object, len bytes (valid JSON with an
 * integer eventId; the caller writes every member, timestamp included).
 * Returns 0, or < 0 when invalid (-1) or dropped (-2). */
int  polaris_report_json(const char* json, size_t len);

#ifdef __cplusplus
}
#endif

#endif
