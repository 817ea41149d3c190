/*
 * Unit tests for the finX client's pure parts: the token, flow and error
 * decoders, the finX URL rule, and the calls that must be refused before
 * anything is sent.  No network.
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "buf.h"
#include "config.h"
#include "finx.h"
#include "finx_decode.h"
#include "finx_url.h"
#include "mem.h"
#include "text.h"
#include "test.h"

static bool tokens(const char *, struct finx_tokens *);
static long expires(const char *);
static void error_of(long, const char *, struct finx_error *);
static bool flow(const char *);
static bool url_ok(const char *);
static bool no_ctl(const char *);
static char *nested(const char *, int, const char *);

/* Decode s, passing an exact-size copy so over-reads show under ASan. */
static bool
tokens(const char *s, struct finx_tokens *t)
{
	size_t n = strlen(s);
	char *copy = xmalloc(n > 0 ? n : 1);
	const char *why = NULL;
	bool ok;

	memcpy(copy, s, n);
	ok = finx_decode_tokens(copy, n, t, &why);
	if (!ok && why == NULL)
		ok = true; /* makes the caller's check fail: why is required */
	free(copy);
	return ok;
}

static long
expires(const char *value)
{
	struct finx_tokens t;
	char *s;
	long r;

	if (value == NULL)
		s = xstrdup("{\"access_token\":\"a\"}");
	else
		s = xasprintf("{\"access_token\":\"a\",\"expires_in\":%s}",
		    value);
	r = tokens(s, &t) ? t.expires_in : -99;
	finx_tokens_free(&t);
	free(s);
	return r;
}

static void
error_of(long status, const char *body, struct finx_error *e)
{
	size_t n = body != NULL ? strlen(body) : 0;
	char *copy = xmalloc(n > 0 ? n : 1);

	memcpy(copy, body != NULL ? body : "", n);
	finx_decode_error(status, body != NULL ? copy : NULL, n, e);
	free(copy);
}

static bool
flow(const char *s)
{
	char *id = NULL, *loc = NULL;
	const char *why = NULL;
	bool ok;

	ok = finx_decode_flow(s, strlen(s), &id, &loc, &why);
	if (ok != (why == NULL))
		ok = !ok; /* inconsistent *why: fail the caller's check */
	free(id);
	free(loc);
	return ok;
}

static bool
url_ok(const char *u)
{
	const char *why = NULL;
	bool ok = finx_url_allowed(u, &why);

	return ok && why == NULL;
}

static bool
no_ctl(const char *s)
{
	return s != NULL && !has_ctl(s, strlen(s));
}

/* prefix + depth x "[" + depth x "]" + suffix */
static char *
nested(const char *prefix, int depth, const char *suffix)
{
	size_t p = strlen(prefix), s = strlen(suffix);
	char *b = xmalloc(p + 2 * (size_t)depth + s + 1);

	memcpy(b, prefix, p);
	memset(b + p, '[', (size_t)depth);
	memset(b + p + depth, ']', (size_t)depth);
	memcpy(b + p + 2 * depth, suffix, s + 1);
	return b;
}

