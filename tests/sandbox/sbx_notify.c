/*
 * finX notifications (finx-api.md 5.4): /rest/notifications behind a
 * Bearer access token, each user seeing and deleting only its own, and
 * the control call that fires a user's notifications at their notify_uri
 * (libcurl: connect and total timeouts, no redirects, http(s) only, the
 * answer read up to a cap and thrown away).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "sbx_data.h"
#include "sbx_handlers.h"

#define NOTE_URI_MAX 2048
#define NOTE_KEY_MAX 1024
#define NOTE_STATE_MAX 1024
#define NOTE_PER_USER_MAX 1000
#define NOTE_READ_MAX (1024 * 1024)
#define NOTE_USER_AGENT "finx-notification/1"

static enum MHD_Result
note_bad(struct sbx_req *r, const char *field, const char *msg)
{
	json_object *data = json_object_new_object(), *arr;

	arr = json_object_new_array();
	json_object_array_add(arr, json_object_new_string(msg));
	json_object_object_add(data, field, arr);
	return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
	    "Request body doesn't match input schema.", "Invalid fields",
	    data);
}

static enum MHD_Result
note_missing(struct sbx_req *r)
{
	return http_reply_error(r, MHD_HTTP_NOT_FOUND, 1002,
	    "Entity not found", "No such notification", NULL);
}

static json_object *
note_json(const struct sbx_note *n)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "notification_id",
	    json_object_new_string(n->id));
	json_object_object_add(o, "observe_key",
	    json_object_new_string(n->observe_key));
	json_object_object_add(o, "notify_uri",
	    json_object_new_string(n->notify_uri));
	json_object_object_add(o, "state",
	    n->state != NULL ? json_object_new_string(n->state) : NULL);
	return o;
}

/* True when the len bytes at p are exactly word. */
static bool
note_seg_is(const char *p, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(p, word, len) == 0;
}

/* include_pending is a boolean; it combines with one other key. */
static const char *
note_query_transactions(const char *q)
{
	size_t n, klen, vlen, others = 0;
	const char *eq;

	for (; *q != '\0'; q += n + (q[n] == '&')) {
		n = strcspn(q, "&");
		eq = memchr(q, '=', n);
		if (eq == NULL || eq == q || eq + 1 == q + n)
			return "observe_key parameters are key=value pairs";
		klen = (size_t)(eq - q);
		vlen = n - klen - 1;
		if (!note_seg_is(q, klen, "include_pending"))
			others++;
		else if (!note_seg_is(eq + 1, vlen, "0") &&
		    !note_seg_is(eq + 1, vlen, "1") &&
		    !note_seg_is(eq + 1, vlen, "true") &&
		    !note_seg_is(eq + 1, vlen, "false"))
			return "include_pending must be 0, 1, true or false";
	}
	return others > 1 ? "only include_pending combines with another "
	                    "parameter"
	                  : NULL;
}

/* Nothing, or inferior_limit=<integer> alone. */
static const char *
note_query_balance(const char *q)
{
	long v;

	if (*q == '\0')
		return NULL;
	if (strncmp(q, "inferior_limit=", 15) != 0 ||
	    parse_long(q + 15, -1000000000L, 1000000000L, &v) == -1)
		return "a balance key takes inferior_limit=<integer> only";
	return NULL;
}

/*
 * Checks an observe key against u's accounts: /rest/transactions[?...]
 * (legacy), /rest/accounts/{id}/transactions[?...] or
 * /rest/accounts/{id}/balance[?inferior_limit=N].  The account observed
 * goes to acc ("" for all).  An error message or NULL.
 */
