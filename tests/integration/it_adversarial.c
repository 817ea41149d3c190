/*
 * Adversarial HTTP: every hostile input gets a 4xx, crashes nothing and
 * stores nothing.  Callback parameters replayed, forged, truncated,
 * oversized, doubled, in odd case, with %00, CR/LF or SQL inside;
 * return_url tricks; hostile JSON bodies; size, type and method limits;
 * browser binding; and at the end no secret in the log and none in a
 * pg_dump of the database.
 *
 * Duplicate JSON keys: json-c keeps the last value and finxd validates
 * and uses exactly that value, so {"user_id":"a","user_id":"b"} is a
 * well-defined 201 for user "b", and a disallowed return_url hidden
 * behind an allowed one (or the other way round) is judged on the last.
 */
#include "it_common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *db;
static int f_main; /* defaults (binding off) */
static int f_bind; /* FINXD_BROWSER_BINDING=required */

/* ---- helpers ---------------------------------------------------------- */

static char *
h_xstrdup_adv(const char *s)
{
	char *d = strdup(s ? s : "");

	if (d == NULL)
		h_bail("out of memory");
	return d;
}

struct counts {
	long links, conns, events;
};

static long
count_rows(const char *table)
{
	char *q = h_fmt("SELECT count(*) FROM %s", table);
	long n = h_sql_long(db, q, NULL);

	free(q);
	return n;
}

static struct counts
counts_now(void)
{
	struct counts c = { count_rows("links"), count_rows("connections"),
		count_rows("events") };

	return c;
}

static bool
counts_same(struct counts a, struct counts b)
{
	if (a.links != b.links || a.conns != b.conns || a.events != b.events)
		printf("# rows links %ld->%ld connections %ld->%ld events "
		       "%ld->%ld\n",
		    a.links, b.links, a.conns, b.conns, a.events, b.events);
	return a.links == b.links && a.conns == b.conns &&
	    a.events == b.events;
}

static bool
is_4xx(long status)
{
	return status >= 400 && status < 500;
}

/* Percent-encode every byte outside [A-Za-z0-9-._~] (malloc'd). */
static char *
pct(const char *s)
{
	static const char hx[] = "0123456789ABCDEF";
	char *o = malloc(strlen(s) * 3 + 1), *p = o;

	if (o == NULL)
		h_bail("out of memory");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr("-._~", c) != NULL) {
			*p++ = (char)c;
		} else {
			*p++ = '%';
			*p++ = hx[c >> 4];
			*p++ = hx[c & 15];
		}
	}
	*p = '\0';
	return o;
}

/* finxd's /callback URL on instance f with a raw query (malloc'd). */
static char *
cb_url(int f, const char *query)
{
	size_t n = strlen(h_finxd_url(f)) + strlen(query) + 16;
	char *u = malloc(n);

	if (u == NULL)
		h_bail("out of memory");
	snprintf(u, n, "%s/callback?%s", h_finxd_url(f), query);
	return u;
}

/*
 * Send raw bytes to finxd instance f and return the status of the answer
 * (0 when none came).  For what libcurl will not send as asked.
 */
