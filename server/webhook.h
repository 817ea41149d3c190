/*
 * Webhook deliveries (SPEC "Events and webhooks", design in EVENTS.md):
 * events of event_log POSTed to FINXD_WEBHOOK_URL, signed as Standard
 * Webhooks 1.0, at least once, from any process, never two attempts of
 * one event at a time, with no transaction open while the endpoint
 * answers.  Also the event log's housekeeping (retention), which runs
 * with or without a URL.
 */
#ifndef FINXD_WEBHOOK_H
#define FINXD_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

struct buf;
struct config;
struct webhook_secret;

/* Start the housekeeping thread, and the delivery threads when a URL is
 * configured.  False when a thread could not start. */
bool webhook_start(const struct config *cfg);
/* Stop them; attempts in flight end within the delivery timeout, and
 * claimed events not yet attempted run out their claims. */
void webhook_stop(void);

/* Whether this process delivers events of type: a URL is configured and
 * FINXD_WEBHOOK_EVENTS names it (or is empty). */
bool webhook_delivers(const struct config *cfg, const char *type);

/* The configured URL answered 410 (as of the last housekeeping). */
bool webhook_gone(void);

/* /metrics: deliveries waiting, the oldest one's age, a gone endpoint. */
void webhook_render_gauges(struct buf *out);

/* ---- pure, for the tests ------------------------------------------- */

/*
 * The webhook-signature header value: "v1,<base64 HMAC-SHA256 of
 * id.ts.body>" for each secret, space-separated.
 */
char *webhook_signature(const struct webhook_secret *s, size_t n,
    const char *id, long ts, const char *body, size_t len);
/*
 * Seconds until the retry after attempt number attempt (from 1): 10 s
 * doubling, at most an hour, each drawn from its upper half with rnd;
 * a Retry-After of retry_after seconds (>= 0, on 429 and 503 only;
 * -1: none) instead, within 1 s to an hour.
 */
long webhook_retry_delay(long attempt, long status, long retry_after,
    unsigned rnd);
/* A text[] literal of the n types ("{a,b}"), NULL when n is 0. */
char *webhook_types_literal(char *const *types, size_t n);

#endif
