/*
 * Configuration: one typed table of keys, read from the environment
 * (FINXD_KEY or FINXD_KEY_FILE for secrets), then the --config file
 * (key = value), then the default.  Conversion, check-config's printout
 * and the example file's test all come from the table.  Every problem is
 * collected so an operator sees all of them at once; a server never starts
 * half-configured.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "buf.h"
#include "encode.h"
#include "finx_url.h"
#include "log.h"
#include "mem.h"
#include "netaddr.h"
#include "secret.h"
#include "text.h"

extern char **environ;

/*
 * How a key's text becomes a field of struct config.  Each type has a
 * conversion (with its error text) and a printout; a row may replace
 * either with a function of its own for the odd keys.
 */
enum key_type {
	T_STR,    /* char *, as given */
	T_CRED,   /* char *: non-empty, no control character, none of .reject */
	T_DSN,    /* char *: a libpq string, printed as libpq parses it */
	T_URL,    /* char *: an http(s) base URL, trailing slashes dropped */
	T_LISTEN, /* host:port: char * at .off, int at .off_port */
	T_LONG,   /* long from .min to .max */
	T_BOOL,   /* bool: .words[0] means false, .words[1] true */
	T_ENUM,   /* int: the index of the word in .words */
	T_CUSTOM, /* .parse and .print do it all, into fields of their own */
};

enum key_flags {
	K_SECRET = 1 << 0,     /* masked in output; also takes KEY_FILE */
	K_REQUIRED = 1 << 1,   /* no default: must be set (but for migrate) */
	K_EMPTY_NONE = 1 << 2, /* empty: the field stays NULL, shown .none */
};

struct key;
/* Convert v (never NULL) into cfg; env names the key in error texts. */
typedef void parse_fn(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs);
/* Print the key's line(s), "name = value", secrets masked. */
typedef void print_fn(const struct key *k, const struct config *cfg,
    FILE *out);

struct key {
	const char *name; /* file key; env is FINXD_ + upper-case */
	enum key_type type;
	size_t off;      /* offsetof the field in struct config */
	size_t off_port; /* T_LISTEN: offsetof the port */
	const char *def; /* NULL: no default */
	long min, max;   /* T_LONG */
	const char *const *words; /* T_BOOL, T_ENUM; NULL-terminated */
	const char *reject; /* T_CRED: characters refused besides controls */
	const char *none;   /* shown for a NULL field; NULL: "(unset)" */
	unsigned flags;
	parse_fn *parse; /* instead of the type's conversion */
	print_fn *print; /* instead of the type's printout */
	const char *help;
};

static parse_fn conv_str, conv_cred, conv_url, conv_listen, conv_long,
    conv_bool, conv_enum;
static parse_fn parse_finx_url, parse_api_keys, parse_return_urls,
    parse_token_keys, parse_trusted_proxies, parse_webhook_secrets,
    parse_webhook_events;
static print_fn print_str, print_dsn, print_listen, print_long, print_bool,
    print_enum;
static print_fn print_public_url, print_api_keys, print_return_urls,
    print_token_keys, print_trusted_proxies, print_webhook_secrets,
    print_webhook_events;

/* Each type's conversion and printout, and whether it owns a string. */
static const struct {
	parse_fn *parse;
	print_fn *print;
	bool string;
} types[] = {
	[T_STR] = { conv_str, print_str, true },
	[T_CRED] = { conv_cred, print_str, true },
	[T_DSN] = { conv_str, print_dsn, true },
	[T_URL] = { conv_url, print_str, true },
	[T_LISTEN] = { conv_listen, print_listen, true },
	[T_LONG] = { conv_long, print_long, false },
	[T_BOOL] = { conv_bool, print_bool, false },
	[T_ENUM] = { conv_enum, print_enum, false },
	[T_CUSTOM] = { NULL, NULL, false },
};

/* log_level stores the index of its word: the words follow the enum. */
_Static_assert(LOG_DEBUG == 0 && LOG_INFO == 1 && LOG_WARN == 2 &&
	LOG_ERROR == 3, "log_level words follow enum log_level");

/*
 * Where a key is stored: offsetof the field, which must have type T (a
 * field of another type stops the build: _Generic finds no match).
 */
#define AT(f, T)                                                              \
	(offsetof(struct config, f) +                                          \
	    0 * sizeof(_Generic(((struct config *)0)->f, T : 1)))
#define WORDS(...) ((const char *const[]){ __VA_ARGS__, NULL })
/* A whole number from lo to hi. */
#define NUM(n, f, d, lo, hi, h)                                               \
	{ .name = n, .type = T_LONG, .off = AT(f, long), .def = d,            \
		.min = lo, .max = hi, .help = h }

