/*
 * finX API client (libcurl easy handles from a small bounded pool).
 *
 * Every call: HTTP Basic (client credentials) or Bearer (user token), a
 * connect and a total timeout, TLS verification, plain http only to
 * loopback, redirects never followed, response bodies capped.  Nothing in
 * this module logs or returns a token, code or secret in an error text.
 */
#ifndef FINXD_FINX_H
#define FINXD_FINX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

struct config;

/* Largest finX response body we accept. */
#define FINX_MAX_BODY (8u * 1024 * 1024)

/*
 * Outcome of a failed finX call, safe to log and to show to API clients.
 * Start it zeroed ({0}); a failing call frees what it held and refills it,
 * a successful call leaves it alone.  Release with finx_error_free.
 */
struct finx_error {
	long http_status;  /* 0 when no HTTP answer came back */
	bool transport;    /* timeout, connection error, TLS, ... */
	bool never_sent;   /* provably never reached finX: safe to retry */
	bool transient;    /* worth retrying later: transport, 5xx, 429 */
	bool invalid_grant; /* the grant/code/refresh token was rejected */
	long retry_after;  /* seconds from a Retry-After header, or 0 */
	char *code;        /* "invalid_grant", "1003", ... or NULL */
	char *message;     /* human text, never a secret, never NULL once set */
};
/* Frees code and message and zeroes e (reusable afterwards). */
void finx_error_free(struct finx_error *e);

struct finx_tokens {
	char *access_token;
	char *refresh_token; /* NULL when the answer had none */
	char *token_type;
	char *scope;
	long expires_in;     /* seconds; -1 when missing or unusable */
	long refresh_expires_in; /* seconds, when finX says; else -1 */
	/*
	 * When the request was sent (CLOCK_REALTIME ms): lifetimes count
	 * from here, never from a later store (the answer may take seconds,
	 * and a rescued store minutes).
	 */
	int64_t sent_ms;
};
/* Wipes and frees the token strings. */
void finx_tokens_free(struct finx_tokens *t);

/*
 * Once, after curl_global_init and before any thread uses finX.  cfg is
 * borrowed for the life of the process.  When cfg->finx_url fails
 * finx_url_allowed(), every call fails without sending anything.
 */
void finx_init(const struct config *cfg);
void finx_cleanup(void);

/*
 * True when url may be the finX base URL: https to any host, plain http
 * only to 127.0.0.0/8, ::1 or localhost; no credentials, query or
 * fragment.  On false *why (if not NULL) is a static reason.  Pure: usable
 * from config validation before finx_init.
 */
bool finx_url_allowed(const char *url, const char **why);

/*
 * POST /ongoing/access with body req (not consumed).  On success stores the
 * widget URL in *location and the flow id in *flow_id (caller frees).
 */
bool finx_create_flow(json_object *req, char **flow_id, char **location,
    struct finx_error *err);

/*
 * POST /auth/token grant_type=authorization_code.  *out is always
 * initialised (finx_tokens_free is safe); filled on success.  A 2xx with an
 * unusable body is a non-transient failure (the code is probably spent).
 * Retry a code only when err->never_sent.
 */
bool finx_exchange_code(const char *code, const char *redirect_uri,
    struct finx_tokens *out, struct finx_error *err);

/* POST /auth/token grant_type=refresh_token.  *out as above. */
bool finx_refresh(const char *refresh_token, struct finx_tokens *out,
    struct finx_error *err);

/* POST /auth/revoke token=... (body encoded like /auth/token). */
bool finx_revoke(const char *token, struct finx_error *err);

/*
 * Bearer request to a /rest path (path includes the query, already
 * encoded).  method is "GET" or "POST" ("DELETE" also works, without a
 * body); body may be NULL.  On success *out holds the parsed JSON object
 * or array (an empty 2xx body gives an empty object; caller puts it).
 */
bool finx_rest(const char *method, const char *access_token,
    const char *path, json_object *body, json_object **out,
    struct finx_error *err);

/*
 * True when url may be used as the finX base URL: https anywhere, plain
 * http only to a loopback host.  *why is static text.
 */
bool finx_url_allowed(const char *url, const char **why);

/* Pure decoders, exposed for the unit tests and the fuzzers. */

/* Parse a /auth/token success body; false with *why (static text). */
bool finx_decode_tokens(const char *body, size_t len,
    struct finx_tokens *out, const char **why);
/* Parse a /ongoing/access success body. */
bool finx_decode_flow(const char *body, size_t len, char **flow_id,
    char **location, const char **why);
/*
 * Fill err from an HTTP error answer: finX's {"error": {code, description,
 * message, group}} or OAuth's {"error": "...", "error_description": "..."},
 * or neither (then a generic message from the status).
 */
void finx_decode_error(long status, const char *body, size_t len,
    struct finx_error *err);

#endif
