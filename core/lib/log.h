/* log.h - stderr logging, journald-friendly. */
#ifndef POLARIS_LOG_H
#define POLARIS_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

void log_set_level(enum log_level l);
enum log_level log_get_level(void);
int  log_level_parse(const char *s, enum log_level *out);
/* Lines per call site per second before repeats are held back (0: no limit). */
void log_set_burst(unsigned per_second);
void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, rate-limited under the caller's key instead of fmt. */
void log_msg_site(const void *site, enum log_level l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Hands every admitted message to sink instead of stderr (a plugin host
 * sends its lines to the daemon). */
void log_set_sink(void (*sink)(enum log_level, const char *msg, size_t len));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
