/*
 * GET /v1/connections and GET /v1/links end to end: newest first, the
 * same items as the single-item endpoints, keyset walks of limit 2 with
 * new rows arriving between pages (none missed, none repeated), every
 * filter (a pending link past its expiry counts as expired), every bad
 * input (cursors that do not decode, of the other list or of other
 * filters, unknown statuses, bad dates, limits) and the scopes.
 */
#include "it_common.h"

#define MAXV 64

static const char *db;
static int f;
static char *k_links, *k_read;

/* A list of ids. */
struct ids {
	char *v[MAXV];
	int n;
};

static void
ids_free(struct ids *s)
{
	int i;

	for (i = 0; i < s->n; i++)
		free(s->v[i]);
	s->n = 0;
}

static bool
ids_has(const struct ids *s, const char *id)
{
	int i;

	for (i = 0; i < s->n; i++)
		if (h_streq(s->v[i], id))
			return true;
	return false;
}

/* The ids a query answers, in its order (each column 0 of a row). */
static void
ids_sql(struct ids *s, const char *q, const char *const *params)
{
	PGresult *r = h_sql(db, q, params);
	int i;

	s->n = 0;
	for (i = 0; r != NULL && i < PQntuples(r) && i < MAXV; i++)
		s->v[s->n++] = h_dup(PQgetvalue(r, i, 0));
	PQclear(r);
}

static bool
ids_equal(const struct ids *a, const struct ids *b)
{
	int i;

	if (a->n != b->n)
		return false;
	for (i = 0; i < a->n; i++)
		if (!h_streq(a->v[i], b->v[i]))
			return false;
	return true;
}

/* GET path (one page) with key (NULL: the main key); the status. */
static long
get(const char *key, const char *path, struct h_resp *r)
{
	if (key == NULL)
		return h_api(f, "GET", path, NULL, r);
	return h_api_key_call(f, key, "GET", path, NULL, r);
}

/* One page of list name at path: its ids appended to out, its
 * next_cursor (malloc'd, NULL on the last page).  false when the answer
 * is not a 200 of that shape. */
static bool
page(const char *path, const char *name, const char *idkey,
    struct ids *out, char **next)
{
	struct json_object *o, *arr;
	struct h_resp r;
	size_t i;
	bool ok;

	*next = NULL;
	get(NULL, path, &r);
	o = h_resp_json(&r);
	ok = r.status == 200 && json_object_object_get_ex(o, name, &arr) &&
	    json_object_is_type(arr, json_type_array) &&
	    (h_jnull(o, "next_cursor") || h_jstr(o, "next_cursor"));
	for (i = 0; ok && i < json_object_array_length(arr); i++)
		if (out->n < MAXV)
			out->v[out->n++] = h_dup(h_jstr(
			    json_object_array_get_idx(arr, i), idkey));
	if (ok)
		*next = h_dup(h_jstr(o, "next_cursor"));
	else
		printf("# GET %s answered %ld\n", path, r.status);
	h_resp_free(&r);
	return ok;
}

/* Walk base (with "?" or "&" for more) in pages of limit 2, calling
 * between(arg) after each page; the ids in *out.  The pages. */
static int
walk(const char *base, const char *name, const char *idkey,
    void (*between)(void *), void *arg, struct ids *out)
{
	char *cursor = NULL, *path;
	int pages = 0;
	bool ok;

	out->n = 0;
	do {
		path = cursor ? h_fmt("%slimit=2&cursor=%s", base, cursor)
			      : h_fmt("%slimit=2", base);
		free(cursor);
		ok = page(path, name, idkey, out, &cursor);
		free(path);
		pages++;
		if (between != NULL && cursor != NULL)
			between(arg);
	} while (ok && cursor != NULL && pages < 40);
	free(cursor);
	return ok ? pages : -1;
}

/* ---- the rows ---- */

static void
add_connection(void *user)
{
	char *cid = h_connect_retry(f, user);

	if (cid == NULL)
		h_bail("no connection for %s", (char *)user);
	free(cid);
}

