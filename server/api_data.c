/*
 * Read API for pulled data: accounts with their latest balance, and
 * transactions with keyset pagination on (sort_date, id), newest first.
 * The cursor is opaque to clients: base64url of "1:<micros>:<id>".  New
 * rows arriving between pages sort before the cursor or after it, never
 * into pages already read, so a walk neither repeats nor skips rows.
 */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "cache.h"
#include "clock.h"
#include "db.h"
#include "encode.h"
#include "log.h"
#include "mem.h"
#include "text.h"

/* A rendered body may grow this large (500 rows of long purposes). */
#define BODY_MAX (256 * 1024 * 1024)

#define ACCOUNT_COLS                                                          \
	"a.id, a.connection_id, a.user_id, a.finx_account_id, a.access_id, "  \
	"a.iban, a.bic, a.name, a.type, a.currency, a.owner, a.bank_name, "   \
	"b.amount::text, b.currency, " SQL_TS("b.balance_date") ", "          \
	SQL_TS("b.fetched_at") ", " SQL_TS("a.updated_at")

#define ACCOUNT_FROM                                                          \
	" FROM accounts a JOIN connections c ON c.id = a.connection_id "      \
	"LEFT JOIN LATERAL (SELECT amount, currency, balance_date, "          \
	"fetched_at FROM balances WHERE account_id = a.id ORDER BY id DESC "  \
	"LIMIT 1) b ON true "

/* "key":value for a text column (null when SQL NULL). */
static void
put_col(struct buf *b, const char *key, const PGresult *r, int row, int col)
{
	buf_append_str(b, key);
	cache_json_str(b, db_val(r, row, col));
}

/*
 * One account as JSON into b, in the field order of the OpenAPI
 * document (and of the json-c objects this replaced).
 */
static void
account_render(struct buf *b, const PGresult *r, int row)
{
	static const char *const keys[] = { "{\"account_id\":",
		",\"connection_id\":", ",\"user_id\":", ",\"finx_account_id\":",
		",\"access_id\":", ",\"iban\":", ",\"bic\":", ",\"name\":",
		",\"type\":", ",\"currency\":", ",\"owner\":", ",\"bank_name\":" };
	int i;

	for (i = 0; i < 12; i++)
		put_col(b, keys[i], r, row, i);
	if (PQgetisnull(r, row, 12))
		buf_append_str(b, ",\"balance\":null");
	else {
		put_col(b, ",\"balance\":{\"amount\":", r, row, 12);
		put_col(b, ",\"currency\":", r, row, 13);
		put_col(b, ",\"balance_date\":", r, row, 14);
		put_col(b, ",\"fetched_at\":", r, row, 15);
		buf_append(b, "}", 1);
	}
	put_col(b, ",\"updated_at\":", r, row, 16);
	buf_append(b, "}", 1);
}

/* Release callback of responses that serve a cache_body. */
static void
body_release(void *cls)
{
	cache_body_unref(cls);
}

/*
 * Queue 200 with body (the caller's reference passes to the response) and
 * the headers http.c gives every JSON answer (see add_common_headers
 * there): no copy of the body per request.
 */
static enum MHD_Result
reply_body(struct req *r, struct cache_body *body)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer_with_free_callback_cls(
	    body->len, body->data, body_release, body);
	if (resp == NULL) {
		cache_body_unref(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type",
	    "application/json; charset=utf-8");
	return http_queue(r, MHD_HTTP_OK, resp);
}

/*
 * Serve the rendered b: store it under key for user when the cache
 * allows (ticket from cache_begin before the database was read), then
 * reply.  Frees b.
 */
static enum MHD_Result
reply_rendered(struct req *r, struct buf *b, const struct buf *key,
    const char *user, uint64_t ticket)
{
	struct cache_body *body;

	if (b->overflow) {
		buf_free(b);
		return http_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
		    "internal_error", "the answer is too large");
	}
	body = cache_body_new(b->data ? b->data : "", b->len);
	buf_free(b);
	cache_put(key->data, key->len, user, body, ticket);
	return reply_body(r, body);
}

