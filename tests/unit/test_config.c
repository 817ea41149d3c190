/*
 * Unit tests for config.c: defaults, validation (every problem reported at
 * once), token and API keys, the key = value file with *_file secrets,
 * config_print masking, the return URL prefix rule, and the example file
 * against the key table.  The environment is always a synthetic array,
 * never the process's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "encode.h"
#include "http.h"
#include "mem.h"
#include "secret.h"
#include "test.h"

#define CLIENT_SECRET "cs-SECRET-4711"
#define API_KEY "ak-SECRET-0123456789"
#define DB_PASSWORD "dbPWs3cr3t"

static const char env_id[] = "FINXD_FINX_CLIENT_ID=client-1";
static const char env_secret[] = "FINXD_FINX_CLIENT_SECRET=" CLIENT_SECRET;
/* Two 32-byte token keys in base64, and "FINXD_TOKEN_KEYS=k1:<k1>". */
static char *k1_b64, *k2_b64, *env_tk;
static unsigned char k1_raw[32], k2_raw[32];
#define MIN env_id, env_secret, env_tk

static bool load(struct config *, struct config_errors *, const char *,
    ...);
static bool load_tk(const char *);
static bool has_err(const struct config_errors *, const char *);
static bool errs_leak(const struct config_errors *, const char *);
static char *write_tmp(const char *);
static char *print_of(const struct config *);
static void test_defaults(void);
static void test_required(void);
static void test_listen_and_urls(void);
static void test_values(void);
static void test_token_keys(void);
static void test_api_keys(void);
static void test_file(void);
static void test_print(void);
static void test_return_urls(void);
static void test_database_only(void);
static void test_example(void);

/*
 * config_load with file and the NULL-terminated environment entries that
 * follow.  e is always initialised, so the caller frees it (and cfg).
 */
static bool
load(struct config *cfg, struct config_errors *e, const char *file, ...)
{
	char *envp[40];
	const char *s;
	va_list ap;
	int n = 0;

	va_start(ap, file);
	while ((s = va_arg(ap, const char *)) != NULL && n < 39)
		envp[n++] = (char *)s;
	va_end(ap);
	envp[n] = NULL;
	memset(e, 0, sizeof(*e));
	return config_load(cfg, file, envp, e);
}

/* Load with FINXD_TOKEN_KEYS=v; true when it loads without errors. */
static bool
load_tk(const char *v)
{
	struct config cfg;
	struct config_errors e;
	char *env = xasprintf("FINXD_TOKEN_KEYS=%s", v);
	bool ok = load(&cfg, &e, NULL, env_id, env_secret, env, NULL);

	ok = ok && !errs_leak(&e, k1_b64);
	config_free(&cfg);
	config_errors_free(&e);
	free(env);
	return ok;
}

static bool
has_err(const struct config_errors *e, const char *sub)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->lines[i], sub) != NULL)
			return true;
	return false;
}

static bool
errs_leak(const struct config_errors *e, const char *secret)
{
	return has_err(e, secret);
}

/* A temporary file holding content; returns its path (caller unlinks). */
static char *
write_tmp(const char *content)
{
	char *path = xstrdup("/tmp/finxd-ut-config-XXXXXX");
	int fd = mkstemp(path);
	size_t n = strlen(content);

	if (fd < 0 || write(fd, content, n) != (ssize_t)n) {
		perror("mkstemp/write");
		abort();
	}
	close(fd);
	return path;
}

/* config_print into a string (caller frees). */
static char *
print_of(const struct config *cfg)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	if (f == NULL)
		abort();
	config_print(cfg, f);
	fclose(f);
	return s;
}

static void
test_defaults(void)
{
	struct config cfg;
	struct config_errors e;
	bool ok = load(&cfg, &e, NULL, MIN, NULL);

	CHECK(ok && e.n == 0, "minimal config loads (%zu errors)", e.n);
	CHECK(cfg.listen_host && strcmp(cfg.listen_host, "127.0.0.1") == 0 &&
		cfg.listen_port == 8080, "default listen 127.0.0.1:8080");
	CHECK(cfg.public_url &&
		strcmp(cfg.public_url, "http://127.0.0.1:8080") == 0,
	    "default public_url");
	CHECK(cfg.redirect_uri &&
		strcmp(cfg.redirect_uri, "http://127.0.0.1:8080/callback") == 0,
	    "redirect_uri = public_url + /callback");
	CHECK(!cfg.public_https, "default public_url is not https");
	CHECK(cfg.finx_url &&
		strcmp(cfg.finx_url, "https://api.finx-s.qwist.cloud") == 0,
	    "default finx_url");
	CHECK(cfg.database_url && cfg.database_url[0] == '\0',
	    "default database_url is empty");
	CHECK(cfg.client_id && strcmp(cfg.client_id, "client-1") == 0,
	    "client id from the environment");
	CHECK(cfg.client_secret &&
		strcmp(cfg.client_secret, CLIENT_SECRET) == 0,
	    "client secret from the environment");
	CHECK(!cfg.token_form, "default token format json");
	CHECK(cfg.n_api_keys == 0 && cfg.n_return_urls == 0,
	    "no api keys, no return URLs by default");
	CHECK(cfg.state_ttl == 1800, "default state_ttl 1800");
	CHECK(cfg.n_token_keys == 1 &&
		strcmp(cfg.token_keys[0].id, "k1") == 0 &&
		memcmp(cfg.token_keys[0].key, k1_raw, 32) == 0,
	    "token key k1 decoded");
	CHECK(!cfg.browser_binding, "default browser_binding off");
	CHECK(cfg.log_level == 1, "default log level info");
	CHECK(cfg.db_pool_size == 8 && cfg.db_timeout_ms == 5000,
	    "default db pool 8, timeout 5000 ms");
	CHECK(cfg.http_max_connections == 8192 &&
		cfg.http_max_per_address == 256,
	    "default connection limits 8192 / 256");
	CHECK(cfg.http_header_timeout_s == 10 && cfg.http_body_timeout_s == 30 &&
		cfg.http_idle_timeout_s == 30,
	    "default http timeouts 10 / 30 / 30 (SPEC)");
	CHECK(cfg.n_trusted_proxies == 0, "no trusted proxies by default");
	CHECK(cfg.finx_connect_timeout_ms == 5000 &&
		cfg.finx_timeout_ms == 30000, "default finX timeouts");
	CHECK(cfg.refresh_margin_s == 300 &&
		cfg.refresh_keepalive_s == 604800 &&
		cfg.refresh_interval_s == 5 && cfg.refresh_concurrency == 8,
	    "default refresh knobs");
	CHECK(cfg.sync_interval_s == 21600 && cfg.drain_timeout_s == 20,
	    "default sync interval and drain timeout");
	config_free(&cfg);
	config_errors_free(&e);
	CHECK(cfg.listen_host == NULL && e.n == 0 && e.lines == NULL,
	    "config_free / config_errors_free reset");
}