static void
test_tokens_good(void)
{
	struct finx_tokens t;
	char *big, *s;

	CHECK(tokens("{\"access_token\":\"eyJ.a.b\",\"token_type\":\"Bearer\","
	             "\"expires_in\":3600,\"refresh_token\":\"R1.x\","
	             "\"scope\":\"accounts=ro balance=ro\","
	             "\"refresh_expires_in\":7776000}",
	          &t),
	    "full answer decodes");
	CHECK(t.access_token != NULL && strcmp(t.access_token, "eyJ.a.b") == 0,
	    "access_token kept");
	CHECK(t.refresh_token != NULL && strcmp(t.refresh_token, "R1.x") == 0,
	    "refresh_token kept");
	CHECK(t.token_type != NULL && strcmp(t.token_type, "Bearer") == 0,
	    "token_type kept");
	CHECK(t.scope != NULL && strcmp(t.scope, "accounts=ro balance=ro") == 0,
	    "scope kept");
	CHECK(t.expires_in == 3600, "expires_in 3600");
	CHECK(t.refresh_expires_in == 7776000, "refresh_expires_in 90 days");
	finx_tokens_free(&t);
	CHECK(t.access_token == NULL && t.expires_in == -1, "free resets");
	finx_tokens_free(&t);

	big = xmalloc(8193);
	memset(big, 'A', 8192);
	big[8192] = '\0';
	big[100] = '.';
	s = xasprintf("{\"access_token\":\"%s\",\"refresh_token\":\"%s\","
	              "\"expires_in\":3600}\n",
	    big, big);
	CHECK(tokens(s, &t) && t.access_token != NULL &&
	        strlen(t.access_token) == 8192 && t.refresh_token != NULL &&
	        strlen(t.refresh_token) == 8192,
	    "8 KB tokens, trailing newline");
	finx_tokens_free(&t);
	free(s);
	free(big);

	CHECK(tokens("  {\"access_token\":\"a\",\"token_type\":\"bearer\"} "
	             "\r\n",
	          &t) &&
	        strcmp(t.token_type, "bearer") == 0,
	    "whitespace around the object, any token_type case");
	finx_tokens_free(&t);
}

static void
test_tokens_refresh(void)
{
	struct finx_tokens t;

	CHECK(tokens("{\"access_token\":\"a\"}", &t) && t.refresh_token == NULL,
	    "missing refresh_token is NULL");
	finx_tokens_free(&t);
	CHECK(tokens("{\"access_token\":\"a\",\"refresh_token\":null}", &t) &&
	        t.refresh_token == NULL,
	    "null refresh_token is NULL");
	finx_tokens_free(&t);
	CHECK(tokens("{\"access_token\":\"a\",\"refresh_token\":\"\"}", &t) &&
	        t.refresh_token == NULL,
	    "empty refresh_token is NULL");
	finx_tokens_free(&t);
	CHECK(!tokens("{\"access_token\":\"a\",\"refresh_token\":42}", &t),
	    "numeric refresh_token rejected");
	CHECK(t.access_token == NULL, "nothing left after a rejection");
	finx_tokens_free(&t);
	CHECK(!tokens("{\"access_token\":\"a\",\"refresh_token\":{}}", &t),
	    "object refresh_token rejected");
	finx_tokens_free(&t);
	CHECK(!tokens("{\"access_token\":\"a\",\"refresh_token\":\"R\\n1\"}",
	          &t),
	    "refresh_token with a newline rejected");
	finx_tokens_free(&t);
}

static void
test_tokens_expires(void)
{
	CHECK(expires("3600") == 3600, "integer");
	CHECK(expires("\"3600\"") == 3600, "numeric string");
	CHECK(expires("3600.0") == 3600, "number with a fraction");
	CHECK(expires("3599.9") == 3599, "fraction rounds down");
	CHECK(expires("\"3600.5\"") == 3600, "fractional string");
	CHECK(expires("-5") == -1, "negative");
	CHECK(expires("0") == -1, "zero");
	CHECK(expires("0.5") == -1, "below one second");
	CHECK(expires("\"abc\"") == -1, "non-numeric string");
	CHECK(expires("\"\"") == -1, "empty string");
	CHECK(expires("\" 3600\"") == -1, "string with a space");
	CHECK(expires("\"-5\"") == -1, "negative string");
	CHECK(expires("\"0x10\"") == -1, "hex string");
	CHECK(expires(NULL) == -1, "missing");
	CHECK(expires("null") == -1, "null");
	CHECK(expires("true") == -1, "boolean");
	CHECK(expires("[3600]") == -1, "array");
	CHECK(expires("999999999999") == -1, "huge integer");
	CHECK(expires("99999999999999999999999") == -1, "beyond int64");
	CHECK(expires("\"99999999999\"") == -1, "huge string");
	CHECK(expires("1e300") == -1, "huge double");
	CHECK(expires("1e400") == -1, "infinite double");
	CHECK(expires("315360000") == 315360000, "ten years is allowed");
}

