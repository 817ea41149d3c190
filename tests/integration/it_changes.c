/*
 * The transaction change feed (GET /v1/connections/{id}/transactions/
 * changes) against the sandbox's own data, and pulls that hold no
 * transaction across finX (a committed claim with a deadline).
 *
 * Two finxd processes pull and serve.  After each kind of bank change
 * (book a pending one in place, book one under a new id, add, correct the
 * amount, the text and the date, drop a pending one; the counterparty
 * and the value date, which the sandbox cannot correct, by making the
 * stored row differ) a pull runs and the
 * feed shows exactly that change, once; a re-pull of unchanged data adds
 * nothing; each changing pull has its transactions.updated event with
 * the right counts.  Walked from the beginning and from every
 * intermediate cursor (one change a page, alternating the processes),
 * the feed shows every later change once, in order.  A reader walks the
 * feed while both processes pull new data; it sees each new transaction
 * once.  Then bad input (cursors of another connection, edited, garbage;
 * limit bounds; unknown, malformed and deleted connections; scopes), a
 * pull whose claim another process took mid-fetch (its data thrown away)
 * and a process killed mid-pull, whose pull another process takes once
 * the claim's deadline has passed, and not before.
 */
#include "it_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static const char *db;
static int fa, fb;
static const char *user = "u-changes";
static char *cid;
static char *k_read, *k_tokens, *k_links;

/* ---- SQL ---- */

/* Our id of the connection's transaction with finX id fid (malloc'd). */
static char *
our_id(const char *fid)
{
	return h_sql_value(db,
	    "SELECT id::text FROM transactions WHERE connection_id = $1 AND "
	    "finx_transaction_id = $2",
	    (const char *[]){ cid, fid, NULL });
}

static long
events(void)
{
	return h_sql_long(db,
	    "SELECT count(*) FROM event_log WHERE type = "
	    "'transactions.updated' AND connection_id = $1",
	    (const char *[]){ cid, NULL });
}

/* The newest transactions.updated event's counts, "added/modified/
 * removed" (malloc'd, NULL when none). */
static char *
last_counts(void)
{
	return h_sql_value(db,
	    "SELECT format('%s/%s/%s', data->>'added', data->>'modified', "
	    "data->>'removed') FROM event_log WHERE type = "
	    "'transactions.updated' AND connection_id = $1 ORDER BY xid DESC, "
	    "seq DESC LIMIT 1",
	    (const char *[]){ cid, NULL });
}

static bool
repull(void)
{
	return h_repull(db, cid, 20);
}

/* ---- the feed ---- */

/* Tokens "a:<id>", "m:<id>", "r:<id>" in the order they came. */
struct toks {
	char **v;
	int n;
};

static void
toks_add(struct toks *t, const char *kind, const char *id)
{
	char **v = realloc(t->v, (size_t)(t->n + 1) * sizeof(char *));

	if (v == NULL || asprintf(&v[t->n], "%c:%s", kind[0], id) < 0)
		h_bail("out of memory");
	t->v = v;
	t->n++;
}

