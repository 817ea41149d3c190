/*
 * finX API client: a bounded stack of libcurl easy handles and one request
 * helper that applies every transport rule (timeouts, TLS, no redirects,
 * capped bodies, loopback-only plain http).  The answers are decoded by
 * finx_decode.c.  Nothing here logs above debug level.
 */
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "encode.h"
#include "finx.h"
#include "finx_decode.h"
#include "finx_url.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "secret.h"
#include "text.h"

#ifndef FINXD_VERSION
#define FINXD_VERSION "dev"
#endif

#define FINX_USER_AGENT "finxd/" FINXD_VERSION
#define FINX_POOL_MAX 16   /* idle handles kept */
#define FINX_REST_DEPTH 64 /* JSON nesting for /rest answers */
#define FINX_RETRY_AFTER_MAX 86400L
#define FINX_CONNECT_TIMEOUT_MS 5000L /* when the config has none */
#define FINX_TIMEOUT_MS 30000L

/* One finX request and what came back. */
struct finx_call {
	const char *method; /* "GET", "POST" or "DELETE" */
	const char *path;   /* appended to finx_url; may carry a query */
	const char *bearer; /* user token, or NULL for client Basic auth */
	const char *ctype;  /* body media type; NULL when there is no body */
	const char *body;
	size_t body_len;

	long status;            /* 0 when no HTTP answer came back */
	long retry_after;       /* seconds, from Retry-After */
	bool www_invalid_grant; /* WWW-Authenticate: error="invalid_grant" */
	bool too_large;         /* the answer passed FINX_MAX_BODY */
	struct buf resp;        /* the answer body, capped at FINX_MAX_BODY */
};

static const struct config *finx_cfg;
static bool finx_url_ok;
static bool finx_url_loopback;
static const char *finx_url_why = "finX client not initialised";

static pthread_mutex_t finx_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static CURL *finx_pool[FINX_POOL_MAX];
static size_t finx_pool_n;

static CURL *finx_handle_get(void);
static void finx_handle_put(CURL *);
static void finx_err_set(struct finx_error *, long, const char *, ...)
    __attribute__((format(printf, 3, 4)));
static size_t finx_on_body(char *, size_t, size_t, void *);
static size_t finx_on_header(char *, size_t, size_t, void *);
static char *finx_auth_header(const char *, struct finx_error *);
static bool finx_slist_add(struct curl_slist **, const char *);
static void finx_slist_free_secret(struct curl_slist *);
static CURLcode finx_setopts(CURL *, struct finx_call *, const char *,
    struct curl_slist *, char *);
static bool finx_perform(struct finx_call *, struct finx_error *);
static void finx_transport_error(struct finx_call *, CURLcode, const char *,
    struct finx_error *);
static void finx_log_call(const struct finx_call *, int64_t, const char *);
static bool finx_call_run(struct finx_call *, struct finx_error *);
static void finx_call_free(struct finx_call *, bool);
static char *finx_body(const char *const *, size_t, size_t *, const char **);
static bool finx_token_call(const char *const *, size_t, const char *,
    struct finx_tokens *, struct finx_error *);
static bool finx_path_ok(const char *);

/*
 * Remember cfg (borrowed for the life of the process) and check its finX
 * URL once; a refused URL makes every call fail without a request.
 */
void
finx_init(const struct config *cfg)
{
	finx_cfg = cfg;
	finx_url_ok =
	    finx_url_check(cfg->finx_url, &finx_url_loopback, &finx_url_why);
	if (!finx_url_ok)
		log_kv(LOG_DEBUG, "finX URL refused", "why", finx_url_why,
		    NULL);
}

/* Free the idle handles; no finX call may be running. */
void
finx_cleanup(void)
{
	size_t i;

	pthread_mutex_lock(&finx_pool_lock);
	for (i = 0; i < finx_pool_n; i++) {
		curl_easy_cleanup(finx_pool[i]);
		finx_pool[i] = NULL;
	}
	finx_pool_n = 0;
	pthread_mutex_unlock(&finx_pool_lock);
	finx_cfg = NULL;
	finx_url_ok = false;
	finx_url_why = "finX client not initialised";
}

