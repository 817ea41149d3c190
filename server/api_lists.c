/*
 * GET /v1/connections and GET /v1/links: every connection or link,
 * newest first by (created_at, id), in pages with a keyset cursor.  A
 * row created while a client walks the pages sorts before its cursor,
 * so the walk neither repeats nor skips a row that existed when it
 * began.  Items are rendered as GET /v1/connections/{id} and
 * GET /v1/links/{id} render them.
 *
 * The cursor is base64url of "<list>:<micros>:<id>:<tag>": the list ("c"
 * or "l"), created_at in microseconds and the id of the last row shown,
 * and a tag (64 bits of SHA-256 over all of it and the filters).  It
 * holds nothing the page did not show; the tag makes an edited cursor,
 * or one of the other list or of other filters, one that does not
 * decode, so a client cannot carry a position into another listing.
 * The tag is no secret: a forged position only seeks elsewhere in rows
 * the key may read anyway.
 */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "db.h"
#include "encode.h"
#include "mem.h"
#include "secret.h"
#include "store.h"
#include "store_conns.h"
#include "store_links.h"
#include "text.h"

#define CURSOR_MAX 256

/* The tag of a cursor's text, as 16 hex digits into tag. */
static void
cursor_tag(const char *list, const char *micros, const char *id,
    const char *const *filters, int nf, char tag[17])
{
	unsigned char h[32];
	struct buf b;
	char *hx;
	int i;

	buf_init(&b, 4096);
	buf_append(&b, "finxd list cursor", 18);
	buf_append(&b, list, strlen(list) + 1);
	buf_append(&b, micros, strlen(micros) + 1);
	buf_append(&b, id, strlen(id) + 1);
	for (i = 0; i < nf; i++) {
		/* "-" absent, "=value" present: never the same bytes */
		buf_append_str(&b, filters[i] ? "=" : "-");
		if (filters[i] != NULL)
			buf_append(&b, filters[i], strlen(filters[i]) + 1);
	}
	sha256(b.data, b.len, h);
	buf_free(&b);
	hx = hex_encode(h, 8);
	memcpy(tag, hx, 17);
	free(hx);
}

char *
list_cursor_encode(const char *list, const char *const *filters, int nf,
    const char *micros, const char *id)
{
	char tag[17], *plain, *s;

	cursor_tag(list, micros, id, filters, nf, tag);
	plain = xasprintf("%s:%s:%s:%s", list, micros, id, tag);
	s = b64url_encode(plain, strlen(plain));
	free(plain);
	return s;
}

/* Microseconds since the epoch within the years 0001 to 9999, in
 * canonical decimal. */
static bool
micros_valid(const char *s)
{
	const char *d = *s == '-' ? s + 1 : s;
	char *end;
	long long v;

	if (*d < '0' || *d > '9' || (d[0] == '0' && d[1] != '\0'))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	return errno == 0 && *end == '\0' && v > -62135596800000000LL &&
	    v < 253402300800000000LL;
}

/* The four fields of a cursor's text, split in place; false when it
 * has another shape. */
static bool
cursor_split(char *text, char *f[4])
{
	int i;

	for (i = 0; i < 4; i++) {
		f[i] = text;
		text = strchr(text, ':');
		if ((text == NULL) != (i == 3))
			return false;
		if (text != NULL)
			*text++ = '\0';
	}
	return true;
}

bool
list_cursor_decode(const char *s, const char *list,
    const char *const *filters, int nf, char micros[24], char id[37])
{
	unsigned char *raw = NULL;
	char *text = NULL, *f[4], tag[17];
	long n;
	bool ok = false;

	if (strlen(s) > CURSOR_MAX || (n = b64url_decode(s, &raw)) < 1)
		goto out;
	text = xstrndup((const char *)raw, (size_t)n);
	if (strlen(text) != (size_t)n || !cursor_split(text, f) ||
	    strcmp(f[0], list) != 0 || strlen(f[1]) > 20 ||
	    !micros_valid(f[1]) || strlen(f[2]) != 36 || !uuid_valid(f[2]))
		goto out;
	cursor_tag(list, f[1], f[2], filters, nf, tag);
	if (strcmp(tag, f[3]) != 0)
		goto out;
	memcpy(micros, f[1], strlen(f[1]) + 1);
	memcpy(id, f[2], 37);
	ok = true;
out:
	free(text);
	free(raw);
	return ok;
}

/* What tells the two lists apart. */
struct list_kind {
	const char *list;              /* the cursor's first field */
	const char *const *statuses;   /* NULL-terminated */
	const char *status_why;        /* the 400 of another status */
	bool expiring;                 /* takes expiring_before */
};

static const char *const conn_statuses[] = { "active", "reauth_required",
	"revoked", NULL };
static const char *const link_statuses[] = { "pending", "connected",
	"cancelled", "failed", "expired", NULL };

static const struct list_kind conn_list = { "c", conn_statuses,
	"status must be one of active, reauth_required, revoked", true };
static const struct list_kind link_list = { "l", link_statuses,
	"status must be one of pending, connected, cancelled, failed, "
	"expired", false };

