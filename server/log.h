/*
 * Structured logging: each line on stderr is one JSON object with a
 * timestamp, level and message plus optional key/value fields.  Callers
 * never pass token, code or secret values.  log_kv is the one API: a
 * fixed message and string fields, so nothing is formatted by hand.
 */
#ifndef FINXD_LOG_H
#define FINXD_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "debug|info|warn|error"; false when unknown. */
int log_parse_level(const char *s, enum log_level *out);

/*
 * log_kv(level, msg, key1, value1, key2, value2, ..., NULL): values are
 * strings, printed JSON-escaped.  A NULL value prints null.
 */
void log_kv(enum log_level level, const char *msg, ...)
    __attribute__((sentinel));

/*
 * Lines below LOG_WARN are held back per thread and written within
 * LOG_FLUSH_MS (log.c says when exactly); log_flush writes every thread's
 * held lines now.  It also runs at exit.
 */
#define LOG_FLUSH_MS 50
void log_flush(void);

/* Request id added to every line this thread logs; NULL clears it. */
void log_set_request_id(const char *id);

#endif