static long
raw_http(int f, const char *req, size_t len)
{
	struct sockaddr_in sa = { 0 };
	struct timeval tv = { 10, 0 };
	char buf[512];
	size_t off = 0;
	ssize_t n;
	long status = 0;
	int s;

	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)h_long(strrchr(h_finxd_url(f),
						       ':') + 1, 0));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return 0;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(s);
		return 0;
	}
	/* The server may answer (413) and close before it read it all. */
	while (off < len) {
		n = send(s, req + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	off = 0;
	/* Up to the end of the status line: the connection may stay open. */
	buf[0] = '\0';
	while (off < sizeof(buf) - 1 && strchr(buf, '\n') == NULL &&
	    (n = recv(s, buf + off, sizeof(buf) - 1 - off, 0)) > 0) {
		off += (size_t)n;
		buf[off] = '\0';
	}
	if (strncmp(buf, "HTTP/1.", 7) == 0 && off > 12)
		status = atol(buf + 9);
	close(s);
	return status;
}

/* A fresh approved flow on f; the pieces of its callback. */
struct cb {
	struct flow fl;
	char *state, *flow_id, *code;
};

static bool
cb_open(int f, const char *user, struct cb *c)
{
	memset(c, 0, sizeof(*c));
	if (!flow_widget(f, user, H_RETURN_URL, "approve", &c->fl))
		return false;
	c->state = h_qparam(c->fl.callback, "state");
	c->flow_id = h_qparam(c->fl.callback, "flow_id");
	c->code = h_qparam(c->fl.callback, "code");
	return c->state && c->flow_id && c->code;
}

static void
cb_free(struct cb *c)
{
	flow_free(&c->fl);
	free(c->state);
	free(c->flow_id);
	free(c->code);
}

/* The genuine callback still connects: the bad one consumed nothing. */
static void
cb_genuine(int f, const struct cb *c, const char *what)
{
	struct h_resp r;

	h_http("GET", c->fl.callback, NULL, NULL, 0, &r);
	CHECK(r.status == 303 && loc_is(&r, "status", "connected"),
	    "%s: the genuine callback still connects (got %ld)", what,
	    r.status);
	h_resp_free(&r);
}

/*
 * GET one hostile callback query (built by fmt from the genuine pieces)
 * and check: 4xx (exactly 400 unless any_4xx), the callback headers,
 * no row stored, no code exchange, and the link still usable.
 */
static void
cb_case(const char *what, bool any_4xx, const char *query)
{
	struct counts before;
	struct h_resp r;
	char *url;

	before = counts_now();
	h_sbx_reset();
	url = cb_url(f_main, query);
	h_http("GET", url, NULL, NULL, 0, &r);
	free(url);
	if (any_4xx)
		CHECK(is_4xx(r.status), "%s: 4xx (got %ld)", what, r.status);
	else
		CHECK(r.status == 400, "%s: 400 (got %ld)", what, r.status);
	if (r.status == 400)
		check_callback_headers(&r, what);
	CHECK(h_leaks(r.body, r.body_len) == 0, "%s: no secret in the answer",
	    what);
	h_resp_free(&r);
	CHECK(counts_same(before, counts_now()), "%s: no row written", what);
	CHECK(h_sbx_count("/auth/token") == 0, "%s: no code exchange", what);
}

/* ---- callback parameters ---------------------------------------------- */

static void
test_cb_replay(void)
{
	struct cb c;
	struct counts before;
	struct h_resp r;

	if (!cb_open(f_main, "u-adv-replay", &c)) {
		CHECK(0, "replay: could not open a flow");
		cb_free(&c);
		return;
	}
	cb_genuine(f_main, &c, "replay (first use)");
	before = counts_now();
	h_sbx_reset();
	h_http("GET", c.fl.callback, NULL, NULL, 0, &r);
	CHECK(r.status == 400, "replayed callback: 400 (got %ld)", r.status);
	check_callback_headers(&r, "replayed callback");
	h_resp_free(&r);
	CHECK(counts_same(before, counts_now()), "replayed callback: no row");
	CHECK(h_sbx_count("/auth/token") == 0,
	    "replayed callback: code not sent again");
	cb_free(&c);
}

/* A hostile variant of a fresh flow's callback, then the genuine one. */
static void
cb_variant(const char *what, const char *fmt_kind)
{
	struct cb c;
	char *q = NULL, *es = NULL, *ec = NULL, *ef = NULL;
	char *big;

	if (!cb_open(f_main, "u-adv-cb", &c)) {
		CHECK(0, "%s: could not open a flow", what);
		cb_free(&c);
		return;
	}
	es = pct(c.state);
	ec = pct(c.code);
	ef = pct(c.flow_id);
#define Q(...) q = h_fmt(__VA_ARGS__)
	if (strcmp(fmt_kind, "forged_state") == 0)
		Q("flow_id=%s&state=%s&success=true&code=%s", ef,
		    "ZZZZyyyyXXXXwwwwVVVVuuuuTTTTssssRRRRqqqqPPP", ec);
	else if (strcmp(fmt_kind, "truncated_state") == 0)
		Q("flow_id=%s&state=%.20s&success=true&code=%s", ef, es, ec);
	else if (strcmp(fmt_kind, "truncated_query") == 0)
		Q("flow_id=%s&sta", ef);
	else if (strcmp(fmt_kind, "no_state_value") == 0)
		Q("flow_id=%s&state&success=true&code=%s", ef, ec);
	else if (strcmp(fmt_kind, "state_600") == 0) {
		big = malloc(601);
		memset(big, 'A', 600);
		big[600] = '\0';
		Q("flow_id=%s&state=%s%s&success=true&code=%s", ef, es, big,
		    ec);
		free(big);
	} else if (strcmp(fmt_kind, "state_twice_same") == 0)
		Q("flow_id=%s&state=%s&state=%s&success=true&code=%s", ef, es,
		    es, ec);
	else if (strcmp(fmt_kind, "state_twice_other") == 0)
		Q("flow_id=%s&state=bogus&state=%s&success=true&code=%s", ef,
		    es, ec);
	else if (strcmp(fmt_kind, "code_twice") == 0)
		Q("flow_id=%s&state=%s&success=true&code=%s&code=x", ef, es,
		    ec);
	else if (strcmp(fmt_kind, "flow_id_twice") == 0)
		Q("flow_id=%s&flow_id=%s&state=%s&success=true&code=%s", ef,
		    ef, es, ec);
	else if (strcmp(fmt_kind, "upper_state") == 0)
		Q("flow_id=%s&STATE=%s&success=true&code=%s", ef, es, ec);
	else if (strcmp(fmt_kind, "mixed_twice") == 0)
		Q("flow_id=%s&state=%s&State=%s&success=true&code=%s", ef, es,
		    es, ec);
	else if (strcmp(fmt_kind, "upper_code") == 0)
		Q("flow_id=%s&state=%s&success=true&CODE=%s", ef, es, ec);
	else if (strcmp(fmt_kind, "nul_state") == 0)
		Q("flow_id=%s&state=%s%%00&success=true&code=%s", ef, es, ec);
	else if (strcmp(fmt_kind, "nul_code") == 0)
		Q("flow_id=%s&state=%s&success=true&code=%s%%00x", ef, es, ec);
	else if (strcmp(fmt_kind, "nul_flow") == 0)
		Q("flow_id=%s%%00&state=%s&success=true&code=%s", ef, es, ec);
	else if (strcmp(fmt_kind, "crlf_state") == 0)
		Q("flow_id=%s&state=%s%%0d%%0aSet-Cookie:%%20x=1&success=true&"
		  "code=%s",
		    ef, es, ec);
	else if (strcmp(fmt_kind, "crlf_code") == 0)
		Q("flow_id=%s&state=%s&success=true&code=%s%%0d%%0aX-Evil:%%201",
		    ef, es, ec);
	else if (strcmp(fmt_kind, "bad_escape") == 0)
		Q("flow_id=%s&state=%s%%zz&success=true&code=%s", ef, es, ec);
	else if (strcmp(fmt_kind, "invalid_utf8") == 0)
		Q("flow_id=%s&state=%s%%ff%%fe&success=true&code=%s", ef, es,
		    ec);
	else if (strcmp(fmt_kind, "sql_state") == 0)
		Q("flow_id=%s&state=%s&success=true&code=%s", ef,
		    "%27%20OR%201%3D1%20--", ec);
	else if (strcmp(fmt_kind, "sql_state_union") == 0)
		Q("flow_id=%s&state=%s&success=true&code=%s", ef,
		    "x%27%3B%20DELETE%20FROM%20links%3B%20--", ec);
	else
		h_bail("unknown case %s", fmt_kind);
#undef Q
	cb_case(what, false, q);
	cb_genuine(f_main, &c, what);
	free(q);
	free(es);
	free(ec);
	free(ef);
	cb_free(&c);
}

static void
test_cb_oversized(void)
{
	size_t n = 100 * 1024;
	char *big = malloc(n + 1), *q;
	struct cb c;

	if (big == NULL)
		h_bail("out of memory");
	memset(big, 'A', n);
	big[n] = '\0';
	if (!cb_open(f_main, "u-adv-big", &c)) {
		CHECK(0, "oversized: could not open a flow");
		cb_free(&c);
		free(big);
		return;
	}
	q = h_fmt("flow_id=%s&state=%s&success=true&code=x",
	    c.flow_id, big);
	cb_case("state of 100 KB", true, q);
	free(q);
	q = h_fmt("flow_id=%s&state=%s&success=true&code=%s",
	    c.flow_id, c.state, big);
	cb_case("code of 100 KB with the real state", true, q);
	free(q);
	cb_genuine(f_main, &c, "after oversized callbacks");
	cb_free(&c);
	free(big);
}

/* ---- return_url tricks ------------------------------------------------ */

static void
test_return_urls(void)
{
	static const char *const bad[] = {
		"//evil",
		"//evil.example/return",
		"https://partner.example@evil.example/",
		"https://partner.example@evil.example/return",
		"https://partner.example%40evil.example/return",
		"https://partner.example\\@evil.example/return",
		"https:\\\\evil.example/return",
		"https://partner.example/return\\..\\..\\evil",
		"/\\evil.example/return",
		"javascript:alert(1)",
		"JavaScript://partner.example/return%0aalert(1)",
		"data:text/html,<script>alert(1)</script>",
		"https://partner.example/return\t",
		"https://partner.example/re\tturn",
		"https://partner.example/return\n.evil.example",
		"https://partner.example/return\r\nSet-Cookie: x=1",
		" https://partner.example/return",
		"https://partner.example/return#https://evil.example",
		"https://partner.example/returnevil",
		"https://partner.example.evil.example/return",
		"http://partner.example/return",
		"https://partner.example:443@evil.example/return",
	};
	struct counts before;
	struct h_resp r;
	char *body;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "user_id",
		    json_object_new_string("u-adv-ret"));
		json_object_object_add(o, "return_url",
		    json_object_new_string(bad[i]));
		body = h_xstrdup_adv(json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
		before = counts_now();
		h_sbx_reset();
		h_api(f_main, "POST", "/v1/links", body, &r);
		CHECK(r.status == 400 &&
		        (h_err_is(&r, "return_url_not_allowed") ||
		            h_err_is(&r, "invalid_request")),
		    "return_url trick #%zu: 400 (got %ld, %s)", i, r.status,
		    h_err_code(&r) ? h_err_code(&r) : "-");
		/* the error must not echo the hostile URL */
		CHECK(strstr(r.body, "evil") == NULL &&
		        strstr(r.body, "<script>") == NULL,
		    "return_url trick #%zu: input not echoed", i);
		h_resp_free(&r);
		CHECK(counts_same(before, counts_now()),
		    "return_url trick #%zu: no row", i);
		CHECK(h_sbx_count("/ongoing/access") == 0,
		    "return_url trick #%zu: finX not called", i);
		free(body);
	}
}

