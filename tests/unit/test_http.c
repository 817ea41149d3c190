/*
 * Unit tests for http.c's pure helpers: route matching with {} segments,
 * percent-decoding, API key lookup, request ids and the body checks.  No
 * daemon is started.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "encode.h"
#include "http.h"
#include "idempotency.h"
#include "mem.h"
#include "test.h"

#define KEY_A "keyA-0123456789abcdef"
#define KEY_B "keyB-0123456789abcdef"
#define KEY_C "keyC-0123456789abcdef"

static bool match(const char *, const char *, int, ...);
static bool nomatch(const char *, const char *);
static bool unesc(const char *, size_t, const char *);
static void load(struct config *, const char *);
static void test_match(void);
static void test_unescape(void);
static void test_find_key(void);
static void test_request_id(void);
static void test_body_parse(void);

/*
 * http_match(pattern, path) succeeds with n params equal to the strings
 * that follow (and http_path_matches agrees; nomatch: both refuse).  The path is an exact-size copy, so over-reads show.
 */
static bool
match(const char *pattern, const char *path, int n, ...)
{
	char *params[HTTP_MAX_PARAMS], *copy = xstrdup(path);
	int got = -1, i;
	bool ok;
	va_list ap;

	ok = http_match(pattern, copy, params, &got) && got == n &&
	    http_path_matches(pattern, copy);
	va_start(ap, n);
	for (i = 0; ok && i < n; i++)
		if (strcmp(params[i], va_arg(ap, const char *)) != 0)
			ok = false;
	va_end(ap);
	if (got > 0)
		for (i = 0; i < got; i++)
			free(params[i]);
	free(copy);
	return ok;
}

static bool
nomatch(const char *pattern, const char *path)
{
	char *params[HTTP_MAX_PARAMS], *copy = xstrdup(path);
	int got = -1;
	bool ok = !http_match(pattern, copy, params, &got) && got == 0 &&
	    !http_path_matches(pattern, copy);

	free(copy);
	return ok;
}

/* http_unescape of exactly n bytes (no NUL after them) gives want. */
static bool
unesc(const char *s, size_t n, const char *want)
{
	char *copy = xmalloc(n), *got;
	bool ok;

	memcpy(copy, s, n);
	got = http_unescape(copy, n);
	if (want == NULL)
		ok = got == NULL;
	else
		ok = got != NULL && strcmp(got, want) == 0;
	free(got);
	free(copy);
	return ok;
}

static void
load(struct config *cfg, const char *api_keys)
{
	struct config_errors e = { 0 };
	unsigned char k[32] = { 0 };
	char *b64 = b64_encode(k, 32);
	char *tk = xasprintf("FINXD_TOKEN_KEYS=k1:%s", b64);
	char *ak = xasprintf("FINXD_API_KEYS=%s", api_keys);
	char *envp[] = { (char *)"FINXD_FINX_CLIENT_ID=c",
		(char *)"FINXD_FINX_CLIENT_SECRET=s", tk, ak, NULL };

	if (!config_load(cfg, NULL, envp, &e)) {
		fprintf(stderr, "config_load: %zu errors\n", e.n);
		abort();
	}
	config_errors_free(&e);
	free(ak);
	free(tk);
	free(b64);
}