static void
add_link(void *user)
{
	struct h_resp r;

	if (h_link_create(f, user, H_RETURN_URL, &r) != 201)
		h_bail("POST /v1/links answered %ld", r.status);
	h_resp_free(&r);
}

/* ---- tests ---- */

/* The first page of path: its items, each equal to GET by id. */
static void
test_items(const char *path, const char *name, const char *idkey,
    const char *one)
{
	struct json_object *arr;
	struct h_resp r, s;
	size_t i, same = 0, n = 0;

	get(NULL, path, &r);
	if (json_object_object_get_ex(h_resp_json(&r), name, &arr))
		n = json_object_array_length(arr);
	for (i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		char *p = h_fmt(one, h_jstr(e, idkey));

		get(NULL, p, &s);
		same += s.status == 200 &&
		    strcmp(json_object_to_json_string(e),
			json_object_to_json_string(h_resp_json(&s))) == 0;
		h_resp_free(&s);
		free(p);
	}
	CHECK(r.status == 200 && n > 0 && same == n,
	    "%s: %zu items, each as its GET by id shows it", path, n);
	h_resp_free(&r);
}

static void
test_walk_conns(void)
{
	struct ids before, walked, now;
	int pages, i, dup = 0;

	ids_sql(&before, "SELECT id FROM connections ORDER BY created_at "
			 "DESC, id DESC", NULL);
	pages = walk("/v1/connections?", "connections", "connection_id",
	    add_connection, "u-late", &walked);
	CHECK(ids_equal(&before, &walked),
	    "connections walked in %d pages of 2 while %d were added: the %d "
	    "there at the start, newest first, each once", pages, pages - 1,
	    before.n);
	for (i = 0; i < walked.n; i++)
		dup += ids_has(&before, walked.v[i]) ? 0 : 1;
	CHECK(dup == 0, "no connection added during the walk shows in it");
	ids_sql(&now, "SELECT count(*) FROM connections", NULL);
	CHECK(now.n == 1 && atoi(now.v[0]) == before.n + pages - 1,
	    "the connections added meanwhile exist");
	ids_free(&before);
	ids_free(&walked);
	ids_free(&now);
}

static void
test_walk_links(void)
{
	struct ids before, walked;
	int pages;

	ids_sql(&before, "SELECT id FROM links ORDER BY created_at DESC, id "
			 "DESC", NULL);
	pages = walk("/v1/links?", "links", "link_id", add_link, "u-late",
	    &walked);
	CHECK(pages > 2 && ids_equal(&before, &walked),
	    "links walked in %d pages of 2 while links were added: the %d "
	    "there at the start, newest first, each once", pages, before.n);
	ids_free(&before);
	ids_free(&walked);
}

/* A filtered walk of path equals the SQL's ids. */
static void
check_filter(const char *path, const char *name, const char *idkey,
    const char *sql, const char *const *params)
{
	struct ids want, got;
	int pages;

	ids_sql(&want, sql, params);
	pages = walk(path, name, idkey, NULL, NULL, &got);
	CHECK(pages > 0 && want.n > 0 && ids_equal(&want, &got),
	    "%s: %d rows in %d pages, as SQL selects them", path, got.n,
	    pages);
	ids_free(&want);
	ids_free(&got);
}

#define CONN_ORDER " ORDER BY created_at DESC, id DESC"

static void
test_conn_filters(void)
{
	check_filter("/v1/connections?status=active&", "connections",
	    "connection_id",
	    "SELECT id FROM connections WHERE status = 'active'" CONN_ORDER,
	    NULL);
	check_filter("/v1/connections?status=revoked&", "connections",
	    "connection_id",
	    "SELECT id FROM connections WHERE status = 'revoked'" CONN_ORDER,
	    NULL);
	check_filter("/v1/connections?status=reauth_required&",
	    "connections", "connection_id",
	    "SELECT id FROM connections WHERE status = 'reauth_required'"
	    CONN_ORDER, NULL);
	check_filter("/v1/connections?user_id=u-a&", "connections",
	    "connection_id",
	    "SELECT id FROM connections WHERE user_id = 'u-a'" CONN_ORDER,
	    NULL);
	check_filter("/v1/connections?user_id=u-a&status=active&",
	    "connections", "connection_id",
	    "SELECT id FROM connections WHERE user_id = 'u-a' AND status = "
	    "'active'" CONN_ORDER, NULL);
	check_filter("/v1/connections?expiring_before=2099-01-01T00:00:00Z&",
	    "connections", "connection_id",
	    "SELECT id FROM connections WHERE refresh_expires_at < "
	    "'2099-01-01Z' OR consent_expires_at < '2099-01-01Z'" CONN_ORDER,
	    NULL);
}