/* ---- JSON bodies -------------------------------------------------------- */

/* POST /v1/links on f with the test's API key. */
static long
post_raw(int f, const char *ctype, const char *body, size_t len,
    struct h_resp *r)
{
	char *auth = h_fmt("Bearer %s", h_api_key());

	h_links_post_raw(f, auth, ctype, body, len, r);
	free(auth);
	return r->status;
}

/* A body that must be refused with a 4xx and must store nothing. */
static void
body_refused(const char *what, long want, const char *ctype,
    const char *body, size_t len)
{
	struct counts before = counts_now();
	struct h_resp r;

	h_sbx_reset();
	post_raw(f_main, ctype, body, len, &r);
	if (want != 0)
		CHECK(r.status == want, "%s: %ld (got %ld, %s)", what, want,
		    r.status, h_err_code(&r) ? h_err_code(&r) : "-");
	else
		CHECK(is_4xx(r.status), "%s: 4xx (got %ld)", what, r.status);
	CHECK(r.status == 0 || h_err_code(&r) != NULL ||
	        r.status == 414 || r.status == 431,
	    "%s: a JSON error body", what);
	h_resp_free(&r);
	CHECK(counts_same(before, counts_now()), "%s: no row", what);
	CHECK(h_sbx_count("/ongoing/access") == 0, "%s: finX not called",
	    what);
}