/* Take an idle handle (keeping its connection cache) or make a new one. */
static CURL *
finx_handle_get(void)
{
	CURL *h = NULL;

	pthread_mutex_lock(&finx_pool_lock);
	if (finx_pool_n > 0)
		h = finx_pool[--finx_pool_n];
	pthread_mutex_unlock(&finx_pool_lock);
	if (h == NULL)
		h = curl_easy_init();
	return h;
}

/*
 * Return a handle.  The reset drops every option (and so every pointer to
 * our stack and to header lists about to be freed) but keeps live
 * connections and TLS sessions.
 */
static void
finx_handle_put(CURL *h)
{
	if (h == NULL)
		return;
	curl_easy_reset(h);
	pthread_mutex_lock(&finx_pool_lock);
	if (finx_pool_n < FINX_POOL_MAX) {
		finx_pool[finx_pool_n++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&finx_pool_lock);
	if (h != NULL)
		curl_easy_cleanup(h);
}

/* Reset e and give it a status and our own (never upstream) message. */
static void
finx_err_set(struct finx_error *e, long status, const char *fmt, ...)
{
	va_list ap;
	char msg[256];

	finx_error_free(e);
	e->http_status = status;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->message = xstrdup(msg);
}

/* curl write callback: returning less than asked aborts over the cap. */
static size_t
finx_on_body(char *p, size_t size, size_t n, void *arg)
{
	struct finx_call *c = arg;
	size_t len = size * n;

	if (!buf_append(&c->resp, p, len))
		return 0;
	return len;
}

void
finx_header_value(const char *p, size_t len, char *out, size_t outsz)
{
	const char *colon = memchr(p, ':', len);
	size_t n;

	out[0] = '\0';
	if (colon == NULL)
		return;
	len -= (size_t)(colon + 1 - p);
	p = colon + 1;
	while (len > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)p[len - 1]))
		len--;
	if (len >= outsz)
		return;
	n = len;
	memcpy(out, p, n);
	out[n] = '\0';
}

long
finx_retry_after_value(const char *v, long max)
{
	long secs;
	time_t t;

	if (v[0] == '\0')
		return -1;
	if (!parse_long(v, 0, LONG_MAX, &secs)) {
		if ((t = curl_getdate(v, NULL)) == -1)
			return -1;
		secs = t > time(NULL) ? (long)(t - time(NULL)) : 0;
	}
	return secs > max ? max : secs;
}

/*
 * curl header callback: Retry-After (delta seconds or an HTTP date) and
 * an invalid_grant in WWW-Authenticate.  A new status line (after a 1xx)
 * starts over.
 */
static size_t
finx_on_header(char *p, size_t size, size_t n, void *arg)
{
	struct finx_call *c = arg;
	size_t len = size * n;
	char v[128];
	long secs;

	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		c->retry_after = 0;
		c->www_invalid_grant = false;
	} else if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		finx_header_value(p, len, v, sizeof(v));
		if ((secs = finx_retry_after_value(v, FINX_RETRY_AFTER_MAX)) >= 0)
			c->retry_after = secs;
	} else if (len > 17 && strncasecmp(p, "WWW-Authenticate:", 17) == 0) {
		finx_header_value(p, len, v, sizeof(v));
		if (strstr(v, "error=\"invalid_grant\"") != NULL ||
		    strstr(v, "error=invalid_grant") != NULL)
			c->www_invalid_grant = true;
	}
	return len;
}

/*
 * "Authorization: Basic ..." from the client credentials, or "Bearer ..."
 * from a header-safe user token.  A secret: the caller wipes it.
 */
