/*
 * Inside the store layer only: the statement table of each store module
 * (store.c registers them all) and helpers the modules share.
 */
#ifndef FINXD_STORE_INT_H
#define FINXD_STORE_INT_H

#include <libpq-fe.h>

#include "db.h"

struct store_txn;

/* RFC 3339 UTC text of a timestamptz column, for SELECT lists. */
#define SQL_TS(col)                                                          \
	"to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/*
 * The keyset of the lists (store.h, struct store_page): created_at in
 * microseconds, and the rows after the cursor ($m micros, $i id; absent:
 * from the newest) as an index condition on (created_at, id) even in a
 * generic plan.
 */
#define SQL_PAGE_MICROS "(extract(epoch FROM created_at) * 1000000)::bigint"
#define SQL_PAGE_AFTER(m, i)                                                  \
	"(created_at, id) < (coalesce('epoch'::timestamptz + " m "::bigint "  \
	"* interval '1 microsecond', 'infinity'), coalesce(" i "::uuid, "     \
	"'ffffffff-ffff-ffff-ffff-ffffffffffff')) ORDER BY created_at DESC, " \
	"id DESC"

/*
 * The start of an event's insert into the partner's event log
 * (0010_events.sql, EVENTS.md): follow it with a SELECT or VALUES of
 * (type, connection_id, link_id, data), in the statement or transaction
 * of the change the event tells of.
 */
#define SQL_EVENT_INSERT                                                      \
	"INSERT INTO event_log (type, connection_id, link_id, data) "
/*
 * An event sent once per episode: the insert names its once_key (a fifth
 * value after data), and SQL_EVENT_ONCE ends the statement so that a
 * second insert of the same key does nothing.
 */
#define SQL_EVENT_INSERT_ONCE                                                 \
	"INSERT INTO event_log (type, connection_id, link_id, data, "         \
	"once_key) "
#define SQL_EVENT_ONCE " ON CONFLICT (once_key) WHERE once_key IS NOT NULL DO NOTHING"
/* A streak of failed refreshes named by its start (failing_since) in
 * the once_keys of refresh_failing and recovered: microseconds. */
#define SQL_FAILING_KEY(col)                                                  \
	"(extract(epoch FROM " col ") * 1000000)::bigint::text"
/* The data of link.completed from a links row (or its RETURNING). */
#define SQL_LINK_COMPLETED(t)                                                 \
	"jsonb_build_object('link_id', " t "id, 'user_id', " t "user_id, "    \
	"'status', " t "status, 'connection_id', CASE WHEN " t "status = "    \
	"'connected' THEN " t "connection_id END, 'reason', " t "reason)"

/*
 * A transaction as the reads show it, in the order of struct store_txn
 * (store_data.h), of "transactions t": the select list of the listings
 * and of the change feed.  store_txn_fill reads row i of such a result
 * (its first 16 columns) into *t, borrowing the text.
 */
#define SQL_TXN_COLS                                                          \
	"t.id, t.finx_transaction_id, t.account_id, t.connection_id, "        \
	"t.amount::text, t.currency, " SQL_TS("t.booking_date") ", "          \
	SQL_TS("t.value_date") ", t.booked, t.counterparty_name, "            \
	"t.counterparty_iban, t.counterparty_bic, t.purpose, t.type, "        \
	"t.booking_text, (extract(epoch FROM t.sort_date) * 1000000)::bigint"
#define SQL_TXN_NCOLS 16
void store_txn_fill(struct store_txn *t, const PGresult *r, int i);

extern const struct db_stmt store_changes_stmts[];

/*
 * A condition on a revocations row (rev: its alias): no finX
 * notification of its connection waits for removal with its access token
 * (0012_notifications.sql, notify.c), up to the removal's hold.
 */
#define SQL_NOTIFY_NOT_HELD(rev)                                              \
	"NOT EXISTS (SELECT 1 FROM finx_notifications f WHERE "               \
	"f.connection_id = " rev ".connection_id AND f.state = 'removing' "   \
	"AND f.hold_until > now())"

extern const struct db_stmt store_data_stmts[];
extern const struct db_stmt store_events_stmts[];
extern const struct db_stmt store_idem_stmts[];
extern const struct db_stmt store_links_stmts[];
extern const struct db_stmt store_ops_stmts[];
extern const struct db_stmt store_conns_stmts[];
extern const struct db_stmt store_lease_stmts[];
extern const struct db_stmt store_notices_stmts[];
extern const struct db_stmt store_sync_stmts[];
extern const struct db_stmt store_tokens_stmts[];
extern const struct db_stmt store_notify_stmts[];

#endif