static void
test_tokens_bad(void)
{
	static const char *const bad[] = {
		"",
		" ",
		"null",
		"[]",
		"[{\"access_token\":\"a\"}]",
		"\"access_token\"",
		"123",
		"{}",
		"{\"access_token\":\"\"}",
		"{\"access_token\":null}",
		"{\"access_token\":42}",
		"{\"access_token\":[\"a\"]}",
		"{\"access_token\":\"a b\"}",
		"{\"access_token\":\"a\\r\\nX-Evil: 1\"}",
		"{\"access_token\":\"a\\u0000b\"}",
		"{\"access_token\":\"\\u00e9t\\u00e9\"}",
		"{\"access_token\":\"a\"",
		"{\"access_token\":\"a",
		"{\"access_token\":",
		"{\"access_token\"",
		"{",
		"{\"access_token\":\"a\"} x",
		"{\"access_token\":\"a\"}{}",
		"{\"access_token\":\"a\"},",
		"<html><body>502 Bad Gateway</body></html>",
	};
	struct finx_tokens t;
	size_t i;
	char *deep;
	const char *why;
	bool ok;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(!tokens(bad[i], &t), "bad token answer %zu rejected", i);
		CHECK(t.access_token == NULL && t.refresh_token == NULL &&
		        t.expires_in == -1,
		    "bad token answer %zu leaves out empty", i);
		finx_tokens_free(&t);
	}
	CHECK(tokens("{\"access_token\":\"a\",\"token_type\":5,\"scope\":[]}",
	          &t) &&
	        t.token_type == NULL && t.scope == NULL,
	    "wrong-typed informational fields are ignored");
	finx_tokens_free(&t);

	deep = nested("{\"access_token\":\"a\",\"x\":", 1000, "}");
	CHECK(!tokens(deep, &t), "1000 levels of nesting rejected");
	finx_tokens_free(&t);
	free(deep);
	deep = nested("", 1000, "");
	CHECK(!tokens(deep, &t), "1000 nested arrays rejected");
	finx_tokens_free(&t);
	free(deep);

	/* An embedded NUL must not cut the document short. */
	ok = finx_decode_tokens("{\"access_token\":\"a\"}\0garbage", 27, &t,
	    &why);
	CHECK(!ok && why != NULL, "bytes after a NUL rejected");
	finx_tokens_free(&t);
	ok = finx_decode_tokens(NULL, 0, &t, &why);
	CHECK(!ok && why != NULL, "NULL body rejected");
	finx_tokens_free(&t);
}