/*
 * A cached body for key, queued: true.  On a miss, false, and the request
 * reads the database; *filling when it does so for the requests that
 * wait for the same key (cache_fill_begin), which key_done ends.
 */
static bool
reply_cached(struct req *r, const struct buf *key, bool *filling,
    enum MHD_Result *ret)
{
	int64_t deadline = mono_ms() + CACHE_FILL_WAIT_MS;
	enum cache_fill f = CACHE_FILL_WAITED;

	while (f == CACHE_FILL_WAITED) {
		struct cache_body *body = cache_get(key->data, key->len);

		if (body != NULL) {
			*ret = reply_body(r, body);
			return true;
		}
		f = cache_fill_begin(key->data, key->len, deadline);
	}
	*filling = f == CACHE_FILL_MINE;
	return false;
}

/* Done with key: the requests waiting on this one's read look again. */
static void
key_done(struct buf *key, bool filling)
{
	if (filling)
		cache_fill_end(key->data, key->len);
	buf_free(key);
}

enum MHD_Result
h_user_accounts(struct req *r)
{
	const char *user = r->params[0];
	bool filling = false;
	enum MHD_Result ret;
	struct buf key, b;
	PGresult *res;
	PGconn *c;
	uint64_t ticket;
	int i;

	if (!user_id_valid(user))
		return api_bad_user_id(r);
	buf_init(&key, 4096);
	cache_key_add(&key, "user_accounts");
	cache_key_add(&key, user);
	if (reply_cached(r, &key, &filling, &ret))
		goto out;
	ticket = cache_begin();
	if ((c = api_db(r, &ret)) == NULL)
		goto out;
	res = db_exec_prepared(c, "api_user_accounts",
	    "SELECT " ACCOUNT_COLS ACCOUNT_FROM "WHERE a.user_id = $1 AND "
	    "c.status <> 'revoked' ORDER BY a.created_at, a.id LIMIT 1000",
	    1, (const char *[]){ user });
	db_release(c);
	if (res == NULL) {
		ret = http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
		goto out;
	}
	buf_init(&b, BODY_MAX);
	buf_append_str(&b, "{\"accounts\":[");
	for (i = 0; i < PQntuples(res); i++) {
		if (i > 0)
			buf_append(&b, ",", 1);
		account_render(&b, res, i);
	}
	buf_append_str(&b, "]}");
	PQclear(res);
	ret = reply_rendered(r, &b, &key, user, ticket);
out:
	key_done(&key, filling);
	return ret;
}

enum MHD_Result
h_account_get(struct req *r)
{
	const char *id = r->params[0];
	bool filling = false;
	enum MHD_Result ret;
	struct buf key, b;
	PGresult *res;
	PGconn *c;
	uint64_t ticket;

	if (!uuid_valid(id))
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such account");
	buf_init(&key, 4096);
	cache_key_add(&key, "account");
	cache_key_add(&key, id);
	if (reply_cached(r, &key, &filling, &ret))
		goto out;
	ticket = cache_begin();
	if ((c = api_db(r, &ret)) == NULL)
		goto out;
	res = db_exec_prepared(c, "api_account",
	    "SELECT " ACCOUNT_COLS ACCOUNT_FROM "WHERE a.id = $1", 1,
	    (const char *[]){ id });
	db_release(c);
	if (res == NULL) {
		ret = http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
		goto out;
	}
	if (PQntuples(res) == 0) {
		/* Not cached: no user's notification would clear it once the
		 * account appears. */
		PQclear(res);
		ret = http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such account");
		goto out;
	}
	buf_init(&b, BODY_MAX);
	account_render(&b, res, 0);
	/* Tagged with the account's user (column 2), whom pulls notify. */
	ret = reply_rendered(r, &b, &key, PQgetvalue(res, 0, 2), ticket);
	PQclear(res);
out:
	key_done(&key, filling);
	return ret;
}

char *
cursor_encode(int64_t micros, int64_t id)
{
	char *plain = xasprintf("1:%" PRId64 ":%" PRId64, micros, id);
	char *s = b64url_encode(plain, strlen(plain));

	free(plain);
	return s;
}