static void
test_conn_expiring(void)
{
	char *when = h_sql_value(db,
	    "SELECT to_char((now() + interval '10 days 2 hours') AT TIME "
	    "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"%2B02:00\"')", NULL);
	char *path = h_fmt("/v1/connections?expiring_before=%s&", when);
	struct ids want, got;

	ids_sql(&want, "SELECT id FROM connections WHERE refresh_expires_at "
		       "< now() + interval '10 days' OR consent_expires_at < "
		       "now() + interval '10 days'" CONN_ORDER, NULL);
	walk(path, "connections", "connection_id", NULL, NULL, &got);
	CHECK(want.n == 2 && ids_equal(&want, &got),
	    "expiring_before (an offset of +02:00): the one whose refresh "
	    "token and the one whose consent runs out within 10 days");
	ids_free(&want);
	ids_free(&got);
	free(path);
	free(when);
}

#define LINK_ORDER " ORDER BY created_at DESC, id DESC"

static void
test_link_filters(void)
{
	static const char *const st[] = { "connected", "cancelled", "failed",
		NULL };
	char *p, *q;
	int i;

	for (i = 0; st[i] != NULL; i++) {
		p = h_fmt("/v1/links?status=%s&", st[i]);
		q = h_fmt("SELECT id FROM links WHERE status = '%s'" LINK_ORDER,
		    st[i]);
		check_filter(p, "links", "link_id", q, NULL);
		free(p);
		free(q);
	}
	check_filter("/v1/links?status=pending&", "links", "link_id",
	    "SELECT id FROM links WHERE status = 'pending' AND expires_at > "
	    "now()" LINK_ORDER, NULL);
	check_filter("/v1/links?status=expired&", "links", "link_id",
	    "SELECT id FROM links WHERE status = 'expired' OR (status = "
	    "'pending' AND expires_at <= now())" LINK_ORDER, NULL);
	check_filter("/v1/links?user_id=u-b&", "links", "link_id",
	    "SELECT id FROM links WHERE user_id = 'u-b'" LINK_ORDER, NULL);
	check_filter("/v1/links?user_id=u-c&status=expired&", "links",
	    "link_id",
	    "SELECT id FROM links WHERE user_id = 'u-c' AND (status = "
	    "'expired' OR expires_at <= now())" LINK_ORDER, NULL);
}

/* path answers 400 invalid_parameter naming param. */
static void
bad(const char *path, const char *param)
{
	struct h_resp r;

	get(NULL, path, &r);
	CHECK(r.status == 400 && h_err_is(&r, "invalid_parameter") &&
	        h_err_message(&r) && strstr(h_err_message(&r), param),
	    "%s: 400 invalid_parameter about %s (%ld)", path, param,
	    r.status);
	h_resp_free(&r);
}

/* The next_cursor of the first page of path (malloc'd). */
static char *
first_cursor(const char *path)
{
	struct ids s = { .n = 0 };
	char *next = NULL;

	page(path, strstr(path, "links") ? "links" : "connections",
	    strstr(path, "links") ? "link_id" : "connection_id", &s, &next);
	ids_free(&s);
	if (next == NULL)
		h_bail("no cursor from %s", path);
	return next;
}

