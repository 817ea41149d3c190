/*
 * libmicrohttpd glue for finx-sandbox: request lifecycle (the URI log
 * callback allocates, the completion callback frees), recording, latency
 * and fault injection, the route table, reply helpers, body parsing and
 * authentication helpers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "sbx_handlers.h"
#include "sbx_http.h"

#define CONTROL_PREFIX "/_sandbox/"

struct route {
	const char *method;
	const char *pattern;
	sbx_handler fn;
};

static const struct route routes[] = {
	{ "POST", "/ongoing/access", h_ongoing_access },
	{ "GET", "/widget", h_widget },
	{ "POST", "/auth/token", h_token },
	{ "POST", "/auth/revoke", h_revoke },
	{ "GET", "/auth/revoke", h_revoke },
	{ "GET", "/version", h_version },
	{ "GET", "/rest/accounts", h_accounts },
	{ "GET", "/rest/accounts/*", h_account },
	{ "GET", "/rest/accounts/*/balance", h_balance },
	{ "GET", "/rest/accounts/*/transactions", h_account_transactions },
	{ "GET", "/rest/accounts/*/transactions/*", h_account_transaction },
	{ "GET", "/rest/transactions", h_transactions },
	{ "GET", "/rest/transactions/*", h_transaction },
	{ "GET", "/rest/accesses", h_accesses },
	{ "GET", "/rest/accesses/*", h_access },
	{ "POST", "/rest/accesses/*/syncs", h_sync_create },
	{ "GET", "/rest/accesses/*/syncs/*", h_sync_get },
	{ "GET", "/rest/notifications", h_notifications },
	{ "POST", "/rest/notifications", h_notification_add },
	{ "GET", "/rest/notifications/*", h_notification },
	{ "PUT", "/rest/notifications/*", h_notification_put },
	{ "DELETE", "/rest/notifications/*", h_notification_delete },
	{ "GET", "/_sandbox/requests", h_ctl_requests },
	{ "DELETE", "/_sandbox/requests", h_ctl_requests_clear },
	{ "GET", "/_sandbox/stats", h_ctl_stats },
	{ "DELETE", "/_sandbox/stats", h_ctl_stats_clear },
	{ "GET", "/_sandbox/config", h_ctl_config },
	{ "POST", "/_sandbox/config", h_ctl_config_set },
	{ "GET", "/_sandbox/faults", h_ctl_faults },
	{ "POST", "/_sandbox/faults", h_ctl_faults_add },
	{ "DELETE", "/_sandbox/faults", h_ctl_faults_clear },
	{ "GET", "/_sandbox/issued", h_ctl_issued },
	{ "POST", "/_sandbox/revoke-user", h_ctl_revoke_user },
	{ "POST", "/_sandbox/transactions", h_ctl_transactions },
	{ "GET", "/_sandbox/grants", h_ctl_grants },
	{ "POST", "/_sandbox/grants", h_ctl_grants_mint },
	{ "GET", "/_sandbox/grants/detail", h_ctl_grants_detail },
	{ "GET", "/_sandbox/refreshes", h_ctl_refreshes },
	{ "DELETE", "/_sandbox/refreshes", h_ctl_refreshes_clear },
	{ "POST", "/_sandbox/tokens/check", h_ctl_token_check },
	{ "GET", "/_sandbox/notifications", h_ctl_notifications },
	{ "POST", "/_sandbox/notifications/fire", h_ctl_notifications_fire },
	{ "POST", "/_sandbox/transactions/book", h_ctl_txn_book },
	{ "POST", "/_sandbox/transactions/add", h_ctl_txn_add },
	{ "POST", "/_sandbox/transactions/correct", h_ctl_txn_correct },
	{ "POST", "/_sandbox/transactions/drop", h_ctl_txn_drop },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static const char badjson_body[] = "{\"access_token\": \"eyJhbGciOiJIUzI1";

static void
req_free(struct sbx_req *r)
{
	size_t i;

	if (r == NULL)
		return;
	free(r->raw_uri);
	free(r->method);
	free(r->path);
	buf_free(&r->body);
	for (i = 0; i < r->ncaps; i++)
		free(r->caps[i]);
	for (i = 0; i < r->nextra; i++) {
		free(r->extra[i].name);
		free(r->extra[i].value);
	}
	free(r);
}

