/*
 * The background scans of notices.h.  Each is one statement of the
 * store (store_links.c, store_notices.c) that finds its rows on a
 * partial index holding only the rows still to be told, changes them and
 * inserts their events together, so an event is sent once however many
 * processes scan: the rows are locked SKIP LOCKED, marked, and the
 * once-per-episode events also carry a once_key.
 */
#include "notices.h"

#include <stdatomic.h>
#include <stdio.h>

#include "clock.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "store_links.h"
#include "store_notices.h"

/* A link used by a callback that never ended it: the callback died (a
 * code exchange and its store take seconds, not this). */
#define USED_GRACE_S 3600

/* When this process runs the scans next (mono_ms); 0 at once. */
static atomic_llong next_ms;

/* One scan's outcome: true when its batch was full.  Logged here: db.c
 * logs nothing. */
static bool
counted(const char *what, long n)
{
	char num[24];

	if (n < 0) {
		log_kv(db_failure() == DBF_UNAVAILABLE ? LOG_WARN : LOG_ERROR,
		    "notice scan failed", "scan", what, "sqlstate",
		    db_failure_sqlstate(), "db_error", db_failure_message(),
		    NULL);
		return false;
	}
	if (n > 0) {
		snprintf(num, sizeof(num), "%ld", n);
		log_kv(LOG_INFO, "notices sent", "scan", what, "events", num,
		    NULL);
	}
	return n >= NOTICE_BATCH;
}

bool
notices_one(PGconn *c, const struct config *cfg)
{
	long long now = mono_ms(), due = atomic_load(&next_ms);
	bool more = false;

	if (now < due || !atomic_compare_exchange_strong(&next_ms, &due,
			     now + cfg->refresh_interval_s * 1000))
		return false;
	more |= counted("links_expired",
	    store_link_expire_due(c, NOTICE_BATCH, USED_GRACE_S));
	more |= counted("refresh_token_expiring",
	    store_notice_refresh_expiring(c, cfg->expiry_notice_s,
		NOTICE_BATCH));
	more |= counted("consent_expiring",
	    store_notice_consent_expiring(c, cfg->expiry_notice_s,
		NOTICE_BATCH));
	more |= counted("refresh_failing",
	    store_notice_refresh_failing(c, NOTICE_FAILING_AFTER_S,
		NOTICE_BATCH));
	if (more)
		atomic_store(&next_ms, 0);
	return more;
}