static char *
nested(int depth, const char *open, const char *close, const char *inner)
{
	static const char head[] = "{\"user_id\":\"u-deep\",\"sync_period\":";
	size_t lo = strlen(open), lc = strlen(close), li = strlen(inner);
	size_t n = sizeof(head) + (lo + lc) * (size_t)depth + li + 2;
	char *s = malloc(n), *p;
	int i;

	if (s == NULL)
		h_bail("out of memory");
	memcpy(s, head, sizeof(head) - 1);
	p = s + sizeof(head) - 1;
	for (i = 0; i < depth; i++, p += lo)
		memcpy(p, open, lo);
	memcpy(p, inner, li);
	p += li;
	for (i = 0; i < depth; i++, p += lc)
		memcpy(p, close, lc);
	memcpy(p, "}", 2);
	return s;
}

static void
test_json_bodies(void)
{
	static const struct {
		const char *what, *body;
	} bad[] = {
		{ "sync_period 1e309", "{\"user_id\":\"u\",\"sync_period\":1e309}" },
		{ "sync_period -1e309",
		    "{\"user_id\":\"u\",\"sync_period\":-1e309}" },
		{ "sync_period 2^63",
		    "{\"user_id\":\"u\",\"sync_period\":9223372036854775808}" },
		{ "sync_period 2^64+1",
		    "{\"user_id\":\"u\",\"sync_period\":18446744073709551617}" },
		{ "sync_period -2^63-1",
		    "{\"user_id\":\"u\",\"sync_period\":-9223372036854775809}" },
		{ "sync_period 730.5", "{\"user_id\":\"u\",\"sync_period\":730.5}" },
		{ "sync_period 0", "{\"user_id\":\"u\",\"sync_period\":0}" },
		{ "sync_period NaN", "{\"user_id\":\"u\",\"sync_period\":NaN}" },
		{ "sync_period Infinity",
		    "{\"user_id\":\"u\",\"sync_period\":Infinity}" },
		{ "sync_period as a string",
		    "{\"user_id\":\"u\",\"sync_period\":\"30\"}" },
		{ "user_id a huge number", "{\"user_id\":1e309}" },
		{ "invalid UTF-8 in a key", "{\"us\xff" "er_id\":\"u\"}" },
		{ "invalid UTF-8 in return_url",
		    "{\"user_id\":\"u\",\"return_url\":"
		    "\"https://partner.example/return\xc3\x28\"}" },
		{ "overlong UTF-8 slash", "{\"user_id\":\"u\xc0\xaf\"}" },
		{ "UTF-8 surrogate", "{\"user_id\":\"u\xed\xa0\x80\"}" },
		/* json-c turns a lone surrogate escape into U+FFFD, so
		 * "u\ud800" and "u\udbff" would become one user: refuse. */
		{ "lone surrogate escape", "{\"user_id\":\"u\\ud800\"}" },
		{ "truncated UTF-8", "{\"user_id\":\"u\xe2\x82\"}" },
		{ "duplicate key, allowed return_url hidden first",
		    "{\"user_id\":\"u\",\"return_url\":"
		    "\"https://partner.example/return\",\"return_url\":"
		    "\"https://evil.example/\"}" },
		{ "unknown field", "{\"user_id\":\"u\",\"admin\":true}" },
		{ "language injection",
		    "{\"user_id\":\"u\",\"language\":\"en\\\"}\"}" },
		{ "comment (not strict JSON)",
		    "{\"user_id\":\"u\" /* x */}" },
		{ "single quotes", "{'user_id':'u'}" },
		{ "trailing comma", "{\"user_id\":\"u\",}" },
		{ "two objects", "{\"user_id\":\"u\"}{\"user_id\":\"v\"}" },
	};
	char *s;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		body_refused(bad[i].what, 400, "application/json", bad[i].body,
		    strlen(bad[i].body));
	s = nested(1000, "[", "]", "1");
	body_refused("1000 levels of arrays", 400, "application/json", s,
	    strlen(s));
	free(s);
	s = nested(1000, "{\"a\":", "}", "1");
	body_refused("1000 levels of objects", 400, "application/json", s,
	    strlen(s));
	free(s);
	s = nested(20, "[", "]", "1");
	body_refused("20 levels (over the limit of 16)", 400,
	    "application/json", s, strlen(s));
	free(s);
	body_refused("NUL byte in the body", 400, "application/json",
	    "{\"user_id\":\"u\0x\"}", 16);
}