/* A listing's query, parsed. */
struct list_args {
	struct store_page q;
	const char *filters[3]; /* status, user_id, expiring_before */
	long limit;
	char micros[24], id[37], rows[24];
};

static bool
status_known(const struct list_kind *k, const char *s)
{
	int i;

	for (i = 0; k->statuses[i] != NULL; i++)
		if (strcmp(k->statuses[i], s) == 0)
			return true;
	return false;
}

/* NULL when the filters will do, else the 400's detail. */
static const char *
filters_check(struct req *r, const struct list_kind *k, struct list_args *a)
{
	const char *limit_s = http_query(r, "limit");
	bool is_date = false;

	a->q.status = a->filters[0] = http_query(r, "status");
	a->q.user_id = a->filters[1] = http_query(r, "user_id");
	if (k->expiring)
		a->q.expiring_before = a->filters[2] =
		    http_query(r, "expiring_before");
	if (a->q.status != NULL && !status_known(k, a->q.status))
		return k->status_why;
	if (a->q.user_id != NULL && !user_id_valid(a->q.user_id))
		return "user_id must be 1 to 255 bytes of UTF-8 without "
		       "control characters";
	if (a->q.expiring_before != NULL &&
	    (!date_text_valid(a->q.expiring_before, &is_date) || is_date))
		return "expiring_before must be an RFC 3339 timestamp with a "
		       "time zone";
	if (limit_s != NULL && !parse_long(limit_s, 1, 500, &a->limit))
		return "limit must be a whole number from 1 to 500";
	return NULL;
}

/* Parse the query into *a; false queues the 400 in *ret. */
static bool
list_args_parse(struct req *r, const struct list_kind *k,
    struct list_args *a, enum MHD_Result *ret)
{
	const char *cursor = http_query(r, "cursor"), *bad;

	memset(a, 0, sizeof(*a));
	a->limit = 100;
	if (api_fail_undecodable(r, (const char *[]){ "cursor", "status",
					"user_id", "expiring_before", "limit",
					NULL },
		ret))
		return false;
	bad = filters_check(r, k, a);
	if (bad == NULL && cursor != NULL &&
	    !list_cursor_decode(cursor, k->list, a->filters, 3, a->micros,
		a->id))
		bad = "cursor is not valid for this list and these filters";
	if (bad != NULL) {
		*ret = api_fail(r, ST_INVALID_PARAMETER, bad);
		return false;
	}
	if (cursor != NULL) {
		a->q.cursor_micros = a->micros;
		a->q.cursor_id = a->id;
	}
	/* One more row than shown tells whether a page follows. */
	snprintf(a->rows, sizeof(a->rows), "%ld", a->limit + 1);
	a->q.rows = a->rows;
	return true;
}

/* {"<name>": items, "next_cursor": ...}: the cursor after the row of
 * (micros, id) when there is one (NULL: the last page). */
static enum MHD_Result
page_answer(struct req *r, const struct list_kind *k,
    const struct list_args *a, const char *name, json_object *items,
    const char *micros, const char *id)
{
	json_object *o = json_object_new_object();
	char *next = NULL;

	if (micros != NULL && id != NULL)
		next = list_cursor_encode(k->list, a->filters, 3, micros, id);
	json_object_object_add(o, name, items);
	json_object_object_add(o, "next_cursor",
	    next ? json_object_new_string(next) : NULL);
	free(next);
	return http_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_conns_list(struct req *r)
{
	struct store_conns l;
	struct list_args a;
	enum MHD_Result ret;
	json_object *arr;
	const struct store_conn *last = NULL;
	PGconn *c;
	bool ok;
	int i;

	if (!list_args_parse(r, &conn_list, &a, &ret))
		return ret;
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	ok = store_conn_page(c, &a.q, &l);
	db_release(c);
	if (!ok)
		return api_fail_db(r);
	arr = json_object_new_array();
	for (i = 0; i < l.n && i < a.limit; i++)
		json_object_array_add(arr, api_conn_json(&l.v[i]));
	if (l.n > a.limit)
		last = &l.v[a.limit - 1];
	ret = page_answer(r, &conn_list, &a, "connections", arr,
	    last ? last->created_micros : NULL, last ? last->id : NULL);
	store_conns_free(&l);
	return ret;
}

enum MHD_Result
h_links_list(struct req *r)
{
	struct store_link_view *v, *last = NULL;
	struct list_args a;
	enum MHD_Result ret;
	json_object *arr;
	PGconn *c;
	bool ok;
	int i, n;

	if (!list_args_parse(r, &link_list, &a, &ret))
		return ret;
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	ok = store_link_page(c, &a.q, &v, &n);
	db_release(c);
	if (!ok)
		return api_fail_db(r);
	arr = json_object_new_array();
	for (i = 0; i < n && i < a.limit; i++)
		json_object_array_add(arr, api_link_json(&v[i]));
	if (n > a.limit)
		last = &v[a.limit - 1];
	ret = page_answer(r, &link_list, &a, "links", arr,
	    last ? last->created_micros : NULL, last ? last->id : NULL);
	store_link_views_free(v, n);
	return ret;
}
