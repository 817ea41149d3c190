/*
 * The background scans for the events nobody's request causes (SPEC
 * "Events and webhooks"): links that expire without a callback
 * (link.completed, expired), connections whose refresh token or consent
 * runs out within FINXD_EXPIRY_NOTICE (connection.expiring) and
 * connections whose refreshes have failed for an hour
 * (connection.refresh_failing).  connection.recovered is not a scan: the
 * rotation that ends the streak sends it (store_tokens.c).
 */
#ifndef FINXD_NOTICES_H
#define FINXD_NOTICES_H

#include <stdbool.h>
#include <libpq-fe.h>

struct config;

/* The first failure of a streak this long ago makes it refresh_failing. */
#define NOTICE_FAILING_AFTER_S 3600
/* Connections or links one statement of a scan takes at most. */
#define NOTICE_BATCH 200

/*
 * The scans, in batches, on c, when this process last ran them at least
 * cfg->refresh_interval_s ago (one worker of a process runs them per
 * period; the workers of other processes share the rows by SKIP
 * LOCKED).  True when a batch came back full: there is more, run again.
 */
bool notices_one(PGconn *c, const struct config *cfg);

#endif
