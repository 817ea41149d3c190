/*
 * Store: the connection events found by the background scans, each sent
 * once per connection and deadline or episode (SPEC "Events and
 * webhooks"): connection.expiring (the refresh token's or the consent's
 * end within the notice) and connection.refresh_failing (transient
 * refresh failures for an hour).  connection.recovered is sent by the
 * rotation itself (store_tokens.c), in the same statement.
 *
 * Each scan is one statement: up to limit connections found on a
 * partial index that holds only those still to be told, locked SKIP
 * LOCKED (so the scans of several processes share the work), their
 * marker column set and their events inserted together; the event's
 * once_key makes a second insert do nothing besides.  The count
 * returned is of events inserted, -1 when the statement failed
 * (db_failure()); nothing is logged here.
 */
#ifndef FINXD_STORE_NOTICES_H
#define FINXD_STORE_NOTICES_H

#include <libpq-fe.h>

/* connection.expiring of active connections whose refresh token runs out
 * within notice_s (once per deadline: refresh_expiry_notice). */
long store_notice_refresh_expiring(PGconn *c, long notice_s, int limit);
/* The same for the consent (consent_expiry_notice). */
long store_notice_consent_expiring(PGconn *c, long notice_s, int limit);
/* connection.refresh_failing of active connections whose streak of
 * failed refreshes began failing_s ago or more (failing_notice_at). */
long store_notice_refresh_failing(PGconn *c, long failing_s, int limit);

#endif
