/*
 * Clocks: the realtime clock in seconds and milliseconds, the monotonic
 * clock for durations and deadlines, absolute timeouts for
 * pthread_cond_timedwait, and RFC 3339 text.
 */
#ifndef FINXD_CLOCK_H
#define FINXD_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* CLOCK_REALTIME in seconds since the epoch. */
int64_t now_unix(void);
/* CLOCK_REALTIME in milliseconds since the epoch. */
int64_t now_unix_ms(void);
/* CLOCK_MONOTONIC in milliseconds: for durations, never for dates. */
int64_t mono_ms(void);
/* CLOCK_REALTIME ms from now, for pthread_cond_timedwait. */
struct timespec realtime_after_ms(int64_t ms);
/* RFC 3339 UTC text ("2026-11-26T16:20:09Z") for t (caller frees). */
char *rfc3339(int64_t t);
/*
 * True when s is a date PostgreSQL takes as it is: YYYY-MM-DD (a day of
 * the calendar, year 0001 or later; *is_date set) or an RFC 3339
 * timestamp with a real time, at most nine fractional digits and "Z" or
 * an offset within PostgreSQL's +-15:59.  "2026-02-30", "0000-01-01" and
 * "+99:99" are refused here rather than by the database.
 */
bool date_text_valid(const char *s, bool *is_date);

#endif