bool
cursor_decode(const char *s, int64_t *micros, int64_t *id)
{
	unsigned char *raw = NULL;
	char *text, *p, *q;
	long n;
	bool ok = false;
	long long a, b;

	if (s == NULL || strlen(s) > 64)
		return false;
	if ((n = b64url_decode(s, &raw)) < 5)
		goto out;
	text = xstrndup((const char *)raw, (size_t)n);
	if (strlen(text) == (size_t)n && strncmp(text, "1:", 2) == 0) {
		p = text + 2;
		q = strchr(p, ':');
		if (q != NULL) {
			*q++ = '\0';
			char *e1, *e2;

			errno = 0;
			a = strtoll(p, &e1, 10);
			b = strtoll(q, &e2, 10);
			/* errno: an id beyond int64 must not clamp to MAX. */
			ok = errno == 0 && *p && *q && *e1 == '\0' &&
			    *e2 == '\0' &&
			    (*p == '-' || (*p >= '0' && *p <= '9')) &&
			    *q >= '1' && *q <= '9' && b > 0 &&
			    a > -62135596800000000LL && a < 253402300800000000LL;
			if (ok) {
				*micros = a;
				*id = b;
			}
		}
	}
	free(text);
out:
	free(raw);
	return ok;
}

/* A date (YYYY-MM-DD, a real calendar day) or an RFC 3339 timestamp. */
static bool
date_param(const char *s, bool *is_date)
{
	long day;
	struct tm tm = { 0 };
	char *end;
	time_t t;

	if (strlen(s) == 10) {
		end = strptime(s, "%Y-%m-%d", &tm);
		if (end == NULL || *end != '\0')
			return false;
		t = timegm(&tm);
		gmtime_r(&t, &tm);
		/* 2026-02-30 normalises to March: refuse it. */
		*is_date = true;
		return strncmp(s + 5, "00", 2) != 0 &&
		    parse_long(s + 8, 1, 31, &day) && tm.tm_mday == day;
	}
	*is_date = false;
	if (strlen(s) < 20 || strlen(s) > 35)
		return false;
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL)
		return false;
	if (*end == '.') {
		end++;
		while (*end >= '0' && *end <= '9')
			end++;
	}
	return strcmp(end, "Z") == 0 ||
	    ((*end == '+' || *end == '-') && strlen(end) == 6 && end[3] == ':');
}

#define TXN_COLS                                                              \
	"t.id, t.finx_transaction_id, t.account_id, t.connection_id, "        \
	"t.amount::text, t.currency, " SQL_TS("t.booking_date") ", "          \
	SQL_TS("t.value_date") ", t.booked, t.counterparty_name, "            \
	"t.counterparty_iban, t.counterparty_bic, t.purpose, t.type, "        \
	"t.booking_text, (extract(epoch FROM t.sort_date) * 1000000)::bigint"

/* One transaction as JSON into b (OpenAPI field order). */
static void
txn_render(struct buf *b, const PGresult *r, int row)
{
	put_col(b, "{\"transaction_id\":", r, row, 0);
	put_col(b, ",\"finx_transaction_id\":", r, row, 1);
	put_col(b, ",\"account_id\":", r, row, 2);
	put_col(b, ",\"connection_id\":", r, row, 3);
	put_col(b, ",\"amount\":", r, row, 4);
	put_col(b, ",\"currency\":", r, row, 5);
	put_col(b, ",\"booking_date\":", r, row, 6);
	put_col(b, ",\"value_date\":", r, row, 7);
	buf_append_str(b, PQgetvalue(r, row, 8)[0] == 't'
		? ",\"booked\":true"
		: ",\"booked\":false");
	put_col(b, ",\"counterparty\":{\"name\":", r, row, 9);
	put_col(b, ",\"iban\":", r, row, 10);
	put_col(b, ",\"bic\":", r, row, 11);
	put_col(b, "},\"purpose\":", r, row, 12);
	put_col(b, ",\"type\":", r, row, 13);
	put_col(b, ",\"booking_text\":", r, row, 14);
	buf_append(b, "}", 1);
}