static void
test_match(void)
{
	CHECK(match("/v1/links", "/v1/links", 0), "literal route");
	CHECK(match("/", "/", 0), "root");
	CHECK(match("/v1/links/{}", "/v1/links/abc", 1, "abc"), "one param");
	CHECK(match("/v1/users/{}/connections/{}",
		  "/v1/users/u1/connections/c-2", 2, "u1", "c-2"),
	    "two params");
	CHECK(match("/v1/users/{}/connections/{}",
		  "/v1/users/J%C3%BCrgen%20M/connections/c", 2,
		  "J\xc3\xbcrgen M", "c"), "params are percent-decoded");
	CHECK(match("/v1/users/{}", "/v1/users/a%2Fb", 1, "a/b"),
	    "%%2F stays inside one param");
	CHECK(match("/v1/users/{}", "/v1/users/a%2fb%2F..%2F", 1, "a/b/../"),
	    "lower-case %%2f, several");
	CHECK(match("/v1/users/{}", "/v1/users/a+b", 1, "a+b"),
	    "'+' is not a space in a path");
	CHECK(match("/v1/users/{}", "/v1/users/%2541", 1, "%41"),
	    "decoded once only");
	CHECK(match("/{}/{}/{}/{}", "/a/b/c/d", 4, "a", "b", "c", "d"),
	    "HTTP_MAX_PARAMS params");
	CHECK(nomatch("/{}/{}/{}/{}/{}", "/a/b/c/d/e"),
	    "more than HTTP_MAX_PARAMS params refused");

	CHECK(nomatch("/v1/users/{}", "/v1/users/a%00b"), "%%00 refused");
	CHECK(nomatch("/v1/users/{}", "/v1/users/%00"), "lone %%00 refused");
	CHECK(nomatch("/v1/users/{}", "/v1/users/a%zzb"), "%%zz refused");
	CHECK(nomatch("/v1/users/{}", "/v1/users/a%4"),
	    "truncated %%4 refused");
	CHECK(nomatch("/v1/users/{}", "/v1/users/a%"), "trailing %% refused");
	CHECK(nomatch("/v1/users/{}", "/v1/users/%g1"), "%%g1 refused");
	CHECK(nomatch("/v1/users/{}/connections/{}",
		  "/v1/users/ok/connections/%ZZ"),
	    "bad escape in the second param refused (first freed)");
	CHECK(nomatch("/v1/links/{}", "/v1/links/"), "empty last segment");
	CHECK(nomatch("/v1/links/{}", "/v1/links"), "missing segment");
	CHECK(nomatch("/v1/users/{}/connections/{}",
		  "/v1/users//connections/c"), "empty middle segment");
	CHECK(nomatch("/v1/users/{}/connections/{}",
		  "/v1/users/u/connections/"), "empty segment after a param");
	CHECK(nomatch("/v1/links/{}", "/v1/links/abc/"), "trailing slash");
	CHECK(nomatch("/v1/links", "/v1/links/"), "trailing slash, literal");
	CHECK(nomatch("/v1/links/", "/v1/links"), "missing trailing slash");
	CHECK(nomatch("/v1/links/{}", "/v1/links/a/b"), "extra segment");
	CHECK(nomatch("/v1/links", "/v1/link"), "shorter path");
	CHECK(nomatch("/v1/links", "/v1/linksx"), "longer path");
	CHECK(nomatch("/v1/links", "/V1/links"), "case-sensitive");
	CHECK(nomatch("/v1/links", ""), "empty path");
	CHECK(nomatch("/v1/links/{}", "/v1/links%2Fabc"),
	    "%%2F does not separate literal segments");
}

static void
test_unescape(void)
{
	CHECK(unesc("", 0, ""), "unescape empty");
	CHECK(unesc("abc", 3, "abc"), "unescape plain");
	CHECK(unesc("a%20b", 5, "a b"), "unescape %%20");
	CHECK(unesc("%41%42", 6, "AB"), "unescape adjacent escapes");
	CHECK(unesc("%c3%A4", 6, "\xc3\xa4"), "unescape mixed-case hex");
	CHECK(unesc("%2F", 3, "/"), "unescape %%2F");
	CHECK(unesc("%FF", 3, "\xff"), "unescape %%FF (bytes, not UTF-8)");
	CHECK(unesc("a+b", 3, "a+b"), "unescape keeps '+'");
	CHECK(unesc("%2541", 5, "%41"), "unescape decodes once");
	CHECK(unesc("abc%41", 3, "abc"), "unescape honours n");
	CHECK(unesc("%", 1, NULL), "unescape lone %%");
	CHECK(unesc("%4", 2, NULL), "unescape %%4");
	CHECK(unesc("a%41", 3, NULL), "unescape escape cut by n");
	CHECK(unesc("%4g", 3, NULL), "unescape %%4g");
	CHECK(unesc("%g4", 3, NULL), "unescape %%g4");
	CHECK(unesc("%%41", 4, NULL), "unescape %%%%");
	CHECK(unesc("% 41", 4, NULL), "unescape '%% 4'");
	CHECK(unesc("%00", 3, NULL), "unescape %%00");
	CHECK(unesc("abc%00def", 9, NULL), "unescape %%00 inside");
	CHECK(unesc("%0A", 3, "\n"), "unescape %%0A decodes (caller checks)");
}