static char *
finx_auth_header(const char *bearer, struct finx_error *err)
{
	char *pair, *b64, *h;

	if (bearer != NULL) {
		if (!token_header_safe(bearer)) {
			finx_err_set(err, 0,
			    "access token not header-safe; "
			    "request not sent");
			err->never_sent = true;
			return NULL;
		}
		return xasprintf("Authorization: Bearer %s", bearer);
	}
	if (finx_cfg->client_id == NULL || finx_cfg->client_secret == NULL) {
		finx_err_set(err, 0, "finX client credentials not configured");
		err->never_sent = true;
		return NULL;
	}
	pair = xasprintf("%s:%s", finx_cfg->client_id, finx_cfg->client_secret);
	b64 = b64_encode(pair, strlen(pair));
	h = xasprintf("Authorization: Basic %s", b64);
	free_secret(pair);
	free_secret(b64);
	return h;
}

/* Append a copy of s to *l; false (list unchanged) when out of memory. */
static bool
finx_slist_add(struct curl_slist **l, const char *s)
{
	struct curl_slist *n = curl_slist_append(*l, s);

	if (n == NULL)
		return false;
	*l = n;
	return true;
}

/* curl_slist_append copies: wipe every copy before the list is freed. */
static void
finx_slist_free_secret(struct curl_slist *l)
{
	struct curl_slist *p;

	for (p = l; p != NULL; p = p->next)
		OPENSSL_cleanse(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

/* Set one option of handle h, returning the failure from the caller. */
#define SETOPT(opt, val)                                                       \
	do {                                                                   \
		if ((rc = curl_easy_setopt(h, opt, val)) != CURLE_OK)          \
			return rc;                                             \
	} while (0)

/* Timeouts, TLS, protocols, proxy: the same for every call. */
static CURLcode
finx_setopts_transport(CURL *h, char *errbuf)
{
	long cto = finx_cfg->finx_connect_timeout_ms;
	long to = finx_cfg->finx_timeout_ms;
	CURLcode rc;

	SETOPT(CURLOPT_ERRORBUFFER, errbuf);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS,
	    cto > 0 ? cto : FINX_CONNECT_TIMEOUT_MS);
	SETOPT(CURLOPT_TIMEOUT_MS, to > 0 ? to : FINX_TIMEOUT_MS);
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	SETOPT(CURLOPT_PROTOCOLS_STR,
	    finx_url_loopback ? "http,https" : "https");
	/* A proxy from the environment must not see loopback traffic. */
	if (finx_url_loopback)
		SETOPT(CURLOPT_PROXY, "");
	return CURLE_OK;
}

/* The method of c, and its body for a POST. */
static CURLcode
finx_setopts_method(CURL *h, struct finx_call *c)
{
	CURLcode rc;

	if (strcmp(c->method, "POST") == 0) {
		/*
		 * A POST is never sent on a reused connection: libcurl
		 * silently re-sends a request whose reused connection died
		 * without an answer, and a re-sent code exchange or refresh
		 * is a replay (a rotated refresh token presented twice
		 * revokes the grant).  A fresh connection is never retried.
		 */
		SETOPT(CURLOPT_FRESH_CONNECT, 1L);
		/* ...and not kept: it would only sit idle in this handle. */
		SETOPT(CURLOPT_FORBID_REUSE, 1L);
		/* POSTFIELDS is not copied: our buffer outlives the call. */
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
		SETOPT(CURLOPT_POSTFIELDS, c->body != NULL ? c->body : "");
	} else if (strcmp(c->method, "DELETE") == 0) {
		SETOPT(CURLOPT_CUSTOMREQUEST, "DELETE");
	} else {
		SETOPT(CURLOPT_HTTPGET, 1L);
	}
	return CURLE_OK;
}

/* Every option of one call; the first failing setopt is returned. */
static CURLcode
finx_setopts(CURL *h, struct finx_call *c, const char *url,
    struct curl_slist *hdrs, char *errbuf)
{
	CURLcode rc;

	if ((rc = finx_setopts_transport(h, errbuf)) != CURLE_OK)
		return rc;
	SETOPT(CURLOPT_URL, url);
	SETOPT(CURLOPT_HTTPHEADER, hdrs);
	SETOPT(CURLOPT_USERAGENT, FINX_USER_AGENT);
	SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)FINX_MAX_BODY);
	SETOPT(CURLOPT_WRITEFUNCTION, finx_on_body);
	SETOPT(CURLOPT_WRITEDATA, c);
	SETOPT(CURLOPT_HEADERFUNCTION, finx_on_header);
	SETOPT(CURLOPT_HEADERDATA, c);
	return finx_setopts_method(h, c);
}
#undef SETOPT

