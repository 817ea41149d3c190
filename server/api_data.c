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
#include "mem.h"
#include "store_data.h"
#include "text.h"

/* A rendered body may grow this large (500 rows of long purposes). */
#define BODY_MAX (256 * 1024 * 1024)

/* "key":value for a text (null when NULL). */
static void
put_str(struct buf *b, const char *key, const char *v)
{
	buf_append_str(b, key);
	cache_json_str(b, v);
}

/*
 * One account as JSON into b, in the field order of the OpenAPI
 * document (and of the json-c objects this replaced).
 */
static void
account_render(struct buf *b, const struct store_account *a)
{
	put_str(b, "{\"account_id\":", a->id);
	put_str(b, ",\"connection_id\":", a->connection_id);
	put_str(b, ",\"user_id\":", a->user_id);
	put_str(b, ",\"finx_account_id\":", a->finx_account_id);
	put_str(b, ",\"access_id\":", a->access_id);
	put_str(b, ",\"iban\":", a->iban);
	put_str(b, ",\"bic\":", a->bic);
	put_str(b, ",\"name\":", a->name);
	put_str(b, ",\"type\":", a->type);
	put_str(b, ",\"currency\":", a->currency);
	put_str(b, ",\"owner\":", a->owner);
	put_str(b, ",\"bank_name\":", a->bank_name);
	if (a->balance_amount == NULL)
		buf_append_str(b, ",\"balance\":null");
	else {
		put_str(b, ",\"balance\":{\"amount\":", a->balance_amount);
		put_str(b, ",\"currency\":", a->balance_currency);
		put_str(b, ",\"balance_date\":", a->balance_date);
		put_str(b, ",\"fetched_at\":", a->balance_fetched_at);
		buf_append(b, "}", 1);
	}
	put_str(b, ",\"updated_at\":", a->updated_at);
	buf_append(b, "}", 1);
}

/* Release callback of responses that serve a cache_body. */
static void
body_release(void *cls)
{
	cache_body_unref(cls);
}

/* Queue 200 with body: the caller's reference passes to the response, so
 * no copy of the body per request. */