static void *
http_uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct sbx_req *r = xcalloc(1, sizeof(*r));

	r->raw_uri = xstrdup(uri != NULL ? uri : "");
	r->conn = c;
	return r;
}

static void
http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	req_free(*con_cls);
	*con_cls = NULL;
}

static void http_mhd_log(void *, const char *, va_list)
    __attribute__((format(printf, 2, 0)));

static void
http_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "finx-sandbox: mhd: %s%s", line,
	    line[0] != '\0' && line[strlen(line) - 1] == '\n' ? "" : "\n");
}

void
http_header(struct sbx_req *r, const char *name, const char *value)
{
	if (r->nextra == HTTP_MAX_EXTRA)
		return;
	r->extra[r->nextra].name = xstrdup(name);
	r->extra[r->nextra].value = xstrdup(value);
	r->nextra++;
}

enum MHD_Result
http_reply(struct sbx_req *r, unsigned int status, const char *ctype,
    const char *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	size_t i;

	if (sbx_locked())
		abort(); /* programmer error: would block everyone */
	sleep_ms(r->delay_after_ms);
	r->status = status;
	resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body,
	    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	if (ctype != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
		    ctype);
	for (i = 0; i < r->nextra; i++)
		MHD_add_response_header(resp, r->extra[i].name,
		    r->extra[i].value);
	ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

enum MHD_Result
http_reply_json(struct sbx_req *r, unsigned int status, json_object *o)
{
	const char *s;
	size_t len;
	enum MHD_Result ret;

	s = json_object_to_json_string_length(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	ret = http_reply(r, status, "application/json", s, len);
	json_object_put(o);
	return ret;
}

enum MHD_Result
http_reply_html(struct sbx_req *r, unsigned int status, const char *html)
{
	return http_reply(r, status, "text/html; charset=utf-8", html,
	    strlen(html));
}

enum MHD_Result
http_reply_error(struct sbx_req *r, unsigned int status, int code,
    const char *desc, const char *msg, json_object *data)
{
	json_object *o = json_object_new_object(), *e;

	e = json_object_new_object();
	json_object_object_add(e, "code", json_object_new_int(code));
	json_object_object_add(e, "group",
	    json_object_new_string(code < 10000 ? "client"
	            : code < 20000              ? "user"
	            : code < 30000              ? "bank"
	                                        : "general"));
	json_object_object_add(e, "description", json_object_new_string(desc));
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(e, "data",
	    data != NULL ? data : json_object_new_object());
	json_object_object_add(o, "error", e);
	return http_reply_json(r, status, o);
}

enum MHD_Result
http_reply_client_auth(struct sbx_req *r)
{
	http_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
	    "Basic realm=\"finX\"");
	return http_reply_error(r, MHD_HTTP_UNAUTHORIZED, 1004,
	    "Invalid client authorization",
	    "Missing or wrong client credentials", NULL);
}

enum MHD_Result
http_reply_bearer_auth(struct sbx_req *r)
{
	http_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
	    "Bearer realm=\"finX\", error=\"invalid_token\"");
	return http_reply_error(r, MHD_HTTP_UNAUTHORIZED, 1003, "Unauthorized",
	    "Missing, unknown, expired or revoked access token", NULL);
}

const char *
http_arg(struct sbx_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND,
	    name);
}