/*
 * Duplicate keys and \u0000: json-c keeps the last value of a repeated
 * name without a word and cuts a name at \u0000, so a body where either
 * could hide a value is refused with 400 invalid_request, stores nothing
 * and never reaches finX.  Each body would be accepted with its repeat
 * or its \u0000 taken away.
 */
static void
test_duplicate_keys(void)
{
	static const struct {
		const char *what, *body;
	} bad[] = {
		{ "duplicate key",
		    "{\"user_id\":\"u-dup-first\",\"user_id\":\"u-dup-last\"}" },
		{ "duplicate key, last return_url allowed",
		    "{\"user_id\":\"u-dup\",\"return_url\":"
		    "\"https://evil.example/\",\"return_url\":"
		    "\"https://partner.example/return\"}" },
		{ "escaped duplicate",
		    "{\"user_id\":\"u-dup-a\",\"user_\\u0069d\":\"u-dup-b\"}" },
		{ "\\u0000 in a key",
		    "{\"user_id\":\"u-nul\",\"language\\u0000x\":\"en\"}" },
		{ "\\u0000 in a value", "{\"user_id\":\"u-nul\\u0000x\"}" },
		{ "nested duplicate",
		    "{\"user_id\":\"u-dup\",\"accounts\":[{\"id\":"
		    "\"DE89370400440532013000\",\"id\":"
		    "\"DE02120300000000202051\"}]}" },
	};
	struct h_resp r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		body_refused(bad[i].what, 400, "application/json", bad[i].body,
		    strlen(bad[i].body));
		post_raw(f_main, "application/json", bad[i].body,
		    strlen(bad[i].body), &r);
		CHECK(h_streq(h_err_code(&r), "invalid_request"),
		    "%s: invalid_request (got %s)", bad[i].what,
		    h_err_code(&r) ? h_err_code(&r) : "-");
		h_resp_free(&r);
	}
}

/* ---- limits: size, type, method, URL, headers ------------------------- */

static void
test_limits(void)
{
	size_t n = 1024 * 1024;
	char *big = malloc(n + 64), *url, *hdr, *req;
	const char *hdrs[3];
	struct counts before;
	struct h_resp r;
	char path[256];
	int len;

	if (big == NULL)
		h_bail("out of memory");
	len = snprintf(big, 64, "{\"user_id\":\"u\",\"x\":\"");
	memset(big + len, 'a', n - (size_t)len - 2);
	memcpy(big + n - 2, "\"}", 3);
	body_refused("1 MB body", 413, "application/json", big, n);
	/* The same without Content-Length (chunked). */
	before = counts_now();
	req = h_fmt("POST /v1/links HTTP/1.1\r\nHost: x\r\n"
	                      "Authorization: Bearer %s\r\nContent-Type: "
	                      "application/json\r\nTransfer-Encoding: "
	                      "chunked\r\n\r\n%zx\r\n",
	    h_api_key(), n);
	{
		size_t rl = strlen(req);
		char *full = malloc(rl + n + 16);

		if (full == NULL)
			h_bail("out of memory");
		memcpy(full, req, rl);
		memcpy(full + rl, big, n);
		memcpy(full + rl + n, "\r\n0\r\n\r\n", 7);
		CHECK(raw_http(f_main, full, rl + n + 7) == 413,
		    "1 MB chunked body: 413");
		free(full);
	}
	free(req);
	CHECK(counts_same(before, counts_now()), "1 MB chunked body: no row");

	body_refused("Content-Type text/plain", 415, "text/plain",
	    "{\"user_id\":\"u\"}", 15);
	body_refused("Content-Type application/jsonx", 415,
	    "application/jsonx", "{\"user_id\":\"u\"}", 15);
	body_refused("form encoded", 415, "application/x-www-form-urlencoded",
	    "user_id=u", 9);
	body_refused("no Content-Type", 415, NULL, "{\"user_id\":\"u\"}", 15);

	/* wrong methods: 405 with Allow */
	{
		static const struct {
			const char *method, *path, *allow;
		} m[] = {
			{ "PUT", "/v1/links", "POST" },
			{ "DELETE", "/v1/links", "GET" }, /* GET lists them */
			{ "POST", "/v1/connections", "GET" },
			{ "DELETE", "/callback", "GET" },
			{ "POST", "/callback", "GET" },
			{ "PATCH", "/v1/connections/"
			           "00000000-0000-4000-8000-000000000000",
			    "GET" },
		};
		size_t i;

		for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
			const char *allow;

			snprintf(path, sizeof(path), "%s%s", h_finxd_url(f_main),
			    m[i].path);
			h_http(m[i].method, path, NULL, NULL, 0, &r);
			allow = h_resp_header(&r, "Allow");
			CHECK(r.status == 405 && allow != NULL &&
			        strstr(allow, m[i].allow) != NULL,
			    "%s %s: 405 with Allow %s (got %ld, Allow %s)",
			    m[i].method, m[i].path, m[i].allow, r.status,
			    allow ? allow : "-");
			h_resp_free(&r);
		}
	}

	/* URL of 100 KB */
	memset(big, 'a', 100 * 1024);
	big[100 * 1024] = '\0';
	url = h_fmt("%s/v1/users/%s/accounts", h_finxd_url(f_main),
	    big);
	h_api(f_main, "GET", url + strlen(h_finxd_url(f_main)), NULL, &r);
	CHECK(is_4xx(r.status), "URL of 100 KB: 4xx (got %ld)", r.status);
	h_resp_free(&r);
	free(url);
	url = h_fmt("%s/healthz?x=%s", h_finxd_url(f_main), big);
	h_http("GET", url, NULL, NULL, 0, &r);
	CHECK(is_4xx(r.status), "query of 100 KB: 4xx (got %ld)", r.status);
	h_resp_free(&r);
	free(url);

	/* one header of 64 KB */
	big[64 * 1024] = '\0';
	hdr = h_fmt("X-Big: %s", big);
	hdrs[0] = hdr;
	hdrs[1] = NULL;
	snprintf(path, sizeof(path), "%s/healthz", h_finxd_url(f_main));
	h_http("GET", path, hdrs, NULL, 0, &r);
	CHECK(is_4xx(r.status), "header of 64 KB: 4xx (got %ld)", r.status);
	h_resp_free(&r);
	free(hdr);
	/* a 64 KB cookie on the callback */
	hdr = h_fmt("Cookie: finxd_bind_x=%s", big);
	hdrs[0] = hdr;
	url = cb_url(f_main, "state=x&flow_id=y");
	h_http("GET", url, hdrs, NULL, 0, &r);
	CHECK(is_4xx(r.status), "cookie of 64 KB: 4xx (got %ld)", r.status);
	h_resp_free(&r);
	free(url);
	free(hdr);
	free(big);

	/* SQL and traversal in path ids: 404, never 5xx */
	{
		static const char *const p[] = {
			"/v1/connections/%27%20OR%201%3D1%20--",
			"/v1/connections/..%2F..%2Fetc%2Fpasswd/token",
			"/v1/links/%00",
			"/v1/accounts/1%20OR%201%3D1",
			"/start/%27%3B%20DROP%20TABLE%20links%3B%20--",
		};
		size_t i;

		for (i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
			h_api(f_main, "GET", p[i], NULL, &r);
			CHECK(is_4xx(r.status), "GET %s: 4xx (got %ld)", p[i],
			    r.status);
			h_resp_free(&r);
		}
	}

	h_finxd_get(f_main, "/healthz", &r);
	CHECK(r.status == 200, "finxd still serves after all that (got %ld)",
	    r.status);
	h_resp_free(&r);
}

