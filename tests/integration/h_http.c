/*
 * The HTTP client (libcurl): h_http, h_resp, JSON helpers, h_api calls to
 * finxd (the connection calls, /readyz, /metrics), URL query helpers and
 * the link/widget flow helpers up to a connection (h_connect).
 */
#include "harness_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define H_BODY_MAX (16 * 1024 * 1024)
#define H_LOOPBACK "http://127.0.0.1:"

/* ---- HTTP ------------------------------------------------------------ */

struct h_buf {
	char *p;
	size_t len, cap;
};

static bool
h_buf_add(struct h_buf *b, const char *p, size_t n)
{
	if (b->len + n > H_BODY_MAX)
		return false;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (b->p == NULL)
			h_bail("out of memory");
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return true;
}

static size_t
h_write_cb(char *p, size_t size, size_t n, void *ud)
{
	return h_buf_add(ud, p, size * n) ? size * n : 0;
}

static void
h_resp_clear_headers(struct h_resp *r)
{
	int i;

	for (i = 0; i < r->nh; i++) {
		free(r->hname[i]);
		free(r->hval[i]);
	}
	free(r->hname);
	free(r->hval);
	r->hname = r->hval = NULL;
	r->nh = 0;
}

static size_t
h_header_cb(char *p, size_t size, size_t n, void *ud)
{
	struct h_resp *r = ud;
	size_t len = size * n;
	const char *colon;
	size_t nl, vs, ve;

	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* a new response (e.g. after 100 Continue) */
		h_resp_clear_headers(r);
		return len;
	}
	colon = memchr(p, ':', len);
	if (colon == NULL)
		return len;
	nl = (size_t)(colon - p);
	vs = nl + 1;
	while (vs < len && (p[vs] == ' ' || p[vs] == '\t'))
		vs++;
	ve = len;
	while (ve > vs &&
	    (p[ve - 1] == '\r' || p[ve - 1] == '\n' || p[ve - 1] == ' '))
		ve--;
	r->hname = realloc(r->hname, sizeof(char *) * (size_t)(r->nh + 1));
	r->hval = realloc(r->hval, sizeof(char *) * (size_t)(r->nh + 1));
	if (r->hname == NULL || r->hval == NULL)
		h_bail("out of memory");
	r->hname[r->nh] = strndup(p, nl);
	r->hval[r->nh] = strndup(p + vs, ve - vs);
	if (r->hname[r->nh] == NULL || r->hval[r->nh] == NULL)
		h_bail("out of memory");
	r->nh++;
	return len;
}

/* A handle for url over plain HTTP, no proxy, the body into b; NULL when
 * libcurl cannot make one. */
static CURL *
h_curl(const char *url, long timeout_ms, struct h_buf *b)
{
	CURL *c = curl_easy_init();

	if (c == NULL)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	return c;
}

int
h_http(const char *method, const char *url, const char *const *headers,
    const char *body, size_t body_len, struct h_resp *r)
{
	struct curl_slist *hl = NULL;
	struct h_buf b = { NULL, 0, 0 };
	CURL *c;
	CURLcode cc;
	long t0;
	int i;

	memset(r, 0, sizeof(*r));
	/* loopback only; never print the URL, it may carry a code */
	if (url == NULL || strncmp(url, H_LOOPBACK, strlen(H_LOOPBACK)) != 0) {
		printf("# h_http: refusing a non-loopback or missing URL\n");
		r->body = h_xstrdup("");
		return -1;
	}
	c = h_curl(url, 10000L, &b);
	if (c == NULL)
		h_bail("curl_easy_init failed");
	hl = curl_slist_append(hl, "Expect:");
	for (i = 0; headers != NULL && headers[i] != NULL; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else {
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		if (body != NULL || strcmp(method, "POST") == 0) {
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
			    (long)(body ? body_len : 0));
			curl_easy_setopt(c, CURLOPT_POSTFIELDS,
			    body ? body : "");
		}
	}
	t0 = h_now_ms();
	cc = curl_easy_perform(c);
	r->ms = h_now_ms() - t0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	else
		printf("# h_http %s: %s\n", method, curl_easy_strerror(cc));
	curl_easy_cleanup(c);
	curl_slist_free_all(hl);
	r->body = b.p ? b.p : h_xstrdup("");
	r->body_len = b.len;
	return cc == CURLE_OK ? 0 : -1;
}

