/*
 * GET /v1/events, GET /v1/events/{id}, POST /v1/events/{id}/redeliver.
 *
 * The walk: oldest first after a position, which `after` gives as an
 * event id or as a next_cursor.  The cursor is base64url of
 * "e:<xid>:<seq>:<tag>", a place in the (xid, seq) order of
 * store_events.c and a tag of the `types` it was made for (a position
 * past rows of other types is no place to start another filter from).
 * A page that is not full moves the cursor to the snapshot's horizon
 * (xmin, 0): a reader polling an idle log does not walk the same rows
 * again, nothing can appear behind it, and an `after` event id that is
 * beyond the horizon (one just seen in a webhook, whose neighbours may
 * still be committing) moves back to it rather than skip them: such a
 * reader may see events again, never miss one (EVENTS.md).  A forged
 * cursor only seeks elsewhere in rows the key may read anyway; one that
 * does not decode, or of other types, is a 400.
 */
#include "api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "encode.h"
#include "mem.h"
#include "secret.h"
#include "store_events.h"
#include "text.h"
#include "webhook.h"

#define CURSOR_MAX 128

/* "evt_" and 32 hex digits (any case) as a uuid's text into out. */
static bool
event_uuid(const char *s, char out[37])
{
	int i, o = 0;

	if (strncmp(s, "evt_", 4) != 0 || strlen(s) != 36)
		return false;
	for (i = 0; i < 32; i++) {
		if (!isxdigit((unsigned char)s[4 + i]))
			return false;
		if (i == 8 || i == 12 || i == 16 || i == 20)
			out[o++] = '-';
		out[o++] = (char)tolower((unsigned char)s[4 + i]);
	}
	out[o] = '\0';
	return true;
}