static void
test_error_shapes(void)
{
	struct finx_error e = { 0 };

	error_of(401,
	    "{\"error\":{\"code\":1004,\"data\":{},\"description\":"
	    "\"Invalid client authorization\",\"group\":\"client\"}}",
	    &e);
	CHECK(e.http_status == 401 && e.code != NULL &&
	        strcmp(e.code, "1004") == 0,
	    "finX shape: numeric code as text");
	CHECK(e.message != NULL &&
	        strcmp(e.message, "Invalid client authorization") == 0,
	    "finX shape: description is the message");
	CHECK(!e.invalid_grant && !e.transient && !e.transport && !e.never_sent,
	    "finX 401: no flags");

	/* Reused without finx_error_free: must not leak (ASan). */
	error_of(400,
	    "{\"error\":{\"code\":\"1000\",\"message\":\"Bank says "
	    "no\"}}",
	    &e);
	CHECK(e.code != NULL && strcmp(e.code, "1000") == 0 &&
	        e.message != NULL && strcmp(e.message, "Bank says no") == 0,
	    "finX shape: string code, message field");

	error_of(400,
	    "{\"error\":\"invalid_grant\",\"error_description\":"
	    "\"Refresh token expired\"}",
	    &e);
	CHECK(e.invalid_grant && e.code != NULL &&
	        strcmp(e.code, "invalid_grant") == 0,
	    "OAuth shape: invalid_grant");
	CHECK(e.message != NULL &&
	        strcmp(e.message, "Refresh token expired") == 0,
	    "OAuth shape: error_description is the message");

	error_of(401, "{\"error\":\"invalid_client\"}", &e);
	CHECK(!e.invalid_grant && strcmp(e.code, "invalid_client") == 0 &&
	        strcmp(e.message, "finX answered HTTP 401") == 0,
	    "OAuth shape without description");

	error_of(400,
	    "{\"error\":{\"code\":1000,\"description\":"
	    "\"invalid_grant: code already used\"}}",
	    &e);
	CHECK(e.invalid_grant, "finX shape: invalid_grant in description");
	error_of(400, "{\"error\":{\"code\":\"invalid_grant\"}}", &e);
	CHECK(e.invalid_grant &&
	        strcmp(e.message, "finX answered HTTP 400") == 0,
	    "finX shape: invalid_grant code");
	error_of(400,
	    "{\"error\":{\"code\":1003,\"description\":"
	    "\"Unauthorized\"}}",
	    &e);
	CHECK(!e.invalid_grant, "1003 alone is not invalid_grant");
	error_of(400,
	    "{\"error\":\"invalid_request\",\"error_description\":"
	    "\"not an invalid_grant\"}",
	    &e);
	CHECK(!e.invalid_grant, "OAuth shape: only error decides");
	error_of(400, "{\"error\":5}", &e);
	CHECK(e.code == NULL &&
	        strcmp(e.message, "finX answered HTTP 400") == 0,
	    "numeric error member");
	finx_error_free(&e);
	CHECK(e.code == NULL && e.message == NULL && e.http_status == 0,
	    "finx_error_free zeroes");
	finx_error_free(&e);
}