/* ---- browser binding ---------------------------------------------------- */

/* name=value of the Set-Cookie r carries (malloc'd) or NULL. */
static char *
cookie_pair(const struct h_resp *r)
{
	const char *sc = h_resp_header(r, "Set-Cookie");

	return sc ? strndup(sc, strcspn(sc, ";")) : NULL;
}

static bool
has_attr(const char *sc, const char *attr)
{
	const char *p;
	size_t n = strlen(attr);

	for (p = sc; p != NULL && (p = strchr(p, ';')) != NULL; p++) {
		while (p[1] == ' ')
			p++;
		if (strncasecmp(p + 1, attr, n) == 0 &&
		    (p[1 + n] == ';' || p[1 + n] == '\0'))
			return true;
	}
	return false;
}

static long
cb_with_cookie(const char *callback, const char *cookie)
{
	const char *hdrs[2] = { NULL, NULL };
	char *h = NULL;
	struct h_resp r;
	long st;

	if (cookie != NULL) {
		h = h_fmt("Cookie: %s", cookie);
		hdrs[0] = h;
	}
	h_http("GET", callback, hdrs, NULL, 0, &r);
	st = r.status;
	if (st == 303 && !loc_is(&r, "status", "connected"))
		st = -303;
	h_resp_free(&r);
	free(h);
	return st;
}