/*
 * What a failed transfer means to an API client.  libcurl's own text
 * ("Failed to connect to finx.example port 443 after 3 ms: ...") names
 * finX's host and port, which the internet need not learn from us: it
 * goes to err->detail, for the log.
 */
static const char *
finx_transport_text(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return "finX did not answer in time";
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
		return "the TLS session with finX failed";
	default:
		return "finX could not be reached";
	}
}

/* Fill err from a failed transfer. */
static void
finx_transport_error(struct finx_call *c, CURLcode rc, const char *errbuf,
    struct finx_error *err)
{
	const char *what = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);

	if (c->resp.overflow || rc == CURLE_FILESIZE_EXCEEDED) {
		c->too_large = true;
		finx_err_set(err, c->status, "finX answer larger than %u bytes",
		    FINX_MAX_BODY);
		return;
	}
	finx_err_set(err, c->status, "%s", finx_transport_text(rc));
	err->detail = finx_clean_text(what, strlen(what));
	err->transport = true;
	err->transient = true;
	err->never_sent = rc == CURLE_COULDNT_RESOLVE_HOST ||
	    rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_COULDNT_CONNECT;
}

/*
 * The request headers of c, or NULL with err set.  The list holds the
 * credentials: free it with finx_slist_free_secret.
 */
static struct curl_slist *
finx_headers(const struct finx_call *c, struct finx_error *err)
{
	struct curl_slist *hdrs = NULL;
	char *auth, *ct;
	bool ok;

	if ((auth = finx_auth_header(c->bearer, err)) == NULL)
		return NULL;
	if (c->ctype != NULL)
		ct = xasprintf("Content-Type: %s", c->ctype);
	else
		ct = xstrdup("Content-Type:"); /* no curl default type */
	/* "Expect:" stops curl waiting for 100-continue on large bodies. */
	ok = finx_slist_add(&hdrs, auth) &&
	    finx_slist_add(&hdrs, "Accept: application/json") &&
	    finx_slist_add(&hdrs, "Expect:") && finx_slist_add(&hdrs, ct);
	free_secret(auth);
	free(ct);
	if (!ok) {
		finx_slist_free_secret(hdrs);
		finx_err_set(err, 0, "out of memory building a finX request");
		err->never_sent = true;
		return NULL;
	}
	return hdrs;
}

/*
 * Send c over a pooled handle.  True when an HTTP answer came back (any
 * status, in c->status and c->resp); false with err set otherwise.
 */
static bool
finx_perform(struct finx_call *c, struct finx_error *err)
{
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL;
	CURL *h = NULL;
	CURLcode rc;
	bool ok = false;

	if ((hdrs = finx_headers(c, err)) == NULL)
		goto out;
	url = xasprintf("%s%s", finx_cfg->finx_url, c->path);
	if ((h = finx_handle_get()) == NULL) {
		finx_err_set(err, 0, "cannot create a curl handle");
		err->never_sent = err->transient = true;
		goto out;
	}
	if ((rc = finx_setopts(h, c, url, hdrs, errbuf)) != CURLE_OK) {
		/* A local problem (libcurl build): nothing was sent. */
		finx_err_set(err, 0, "libcurl refused an option: %s",
		    curl_easy_strerror(rc));
		err->never_sent = true;
		goto out;
	}
	rc = curl_easy_perform(h);
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status) !=
	    CURLE_OK)
		c->status = 0;
	if (rc != CURLE_OK)
		finx_transport_error(c, rc, errbuf, err);
	else
		ok = true;
out:
	finx_handle_put(h);
	finx_slist_free_secret(hdrs);
	free(url);
	return ok;
}

