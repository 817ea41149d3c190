/*
 * Store: the partner's event log and its webhook deliveries (event_log,
 * webhook_endpoints; 0010_events.sql, EVENTS.md).  The events themselves
 * are written by the statements of the changes they tell of (store_int.h
 * SQL_EVENT_INSERT); this module reads them, walks them in commit-safe
 * order, and keeps their delivery state.  Event JSON is made by
 * PostgreSQL, once, the same bytes for GET /v1/events and a webhook.
 * Failures as in store.h: db_failure() tells how, nothing is logged.
 *
 * types: NULL (every type) or a text[] literal of event types
 * ("{link.completed,sync.failed}"), checked by the caller.
 */
#ifndef FINXD_STORE_EVENTS_H
#define FINXD_STORE_EVENTS_H

#include <stdbool.h>
#include <libpq-fe.h>

/* A place in the walk: the inserting transaction's xid and the row's
 * sequence, as decimal text. */
struct store_event_pos {
	char xid[24], seq[24];
};

/* A page of the walk: events after a position, oldest first. */
struct store_event_page {
	char **json; /* the events, each a JSON object's text */
	int n;
	struct store_event_pos last; /* of json[n - 1], when n > 0 */
	/* Every event before (xmin, 0) is final: none can appear there. */
	struct store_event_pos horizon;
};
bool store_events_page(PGconn *c, const struct store_event_pos *after,
    const char *types, int rows, struct store_event_page *out);
void store_event_page_free(struct store_event_page *p);

/* The position of the event of uuid id: 1 found, 0 none, -1 failed. */
int store_event_position(PGconn *c, const char *id,
    struct store_event_pos *out);

/* One event with its delivery state as stored. */
struct store_event {
	char *json, *type, *delivery, *last_attempt_at, *last_error;
	long attempts;
	long last_status; /* 0: none */
};
/* 1 found, 0 none, -1 failed. */
int store_event_get(PGconn *c, const char *id, struct store_event *out);
void store_event_free(struct store_event *e);
/* Queue event id for delivery again: 1 queued, 0 none, -1 failed. */
int store_event_redeliver(PGconn *c, const char *id);

/* ---- deliveries ---------------------------------------------------- */

/* One claimed attempt. */
struct store_delivery {
	char *id;      /* the row's uuid */
	char *evt_id;  /* "evt_..." (webhook-id) */
	char *json;    /* the body */
	long attempt;  /* the attempt's number: the claim's generation */
	long nth;      /* its number since the event was (re)queued */
};
/*
 * Claim up to max due events of types for process proc, each with a
 * deadline of deadline_s seconds (no other attempt of it starts before),
 * committed at once.  The count claimed into *out, -1 on failure.
 */
int store_deliveries_claim(PGconn *c, const char *proc, long deadline_s,
    const char *types, int max, struct store_delivery **out);
void store_deliveries_free(struct store_delivery *d, int n);

/* Outcomes, each a compare-and-set on the claim: an attempt whose claim
 * was taken over or redelivered in the meantime changes nothing. */
bool store_delivery_done(PGconn *c, const struct store_delivery *d,
    const char *proc, long status);
/*
 * Retry in delay_s seconds, or fail for good when that is past the 3-day
 * window from queued_at.  status 0: no HTTP answer.  *failed: it failed.
 */
bool store_delivery_retry(PGconn *c, const struct store_delivery *d,
    const char *proc, long status, const char *error, long delay_s,
    bool *failed);
/* Not attempted after all (shutdown): due again at once. */
bool store_delivery_release(PGconn *c, const struct store_delivery *d,
    const char *proc);
/* 410 Gone: record the endpoint (url_hash) and fail this event. */
bool store_endpoint_gone(PGconn *c, const struct store_delivery *d,
    const char *proc, const char *url_hash);
/* 1 when url_hash answered 410, 0 not, -1 failed. */
int store_endpoint_is_gone(PGconn *c, const char *url_hash);

/*
 * Housekeeping, batched (each call touches at most 1000 rows; the count
 * or -1): pending events of types not in types become 'none'; with gone,
 * pending events of types fail as endpoint_gone; events older than
 * retention_s are deleted.
 */
long store_events_sweep_unsubscribed(PGconn *c, const char *types);
long store_events_sweep_gone(PGconn *c, const char *types,
    const char *url_hash);
/* Events failed as endpoint_gone at another URL than url_hash, still in
 * their 3-day window: pending again. */
long store_events_requeue_gone(PGconn *c, const char *types,
    const char *url_hash);
/* Pending events past their 3-day window and not being attempted:
 * failed when this process delivers, else 'none'. */
long store_events_expire(PGconn *c, bool delivering);
long store_events_prune(PGconn *c, long retention_s);
/* Pending events of types waiting on a retry's backoff whose last
 * attempt failed more than before_s seconds ago: due now. */
long store_events_wake_retries(PGconn *c, const char *types, long before_s);
/* Pending events of types: how many, and the age of the oldest. */
bool store_events_pending(PGconn *c, const char *types, long *n,
    double *oldest_s);

#endif