void
h_resp_free(struct h_resp *r)
{
	h_resp_clear_headers(r);
	free(r->body);
	json_object_put(r->json);
	memset(r, 0, sizeof(*r));
}

const char *
h_resp_header(const struct h_resp *r, const char *name)
{
	int i;

	for (i = r->nh - 1; i >= 0; i--)
		if (strcasecmp(r->hname[i], name) == 0)
			return r->hval[i];
	return NULL;
}

struct json_object *
h_resp_json(struct h_resp *r)
{
	if (r->json == NULL && r->body != NULL && r->body_len > 0)
		r->json = json_tokener_parse(r->body);
	return r->json;
}

const char *
h_jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

bool
h_jnull(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o != NULL && json_object_object_get_ex(o, key, &v) && v == NULL;
}

/* A string member of the error object of a JSON error body, or NULL. */
static const char *
h_err_field(struct h_resp *r, const char *name)
{
	struct json_object *o = h_resp_json(r), *e;

	if (o == NULL || !json_object_object_get_ex(o, "error", &e) ||
	    !json_object_is_type(e, json_type_object))
		return NULL;
	return h_jstr(e, name);
}

const char *
h_err_code(struct h_resp *r)
{
	return h_err_field(r, "code");
}

bool
h_err_is(struct h_resp *r, const char *want)
{
	return h_streq(h_err_code(r), want);
}

const char *
h_err_message(struct h_resp *r)
{
	return h_err_field(r, "message");
}

long
h_jlong(struct json_object *o, const char *key, long dflt)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) || v == NULL)
		return dflt;
	return (long)json_object_get_int64(v);
}

long
h_api(int i, const char *method, const char *path, const char *body,
    struct h_resp *r)
{
	return h_api_key_call(i, hs_api_key, method, path, body, r);
}

long
h_api_key_call(int i, const char *key, const char *method, const char *path,
    const char *body, struct h_resp *r)
{
	char *auth = h_fmt("Authorization: Bearer %s", key);
	char *url = h_fmt("%s%s", h_finxd_url(i), path);
	const char *hdrs[] = { auth, "Content-Type: application/json", NULL };

	if (body == NULL)
		hdrs[1] = NULL;
	h_http(method, url, hdrs, body, body ? strlen(body) : 0, r);
	free(auth);
	free(url);
	return r->status;
}

/* Hand the answer to the caller, or free it when r is NULL. */
static long
h_keep(struct h_resp *got, struct h_resp *r)
{
	long st = got->status;

	if (r != NULL)
		*r = *got;
	else
		h_resp_free(got);
	return st;
}

long
h_finxd_get(int i, const char *path, struct h_resp *r)
{
	char *url = h_fmt("%s%s", h_finxd_base(i, path), path);
	struct h_resp got;

	h_http("GET", url, NULL, NULL, 0, &got);
	free(url);
	return h_keep(&got, r);
}

struct h_status_wait {
	int i;
	const char *path;
	long want;
};

static bool
h_status_is(void *arg)
{
	struct h_status_wait *w = arg;

	return h_finxd_get(w->i, w->path, NULL) == w->want;
}

bool
h_finxd_wait_status(int i, const char *path, long want, long timeout_ms)
{
	struct h_status_wait w = { i, path, want };

	return h_wait_every(h_status_is, &w, timeout_ms, 200);
}

long
h_readyz(int i, char **code, char **msg)
{
	struct h_resp r;
	long st = h_finxd_get(i, "/readyz", &r);

	if (code != NULL)
		*code = h_dup(h_err_code(&r));
	if (msg != NULL)
		*msg = h_dup(h_err_message(&r));
	h_resp_free(&r);
	return st;
}

long
h_metric(int i, const char *series)
{
	char *needle = h_fmt("%s ", series);
	struct h_resp r;
	const char *p;
	long n = 0;

	if (h_finxd_get(i, "/metrics", &r) != 200) {
		n = -1;
	} else {
		for (p = r.body; (p = strstr(p, needle)) != NULL; p++)
			if (p == r.body || p[-1] == '\n')
				break;
		if (p != NULL)
			n = strtol(p + strlen(needle), NULL, 10);
	}
	h_resp_free(&r);
	free(needle);
	return n;
}