static const char *
note_key_check(struct sbx_user *u, const char *key, char *acc, size_t n)
{
	const char *q = strchr(key, '?'), *p = key + strlen("/rest/accounts/");
	size_t plen = q != NULL ? (size_t)(q - key) : strlen(key), idlen;

	q = q != NULL ? q + 1 : "";
	acc[0] = '\0';
	if (note_seg_is(key, plen, "/rest/transactions"))
		return note_query_transactions(q);
	if (strncmp(key, "/rest/accounts/", strlen("/rest/accounts/")) != 0)
		return "observe_key must be /rest/transactions, "
		       "/rest/accounts/{id}/transactions or "
		       "/rest/accounts/{id}/balance";
	idlen = strcspn(p, "/?");
	if (idlen == 0 || idlen >= n)
		return "observe_key names no account";
	memcpy(acc, p, idlen);
	acc[idlen] = '\0';
	if (data_account_find(u, acc) == NULL)
		return "observe_key names an account the user does not have";
	p += idlen;
	plen -= (size_t)(p - key);
	if (note_seg_is(p, plen, "/transactions"))
		return note_query_transactions(q);
	if (note_seg_is(p, plen, "/balance"))
		return note_query_balance(q);
	return "observe_key must end in /transactions or /balance";
}

/* An absolute http or https URL with a host, without spaces. */
static bool
note_uri_ok(const char *uri)
{
	CURLU *h;
	char *scheme = NULL, *host = NULL;
	bool ok = false;
	size_t i;

	for (i = 0; uri[i] != '\0'; i++)
		if ((unsigned char)uri[i] <= 0x20 || uri[i] == 0x7f)
			return false;
	if (i == 0 || i > NOTE_URI_MAX || (h = curl_url()) == NULL)
		return false;
	if (curl_url_set(h, CURLUPART_URL, uri, 0) == CURLUE_OK &&
	    curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		ok = (strcmp(scheme, "http") == 0 ||
		         strcmp(scheme, "https") == 0) &&
		    host[0] != '\0';
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(h);
	return ok;
}

/* The body's fields; field names the bad one.  Lock held (accounts). */
static const char *
note_parse(struct sbx_user *u, json_object *in, struct sbx_note *n,
    const char **field)
{
	json_object *v;
	const char *msg;

	json_object_object_foreach(in, key, val)
	{
		*field = key;
		if (strcmp(key, "observe_key") != 0 &&
		    strcmp(key, "notify_uri") != 0 &&
		    strcmp(key, "state") != 0)
			return "Unknown field.";
		if (!json_object_is_type(val, json_type_string) &&
		    (strcmp(key, "state") != 0 || val != NULL))
			return "Not a valid string.";
	}
	*field = "observe_key";
	if (!json_object_object_get_ex(in, "observe_key", &v) ||
	    json_object_get_string_len(v) > NOTE_KEY_MAX)
		return "Missing data for required field.";
	if ((msg = note_key_check(u, json_object_get_string(v), n->account_id,
	         sizeof(n->account_id))) != NULL)
		return msg;
	n->observe_key = xstrdup(json_object_get_string(v));
	*field = "notify_uri";
	if (!json_object_object_get_ex(in, "notify_uri", &v))
		return "Missing data for required field.";
	if (!note_uri_ok(json_object_get_string(v)))
		return "Must be an absolute http or https URL.";
	n->notify_uri = xstrdup(json_object_get_string(v));
	*field = "state";
	if (json_object_object_get_ex(in, "state", &v) && v != NULL) {
		if (json_object_get_string_len(v) > NOTE_STATE_MAX)
			return "At most 1024 characters.";
		n->state = xstrdup(json_object_get_string(v));
	}
	return NULL;
}

/* Index of the user's notification id, or -1. */
static long
note_index(const struct sbx_user *u, const char *id)
{
	size_t i;

	for (i = 0; i < u->notes.n; i++)
		if (strcmp(((struct sbx_note *)u->notes.v[i])->id, id) == 0)
			return (long)i;
	return -1;
}

/*
 * Stores the parsed n: a new notification, or (id not NULL) in place of
 * the user's notification id, keeping that id.  False when id is not
 * one of the user's.  Lock held.
 */
static bool
note_store(struct sbx_user *u, struct sbx_note *n, const char *id)
{
	long i = id != NULL ? note_index(u, id) : -1;
	struct sbx_note *old;

	if (id == NULL) {
		snprintf(n->id, sizeof(n->id), "N%lu.%lu", u->n,
		    ++u->note_seq);
		n->created_ms = now_ms();
		vec_push(&u->notes, n);
		return true;
	}
	if (i < 0)
		return false;
	old = u->notes.v[i];
	memcpy(n->id, old->id, sizeof(n->id));
	n->created_ms = old->created_ms;
	u->notes.v[i] = n;
	data_note_free(old);
	return true;
}

/*
 * POST /rest/notifications, or PUT /rest/notifications/{id} (id not
 * NULL: replaces the user's notification), with {observe_key,
 * notify_uri, state}.  The body is parsed without the lock; the user,
 * once known, lives as long as the sandbox.
 */
static enum MHD_Result
note_write(struct sbx_req *r, const char *id)
{
	struct sbx_note *n;
	const char *msg = NULL, *field = "_body";
	json_object *in = NULL, *o = NULL;
	struct sbx_user *u;
	char err[256];
	bool found = true;
	enum MHD_Result ret;

	sbx_lock();
	u = http_bearer_user(r);
	sbx_unlock();
	if (u == NULL)
		return http_reply_bearer_auth(r);
	if (http_body_json(r, &in, err, sizeof(err)) == -1)
		return note_bad(r, field, err);
	n = xcalloc(1, sizeof(*n));
	sbx_lock();
	if (id == NULL && u->notes.n >= NOTE_PER_USER_MAX)
		msg = "At most 1000 notifications per user.";
	else if (id != NULL && note_index(u, id) < 0)
		found = false;
	else
		msg = note_parse(u, in, n, &field);
	if (found && msg == NULL && (found = note_store(u, n, id)))
		o = note_json(n);
	sbx_unlock();
	if (o == NULL)
		data_note_free(n);
	if (!found)
		ret = note_missing(r);
	else if (o == NULL)
		ret = note_bad(r, field, msg); /* field may point into in */
	else
		ret = http_reply_json(r, MHD_HTTP_OK, o);
	json_object_put(in);
	return ret;
}

enum MHD_Result
h_notification_add(struct sbx_req *r)
{
	return note_write(r, NULL);
}

enum MHD_Result
h_notification_put(struct sbx_req *r)
{
	return note_write(r, r->caps[0]);
}

/* GET /rest/notifications: {"notifications": [...]}, oldest first. */
enum MHD_Result
h_notifications(struct sbx_req *r)
{
	json_object *o, *arr;
	struct sbx_user *u;
	size_t i;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	arr = json_object_new_array();
	for (i = 0; i < u->notes.n; i++)
		json_object_array_add(arr, note_json(u->notes.v[i]));
	sbx_unlock();
	o = json_object_new_object();
	json_object_object_add(o, "notifications", arr);
	return http_reply_json(r, MHD_HTTP_OK, o);
}

/* GET or DELETE /rest/notifications/{id}: only the user's own. */
static enum MHD_Result
note_one(struct sbx_req *r, bool remove)
{
	struct sbx_user *u;
	json_object *o = NULL;
	long i;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	if ((i = note_index(u, r->caps[0])) >= 0) {
		o = remove ? json_object_new_object()
		           : note_json(u->notes.v[i]);
		if (remove) {
			data_note_free(u->notes.v[i]);
			vec_remove(&u->notes, (size_t)i);
		}
	}
	sbx_unlock();
	if (o == NULL)
		return note_missing(r);
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_notification(struct sbx_req *r)
{
	return note_one(r, false);
}

enum MHD_Result
h_notification_delete(struct sbx_req *r)
{
	return note_one(r, true);
}

/* ---- firing (control API) ------------------------------------------ */

/* One delivery, copied out of the state so no lock is held meanwhile. */
struct note_shot {
	char id[48];
	char *uri;
	char *body;
	long status; /* 0: no HTTP answer */
	const char *error;
	long ms;
};

struct fire_opts {
	const char *uid;
	const char *notification_id; /* NULL: all */
	const char *account_id;      /* NULL: all */
	long timeout_ms;
	long connect_ms;
};

static size_t
note_read_cb(char *p, size_t sz, size_t nm, void *arg)
{
	size_t *got = arg;

	(void)p;
	*got += sz * nm;
	return *got > NOTE_READ_MAX ? 0 : sz * nm; /* 0 aborts */
}

/* POSTs shot's body to its uri; fills status, error and ms. */
static void
note_deliver(struct note_shot *s, const struct fire_opts *f)
{
	struct curl_slist *h = NULL;
	int64_t t0 = mono_us();
	size_t got = 0;
	CURLcode rc;
	CURL *c;

	if ((c = curl_easy_init()) == NULL) {
		s->error = "curl_easy_init failed";
		return;
	}
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:"); /* no 100-continue wait */
	curl_easy_setopt(c, CURLOPT_URL, s->uri);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, f->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, f->connect_ms);
	curl_easy_setopt(c, CURLOPT_USERAGENT, NOTE_USER_AGENT);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, s->body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, note_read_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
	if (rc == CURLE_WRITE_ERROR)
		s->error = "answer body over 1 MiB";
	else if (rc != CURLE_OK)
		s->error = curl_easy_strerror(rc);
	s->ms = (long)((mono_us() - t0) / 1000);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
}

/* The payload of the legacy SDKs: {notification_id, observe_key, state,
 * data}; data names the observed account (null: all). */
static char *
note_payload(const struct sbx_note *n)
{
	json_object *o = note_json(n), *data = json_object_new_object();
	char *s;

	json_object_object_del(o, "notify_uri");
	json_object_object_add(data, "account_id",
	    n->account_id[0] != '\0' ? json_object_new_string(n->account_id)
	                             : NULL);
	json_object_object_add(o, "data", data);
	s = xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return s;
}

static bool
note_selected(const struct sbx_note *n, const struct fire_opts *f)
{
	if (f->notification_id != NULL && strcmp(n->id, f->notification_id))
		return false;
	/* an account's change fires the keys on it and those on all */
	return f->account_id == NULL || n->account_id[0] == '\0' ||
	    strcmp(n->account_id, f->account_id) == 0;
}

/* Copies the selected notifications of the user; -1 when unknown. */
static long
note_shots(const struct fire_opts *f, struct note_shot **ret)
{
	const struct sbx_user *u;
	const struct sbx_note *n;
	struct note_shot *v;
	size_t i, k = 0;

	sbx_lock();
	if ((u = data_user_find(f->uid)) == NULL) {
		sbx_unlock();
		return -1;
	}
	v = xcalloc(u->notes.n + 1, sizeof(*v));
	for (i = 0; i < u->notes.n; i++) {
		n = u->notes.v[i];
		if (!note_selected(n, f))
			continue;
		memcpy(v[k].id, n->id, sizeof(v[k].id));
		v[k].uri = xstrdup(n->notify_uri);
		v[k].body = note_payload(n);
		k++;
	}
	sbx_unlock();
	*ret = v;
	return (long)k;
}

static const char *
fire_parse(json_object *in, struct fire_opts *f)
{
	static const char *const keys[] = { "user_id", "notification_id",
		"account_id", "timeout_ms", "connect_timeout_ms" };
	const char **strs[] = { &f->uid, &f->notification_id, &f->account_id };
	json_object *v;
	size_t i;

	memset(f, 0, sizeof(*f));
	json_object_object_foreach(in, key, val)
	{
		(void)val;
		for (i = 0; i < 5 && strcmp(key, keys[i]) != 0; i++)
			;
		if (i == 5)
			return "unknown key (user_id, notification_id, "
			       "account_id, timeout_ms, connect_timeout_ms)";
	}
	for (i = 0; i < 3; i++) {
		if (!json_object_object_get_ex(in, keys[i], &v))
			continue;
		if (!json_object_is_type(v, json_type_string) ||
		    json_object_get_string_len(v) == 0)
			return "user_id, notification_id and account_id are "
			       "non-empty strings";
		*strs[i] = json_object_get_string(v);
	}
	if (f->uid == NULL)
		return "user_id is required";
	f->timeout_ms = 5000;
	for (i = 3; i < 5; i++) {
		if (!json_object_object_get_ex(in, keys[i], &v))
			continue;
		if (!json_object_is_type(v, json_type_int) ||
		    json_object_get_int64(v) < 1 ||
		    json_object_get_int64(v) > 60000)
			return "timeout_ms and connect_timeout_ms are "
			       "1..60000";
		*(i == 3 ? &f->timeout_ms : &f->connect_ms) =
		    (long)json_object_get_int64(v);
	}
	if (f->connect_ms == 0 || f->connect_ms > f->timeout_ms)
		f->connect_ms = f->timeout_ms < 2000 ? f->timeout_ms : 2000;
	return NULL;
}

static json_object *
shot_json(const struct note_shot *s, bool delivered)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "notification_id",
	    json_object_new_string(s->id));
	json_object_object_add(o, "status",
	    s->status != 0 ? json_object_new_int((int)s->status) : NULL);
	json_object_object_add(o, "delivered",
	    json_object_new_boolean(delivered));
	json_object_object_add(o, "error",
	    s->error != NULL ? json_object_new_string(s->error) : NULL);
	json_object_object_add(o, "ms", json_object_new_int64(s->ms));
	return o;
}