const char *
http_hdr(struct sbx_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* Media type of the request without parameters, lower-cased, or "". */
static void
media_type(struct sbx_req *r, char *out, size_t n)
{
	const char *ct = http_hdr(r, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t i = 0;

	if (ct != NULL) {
		while (*ct == ' ' || *ct == '\t')
			ct++;
		for (;
		     ct[i] != '\0' && ct[i] != ';' && ct[i] != ' ' && i + 1 < n;
		     i++)
			out[i] =
			    (char)(ct[i] >= 'A' && ct[i] <= 'Z' ? ct[i] + 32
			                                        : ct[i]);
	}
	out[i] = '\0';
}

int
http_body_json(struct sbx_req *r, json_object **ret, char *err, size_t n)
{
	json_tokener *tok;
	json_object *o;
	const char *s = buf_str(&r->body);
	size_t len = r->body.len, end;

	if (len == 0) {
		snprintf(err, n, "Request body is empty.");
		return -1;
	}
	if (memchr(s, '\0', len) != NULL) {
		snprintf(err, n, "Request body contains a NUL byte.");
		return -1;
	}
	tok = json_tokener_new_ex(32);
	json_tokener_set_flags(tok,
	    JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, s, (int)len + 1);
	if (o == NULL) {
		snprintf(err, n, "Request body is not valid JSON: %s.",
		    json_tokener_error_desc(json_tokener_get_error(tok)));
		json_tokener_free(tok);
		return -1;
	}
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (end < len && strchr(" \t\r\n", s[end]) != NULL)
		end++;
	if (end < len) {
		snprintf(err, n, "Trailing data after the JSON value.");
		json_object_put(o);
		return -1;
	}
	if (!json_object_is_type(o, json_type_object)) {
		snprintf(err, n, "Request body must be a JSON object.");
		json_object_put(o);
		return -1;
	}
	*ret = o;
	return 0;
}

static int
params_add(struct sbx_params *ps, char *k, char *v)
{
	if (params_get(ps, k) != NULL) {
		free(k);
		free(v);
		return -1;
	}
	ps->kv = xrealloc(ps->kv, (ps->n + 1) * sizeof(*ps->kv));
	ps->kv[ps->n].name = k;
	ps->kv[ps->n].value = v;
	ps->n++;
	return 0;
}

static int
params_form(const char *s, size_t len, struct sbx_params *ps, char *err,
    size_t n)
{
	const char *p = s, *end = s + len, *amp, *eq;
	char *k, *v;

	while (p < end) {
		amp = memchr(p, '&', (size_t)(end - p));
		if (amp == NULL)
			amp = end;
		if (amp == p) {
			p++;
			continue;
		}
		eq = memchr(p, '=', (size_t)(amp - p));
		if (eq == NULL)
			eq = amp;
		if (url_decode(p, (size_t)(eq - p), true, &k) == -1) {
			snprintf(err, n, "Bad percent-encoding in the body.");
			return -1;
		}
		v = NULL;
		if (url_decode(eq < amp ? eq + 1 : amp,
		        eq < amp ? (size_t)(amp - eq - 1) : 0, true,
		        &v) == -1) {
			free(k);
			snprintf(err, n, "Bad percent-encoding in the body.");
			return -1;
		}
		if (params_add(ps, k, v) == -1) {
			snprintf(err, n, "A parameter appears more than once.");
			return -1;
		}
		p = amp + 1;
	}
	return 0;
}

static int
params_json(struct sbx_req *r, struct sbx_params *ps, char *err, size_t n)
{
	json_object *o;

	if (http_body_json(r, &o, err, n) == -1)
		return -1;
	json_object_object_foreach(o, key, val)
	{
		if (!json_object_is_type(val, json_type_string)) {
			snprintf(err, n, "Parameter '%.64s' must be a string.",
			    key);
			json_object_put(o);
			return -1;
		}
		(void)params_add(ps, xstrdup(key),
		    xstrdup(json_object_get_string(val)));
	}
	json_object_put(o);
	return 0;
}

int
http_body_params(struct sbx_req *r, struct sbx_params *ps,
    enum http_body_kind *ret_kind, char *err, size_t n)
{
	char mt[64];

	ps->kv = NULL;
	ps->n = 0;
	media_type(r, mt, sizeof(mt));
	if (r->body.len == 0 && mt[0] == '\0') {
		*ret_kind = BODY_NONE;
		return 0;
	}
	if (strcmp(mt, "application/json") == 0) {
		*ret_kind = BODY_JSON;
		if (params_json(r, ps, err, n) == 0)
			return 0;
	} else if (strcmp(mt, "application/x-www-form-urlencoded") == 0) {
		*ret_kind = BODY_FORM;
		if (params_form(buf_str(&r->body), r->body.len, ps, err, n) ==
		    0)
			return 0;
	} else
		snprintf(err, n, "Unsupported Content-Type '%.64s'.", mt);
	params_free(ps);
	return -1;
}

static enum MHD_Result
query_param_it(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	(void)params_add(cls, xstrdup(key), xstrdup(value ? value : ""));
	return MHD_YES;
}

void
http_query_params(struct sbx_req *r, struct sbx_params *ps)
{
	ps->kv = NULL;
	ps->n = 0;
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND,
	    query_param_it, ps);
}

const char *
params_get(const struct sbx_params *ps, const char *name)
{
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (strcmp(ps->kv[i].name, name) == 0)
			return ps->kv[i].value;
	return NULL;
}

void
params_free(struct sbx_params *ps)
{
	size_t i;

	for (i = 0; i < ps->n; i++) {
		free(ps->kv[i].name);
		free(ps->kv[i].value);
	}
	free(ps->kv);
	ps->kv = NULL;
	ps->n = 0;
}

/* Decodes standard base64; returns a NUL-terminated copy or NULL. */
static char *
b64_decode(const char *s)
{
	size_t len = strlen(s), pad = 0;
	unsigned char *out;
	int n;

	if (len == 0 || len % 4 != 0)
		return NULL;
	if (s[len - 1] == '=')
		pad++;
	if (s[len - 2] == '=')
		pad++;
	out = xmalloc(len / 4 * 3 + 1);
	n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n < pad) {
		free(out);
		return NULL;
	}
	out[(size_t)n - pad] = '\0';
	if (strlen((char *)out) != (size_t)n - pad) {
		free(out);
		return NULL;
	}
	return (char *)out;
}

