/*
 * finX API client (libcurl easy handles from a small bounded pool).
 *
 * Transport only: what the answers mean is finx_decode.h, which URL may
 * be the base is finx_url.h.
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
#include <json-c/json.h>

#include "finx_decode.h"

struct config;

/* Largest finX response body we accept. */
#define FINX_MAX_BODY (8u * 1024 * 1024)

/*
 * Once, after curl_global_init and before any thread uses finX.  cfg is
 * borrowed for the life of the process.  When cfg->finx_url fails
 * finx_url_allowed() (finx_url.h), every call fails without sending
 * anything.
 */
void finx_init(const struct config *cfg);

/* Header parsing shared with webhook.c.  A header line's value (after
 * the colon, trimmed) into out; empty when absent or too long. */
void finx_header_value(const char *p, size_t len, char *out, size_t outsz);
/* A Retry-After value (delta seconds or an HTTP date) in seconds, at
 * most max; -1 when it is neither. */
long finx_retry_after_value(const char *v, long max);
void finx_cleanup(void);

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

#endif
