/*
 * What finX's answers mean: the error and token values every finX call
 * returns, and the pure decoders that fill them from a body (no I/O, no
 * globals, no logging: what the unit tests and the fuzzers drive).
 * Upstream text is cleaned and bounded before it is kept.
 */
#ifndef FINXD_FINX_DECODE_H
#define FINXD_FINX_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

/*
 * Outcome of a failed finX call, safe to log and (but for detail) to show
 * to API clients.
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
	/* A transport failure in libcurl's words, which name finX's host and
	 * port: for log lines only, never an answer or a stored row.  NULL
	 * for other failures. */
	char *detail;
};
/* Frees code, message and detail and zeroes e (reusable afterwards). */
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


/*
 * Parse a whole JSON document whose root is an object or an array, at most
 * depth levels deep; body need not be NUL-terminated.  NULL on any
 * error or trailing bytes; otherwise the caller puts the result.
 */
json_object *finx_decode_json(const char *body, size_t len, int depth);

/*
 * Upstream text s[0..n) made safe to log and show (control characters
 * blanked, token-like runs redacted, bounded, valid UTF-8); caller frees.
 * NULL when nothing printable is left.
 */
char *finx_clean_text(const char *s, size_t n);

#endif