/* Compares user and password, both raw and form-decoded (RFC 6749 2.3.1). */
static bool
creds_match(const char *user, const char *pass)
{
	char *du = NULL, *dp = NULL;
	bool uok, pok;

	/* Evaluate both comparisons always, so timing says nothing. */
	uok = ct_streq(user, sbx.client_id);
	pok = ct_streq(pass, sbx.client_secret);
	if ((!uok || !pok) && url_decode(user, strlen(user), true, &du) == 0 &&
	    url_decode(pass, strlen(pass), true, &dp) == 0) {
		uok = ct_streq(du, sbx.client_id);
		pok = ct_streq(dp, sbx.client_secret);
	}
	free(du);
	free(dp);
	return uok && pok;
}

bool
http_client_ok(struct sbx_req *r)
{
	const char *h = http_hdr(r, MHD_HTTP_HEADER_AUTHORIZATION);
	char *dec, *colon;
	bool ok = false;

	if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
		goto out;
	for (h += 6; *h == ' '; h++)
		;
	if ((dec = b64_decode(h)) == NULL)
		goto out;
	if ((colon = strchr(dec, ':')) != NULL) {
		*colon = '\0';
		ok = creds_match(dec, colon + 1);
	}
	free(dec);
out:
	if (!ok) {
		sbx_lock();
		sbx_count(STAT_AUTH_FAILURES, 1);
		sbx_unlock();
	}
	return ok;
}

const char *
http_bearer(struct sbx_req *r)
{
	const char *h = http_hdr(r, MHD_HTTP_HEADER_AUTHORIZATION);

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	for (h += 7; *h == ' '; h++)
		;
	return *h != '\0' ? h : NULL;
}

struct sbx_user *
http_bearer_user(struct sbx_req *r)
{
	const char *v = http_bearer(r);
	struct sbx_token *t = v != NULL ? sbx_token_find(v) : NULL;

	if (t == NULL || t->kind != TOK_ACCESS ||
	    !sbx_token_live(t, now_ms())) {
		sbx_count(STAT_AUTH_FAILURES, 1);
		return NULL;
	}
	return t->grant->user;
}

static enum MHD_Result
record_hdr_it(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct sbx_record *rec = cls;

	rec->hdrs = xrealloc(rec->hdrs, (rec->nhdrs + 1) * sizeof(*rec->hdrs));
	rec->hdrs[rec->nhdrs].name = xstrdup(key);
	rec->hdrs[rec->nhdrs].value = xstrdup(value != NULL ? value : "");
	rec->nhdrs++;
	return MHD_YES;
}

static struct sbx_record *
record_new(struct sbx_req *r)
{
	struct sbx_record *rec = xcalloc(1, sizeof(*rec));
	const char *q = strchr(r->raw_uri, '?'), *h;
	size_t n;

	rec->method = xstrdup(r->method);
	rec->path = xstrdup(r->path);
	rec->query = xstrdup(q != NULL ? q + 1 : "");
	if ((h = http_hdr(r, MHD_HTTP_HEADER_CONTENT_TYPE)) != NULL)
		rec->content_type = xstrdup(h);
	if ((h = http_hdr(r, MHD_HTTP_HEADER_AUTHORIZATION)) != NULL) {
		n = strcspn(h, " ");
		rec->auth_scheme = xstrndup(h, n);
	}
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, record_hdr_it, rec);
	rec->body = xstrndup(buf_str(&r->body), r->body.len);
	rec->body_len = r->body.len;
	rec->at_ms = now_ms();
	return rec;
}