static void
bad_cursors(void)
{
	char *cc = first_cursor("/v1/connections?limit=1");
	char *lc = first_cursor("/v1/links?limit=1");
	char *ac = first_cursor("/v1/connections?limit=1&status=active");
	char *t = h_dup(cc), *p;
	struct h_resp r;
	/* each path with a cursor its list did not make for these filters */
	const struct {
		const char *path, *cursor;
	} wrong[] = {
		{ "/v1/connections?cursor=", t },
		{ "/v1/connections?cursor=", lc },
		{ "/v1/links?cursor=", cc },
		{ "/v1/connections?cursor=", ac },
		{ "/v1/connections?status=revoked&cursor=", ac },
		{ "/v1/connections?status=active&user_id=u-a&cursor=", ac },
	};
	size_t i;

	t[3] = t[3] == 'A' ? 'B' : 'A';
	bad("/v1/connections?cursor=abc", "cursor");
	bad("/v1/connections?cursor=%21%21", "cursor");
	bad("/v1/connections?cursor=", "cursor");
	bad("/v1/connections?cursor=%00", "cursor");
	bad("/v1/links?cursor=%zz", "cursor");
	for (i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		p = h_fmt("%s%s", wrong[i].path, wrong[i].cursor);
		bad(p, "cursor");
		free(p);
	}
	p = h_fmt("/v1/connections?status=active&cursor=%s", ac);
	CHECK(get(NULL, p, &r) == 200,
	    "the same cursor with its own filters: 200 (%ld)", r.status);
	h_resp_free(&r);
	free(p);
	free(cc);
	free(lc);
	free(ac);
	free(t);
}

/* path + "?" + query answers 400 naming param (bad's check). */
static void
bad_query(const char *path, const char *query, const char *param)
{
	char *p = h_fmt("%s?%s", path, query);

	bad(p, param);
	free(p);
}

static void
test_bad_input(void)
{
	static const struct {
		const char *query, *param;
	} both[] = {
		{ "status=bogus", "status" }, { "status=", "status" },
		{ "user_id=", "user_id" }, { "user_id=a%01b", "user_id" },
		{ "limit=0", "limit" }, { "limit=501", "limit" },
		{ "limit=abc", "limit" }, { "limit=", "limit" },
	};
	static const char *const dates[] = { "2026-03-01",
		"2026-03-01T00:00:00", "2026-02-30T00:00:00Z", "soon", "" };
	char *q;
	size_t i;

	for (i = 0; i < sizeof(both) / sizeof(both[0]); i++) {
		bad_query("/v1/connections", both[i].query, both[i].param);
		bad_query("/v1/links", both[i].query, both[i].param);
	}
	bad("/v1/links?status=active", "status");
	bad("/v1/connections?status=pending", "status");
	for (i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		q = h_fmt("expiring_before=%s", dates[i]);
		bad_query("/v1/connections", q, "expiring_before");
		free(q);
	}
	bad_cursors();
}

static void
test_limits(void)
{
	struct ids s = { .n = 0 };
	char *next = NULL;
	long n = h_sql_long(db, "SELECT count(*) FROM links", NULL);

	CHECK(page("/v1/links?limit=500", "links", "link_id", &s, &next) &&
	        next == NULL && s.n == n,
	    "limit 500: all %ld links on one page, next_cursor null", n);
	ids_free(&s);
	CHECK(page("/v1/links", "links", "link_id", &s, &next) &&
	        next == NULL && s.n == n,
	    "no limit: the default of 100 holds all %ld", n);
	ids_free(&s);
	CHECK(page("/v1/links?user_id=nobody", "links", "link_id", &s,
		  &next) && next == NULL && s.n == 0,
	    "a user without links: an empty page, next_cursor null");
}

