/*
 * HTTP plumbing of finx-sandbox on libmicrohttpd: per-request state, the
 * route table dispatch, reply helpers, body parsing (JSON and form) and
 * client/bearer authentication helpers shared by all endpoint modules.
 */
#ifndef SBX_HTTP_H
#define SBX_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "sbx_state.h"
#include "sbx_util.h"

#define HTTP_BODY_MAX (1024 * 1024)
#define HTTP_MAX_CAPS 4
#define HTTP_MAX_EXTRA 8

enum http_body_kind {
	BODY_NONE,
	BODY_JSON,
	BODY_FORM,
};

struct sbx_req {
	struct MHD_Connection *conn;
	char *raw_uri; /* as received, with the query */
	char *method;
	char *path; /* as MHD decoded it, without the query */
	struct sbx_buf body;
	bool started;
	bool too_big;
	long delay_after_ms;       /* sleep before sending the reply */
	char *caps[HTTP_MAX_CAPS]; /* '*' segments of the matched route */
	size_t ncaps;
	struct sbx_header extra[HTTP_MAX_EXTRA];
	size_t nextra;
	unsigned int status; /* of the reply queued; 0: none yet */
	uint64_t rf_seq;     /* refresh log entry of this request; 0: none */
	uint64_t rec_seq;    /* its record; 0: control, not recorded */
	int64_t t0_us;       /* when dispatch began (mono_us) */
};

/* Decoded string parameters of a form or JSON body, or of the query. */
struct sbx_params {
	struct sbx_header *kv;
	size_t n;
};

/* Starts the daemon on addr; returns NULL on failure. */
struct MHD_Daemon *http_start(const struct sockaddr *, bool);
/* The port the daemon listens on. */
unsigned int http_port(struct MHD_Daemon *);

/* Adds a header to the next reply of r; both strings are copied. */
void http_header(struct sbx_req *, const char *, const char *);
/* Queues a reply; never call with the state lock held. */
enum MHD_Result
http_reply(struct sbx_req *, unsigned int, const char *, const char *, size_t);
/* Serialises and drops o. */
enum MHD_Result http_reply_json(struct sbx_req *, unsigned int, json_object *);
enum MHD_Result http_reply_html(struct sbx_req *, unsigned int, const char *);
/* finX error object; data may be NULL ({}), ownership is taken. */
enum MHD_Result http_reply_error(struct sbx_req *, unsigned int, int,
    const char *, const char *, json_object *);
/* 401 code 1004 with WWW-Authenticate: Basic. */
enum MHD_Result http_reply_client_auth(struct sbx_req *);
enum MHD_Result http_reply_bearer_auth(struct sbx_req *);

/* Query argument (decoded) or NULL. */
const char *http_arg(struct sbx_req *, const char *);
/* A request header or NULL. */
const char *http_hdr(struct sbx_req *, const char *);

/*
 * Parses the body as a JSON object (strict, UTF-8 checked, nothing after
 * it). On failure writes a reason into err and returns -1.
 */
int http_body_json(struct sbx_req *, json_object **, char *, size_t);
/*
 * Parses a JSON object of strings or a form body into ps, by Content-Type.
 * An empty body gives no parameters and BODY_NONE. -1 with err on error.
 */
int http_body_params(struct sbx_req *, struct sbx_params *,
    enum http_body_kind *, char *, size_t);
/* The query string's arguments as parameters. */
void http_query_params(struct sbx_req *, struct sbx_params *);
const char *params_get(const struct sbx_params *, const char *);
void params_free(struct sbx_params *);

/* True when HTTP Basic carries the configured client credentials. */
bool http_client_ok(struct sbx_req *);
/* The bearer token of the request, or NULL; borrowed. */
const char *http_bearer(struct sbx_req *);
/* The user behind a live access token of the request, or NULL (counted
 * as an auth failure); lock held. */
struct sbx_user *http_bearer_user(struct sbx_req *);

#endif