/*
 * The endpoint of a path for metrics: the query dropped and the ids after
 * accesses/accounts/syncs/transactions replaced, so labels stay few.
 */
static char *
finx_endpoint(const char *path)
{
	struct buf b;
	const char *p = path;
	size_t n = strcspn(path, "?#");
	bool id_next = false;

	buf_init(&b, 1024);
	while (p < path + n) {
		size_t seg;

		p++; /* the '/' */
		seg = strcspn(p, "/?#");
		if (p + seg > path + n)
			seg = (size_t)(path + n - p);
		buf_append(&b, "/", 1);
		if (id_next)
			buf_append_str(&b, "{id}");
		else
			buf_append(&b, p, seg);
		id_next = !id_next && ((seg == 8 && !strncmp(p, "accesses", 8)) ||
		    (seg == 8 && !strncmp(p, "accounts", 8)) ||
		    (seg == 5 && !strncmp(p, "syncs", 5)) ||
		    (seg == 12 && !strncmp(p, "transactions", 12)));
		p += seg;
	}
	return buf_steal(&b);
}

/* One debug line and metrics per call: never the query, never a body. */
static void
finx_log_call(const struct finx_call *c, int64_t ms, const char *outcome)
{
	char status[24], dur[24], *path, *endpoint;

	endpoint = finx_endpoint(c->path);
	metrics_finx(endpoint, outcome, ms);
	free(endpoint);
	if (log_get_level() > LOG_DEBUG)
		return;
	path = xstrndup(c->path, strcspn(c->path, "?#"));
	snprintf(status, sizeof(status), "%ld", c->status);
	snprintf(dur, sizeof(dur), "%lld", (long long)ms);
	log_kv(LOG_DEBUG, "finx call", "method", c->method, "path", path,
	    "status", status, "ms", dur, "outcome", outcome, NULL);
	free(path);
}

/*
 * Run c and classify the result: true only on a 2xx answer (body in
 * c->resp); otherwise err says why.  c->resp must be initialised.
 */
static bool
finx_call_run(struct finx_call *c, struct finx_error *err)
{
	int64_t t0 = mono_ms();
	const char *outcome = "ok";
	bool ok = false;

	if (finx_cfg == NULL || !finx_url_ok) {
		finx_err_set(err, 0, "finX URL refused: %s", finx_url_why);
		err->never_sent = true;
		outcome = "refused";
	} else if (!finx_perform(c, err)) {
		if (c->too_large)
			outcome = "too_large";
		else if (err->transport)
			outcome = "transport";
		else
			outcome = "refused";
	} else if (c->status < 200 || c->status > 299) {
		finx_decode_error(c->status, c->resp.data, c->resp.len, err);
		err->retry_after = c->retry_after;
		if (c->www_invalid_grant)
			err->invalid_grant = true;
		outcome = "http_error";
	} else {
		ok = true;
	}
	finx_log_call(c, mono_ms() - t0, outcome);
	return ok;
}

/* Free the answer body, wiping it when it may hold tokens. */
static void
finx_call_free(struct finx_call *c, bool secret)
{
	if (secret)
		buf_free_secret(&c->resp);
	else
		buf_free(&c->resp);
}

/*
 * A token-endpoint body from n key/value pairs (kv[2i], kv[2i+1]): JSON,
 * or form-encoded when the config says so.  Built in one allocation so
 * the secrets in it can be wiped (free_secret_n).  *ctype gets the
 * media type.
 */