static void
test_binding(void)
{
	struct h_resp r;
	struct counts before;
	char *start = NULL, *link_id = NULL, *loc = NULL, *pair = NULL;
	char *cb = NULL, *wrong, *other;
	const char *sc;

	h_link_create(f_bind, "u-bind", H_RETURN_URL, &r);
	CHECK(r.status == 201, "binding: link 201 (got %ld)", r.status);
	start = h_dup(h_jstr(h_resp_json(&r), "start_url"));
	link_id = h_dup(h_jstr(h_resp_json(&r), "link_id"));
	h_resp_free(&r);
	if (start == NULL || link_id == NULL) {
		CHECK(0, "binding: start_url and link_id");
		goto out;
	}

	/* The widget reached without start_url: no cookie anywhere. */
	h_http("GET", start, NULL, NULL, 0, &r);
	CHECK(r.status == 303, "GET start_url: 303 (got %ld)", r.status);
	sc = h_resp_header(&r, "Set-Cookie");
	loc = h_dup(h_resp_header(&r, "Location"));
	pair = cookie_pair(&r);
	CHECK(sc != NULL, "start_url sets a cookie");
	CHECK(sc && has_attr(sc, "HttpOnly"), "cookie is HttpOnly");
	CHECK(sc && has_attr(sc, "SameSite=Lax"), "cookie is SameSite=Lax");
	CHECK(sc && has_attr(sc, "Path=/callback"), "cookie Path=/callback");
	CHECK(sc && !has_attr(sc, "Secure"), "no Secure on an http URL");
	check_callback_headers(&r, "start_url");
	h_resp_free(&r);
	if (loc == NULL || pair == NULL)
		goto out;

	/* A second browser through start_url does not take the link over. */
	h_http("GET", start, NULL, NULL, 0, &r);
	CHECK(r.status == 404 && h_resp_header(&r, "Set-Cookie") == NULL,
	    "second GET start_url: 404 without a cookie (got %ld)", r.status);
	h_resp_free(&r);

	cb = h_widget(loc, "approve");
	if (cb == NULL) {
		CHECK(0, "binding: the widget redirected");
		goto out;
	}
	before = counts_now();
	h_sbx_reset();
	CHECK(cb_with_cookie(cb, NULL) == 400, "binding: no cookie 400");
	wrong = h_fmt("%.*s=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    (int)strcspn(pair, "="), pair);
	CHECK(cb_with_cookie(cb, wrong) == 400, "binding: wrong cookie 400");
	free(wrong);
	other = h_fmt("finxd_bind_00000000000040008000000000000000%s",
	    strchr(pair, '='));
	CHECK(cb_with_cookie(cb, other) == 400,
	    "binding: right value under another link's name 400");
	free(other);
	CHECK(h_sbx_count("/auth/token") == 0,
	    "binding: no code exchange for the wrong browsers");
	CHECK(before.links == counts_now().links &&
	        before.conns == counts_now().conns,
	    "binding: no link or connection row written");
	CHECK(link_status_is(f_main, link_id, "pending"),
	    "binding: link still pending");
	CHECK(cb_with_cookie(cb, pair) == 303,
	    "binding: the right browser connects (303 connected)");
	CHECK(link_status_is(f_main, link_id, "connected"),
	    "binding: link connected");
	CHECK(cb_with_cookie(cb, pair) == 400,
	    "binding: the right browser cannot replay");
out:
	free(start);
	free(link_id);
	free(loc);
	free(pair);
	free(cb);
}

/* ---- no secrets: log and pg_dump ---------------------------------------- */

static char *
pg_dump_text(size_t *len)
{
	static const char *const dirs[] = { "/usr/lib/postgresql/15/bin",
		"/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin",
		NULL };
	char cmd[1024], *out = NULL, chunk[65536];
	const char *bin = NULL;
	size_t n, cap = 0;
	FILE *p;
	int i;

	*len = 0;
	for (i = 0; dirs[i] != NULL; i++) {
		snprintf(cmd, sizeof(cmd), "%s/pg_dump", dirs[i]);
		if (access(cmd, X_OK) == 0) {
			bin = dirs[i];
			break;
		}
	}
	if (bin == NULL)
		return NULL;
	/* Trust auth on loopback: pg_dump runs as any OS user. */
	snprintf(cmd, sizeof(cmd), "%s/pg_dump --no-password '%s' 2>&1", bin,
	    db);
	if ((p = popen(cmd, "r")) == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0) {
		out = realloc(out, cap + n + 1);
		if (out == NULL)
			h_bail("out of memory");
		memcpy(out + cap, chunk, n);
		cap += n;
		out[cap] = '\0';
	}
	if (pclose(p) != 0) {
		printf("# pg_dump failed\n");
		free(out);
		return NULL;
	}
	*len = cap;
	return out;
}

static void
test_dump(void)
{
	char *cid, *dump, *v;
	char **issued;
	size_t len;
	long st;
	int n, i, found = 0;

	cid = h_connect(f_main, "u-adv-dump");
	CHECK(cid != NULL, "dump: a user connected");
	if (cid != NULL) {
		st = h_conn_post(f_main, cid, "refresh", NULL);
		CHECK(st == 200, "dump: refresh 200 (got %ld)", st);
	}
	dump = pg_dump_text(&len);
	CHECK(dump != NULL && len > 1000 &&
	        strstr(dump, "COPY public.connections") != NULL,
	    "pg_dump of the test database (%zu bytes)", len);
	issued = h_sbx_issued(&n);
	CHECK(n >= 4, "the sandbox issued tokens and codes (%d)", n);
	for (i = 0; dump != NULL && i < n; i++)
		if (memmem(dump, len, issued[i], strlen(issued[i])) != NULL)
			found++;
	CHECK(dump != NULL && found == 0,
	    "no issued token or code in the pg_dump (%d of %d found)", found,
	    n);
	CHECK(dump != NULL && h_leaks(dump, len) == 0,
	    "no secret at all in the pg_dump");
	CHECK(dump != NULL && strstr(dump, "v1:k1:") != NULL,
	    "the dump holds v1:k1: ciphertexts");
	h_strv_free(issued, n);
	free(dump);
	v = h_sql_value(db,
	    "SELECT count(*) FROM connections WHERE (access_token IS NOT NULL "
	    "AND access_token NOT LIKE 'v1:%') OR (refresh_token IS NOT NULL "
	    "AND refresh_token NOT LIKE 'v1:%')",
	    NULL);
	CHECK(v != NULL && strcmp(v, "0") == 0,
	    "every stored token starts with v1: (%s not)", v ? v : "?");
	free(v);
	v = h_sql_value(db,
	    "SELECT count(*) FROM connections WHERE access_token LIKE 'v1:%'",
	    NULL);
	CHECK(v != NULL && atol(v) >= 1, "connections hold sealed tokens (%s)",
	    v ? v : "?");
	free(v);
	free(cid);
}

static void
test_no_leaks(void)
{
	size_t len;
	char *log = h_log_read(&len);

	check_log_clean();
	CHECK(memmem(log, len, "OR 1=1", 6) == NULL &&
	        memmem(log, len, "Set-Cookie: x=1", 15) == NULL,
	    "hostile input is not echoed into the log");
	free(log);
}

static char *
upper_dup(const char *s)
{
	char *u = h_dup(s);

	for (char *p = u; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	return u;
}

/* The id of connection cid's first account once it was pulled, or NULL. */
static char *
first_account(const char *cid)
{
	if (!h_wait_pull_after(db, cid, "", 20))
		return NULL;
	return h_sql_value(db,
	    "SELECT id::text FROM accounts WHERE connection_id = $1 ORDER BY "
	    "created_at LIMIT 1",
	    (const char *[]){ cid, NULL });
}

static bool
grant_revoked(void *user)
{
	return h_sbx_grants(user, "revoked") == 1 &&
	    h_sbx_grants(user, "active") == 0;
}

/*
 * Ids in upper case (security review, issue 13 finding 1): PostgreSQL's
 * uuid matches any case, so finxd must use the one spelling everywhere
 * it builds something from an id.  Before, /token answered 500
 * decrypt_failed and DELETE erased the tokens without revoking them.
 */
static void
test_upper_case_ids(void)
{
	char *cid = h_connect_retry(f_main, "u-upper"), *up, *tok = NULL;
	char *acct = NULL, *path;
	struct h_resp r;
	long st;

	if (cid == NULL) {
		CHECK(false, "upper-case ids: a connection to test with");
		return;
	}
	up = upper_dup(cid);
	st = h_token_get(f_main, up, &tok, NULL);
	CHECK(st == 200 && tok != NULL && h_token_works(tok),
	    "GET /v1/connections/{ID}/token: 200 and a working token (%ld)",
	    st);
	free(tok);
	st = h_conn_api(f_main, "POST", up, "refresh", &r);
	CHECK(st == 200, "POST .../{ID}/refresh: 200 (%ld)", st);
	h_resp_free(&r);
	st = h_conn_api(f_main, "GET", up, NULL, &r);
	CHECK(st == 200 && r.body != NULL && strstr(r.body, cid) != NULL,
	    "GET /v1/connections/{ID}: 200 with the id in lower case (%ld)",
	    st);
	h_resp_free(&r);
	acct = first_account(cid);
	st = h_conn_api(f_main, "DELETE", up, NULL, &r);
	CHECK(st == 200 || st == 204, "DELETE /v1/connections/{ID}: %ld", st);
	h_resp_free(&r);
	CHECK(h_wait_until(grant_revoked, "u-upper", 15000),
	    "DELETE with an upper-case id revokes the grant at finX");
	/* Finding 5: a deleted connection's data is not served any more. */
	path = h_fmt("/v1/accounts/%s", acct ? acct : "-");
	st = h_api(f_main, "GET", path, NULL, &r);
	CHECK(acct != NULL && st == 404,
	    "GET /v1/accounts/{id} of a deleted connection: 404 (%ld)", st);
	h_resp_free(&r);
	free(path);
	path = h_fmt("/v1/accounts/%s/transactions", acct ? acct : "-");
	st = h_api(f_main, "GET", path, NULL, &r);
	CHECK(acct != NULL && st == 404,
	    "its transactions: 404 (%ld)", st);
	h_resp_free(&r);
	free(path);
	free(acct);
	free(up);
	free(cid);
}

int
main(void)
{
	h_init("it_adversarial", 280);
	db = h_setup(NULL);
	f_main = h_finxd_start();
	h_env_set("FINXD_BROWSER_BINDING", "required");
	f_bind = h_finxd_start();
	h_env_set("FINXD_BROWSER_BINDING", NULL);

	test_cb_replay();
	cb_variant("forged state", "forged_state");
	cb_variant("truncated state", "truncated_state");
	cb_variant("truncated query (no state)", "truncated_query");
	cb_variant("state without a value", "no_state_value");
	cb_variant("state of 600 bytes", "state_600");
	cb_variant("state twice (same value)", "state_twice_same");
	cb_variant("state twice (bogus first)", "state_twice_other");
	cb_variant("code twice", "code_twice");
	cb_variant("flow_id twice", "flow_id_twice");
	cb_variant("STATE in upper case", "upper_state");
	cb_variant("state and State", "mixed_twice");
	cb_variant("CODE in upper case", "upper_code");
	cb_variant("%00 after the state", "nul_state");
	cb_variant("%00 inside the code", "nul_code");
	cb_variant("%00 after the flow_id", "nul_flow");
	cb_variant("CR/LF inside the state", "crlf_state");
	cb_variant("CR/LF inside the code", "crlf_code");
	cb_variant("bad percent escape", "bad_escape");
	cb_variant("invalid UTF-8 in the state", "invalid_utf8");
	cb_variant("SQL-shaped state", "sql_state");
	cb_variant("SQL-shaped state with DELETE", "sql_state_union");
	test_cb_oversized();
	test_return_urls();
	test_json_bodies();
	test_duplicate_keys();
	test_limits();
	test_binding();
	test_dump();
	test_upper_case_ids();
	test_no_leaks();
	check_clean_shutdown();
	return h_done(test_done());
}