static void
toks_free(struct toks *t)
{
	int i;

	for (i = 0; i < t->n; i++)
		free(t->v[i]);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/*
 * GET one page on instance i (thread-safe: no h_fmt).  The status; the
 * page's tokens appended to t (when not NULL) in the order of added,
 * modified, removed; the answer's next_cursor in *next (malloc'd),
 * has_more in *more.
 */
static long
page(int i, const char *conn, const char *cursor, long limit, struct toks *t,
    char **next, bool *more)
{
	static const char *const kinds[] = { "added", "modified", "removed" };
	struct json_object *o, *a, *hm;
	struct h_resp r;
	char path[512];
	size_t k, j;
	long st;

	snprintf(path, sizeof(path),
	    "/v1/connections/%s/transactions/changes?limit=%ld%s%s", conn,
	    limit, cursor ? "&cursor=" : "", cursor ? cursor : "");
	st = h_api(i, "GET", path, NULL, &r);
	o = h_resp_json(&r);
	if (st == 200 && next != NULL)
		*next = h_dup(h_jstr(o, "next_cursor"));
	if (st == 200 && more != NULL)
		*more = json_object_object_get_ex(o, "has_more", &hm) &&
		    json_object_get_boolean(hm);
	for (k = 0; st == 200 && t != NULL && k < 3; k++) {
		if (!json_object_object_get_ex(o, kinds[k], &a))
			continue;
		for (j = 0; j < json_object_array_length(a); j++)
			toks_add(t, kinds[k],
			    h_jstr(json_object_array_get_idx(a, j),
				"transaction_id"));
	}
	h_resp_free(&r);
	return st;
}

/* Walk from cursor (NULL: the beginning) to the end, limit a page,
 * alternating the processes; false when a page did not answer 200.
 * The last next_cursor in *last (malloc'd) when last is not NULL. */
static bool
walk(const char *cursor, long limit, struct toks *t, char **last)
{
	char *cur = h_dup(cursor), *next = NULL;
	bool more = true;
	int n = 0;

	while (more && n < 10000) {
		if (page(n % 2 ? fb : fa, cid, cur, limit, t, &next, &more) !=
		    200 || next == NULL) {
			printf("# page %d did not answer\n", n);
			free(cur);
			return false;
		}
		free(cur);
		cur = next;
		next = NULL;
		n++;
	}
	if (last != NULL)
		*last = cur;
	else
		free(cur);
	return !more;
}

/* ---- what the feed should show ---- */

/* One pull's changes, as tokens (any order within the pull). */
#define MAX_STEPS 16
static struct toks steps[MAX_STEPS];
static char *cursors[MAX_STEPS]; /* the position after step k */
static int nsteps;

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The set s as sorted, comma-joined text (malloc'd). */
static char *
joined(char **v, int n)
{
	char **c = calloc((size_t)n + 1, sizeof(char *)), *out = h_dup("");
	int i;

	if (n > 0)
		memcpy(c, v, (size_t)n * sizeof(char *));
	qsort(c, (size_t)n, sizeof(char *), cmp_str);
	for (i = 0; i < n; i++) {
		char *s = h_fmt("%s%s%s", out, i ? "," : "", c[i]);

		free(out);
		out = s;
	}
	free(c);
	return out;
}

/* Whether transaction id (ours) exists now. */
static bool
exists(const char *id)
{
	return h_sql_long(db,
	           "SELECT count(*) FROM transactions WHERE id = $1::bigint",
	           (const char *[]){ id, NULL }) == 1;
}

/* The tokens of step k a reader sees now: an added or modified
 * transaction removed since shows nothing (api_changes.c). */
static struct toks
visible(int k)
{
	struct toks t = { 0 };
	int i;

	for (i = 0; i < steps[k].n; i++) {
		const char *s = steps[k].v[i];

		if (s[0] == 'r' || exists(s + 2))
			toks_add(&t, s[0] == 'a' ? "added" : s[0] == 'm'
			        ? "modified" : "removed", s + 2);
	}
	return t;
}

/* The walk's tokens from position after step `from` (-1: the
 * beginning) are the visible steps after it, each as one run, in order. */
static void
check_walk_from(int from)
{
	struct toks t = { 0 };
	int k, at = 0;
	bool ok = walk(from < 0 ? NULL : cursors[from], 1, &t, NULL), same =
	    true;

	for (k = from + 1; ok && k < nsteps; k++) {
		struct toks want = visible(k);
		char *w = joined(want.v, want.n), *g;

		if (at + want.n > t.n) {
			same = false;
			free(w);
			toks_free(&want);
			break;
		}
		g = joined(t.v + at, want.n);
		if (strcmp(w, g) != 0) {
			printf("# step %d: want %s, got %s\n", k, w, g);
			same = false;
		}
		at += want.n;
		free(w);
		free(g);
		toks_free(&want);
	}
	CHECK(ok && same && at == t.n,
	    "from %s %d: %d changes, each once, in the order of the pulls",
	    from < 0 ? "the beginning, step" : "the cursor after step",
	    from, t.n);
	toks_free(&t);
}

/*
 * Pull, and the feed after the last step shows exactly want plus an
 * "added" for each of the nf finX ids in fids (their ids are ours only
 * once stored); counts: the pull's event, NULL for none.  The step is
 * kept for the walks of check_walk_from.
 */
static void
check_step(const char *what, struct toks *want, char *const *fids, int nf,
    const char *counts)
{
	struct toks t = { 0 };
	long ev0 = events();
	char *w, *g, *next = NULL, *c, *id;
	bool pulled = repull(), ok;
	int i;

	for (i = 0; i < nf; i++) {
		id = our_id(fids[i]);
		CHECK(id != NULL, "%s: %s is stored", what, fids[i]);
		toks_add(want, "added", id ? id : "?");
		free(id);
	}
	ok = walk(nsteps > 0 ? cursors[nsteps - 1] : NULL, 500, &t, &next);
	w = joined(want->v, want->n);
	g = joined(t.v, t.n);
	CHECK(pulled && ok && strcmp(w, g) == 0,
	    "%s: the feed shows exactly {%s} (got {%s})", what, w, g);
	if (counts == NULL)
		CHECK(events() == ev0, "%s: no transactions.updated event",
		    what);
	else {
		c = last_counts();
		CHECK(events() == ev0 + 1 && h_streq(c, counts),
		    "%s: one transactions.updated event, %s (got %s)", what,
		    counts, c ? c : "none");
		free(c);
	}
	if (nsteps >= MAX_STEPS)
		h_bail("too many steps");
	steps[nsteps] = *want;
	cursors[nsteps++] = next;
	memset(want, 0, sizeof(*want));
	toks_free(&t);
	free(w);
	free(g);
}

/* ---- the bank's changes ---- */

static long
bank(const char *what, const char *rest, struct json_object **ret)
{
	return h_sbx_bank_user(user, what, rest, ret);
}

/* finX id of the connection's n-th pending transaction (malloc'd). */
static char *
pending_fid(int n)
{
	char ns[16];

	snprintf(ns, sizeof(ns), "%d", n);
	return h_sql_value(db,
	    "SELECT finx_transaction_id FROM transactions WHERE "
	    "connection_id = $1 AND NOT booked ORDER BY id OFFSET $2::int "
	    "LIMIT 1",
	    (const char *[]){ cid, ns, NULL });
}

/* The member of array key of o whose transaction_id is id (borrowed). */
static struct json_object *
item_of(struct json_object *o, const char *key, const char *id)
{
	struct json_object *a;
	size_t i;

	if (o == NULL || !json_object_object_get_ex(o, key, &a) ||
	    !json_object_is_type(a, json_type_array))
		return NULL;
	for (i = 0; i < json_object_array_length(a); i++)
		if (h_streq(h_jstr(json_object_array_get_idx(a, i),
		        "transaction_id"), id))
			return json_object_array_get_idx(a, i);
	return NULL;
}

/* The last step's modified item id, and the same transaction in its
 * account's listing: rendered alike, byte for byte. */
static void
check_rendering(const char *id)
{
	struct json_object *item, *t;
	struct h_resp r, q;
	char *path;
	const char *acct;

	path = h_fmt("/v1/connections/%s/transactions/changes?cursor=%s", cid,
	    cursors[nsteps - 2]);
	h_api(fa, "GET", path, NULL, &r);
	free(path);
	item = item_of(h_resp_json(&r), "modified", id);
	acct = h_jstr(item, "account_id");
	path = h_fmt("/v1/accounts/%s/transactions?limit=500",
	    acct ? acct : "none");
	h_api(fb, "GET", path, NULL, &q);
	free(path);
	t = item_of(h_resp_json(&q), "transactions", id);
	CHECK(item != NULL && t != NULL &&
	        strcmp(json_object_to_json_string_ext(item,
	                   JSON_C_TO_STRING_PLAIN),
	            json_object_to_json_string_ext(t,
	                JSON_C_TO_STRING_PLAIN)) == 0,
	    "a modified item is rendered as the account's listing renders "
	    "the transaction");
	h_resp_free(&r);
	h_resp_free(&q);
}

static void
step_initial(void)
{
	struct toks want = { 0 }, t = { 0 };
	PGresult *res = h_sql(db,
	    "SELECT id::text FROM transactions WHERE connection_id = $1 "
	    "ORDER BY id",
	    (const char *[]){ cid, NULL });
	char *c, *next = NULL;
	int i;

	for (i = 0; res != NULL && i < PQntuples(res); i++)
		toks_add(&want, "added", PQgetvalue(res, i, 0));
	PQclear(res);
	CHECK(want.n > 4, "the first pull stored %d transactions", want.n);
	CHECK(walk(NULL, 500, &t, &next) && t.n == want.n,
	    "from the beginning: every stored transaction added (%d)", t.n);
	c = last_counts();
	CHECK(events() == 1 && c != NULL && strtol(c, NULL, 10) == want.n &&
	        strstr(c, "/0/0") != NULL,
	    "the first pull's event: %d/0/0 (got %s)", want.n, c ? c : "-");
	CHECK(h_sql_true(db,
	          "SELECT string_agg(k, ',' ORDER BY k) = "
	          "'added,connection_id,modified,removed,user_id' AND "
	          "bool_and(data->>'connection_id' = $1 AND data->>'user_id' "
	          "= $2) FROM event_log, jsonb_object_keys(data) k WHERE type "
	          "= 'transactions.updated' AND connection_id = $3::uuid",
	          (const char *[]){ cid, user, cid, NULL }),
	    "its data: exactly connection_id, user_id and the counts");
	free(c);
	steps[0] = want;
	cursors[0] = next;
	nsteps = 1;
	toks_free(&t);
}

static void
step_repull(void)
{
	struct toks none = { 0 };
	char *next = NULL;
	long rows = h_sql_long(db, "SELECT count(*) FROM transaction_changes",
	    NULL);

	check_step("a re-pull of unchanged data", &none, NULL, 0, NULL);
	CHECK(h_sql_long(db, "SELECT count(*) FROM transaction_changes",
	          NULL) == rows,
	    "a re-pull wrote no change rows");
	CHECK(page(fb, cid, cursors[0], 10, NULL, &next, NULL) == 200 &&
	        h_streq(next, cursors[0]),
	    "an empty page keeps the cursor where it was");
	free(next);
}

static void
step_book_same(void)
{
	struct toks want = { 0 };
	char *fid = pending_fid(0), *id = our_id(fid);
	char *rest = h_fmt("\"transaction_ids\":[\"%s\"]", fid);

	CHECK(sbx_ok(bank("book", rest, NULL)), "bank: booked %s in place",
	    fid);
	toks_add(&want, "modified", id);
	check_step("booked under the same id", &want, NULL, 0, "0/1/0");
	CHECK(h_sql_true(db, "SELECT booked FROM transactions WHERE id = "
	                     "$1::bigint",
	          (const char *[]){ id, NULL }),
	    "it is booked, under the same id");
	check_rendering(id);
	free(rest);
	free(fid);
	free(id);
}

static void
step_book_new(void)
{
	struct toks want = { 0 };
	struct json_object *o = NULL, *a;
	char *fid = pending_fid(0), *id = our_id(fid), *nfid = NULL;
	char *rest = h_fmt("\"transaction_ids\":[\"%s\"],\"new_ids\":true",
	    fid);

	if (bank("book", rest, &o) == 200 &&
	    json_object_object_get_ex(o, "booked", &a))
		nfid = h_dup(h_jstr(json_object_array_get_idx(a, 0),
		    "booked_id"));
	CHECK(nfid != NULL && !h_streq(nfid, fid),
	    "bank: booked %s under a new id", fid);
	toks_add(&want, "removed", id);
	check_step("booked under a new id", &want, &nfid, 1, "1/0/1");
	CHECK(!exists(id), "the pending one is gone from the store");
	json_object_put(o);
	free(rest);
	free(fid);
	free(id);
	free(nfid);
}

static char *x_fid, *y_fid; /* added: booked, pending */

static void
step_add(void)
{
	struct toks want = { 0 };
	struct json_object *o = NULL, *a = NULL;
	char *fids[2];

	CHECK(bank("add", "\"transactions\":[{\"amount\":\"12.34\","
	                  "\"purpose\":\"Changes test\"},{\"amount\":\"-5\","
	                  "\"booked\":false}]",
	          &o) == 200 && json_object_object_get_ex(o, "transactions",
	          &a) && json_object_array_length(a) == 2,
	    "bank: added a booked and a pending transaction");
	x_fid = h_dup(h_jstr(json_object_array_get_idx(a, 0),
	    "transaction_id"));
	y_fid = h_dup(h_jstr(json_object_array_get_idx(a, 1),
	    "transaction_id"));
	json_object_put(o);
	if (x_fid == NULL || y_fid == NULL)
		h_bail("the sandbox added nothing");
	fids[0] = x_fid;
	fids[1] = y_fid;
	check_step("two added", &want, fids, 2, "2/0/0");
}

static void
step_correct(const char *what, const char *fid, const char *rest)
{
	struct toks want = { 0 };
	char *body = h_fmt("\"transaction_id\":\"%s\",%s", fid, rest);
	char *id = our_id(fid);

	CHECK(sbx_ok(bank("correct", body, NULL)), "bank: %s of %s", what,
	    fid);
	toks_add(&want, "modified", id);
	check_step(what, &want, NULL, 0, "0/1/0");
	free(body);
	free(id);
}

static void
step_drop(void)
{
	struct toks want = { 0 };
	char *body = h_fmt("\"transaction_id\":\"%s\"", y_fid);
	char *id = our_id(y_fid);

	CHECK(sbx_ok(bank("drop", body, NULL)), "bank: dropped %s", y_fid);
	toks_add(&want, "removed", id);
	check_step("a pending one dropped", &want, NULL, 0, "0/0/1");
	CHECK(!exists(id), "it is gone from the store");
	free(body);
	free(id);
}

/*
 * A change the sandbox has no control call for (the counterparty, the
 * value date): the stored row made to differ from what finX says, as
 * after a correction at the bank; the next pull writes finX's value back
 * and that is a modified.
 */
static void
step_stale(const char *fid, const char *col, const char *old,
    const char *what)
{
	struct toks want = { 0 };
	char *id = our_id(fid);
	char *q = h_fmt("UPDATE transactions SET %s = %s WHERE id = "
	                "$1::bigint",
	    col, old);

	CHECK(h_sql_do(db, q, (const char *[]){ id, NULL }),
	    "%s: the stored one differs", what);
	toks_add(&want, "modified", id);
	check_step(what, &want, NULL, 0, "0/1/0");
	free(q);
	free(id);
}

/* The stored text of column col of finX transaction fid (malloc'd). */
static char *
stored(const char *fid, const char *col)
{
	char *q = h_fmt("SELECT %s::text FROM transactions WHERE "
	                "connection_id = $1 AND finx_transaction_id = $2",
	    col);
	char *v = h_sql_value(db, q, (const char *[]){ cid, fid, NULL });

	free(q);
	return v;
}

static void
test_bank_changes(void)
{
	char *z_fid = h_sql_value(db,
	    "SELECT finx_transaction_id FROM transactions WHERE connection_id "
	    "= $1 AND booked ORDER BY id LIMIT 1",
	    (const char *[]){ cid, NULL });
	char *v;
	int k;

	step_initial();
	step_repull();
	step_book_same();
	step_book_new();
	step_add();
	step_correct("the amount corrected", x_fid, "\"amount\":\"12.43\"");
	v = stored(x_fid, "amount");
	CHECK(h_streq(v, "12.43"), "the new amount is stored (%s)",
	    v ? v : "-");
	free(v);
	step_correct("the text corrected", z_fid,
	    "\"purpose\":\"Korrigierter Text\"");
	v = stored(z_fid, "purpose");
	CHECK(h_streq(v, "Korrigierter Text"), "the new text is stored");
	free(v);
	step_correct("the booking date moved", x_fid,
	    "\"booking_date\":\"2026-10-15\"");
	v = stored(x_fid, "booking_date::date");
	CHECK(h_streq(v, "2026-10-15"), "the new date is stored (%s)",
	    v ? v : "-");
	free(v);
	step_stale(z_fid, "counterparty_name", "'Alter Name'",
	    "the counterparty corrected");
	step_stale(z_fid, "value_date", "value_date - interval '3 days'",
	    "the value date corrected");
	step_drop();
	check_step("another re-pull of unchanged data", &(struct toks){ 0 },
	    NULL, 0, NULL);
	for (k = -1; k < nsteps; k++)
		check_walk_from(k);
	free(z_fid);
}

/* ---- a reader while both processes pull ---- */

struct reader {
	char *cursor;
	struct toks seen;
	atomic_bool stop;
	bool failed;
};

static void *
read_loop(void *arg)
{
	struct reader *rd = arg;
	int n = 0;

	for (;;) {
		bool stop = atomic_load(&rd->stop), more = true;

		while (more) {
			char *next = NULL;

			if (page(n++ % 2 ? fb : fa, cid, rd->cursor, 3,
			        &rd->seen, &next, &more) != 200 || next == NULL) {
				rd->failed = true;
				return NULL;
			}
			free(rd->cursor);
			rd->cursor = next;
		}
		if (stop)
			return NULL;
		usleep(50 * 1000);
	}
}

static void
test_concurrent(void)
{
	struct reader rd = { .cursor = h_dup(cursors[nsteps - 1]) };
	char *max0 = h_sql_value(db,
	    "SELECT max(id)::text FROM transactions", NULL), *got, *want;
	struct toks exp = { 0 };
	PGresult *res;
	pthread_t th;
	int round, i;

	pthread_create(&th, NULL, read_loop, &rd);
	for (round = 0; round < 6; round++) {
		CHECK(bank("add", "\"transactions\":[{},{\"booked\":false}]",
		          NULL) == 200,
		    "round %d: two new transactions at the bank", round);
		/* Both processes' workers look for it at once. */
		CHECK(repull(), "round %d: pulled", round);
	}
	atomic_store(&rd.stop, true);
	pthread_join(th, NULL);
	res = h_sql(db,
	    "SELECT id::text FROM transactions WHERE connection_id = $1 AND "
	    "id > $2::bigint ORDER BY id",
	    (const char *[]){ cid, max0, NULL });
	for (i = 0; res != NULL && i < PQntuples(res); i++)
		toks_add(&exp, "added", PQgetvalue(res, i, 0));
	PQclear(res);
	got = joined(rd.seen.v, rd.seen.n);
	want = joined(exp.v, exp.n);
	CHECK(!rd.failed && exp.n == 12 && rd.seen.n == exp.n &&
	        strcmp(got, want) == 0,
	    "a reader walking meanwhile saw each of the 12 once (%d seen)",
	    rd.seen.n);
	for (i = 1; i < rd.seen.n; i++)
		if (atoll(rd.seen.v[i] + 2) <= atoll(rd.seen.v[i - 1] + 2))
			break;
	CHECK(i >= rd.seen.n, "in the order they were stored");
	free(cursors[nsteps - 1]);
	cursors[nsteps - 1] = rd.cursor;
	toks_free(&rd.seen);
	toks_free(&exp);
	free(got);
	free(want);
	free(max0);
}

/* ---- bad input ---- */

static long
feed_status(int i, const char *key, const char *conn, const char *query,
    const char *want_code)
{
	char *path = h_fmt("/v1/connections/%s/transactions/changes%s", conn,
	    query);
	struct h_resp r;
	long st = key ? h_api_key_call(i, key, "GET", path, NULL, &r)
		      : h_api(i, "GET", path, NULL, &r);

	if (want_code != NULL && !h_err_is(&r, want_code))
		st = -st;
	h_resp_free(&r);
	free(path);
	return st;
}

/* cursor with the character at i changed (malloc'd). */
static char *
edited(const char *cursor, size_t i)
{
	char *s = h_dup(cursor);

	s[i] = s[i] == 'A' ? 'B' : 'A';
	return s;
}

static void
test_bad_input(void)
{
	const char *bad_limits[] = { "0", "501", "-1", "abc", "1.5", "", "%00" };
	const char *garbage[] = { "garbage", "", "%25%00", "eDo1",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		"AAAA" };
	long st;
	char *other = h_connect(fa, "u-changes-other"), *oc = NULL, *q, *e;
	const char *good = cursors[nsteps - 1];
	size_t i, len = strlen(good);
	int refused = 0;

	CHECK(other != NULL && h_wait_pull_after(db, other, "", 30),
	    "a second connection, pulled");
	CHECK(page(fa, other, NULL, 500, NULL, &oc, NULL) == 200 && oc,
	    "its feed answers");
	q = h_fmt("?cursor=%s", oc);
	CHECK(feed_status(fa, NULL, cid, q, "invalid_parameter") == 400,
	    "another connection's cursor: 400 invalid_parameter");
	CHECK(feed_status(fb, NULL, other, q, NULL) == 200,
	    "on its own connection it is fine");
	free(q);
	for (i = 0; i < len; i++) {
		e = edited(good, i);
		q = h_fmt("?cursor=%s", e);
		refused += feed_status(i % 2 ? fa : fb, NULL, cid, q,
		    "invalid_parameter") == 400;
		free(q);
		free(e);
	}
	CHECK(refused == (int)len, "every edited character: 400 (%d of %zu)",
	    refused, len);
	for (i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		q = h_fmt("?cursor=%s", garbage[i]);
		st = feed_status(i % 2 ? fa : fb, NULL, cid, q, NULL);
		CHECK(st == 400, "cursor=%s: 400 (%ld)", garbage[i], st);
		free(q);
	}
	for (i = 0; i < sizeof(bad_limits) / sizeof(bad_limits[0]); i++) {
		q = h_fmt("?limit=%s", bad_limits[i]);
		CHECK(feed_status(fa, NULL, cid, q, "invalid_parameter") ==
		        400,
		    "limit=%s: 400", bad_limits[i]);
		free(q);
	}
	CHECK(feed_status(fa, NULL, cid, "?limit=1", NULL) == 200 &&
	        feed_status(fa, NULL, cid, "?limit=500", NULL) == 200,
	    "limit 1 and 500: 200");
	CHECK(feed_status(fa, NULL, "00000000-0000-4000-8000-000000000000", "",
	          "not_found") == 404 &&
	        feed_status(fa, NULL, "not-a-uuid", "", NULL) == 404,
	    "an unknown or malformed connection: 404");
	CHECK(feed_status(fa, k_read, cid, "", NULL) == 200,
	    "scope read: 200");
	CHECK(feed_status(fa, k_tokens, cid, "", NULL) == 403 &&
	        feed_status(fa, k_links, cid, "", NULL) == 403,
	    "scopes tokens or links only: 403");
	CHECK(h_conn_api(fa, "DELETE", other, NULL, NULL) / 100 == 2,
	    "the second connection deleted");
	CHECK(feed_status(fb, NULL, other, "", "not_found") == 404,
	    "a deleted connection's feed: 404");
	free(oc);
	free(other);
}

/* ---- claims ---- */

static bool
sbx_asked_transactions(void *n0)
{
	return h_sbx_count("/rest/transactions") > *(int *)n0;
}

/* A bank add of one booked transaction; its finX id (malloc'd). */
static char *
add_one(void)
{
	struct json_object *o = NULL, *a = NULL;
	char *fid = NULL;

	if (bank("add", "\"transactions\":[{}]", &o) == 200 &&
	    json_object_object_get_ex(o, "transactions", &a))
		fid = h_dup(h_jstr(json_object_array_get_idx(a, 0),
		    "transaction_id"));
	json_object_put(o);
	if (fid == NULL)
		h_bail("the sandbox added nothing");
	return fid;
}

/* Make the connection due, and wait until a pull asks finX for its
 * (delayed) transactions. */
static bool
pull_reaches_finx(void)
{
	int n0 = h_sbx_count("/rest/transactions");

	h_sbx_post("/_sandbox/faults",
	    "{\"path\":\"/rest/transactions\",\"mode\":\"delay\","
	    "\"delay_ms\":3000,\"count\":1}");
	h_sql_do(db,
	    "UPDATE pulls SET next_pull_at = now(), attended = true WHERE "
	    "connection_id = $1",
	    (const char *[]){ cid, NULL });
	return h_wait_until(sbx_asked_transactions, &n0, 20000);
}

/* The claim taken by another process while the pull fetches: its data
 * is thrown away, its outcome not written. */
static void
test_claim_lost(void)
{
	char *fid = add_one(), *before = h_last_pull(db, cid), *after, *id;
	long rows = h_sql_long(db, "SELECT count(*) FROM transaction_changes",
	    NULL);

	CHECK(pull_reaches_finx(), "a pull is fetching (finX delayed)");
	CHECK(h_sql_do(db,
	          "UPDATE pulls SET claim_by = 'thief' WHERE connection_id = "
	          "$1 AND claim_by IS NOT NULL",
	          (const char *[]){ cid, NULL }),
	    "meanwhile another claim takes the row");
	h_sleep_ms(5000);
	after = h_last_pull(db, cid);
	id = our_id(fid);
	CHECK(id == NULL && strcmp(before, after) == 0 &&
	        h_sql_long(db, "SELECT count(*) FROM transaction_changes",
	            NULL) == rows,
	    "the pull that lost its claim stored nothing, no outcome");
	CHECK(h_sql_true(db,
	          "SELECT claim_by = 'thief' FROM pulls WHERE connection_id = "
	          "$1",
	          (const char *[]){ cid, NULL }),
	    "the other claim stands");
	CHECK(h_log_contains("claim lost"), "the log says the claim was lost");
	h_sql_do(db,
	    "UPDATE pulls SET claim_by = NULL, claim_until = NULL WHERE "
	    "connection_id = $1",
	    (const char *[]){ cid, NULL });
	check_step("after the lost claim, the next pull", &(struct toks){ 0 },
	    &fid, 1, "1/0/0");
	free(fid);
	free(id);
	free(before);
	free(after);
}

/* A process killed mid-pull: its claim holds until the deadline, then
 * another process takes the pull. */
static void
test_killed_mid_pull(void)
{
	char *fid = add_one(), *before = h_last_pull(db, cid), *after, *id;
	int fc;

	CHECK(pull_reaches_finx(), "a pull is fetching (finX delayed)");
	h_finxd_stop(fa, SIGKILL);
	h_finxd_stop(fb, SIGKILL);
	CHECK(h_sql_true(db,
	          "SELECT claim_by IS NOT NULL AND claim_until > now() FROM "
	          "pulls WHERE connection_id = $1",
	          (const char *[]){ cid, NULL }),
	    "kill -9 of both processes mid-pull leaves a live claim");
	fc = h_finxd_start();
	h_sql_do(db,
	    "UPDATE pulls SET next_pull_at = now() WHERE connection_id = $1",
	    (const char *[]){ cid, NULL });
	h_sleep_ms(4000);
	after = h_last_pull(db, cid);
	id = our_id(fid);
	CHECK(id == NULL && strcmp(before, after) == 0,
	    "a new process does not pull while the claim is live, even due");
	free(after);
	free(id);
	/* The deadline passes (as the claim had moved next_pull_at). */
	h_sql_do(db,
	    "UPDATE pulls SET claim_until = now() - interval '1 second', "
	    "next_pull_at = now() - interval '1 second' WHERE connection_id "
	    "= $1",
	    (const char *[]){ cid, NULL });
	CHECK(h_wait_pull_after(db, cid, before, 20),
	    "past the deadline the new process takes the pull");
	CHECK(h_sql_true(db,
	          "SELECT claim_by IS NULL AND claim_until IS NULL FROM pulls "
	          "WHERE connection_id = $1",
	          (const char *[]){ cid, NULL }),
	    "and frees the claim");
	fa = fb = fc;
	/* The pull ran already: the step checks the feed of it. */
	h_sql_do(db,
	    "UPDATE pulls SET next_pull_at = 'infinity' WHERE connection_id = "
	    "$1",
	    (const char *[]){ cid, NULL });
	{
		struct toks t = { 0 };
		char *nid = our_id(fid), *g;

		walk(cursors[nsteps - 1], 500, &t, NULL);
		g = joined(t.v, t.n);
		CHECK(nid != NULL && t.n == 1 && strcmp(t.v[0] + 2, nid) == 0 &&
		        t.v[0][0] == 'a',
		    "the feed shows its new transaction added, once ({%s})", g);
		free(g);
		free(nid);
		toks_free(&t);
	}
	free(fid);
	free(before);
}

int
main(void)
{
	const char *sbx_args[] = { "--transactions", "6", NULL };
	char *keys;
	int k;

	h_init("it_changes", 280);
	db = h_setup(sbx_args);
	k_read = h_secret_new(32);
	k_tokens = h_secret_new(32);
	k_links = h_secret_new(32);
	if (asprintf(&keys, "%s,%s:read,%s:tokens,%s:links", h_api_key(),
	        k_read, k_tokens, k_links) < 0)
		h_bail("asprintf");
	h_env_set("FINXD_API_KEYS", keys);
	free(keys);
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_SYNC_INTERVAL", "3600");
	fa = h_finxd_start();
	fb = h_finxd_start();

	cid = h_connect(fa, user);
	CHECK(cid != NULL, "connected");
	if (cid == NULL || !h_wait_pull_after(db, cid, "", 30))
		h_bail("no first pull");
	test_bank_changes();
	test_concurrent();
	test_bad_input();
	test_claim_lost();
	test_killed_mid_pull();

	for (k = 0; k < nsteps; k++) {
		toks_free(&steps[k]);
		free(cursors[k]);
	}
	free(x_fid);
	free(y_fid);
	free(cid);
	return h_done(test_done());
}