/*
 * The table: SPEC.md's keys first, then operational knobs.  Its order is
 * the order of check-config's lines and of the errors.
 */
static const struct key keys[] = {
	{ .name = "listen", .type = T_LISTEN, .off = AT(listen_host, char *),
	    .off_port = AT(listen_port, int), .def = "127.0.0.1:8080",
	    .help = "address:port to listen on" },
	{ .name = "ops_listen", .type = T_LISTEN,
	    .off = AT(ops_listen_host, char *),
	    .off_port = AT(ops_listen_port, int), .def = "",
	    .flags = K_EMPTY_NONE, .none = "(none)",
	    .help = "address:port of a second listener serving only "
		    "/healthz, /readyz and /metrics, which the public one "
		    "then answers 404 (empty: none)" },
	{ .name = "public_url", .type = T_URL, .off = AT(public_url, char *),
	    .def = "http://127.0.0.1:8080", .print = print_public_url,
	    .help = "base URL browsers reach finxd at" },
	{ .name = "database_url", .type = T_DSN,
	    .off = AT(database_url, char *), .def = "", .flags = K_SECRET,
	    .help = "libpq connection string or URI" },
	{ .name = "database_direct_url", .type = T_DSN,
	    .off = AT(database_direct_url, char *), .def = "",
	    .flags = K_SECRET | K_EMPTY_NONE,
	    .help = "direct (not pooled) PostgreSQL connection for sessions: "
		    "LISTEN, migrate (empty: database_url)" },
	{ .name = "state_dir", .type = T_STR, .off = AT(state_dir, char *),
	    .def = "", .flags = K_EMPTY_NONE,
	    .none = "(none: rescue in memory only)",
	    .help = "local directory for the rescue journal of rotated tokens "
		    "not yet stored (empty: rescue in memory only)" },
	{ .name = "finx_url", .type = T_URL, .off = AT(finx_url, char *),
	    .def = "https://api.finx-s.qwist.cloud", .parse = parse_finx_url,
	    .help = "finX API base URL" },
	{ .name = "finx_client_id", .type = T_CRED,
	    .off = AT(client_id, char *), .reject = ":", .flags = K_REQUIRED,
	    .help = "finX client id" },
	{ .name = "finx_client_secret", .type = T_CRED,
	    .off = AT(client_secret, char *), .flags = K_SECRET | K_REQUIRED,
	    .help = "finX client secret" },
	{ .name = "finx_token_format", .type = T_BOOL,
	    .off = AT(token_form, bool), .def = "json",
	    .words = WORDS("json", "form"), .help = "json or form" },
	{ .name = "api_keys", .type = T_CUSTOM, .def = "", .flags = K_SECRET,
	    .parse = parse_api_keys, .print = print_api_keys,
	    .help = "bearer keys for /v1" },
	{ .name = "return_urls", .type = T_CUSTOM, .def = "",
	    .parse = parse_return_urls, .print = print_return_urls,
	    .help = "allowed return_url prefixes" },
	NUM("state_ttl", state_ttl, "1800", 1, 86400,
	    "seconds a link state stays usable"),
	{ .name = "token_keys", .type = T_CUSTOM,
	    .flags = K_SECRET | K_REQUIRED, .parse = parse_token_keys,
	    .print = print_token_keys,
	    .help = "id:base64key pairs for token encryption" },
	{ .name = "allow_plaintext_tokens", .type = T_ENUM,
	    .off = AT(allow_plaintext, int), .def = "auto",
	    .words = WORDS("auto", "on", "off"),
	    .help = "read stored tokens that are not sealed (rows of a "
		    "version before encryption): auto (until finxd rekey "
		    "has sealed every row), on or off" },
	{ .name = "webhook_url", .type = T_STR, .off = AT(webhook_url, char *),
	    .def = "", .flags = K_EMPTY_NONE | K_SECRET,
	    .none = "(none: events are only recorded)",
	    .help = "where events are POSTed (empty: none); a secret, as "
		    "receivers often carry a token in the URL" },
	{ .name = "webhook_secret", .type = T_CUSTOM, .def = "",
	    .flags = K_SECRET, .parse = parse_webhook_secrets,
	    .print = print_webhook_secrets,
	    .help = "comma-separated whsec_<base64> signing secrets, each "
		    "signing every delivery (required with webhook_url)" },
	{ .name = "webhook_events", .type = T_CUSTOM, .def = "",
	    .parse = parse_webhook_events, .print = print_webhook_events,
	    .help = "comma-separated event types to deliver (empty: all)" },
	NUM("webhook_timeout", webhook_timeout_s, "10", 1, 300,
	    "seconds per webhook delivery attempt"),
	NUM("expiry_notice", expiry_notice_s, "604800", 60, 90L * 86400,
	    "seconds before a refresh token or consent runs out that "
	    "connection.expiring is sent"),
	NUM("event_retention", event_retention_s, "2592000", 259200,
	    3650L * 86400, "seconds events are kept"),
	{ .name = "finx_notifications", .type = T_BOOL,
	    .off = AT(finx_notifications, bool), .def = "on",
	    .words = WORDS("off", "on"),
	    .help = "on or off: register finX notifications and pull when "
		    "they arrive" },
	{ .name = "browser_binding", .type = T_BOOL,
	    .off = AT(browser_binding, bool), .def = "off",
	    .words = WORDS("off", "required"), .help = "off or required" },
	{ .name = "log_level", .type = T_ENUM, .off = AT(log_level, int),
	    .def = "info", .words = WORDS("debug", "info", "warn", "error"),
	    .help = "debug, info, warn, error" },
	NUM("db_pool_size", db_pool_size, "8", 1, 256,
	    "PostgreSQL connections per process"),
	NUM("db_timeout_ms", db_timeout_ms, "5000", 10, 600000,
	    "wait for a pooled connection"),
	{ .name = "db_prepared", .type = T_BOOL, .off = AT(db_prepared, bool),
	    .def = "on", .words = WORDS("off", "on"),
	    .help = "on or off: prepare every statement when a connection "
		    "opens (off for PgBouncer transaction pooling)" },
	NUM("http_header_timeout", http_header_timeout_s, "10", 1, 3600,
	    "seconds a connection has to deliver a request's headers"),
	NUM("http_body_timeout", http_body_timeout_s, "30", 1, 3600,
	    "seconds a request has to deliver its body (and to take its "
	    "answer)"),
	NUM("http_idle_timeout", http_idle_timeout_s, "30", 1, 3600,
	    "seconds a keep-alive connection may sit idle"),
	NUM("http_max_connections", http_max_connections, "8192", 16, 1000000,
	    "HTTP connections held at once (each costs a file descriptor "
	    "and up to 16 KiB)"),
	NUM("http_max_per_address", http_max_per_address, "256", 1, 1000000,
	    "HTTP connections from one client address at once (trusted "
	    "proxies exempt)"),
	{ .name = "trusted_proxies", .type = T_CUSTOM, .def = "",
	    .parse = parse_trusted_proxies, .print = print_trusted_proxies,
	    .help = "addresses or CIDRs of reverse proxies: exempt from the "
		    "per-address cap; their X-Forwarded-For names the client "
		    "in logs" },
	NUM("finx_connect_timeout_ms", finx_connect_timeout_ms, "5000", 10,
	    600000, "finX connect timeout"),
	NUM("finx_timeout_ms", finx_timeout_ms, "30000", 10, 600000,
	    "finX total timeout per call"),
	NUM("refresh_margin", refresh_margin_s, "300", 0, 86400,
	    "refresh access tokens this many seconds before expiry"),
	NUM("refresh_keepalive", refresh_keepalive_s, "604800", 60,
	    60L * 86400,
	    "refresh at least this often (seconds) to keep refresh tokens "
	    "alive"),
	NUM("refresh_interval", refresh_interval_s, "5", 1, 3600,
	    "seconds between refresher scans"),
	NUM("refresh_concurrency", refresh_concurrency, "8", 1, 256,
	    "parallel refreshes per process"),
	NUM("sync_interval", sync_interval_s, "21600", 60, 30L * 86400,
	    "seconds between unattended pulls"),
	NUM("drain_timeout", drain_timeout_s, "20", 0, 3600,
	    "seconds to finish work on SIGTERM"),
	{ .name = "read_cache", .type = T_BOOL, .off = AT(read_cache, bool),
	    .def = "on", .words = WORDS("off", "on"),
	    .help = "on or off: cache read API answers, invalidated via "
		    "LISTEN" },
	NUM("webhook_concurrency", webhook_concurrency, "4", 1, 64,
	    "webhook deliveries in flight per process"),
	NUM("notify_min_interval", notify_min_interval_s, "900", 0, 86400,
	    "seconds a finX notification waits after a connection's last "
	    "pull before it pulls again"),
};