/* s (malloc'd, freed) with fmt (up to two %d) appended. */
static char *
sql_append(char *s, const char *fmt, int a, int b)
{
	char part[256], *out;

	snprintf(part, sizeof(part), fmt, a, b);
	out = xasprintf("%s%s", s, part);
	free(s);
	return out;
}

/* {"transactions":[...],"next_cursor":...} of the first limit rows. */
static void
txns_render(struct buf *b, const PGresult *res, long limit)
{
	int i, n = PQntuples(res);

	buf_append_str(b, "{\"transactions\":[");
	for (i = 0; i < n && i < limit; i++) {
		if (i > 0)
			buf_append(b, ",", 1);
		txn_render(b, res, i);
	}
	buf_append_str(b, "],\"next_cursor\":");
	if (n > limit) {
		char *next = cursor_encode(
		    strtoll(PQgetvalue(res, (int)limit - 1, 15), NULL, 10),
		    strtoll(PQgetvalue(res, (int)limit - 1, 0), NULL, 10));

		cache_json_str(b, next);
		free(next);
	} else
		buf_append_str(b, "null");
	buf_append(b, "}", 1);
}

/*
 * Shared by the per-account and per-user listings; scope_sql restricts
 * rows by $1; stmt names the listing's prepared statements.  owner_sql
 * answers the user_id that owns $1, or no row (404); NULL when $1 is the
 * user itself (an unknown user has no rows, not a 404).  The owner tags
 * the cached page: the user whose pulls notify.
 */
