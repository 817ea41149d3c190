/*
 * Configuration: one typed table of keys (config.c) read from the environment
 * (FINXD_*), an optional `key = value` file and defaults, in that order of
 * precedence.  Secrets also take a *_FILE form.  Validation collects every
 * problem at once, one line each.
 */
#ifndef FINXD_CONFIG_H
#define FINXD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct netaddr;

enum api_scope {
	SCOPE_LINKS = 1 << 0,
	SCOPE_READ = 1 << 1,
	SCOPE_TOKENS = 1 << 2,
	SCOPE_ADMIN = 1 << 3,
	SCOPE_ALL = 0xf,
};

struct api_key {
	unsigned char hash[32]; /* SHA-256 of the key; the key is not kept */
	char id[17];            /* first 8 bytes of the hash in hex, for logs */
	unsigned scopes;
};

struct token_key {
	char *id;
	unsigned char key[32];
};

/* FINXD_ALLOW_PLAINTEXT_TOKENS: the words follow this enum. */
enum plaintext_policy {
	PLAINTEXT_AUTO, /* read them until finxd rekey has sealed every row */
	PLAINTEXT_ON,
	PLAINTEXT_OFF,
};

/* One FINXD_WEBHOOK_SECRET entry: the bytes after whsec_, decoded. */
struct webhook_secret {
	unsigned char *key;
	size_t len;
};

struct config {
	/* listen address split into host and port */
	char *listen_host;
	int listen_port;
	/* optional listener for /healthz, /readyz, /metrics only (NULL: none) */
	char *ops_listen_host;
	int ops_listen_port;
	char *public_url; /* without trailing slash */
	char *redirect_uri; /* public_url + "/callback" */
	bool public_https;
	char *database_url;
	/* sessions (LISTEN, migrate's lock); database_url when not set */
	char *database_direct_url;
	/* rescue journal directory; NULL: rescue in memory only */
	char *state_dir;
	char *finx_url; /* without trailing slash */
	char *client_id;
	char *client_secret;
	bool token_form; /* FINXD_FINX_TOKEN_FORMAT=form */
	struct api_key *api_keys;
	size_t n_api_keys;
	char **return_urls;
	size_t n_return_urls;
	long state_ttl;
	struct token_key *token_keys;
	size_t n_token_keys;
	int allow_plaintext; /* enum plaintext_policy */
	bool browser_binding;
	int log_level;

	/* operational knobs, see config.c for defaults */
	long db_pool_size;
	long db_timeout_ms;
	bool db_prepared; /* FINXD_DB_PREPARED=on (default) */
	long http_header_timeout_s;
	long http_body_timeout_s;
	long http_idle_timeout_s;
	long http_max_connections;
	long http_max_per_address;
	struct netaddr *trusted_proxies;
	size_t n_trusted_proxies;
	long finx_connect_timeout_ms;
	long finx_timeout_ms;
	long refresh_margin_s;
	long refresh_keepalive_s;
	long refresh_interval_s;
	long refresh_concurrency;
	long sync_interval_s;
	long drain_timeout_s;
	bool read_cache; /* FINXD_READ_CACHE=on (default) */

	/* events and webhooks (SPEC "Events and webhooks") */
	char *webhook_url; /* NULL: events are only recorded */
	struct webhook_secret *webhook_secrets;
	size_t n_webhook_secrets;
	char **webhook_events; /* NULL with n 0: every type */
	size_t n_webhook_events;
	long webhook_timeout_s;
	long webhook_concurrency;
	long expiry_notice_s;
	long event_retention_s;
	bool finx_notifications; /* FINXD_FINX_NOTIFICATIONS=on (default) */
	long notify_min_interval_s;
};

/* The event types of SPEC's table, NULL-terminated. */
extern const char *const event_types[];

/* Collected problems, one line each. */
struct config_errors {
	char **lines;
	size_t n;
};
void config_errors_add(struct config_errors *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void config_errors_free(struct config_errors *e);

/*
 * Load from environment, then file (may be NULL), then defaults, and
 * validate.  Returns true when there are no errors; on false, *errs holds
 * the reasons and cfg is partially filled (still safe to config_free).
 * envp lets tests inject an environment; NULL means the process's.
 */
bool config_load(struct config *cfg, const char *file, char *const *envp,
    struct config_errors *errs);
/*
 * The same for commands that need only the database (finxd migrate): the
 * finX client and the token keys may be missing, so a migration job needs
 * no secret but the database's.  Every key that is set is still
 * validated; cfg->client_id, client_secret and token_keys may be NULL.
 */
bool config_load_database(struct config *cfg, const char *file,
    char *const *envp, struct config_errors *errs);
void config_free(struct config *cfg);

/* Print every key with its effective value, secrets masked. */
void config_print(const struct config *cfg, FILE *out);

/* One key of config.c's table, for documentation and its tests. */
struct config_key_info {
	const char *name; /* file key; FINXD_<NAME> in the environment */
	const char *def;  /* the default; NULL: none (required) */
	const char *help;
	bool secret; /* masked in output; also takes <name>_file */
};
/* The i-th key of the table into *out; false past the last one. */
bool config_key_at(size_t i, struct config_key_info *out);

/*
 * Parse one FINXD_API_KEYS entry ("key[:scope+scope]" or
 * "sha256=HEX[:scopes]"); false with *why on a bad entry.
 */
bool config_parse_api_key(const char *entry, struct api_key *out,
    const char **why);

/* True when url falls under one of the allowed return URL prefixes. */
bool config_return_url_allowed(const struct config *cfg, const char *url);

#endif