const char *const event_types[] = {
	"link.completed",
	"connection.reauth_required",
	"connection.refresh_failing",
	"connection.recovered",
	"connection.expiring",
	"connection.revoked",
	"sync.completed",
	"sync.failed",
	"transactions.updated",
	NULL,
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

struct raw {
	char *v[NKEYS];
	const char *src[NKEYS];
};

/* The API key scopes by name, for parsing and printing. */
static const struct {
	const char *name;
	unsigned bit;
} scopes[] = {
	{ "links", SCOPE_LINKS },
	{ "read", SCOPE_READ },
	{ "tokens", SCOPE_TOKENS },
	{ "admin", SCOPE_ADMIN },
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

/*
 * The key a file line names: a key of the table, or KEY_file of a secret
 * (*is_file set, k cut to KEY).  -1 when there is none.
 */
static int
file_key_index(char *k, bool *is_file)
{
	size_t n = strlen(k);
	int i = key_index(k);

	*is_file = false;
	if (i >= 0 || n <= 5 || strcmp(k + n - 5, "_file") != 0)
		return i;
	k[n - 5] = '\0';
	*is_file = true;
	i = key_index(k);
	return i >= 0 && (keys[i].flags & K_SECRET) ? i : -1;
}

/* One line of the file (trimmed, not a comment) into the raw values. */
static void
read_line(char *k, const char *path, int lineno, struct raw *r,
    struct config_errors *errs)
{
	char *v, *eq, *s;
	bool is_file;
	int i;

	if ((eq = strchr(k, '=')) == NULL) {
		config_errors_add(errs, "%s:%d: expected key = value", path,
		    lineno);
		return;
	}
	*eq = '\0';
	k = text_trim(k);
	v = text_trim(eq + 1);
	if (strlen(v) >= 2 && v[0] == '"' && v[strlen(v) - 1] == '"') {
		v[strlen(v) - 1] = '\0';
		v++;
	}
	if ((i = file_key_index(k, &is_file)) < 0)
		config_errors_add(errs, "%s:%d: unknown key %s%s", path, lineno,
		    k, is_file ? "_file" : "");
	else if (!is_file)
		raw_set(r, i, xstrdup(v), "file");
	else if ((s = read_secret_file(v, errs, keys[i].name)) != NULL)
		raw_set(r, i, s, "file");
}

/* Parse the key = value file into the raw values it sets. */
static void
read_file(const char *path, struct raw *r, struct config_errors *errs)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *k;
	size_t cap = 0;
	int lineno = 0;

	if (f == NULL) {
		config_errors_add(errs, "config file %s: %s", path,
		    strerror(errno));
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		k = text_trim(line);
		if (*k != '\0' && *k != '#')
			read_line(k, path, lineno, r, errs);
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

/* host:port or [v6]:port; on false *host is left NULL. */
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
	if (!parse_long(colon + 1, 1, 65535, &port)) {
		free(*host);
		*host = NULL;
		return false;
	}
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

/* "scope+scope..." into *out; false on an unknown or empty scope. */
static bool
parse_scopes(const char *p, unsigned *out)
{
	size_t n, i;

	for (;;) {
		n = strcspn(p, "+");
		for (i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++)
			if (strlen(scopes[i].name) == n &&
			    strncmp(p, scopes[i].name, n) == 0)
				break;
		if (i == sizeof(scopes) / sizeof(scopes[0]))
			return false;
		*out |= scopes[i].bit;
		if (p[n] == '\0')
			return true;
		p += n + 1;
	}
}

/* The hash of a key entry: "sha256=HEX" as given, else SHA-256 of it. */
static bool
api_key_hash(const char *entry, size_t klen, unsigned char hash[32],
    const char **why)
{
	size_t i;

	if (klen > 7 && strncmp(entry, "sha256=", 7) == 0) {
		if (klen != 7 + 64) {
			*why = "sha256= needs 64 hex digits";
			return false;
		}
		for (i = 0; i < 32; i++) {
			char h[3] = { entry[7 + 2 * i], entry[8 + 2 * i], 0 };

			if (!isxdigit((unsigned char)h[0]) ||
			    !isxdigit((unsigned char)h[1])) {
				*why = "sha256= needs 64 hex digits";
				return false;
			}
			hash[i] = (unsigned char)strtoul(h, NULL, 16);
		}
		return true;
	}
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
	sha256(entry, klen, hash);
	return true;
}

bool
config_parse_api_key(const char *entry, struct api_key *out,
    const char **why)
{
	const char *colon = strchr(entry, ':');
	size_t klen = colon ? (size_t)(colon - entry) : strlen(entry);
	char *hex;

	memset(out, 0, sizeof(*out));
	if (!api_key_hash(entry, klen, out->hash, why))
		return false;
	hex = hex_encode(out->hash, 8);
	memcpy(out->id, hex, 17);
	free(hex);
	if (colon == NULL) {
		out->scopes = SCOPE_ALL;
		return true;
	}
	if (!parse_scopes(colon + 1, &out->scopes)) {
		*why = "unknown scope (links, read, tokens, admin)";
		return false;
	}
	return true;
}

static void *
field(struct config *cfg, size_t off)
{
	return (char *)cfg + off;
}

static const void *
cfield(const struct config *cfg, size_t off)
{
	return (const char *)cfg + off;
}

static void
conv_str(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	*(char **)field(cfg, k->off) = xstrdup(v);
}

/* Credentials go into an HTTP Basic header: no control characters. */
static void
conv_cred(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	const char *r = k->reject != NULL ? k->reject : "";

	/* The value is never echoed: it may be a secret. */
	if (*v == '\0' || has_ctl(v, strlen(v)) || strpbrk(v, r) != NULL)
		config_errors_add(errs, "%s: must be non-empty, without %s%s%s"
					"control characters",
		    env, *r ? "'" : "", r, *r ? "' or " : "");
	conv_str(k, v, env, cfg, errs);
}

static void
conv_url(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	char **f = field(cfg, k->off);

	if ((*f = base_url(v)) == NULL)
		config_errors_add(errs, "%s: expected an http(s) URL without "
					"query",
		    env);
}

static void
conv_listen(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	if (!parse_listen(v, field(cfg, k->off), field(cfg, k->off_port)))
		config_errors_add(errs, "%s: expected host:port%s", env,
		    (k->flags & K_EMPTY_NONE) ? " or empty" : "");
}

static void
conv_long(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	if (!parse_long(v, k->min, k->max, field(cfg, k->off)))
		config_errors_add(errs, "%s: must be a whole number from %ld "
					"to %ld",
		    env, k->min, k->max);
}

static int
word_index(const char *const *words, const char *v)
{
	int i;

	for (i = 0; words[i] != NULL; i++)
		if (strcmp(words[i], v) == 0)
			return i;
	return -1;
}

/* The error names the default first: "json or form", "on or off". */
static void
conv_bool(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	int i = word_index(k->words, v), d = word_index(k->words, k->def);

	if (i < 0)
		config_errors_add(errs, "%s: %s or %s", env, k->words[d],
		    k->words[!d]);
	else
		*(bool *)field(cfg, k->off) = i == 1;
}

/* The error lists the words in order: "debug, info, warn or error". */
static void
conv_enum(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	int i = word_index(k->words, v);
	struct buf b;

	if (i >= 0) {
		*(int *)field(cfg, k->off) = i;
		return;
	}
	buf_init(&b, 1024);
	for (i = 0; k->words[i] != NULL; i++)
		buf_appendf(&b, "%s%s",
		    i == 0 ? "" : k->words[i + 1] != NULL ? ", " : " or ",
		    k->words[i]);
	config_errors_add(errs, "%s: %s", env, b.data);
	buf_free(&b);
}

/* finx_url: a base URL finx.c accepts (plain http only to loopback). */
static void
parse_finx_url(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	const char *why;

	if ((cfg->finx_url = base_url(v)) == NULL)
		config_errors_add(errs, "%s: expected an http(s) URL", env);
	else if (!finx_url_allowed(cfg->finx_url, &why))
		config_errors_add(errs, "%s: %s", env, why);
}

static void
parse_api_keys(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	size_t n, i;
	char **items = text_split_list(v, &n);
	const char *why;

	cfg->api_keys = xcalloc(n, sizeof(struct api_key));
	for (i = 0; i < n; i++) {
		if (config_parse_api_key(items[i], &cfg->api_keys[i], &why))
			cfg->n_api_keys++;
		else
			/* Never echo the entry: it is a secret. */
			config_errors_add(errs, "%s: entry %zu: %s", env,
			    i + 1, why);
	}
	text_free_list(items, n);
}

static void
parse_return_urls(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	size_t i;

	cfg->return_urls = text_split_list(v, &cfg->n_return_urls);
	for (i = 0; i < cfg->n_return_urls; i++)
		if (!url_plausible(cfg->return_urls[i]) ||
		    strchr(cfg->return_urls[i], '#') != NULL)
			config_errors_add(errs, "%s: entry %zu is not an "
						"http(s) URL prefix",
			    env, i + 1);
}

/*
 * One "id:base64key" entry (number i, from 1) appended to cfg->token_keys,
 * which has room; the key is never echoed.
 */
static void
token_key_add(struct config *cfg, const char *item, size_t i,
    const char *env, struct config_errors *errs)
{
	const char *colon = strchr(item, ':');
	unsigned char *raw = NULL;
	struct token_key *tk;
	size_t idlen, j;
	long len;

	if (colon == NULL) {
		config_errors_add(errs, "%s: entry %zu: expected id:base64key",
		    env, i);
		return;
	}
	idlen = (size_t)(colon - item);
	if (idlen == 0 || idlen > 32 ||
	    strspn(item, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
			 "OPQRSTUVWXYZ0123456789_-") != idlen) {
		config_errors_add(errs, "%s: entry %zu: id must be 1-32 of "
					"[A-Za-z0-9_-]",
		    env, i);
		return;
	}
	if ((len = b64_decode(colon + 1, &raw)) != 32) {
		config_errors_add(errs, "%s: entry %zu: key must be 32 bytes "
					"in base64",
		    env, i);
		if (raw != NULL)
			OPENSSL_cleanse(raw, (size_t)(len > 0 ? len : 0));
		free(raw);
		return;
	}
	for (j = 0; j < cfg->n_token_keys; j++)
		if (strncmp(cfg->token_keys[j].id, item, idlen) == 0 &&
		    cfg->token_keys[j].id[idlen] == '\0')
			config_errors_add(errs, "%s: duplicate id", env);
	tk = &cfg->token_keys[cfg->n_token_keys++];
	tk->id = xstrndup(item, idlen);
	memcpy(tk->key, raw, 32);
	OPENSSL_cleanse(raw, 32);
	free(raw);
}

static void
parse_token_keys(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	size_t n, i;
	char **items = text_split_list(v, &n);

	if (n == 0)
		config_errors_add(errs, "%s: at least one id:key pair is "
					"required",
		    env);
	cfg->token_keys = xcalloc(n, sizeof(struct token_key));
	for (i = 0; i < n; i++)
		token_key_add(cfg, items[i], i + 1, env, errs);
	text_free_list(items, n);
}

static void
parse_trusted_proxies(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	size_t n, i;
	char **items = text_split_list(v, &n);

	cfg->trusted_proxies = xcalloc(n ? n : 1, sizeof(struct netaddr));
	for (i = 0; i < n; i++)
		if (!netaddr_parse(items[i],
			&cfg->trusted_proxies[cfg->n_trusted_proxies++]))
			config_errors_add(errs, "%s: entry %zu is not an "
						"address or CIDR",
			    env, i + 1);
	text_free_list(items, n);
}

/* webhook_secret: whsec_<base64> entries of 24 to 64 bytes, never echoed. */
static void
parse_webhook_secrets(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	size_t n, i;
	char **items = text_split_list(v, &n);

	cfg->webhook_secrets = xcalloc(n ? n : 1, sizeof(struct webhook_secret));
	for (i = 0; i < n; i++) {
		unsigned char *raw = NULL;
		long len = -1;

		if (strncmp(items[i], "whsec_", 6) == 0)
			len = b64_decode(items[i] + 6, &raw);
		if (len < 24 || len > 64) {
			config_errors_add(errs, "%s: entry %zu: expected "
						"whsec_ and 24 to 64 bytes in "
						"base64",
			    env, i + 1);
			if (raw != NULL)
				OPENSSL_cleanse(raw, (size_t)(len > 0 ? len : 0));
			free(raw);
			continue;
		}
		cfg->webhook_secrets[cfg->n_webhook_secrets].key = raw;
		cfg->webhook_secrets[cfg->n_webhook_secrets++].len = (size_t)len;
	}
	for (i = 0; i < n; i++)
		OPENSSL_cleanse(items[i], strlen(items[i]));
	text_free_list(items, n);
}

static bool
event_type_known(const char *t)
{
	size_t i;

	for (i = 0; event_types[i] != NULL; i++)
		if (strcmp(event_types[i], t) == 0)
			return true;
	return false;
}

static void
parse_webhook_events(const struct key *k, const char *v, const char *env,
    struct config *cfg, struct config_errors *errs)
{
	size_t i;

	cfg->webhook_events = text_split_list(v, &cfg->n_webhook_events);
	for (i = 0; i < cfg->n_webhook_events; i++)
		if (!event_type_known(cfg->webhook_events[i]))
			config_errors_add(errs, "%s: entry %zu is not an event "
						"type",
			    env, i + 1);
}

/*
 * Convert one key's raw text into its field.  Without require, keys marked
 * K_REQUIRED may be missing (database-only commands); whatever is set is
 * validated all the same.
 */
static void
convert(const struct key *k, const char *v, struct config *cfg,
    struct config_errors *errs, bool require)
{
	char *env;

	if (v == NULL && !(require && (k->flags & K_REQUIRED)))
		return;
	if (v != NULL && *v == '\0' && (k->flags & K_EMPTY_NONE))
		return;
	env = env_name(k->name, "");
	if (v == NULL)
		config_errors_add(errs, "%s is required", env);
	else if (k->parse != NULL)
		k->parse(k, v, env, cfg, errs);
	else
		types[k->type].parse(k, v, env, cfg, errs);
	free(env);
}

/*
 * What no single key can say: values derived from others, defaults taken
 * from another key, and checks across keys.
 */
static void
cross_check(struct config *cfg, struct config_errors *errs)
{
	if (cfg->public_url != NULL) {
		cfg->redirect_uri = xasprintf("%s/callback", cfg->public_url);
		cfg->public_https = strncmp(cfg->public_url, "https:", 6) == 0;
	}
	if (cfg->database_direct_url == NULL)
		cfg->database_direct_url = xstrdup(cfg->database_url);
	if (cfg->ops_listen_host != NULL && cfg->listen_host != NULL &&
	    cfg->ops_listen_port == cfg->listen_port &&
	    strcmp(cfg->ops_listen_host, cfg->listen_host) == 0)
		config_errors_add(errs, "FINXD_OPS_LISTEN: must differ from "
					"FINXD_LISTEN");
	if (cfg->state_dir != NULL && cfg->state_dir[0] != '/')
		config_errors_add(errs, "FINXD_STATE_DIR: must be an absolute "
					"path");
	if (cfg->webhook_url != NULL && (!url_plausible(cfg->webhook_url) ||
		strchr(cfg->webhook_url, '#') != NULL))
		config_errors_add(errs, "FINXD_WEBHOOK_URL: expected an "
					"http(s) URL");
	if (cfg->webhook_url != NULL && cfg->n_webhook_secrets == 0)
		config_errors_add(errs, "FINXD_WEBHOOK_SECRET is required with "
					"FINXD_WEBHOOK_URL");
	if (cfg->finx_connect_timeout_ms > cfg->finx_timeout_ms)
		config_errors_add(errs, "FINXD_FINX_CONNECT_TIMEOUT_MS must "
					"not exceed FINXD_FINX_TIMEOUT_MS");
}

/* Turn raw strings into typed fields, collecting every problem. */
static void
validate(const struct raw *r, struct config *cfg, struct config_errors *errs,
    bool require)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		convert(&keys[i], r->v[i], cfg, errs, require);
	cross_check(cfg, errs);
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
	char **s;

	for (i = 0; i < NKEYS; i++) {
		if (!types[keys[i].type].string)
			continue;
		s = field(cfg, keys[i].off);
		if (keys[i].flags & K_SECRET)
			free_secret(*s);
		else
			free(*s);
	}
	free(cfg->redirect_uri);
	if (cfg->api_keys != NULL)
		OPENSSL_cleanse(cfg->api_keys,
		    cfg->n_api_keys * sizeof(struct api_key));
	free(cfg->api_keys);
	text_free_list(cfg->return_urls, cfg->n_return_urls);
	for (i = 0; i < cfg->n_token_keys; i++) {
		free(cfg->token_keys[i].id);
		OPENSSL_cleanse(cfg->token_keys[i].key, 32);
	}
	free(cfg->token_keys);
	free(cfg->trusted_proxies);
	for (i = 0; i < cfg->n_webhook_secrets; i++) {
		OPENSSL_cleanse(cfg->webhook_secrets[i].key,
		    cfg->webhook_secrets[i].len);
		free(cfg->webhook_secrets[i].key);
	}
	free(cfg->webhook_secrets);
	text_free_list(cfg->webhook_events, cfg->n_webhook_events);
	memset(cfg, 0, sizeof(*cfg));
}

bool
config_key_at(size_t i, struct config_key_info *out)
{
	if (i >= NKEYS)
		return false;
	out->name = keys[i].name;
	out->def = keys[i].def;
	out->help = keys[i].help;
	out->secret = (keys[i].flags & K_SECRET) != 0;
	return true;
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

static const char *
or_none(const struct key *k, const char *v)
{
	if (v != NULL)
		return v;
	return k->none != NULL ? k->none : "(unset)";
}

static void
print_str(const struct key *k, const struct config *cfg, FILE *out)
{
	const char *v = *(char *const *)cfield(cfg, k->off);

	if (v != NULL && (k->flags & K_SECRET))
		v = "(set, masked)";
	fprintf(out, "%s = %s\n", k->name, or_none(k, v));
}

static void
print_dsn(const struct key *k, const struct config *cfg, FILE *out)
{
	const char *v = *(char *const *)cfield(cfg, k->off);
	char *dsn = mask_dsn(v != NULL ? v : "");

	fprintf(out, "%s = %s\n", k->name, dsn);
	free(dsn);
}

static void
print_listen(const struct key *k, const struct config *cfg, FILE *out)
{
	const char *host = *(char *const *)cfield(cfg, k->off);

	if (host == NULL)
		fprintf(out, "%s = %s\n", k->name, or_none(k, NULL));
	else
		fprintf(out, "%s = %s:%d\n", k->name, host,
		    *(const int *)cfield(cfg, k->off_port));
}

static void
print_long(const struct key *k, const struct config *cfg, FILE *out)
{
	fprintf(out, "%s = %ld\n", k->name,
	    *(const long *)cfield(cfg, k->off));
}

static void
print_bool(const struct key *k, const struct config *cfg, FILE *out)
{
	fprintf(out, "%s = %s\n", k->name,
	    k->words[*(const bool *)cfield(cfg, k->off) ? 1 : 0]);
}

static void
print_enum(const struct key *k, const struct config *cfg, FILE *out)
{
	fprintf(out, "%s = %s\n", k->name,
	    k->words[*(const int *)cfield(cfg, k->off)]);
}

/* public_url, and the redirect_uri finX is sent, derived from it. */
static void
print_public_url(const struct key *k, const struct config *cfg, FILE *out)
{
	print_str(k, cfg, out);
	fprintf(out, "redirect_uri = %s\n", or_none(k, cfg->redirect_uri));
}

/* How many keys, then each key's id and scopes; never a key. */
static void
print_api_keys(const struct key *k, const struct config *cfg, FILE *out)
{
	size_t i, s;

	fprintf(out, "%s = %zu key(s)\n", k->name, cfg->n_api_keys);
	for (i = 0; i < cfg->n_api_keys; i++) {
		fprintf(out, "  key %s scopes:", cfg->api_keys[i].id);
		for (s = 0; s < sizeof(scopes) / sizeof(scopes[0]); s++)
			if (cfg->api_keys[i].scopes & scopes[s].bit)
				fprintf(out, " %s", scopes[s].name);
		fputc('\n', out);
	}
}

static void
print_return_urls(const struct key *k, const struct config *cfg, FILE *out)
{
	size_t i;

	fprintf(out, "%s =", k->name);
	for (i = 0; i < cfg->n_return_urls; i++)
		fprintf(out, "%s %s", i ? "," : "", cfg->return_urls[i]);
	fputc('\n', out);
}

/* The ids only: "k2:(masked), k1:(masked)". */
static void
print_token_keys(const struct key *k, const struct config *cfg, FILE *out)
{
	size_t i;

	fprintf(out, "%s =", k->name);
	for (i = 0; i < cfg->n_token_keys; i++)
		fprintf(out, "%s %s:(masked)", i ? "," : "",
		    cfg->token_keys[i].id);
	fputc('\n', out);
}

static void
print_trusted_proxies(const struct key *k, const struct config *cfg,
    FILE *out)
{
	char text[NETADDR_TEXT];
	size_t i;

	fprintf(out, "%s =", k->name);
	for (i = 0; i < cfg->n_trusted_proxies; i++) {
		netaddr_text(&cfg->trusted_proxies[i], text);
		fprintf(out, "%s %s/%u", i ? "," : "", text,
		    cfg->trusted_proxies[i].prefix);
	}
	fputc('\n', out);
}

/* How many secrets, never their bytes. */
static void
print_webhook_secrets(const struct key *k, const struct config *cfg,
    FILE *out)
{
	fprintf(out, "%s = (%zu set, masked)\n", k->name,
	    cfg->n_webhook_secrets);
}

static void
print_webhook_events(const struct key *k, const struct config *cfg,
    FILE *out)
{
	size_t i;

	fprintf(out, "%s =", k->name);
	for (i = 0; i < cfg->n_webhook_events; i++)
		fprintf(out, "%s %s", i ? "," : "", cfg->webhook_events[i]);
	fprintf(out, "%s\n", cfg->n_webhook_events ? "" : " (all)");
}

void
config_print(const struct config *cfg, FILE *out)
{
	const struct key *k;

	for (k = keys; k < keys + NKEYS; k++)
		(k->print != NULL ? k->print : types[k->type].print)(k, cfg,
		    out);
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
