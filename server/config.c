/*
 * Configuration: one table of keys, read from the environment (FINXD_KEY or
 * FINXD_KEY_FILE for secrets), then the --config file (key = value), then
 * the default.  Every problem is collected so an operator sees all of them
 * at once; a server never starts half-configured.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "finx.h"
#include "log.h"
#include "util.h"

extern char **environ;

enum key_flags {
	K_SECRET = 1 << 0,   /* masked in output; also takes KEY_FILE */
	K_REQUIRED = 1 << 1,
};

struct key {
	const char *name; /* file key; env is FINXD_ + upper-case */
	const char *def;  /* NULL: no default */
	unsigned flags;
	const char *help;
};

/* The table: SPEC.md's keys first, then operational knobs. */
static const struct key keys[] = {
	{ "listen", "127.0.0.1:8080", 0, "address:port to listen on" },
	{ "ops_listen", "", 0,
	    "address:port of a second listener serving only /healthz, "
	    "/readyz and /metrics (empty: none)" },
	{ "public_url", "http://127.0.0.1:8080", 0,
	    "base URL browsers reach finxd at" },
	{ "database_url", "", K_SECRET, "libpq connection string or URI" },
	{ "database_direct_url", "", K_SECRET,
	    "direct (not pooled) PostgreSQL connection for sessions: LISTEN, "
	    "migrate (empty: database_url)" },
	{ "state_dir", "", 0,
	    "local directory for the rescue journal of rotated tokens not yet "
	    "stored (empty: rescue in memory only)" },
	{ "finx_url", "https://api.finx-s.qwist.cloud", 0,
	    "finX API base URL" },
	{ "finx_client_id", NULL, K_REQUIRED, "finX client id" },
	{ "finx_client_secret", NULL, K_SECRET | K_REQUIRED,
	    "finX client secret" },
	{ "finx_token_format", "json", 0, "json or form" },
	{ "api_keys", "", K_SECRET, "bearer keys for /v1" },
	{ "return_urls", "", 0, "allowed return_url prefixes" },
	{ "state_ttl", "1800", 0, "seconds a link state stays usable" },
	{ "token_keys", NULL, K_SECRET | K_REQUIRED,
	    "id:base64key pairs for token encryption" },
	{ "browser_binding", "off", 0, "off or required" },
	{ "log_level", "info", 0, "debug, info, warn, error" },
	{ "db_pool_size", "8", 0, "PostgreSQL connections per process" },
	{ "db_timeout_ms", "5000", 0, "wait for a pooled connection" },
	{ "max_connections", "1024", 0, "concurrent HTTP connections" },
	{ "max_connections_per_ip", "256", 0,
	    "concurrent HTTP connections per client address" },
	{ "http_timeout", "30", 0, "idle seconds before a client is dropped" },
	{ "finx_connect_timeout_ms", "5000", 0, "finX connect timeout" },
	{ "finx_timeout_ms", "30000", 0, "finX total timeout per call" },
	{ "refresh_margin", "300", 0,
	    "refresh access tokens this many seconds before expiry" },
	{ "refresh_keepalive", "604800", 0,
	    "refresh at least this often (seconds) to keep refresh tokens alive" },
	{ "refresh_interval", "5", 0, "seconds between refresher scans" },
	{ "refresh_concurrency", "8", 0, "parallel refreshes per process" },
	{ "sync_interval", "21600", 0, "seconds between unattended pulls" },
	{ "drain_timeout", "20", 0, "seconds to finish work on SIGTERM" },
	{ "read_cache", "on", 0,
	    "on or off: cache read API answers, invalidated via LISTEN" },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

struct raw {
	char *v[NKEYS];
	const char *src[NKEYS];
};

void
config_errors_add(struct config_errors *e, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	e->lines = xrealloc(e->lines, (e->n + 1) * sizeof(char *));
	e->lines[e->n++] = s;
}

void
config_errors_free(struct config_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->lines[i]);
	free(e->lines);
	e->lines = NULL;
	e->n = 0;
}