/* Splits on '/' and compares segment by segment; '*' captures one. */
static bool
route_match(const char *pattern, const char *path, struct sbx_req *r)
{
	const char *p = pattern, *s = path;
	size_t pn, sn;

	r->ncaps = 0;
	for (;;) {
		pn = strcspn(p, "/");
		sn = strcspn(s, "/");
		if (pn == 1 && *p == '*') {
			if (sn == 0 || r->ncaps == HTTP_MAX_CAPS)
				return false;
			r->caps[r->ncaps++] = xstrndup(s, sn);
		} else if (pn != sn || strncmp(p, s, pn) != 0)
			return false;
		p += pn;
		s += sn;
		if (*p == '\0' || *s == '\0')
			return *p == *s;
		p++;
		s++;
	}
}

static void
caps_clear(struct sbx_req *r)
{
	size_t i;

	for (i = 0; i < r->ncaps; i++) {
		free(r->caps[i]);
		r->caps[i] = NULL;
	}
	r->ncaps = 0;
}

static enum MHD_Result
route(struct sbx_req *r)
{
	struct sbx_buf allow;
	char *path = xstrdup(r->path);
	size_t i, len = strlen(path);
	enum MHD_Result ret;

	/* finX's guide writes /rest/accounts/ with a slash; accept both. */
	if (strncmp(path, "/rest/", 6) == 0 && len > 6 && path[len - 1] == '/')
		path[len - 1] = '\0';
	buf_init(&allow);
	for (i = 0; i < NROUTES; i++) {
		if (!route_match(routes[i].pattern, path, r)) {
			caps_clear(r);
			continue;
		}
		if (strcmp(routes[i].method, r->method) == 0) {
			free(path);
			buf_free(&allow);
			return routes[i].fn(r);
		}
		caps_clear(r);
		buf_addf(&allow, "%s%s", allow.len ? ", " : "",
		    routes[i].method);
	}
	free(path);
	if (allow.len > 0) {
		http_header(r, MHD_HTTP_HEADER_ALLOW, buf_str(&allow));
		buf_free(&allow);
		return http_reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, 1000,
		    "Method not allowed", "This method is not allowed here",
		    NULL);
	}
	ret = http_reply_error(r, MHD_HTTP_NOT_FOUND, 1002, "Entity not found",
	    "No such endpoint", NULL);
	return ret;
}

/* finX error code for an injected status: general, rate limit, client. */
static int
fault_code(int status)
{
	if (status >= 500)
		return 30000;
	return status == 429 ? 1020 : 1000;
}

static enum MHD_Result
apply_fault(struct sbx_req *r, const struct sbx_fault *f, bool *served)
{
	*served = true;
	switch (f->mode) {
	case FAULT_CLOSE:
		return MHD_NO;
	case FAULT_BADJSON:
		return http_reply(r, MHD_HTTP_OK, "application/json",
		    badjson_body, sizeof(badjson_body) - 1);
	case FAULT_STATUS:
		if (f->status == 429 || f->status == 503)
			http_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
		return http_reply_error(r, (unsigned int)f->status,
		    fault_code(f->status), "Injected fault",
		    "finx-sandbox fault injection", NULL);
	case FAULT_DELAY:
		sleep_ms(f->delay_ms);
		break;
	case FAULT_DELAY_AFTER:
		r->delay_after_ms = f->delay_ms;
		break;
	}
	*served = false;
	return MHD_YES;
}

/*
 * The refresh token a POST /auth/token presents with grant_type
 * refresh_token (malloc'd), or NULL: what the refresh log keys on before
 * latency and faults.  h_token parses the body again for real.
 */
static char *
presented_refresh(struct sbx_req *r)
{
	struct sbx_params ps;
	enum http_body_kind kind;
	const char *gt, *rt;
	char err[64], *v = NULL;

	if (r->too_big || strcmp(r->method, "POST") != 0 ||
	    strcmp(r->path, "/auth/token") != 0)
		return NULL;
	if (http_body_params(r, &ps, &kind, err, sizeof(err)) == -1)
		return NULL;
	gt = params_get(&ps, "grant_type");
	rt = params_get(&ps, "refresh_token");
	if (gt != NULL && strcmp(gt, "refresh_token") == 0 && rt != NULL &&
	    *rt != '\0')
		v = xstrdup(rt);
	params_free(&ps);
	return v;
}