/* Canonical decimal digits of at most 20, into out. */
static bool
digits(const char *s, size_t n, char out[24])
{
	size_t i;

	if (n == 0 || n > 20 || (s[0] == '0' && n > 1))
		return false;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

/* 8 hex digits of SHA-256 over the types literal (or "" for all). */
static void
types_tag(const char *types, char tag[9])
{
	unsigned char h[32];
	char *hx;

	sha256(types ? types : "", types ? strlen(types) : 0, h);
	hx = hex_encode(h, 4);
	memcpy(tag, hx, 9);
	free(hx);
}

static char *
event_cursor_encode(const struct store_event_pos *p, const char *types)
{
	char tag[9], *plain, *s;

	types_tag(types, tag);
	plain = xasprintf("e:%s:%s:%s", p->xid, p->seq, tag);
	s = b64url_encode(plain, strlen(plain));
	free(plain);
	return s;
}

static bool
event_cursor_decode(const char *s, const char *types,
    struct store_event_pos *p)
{
	unsigned char *raw = NULL;
	char *text = NULL, *f[4], tag[9];
	long n;
	bool ok = false;
	int i;

	if (strlen(s) > CURSOR_MAX || (n = b64url_decode(s, &raw)) < 5)
		goto out;
	text = xstrndup((const char *)raw, (size_t)n);
	if (strlen(text) != (size_t)n)
		goto out;
	for (i = 0, f[0] = text; i < 3; i++) {
		if ((f[i + 1] = strchr(f[i], ':')) == NULL)
			goto out;
		*f[i + 1]++ = '\0';
	}
	types_tag(types, tag);
	ok = strcmp(f[0], "e") == 0 && strcmp(f[3], tag) == 0 &&
	    digits(f[1], strlen(f[1]), p->xid) &&
	    digits(f[2], strlen(f[2]), p->seq);
out:
	free(text);
	free(raw);
	return ok;
}

/* `types`: known event types, comma-separated, as a text[] literal
 * into *lit (NULL: every type).  False: not valid. */
static bool
types_param(const char *v, char **lit)
{
	char **items;
	size_t n, i, j;
	bool ok = true;

	*lit = NULL;
	if (v == NULL)
		return true;
	items = text_split_list(v, &n);
	for (i = 0; i < n && ok; i++) {
		for (j = 0; event_types[j] != NULL; j++)
			if (strcmp(event_types[j], items[i]) == 0)
				break;
		ok = event_types[j] != NULL;
	}
	if (ok && n > 0)
		*lit = webhook_types_literal(items, n);
	text_free_list(items, n);
	return ok && n > 0;
}

/* `after` into *pos; NULL when fine, else the 400's detail.  An event id
 * is looked up on c (a failed lookup: *db_failed). */
static const char *
after_param(PGconn *c, const char *v, const char *types,
    struct store_event_pos *pos, bool *db_failed)
{
	char id[37];
	int got;

	*db_failed = false;
	snprintf(pos->xid, sizeof(pos->xid), "0");
	snprintf(pos->seq, sizeof(pos->seq), "0");
	if (v == NULL)
		return NULL;
	if (!event_uuid(v, id))
		return event_cursor_decode(v, types, pos)
		    ? NULL
		    : "after must be an event id or a next_cursor of these "
		      "types";
	if ((got = store_event_position(c, id, pos)) < 0)
		*db_failed = true;
	return got == 0 ? "after names no event (it may be past the "
			  "retention)"
			: NULL;
}

/*
 * A full page goes on after its last event (has_more: there may be
 * more now).  Any other page has shown everything below the horizon,
 * and goes on from there: forward for a reader that was behind it,
 * back for one whose `after` was beyond it.
 */
static enum MHD_Result
events_page_answer(struct req *r, const struct store_event_page *p,
    const char *types, long limit)
{
	json_object *o = json_object_new_object(), *arr;
	bool full = p->n >= limit;
	char *cur;
	int i;

	arr = json_object_new_array_ext(p->n);
	for (i = 0; i < p->n; i++)
		json_object_array_add(arr, json_tokener_parse(p->json[i]));
	cur = event_cursor_encode(full ? &p->last : &p->horizon, types);
	json_object_object_add(o, "events", arr);
	json_object_object_add(o, "next_cursor", json_object_new_string(cur));
	json_object_object_add(o, "has_more", json_object_new_boolean(full));
	free(cur);
	return http_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_events_list(struct req *r)
{
	const char *limit_s = http_query(r, "limit"), *bad = NULL;
	struct store_event_pos after;
	struct store_event_page p;
	enum MHD_Result ret;
	char *types = NULL;
	long limit = 100;
	bool failed, ok;
	PGconn *c;

	if (api_fail_undecodable(r, (const char *[]){ "after", "types",
					"limit", NULL },
		&ret))
		return ret;
	if (limit_s != NULL && !parse_long(limit_s, 1, 500, &limit))
		bad = "limit must be a whole number from 1 to 500";
	else if (!types_param(http_query(r, "types"), &types))
		bad = "types must be event types, comma-separated";
	if (bad != NULL)
		return api_fail(r, ST_INVALID_PARAMETER, bad);
	if ((c = api_db(r, &ret)) == NULL) {
		free(types);
		return ret;
	}
	bad = after_param(c, http_query(r, "after"), types, &after, &failed);
	ok = !failed && bad == NULL &&
	    store_events_page(c, &after, types, (int)limit, &p);
	db_release(c);
	if (bad != NULL || !ok) {
		free(types);
		return bad ? api_fail(r, ST_INVALID_PARAMETER, bad)
			   : api_fail_db(r);
	}
	ret = events_page_answer(r, &p, types, limit);
	store_event_page_free(&p);
	free(types);
	return ret;
}

/* The event with its delivery state, as GET /v1/events/{id} shows it. */
static json_object *
event_json(const struct store_event *e)
{
	json_object *o = json_tokener_parse(e->json), *d;
	const char *st = e->delivery;

	if (strcmp(st, "pending") == 0 && !webhook_delivers(api_cfg, e->type))
		st = "none";
	d = json_object_new_object();
	json_object_object_add(d, "status", json_object_new_string(st));
	json_object_object_add(d, "attempts",
	    json_object_new_int64(e->attempts));
	json_object_object_add(d, "last_attempt_at",
	    e->last_attempt_at ? json_object_new_string(e->last_attempt_at)
			       : NULL);
	json_object_object_add(d, "last_error",
	    e->last_error ? json_object_new_string(e->last_error) : NULL);
	json_object_object_add(d, "last_status",
	    e->last_status ? json_object_new_int64(e->last_status) : NULL);
	json_object_object_add(o, "delivery", d);
	return o;
}

/* The event of path parameter 0 into *e, answering for itself unless
 * it returns true; redeliver queues it first. */
static bool
event_load(struct req *r, bool redeliver, struct store_event *e,
    enum MHD_Result *ret)
{
	char id[37];
	PGconn *c;
	int got = 1;

	memset(e, 0, sizeof(*e));
	if (r->n_params < 1 || !event_uuid(r->params[0], id)) {
		*ret = api_fail(r, ST_NOT_FOUND, "no such event");
		return false;
	}
	if ((c = api_db(r, ret)) == NULL)
		return false;
	if (redeliver)
		got = store_event_redeliver(c, id);
	if (got == 1)
		got = store_event_get(c, id, e);
	db_release(c);
	if (got < 0)
		*ret = api_fail_db(r);
	else if (got == 0)
		*ret = api_fail(r, ST_NOT_FOUND, "no such event");
	return got == 1;
}

enum MHD_Result
h_event_get(struct req *r)
{
	struct store_event e;
	enum MHD_Result ret;

	if (!event_load(r, false, &e, &ret))
		return ret;
	ret = http_json(r, MHD_HTTP_OK, event_json(&e));
	store_event_free(&e);
	return ret;
}

enum MHD_Result
h_event_redeliver(struct req *r)
{
	struct store_event e;
	enum MHD_Result ret;

	if (api_cfg->webhook_url == NULL)
		return api_fail(r, ST_CONFLICT,
		    "no webhook is configured (FINXD_WEBHOOK_URL)");
	if (webhook_gone())
		return api_fail(r, ST_CONFLICT,
		    "the webhook URL answered 410 Gone: deliveries to it have "
		    "stopped (configure another FINXD_WEBHOOK_URL)");
	if (!event_load(r, false, &e, &ret))
		return ret;
	if (!webhook_delivers(api_cfg, e.type)) {
		store_event_free(&e);
		return api_fail(r, ST_CONFLICT,
		    "this event's type is not in FINXD_WEBHOOK_EVENTS");
	}
	store_event_free(&e);
	if (!event_load(r, true, &e, &ret))
		return ret;
	ret = http_json(r, MHD_HTTP_ACCEPTED, event_json(&e));
	store_event_free(&e);
	return ret;
}