static void
test_find_key(void)
{
	struct config cfg, none;
	const struct api_key *k;

	load(&cfg, KEY_A ":links, " KEY_B ":read, " KEY_C);
	CHECK(cfg.n_api_keys == 3, "three keys configured");
	k = http_find_key(&cfg, "Bearer " KEY_B);
	CHECK(k == &cfg.api_keys[1] && k->scopes == SCOPE_READ,
	    "the right one of several keys");
	CHECK(http_find_key(&cfg, "Bearer " KEY_A) == &cfg.api_keys[0],
	    "first key");
	CHECK(http_find_key(&cfg, "Bearer " KEY_C) == &cfg.api_keys[2] &&
		cfg.api_keys[2].scopes == SCOPE_ALL, "last key, all scopes");
	CHECK(http_find_key(&cfg, "bearer " KEY_B) == &cfg.api_keys[1],
	    "scheme lower case");
	CHECK(http_find_key(&cfg, "BEARER " KEY_B) == &cfg.api_keys[1],
	    "scheme upper case");
	CHECK(http_find_key(&cfg, "bEaReR " KEY_B) == &cfg.api_keys[1],
	    "scheme mixed case");
	CHECK(http_find_key(&cfg, "Bearer   " KEY_B) == &cfg.api_keys[1],
	    "several spaces after the scheme");
	CHECK(http_find_key(&cfg, "Bearer keyB-0123456789ABCDEF") == NULL,
	    "the key itself is case-sensitive");
	CHECK(http_find_key(&cfg, "Bearer wrong-key-0123456789") == NULL,
	    "wrong key");
	CHECK(http_find_key(&cfg, "Bearer " KEY_B "x") == NULL,
	    "key with an extra character");
	CHECK(http_find_key(&cfg, "Bearer keyB-0123456789abcde") == NULL,
	    "key missing its last character");
	CHECK(http_find_key(&cfg, "Bearer " KEY_B " ") == NULL,
	    "key with a trailing space");
	CHECK(http_find_key(&cfg, "Bearer " KEY_B ":read") == NULL,
	    "key with its scopes suffix");
	CHECK(http_find_key(&cfg, "Bearer ") == NULL, "empty key");
	CHECK(http_find_key(&cfg, "Bearer    ") == NULL, "only spaces");
	CHECK(http_find_key(&cfg, "Bearer") == NULL, "scheme only");
	CHECK(http_find_key(&cfg, "") == NULL, "empty header");
	CHECK(http_find_key(&cfg, NULL) == NULL, "no header");
	CHECK(http_find_key(&cfg, KEY_B) == NULL, "missing scheme");
	CHECK(http_find_key(&cfg, "Basic " KEY_B) == NULL, "Basic scheme");
	CHECK(http_find_key(&cfg, "Bearer\t" KEY_B) == NULL,
	    "tab after scheme");
	CHECK(http_find_key(&cfg, "BearerX" KEY_B) == NULL, "no separator");
	CHECK(http_find_key(&cfg, " Bearer " KEY_B) == NULL, "leading space");
	config_free(&cfg);

	load(&none, "");
	CHECK(none.n_api_keys == 0 &&
		http_find_key(&none, "Bearer " KEY_A) == NULL,
	    "no keys configured: nothing found");
	config_free(&none);
}