/* Extra /auth/token latency drawn from [min, max]; lock held. */
static long
token_latency_random(void)
{
	long lo = sbx.cfg.token_latency_min_ms;
	long hi = sbx.cfg.token_latency_max_ms;

	if (hi <= 0)
		return 0;
	if (hi < lo)
		hi = lo;
	return lo + (long)(rand_u64() % (uint64_t)(hi - lo + 1));
}

/* Notes the reply in the request's record and closes its refresh log
 * entry, if it has them. */
static void
answered(struct sbx_req *r, enum sbx_rf_outcome dflt)
{
	if (r->rec_seq == 0 && r->rf_seq == 0)
		return;
	sbx_lock();
	if (r->rec_seq != 0)
		sbx_record_handled(r->rec_seq, mono_us() - r->t0_us);
	if (r->rf_seq != 0)
		sbx_refresh_answered(r->rf_seq, r->status, dflt);
	sbx_unlock();
}

/* Final phase: record, inject latency and faults, then route. */
static enum MHD_Result
dispatch(struct sbx_req *r)
{
	struct sbx_record *rec = NULL;
	struct sbx_fault f;
	bool control, faulted = false, served;
	long latency = 0;
	enum MHD_Result ret;
	char *presented = NULL;

	r->t0_us = mono_us();
	control = strncmp(r->path, CONTROL_PREFIX, strlen(CONTROL_PREFIX)) == 0;
	if (!control) {
		rec = record_new(r);
		presented = presented_refresh(r);
	}
	sbx_lock();
	if (!control) {
		r->rec_seq = sbx_record_add(rec);
		sbx_count(STAT_REQUESTS, 1);
		if (strncmp(r->path, "/rest/", 6) == 0)
			sbx_count(STAT_REST_CALLS, 1);
		latency = sbx.cfg.latency_ms;
		if (strcmp(r->path, "/auth/token") == 0)
			latency += sbx.cfg.token_latency_ms +
			    token_latency_random();
		if (presented != NULL)
			r->rf_seq = sbx_refresh_begin(presented);
		if (!r->too_big)
			faulted = sbx_fault_take(r->path, &f);
	}
	sbx_unlock();
	free(presented);
	if (r->too_big)
		return http_reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, 1000,
		    "Request body too large", "The limit is 1 MiB", NULL);
	sleep_ms(latency);
	if (faulted) {
		ret = apply_fault(r, &f, &served);
		if (served) {
			answered(r, RFO_FAULT);
			return ret;
		}
	}
	ret = route(r);
	answered(r, RFO_REJECTED);
	return ret;
}

static enum MHD_Result
http_access(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct sbx_req *r = *con_cls;
	const char *cl;
	long len;

	if (r == NULL) {
		r = http_uri_log(NULL, url, c);
		*con_cls = r;
	}
	if (!r->started) {
		r->started = true;
		r->conn = c;
		r->method = xstrdup(method);
		r->path = xstrdup(url);
		cl = http_hdr(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL &&
		    (parse_long(cl, 0, HTTP_BODY_MAX, &len) == -1)) {
			/* Refuse before reading a byte of it. */
			r->too_big = true;
			return dispatch(r);
		}
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		if (!r->too_big &&
		    r->body.len + *upload_data_size <= HTTP_BODY_MAX)
			buf_add(&r->body, upload_data, *upload_data_size);
		else {
			r->too_big = true;
			buf_free(&r->body);
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	return dispatch(r);
}

struct MHD_Daemon *
http_start(const struct sockaddr *sa, bool ipv6)
{
	unsigned int flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;

	if (ipv6)
		flags |= MHD_USE_IPv6;
	return MHD_start_daemon(flags, 0, NULL, NULL, http_access, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_URI_LOG_CALLBACK, http_uri_log,
	    NULL, MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
	    /* finX has no such cap: 500 callbacks in a burst each hold a
	     * token exchange while pulls run, and at 512 the sandbox reset
	     * one of them (bench_callback, 2026-12-02). */
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)2048,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)300, MHD_OPTION_END);
}

unsigned int
http_port(struct MHD_Daemon *d)
{
	const union MHD_DaemonInfo *info;

	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	return info != NULL ? info->port : 0;
}