static char *
finx_body(const char *const *kv, size_t n, size_t *len, const char **ctype)
{
	char *b, **enc;
	size_t i, need = 3, o = 0;

	if (!finx_cfg->token_form) {
		*ctype = "application/json";
		for (i = 0; i < 2 * n; i++)
			need += 6 * strlen(kv[i]) + 4;
		b = xmalloc(need);
		b[o++] = '{';
		for (i = 0; i < n; i++) {
			if (i > 0)
				b[o++] = ',';
			o += json_quote(b + o, kv[2 * i]);
			b[o++] = ':';
			o += json_quote(b + o, kv[2 * i + 1]);
		}
		b[o++] = '}';
		b[o] = '\0';
		*len = o;
		return b;
	}
	*ctype = "application/x-www-form-urlencoded";
	enc = xcalloc(2 * n, sizeof(*enc));
	for (i = 0; i < 2 * n; i++) {
		enc[i] = url_encode(kv[i]);
		need += strlen(enc[i]) + 2;
	}
	b = xmalloc(need);
	for (i = 0; i < 2 * n; i++) {
		if (i > 0)
			b[o++] = i % 2 ? '=' : '&';
		memcpy(b + o, enc[i], strlen(enc[i]));
		o += strlen(enc[i]);
		free_secret(enc[i]);
	}
	free(enc);
	b[o] = '\0';
	*len = o;
	return b;
}

/* POST /auth/token with the given fields and decode the tokens. */
static bool
finx_token_call(const char *const *kv, size_t n, const char *grant,
    struct finx_tokens *out, struct finx_error *err)
{
	struct finx_call c = { .method = "POST", .path = "/auth/token" };
	const char *why;
	char *body;
	int64_t sent;
	bool ok = false;

	memset(out, 0, sizeof(*out));
	out->expires_in = out->refresh_expires_in = -1;
	if (finx_cfg == NULL) {
		finx_err_set(err, 0, "finX client not initialised");
		err->never_sent = true;
		return false;
	}
	body = finx_body(kv, n, &c.body_len, &c.ctype);
	c.body = body;
	buf_init(&c.resp, FINX_MAX_BODY);
	sent = now_unix_ms();
	if (finx_call_run(&c, err)) {
		ok = finx_decode_tokens(c.resp.data, c.resp.len, out, &why);
		out->sent_ms = sent;
		if (!ok) {
			/* The grant is probably spent: do not retry. */
			finx_err_set(err, c.status,
			    "finX answered malformed JSON");
			log_kv(LOG_DEBUG, "finX token answer unusable", "grant",
			    grant, "why", why, NULL);
		}
	}
	free_secret_n(body, c.body_len);
	finx_call_free(&c, true);
	return ok;
}

/* POST /auth/token grant_type=authorization_code. */
bool
finx_exchange_code(const char *code, const char *redirect_uri,
    struct finx_tokens *out, struct finx_error *err)
{
	const char *kv[] = { "grant_type", "authorization_code", "code", code,
		"redirect_uri", redirect_uri };

	if (code == NULL || *code == '\0' || redirect_uri == NULL ||
	    *redirect_uri == '\0') {
		memset(out, 0, sizeof(*out));
		out->expires_in = out->refresh_expires_in = -1;
		finx_err_set(err, 0, "code or redirect_uri missing");
		err->never_sent = true;
		return false;
	}
	return finx_token_call(kv, 3, "authorization_code", out, err);
}

/* POST /auth/token grant_type=refresh_token. */
bool
finx_refresh(const char *refresh_token, struct finx_tokens *out,
    struct finx_error *err)
{
	const char *kv[] = { "grant_type", "refresh_token", "refresh_token",
		refresh_token };

	if (refresh_token == NULL || *refresh_token == '\0') {
		memset(out, 0, sizeof(*out));
		out->expires_in = out->refresh_expires_in = -1;
		finx_err_set(err, 0, "refresh token missing");
		err->never_sent = true;
		return false;
	}
	return finx_token_call(kv, 2, "refresh_token", out, err);
}

/* POST /auth/revoke with token in the body (same encoding as /auth/token). */
bool
finx_revoke(const char *token, struct finx_error *err)
{
	struct finx_call c = { .method = "POST", .path = "/auth/revoke" };
	const char *kv[] = { "token", token };
	char *body;
	bool ok;

	if (token == NULL || *token == '\0' || finx_cfg == NULL) {
		finx_err_set(err, 0, "token missing or finX not initialised");
		err->never_sent = true;
		return false;
	}
	body = finx_body(kv, 1, &c.body_len, &c.ctype);
	c.body = body;
	buf_init(&c.resp, FINX_MAX_BODY);
	ok = finx_call_run(&c, err);
	free_secret_n(body, c.body_len);
	finx_call_free(&c, true);
	return ok;
}

