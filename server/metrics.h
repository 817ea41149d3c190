/*
 * Prometheus metrics kept in process memory (each finxd process exposes
 * its own; Prometheus sums them).  Label values must never be secrets.
 */
#ifndef FINXD_METRICS_H
#define FINXD_METRICS_H

#include <stdint.h>

#include "buf.h"

/* Count one HTTP request and its duration. */
void metrics_http(const char *route, int status, int64_t ms);
/* Count one callback outcome (connected, cancelled, failed, rejected). */
void metrics_callback(const char *outcome);
/* Count one finX call and its duration. */
void metrics_finx(const char *endpoint, const char *outcome, int64_t ms);
/* Count one refresh outcome. */
void metrics_refresh(const char *outcome);
/* One webhook attempt: its outcome and duration. */
void metrics_webhook(const char *outcome, int64_t ms);

/* Render the counters and histograms in text format 0.0.4. */
void metrics_render(struct buf *out);
/* Append one live gauge or counter (type "gauge" or "counter"). */
void metrics_gauge(struct buf *out, const char *name, const char *help,
    const char *type, long value);

#endif