static void
test_required(void)
{
	struct config cfg;
	struct config_errors e;
	bool ok;

	ok = load(&cfg, &e, NULL, NULL);
	CHECK(!ok && e.n == 3, "empty environment: 3 errors (got %zu)", e.n);
	CHECK(has_err(&e, "FINXD_FINX_CLIENT_ID is required") &&
		has_err(&e, "FINXD_FINX_CLIENT_SECRET is required") &&
		has_err(&e, "FINXD_TOKEN_KEYS is required"),
	    "each missing value named");
	config_free(&cfg);
	config_errors_free(&e);

	/* The operations listener: off by default, host:port, not the
	 * public listener's address. */
	ok = load(&cfg, &e, NULL, MIN, NULL);
	CHECK(ok && cfg.ops_listen_host == NULL, "no ops listener by default");
	config_free(&cfg);
	config_errors_free(&e);
	ok = load(&cfg, &e, NULL, MIN, "FINXD_OPS_LISTEN=[::1]:9090", NULL);
	CHECK(ok && cfg.ops_listen_host != NULL &&
		strcmp(cfg.ops_listen_host, "::1") == 0 &&
		cfg.ops_listen_port == 9090,
	    "FINXD_OPS_LISTEN=[::1]:9090 parsed");
	config_free(&cfg);
	config_errors_free(&e);
	ok = load(&cfg, &e, NULL, MIN, "FINXD_OPS_LISTEN=9090", NULL);
	CHECK(!ok && has_err(&e, "FINXD_OPS_LISTEN"),
	    "FINXD_OPS_LISTEN without a host refused");
	config_free(&cfg);
	config_errors_free(&e);
	ok = load(&cfg, &e, NULL, MIN, "FINXD_LISTEN=127.0.0.1:8080",
	    "FINXD_OPS_LISTEN=127.0.0.1:8080", NULL);
	CHECK(!ok && has_err(&e, "must differ"),
	    "FINXD_OPS_LISTEN equal to FINXD_LISTEN refused");
	config_free(&cfg);
	config_errors_free(&e);

	/* Every problem at once, one line each. */
	ok = load(&cfg, &e, NULL, "FINXD_LISTEN=nope", "FINXD_STATE_TTL=0",
	    "FINXD_LOG_LEVEL=loud", "FINXD_PUBLIC_URL=ftp://x",
	    "FINXD_BROWSER_BINDING=yes", NULL);
	CHECK(!ok && e.n == 8, "3 missing + 5 bad values: 8 errors (got %zu)",
	    e.n);
	CHECK(has_err(&e, "FINXD_LISTEN") && has_err(&e, "FINXD_STATE_TTL") &&
		has_err(&e, "FINXD_LOG_LEVEL") &&
		has_err(&e, "FINXD_PUBLIC_URL") &&
		has_err(&e, "FINXD_BROWSER_BINDING"),
	    "each bad value named");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load(&cfg, &e, NULL, env_id, "FINXD_FINX_CLIENT_SECRET=", env_tk,
	    NULL);
	CHECK(!ok && e.n == 1 && has_err(&e, "FINXD_FINX_CLIENT_SECRET"),
	    "empty client secret refused");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load(&cfg, &e, NULL, "FINXD_FINX_CLIENT_ID=a:b", env_secret,
	    env_tk, NULL);
	CHECK(!ok && e.n == 1 && has_err(&e, "FINXD_FINX_CLIENT_ID"),
	    "client id with ':' refused");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load(&cfg, &e, NULL, env_id, "FINXD_FINX_CLIENT_SECRET=a\tb",
	    env_tk, NULL);
	CHECK(!ok && e.n == 1 && !errs_leak(&e, "a\tb"),
	    "client secret with a control char refused, not echoed");
	config_free(&cfg);
	config_errors_free(&e);

	/* Secret and secret file both set. */
	ok = load(&cfg, &e, NULL, env_id, env_secret,
	    "FINXD_FINX_CLIENT_SECRET_FILE=/nonexistent/finxd", env_tk, NULL);
	CHECK(!ok && has_err(&e, "not both"),
	    "FINXD_X and FINXD_X_FILE both set: error");
	CHECK(!errs_leak(&e, CLIENT_SECRET), "... without the secret");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load(&cfg, &e, NULL, env_id,
	    "FINXD_FINX_CLIENT_SECRET_FILE=/nonexistent/finxd", env_tk, NULL);
	CHECK(!ok && has_err(&e, "cannot read") &&
		has_err(&e, "FINXD_FINX_CLIENT_SECRET is required"),
	    "unreadable secret file: error, secret still missing");
	config_free(&cfg);
	config_errors_free(&e);

	/* A non-secret key has no _FILE form: ignored. */
	ok = load(&cfg, &e, NULL, MIN, "FINXD_LISTEN_FILE=/nonexistent", NULL);
	CHECK(ok && cfg.listen_port == 8080, "FINXD_LISTEN_FILE is ignored");
	config_free(&cfg);
	config_errors_free(&e);

	/* An environment entry that merely starts with the name. */
	ok = load(&cfg, &e, NULL, MIN, "FINXD_LISTENX=1.2.3.4:1", NULL);
	CHECK(ok && cfg.listen_port == 8080,
	    "FINXD_LISTENX is not FINXD_LISTEN");
	config_free(&cfg);
	config_errors_free(&e);
}