/*
 * POST /ongoing/access with req as the JSON body (Basic auth).  On success
 * *flow_id and *location are set (caller frees).
 */
bool
finx_create_flow(json_object *req, char **flow_id, char **location,
    struct finx_error *err)
{
	struct finx_call c = { .method = "POST",
		.path = "/ongoing/access",
		.ctype = "application/json" };
	const char *why;
	bool ok = false;

	if (req == NULL || !json_object_is_type(req, json_type_object) ||
	    finx_cfg == NULL) {
		finx_err_set(err, 0, "flow request missing or no finX");
		err->never_sent = true;
		return false;
	}
	c.body = json_object_to_json_string_length(req,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
	    &c.body_len);
	buf_init(&c.resp, FINX_MAX_BODY);
	if (finx_call_run(&c, err)) {
		ok = finx_decode_flow(c.resp.data, c.resp.len, flow_id,
		    location, &why);
		if (!ok) {
			finx_err_set(err, c.status,
			    "finX answered malformed JSON");
			log_kv(LOG_DEBUG, "finX flow answer unusable", "why",
			    why, NULL);
		}
	}
	/* json-c's serialization of req holds the state. */
	wipe_json_text(c.body, c.body_len);
	finx_call_free(&c, true);
	return ok;
}

/* A /rest path: printable, no spaces, no fragment, no dot segments. */
static bool
finx_path_ok(const char *path)
{
	const char *enc;
	size_t n, q;

	if (path == NULL || strncmp(path, "/rest", 5) != 0 ||
	    (path[5] != '/' && path[5] != '?' && path[5] != '\0'))
		return false;
	n = strlen(path);
	if (has_ctl(path, n) || strpbrk(path, " #\\") != NULL)
		return false;
	for (q = 0; q < n; q++)
		if ((unsigned char)path[q] >= 0x80)
			return false;
	q = strcspn(path, "?");
	enc = strcasestr(path, "%2e");
	if (enc != NULL && (size_t)(enc - path) < q)
		return false;
	/* curl would squash "/rest/../auth/token": refuse dot segments. */
	for (n = 0; n < q; n++) {
		if (path[n] != '/' || path[n + 1] != '.')
			continue;
		if (path[n + 2] == '/' || n + 2 == q ||
		    (path[n + 2] == '.' && (path[n + 3] == '/' || n + 3 == q)))
			return false;
	}
	return true;
}

/*
 * Bearer GET, POST or DELETE to a /rest path (query included, already
 * encoded), with body as JSON when given.  On a 2xx *out gets the parsed
 * object or array (an empty answer gives an empty object).
 */
bool
finx_rest(const char *method, const char *access_token, const char *path,
    json_object *body, json_object **out, struct finx_error *err)
{
	struct finx_call c = { .method = method,
		.path = path,
		.bearer = access_token };
	json_object *o = NULL;
	bool ok = false;

	if (method == NULL ||
	    (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 &&
	        strcmp(method, "DELETE") != 0) ||
	    !finx_path_ok(path) || access_token == NULL ||
	    (body != NULL && strcmp(method, "POST") != 0)) {
		finx_err_set(err, 0, "bad finX request (method, path or body)");
		err->never_sent = true;
		return false;
	}
	if (body != NULL) {
		c.ctype = "application/json";
		c.body = json_object_to_json_string_length(body,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		    &c.body_len);
	}
	buf_init(&c.resp, FINX_MAX_BODY);
	if (finx_call_run(&c, err)) {
		if (c.resp.len == 0)
			o = json_object_new_object();
		else
			o = finx_decode_json(c.resp.data, c.resp.len,
			    FINX_REST_DEPTH);
		if (o == NULL) {
			finx_err_set(err, c.status,
			    "finX answered malformed JSON");
		} else {
			*out = o;
			ok = true;
		}
	}
	finx_call_free(&c, false);
	return ok;
}