long
h_links_post_raw(int i, const char *auth, const char *ctype, const char *body,
    size_t len, struct h_resp *r)
{
	char *url = h_fmt("%s/v1/links", h_finxd_url(i));
	char *a = auth ? h_fmt("Authorization: %s", auth) : NULL;
	char *c = ctype ? h_fmt("Content-Type: %s", ctype) : NULL;
	const char *hdrs[3] = { NULL, NULL, NULL };
	int n = 0;

	if (a != NULL)
		hdrs[n++] = a;
	if (c != NULL)
		hdrs[n++] = c;
	h_http("POST", url, hdrs, body, len, r);
	free(url);
	free(a);
	free(c);
	return r->status;
}

long
h_conn_api(int i, const char *method, const char *cid, const char *what,
    struct h_resp *r)
{
	char *path = what ? h_fmt("/v1/connections/%s/%s", cid, what)
	                  : h_fmt("/v1/connections/%s", cid);
	struct h_resp got;

	h_api(i, method, path, NULL, &got);
	free(path);
	return h_keep(&got, r);
}

long
h_conn_post(int i, const char *cid, const char *what, char **code)
{
	struct h_resp r;
	long st = h_conn_api(i, "POST", cid, what, &r);

	if (code != NULL)
		*code = h_dup(h_err_code(&r));
	h_resp_free(&r);
	return st;
}

long
h_token_get(int i, const char *cid, char **tok, long *ms)
{
	struct h_resp r;
	long st = h_conn_api(i, "GET", cid, "token", &r);

	if (tok != NULL)
		*tok = h_dup(h_jstr(h_resp_json(&r), "access_token"));
	if (ms != NULL)
		*ms = r.ms;
	h_resp_free(&r);
	return st;
}

long
h_reauth(int i, const char *cid, struct h_resp *r)
{
	char *path = h_fmt("/v1/connections/%s/reauth", cid);

	h_api(i, "POST", path, "{\"return_url\":\"" H_RETURN_URL "\"}", r);
	free(path);
	return r->status;
}

struct json_object *
h_conn_get(int i, const char *cid)
{
	struct h_resp r;
	struct json_object *o = NULL;

	if (h_conn_api(i, "GET", cid, NULL, &r) == 200)
		o = json_object_get(h_resp_json(&r));
	h_resp_free(&r);
	return o;
}

char *
h_conn_status(int i, const char *cid)
{
	struct json_object *o = h_conn_get(i, cid);
	char *st = h_dup(h_jstr(o, "status"));

	json_object_put(o);
	return st;
}

bool
h_conn_status_is(int i, const char *cid, const char *want)
{
	char *st = h_conn_status(i, cid);
	bool ok = h_streq(st, want);

	free(st);
	return ok;
}

/* GET url quietly (refused connections are expected); the status or 0. */
long
h_probe(const char *url)
{
	struct h_buf b = { NULL, 0, 0 };
	CURL *c = h_curl(url, 2000L, &b);
	long status = 0;

	if (c == NULL)
		return 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	free(b.p);
	return status;
}

/* ---- URL helpers ----------------------------------------------------- */

static int
h_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static char *
h_urldecode(const char *s, size_t n)
{
	char *o = h_xmalloc(n + 1);
	size_t i, j = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '+') {
			o[j++] = ' ';
		} else if (s[i] == '%' && i + 2 < n &&
		    h_hexval(s[i + 1]) >= 0 && h_hexval(s[i + 2]) >= 0) {
			o[j++] = (char)(h_hexval(s[i + 1]) * 16 +
			    h_hexval(s[i + 2]));
			i += 2;
		} else {
			o[j++] = s[i];
		}
	}
	o[j] = '\0';
	return o;
}

/* Find name in url's query: start of the "name=" pair and its end. */
static const char *
h_qfind(const char *url, const char *name, const char **ret_end)
{
	const char *q = strchr(url, '?');
	size_t nl = strlen(name);

	if (q == NULL)
		return NULL;
	q++;
	while (*q != '\0' && *q != '#') {
		const char *e = q + strcspn(q, "&#");

		if ((size_t)(e - q) > nl && strncmp(q, name, nl) == 0 &&
		    q[nl] == '=') {
			*ret_end = e;
			return q;
		}
		if ((size_t)(e - q) == nl && strncmp(q, name, nl) == 0) {
			*ret_end = e;
			return q;
		}
		q = *e == '&' ? e + 1 : e;
	}
	return NULL;
}