/* Load with one extra environment entry; true when it has no errors. */
static bool
ok_with(const char *entry)
{
	struct config cfg;
	struct config_errors e;
	bool ok = load(&cfg, &e, NULL, MIN, entry, NULL);

	config_free(&cfg);
	config_errors_free(&e);
	return ok;
}

static void
test_listen_and_urls(void)
{
	static const char *const bad_listen[] = { "8080", ":8080", "host:",
		"host:0", "host:65536", "host:80x", "host: 80", "[::1]8080",
		"[::1", "" };
	static const char *const bad_url[] = { "ftp://p.example",
		"p.example", "http://", "https://", "http:///x",
		"https://p.example/a b", "https://p.example/?q=1",
		"https://p.example/#f", "https://p.example/a\\b",
		"https://p.example/<x>", "https://p.example/\"",
		"https://p.example/\x01", "https://p.example/\xff",
		"HTTPS://p.example", "//p.example", "" };
	struct config cfg;
	struct config_errors e;
	char *env;
	size_t i;

	for (i = 0; i < sizeof(bad_listen) / sizeof(bad_listen[0]); i++) {
		env = xasprintf("FINXD_LISTEN=%s", bad_listen[i]);
		CHECK(!ok_with(env), "listen \"%s\" refused", bad_listen[i]);
		free(env);
	}
	CHECK(load(&cfg, &e, NULL, MIN, "FINXD_LISTEN=[::1]:9000", NULL) &&
		strcmp(cfg.listen_host, "::1") == 0 && cfg.listen_port == 9000,
	    "listen [::1]:9000");
	config_free(&cfg);
	config_errors_free(&e);
	CHECK(load(&cfg, &e, NULL, MIN, "FINXD_LISTEN=0.0.0.0:65535", NULL) &&
		strcmp(cfg.listen_host, "0.0.0.0") == 0 &&
		cfg.listen_port == 65535, "listen 0.0.0.0:65535");
	config_free(&cfg);
	config_errors_free(&e);

	for (i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++) {
		env = xasprintf("FINXD_PUBLIC_URL=%s", bad_url[i]);
		CHECK(!ok_with(env), "public_url #%zu refused", i);
		free(env);
	}
	CHECK(load(&cfg, &e, NULL, MIN,
		  "FINXD_PUBLIC_URL=https://p.example/base/", NULL) &&
		strcmp(cfg.public_url, "https://p.example/base") == 0 &&
		strcmp(cfg.redirect_uri, "https://p.example/base/callback") ==
		    0 && cfg.public_https,
	    "public_url: trailing slash dropped, https noted, redirect_uri");
	config_free(&cfg);
	config_errors_free(&e);

	/* finX URL: https anywhere, plain http only to loopback. */
	CHECK(!load(&cfg, &e, NULL, MIN,
		  "FINXD_FINX_URL=http://finx.example", NULL) &&
		e.n == 1 && has_err(&e, "FINXD_FINX_URL") &&
		has_err(&e, "loopback"),
	    "finx_url plain http to a remote host refused");
	config_free(&cfg);
	config_errors_free(&e);
	CHECK(load(&cfg, &e, NULL, MIN, "FINXD_FINX_URL=http://127.0.0.1:9",
		  NULL) && strcmp(cfg.finx_url, "http://127.0.0.1:9") == 0,
	    "finx_url http://127.0.0.1:9 allowed");
	config_free(&cfg);
	config_errors_free(&e);
	CHECK(load(&cfg, &e, NULL, MIN,
		  "FINXD_FINX_URL=https://finx.example/api/", NULL) &&
		strcmp(cfg.finx_url, "https://finx.example/api") == 0,
	    "finx_url https, trailing slash dropped");
	config_free(&cfg);
	config_errors_free(&e);
	CHECK(ok_with("FINXD_FINX_URL=http://localhost:9"),
	    "finx_url http://localhost allowed");
	CHECK(!ok_with("FINXD_FINX_URL=http://127.0.0.1.evil.example"),
	    "finx_url http://127.0.0.1.evil.example refused");
	CHECK(!ok_with("FINXD_FINX_URL=https://u:p@finx.example"),
	    "finx_url with credentials refused");
	CHECK(!ok_with("FINXD_FINX_URL=ftp://finx.example"),
	    "finx_url ftp refused");
	CHECK(!ok_with("FINXD_FINX_URL=https://finx.example/?x=1"),
	    "finx_url with a query refused");
	CHECK(!ok_with("FINXD_FINX_URL="), "finx_url empty refused");
}

