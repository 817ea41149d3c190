/*
 * The control API under /_sandbox/ (no auth, tests only): recorded
 * requests, counters, knobs, fault injection, issued secrets, and data or
 * grant manipulation. These requests are neither recorded nor faulted.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx_config.h"
#include "sbx_data.h"
#include "sbx_handlers.h"

static enum MHD_Result
ctl_bad(struct sbx_req *r, const char *msg)
{
	return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
	    "Invalid request", msg, NULL);
}

static enum MHD_Result
ctl_ok(struct sbx_req *r)
{
	return http_reply_json(r, MHD_HTTP_OK, json_object_new_object());
}

static json_object *
opt_string(const char *s)
{
	return s != NULL ? json_object_new_string(s) : NULL;
}

static json_object *
record_json(const struct sbx_record *rec)
{
	json_object *o = json_object_new_object(),
	            *h = json_object_new_object();
	json_object *prev;
	struct sbx_buf joined;
	size_t i;

	json_object_object_add(o, "method",
	    json_object_new_string(rec->method));
	json_object_object_add(o, "path", json_object_new_string(rec->path));
	json_object_object_add(o, "query", json_object_new_string(rec->query));
	json_object_object_add(o, "content_type",
	    opt_string(rec->content_type));
	json_object_object_add(o, "authorization_scheme",
	    opt_string(rec->auth_scheme));
	for (i = 0; i < rec->nhdrs; i++) {
		/* Repeated headers are joined as HTTP allows. */
		if (json_object_object_get_ex(h, rec->hdrs[i].name, &prev)) {
			buf_init(&joined);
			buf_addf(&joined, "%s, %s",
			    json_object_get_string(prev), rec->hdrs[i].value);
			json_object_object_add(h, rec->hdrs[i].name,
			    json_object_new_string(buf_str(&joined)));
			buf_free(&joined);
		} else
			json_object_object_add(h, rec->hdrs[i].name,
			    json_object_new_string(rec->hdrs[i].value));
	}
	json_object_object_add(o, "headers", h);
	json_object_object_add(o, "body",
	    json_object_new_string_len(rec->body, (int)rec->body_len));
	json_object_object_add(o, "received_at_ms",
	    json_object_new_int64(rec->at_ms));
	json_object_object_add(o, "handled_us",
	    rec->handled_us >= 0 ? json_object_new_int64(rec->handled_us)
				 : NULL);
	return o;
}