static void
test_scopes(void)
{
	struct h_resp r;

	CHECK(get(k_links, "/v1/connections", &r) == 403,
	    "a links-only key on GET /v1/connections: 403 (%ld)", r.status);
	h_resp_free(&r);
	CHECK(get(k_links, "/v1/links", &r) == 200,
	    "a links-only key on GET /v1/links: 200 (%ld)", r.status);
	h_resp_free(&r);
	CHECK(get(k_read, "/v1/links", &r) == 200,
	    "a read key on GET /v1/links: 200 (%ld)", r.status);
	h_resp_free(&r);
	CHECK(get(k_read, "/v1/connections", &r) == 200,
	    "a read key on GET /v1/connections: 200 (%ld)", r.status);
	h_resp_free(&r);
	CHECK(h_api_key_call(f, "not-a-configured-key-0123456789", "GET",
		  "/v1/connections", NULL, &r) == 401,
	    "an unknown key: 401 (%ld)", r.status);
	h_resp_free(&r);
}

/* Connections of u-a (3), u-b (2), one revoked, one reauth_required,
 * two with deadlines within 10 days; links of every status. */
static void
make_rows(void)
{
	static const char *const users[] = { "u-a", "u-b", "u-a", "u-b",
		"u-a", NULL };
	char *cid[5];
	int i;

	for (i = 0; users[i] != NULL; i++)
		if ((cid[i] = h_connect_retry(f, users[i])) == NULL)
			h_bail("no connection for %s", users[i]);
	h_sql_do(db, "UPDATE connections SET refresh_expires_at = now() + "
		     "interval '300 days', consent_expires_at = now() + "
		     "interval '300 days'", NULL);
	h_sql_do(db, "UPDATE connections SET refresh_expires_at = now() + "
		     "interval '2 days' WHERE id = $1",
	    (const char *[]){ cid[1], NULL });
	h_sql_do(db, "UPDATE connections SET consent_expires_at = now() + "
		     "interval '3 days' WHERE id = $1",
	    (const char *[]){ cid[2], NULL });
	h_sql_do(db, "UPDATE connections SET status = 'reauth_required' "
		     "WHERE id = $1", (const char *[]){ cid[3], NULL });
	if (h_conn_api(f, "DELETE", cid[4], NULL, NULL) != 200)
		h_bail("DELETE answered otherwise");
	for (i = 0; i < 5; i++)
		free(cid[i]);
	add_link("u-a");
	add_link("u-c");
	add_link("u-c");
	h_sql_do(db, "UPDATE links SET expires_at = now() - interval '1 "
		     "second' WHERE id = (SELECT id FROM links WHERE user_id "
		     "= 'u-c' ORDER BY created_at LIMIT 1)", NULL);
	h_sql_do(db, "UPDATE links SET status = 'expired', completed_at = "
		     "now() WHERE id = (SELECT id FROM links WHERE user_id = "
		     "'u-c' ORDER BY created_at DESC LIMIT 1)", NULL);
	add_link("u-b");
	add_link("u-b");
	h_sql_do(db, "UPDATE links SET status = 'cancelled', reason = "
		     "'user_cancelled', completed_at = now() WHERE id = "
		     "(SELECT id FROM links WHERE user_id = 'u-b' AND status = "
		     "'pending' ORDER BY created_at DESC LIMIT 1)", NULL);
	h_sql_do(db, "UPDATE links SET status = 'failed', reason = "
		     "'finx_error', completed_at = now() WHERE id = (SELECT id "
		     "FROM links WHERE user_id = 'u-a' AND status = 'pending' "
		     "LIMIT 1)", NULL);
}

int
main(void)
{
	char *keys;

	h_init("it_lists", 280);
	db = h_setup(NULL);
	k_links = h_secret_new(32);
	k_read = h_secret_new(32);
	if (asprintf(&keys, "%s,%s:links,%s:read", h_api_key(), k_links,
		k_read) < 0)
		h_bail("asprintf");
	h_env_set("FINXD_API_KEYS", keys);
	free(keys);
	h_env_set("FINXD_REFRESH_INTERVAL", "3600");
	f = h_finxd_start();

	make_rows();
	test_items("/v1/connections", "connections", "connection_id",
	    "/v1/connections/%s");
	test_items("/v1/links", "links", "link_id", "/v1/links/%s");
	test_conn_filters();
	test_conn_expiring();
	test_link_filters();
	test_bad_input();
	test_limits();
	test_scopes();
	test_walk_links();
	test_walk_conns();
	return h_done(test_done());
}