static char *
env_name(const char *key, const char *suffix)
{
	char *s = xasprintf("FINXD_%s%s", key, suffix), *p;

	for (p = s; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	return s;
}

static const char *
env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Read a secret file: whole content, trailing CR/LF dropped. */
static char *
read_secret_file(const char *path, struct config_errors *errs,
    const char *what)
{
	struct buf b;
	char chunk[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		config_errors_add(errs, "%s: cannot read %s: %s", what, path,
		    strerror(errno));
		return NULL;
	}
	buf_init(&b, 1024 * 1024);
	/* Stop at the limit: /dev/zero or a FIFO must not hang us. */
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (!buf_append(&b, chunk, n))
			break;
	OPENSSL_cleanse(chunk, sizeof(chunk));
	fclose(f);
	if (b.overflow) {
		config_errors_add(errs, "%s: %s is larger than 1 MiB", what,
		    path);
		buf_free_secret(&b);
		return NULL;
	}
	while (b.len > 0 && (b.data[b.len - 1] == '\n' ||
				b.data[b.len - 1] == '\r'))
		b.data[--b.len] = '\0';
	return buf_steal(&b);
}

static int
key_index(const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void
raw_set(struct raw *r, int i, char *v, const char *src)
{
	if (r->v[i] != NULL)
		free_secret(r->v[i]);
	r->v[i] = v;
	r->src[i] = src;
}

/* Parse the key = value file into the raw values it sets. */
static void
read_file(const char *path, struct raw *r, struct config_errors *errs)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *k, *v, *eq;
	size_t cap = 0;
	int lineno = 0, i;
	bool is_file;

	if (f == NULL) {
		config_errors_add(errs, "config file %s: %s", path,
		    strerror(errno));
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		k = trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		if ((eq = strchr(k, '=')) == NULL) {
			config_errors_add(errs, "%s:%d: expected key = value",
			    path, lineno);
			continue;
		}
		*eq = '\0';
		k = trim(k);
		v = trim(eq + 1);
		if (strlen(v) >= 2 && v[0] == '"' && v[strlen(v) - 1] == '"') {
			v[strlen(v) - 1] = '\0';
			v++;
		}
		is_file = false;
		i = key_index(k);
		if (i < 0 && strlen(k) > 5 &&
		    strcmp(k + strlen(k) - 5, "_file") == 0) {
			k[strlen(k) - 5] = '\0';
			i = key_index(k);
			is_file = true;
			if (i >= 0 && !(keys[i].flags & K_SECRET))
				i = -1;
		}
		if (i < 0) {
			config_errors_add(errs, "%s:%d: unknown key %s%s", path,
			    lineno, k, is_file ? "_file" : "");
			continue;
		}
		if (is_file) {
			char *s = read_secret_file(v, errs, keys[i].name);

			if (s != NULL)
				raw_set(r, i, s, "file");
		} else
			raw_set(r, i, xstrdup(v), "file");
	}
	if (line != NULL)
		OPENSSL_cleanse(line, cap);
	free(line);
	fclose(f);
}

/* Environment wins over the file; a secret may come from KEY_FILE. */
static void
read_env(char *const *envp, struct raw *r, struct config_errors *errs)
{
	size_t i;

	for (i = 0; i < NKEYS; i++) {
		char *n = env_name(keys[i].name, ""), *nf = NULL;
		const char *v = env_get(envp, n), *vf = NULL;

		if (keys[i].flags & K_SECRET) {
			nf = env_name(keys[i].name, "_FILE");
			vf = env_get(envp, nf);
		}
		if (v != NULL && vf != NULL)
			config_errors_add(errs, "set %s or %s, not both", n, nf);
		else if (v != NULL)
			raw_set(r, (int)i, xstrdup(v), "env");
		else if (vf != NULL) {
			char *s = read_secret_file(vf, errs, nf);

			if (s != NULL)
				raw_set(r, (int)i, s, "env");
		}
		free(n);
		free(nf);
	}
}

static bool
parse_listen(const char *v, char **host, int *port_out)
{
	const char *colon;
	long port;

	if (*v == '[') {
		const char *rb = strchr(v, ']');

		if (rb == NULL || rb[1] != ':')
			return false;
		*host = xstrndup(v + 1, (size_t)(rb - v - 1));
		colon = rb + 1;
	} else {
		colon = strrchr(v, ':');
		if (colon == NULL || colon == v)
			return false;
		*host = xstrndup(v, (size_t)(colon - v));
	}
	if (!parse_long(colon + 1, 1, 65535, &port))
		return false;
	*port_out = (int)port;
	return true;
}

/* An absolute http(s) URL with a host and nothing odd in it. */
static bool
url_plausible(const char *u)
{
	const char *host;
	size_t n = strlen(u);

	if (strncmp(u, "https://", 8) == 0)
		host = u + 8;
	else if (strncmp(u, "http://", 7) == 0)
		host = u + 7;
	else
		return false;
	if (*host == '\0' || *host == '/' || has_ctl(u, n) ||
	    strpbrk(u, " \\\"<>") != NULL || !utf8_valid(u, n))
		return false;
	return true;
}

/* Strip one trailing slash (and refuse a query or fragment). */
static char *
base_url(const char *v)
{
	size_t n = strlen(v);

	if (!url_plausible(v) || strpbrk(v, "?#") != NULL)
		return NULL;
	while (n > 0 && v[n - 1] == '/')
		n--;
	return xstrndup(v, n);
}

bool
config_parse_api_key(const char *entry, struct api_key *out,
    const char **why)
{
	const char *colon = strchr(entry, ':');
	size_t klen = colon ? (size_t)(colon - entry) : strlen(entry);
	char *hex;

	memset(out, 0, sizeof(*out));
	if (klen > 7 && strncmp(entry, "sha256=", 7) == 0) {
		size_t i;

		if (klen != 7 + 64) {
			*why = "sha256= needs 64 hex digits";
			return false;
		}
		for (i = 0; i < 32; i++) {
			char h[3] = { entry[7 + 2 * i], entry[8 + 2 * i], 0 };
			char *end;

			if (!isxdigit((unsigned char)h[0]) ||
			    !isxdigit((unsigned char)h[1])) {
				*why = "sha256= needs 64 hex digits";
				return false;
			}
			out->hash[i] = (unsigned char)strtoul(h, &end, 16);
		}
	} else {
		size_t i;

		if (klen < 16) {
			*why = "a key must be at least 16 characters";
			return false;
		}
		for (i = 0; i < klen; i++) {
			unsigned char c = (unsigned char)entry[i];

			if (c <= 0x20 || c >= 0x7f) {
				*why = "a key must be printable ASCII";
				return false;
			}
		}
		sha256(entry, klen, out->hash);
	}
	hex = hex_encode(out->hash, 8);
	memcpy(out->id, hex, 17);
	free(hex);
	if (colon == NULL) {
		out->scopes = SCOPE_ALL;
		return true;
	}
	for (const char *p = colon + 1; ;) {
		size_t n = strcspn(p, "+");

		if (n == 5 && strncmp(p, "links", 5) == 0)
			out->scopes |= SCOPE_LINKS;
		else if (n == 4 && strncmp(p, "read", 4) == 0)
			out->scopes |= SCOPE_READ;
		else if (n == 6 && strncmp(p, "tokens", 6) == 0)
			out->scopes |= SCOPE_TOKENS;
		else if (n == 5 && strncmp(p, "admin", 5) == 0)
			out->scopes |= SCOPE_ADMIN;
		else {
			*why = "unknown scope (links, read, tokens, admin)";
			return false;
		}
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	return true;
}

/* Split a comma-separated list into trimmed non-empty items. */
static char **
split_list(const char *v, size_t *n)
{
	char *copy = xstrdup(v), *save = NULL, *tok;
	char **out = NULL;

	*n = 0;
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *t = trim(tok);

		if (*t == '\0')
			continue;
		out = xrealloc(out, (*n + 1) * sizeof(char *));
		out[(*n)++] = xstrdup(t);
	}
	OPENSSL_cleanse(copy, strlen(v));
	free(copy);
	return out;
}

static void
free_list(char **l, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free_secret(l[i]);
	free(l);
}

static void
parse_api_keys(const char *v, struct config *cfg, struct config_errors *errs)
{
	size_t n, i;
	char **items = split_list(v, &n);
	const char *why;

	cfg->api_keys = xcalloc(n, sizeof(struct api_key));
	for (i = 0; i < n; i++) {
		if (config_parse_api_key(items[i], &cfg->api_keys[i], &why))
			cfg->n_api_keys++;
		else
			/* Never echo the entry: it is a secret. */
			config_errors_add(errs, "FINXD_API_KEYS: entry %zu: %s",
			    i + 1, why);
	}
	free_list(items, n);
}

static void
parse_token_keys(const char *v, struct config *cfg,
    struct config_errors *errs)
{
	size_t n, i, j;
	char **items = split_list(v, &n);

	if (n == 0)
		config_errors_add(errs, "FINXD_TOKEN_KEYS: at least one "
					"id:key pair is required");
	cfg->token_keys = xcalloc(n, sizeof(struct token_key));
	for (i = 0; i < n; i++) {
		char *colon = strchr(items[i], ':');
		unsigned char *raw = NULL;
		long len;
		size_t idlen;

		if (colon == NULL) {
			config_errors_add(errs, "FINXD_TOKEN_KEYS: entry %zu: "
						"expected id:base64key", i + 1);
			continue;
		}
		idlen = (size_t)(colon - items[i]);
		if (idlen == 0 || idlen > 32 ||
		    strspn(items[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
				     "OPQRSTUVWXYZ0123456789_-") != idlen) {
			config_errors_add(errs, "FINXD_TOKEN_KEYS: entry %zu: "
						"id must be 1-32 of [A-Za-z0-9_-]",
			    i + 1);
			continue;
		}
		len = b64_decode(colon + 1, &raw);
		if (len != 32) {
			config_errors_add(errs, "FINXD_TOKEN_KEYS: entry %zu: "
						"key must be 32 bytes in base64",
			    i + 1);
			if (raw != NULL) {
				OPENSSL_cleanse(raw, (size_t)(len > 0 ? len : 0));
				free(raw);
			}
			continue;
		}
		for (j = 0; j < cfg->n_token_keys; j++)
			if (strncmp(cfg->token_keys[j].id, items[i], idlen) == 0 &&
			    cfg->token_keys[j].id[idlen] == '\0')
				config_errors_add(errs, "FINXD_TOKEN_KEYS: "
							"duplicate id");
		cfg->token_keys[cfg->n_token_keys].id = xstrndup(items[i], idlen);
		memcpy(cfg->token_keys[cfg->n_token_keys].key, raw, 32);
		OPENSSL_cleanse(raw, 32);
		free(raw);
		cfg->n_token_keys++;
	}
	free_list(items, n);
}

static void
num(const struct raw *r, const char *name, long min, long max, long *out,
    struct config_errors *errs)
{
	int i = key_index(name);

	if (!parse_long(r->v[i], min, max, out)) {
		char *env = env_name(name, "");

		config_errors_add(errs, "%s: must be a whole number from %ld "
					"to %ld",
		    env, min, max);
		free(env);
	}
}

static const char *
val(const struct raw *r, const char *name)
{
	return r->v[key_index(name)];
}

/*
 * Turn raw strings into typed fields, collecting every problem.  Without
 * require, keys marked K_REQUIRED may be missing (database-only commands);
 * whatever is set is validated all the same.
 */
static void
validate(const struct raw *r, struct config *cfg, struct config_errors *errs,
    bool require)
{
	const char *v, *why;
	enum log_level lvl;
	size_t i;

	for (i = 0; i < NKEYS && require; i++) {
		if (r->v[i] == NULL && (keys[i].flags & K_REQUIRED)) {
			char *env = env_name(keys[i].name, "");

			config_errors_add(errs, "%s is required", env);
			free(env);
		}
	}
	if (!parse_listen(val(r, "listen"), &cfg->listen_host,
		&cfg->listen_port))
		config_errors_add(errs, "FINXD_LISTEN: expected host:port");
	v = val(r, "ops_listen");
	if (*v != '\0' &&
	    !parse_listen(v, &cfg->ops_listen_host, &cfg->ops_listen_port))
		config_errors_add(errs, "FINXD_OPS_LISTEN: expected host:port "
					"or empty");
	else if (*v != '\0' && cfg->ops_listen_port == cfg->listen_port &&
	    strcmp(cfg->ops_listen_host, cfg->listen_host) == 0)
		config_errors_add(errs, "FINXD_OPS_LISTEN: must differ from "
					"FINXD_LISTEN");
	if ((cfg->public_url = base_url(val(r, "public_url"))) == NULL)
		config_errors_add(errs, "FINXD_PUBLIC_URL: expected an http(s) "
					"URL without query");
	else {
		cfg->redirect_uri = xasprintf("%s/callback", cfg->public_url);
		cfg->public_https = strncmp(cfg->public_url, "https:", 6) == 0;
	}
	cfg->database_url = xstrdup(val(r, "database_url"));
	v = val(r, "database_direct_url");
	cfg->database_direct_url = xstrdup(*v != '\0' ? v : cfg->database_url);
	v = val(r, "state_dir");
	if (*v != '\0' && *v != '/')
		config_errors_add(errs, "FINXD_STATE_DIR: must be an absolute "
					"path");
	cfg->state_dir = *v != '\0' ? xstrdup(v) : NULL;
	v = val(r, "finx_url");
	if ((cfg->finx_url = base_url(v)) == NULL ||
	    !finx_url_allowed(cfg->finx_url, &why))
		config_errors_add(errs, "FINXD_FINX_URL: %s",
		    cfg->finx_url ? why : "expected an http(s) URL");
	if ((v = val(r, "finx_client_id")) != NULL) {
		if (*v == '\0' || has_ctl(v, strlen(v)) || strchr(v, ':'))
			config_errors_add(errs, "FINXD_FINX_CLIENT_ID: must be "
						"non-empty, without ':' or "
						"control characters");
		cfg->client_id = xstrdup(v);
	}
	if ((v = val(r, "finx_client_secret")) != NULL) {
		if (*v == '\0' || has_ctl(v, strlen(v)))
			config_errors_add(errs, "FINXD_FINX_CLIENT_SECRET: must be "
						"non-empty, without control "
						"characters");
		cfg->client_secret = xstrdup(v);
	}
	v = val(r, "finx_token_format");
	if (strcmp(v, "form") == 0)
		cfg->token_form = true;
	else if (strcmp(v, "json") != 0)
		config_errors_add(errs, "FINXD_FINX_TOKEN_FORMAT: json or form");
	parse_api_keys(val(r, "api_keys"), cfg, errs);
	cfg->return_urls = split_list(val(r, "return_urls"),
	    &cfg->n_return_urls);
	for (i = 0; i < cfg->n_return_urls; i++)
		if (!url_plausible(cfg->return_urls[i]) ||
		    strchr(cfg->return_urls[i], '#') != NULL)
			config_errors_add(errs, "FINXD_RETURN_URLS: entry %zu is "
						"not an http(s) URL prefix",
			    i + 1);
	num(r, "state_ttl", 1, 86400, &cfg->state_ttl, errs);
	if ((v = val(r, "token_keys")) != NULL)
		parse_token_keys(v, cfg, errs);
	v = val(r, "browser_binding");
	if (strcmp(v, "required") == 0)
		cfg->browser_binding = true;
	else if (strcmp(v, "off") != 0)
		config_errors_add(errs, "FINXD_BROWSER_BINDING: off or required");
	if (!log_parse_level(val(r, "log_level"), &lvl))
		config_errors_add(errs, "FINXD_LOG_LEVEL: debug, info, warn or "
					"error");
	cfg->log_level = (int)lvl;
	num(r, "db_pool_size", 1, 256, &cfg->db_pool_size, errs);
	num(r, "db_timeout_ms", 10, 600000, &cfg->db_timeout_ms, errs);
	num(r, "max_connections", 16, 65536, &cfg->max_connections, errs);
	num(r, "max_connections_per_ip", 1, 65536,
	    &cfg->max_connections_per_ip, errs);
	num(r, "http_timeout", 1, 3600, &cfg->http_timeout_s, errs);
	num(r, "finx_connect_timeout_ms", 10, 600000,
	    &cfg->finx_connect_timeout_ms, errs);
	num(r, "finx_timeout_ms", 10, 600000, &cfg->finx_timeout_ms, errs);
	num(r, "refresh_margin", 0, 86400, &cfg->refresh_margin_s, errs);
	num(r, "refresh_keepalive", 60, 60L * 86400, &cfg->refresh_keepalive_s,
	    errs);
	num(r, "refresh_interval", 1, 3600, &cfg->refresh_interval_s, errs);
	num(r, "refresh_concurrency", 1, 256, &cfg->refresh_concurrency, errs);
	num(r, "sync_interval", 60, 30L * 86400, &cfg->sync_interval_s, errs);
	num(r, "drain_timeout", 0, 3600, &cfg->drain_timeout_s, errs);
	v = val(r, "read_cache");
	if (strcmp(v, "on") == 0)
		cfg->read_cache = true;
	else if (strcmp(v, "off") != 0)
		config_errors_add(errs, "FINXD_READ_CACHE: on or off");
	if (cfg->finx_connect_timeout_ms > cfg->finx_timeout_ms)
		config_errors_add(errs, "FINXD_FINX_CONNECT_TIMEOUT_MS must not "
					"exceed FINXD_FINX_TIMEOUT_MS");
}

static bool
load(struct config *cfg, const char *file, char *const *envp,
    struct config_errors *errs, bool require)
{
	struct raw r;
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	memset(&r, 0, sizeof(r));
	if (file != NULL)
		read_file(file, &r, errs);
	read_env(envp ? envp : environ, &r, errs);
	for (i = 0; i < NKEYS; i++)
		if (r.v[i] == NULL && keys[i].def != NULL)
			raw_set(&r, (int)i, xstrdup(keys[i].def), "default");
	validate(&r, cfg, errs, require);
	for (i = 0; i < NKEYS; i++)
		free_secret(r.v[i]);
	return errs->n == 0;
}

bool
config_load(struct config *cfg, const char *file, char *const *envp,
    struct config_errors *errs)
{
	return load(cfg, file, envp, errs, true);
}

bool
config_load_database(struct config *cfg, const char *file, char *const *envp,
    struct config_errors *errs)
{
	return load(cfg, file, envp, errs, false);
}

void
config_free(struct config *cfg)
{
	size_t i;

	free(cfg->listen_host);
	free(cfg->ops_listen_host);
	free(cfg->public_url);
	free(cfg->redirect_uri);
	free_secret(cfg->database_url);
	free_secret(cfg->database_direct_url);
	free(cfg->state_dir);
	free(cfg->finx_url);
	free(cfg->client_id);
	free_secret(cfg->client_secret);
	if (cfg->api_keys != NULL)
		OPENSSL_cleanse(cfg->api_keys,
		    cfg->n_api_keys * sizeof(struct api_key));
	free(cfg->api_keys);
	free_list(cfg->return_urls, cfg->n_return_urls);
	for (i = 0; i < cfg->n_token_keys; i++) {
		free(cfg->token_keys[i].id);
		OPENSSL_cleanse(cfg->token_keys[i].key, 32);
	}
	free(cfg->token_keys);
	memset(cfg, 0, sizeof(*cfg));
}

/*
 * The database URL as libpq reads it, with the password replaced by ***.
 * Parsing with libpq itself means no quoting or URI trick can make us
 * print a password we failed to recognise.
 */
static char *
mask_dsn(const char *dsn)
{
	PQconninfoOption *opts, *o;
	struct buf b;
	char *err = NULL;

	if (*dsn == '\0')
		return xstrdup("(libpq defaults)");
	if ((opts = PQconninfoParse(dsn, &err)) == NULL) {
		PQfreemem(err);
		return xstrdup("(not a valid libpq connection string)");
	}
	buf_init(&b, 64 * 1024);
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		buf_appendf(&b, "%s%s=", b.len ? " " : "", o->keyword);
		/* libpq marks every secret option ('*'): password, sslpassword. */
		if (o->dispchar != NULL && o->dispchar[0] == '*')
			buf_append_str(&b, "***");
		else if (*o->val && strcspn(o->val, " \t\n'\\") ==
		    strlen(o->val))
			buf_append_str(&b, o->val);
		else {
			const char *v;

			buf_append(&b, "'", 1);
			for (v = o->val; *v; v++) {
				if (*v == '\'' || *v == '\\')
					buf_append(&b, "\\", 1);
				buf_append(&b, v, 1);
			}
			buf_append(&b, "'", 1);
		}
	}
	PQconninfoFree(opts);
	return buf_steal(&b);
}

void
config_print(const struct config *cfg, FILE *out)
{
	static const char *const scope_names[] = { "links", "read", "tokens",
		"admin" };
	char *dsn = mask_dsn(cfg->database_url ? cfg->database_url : "");
	size_t i;
	int s;

	fprintf(out, "listen = %s:%d\n", cfg->listen_host, cfg->listen_port);
	if (cfg->ops_listen_host != NULL)
		fprintf(out, "ops_listen = %s:%d\n", cfg->ops_listen_host,
		    cfg->ops_listen_port);
	else
		fprintf(out, "ops_listen = (none)\n");
	fprintf(out, "public_url = %s\n", cfg->public_url);
	fprintf(out, "redirect_uri = %s\n", cfg->redirect_uri);
	fprintf(out, "database_url = %s\n", dsn);
	free(dsn);
	dsn = mask_dsn(cfg->database_direct_url ? cfg->database_direct_url : "");
	fprintf(out, "database_direct_url = %s\n", dsn);
	fprintf(out, "state_dir = %s\n",
	    cfg->state_dir ? cfg->state_dir : "(none: rescue in memory only)");
	fprintf(out, "finx_url = %s\n", cfg->finx_url);
	fprintf(out, "finx_client_id = %s\n", cfg->client_id);
	fprintf(out, "finx_client_secret = %s\n",
	    cfg->client_secret ? "(set, masked)" : "(unset)");
	fprintf(out, "finx_token_format = %s\n",
	    cfg->token_form ? "form" : "json");
	fprintf(out, "api_keys = %zu key(s)\n", cfg->n_api_keys);
	for (i = 0; i < cfg->n_api_keys; i++) {
		fprintf(out, "  key %s scopes:", cfg->api_keys[i].id);
		for (s = 0; s < 4; s++)
			if (cfg->api_keys[i].scopes & (1u << s))
				fprintf(out, " %s", scope_names[s]);
		fputc('\n', out);
	}
	fprintf(out, "return_urls =");
	for (i = 0; i < cfg->n_return_urls; i++)
		fprintf(out, "%s %s", i ? "," : "", cfg->return_urls[i]);
	fputc('\n', out);
	fprintf(out, "state_ttl = %ld\n", cfg->state_ttl);
	fprintf(out, "token_keys =");
	for (i = 0; i < cfg->n_token_keys; i++)
		fprintf(out, "%s %s:(masked)", i ? "," : "",
		    cfg->token_keys[i].id);
	fputc('\n', out);
	fprintf(out, "browser_binding = %s\n",
	    cfg->browser_binding ? "required" : "off");
	fprintf(out, "log_level = %s\n",
	    (const char *[]){ "debug", "info", "warn", "error" }[cfg->log_level]);
	fprintf(out, "db_pool_size = %ld\n", cfg->db_pool_size);
	fprintf(out, "db_timeout_ms = %ld\n", cfg->db_timeout_ms);
	fprintf(out, "max_connections = %ld\n", cfg->max_connections);
	fprintf(out, "max_connections_per_ip = %ld\n",
	    cfg->max_connections_per_ip);
	fprintf(out, "http_timeout = %ld\n", cfg->http_timeout_s);
	fprintf(out, "finx_connect_timeout_ms = %ld\n",
	    cfg->finx_connect_timeout_ms);
	fprintf(out, "finx_timeout_ms = %ld\n", cfg->finx_timeout_ms);
	fprintf(out, "refresh_margin = %ld\n", cfg->refresh_margin_s);
	fprintf(out, "refresh_keepalive = %ld\n", cfg->refresh_keepalive_s);
	fprintf(out, "refresh_interval = %ld\n", cfg->refresh_interval_s);
	fprintf(out, "refresh_concurrency = %ld\n", cfg->refresh_concurrency);
	fprintf(out, "sync_interval = %ld\n", cfg->sync_interval_s);
	fprintf(out, "drain_timeout = %ld\n", cfg->drain_timeout_s);
	fprintf(out, "read_cache = %s\n", cfg->read_cache ? "on" : "off");
	free(dsn);
}

bool
config_return_url_allowed(const struct config *cfg, const char *url)
{
	size_t i, n = strlen(url);
	const char *auth, *end;

	if (!url_plausible(url))
		return false;
	/* No userinfo: "https://partner.example@evil" must not pass. */
	auth = strstr(url, "://") + 3;
	end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
		return false;
	for (i = 0; i < cfg->n_return_urls; i++) {
		const char *p = cfg->return_urls[i];
		size_t pn = strlen(p);
		char next;

		if (n < pn || strncmp(url, p, pn) != 0)
			continue;
		/* Match on a boundary: a prefix ".../return" must not let
		 * ".../returnevil" or "host.evil" through. */
		next = url[pn];
		if (p[pn - 1] == '/' || p[pn - 1] == '?' || p[pn - 1] == '&' ||
		    next == '\0' || next == '/' || next == '?' || next == '#')
			return true;
	}
	return false;
}