static enum MHD_Result
reply_body(struct req *r, struct cache_body *body)
{
	return api_reply_json(r, body->data, body->len, body_release, body);
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
		return api_fail(r, ST_INTERNAL, "the answer is too large");
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
		/* A miss waits or reads: not on the event loop. */
		if (http_defer(r)) {
			*ret = MHD_YES;
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
	struct store_rows rows;
	bool filling = false;
	enum MHD_Result ret;
	struct buf key, b;
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
	if (!store_accounts_of_user(c, user, &rows)) {
		db_release(c);
		ret = api_fail_db(r);
		goto out;
	}
	db_release(c);
	buf_init(&b, BODY_MAX);
	buf_append_str(&b, "{\"accounts\":[");
	for (i = 0; i < rows.n; i++) {
		if (i > 0)
			buf_append(&b, ",", 1);
		account_render(&b, &rows.v.accounts[i]);
	}
	buf_append_str(&b, "]}");
	store_rows_free(&rows);
	ret = reply_rendered(r, &b, &key, user, ticket);
out:
	key_done(&key, filling);
	return ret;
}

/* The account read and answered, once the cache missed. */
static enum MHD_Result
account_answer(struct req *r, const char *id, const struct buf *key,
    uint64_t ticket)
{
	struct store_rows rows;
	enum MHD_Result ret;
	struct buf b;
	PGconn *c;
	bool ok;

	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	ok = store_account_get(c, id, &rows);
	db_release(c);
	if (!ok)
		return api_fail_db(r);
	/* Not cached: no user's notification would clear it once the
	 * account appears. */
	if (rows.n == 0)
		ret = api_fail(r, ST_NOT_FOUND, "no such account");
	else {
		buf_init(&b, BODY_MAX);
		account_render(&b, &rows.v.accounts[0]);
		/* Tagged with the account's user, whom pulls notify. */
		ret = reply_rendered(r, &b, key, rows.v.accounts[0].user_id,
		    ticket);
	}
	store_rows_free(&rows);
	return ret;
}

enum MHD_Result
h_account_get(struct req *r)
{
	const char *id = r->params[0];
	bool filling = false;
	enum MHD_Result ret;
	struct buf key;

	if (!api_uuid_param(r, 0))
		return api_fail(r, ST_NOT_FOUND, "no such account");
	buf_init(&key, 4096);
	cache_key_add(&key, "account");
	cache_key_add(&key, id);
	if (!reply_cached(r, &key, &filling, &ret))
		ret = account_answer(r, id, &key, cache_begin());
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

void
api_txn_render(struct buf *b, const struct store_txn *t)
{
	put_str(b, "{\"transaction_id\":", t->id);
	put_str(b, ",\"finx_transaction_id\":", t->finx_transaction_id);
	put_str(b, ",\"account_id\":", t->account_id);
	put_str(b, ",\"connection_id\":", t->connection_id);
	put_str(b, ",\"amount\":", t->amount);
	put_str(b, ",\"currency\":", t->currency);
	put_str(b, ",\"booking_date\":", t->booking_date);
	put_str(b, ",\"value_date\":", t->value_date);
	buf_append_str(b, t->booked ? ",\"booked\":true" : ",\"booked\":false");
	put_str(b, ",\"counterparty\":{\"name\":", t->counterparty_name);
	put_str(b, ",\"iban\":", t->counterparty_iban);
	put_str(b, ",\"bic\":", t->counterparty_bic);
	put_str(b, "},\"purpose\":", t->purpose);
	put_str(b, ",\"type\":", t->type);
	put_str(b, ",\"booking_text\":", t->booking_text);
	buf_append(b, "}", 1);
}

/* {"transactions":[...],"next_cursor":...} of the first limit rows. */
static void
txns_render(struct buf *b, const struct store_rows *rows, long limit)
{
	int i;

	buf_append_str(b, "{\"transactions\":[");
	for (i = 0; i < rows->n && i < limit; i++) {
		if (i > 0)
			buf_append(b, ",", 1);
		api_txn_render(b, &rows->v.txns[i]);
	}
	buf_append_str(b, "],\"next_cursor\":");
	if (rows->n > limit) {
		const struct store_txn *last = &rows->v.txns[limit - 1];
		char *next = cursor_encode(last->sort_micros, last->id_num);

		cache_json_str(b, next);
		free(next);
	} else
		buf_append_str(b, "null");
	buf_append(b, "}", 1);
}

/* A transaction listing's query, parsed. */
struct txn_args {
	const char *from, *to, *booked, *cursor; /* as sent */
	long limit;
	struct store_txn_query q;
	char micros_s[24], id_s[24], rows_s[24]; /* parsed, as text */
};

/* Parse the query into *a; false queues the 400 in *ret. */
static bool
txn_args_parse(struct req *r, struct txn_args *a, enum MHD_Result *ret)
{
	const char *limit_s = http_query(r, "limit"), *bad = NULL;

	memset(a, 0, sizeof(*a));
	a->from = a->q.from = http_query(r, "from");
	a->to = a->q.to = http_query(r, "to");
	a->booked = http_query(r, "booked");
	a->cursor = http_query(r, "cursor");
	a->limit = 100;
	if (a->from != NULL && !date_text_valid(a->from, &a->q.from_is_date))
		bad = "from must be a date (YYYY-MM-DD) or an RFC 3339 timestamp";
	else if (a->to != NULL && !date_text_valid(a->to, &a->q.to_is_date))
		bad = "to must be a date (YYYY-MM-DD) or an RFC 3339 timestamp";
	else if (a->booked != NULL && strcmp(a->booked, "true") != 0 &&
	    strcmp(a->booked, "false") != 0)
		bad = "booked must be true or false";
	else if (limit_s != NULL && !parse_long(limit_s, 1, 500, &a->limit))
		bad = "limit must be a whole number from 1 to 500";
	else if (a->cursor != NULL &&
	    !cursor_decode(a->cursor, &a->q.cursor_micros, &a->q.cursor_id))
		bad = "cursor is not valid";
	if (bad != NULL) {
		*ret = api_fail(r, ST_INVALID_PARAMETER, bad);
		return false;
	}
	a->q.booked = a->booked == NULL ? SB_ANY
	    : a->booked[0] == 't'        ? SB_BOOKED
					 : SB_PENDING;
	a->q.after_cursor = a->cursor != NULL;
	a->q.rows = a->limit + 1; /* one more tells whether a page follows */
	snprintf(a->micros_s, sizeof(a->micros_s), "%" PRId64,
	    a->q.cursor_micros);
	snprintf(a->id_s, sizeof(a->id_s), "%" PRId64, a->q.cursor_id);
	snprintf(a->rows_s, sizeof(a->rows_s), "%ld", a->q.rows);
	return true;
}

/* The cache key: what the statement and the rendering depend on, with
 * values as parsed (limit 100 and no limit are one page). */
static void
txn_key(struct buf *key, bool per_account, const char *scope,
    const struct txn_args *a)
{
	buf_init(key, 4096);
	cache_key_add(key, per_account ? "a" : "u");
	cache_key_add(key, scope);
	cache_key_add(key, a->from);
	cache_key_add(key, a->to);
	cache_key_add(key, a->booked);
	cache_key_add(key, a->rows_s);
	cache_key_add(key, a->cursor != NULL ? a->micros_s : NULL);
	cache_key_add(key, a->cursor != NULL ? a->id_s : NULL);
}

/*
 * The page read and answered, once the cache missed.  Of an account,
 * who owns it is read too when the page is empty (an unknown account is
 * a 404, an unknown user is no rows) or the cache may keep it: the owner
 * tags it, the user whose pulls notify.
 */
static enum MHD_Result
txns_answer(struct req *r, bool per_account, const struct txn_args *a,
    const struct buf *key, uint64_t ticket)
{
	const char *scope = r->params[0];
	enum store_found f = SF_FOUND;
	struct store_rows rows;
	enum MHD_Result ret;
	char *owner = NULL;
	struct buf b;
	PGconn *c;
	bool ok;

	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	ok = per_account ? store_txns_of_account(c, scope, &a->q, &rows)
			 : store_txns_of_user(c, scope, &a->q, &rows);
	if (ok && per_account && (rows.n == 0 || ticket != 0))
		f = store_account_owner(c, scope, &owner);
	db_release(c);
	if (!ok || f == SF_DB_ERROR)
		ret = api_fail_db(r);
	else if (f == SF_NONE)
		ret = api_fail(r, ST_NOT_FOUND, "no such account or user");
	else {
		buf_init(&b, BODY_MAX);
		txns_render(&b, &rows, a->limit);
		ret = reply_rendered(r, &b, key, per_account ? owner : scope,
		    ticket);
	}
	store_rows_free(&rows);
	free(owner);
	return ret;
}

/* Shared by the per-account and the per-user listing (r->params[0]). */
static enum MHD_Result
list_txns(struct req *r, bool per_account)
{
	bool filling = false;
	struct txn_args a;
	enum MHD_Result ret;
	struct buf key;

	if (!txn_args_parse(r, &a, &ret))
		return ret;
	txn_key(&key, per_account, r->params[0], &a);
	if (!reply_cached(r, &key, &filling, &ret))
		ret = txns_answer(r, per_account, &a, &key, cache_begin());
	key_done(&key, filling);
	return ret;
}

enum MHD_Result
h_account_txns(struct req *r)
{
	if (!api_uuid_param(r, 0))
		return api_fail(r, ST_NOT_FOUND, "no such account");
	return list_txns(r, true);
}

enum MHD_Result
h_user_txns(struct req *r)
{
	if (!user_id_valid(r->params[0]))
		return api_bad_user_id(r);
	return list_txns(r, false);
}