static void
test_error_generic(void)
{
	struct finx_error e = { 0 };
	char *deep;

	error_of(503, NULL, &e);
	CHECK(e.http_status == 503 && e.transient && e.code == NULL &&
	        strcmp(e.message, "finX answered HTTP 503") == 0,
	    "503 without body");
	error_of(404, "", &e);
	CHECK(e.http_status == 404 && !e.transient &&
	        strcmp(e.message, "finX answered HTTP 404") == 0,
	    "404 with an empty body");
	error_of(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", &e);
	CHECK(e.transient && strcmp(e.message, "finX answered HTTP 502") == 0,
	    "HTML body gives the generic message");
	error_of(429, "{\"error\":{\"code\":1008,\"description\":\"busy\"}}",
	    &e);
	CHECK(e.transient, "429 is transient");
	error_of(500, "{\"error\":{", &e);
	CHECK(e.transient && strcmp(e.message, "finX answered HTTP 500") == 0,
	    "truncated JSON gives the generic message");
	error_of(400, "{\"error\":{\"description\":\"x\"}} trailing", &e);
	CHECK(strcmp(e.message, "finX answered HTTP 400") == 0,
	    "trailing garbage gives the generic message");
	error_of(403, "[\"error\"]", &e);
	CHECK(strcmp(e.message, "finX answered HTTP 403") == 0,
	    "array body gives the generic message");
	deep = nested("{\"error\":{\"description\":\"deep\",\"data\":", 1000,
	    "}}");
	error_of(400, deep, &e);
	CHECK(strcmp(e.message, "finX answered HTTP 400") == 0,
	    "1000 levels of nesting give the generic message");
	free(deep);
	finx_error_free(&e);
}

static void
test_error_text(void)
{
	struct finx_error e = { 0 };
	struct buf b;
	char *body, big_word[1025];
	size_t i;

	memset(big_word, 'w', 1024);
	big_word[1024] = '\0';

	buf_init(&b, 1 << 20);
	buf_append_str(&b, "{\"error\":{\"code\":1000,\"description\":\"");
	for (i = 0; i < 5000; i++)
		buf_append_str(&b, "word ");
	buf_append_str(&b, "\"}}");
	error_of(400, b.data, &e);
	CHECK(e.message != NULL && strlen(e.message) <= 210 &&
	        strncmp(e.message, "word word", 9) == 0,
	    "huge message truncated (%zu bytes)",
	    e.message != NULL ? strlen(e.message) : 0);
	CHECK(e.message != NULL && strlen(e.message) >= 3 &&
	        strcmp(e.message + strlen(e.message) - 3, "...") == 0,
	    "truncation is marked");
	buf_free(&b);

	error_of(400,
	    "{\"error\":\"x\\u0001y\",\"error_description\":"
	    "\"bad\\r\\nSet-Cookie: a=b\\u001b[31m\\t\\u007f end\"}",
	    &e);
	CHECK(no_ctl(e.message) && no_ctl(e.code),
	    "control characters stripped");
	CHECK(e.message != NULL && strstr(e.message, "bad") == e.message &&
	        strstr(e.message, "end") != NULL,
	    "text around them kept: %s",
	    e.message != NULL ? e.message : "(null)");

	error_of(400,
	    "{\"error\":{\"description\":\"The code "
	    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl "
	    "is invalid\"}}",
	    &e);
	CHECK(e.message != NULL && strstr(e.message, "eyJ") == NULL &&
	        strstr(e.message, "[redacted]") != NULL &&
	        strstr(e.message, "is invalid") != NULL,
	    "an echoed token is redacted: %s",
	    e.message != NULL ? e.message : "(null)");

	/* Invalid UTF-8 and a multi-byte character cut at the limit. */
	error_of(400,
	    "{\"error\":{\"description\":\"caf\xc3\xa9 \xff\xfe "
	    "ok\"}}",
	    &e);
	CHECK(e.message != NULL && utf8_valid(e.message, strlen(e.message)),
	    "invalid UTF-8 made valid");
	{
		struct buf bb;

		buf_init(&bb, 400);
		buf_append_str(&bb, "{\"error\":{\"description\":\"");
		for (i = 0; i < 60; i++) /* 4 bytes: x and a euro sign */
			buf_append_str(&bb, "x\xe2\x82\xac");
		buf_append_str(&bb, "\"}}");
		body = buf_steal(&bb);
	}
	error_of(400, body, &e);
	CHECK(e.message != NULL && utf8_valid(e.message, strlen(e.message)),
	    "truncation keeps UTF-8 whole");
	free(body);

	/* One 4 MB word: must be cut quickly, not rescanned per byte. */
	buf_init(&b, 8 << 20);
	buf_append_str(&b, "{\"error\":{\"description\":\"");
	for (i = 0; i < 4096; i++)
		buf_append_str(&b, big_word);
	buf_append_str(&b, "\"}}");
	error_of(500, b.data, &e);
	CHECK(e.message != NULL && strlen(e.message) == 203 &&
	        strcmp(e.message + 200, "...") == 0,
	    "a 4 MB word is cut at 200");
	buf_free(&b);

	buf_init(&b, 1 << 20);
	buf_append_str(&b, "{\"error\":\"");
	for (i = 0; i < 500; i++)
		buf_append_str(&b, "ab_");
	buf_append_str(&b, "\"}");
	error_of(400, b.data, &e);
	CHECK(e.code != NULL && strlen(e.code) <= 70, "long code bounded");
	buf_free(&b);
	finx_error_free(&e);
}

static void
test_flow(void)
{
	char *id = NULL, *loc = NULL;
	const char *why = NULL;
	static const char good[] =
	    "{\"location\":\"https://widget.qwist.cloud/"
	    "?token=eyJ.a.b\",\"id\":\"3ca31c37-986a-454e-ad64-8e97143c86bc\"}";

	CHECK(finx_decode_flow(good, strlen(good), &id, &loc, &why) &&
	        why == NULL,
	    "good flow answer");
	CHECK(id != NULL &&
	        strcmp(id, "3ca31c37-986a-454e-ad64-8e97143c86bc") == 0,
	    "flow id kept");
	CHECK(loc != NULL &&
	        strcmp(loc, "https://widget.qwist.cloud/?token=eyJ.a.b") == 0,
	    "location kept");
	free(id);
	free(loc);
	CHECK(flow("{\"location\":\"http://127.0.0.1:9/w?t=1\",\"id\":\"f1\","
	           "\"extra\":[1,2]}"),
	    "http location and extra fields");
	CHECK(!flow("{\"location\":\"https://w.example/\"}"), "id missing");
	CHECK(!flow("{\"id\":\"f1\"}"), "location missing");
	CHECK(!flow("{\"location\":\"\",\"id\":\"f1\"}"), "empty location");
	CHECK(!flow("{\"location\":\"https://w.example/\",\"id\":\"\"}"),
	    "empty id");
	CHECK(!flow("{\"location\":\"https://w.example/\",\"id\":7}"),
	    "numeric id");
	CHECK(!flow("{\"location\":\"https://w.example/\",\"id\":\"a\\nb\"}"),
	    "id with a newline");
	CHECK(!flow("{\"location\":[\"https://w.example/\"],\"id\":\"f1\"}"),
	    "location not a string");
	CHECK(!flow("{\"location\":\"javascript:alert(1)\",\"id\":\"f1\"}"),
	    "javascript: location");
	CHECK(!flow("{\"location\":\"ftp://w.example/\",\"id\":\"f1\"}"),
	    "ftp location");
	CHECK(!flow("{\"location\":\"/relative\",\"id\":\"f1\"}"),
	    "relative location");
	CHECK(!flow("{\"location\":\"https://w.example/\\r\\nX: y\","
	            "\"id\":\"f1\"}"),
	    "location with CRLF");
	CHECK(!flow("{\"location\":\"https://w.example/a b\",\"id\":\"f1\"}"),
	    "location with a space");
	CHECK(!flow("{\"location\":\"https://u:p@w.example/\",\"id\":\"f1\"}"),
	    "location with credentials");
	CHECK(!flow("{\"location\":\"https://:443/x\",\"id\":\"f1\"}"),
	    "location without a host");
	CHECK(!flow("{\"location\":\"https://w.example/\",\"id\":\"f1\"} x"),
	    "trailing garbage");
	CHECK(!flow("[{\"location\":\"https://w.example/\",\"id\":\"f1\"}]"),
	    "array root");
	CHECK(!flow("{\"location\":\"https://w.example/\",\"id\":\"f1\""),
	    "truncated");
	CHECK(!flow(""), "empty body");
}

static void
test_url_allowed(void)
{
	const char *why = NULL;

	CHECK(url_ok("https://api.finx-s.qwist.cloud"), "https host");
	CHECK(url_ok("https://api.example.com:8443/base"), "https with path");
	CHECK(url_ok("https://10.1.2.3"), "https to an address");
	CHECK(url_ok("http://127.0.0.1:8080"), "http to 127.0.0.1");
	CHECK(url_ok("http://127.9.8.7"), "http to 127/8");
	CHECK(url_ok("http://[::1]:1"), "http to ::1");
	CHECK(url_ok("http://localhost"), "http to localhost");
	CHECK(url_ok("http://LOCALHOST:9/x"), "http to LOCALHOST");
	CHECK(!url_ok("http://example.com"), "http to a public host");
	CHECK(!finx_url_allowed("http://example.com", &why) && why != NULL &&
	        strstr(why, "loopback") != NULL,
	    "the reason says loopback");
	CHECK(!url_ok("http://128.0.0.1"), "http to 128.0.0.1");
	CHECK(!url_ok("http://10.0.0.1"), "http to a private address");
	CHECK(!url_ok("http://[::2]"), "http to ::2");
	CHECK(!url_ok("http://[::ffff:127.0.0.1]"), "http to v4-mapped");
	CHECK(!url_ok("http://127.0.0.1.example.com"), "127 as a label");
	CHECK(!url_ok("http://localhost.example.com"), "localhost as a label");
	CHECK(!url_ok("ftp://127.0.0.1"), "ftp refused");
	CHECK(!url_ok("file:///etc/passwd"), "file refused");
	CHECK(!url_ok("gopher://127.0.0.1"), "gopher refused");
	CHECK(!url_ok("garbage"), "garbage refused");
	CHECK(!url_ok("https://"), "no host");
	CHECK(!url_ok("https://user:pw@api.example.com"), "credentials");
	CHECK(!url_ok("https://api.example.com?x=1"), "query");
	CHECK(!url_ok("https://api.example.com#f"), "fragment");
	CHECK(!url_ok("https://api.example.com/a b"), "space");
	CHECK(!url_ok("https://api.example.com/\r\n"), "CRLF");
	CHECK(!url_ok(""), "empty");
	CHECK(!url_ok(NULL), "NULL");
	CHECK(!finx_url_allowed("garbage", NULL), "NULL why is fine");
}

/* Calls refused before a request exists; nothing goes on the wire. */
static void
test_refusals(void)
{
	static char public_url[] = "http://example.com";
	static char local_url[] = "http://127.0.0.1:9";
	static char id[] = "client", secret[] = "secret";
	struct config cfg;
	struct finx_error e = { 0 };
	struct finx_tokens t;
	json_object *out = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.client_id = id;
	cfg.client_secret = secret;
	cfg.finx_connect_timeout_ms = 100;
	cfg.finx_timeout_ms = 100;

	cfg.finx_url = public_url;
	finx_init(&cfg);
	CHECK(!finx_rest("GET", "tok", "/rest/accounts", NULL, &out, &e) &&
	        e.never_sent && !e.transport && e.http_status == 0 &&
	        out == NULL,
	    "a refused finX URL sends nothing");
	CHECK(!finx_exchange_code("code", "https://x/cb", &t, &e) &&
	        e.never_sent && t.access_token == NULL,
	    "code exchange refused too");
	finx_tokens_free(&t);
	finx_cleanup();

	cfg.finx_url = local_url;
	finx_init(&cfg);
	CHECK(!finx_rest("GET", "bad token", "/rest/accounts", NULL, &out,
	          &e) &&
	        e.never_sent && out == NULL,
	    "token with a space refused");
	CHECK(e.message != NULL && strstr(e.message, "bad token") == NULL,
	    "the message does not echo the token");
	CHECK(!finx_rest("GET", "tok\r\nX-Evil: 1", "/rest/accounts", NULL,
	          &out, &e) &&
	        e.never_sent,
	    "token with CRLF refused");
	CHECK(!finx_rest("GET", "", "/rest/accounts", NULL, &out, &e) &&
	        e.never_sent,
	    "empty token refused");
	CHECK(!finx_rest("GET", "tok", "/auth/token", NULL, &out, &e) &&
	        e.never_sent,
	    "non-/rest path refused");
	CHECK(!finx_rest("GET", "tok", "/rest/../auth/token", NULL, &out, &e),
	    "dot segments refused");
	CHECK(!finx_rest("GET", "tok", "/rest/%2e%2e/auth/token", NULL, &out,
	          &e),
	    "encoded dot segments refused");
	CHECK(!finx_rest("GET", "tok", "/rest/a b", NULL, &out, &e),
	    "space in path refused");
	CHECK(!finx_rest("GET", "tok", "/rest/a\r\nX: y", NULL, &out, &e),
	    "CRLF in path refused");
	CHECK(!finx_rest("PUT", "tok", "/rest/accounts", NULL, &out, &e),
	    "unknown method refused");
	CHECK(!finx_exchange_code("", "https://x/cb", &t, &e) && e.never_sent,
	    "empty code refused");
	finx_tokens_free(&t);
	CHECK(!finx_refresh(NULL, &t, &e) && e.never_sent,
	    "missing refresh token refused");
	finx_tokens_free(&t);
	CHECK(!finx_revoke("", &e) && e.never_sent, "empty revoke refused");
	finx_error_free(&e);
	finx_cleanup();
}

int
main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	test_tokens_good();
	test_tokens_refresh();
	test_tokens_expires();
	test_tokens_bad();
	test_error_shapes();
	test_error_generic();
	test_error_text();
	test_flow();
	test_url_allowed();
	test_refusals();
	curl_global_cleanup();
	return test_done();
}