static void
test_request_id(void)
{
	char long_id[66];

	CHECK(http_request_id_ok("req-1.a:b_c"), "request id: allowed set");
	CHECK(!http_request_id_ok(NULL) && !http_request_id_ok(""),
	    "request id: none or empty");
	CHECK(!http_request_id_ok("a b") && !http_request_id_ok("a\nb") &&
		!http_request_id_ok("a\"b") && !http_request_id_ok("\xc3\xa4"),
	    "request id: space, newline, quote, non-ASCII refused");
	memset(long_id, 'a', 64);
	long_id[64] = '\0';
	CHECK(http_request_id_ok(long_id), "request id: 64 characters");
	long_id[64] = 'a';
	long_id[65] = '\0';
	CHECK(!http_request_id_ok(long_id), "request id: 65 refused");
}

/* http_body_parse of s (a NUL-terminated literal) under ctype: want. */
static bool
body_is(const char *ctype, const char *s, enum status want)
{
	json_object *o = NULL;
	const char *why = NULL;
	enum status got = http_body_parse(ctype, s, strlen(s), &o, &why);
	bool ok = got == want && (got == ST_OK) == (o != NULL) &&
	    (got != ST_INVALID_REQUEST || why != NULL);

	json_object_put(o);
	return ok;
}

static void
test_body_parse(void)
{
	const char *j = "application/json";

	CHECK(body_is(j, "{\"a\":1}", ST_OK), "body: one object");
	CHECK(body_is("application/json; charset=utf-8", "{}", ST_OK) &&
		body_is("Application/JSON", "{}", ST_OK),
	    "body: parameters and letter case of the type");
	CHECK(body_is(NULL, "{}", ST_UNSUPPORTED_MEDIA_TYPE) &&
		body_is("text/plain", "{}", ST_UNSUPPORTED_MEDIA_TYPE) &&
		body_is("application/jsonx", "{}", ST_UNSUPPORTED_MEDIA_TYPE),
	    "body: other or no Content-Type: 415");
	CHECK(body_is(j, "", ST_INVALID_REQUEST), "body: empty");
	CHECK(body_is(j, "{\"a\":\"\xff\"}", ST_INVALID_REQUEST),
	    "body: invalid UTF-8");
	CHECK(body_is(j, "{\"a\":\"\\ud800\"}", ST_INVALID_REQUEST) &&
		body_is(j, "{\"a\":\"\\udc00\"}", ST_INVALID_REQUEST),
	    "body: lone surrogates");
	CHECK(body_is(j, "{\"a\":\"\\ud83d\\ude00\"}", ST_OK),
	    "body: a surrogate pair");
	CHECK(body_is(j, "[1]", ST_INVALID_REQUEST) &&
		body_is(j, "{} {}", ST_INVALID_REQUEST) &&
		body_is(j, "{\"a\":}", ST_INVALID_REQUEST),
	    "body: an array, trailing text, bad JSON");
}

/* Idempotency-Key: 1 to 255 bytes of printable ASCII. */
static void
test_idem_key(void)
{
	char k[300];

	memset(k, 'a', 256);
	k[256] = '\0';
	CHECK(!idem_key_ok(k), "a key of 256 bytes is refused");
	k[255] = '\0';
	CHECK(idem_key_ok(k), "a key of 255 bytes is taken");
	CHECK(idem_key_ok("k"), "a key of one byte is taken");
	CHECK(idem_key_ok(" !~{}:/\"'"),
	    "space and punctuation are printable");
	CHECK(!idem_key_ok(""), "an empty key is refused");
	CHECK(!idem_key_ok(NULL), "no key is not a key");
	CHECK(!idem_key_ok("a\tb"), "a tab is refused");
	CHECK(!idem_key_ok("a\x7f"), "DEL is refused");
	CHECK(!idem_key_ok("a\x01"), "a control character is refused");
	CHECK(!idem_key_ok("caf\xc3\xa9"), "a byte beyond ASCII is refused");
}

int
main(void)
{
	test_match();
	test_idem_key();
	test_unescape();
	test_find_key();
	test_request_id();
	test_body_parse();
	return test_done();
}