/* Delivers every shot in order; the answer object. */
static json_object *
fire_all(struct note_shot *v, long n, const struct fire_opts *f)
{
	json_object *o = json_object_new_object(), *arr;
	long i, delivered = 0;
	bool ok;

	arr = json_object_new_array();
	for (i = 0; i < n; i++) {
		note_deliver(&v[i], f);
		/* finX: 2xx or 3xx counts, anything else is a failure */
		ok = v[i].status >= 200 && v[i].status < 400 &&
		    v[i].error == NULL;
		delivered += ok;
		json_object_array_add(arr, shot_json(&v[i], ok));
		free(v[i].uri);
		free(v[i].body);
	}
	json_object_object_add(o, "fired", json_object_new_int64(n));
	json_object_object_add(o, "delivered",
	    json_object_new_int64(delivered));
	json_object_object_add(o, "deliveries", arr);
	return o;
}

/*
 * POST /_sandbox/notifications/fire {"user_id", "notification_id"?,
 * "account_id"?, "timeout_ms"?, "connect_timeout_ms"?} -> {"fired",
 * "delivered", "deliveries": [{notification_id, status, delivered,
 * error, ms}]}: POSTs each selected notification, one after another,
 * with no lock held.
 */
enum MHD_Result
h_ctl_notifications_fire(struct sbx_req *r)
{
	struct note_shot *v = NULL;
	struct fire_opts f;
	json_object *in, *o;
	const char *msg;
	char err[256];
	long n;

	if (http_body_json(r, &in, err, sizeof(err)) == -1)
		return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
		    "Invalid request", err, NULL);
	if ((msg = fire_parse(in, &f)) != NULL) {
		json_object_put(in);
		return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
		    "Invalid request", msg, NULL);
	}
	if ((n = note_shots(&f, &v)) < 0) {
		json_object_put(in);
		return http_reply_error(r, MHD_HTTP_NOT_FOUND, 1002,
		    "Entity not found", "No such user", NULL);
	}
	o = fire_all(v, n, &f);
	free(v);
	json_object_put(in);
	return http_reply_json(r, MHD_HTTP_OK, o);
}

/*
 * GET /_sandbox/notifications[?user_id=]: every registration, oldest
 * user first, with its user_id (tests check what finxd registered).
 */
enum MHD_Result
h_ctl_notifications(struct sbx_req *r)
{
	const char *uid = http_arg(r, "user_id");
	const struct sbx_user *u;
	json_object *o, *arr = json_object_new_array(), *e;
	size_t i, k;

	sbx_lock();
	for (i = 0; i < sbx.users.n; i++) {
		u = sbx.users.v[i];
		if (uid != NULL && strcmp(u->user_id, uid) != 0)
			continue;
		for (k = 0; k < u->notes.n; k++) {
			e = note_json(u->notes.v[k]);
			json_object_object_add(e, "user_id",
			    json_object_new_string(u->user_id));
			json_object_array_add(arr, e);
		}
	}
	sbx_unlock();
	o = json_object_new_object();
	json_object_object_add(o, "notifications", arr);
	return http_reply_json(r, MHD_HTTP_OK, o);
}