static void
test_values(void)
{
	struct config cfg;
	struct config_errors e;

	CHECK(load(&cfg, &e, NULL, MIN, "FINXD_FINX_TOKEN_FORMAT=form",
		  "FINXD_BROWSER_BINDING=required", "FINXD_LOG_LEVEL=debug",
		  "FINXD_STATE_TTL=86400", NULL) &&
		cfg.token_form && cfg.browser_binding && cfg.log_level == 0 &&
		cfg.state_ttl == 86400,
	    "token format form, binding required, debug, state_ttl max");
	config_free(&cfg);
	config_errors_free(&e);
	CHECK(!ok_with("FINXD_FINX_TOKEN_FORMAT=xml"), "token format xml");
	CHECK(!ok_with("FINXD_STATE_TTL=86401"), "state_ttl above max");
	CHECK(!ok_with("FINXD_STATE_TTL=-1"), "state_ttl negative");
	CHECK(!ok_with("FINXD_STATE_TTL=1800s"), "state_ttl with a unit");
	CHECK(ok_with("FINXD_STATE_TTL=1"), "state_ttl 1");
	CHECK(!ok_with("FINXD_DB_POOL_SIZE=0"), "db_pool_size 0");
	CHECK(!ok_with("FINXD_HTTP_MAX_CONNECTIONS=15"),
	    "http_max_connections 15");
	CHECK(ok_with("FINXD_TRUSTED_PROXIES=10.0.0.0/8, ::1,192.0.2.7"),
	    "trusted proxies: CIDR, IPv6, address");
	CHECK(!ok_with("FINXD_TRUSTED_PROXIES=10.0.0.0/33"),
	    "trusted proxies: prefix too long");
	CHECK(!ok_with("FINXD_TRUSTED_PROXIES=proxy.example"),
	    "trusted proxies: a name is refused");
	CHECK(!ok_with("FINXD_REFRESH_KEEPALIVE=59"), "refresh_keepalive 59");
	CHECK(!ok_with("FINXD_FINX_CONNECT_TIMEOUT_MS=40000"),
	    "connect timeout above total timeout");
	CHECK(ok_with("FINXD_DRAIN_TIMEOUT=0"), "drain_timeout 0");
	CHECK(!ok_with("FINXD_LOG_LEVEL=INFO"), "log level is case-sensitive");
}

static void
test_token_keys(void)
{
	struct config cfg;
	struct config_errors e;
	unsigned char sixteen[16] = { 1 }, more[33] = { 2 };
	char *b16 = b64_encode(sixteen, sizeof(sixteen));
	char *b33 = b64_encode(more, sizeof(more));
	char *v, *env, id33[34];
	bool ok;

	v = xasprintf("k1:%s", b16);
	CHECK(!load_tk(v), "token key of 16 bytes refused");
	free(v);
	v = xasprintf("k1:%s", b33);
	CHECK(!load_tk(v), "token key of 33 bytes refused");
	free(v);
	CHECK(!load_tk("k1:!!!!"), "token key with bad base64 refused");
	v = xasprintf("k1:%.43s", k1_b64);
	CHECK(!load_tk(v), "token key with padding cut refused");
	free(v);
	v = xasprintf("k.1:%s", k1_b64);
	CHECK(!load_tk(v), "token key id with '.' refused");
	free(v);
	v = xasprintf(":%s", k1_b64);
	CHECK(!load_tk(v), "empty token key id refused");
	free(v);
	memset(id33, 'a', 33);
	id33[33] = '\0';
	v = xasprintf("%s:%s", id33, k1_b64);
	CHECK(!load_tk(v), "token key id of 33 chars refused");
	free(v);
	v = xasprintf("%.32s:%s", id33, k1_b64);
	CHECK(load_tk(v), "token key id of 32 chars ok");
	free(v);
	CHECK(!load_tk(k1_b64), "token key without id refused");
	CHECK(!load_tk(""), "empty FINXD_TOKEN_KEYS refused");
	CHECK(!load_tk(" , "), "FINXD_TOKEN_KEYS of blanks refused");

	/* Duplicate id. */
	env = xasprintf("FINXD_TOKEN_KEYS=k1:%s,k1:%s", k1_b64, k2_b64);
	ok = load(&cfg, &e, NULL, env_id, env_secret, env, NULL);
	CHECK(!ok && e.n == 1 && has_err(&e, "duplicate"),
	    "duplicate token key id refused");
	CHECK(!errs_leak(&e, k1_b64) && !errs_leak(&e, k2_b64),
	    "... without the key");
	config_free(&cfg);
	config_errors_free(&e);
	free(env);

	/* Two keys: order kept, the first one encrypts. */
	env = xasprintf("FINXD_TOKEN_KEYS= k2:%s , k1:%s ", k2_b64, k1_b64);
	ok = load(&cfg, &e, NULL, env_id, env_secret, env, NULL);
	CHECK(ok && cfg.n_token_keys == 2 &&
		strcmp(cfg.token_keys[0].id, "k2") == 0 &&
		strcmp(cfg.token_keys[1].id, "k1") == 0 &&
		memcmp(cfg.token_keys[0].key, k2_raw, 32) == 0 &&
		memcmp(cfg.token_keys[1].key, k1_raw, 32) == 0,
	    "two token keys, order kept, spaces trimmed");
	config_free(&cfg);
	config_errors_free(&e);
	free(env);

	/* One bad entry among good ones: one error, naming the entry. */
	env = xasprintf("FINXD_TOKEN_KEYS=k1:%s,k2:%s,k3:%s", k1_b64, b16,
	    k2_b64);
	ok = load(&cfg, &e, NULL, env_id, env_secret, env, NULL);
	CHECK(!ok && e.n == 1 && has_err(&e, "entry 2") &&
		!errs_leak(&e, b16), "bad entry 2 reported, key not echoed");
	config_free(&cfg);
	config_errors_free(&e);
	free(env);
	free(b16);
	free(b33);
}