char *
h_qparam(const char *url, const char *name)
{
	const char *end, *p;
	size_t nl = strlen(name);

	if (url == NULL)
		return NULL;
	p = h_qfind(url, name, &end);
	if (p == NULL)
		return NULL;
	if ((size_t)(end - p) == nl)
		return h_xstrdup("");
	return h_urldecode(p + nl + 1, (size_t)(end - p) - nl - 1);
}

char *
h_qreplace(const char *url, const char *name, const char *value)
{
	const char *end, *p = h_qfind(url, name, &end);

	if (p == NULL)
		return h_fmt("%s%c%s=%s", url, strchr(url, '?') ? '&' : '?',
		    name, value);
	return h_fmt("%.*s%s=%s%s", (int)(p - url), url, name, value, end);
}

/* ---- flows ------------------------------------------------------------- */

long
h_link_create(int i, const char *user_id, const char *return_url,
    struct h_resp *r)
{
	struct json_object *o = json_object_new_object();
	long st;

	json_object_object_add(o, "user_id", json_object_new_string(user_id));
	if (return_url != NULL)
		json_object_object_add(o, "return_url",
		    json_object_new_string(return_url));
	json_object_object_add(o, "language", json_object_new_string("en"));
	st = h_api(i, "POST", "/v1/links",
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), r);
	json_object_put(o);
	return st;
}

char *
h_widget(const char *location, const char *decision)
{
	char *url, *cb = NULL;
	struct h_resp r;

	if (location == NULL)
		return NULL;
	url = h_fmt("%s%cdecision=%s", location,
	    strchr(location, '?') ? '&' : '?', decision);
	h_http("GET", url, NULL, NULL, 0, &r);
	free(url);
	if (r.status == 302 && h_resp_header(&r, "Location") != NULL)
		cb = h_xstrdup(h_resp_header(&r, "Location"));
	else
		printf("# widget %s answered %ld, not 302 with Location\n",
		    decision, r.status);
	h_resp_free(&r);
	return cb;
}

char *
h_link_approve(int i, const char *user, char **link_id)
{
	struct h_resp r;
	char *cb = NULL;

	if (h_link_create(i, user, H_RETURN_URL, &r) == 201) {
		cb = h_widget(h_jstr(h_resp_json(&r), "location"), "approve");
		if (link_id != NULL)
			*link_id = h_dup(h_jstr(h_resp_json(&r), "link_id"));
	} else {
		printf("# POST /v1/links answered %ld (error %s)\n", r.status,
		    h_err_code(&r) ? h_err_code(&r) : "-");
	}
	h_resp_free(&r);
	return cb;
}

char *
h_connect(int i, const char *user)
{
	char *cb = h_link_approve(i, user, NULL), *cid = NULL, *status;
	struct h_resp r;

	if (cb == NULL)
		return NULL;
	h_http("GET", cb, NULL, NULL, 0, &r);
	free(cb);
	status = h_qparam(h_resp_header(&r, "Location"), "status");
	if (r.status == 303 && h_streq(status, "connected"))
		cid = h_qparam(h_resp_header(&r, "Location"), "connection_id");
	else
		printf("# callback answered %ld\n", r.status);
	free(status);
	h_resp_free(&r);
	return cid;
}

char *
h_connect_retry(int i, const char *user)
{
	char *cid = h_connect(i, user);

	if (cid == NULL) {
		printf("# connecting %s failed; trying once more\n", user);
		cid = h_connect(i, user);
	}
	return cid;
}

size_t
h_curl_discard(char *p, size_t sz, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return sz * n;
}

size_t
h_curl_connected(char *p, size_t sz, size_t n, void *connected)
{
	if (sz * n > 9 && strncasecmp(p, "Location:", 9) == 0 &&
	    memmem(p, sz * n, "status=connected", 16) != NULL)
		*(bool *)connected = true;
	return sz * n;
}