static enum MHD_Result
list_txns(struct req *r, const char *stmt, const char *scope_sql,
    const char *owner_sql)
{
	const char *from = http_query(r, "from"), *to = http_query(r, "to");
	const char *booked = http_query(r, "booked");
	const char *limit_s = http_query(r, "limit");
	const char *cursor = http_query(r, "cursor");
	char micros_s[24] = "", id_s[24] = "", limit_p[24];
	int64_t micros, cid;
	bool from_date = false, to_date = false, filling = false;
	long limit = 100;
	enum MHD_Result ret;
	struct buf key, b;
	PGresult *res, *own = NULL;
	PGconn *c;
	const char *params[8], *user = r->params[0];
	char *sql, *full, name[48];
	uint64_t ticket;
	int np = 0, mask = 0;

	if (from != NULL && !date_param(from, &from_date))
		return http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		    "from must be a date (YYYY-MM-DD) or an RFC 3339 timestamp");
	if (to != NULL && !date_param(to, &to_date))
		return http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		    "to must be a date (YYYY-MM-DD) or an RFC 3339 timestamp");
	if (booked != NULL && strcmp(booked, "true") && strcmp(booked, "false"))
		return http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		    "booked must be true or false");
	if (limit_s != NULL && !parse_long(limit_s, 1, 500, &limit))
		return http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		    "limit must be a whole number from 1 to 500");
	if (cursor != NULL) {
		if (!cursor_decode(cursor, &micros, &cid))
			return http_error(r, MHD_HTTP_BAD_REQUEST,
			    "invalid_parameter", "cursor is not valid");
		snprintf(micros_s, sizeof(micros_s), "%" PRId64, micros);
		snprintf(id_s, sizeof(id_s), "%" PRId64, cid);
	}
	snprintf(limit_p, sizeof(limit_p), "%ld", limit + 1);
	/* The key: what the statement and the rendering depend on, with
	 * values as parsed (limit 100 and no limit are one page). */
	buf_init(&key, 4096);
	cache_key_add(&key, stmt);
	cache_key_add(&key, r->params[0]);
	cache_key_add(&key, from);
	cache_key_add(&key, to);
	cache_key_add(&key, booked);
	cache_key_add(&key, limit_p);
	cache_key_add(&key, cursor != NULL ? micros_s : NULL);
	cache_key_add(&key, cursor != NULL ? id_s : NULL);
	if (reply_cached(r, &key, &filling, &ret)) {
		key_done(&key, filling);
		return ret;
	}
	ticket = cache_begin();
	/*
	 * Only the conditions asked for go into the statement, one prepared
	 * statement per combination: "$n IS NULL OR ..." would leave a
	 * generic plan unable to seek the keyset index to the cursor.
	 */
	params[np++] = r->params[0];
	sql = xstrdup(scope_sql);
	if (from != NULL) {
		params[np++] = from;
		sql = sql_append(sql, from_date
			? " AND t.sort_date >= ($%d::date::timestamp AT TIME "
			  "ZONE 'UTC')"
			: " AND t.sort_date >= $%d::timestamptz",
		    np, 0);
		mask |= from_date ? 1 : 2;
	}
	if (to != NULL) {
		params[np++] = to;
		sql = sql_append(sql, to_date
			? " AND t.sort_date < (($%d::date + 1)::timestamp AT "
			  "TIME ZONE 'UTC')"
			: " AND t.sort_date < $%d::timestamptz",
		    np, 0);
		mask |= to_date ? 4 : 8;
	}
	if (booked != NULL) {
		params[np++] = booked;
		sql = sql_append(sql, " AND t.booked = $%d::boolean", np, 0);
		mask |= 16;
	}
	if (cursor != NULL) {
		params[np++] = micros_s;
		params[np++] = id_s;
		sql = sql_append(sql, " AND (t.sort_date, t.id) < ('epoch'::"
				      "timestamptz + $%d::bigint * interval "
				      "'1 microsecond', $%d::bigint)",
		    np - 1, np);
		mask |= 32;
	}
	params[np++] = limit_p;
	full = xasprintf("SELECT " TXN_COLS " FROM transactions t WHERE %s "
			 "ORDER BY t.sort_date DESC, t.id DESC LIMIT $%d::int",
	    sql, np);
	free(sql);
	snprintf(name, sizeof(name), "api_txns_%s_%d", stmt, mask);
	if ((c = api_db(r, &ret)) == NULL) {
		free(full);
		key_done(&key, filling);
		return ret;
	}
	res = db_exec_prepared(c, name, full, np, params);
	free(full);
	/* Who owns $1: for the 404 of an empty page, and for the tag of a
	 * page the cache may keep. */
	if (res != NULL && owner_sql != NULL &&
	    (PQntuples(res) == 0 || ticket != 0)) {
		snprintf(name, sizeof(name), "api_txns_%s_owner", stmt);
		own = db_exec_prepared(c, name, owner_sql, 1,
		    (const char *[]){ r->params[0] });
		if (own == NULL || PQntuples(own) == 0) {
			db_release(c);
			PQclear(res);
			ret = own == NULL
			    ? http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
				  "database_unavailable",
				  "the database is not reachable")
			    : http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
				  "no such account or user");
			PQclear(own);
			key_done(&key, filling);
			return ret;
		}
		user = PQgetvalue(own, 0, 0);
	} else if (owner_sql != NULL)
		user = NULL; /* not needed: nothing will be stored */
	db_release(c);
	if (res == NULL) {
		key_done(&key, filling);
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
	}
	buf_init(&b, BODY_MAX);
	txns_render(&b, res, limit);
	PQclear(res);
	ret = reply_rendered(r, &b, &key, user, ticket);
	PQclear(own);
	key_done(&key, filling);
	return ret;
}

enum MHD_Result
h_account_txns(struct req *r)
{
	if (!uuid_valid(r->params[0]))
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such account");
	return list_txns(r, "a", "t.account_id = $1::uuid",
	    "SELECT user_id FROM accounts WHERE id = $1::uuid");
}

enum MHD_Result
h_user_txns(struct req *r)
{
	if (!user_id_valid(r->params[0]))
		return api_bad_user_id(r);
	return list_txns(r, "u",
	    "t.account_id IN (SELECT a.id FROM accounts a JOIN connections c "
	    "ON c.id = a.connection_id WHERE a.user_id = $1 AND c.status <> "
	    "'revoked')",
	    NULL);
}