/* Load with FINXD_API_KEYS=v. */
static bool
load_ak(struct config *cfg, struct config_errors *e, const char *v)
{
	char *env = xasprintf("FINXD_API_KEYS=%s", v);
	bool ok = load(cfg, e, NULL, MIN, env, NULL);

	free(env);
	return ok;
}

static void
test_api_keys(void)
{
	struct config cfg;
	struct config_errors e;
	struct api_key k;
	unsigned char h[32];
	const char *why;
	char *hex, *v;
	bool ok;

	ok = load_ak(&cfg, &e, "short-key");
	CHECK(!ok && e.n == 1 && has_err(&e, "16") &&
		!errs_leak(&e, "short-key"),
	    "short api key refused, not echoed");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load_ak(&cfg, &e, "0123456789abcde");
	CHECK(!ok, "api key of 15 chars refused");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load_ak(&cfg, &e, API_KEY ":links+read");
	CHECK(ok && cfg.n_api_keys == 1 &&
		cfg.api_keys[0].scopes == (SCOPE_LINKS | SCOPE_READ),
	    "api key scopes links+read");
	CHECK(ok && http_find_key(&cfg, "Bearer " API_KEY) == &cfg.api_keys[0],
	    "the key is found by its plain text");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load_ak(&cfg, &e, API_KEY);
	CHECK(ok && cfg.n_api_keys == 1 && cfg.api_keys[0].scopes == SCOPE_ALL,
	    "api key without scopes has all");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load_ak(&cfg, &e, API_KEY ":links+bogus");
	CHECK(!ok && e.n == 1 && has_err(&e, "unknown scope") &&
		!errs_leak(&e, API_KEY) && !errs_leak(&e, "ak-SECRET"),
	    "unknown scope refused, key not echoed");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load_ak(&cfg, &e, API_KEY ":");
	CHECK(!ok && !errs_leak(&e, "ak-SECRET"), "empty scope list refused");
	config_free(&cfg);
	config_errors_free(&e);
	ok = load_ak(&cfg, &e, API_KEY ":links+");
	CHECK(!ok, "trailing '+' refused");
	config_free(&cfg);
	config_errors_free(&e);
	ok = load_ak(&cfg, &e, "ak-SECRET-01234\x01" "6789");
	CHECK(!ok && !errs_leak(&e, "ak-SECRET"),
	    "api key with a control char refused, not echoed");
	config_free(&cfg);
	config_errors_free(&e);

	/* sha256=<hex> form matches the plain key. */
	sha256("plain-api-key-0123456789", 24, h);
	hex = hex_encode(h, 32);
	v = xasprintf("sha256=%s:read", hex);
	ok = load_ak(&cfg, &e, v);
	CHECK(ok && cfg.n_api_keys == 1 &&
		cfg.api_keys[0].scopes == SCOPE_READ &&
		memcmp(cfg.api_keys[0].hash, h, 32) == 0,
	    "sha256= form accepted");
	CHECK(ok && http_find_key(&cfg, "Bearer plain-api-key-0123456789") ==
		&cfg.api_keys[0], "sha256= form matches the plain key");
	CHECK(ok && strncmp(cfg.api_keys[0].id, hex, 16) == 0 &&
		strlen(cfg.api_keys[0].id) == 16,
	    "api key id is the first 8 hash bytes in hex");
	config_free(&cfg);
	config_errors_free(&e);
	free(v);
	/* Upper-case hex is the same hash. */
	for (char *p = hex; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	v = xasprintf("sha256=%s", hex);
	CHECK(config_parse_api_key(v, &k, &why) &&
		memcmp(k.hash, h, 32) == 0 && k.scopes == SCOPE_ALL,
	    "sha256= with upper-case hex");
	free(v);
	v = xasprintf("sha256=%.63s", hex);
	CHECK(!config_parse_api_key(v, &k, &why), "sha256= with 63 digits");
	free(v);
	v = xasprintf("sha256=%s0", hex);
	CHECK(!config_parse_api_key(v, &k, &why), "sha256= with 65 digits");
	free(v);
	hex[10] = 'g';
	v = xasprintf("sha256=%s", hex);
	CHECK(!config_parse_api_key(v, &k, &why) && why != NULL,
	    "sha256= with a non-hex digit");
	free(v);
	free(hex);

	/* Several keys, each with its own scopes. */
	ok = load_ak(&cfg, &e, "aaaaaaaaaaaaaaaa1:links, bbbbbbbbbbbbbbbb2:"
			       "read+tokens+admin");
	CHECK(ok && cfg.n_api_keys == 2 &&
		cfg.api_keys[0].scopes == SCOPE_LINKS &&
		cfg.api_keys[1].scopes ==
		    (SCOPE_READ | SCOPE_TOKENS | SCOPE_ADMIN),
	    "two api keys with their scopes");
	config_free(&cfg);
	config_errors_free(&e);
}

static void
test_file(void)
{
	struct config cfg;
	struct config_errors e;
	char *secret = write_tmp("file-SECRET-42\n");
	char *crlf = write_tmp("crlf-SECRET\r\n");
	char *text, *path, *env, *want;
	bool ok;

	text = xasprintf("# a comment\n"
			 "\n"
			 "   \t\n"
			 "  # indented comment\n"
			 "listen = 0.0.0.0:9000\n"
			 "public_url = \"https://p.example/\"\n"
			 "finx_client_id=file-client\n"
			 "finx_client_secret_file = %s\n"
			 "token_keys = k1:%s\n"
			 "state_ttl =  600  \n"
			 "database_url = host=db password=" DB_PASSWORD "\n",
	    secret, k1_b64);
	path = write_tmp(text);
	free(text);
	ok = load(&cfg, &e, path, NULL);
	CHECK(ok && e.n == 0, "config file loads (%zu errors)", e.n);
	CHECK(cfg.listen_port == 9000 &&
		strcmp(cfg.listen_host, "0.0.0.0") == 0, "file: listen");
	CHECK(cfg.public_url &&
		strcmp(cfg.public_url, "https://p.example") == 0,
	    "file: quoted value unquoted");
	CHECK(cfg.client_id && strcmp(cfg.client_id, "file-client") == 0,
	    "file: key=value without spaces");
	CHECK(cfg.client_secret &&
		strcmp(cfg.client_secret, "file-SECRET-42") == 0,
	    "file: *_file secret, trailing newline stripped");
	CHECK(cfg.state_ttl == 600, "file: value trimmed");
	CHECK(cfg.database_url && strcmp(cfg.database_url,
				      "host=db password=" DB_PASSWORD) == 0,
	    "file: '=' inside a value kept");
	config_free(&cfg);
	config_errors_free(&e);

	/* Environment wins over the file. */
	env = xasprintf("FINXD_FINX_CLIENT_SECRET_FILE=%s", crlf);
	ok = load(&cfg, &e, path, "FINXD_LISTEN=127.0.0.1:7000", env,
	    "FINXD_STATE_TTL=700", NULL);
	CHECK(ok && cfg.listen_port == 7000 && cfg.state_ttl == 700 &&
		strcmp(cfg.listen_host, "127.0.0.1") == 0,
	    "environment wins over the file");
	CHECK(ok && strcmp(cfg.client_secret, "crlf-SECRET") == 0,
	    "FINXD_*_FILE wins over the file, CRLF stripped");
	CHECK(cfg.client_id && strcmp(cfg.client_id, "file-client") == 0,
	    "file value kept where the environment is silent");
	config_free(&cfg);
	config_errors_free(&e);
	free(env);
	unlink(path);
	free(path);

	/* Unknown keys and malformed lines, with line numbers. */
	text = xasprintf("finx_client_id = c\n"
			 "bogus = 1\n"
			 "\n"
			 "listen_file = /etc/passwd\n"
			 "just some words\n"
			 "finx_client_secret = s\n"
			 "token_keys = k1:%s\n",
	    k1_b64);
	path = write_tmp(text);
	free(text);
	ok = load(&cfg, &e, path, NULL);
	CHECK(!ok && e.n == 3, "file: 3 bad lines, 3 errors (got %zu)", e.n);
	want = xasprintf("%s:2: unknown key bogus", path);
	CHECK(has_err(&e, want), "file: unknown key with its line number");
	free(want);
	want = xasprintf("%s:4: unknown key listen_file", path);
	CHECK(has_err(&e, want), "file: _file of a non-secret key refused");
	free(want);
	want = xasprintf("%s:5: expected key = value", path);
	CHECK(has_err(&e, want), "file: line without '=' refused");
	free(want);
	config_free(&cfg);
	config_errors_free(&e);
	unlink(path);
	free(path);

	ok = load(&cfg, &e, "/nonexistent/finxd.conf", MIN, NULL);
	CHECK(!ok && e.n == 1 && has_err(&e, "/nonexistent/finxd.conf"),
	    "missing config file is an error");
	config_free(&cfg);
	config_errors_free(&e);

	/* Secret file given in the file but missing. */
	path = write_tmp("finx_client_secret_file = /nonexistent/secret\n");
	ok = load(&cfg, &e, path, env_id, env_tk, NULL);
	CHECK(!ok && has_err(&e, "cannot read"),
	    "file: unreadable secret file reported");
	config_free(&cfg);
	config_errors_free(&e);
	unlink(path);
	free(path);

	unlink(secret);
	unlink(crlf);
	free(secret);
	free(crlf);
}

/* Load with extra entries and check the printout hides every secret. */
static void
print_check(const char *dburl, const char *label, const char *keep)
{
	struct config cfg;
	struct config_errors e;
	char *env_db = xasprintf("FINXD_DATABASE_URL=%s", dburl);
	char *env_tk2 = xasprintf("FINXD_TOKEN_KEYS=k1:%s,k2:%s", k1_b64,
	    k2_b64);
	char *out;
	bool ok = load(&cfg, &e, NULL, env_id, env_secret, env_tk2, env_db,
	    "FINXD_API_KEYS=" API_KEY ":links+read", NULL);

	out = print_of(&cfg);
	CHECK(ok && out != NULL, "config_print (%s) ran", label);
	CHECK(strstr(out, CLIENT_SECRET) == NULL,
	    "config_print (%s): no client secret", label);
	CHECK(strstr(out, API_KEY) == NULL && strstr(out, "ak-SECRET") == NULL,
	    "config_print (%s): no api key", label);
	CHECK(strstr(out, k1_b64) == NULL && strstr(out, k2_b64) == NULL,
	    "config_print (%s): no token key", label);
	CHECK(strstr(out, "s3cr3t") == NULL,
	    "config_print (%s): no database password", label);
	if (keep != NULL)
		CHECK(strstr(out, keep) != NULL,
		    "config_print (%s): the rest of the DSN shown", label);
	CHECK(strstr(out, "token_keys = k1:(masked), k2:(masked)") != NULL,
	    "config_print (%s): token key ids shown", label);
	CHECK(strstr(out, "scopes: links read") != NULL,
	    "config_print (%s): api key scopes shown", label);
	free(out);
	config_free(&cfg);
	config_errors_free(&e);
	free(env_db);
	free(env_tk2);
}

static void
test_print(void)
{
	/* Host names are shown; the password never is, in any form. */
	print_check("postgres://u:" DB_PASSWORD "@dbhost/db", "URI", "dbhost");
	print_check("postgresql://u:" DB_PASSWORD "@dbhost:5432/db?"
		    "sslmode=require", "URI with port", "dbhost");
	print_check("postgres://u@dbhost/db?password=" DB_PASSWORD,
	    "URI query", "dbhost");
	print_check("postgres://u:x%40" DB_PASSWORD "@dbhost/db",
	    "URI, escaped @ in the password", "dbhost");
	print_check("host=dbhost password=" DB_PASSWORD " dbname=d", "keyword",
	    "dbhost");
	print_check("password=" DB_PASSWORD, "keyword only", NULL);
	/* libpq allows spaces around '=' and quoted values. */
	print_check("host=dbhost password = " DB_PASSWORD " dbname=d",
	    "keyword, spaces around =", "dbhost");
	print_check("host=dbhost password='" DB_PASSWORD " x' dbname=d",
	    "keyword, quoted", "dbhost");
	print_check("host=dbhost password='x " DB_PASSWORD "' dbname=d",
	    "keyword, quoted with space", "dbhost");
	print_check("host=dbhost\tpassword=" DB_PASSWORD "\tdbname=d",
	    "keyword, tab separated", "dbhost");
	/* The client key passphrase is a password too (libpq marks it). */
	print_check("host=dbhost sslpassword=" DB_PASSWORD, "sslpassword",
	    "dbhost");
	print_check("host=dbhost password='" DB_PASSWORD, "not a valid DSN",
	    NULL);
}

static void
test_return_urls(void)
{
	static const char *const good[] = {
		"https://p.example/r",
		"https://p.example/r/x",
		"https://p.example/r?x=1",
		"https://p.example/r#frag",
		"https://p.example/r/deep/er?next=https://x",
		"https://q.example/cb/anything",
		"https://q.example/cb/",
		"https://h.example",
		"https://h.example/",
		"https://h.example/any?x",
	};
	static const char *const bad[] = {
		"",
		"https://p.example/rx",
		"https://p.example/r.evil",
		"https://p.example/r@evil.com",
		"https://p.example/",
		"https://p.example",
		"https://p.example.evil.com",
		"https://p.example.evil.com/r",
		"https://p.example@evil.com/r",
		"https://user:pw@p.example/r",
		"https://evil.com#@p.example/r",
		"https://evil.com\\@p.example/r",
		"https://p.example\\@evil.com/r",
		"https://p.example/r\\..\\..\\evil",
		"https:\\\\evil.com/p.example/r",
		"//evil",
		"//p.example/r",
		"/r",
		"javascript:alert(1)",
		"JavaScript:alert(1)//https://p.example/r",
		"data:text/html,<script>alert(1)</script>",
		"data:text/html;base64,PHNjcmlwdD4=",
		"https://p.example/r x",
		" https://p.example/r",
		"https://p.example/r\t",
		"https://p.example/r\r\nSet-Cookie: x=1",
		"https://p.example/r\x7f",
		"https://p.example/r\xff",
		"HTTPS://p.example/r",
		"Https://p.example/r",
		"https://P.EXAMPLE/r",
		"http://p.example/r",
		"https://q.example/cb",
		"https://q.example/cbx",
		"https://h.example.evil.com",
		"https://h.example:8443/x",
		"https://h.example@evil.com",
		"ftp://p.example/r",
	};
	struct config cfg, none;
	struct config_errors e;
	size_t i;
	bool ok;

	ok = load(&cfg, &e, NULL, MIN,
	    "FINXD_RETURN_URLS=https://p.example/r, https://q.example/cb/,"
	    "https://h.example", NULL);
	CHECK(ok && cfg.n_return_urls == 3, "three return URL prefixes");
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(config_return_url_allowed(&cfg, good[i]),
		    "return_url allowed: %s", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!config_return_url_allowed(&cfg, bad[i]),
		    "return_url refused: #%zu", i);
	config_free(&cfg);
	config_errors_free(&e);

	ok = load(&none, &e, NULL, MIN, NULL);
	CHECK(ok && !config_return_url_allowed(&none, "https://p.example/r"),
	    "no prefixes: nothing allowed");
	config_free(&none);
	config_errors_free(&e);

	ok = load(&cfg, &e, NULL, MIN,
	    "FINXD_RETURN_URLS=https://p.example/r,javascript:alert(1)", NULL);
	CHECK(!ok && e.n == 1 && has_err(&e, "entry 2"),
	    "a non-http return URL prefix refused");
	config_free(&cfg);
	config_errors_free(&e);
	ok = load(&cfg, &e, NULL, MIN,
	    "FINXD_RETURN_URLS=https://p.example/r#x", NULL);
	CHECK(!ok, "a return URL prefix with a fragment refused");
	config_free(&cfg);
	config_errors_free(&e);
}

/* config_load_database with the NULL-terminated environment entries. */
static bool
load_db(struct config *cfg, struct config_errors *e, ...)
{
	char *envp[40];
	const char *s;
	va_list ap;
	int n = 0;

	va_start(ap, e);
	while ((s = va_arg(ap, const char *)) != NULL && n < 39)
		envp[n++] = (char *)s;
	va_end(ap);
	envp[n] = NULL;
	memset(e, 0, sizeof(*e));
	return config_load_database(cfg, NULL, envp, e);
}

/*
 * finxd migrate loads with config_load_database: the database URL alone
 * is enough, whatever is set is still checked, and serve's loader keeps
 * requiring the finX client and the token keys.
 */
static void
test_database_only(void)
{
	static const char db[] = "FINXD_DATABASE_URL=host=db1 password="
				 DB_PASSWORD;
	static const char direct[] = "FINXD_DATABASE_DIRECT_URL=host=db2";
	struct config cfg;
	struct config_errors e;
	bool ok;

	ok = load_db(&cfg, &e, db, NULL);
	CHECK(ok && e.n == 0,
	    "database-only: FINXD_DATABASE_URL alone loads (%zu errors)", e.n);
	CHECK(cfg.database_direct_url &&
		strcmp(cfg.database_direct_url, cfg.database_url) == 0,
	    "database-only: the direct URL defaults to FINXD_DATABASE_URL");
	CHECK(cfg.client_id == NULL && cfg.client_secret == NULL &&
		cfg.n_token_keys == 0,
	    "database-only: no finX client, no token keys");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load_db(&cfg, &e, direct, NULL);
	CHECK(ok && cfg.database_direct_url &&
		strcmp(cfg.database_direct_url, "host=db2") == 0,
	    "database-only: FINXD_DATABASE_DIRECT_URL alone loads");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load(&cfg, &e, NULL, db, NULL);
	CHECK(!ok && has_err(&e, "FINXD_FINX_CLIENT_ID is required") &&
		has_err(&e, "FINXD_TOKEN_KEYS is required"),
	    "serve's loader still requires client id and token keys");
	config_free(&cfg);
	config_errors_free(&e);

	ok = load_db(&cfg, &e, db, "FINXD_LISTEN=nonsense",
	    "FINXD_TOKEN_KEYS=k1:c2hvcnQ=", "FINXD_STATE_DIR=relative", NULL);
	CHECK(!ok && e.n == 3,
	    "database-only: a bad value set is still an error (%zu of 3)",
	    e.n);
	CHECK(!errs_leak(&e, DB_PASSWORD), "database-only: no password shown");
	config_free(&cfg);
	config_errors_free(&e);
}

/* The key a "key = value" or "# key = value" line names, or NULL. */
static char *
example_key(char *line, char **value)
{
	char *p = line;
	size_t n;

	if (strncmp(p, "# ", 2) == 0)
		p += 2;
	n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
	if (n == 0 || strncmp(p + n, " = ", 3) != 0)
		return NULL;
	p[n] = '\0';
	*value = p + n + 3;
	(*value)[strcspn(*value, "\n")] = '\0';
	return p;
}

/* The table index of name, or of KEY for a secret's KEY_file; -1: none. */
static int
table_index(const char *name, bool *is_file)
{
	struct config_key_info k;
	size_t i, n = strlen(name);

	for (i = 0; config_key_at(i, &k); i++) {
		*is_file = false;
		if (strcmp(k.name, name) == 0)
			return (int)i;
		*is_file = true;
		if (k.secret && n == strlen(k.name) + 5 &&
		    strncmp(name, k.name, n - 5) == 0 &&
		    strcmp(name + n - 5, "_file") == 0)
			return (int)i;
	}
	return -1;
}

/*
 * config/finxd.conf.example against the table: every key of the table is
 * there as "# key = default" (an example where the default is empty or
 * none; a secret may show only its _file form), and every key it names is
 * in the table.
 */
static void
test_example(void)
{
	const char *path = getenv("CONF_EXAMPLE");
	FILE *f = path != NULL ? fopen(path, "r") : NULL;
	char *line = NULL, *name, *value, *shown[128] = { NULL };
	bool seen[128] = { false }, is_file;
	struct config_key_info k;
	size_t cap = 0, i;
	int at;

	CHECK(f != NULL, "example file readable (CONF_EXAMPLE=%s)",
	    path != NULL ? path : "(unset)");
	if (f == NULL)
		return;
	while (getline(&line, &cap, f) > 0) {
		if ((name = example_key(line, &value)) == NULL)
			continue;
		at = table_index(name, &is_file);
		CHECK(at >= 0 && at < 128, "example key %s is in the table",
		    name);
		if (at < 0 || at >= 128 || seen[at])
			continue;
		seen[at] = true;
		shown[at] = is_file ? NULL : xstrdup(value);
	}
	free(line);
	fclose(f);
	for (i = 0; config_key_at(i, &k) && i < 128; i++) {
		CHECK(seen[i], "key %s is in the example", k.name);
		if (seen[i] && k.def != NULL && *k.def != '\0')
			CHECK(shown[i] != NULL && strcmp(shown[i], k.def) == 0,
			    "the example shows %s = %s (the default)", k.name,
			    k.def);
		free(shown[i]);
	}
	CHECK(i > 0 && i < 128, "the table has %zu keys", i);
}

int
main(void)
{
	for (int i = 0; i < 32; i++) {
		k1_raw[i] = (unsigned char)(i * 7 + 1);
		k2_raw[i] = (unsigned char)(0xff - i * 3);
	}
	k1_b64 = b64_encode(k1_raw, 32);
	k2_b64 = b64_encode(k2_raw, 32);
	env_tk = xasprintf("FINXD_TOKEN_KEYS=k1:%s", k1_b64);

	test_defaults();
	test_required();
	test_listen_and_urls();
	test_values();
	test_token_keys();
	test_api_keys();
	test_file();
	test_print();
	test_return_urls();
	test_database_only();
	test_example();

	free(env_tk);
	free(k1_b64);
	free(k2_b64);
	return test_done();
}