enum MHD_Result
h_ctl_requests(struct sbx_req *r)
{
	json_object *o = json_object_new_object(), *arr;
	size_t i;

	arr = json_object_new_array_ext((int)SBX_RECORD_MAX);
	sbx_lock();
	for (i = 0; i < sbx.rec_n; i++)
		json_object_array_add(arr,
		    record_json(sbx.rec[(sbx.rec_head + i) % SBX_RECORD_MAX]));
	sbx_unlock();
	json_object_object_add(o, "requests", arr);
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_ctl_requests_clear(struct sbx_req *r)
{
	sbx_lock();
	sbx_records_clear();
	sbx_unlock();
	return ctl_ok(r);
}

enum MHD_Result
h_ctl_stats(struct sbx_req *r)
{
	json_object *o = json_object_new_object();
	size_t i;

	sbx_lock();
	for (i = 0; i < STAT__COUNT; i++)
		json_object_object_add(o, sbx_stat_names[i],
		    json_object_new_int64(sbx.stats[i]));
	sbx_unlock();
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_ctl_stats_clear(struct sbx_req *r)
{
	sbx_lock();
	memset(sbx.stats, 0, sizeof(sbx.stats));
	sbx_unlock();
	return ctl_ok(r);
}

enum MHD_Result
h_ctl_config(struct sbx_req *r)
{
	json_object *o;

	sbx_lock();
	o = config_json(&sbx.cfg);
	sbx_unlock();
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_ctl_config_set(struct sbx_req *r)
{
	struct sbx_config c;
	json_object *in, *out = NULL;
	char err[256];
	int bad = 0;

	if (http_body_json(r, &in, err, sizeof(err)) == -1)
		return ctl_bad(r, err);
	sbx_lock();
	/* All or nothing: apply to a copy, publish only if every key is ok. */
	c = sbx.cfg;
	json_object_object_foreach(in, key, val)
	{
		if (config_set_json(&c, key, val, err, sizeof(err)) == -1) {
			bad = 1;
			break;
		}
	}
	if (!bad) {
		sbx.cfg = c;
		out = config_json(&sbx.cfg);
	}
	sbx_unlock();
	json_object_put(in);
	if (bad)
		return ctl_bad(r, err);
	return http_reply_json(r, MHD_HTTP_OK, out);
}

static const char *const fault_modes[] = {
	[FAULT_STATUS] = "status",
	[FAULT_DELAY] = "delay",
	[FAULT_DELAY_AFTER] = "delay_after",
	[FAULT_BADJSON] = "badjson",
	[FAULT_CLOSE] = "close",
};
#define NMODES (sizeof(fault_modes) / sizeof(fault_modes[0]))

static json_object *
faults_json(void)
{
	json_object *arr = json_object_new_array(), *o;
	const struct sbx_fault *f;
	size_t i;

	sbx_faults_expire(now_ms());
	for (i = 0; i < sbx.faults.n; i++) {
		f = sbx.faults.v[i];
		o = json_object_new_object();
		json_object_object_add(o, "path",
		    json_object_new_string(f->path));
		json_object_object_add(o, "mode",
		    json_object_new_string(fault_modes[f->mode]));
		json_object_object_add(o, "status",
		    json_object_new_int(f->status));
		json_object_object_add(o, "delay_ms",
		    json_object_new_int64(f->delay_ms));
		json_object_object_add(o, "count",
		    json_object_new_int64(f->count));
		json_object_object_add(o, "until_ms",
		    f->until_ms != 0 ? json_object_new_int64(f->until_ms)
		                     : NULL);
		json_object_array_add(arr, o);
	}
	o = json_object_new_object();
	json_object_object_add(o, "faults", arr);
	return o;
}

enum MHD_Result
h_ctl_faults(struct sbx_req *r)
{
	json_object *o;

	sbx_lock();
	o = faults_json();
	sbx_unlock();
	return http_reply_json(r, MHD_HTTP_OK, o);
}

static bool
get_int(json_object *o, const char *key, long min, long max, long *ret)
{
	json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(o, key, &v))
		return true;
	if (!json_object_is_type(v, json_type_int))
		return false;
	n = json_object_get_int64(v);
	if (n < min || n > max)
		return false;
	*ret = (long)n;
	return true;
}

/* Reads a fault description; returns an error message or NULL. */
static const char *
fault_parse(json_object *in, struct sbx_fault *f)
{
	json_object *v;
	long status, duration = 0;
	size_t i;

	json_object_object_foreach(in, key, val)
	{
		(void)val;
		if (strcmp(key, "path") != 0 && strcmp(key, "mode") != 0 &&
		    strcmp(key, "status") != 0 &&
		    strcmp(key, "delay_ms") != 0 && strcmp(key, "count") != 0 &&
		    strcmp(key, "duration_ms") != 0)
			return "unknown key (path, mode, status, delay_ms, "
			       "count, duration_ms)";
	}
	if (!json_object_object_get_ex(in, "path", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    json_object_get_string(v)[0] != '/')
		return "path must be a string starting with '/'";
	f->path = xstrdup(json_object_get_string(v));
	if (!json_object_object_get_ex(in, "mode", &v) ||
	    !json_object_is_type(v, json_type_string))
		return "mode must be status, delay, delay_after, badjson or "
		       "close";
	for (i = 0; i < NMODES; i++)
		if (strcmp(json_object_get_string(v), fault_modes[i]) == 0)
			break;
	if (i == NMODES)
		return "mode must be status, delay, delay_after, badjson or "
		       "close";
	f->mode = (enum sbx_fault_mode)i;
	status = 500;
	f->delay_ms = 5000;
	f->count = -1;
	if (!get_int(in, "status", 400, 599, &status) ||
	    !get_int(in, "delay_ms", 0, 600000, &f->delay_ms) ||
	    !get_int(in, "count", -1, 1000000000, &f->count) ||
	    f->count == 0 ||
	    !get_int(in, "duration_ms", 1, 86400000, &duration))
		return "status 400..599, delay_ms 0..600000, count -1 or >= 1, "
		       "duration_ms 1..86400000";
	f->status = (int)status;
	/* a time window from now on, as well as (or instead of) a count */
	f->until_ms = duration > 0 ? now_ms() + duration : 0;
	return NULL;
}

enum MHD_Result
h_ctl_faults_add(struct sbx_req *r)
{
	struct sbx_fault *f = xcalloc(1, sizeof(*f));
	json_object *in, *o;
	const char *msg;
	char err[256];

	if (http_body_json(r, &in, err, sizeof(err)) == -1) {
		sbx_fault_free(f);
		return ctl_bad(r, err);
	}
	if ((msg = fault_parse(in, f)) != NULL) {
		json_object_put(in);
		sbx_fault_free(f);
		return ctl_bad(r, msg);
	}
	json_object_put(in);
	sbx_lock();
	vec_push(&sbx.faults, f);
	o = faults_json();
	sbx_unlock();
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_ctl_faults_clear(struct sbx_req *r)
{
	sbx_lock();
	sbx_faults_clear();
	sbx_unlock();
	return ctl_ok(r);
}

enum MHD_Result
h_ctl_issued(struct sbx_req *r)
{
	json_object *o = json_object_new_object(), *arr;
	size_t i;

	arr = json_object_new_array();
	sbx_lock();
	for (i = 0; i < sbx.tokens.n; i++)
		json_object_array_add(arr,
		    json_object_new_string(
		        ((struct sbx_token *)sbx.tokens.v[i])->value));
	sbx_unlock();
	json_object_object_add(o, "tokens", arr);
	return http_reply_json(r, MHD_HTTP_OK, o);
}

/* The body's "user_id" string (borrowed from in) or NULL. */
static const char *
body_user_id(json_object *in)
{
	json_object *v;

	if (!json_object_object_get_ex(in, "user_id", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0)
		return NULL;
	return json_object_get_string(v);
}

enum MHD_Result
h_ctl_revoke_user(struct sbx_req *r)
{
	struct sbx_grant *g;
	json_object *in, *o;
	const char *uid;
	char err[256];
	long n = 0;
	size_t i;

	if (http_body_json(r, &in, err, sizeof(err)) == -1)
		return ctl_bad(r, err);
	if ((uid = body_user_id(in)) == NULL) {
		json_object_put(in);
		return ctl_bad(r, "user_id (non-empty string) is required");
	}
	sbx_lock();
	for (i = 0; i < sbx.grants.n; i++) {
		g = sbx.grants.v[i];
		if (!g->revoked && strcmp(g->user->user_id, uid) == 0) {
			sbx_grant_revoke(g, SBX_WHY_REVOKE_USER);
			n++;
		}
	}
	sbx_unlock();
	json_object_put(in);
	o = json_object_new_object();
	json_object_object_add(o, "revoked", json_object_new_int64(n));
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_ctl_transactions(struct sbx_req *r)
{
	json_object *in, *v, *o;
	struct sbx_user *u;
	const char *uid;
	bool book = false;
	char err[256];
	long add = 0, booked = 0;

	if (http_body_json(r, &in, err, sizeof(err)) == -1)
		return ctl_bad(r, err);
	uid = body_user_id(in);
	if (json_object_object_get_ex(in, "book_pending", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			uid = NULL;
		book = json_object_get_boolean(v);
	}
	if (uid == NULL || !get_int(in, "add", 0, 10000, &add)) {
		json_object_put(in);
		return ctl_bad(r,
		    "user_id (string), add (0..10000), "
		    "book_pending (bool)");
	}
	sbx_lock();
	u = data_user_get(uid);
	if (book)
		booked = data_book_pending(u);
	data_add_txns(u, add);
	sbx_unlock();
	json_object_put(in);
	o = json_object_new_object();
	json_object_object_add(o, "added_per_account",
	    json_object_new_int64(add));
	json_object_object_add(o, "booked", json_object_new_int64(booked));
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_ctl_grants(struct sbx_req *r)
{
	const char *uid = http_arg(r, "user_id");
	const struct sbx_grant *g;
	long total = 0, revoked = 0;
	json_object *o;
	size_t i;

	sbx_lock();
	for (i = 0; i < sbx.grants.n; i++) {
		g = sbx.grants.v[i];
		if (uid != NULL && strcmp(g->user->user_id, uid) != 0)
			continue;
		total++;
		if (g->revoked)
			revoked++;
	}
	sbx_unlock();
	o = json_object_new_object();
	json_object_object_add(o, "grants", json_object_new_int64(total));
	json_object_object_add(o, "active",
	    json_object_new_int64(total - revoked));
	json_object_object_add(o, "revoked", json_object_new_int64(revoked));
	return http_reply_json(r, MHD_HTTP_OK, o);
}

/*
 * POST /_sandbox/grants {"user_id_prefix","count"}: mints count grants at
 * once (users "<prefix>-<i>"), as if each had finished the widget flow and
 * exchanged its code, and answers their refresh tokens in order.  For
 * benchmarks that need thousands of connections without driving the
 * widget; tests only, like the rest of the control API.
 */
enum MHD_Result
h_ctl_grants_mint(struct sbx_req *r)
{
	json_object *in, *v, *arr, *o;
	struct sbx_token *rt;
	struct sbx_grant *g;
	struct sbx_buf uid;
	const char *prefix = NULL;
	char err[256];
	long count = 0, i;

	if (http_body_json(r, &in, err, sizeof(err)) == -1)
		return ctl_bad(r, err);
	if (json_object_object_get_ex(in, "user_id_prefix", &v) &&
	    json_object_is_type(v, json_type_string) &&
	    json_object_get_string_len(v) > 0 &&
	    json_object_get_string_len(v) <= 200)
		prefix = json_object_get_string(v);
	if (prefix == NULL || !get_int(in, "count", 1, 100000, &count) ||
	    count == 0) {
		json_object_put(in);
		return ctl_bad(r,
		    "user_id_prefix (1..200 chars), count (1..100000)");
	}
	arr = json_object_new_array_ext((int)count);
	buf_init(&uid);
	sbx_lock();
	for (i = 0; i < count; i++) {
		uid.len = 0;
		buf_addf(&uid, "%s-%ld", prefix, i);
		g = sbx_grant_new(data_user_get(buf_str(&uid)), sbx.client_id);
		(void)sbx_token_new(TOK_ACCESS, sbx.cfg.access_ttl, g);
		rt = sbx_token_new(TOK_REFRESH, sbx.cfg.refresh_ttl, g);
		g->refresh = rt;
		json_object_array_add(arr, json_object_new_string(rt->value));
	}
	sbx_unlock();
	buf_free(&uid);
	json_object_put(in);
	o = json_object_new_object();
	json_object_object_add(o, "refresh_tokens", arr);
	return http_reply_json(r, MHD_HTTP_OK, o);
}

static json_object *
opt_ms(int64_t ms)
{
	return ms != 0 ? json_object_new_int64(ms) : NULL;
}

/*
 * GET /_sandbox/grants/detail[?user_id=]: every grant with its status,
 * why and when it was revoked, the SHA-256 of its current refresh token
 * (never the token) and how many refreshes it answered.
 */
enum MHD_Result
h_ctl_grants_detail(struct sbx_req *r)
{
	const char *uid = http_arg(r, "user_id");
	const struct sbx_grant *g;
	json_object *o = json_object_new_object(), *arr, *e;
	char hex[65];
	long total = 0, revoked = 0;
	size_t i;

	arr = json_object_new_array();
	sbx_lock();
	for (i = 0; i < sbx.grants.n; i++) {
		g = sbx.grants.v[i];
		if (uid != NULL && strcmp(g->user->user_id, uid) != 0)
			continue;
		total++;
		if (g->revoked)
			revoked++;
		e = json_object_new_object();
		json_object_object_add(e, "id", json_object_new_int64(g->id));
		json_object_object_add(e, "user_id",
		    json_object_new_string(g->user->user_id));
		json_object_object_add(e, "status",
		    json_object_new_string(g->revoked ? "revoked" : "active"));
		json_object_object_add(e, "revoked_why",
		    opt_string(g->revoked ? (g->revoked_why ? g->revoked_why
		                                            : "unknown")
		                          : NULL));
		json_object_object_add(e, "revoked_at_ms",
		    opt_ms(g->revoked_ms));
		json_object_object_add(e, "created_at_ms",
		    json_object_new_int64(g->created_ms));
		if (g->refresh != NULL)
			sha256_hex(g->refresh->value, hex, sizeof(hex));
		json_object_object_add(e, "refresh_token_sha256",
		    opt_string(g->refresh != NULL ? hex : NULL));
		json_object_object_add(e, "refresh_requests",
		    json_object_new_int64(g->refresh_requests));
		json_object_object_add(e, "refreshes",
		    json_object_new_int64(g->refreshes));
		json_object_array_add(arr, e);
	}
	sbx_unlock();
	json_object_object_add(o, "grants", arr);
	json_object_object_add(o, "active",
	    json_object_new_int64(total - revoked));
	json_object_object_add(o, "revoked", json_object_new_int64(revoked));
	return http_reply_json(r, MHD_HTTP_OK, o);
}

static json_object *
refresh_ev_json(const struct sbx_refresh_ev *ev)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "seq",
	    json_object_new_int64((int64_t)ev->seq));
	json_object_object_add(o, "grant_id",
	    ev->grant_id != 0 ? json_object_new_int64(ev->grant_id) : NULL);
	json_object_object_add(o, "user_id",
	    opt_string(ev->user != NULL ? ev->user->user_id : NULL));
	json_object_object_add(o, "received_at_ms",
	    json_object_new_int64(ev->received_ms));
	json_object_object_add(o, "acted_at_ms", opt_ms(ev->acted_ms));
	json_object_object_add(o, "answered_at_ms", opt_ms(ev->answered_ms));
	json_object_object_add(o, "in_flight",
	    json_object_new_boolean(ev->answered_ms == 0));
	json_object_object_add(o, "outcome",
	    json_object_new_string(sbx_rf_outcome_names[ev->outcome]));
	json_object_object_add(o, "status",
	    ev->answered_ms != 0 ? json_object_new_int((int)ev->status)
	                         : NULL);
	json_object_object_add(o, "presented_sha256_16",
	    json_object_new_string(ev->presented));
	json_object_object_add(o, "issued_sha256_16",
	    opt_string(ev->issued[0] != '\0' ? ev->issued : NULL));
	return o;
}

/* A whole-number query argument; false when present but not one. */
static bool
arg_long(struct sbx_req *r, const char *name, long *ret)
{
	const char *s = http_arg(r, name);

	return s == NULL || parse_long(s, 0, LONG_MAX, ret) == 0;
}

/*
 * GET /_sandbox/refreshes[?user_id=][&grant_id=][&in_flight_at_ms=]:
 * the refresh log, oldest first.  in_flight_at_ms keeps the entries in
 * flight at that moment: received at or before it and not answered
 * before it.
 */
enum MHD_Result
h_ctl_refreshes(struct sbx_req *r)
{
	const char *uid = http_arg(r, "user_id");
	const struct sbx_refresh_ev *ev;
	json_object *o, *arr;
	long gid = 0, at = 0, in_flight = 0;
	uint64_t seq, evicted;

	if (!arg_long(r, "grant_id", &gid) ||
	    !arg_long(r, "in_flight_at_ms", &at))
		return ctl_bad(r, "grant_id and in_flight_at_ms are whole "
		                  "numbers");
	arr = json_object_new_array();
	sbx_lock();
	evicted = sbx.rlog_first - 1;
	for (seq = sbx.rlog_first; seq < sbx.rlog_next; seq++) {
		if ((ev = sbx_refresh_get(seq)) == NULL)
			continue;
		if (ev->answered_ms == 0)
			in_flight++;
		if (uid != NULL &&
		    (ev->user == NULL || strcmp(ev->user->user_id, uid) != 0))
			continue;
		if (gid != 0 && ev->grant_id != gid)
			continue;
		/* in_flight_at_ms: received by then and not answered before */
		if (at != 0 &&
		    (ev->received_ms > at ||
		        (ev->answered_ms != 0 && ev->answered_ms < at)))
			continue;
		json_object_array_add(arr, refresh_ev_json(ev));
	}
	sbx_unlock();
	o = json_object_new_object();
	json_object_object_add(o, "refreshes", arr);
	json_object_object_add(o, "in_flight",
	    json_object_new_int64(in_flight));
	json_object_object_add(o, "forgotten",
	    json_object_new_int64((int64_t)evicted));
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_ctl_refreshes_clear(struct sbx_req *r)
{
	sbx_lock();
	sbx_refresh_log_clear();
	sbx_unlock();
	return ctl_ok(r);
}

/*
 * POST /_sandbox/tokens/check {"token"}: what the sandbox thinks of a
 * token right now, so a test can tell a token that was bad when it was
 * handed out from one that expired on its way.  The answer never
 * repeats the token.
 */
enum MHD_Result
h_ctl_token_check(struct sbx_req *r)
{
	static const char *const kinds[] = { "code", "access", "refresh" };
	const struct sbx_token *t;
	json_object *in, *v, *o;
	const char *state;
	char err[256];
	int64_t now;

	if (http_body_json(r, &in, err, sizeof(err)) == -1)
		return ctl_bad(r, err);
	if (!json_object_object_get_ex(in, "token", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		json_object_put(in);
		return ctl_bad(r, "token (string) is required");
	}
	o = json_object_new_object();
	sbx_lock();
	now = now_ms();
	t = sbx_token_find(json_object_get_string(v));
	if (t == NULL)
		state = "unknown";
	else if (t->grant != NULL && t->grant->revoked)
		state = "grant_revoked";
	else if (t->revoked)
		state = "revoked";
	else if (t->superseded)
		state = "superseded";
	else if (t->kind == TOK_CODE && t->used)
		state = "used";
	else if (now >= t->expires_ms)
		state = "expired";
	else
		state = "live";
	json_object_object_add(o, "known", json_object_new_boolean(t != NULL));
	json_object_object_add(o, "kind",
	    opt_string(t != NULL ? kinds[t->kind] : NULL));
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "live",
	    json_object_new_boolean(strcmp(state, "live") == 0));
	json_object_object_add(o, "expires_at_ms",
	    t != NULL ? json_object_new_int64(t->expires_ms) : NULL);
	json_object_object_add(o, "grant_id",
	    t != NULL && t->grant != NULL ? json_object_new_int64(t->grant->id)
	                                  : NULL);
	json_object_object_add(o, "checked_at_ms", json_object_new_int64(now));
	sbx_unlock();
	json_object_put(in);
	return http_reply_json(r, MHD_HTTP_OK, o);
}
