/*
 * Inbound HTTP on libmicrohttpd: the daemon, a route table, per-request
 * state, authentication and response helpers.  MHD's event-loop threads
 * parse every request; a handler that may block (finX, PostgreSQL) runs
 * on a worker while its connection is suspended (http.c, http_pool.c).
 */
#ifndef FINXD_HTTP_H
#define FINXD_HTTP_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>
#include <microhttpd.h>

#include "buf.h"
#include "config.h"
#include "http_pool.h"
#include "status.h"

/* Request body cap for /v1 (413 beyond). */
#define HTTP_MAX_BODY (64 * 1024)
#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_DECODED 16

struct req {
	struct MHD_Connection *conn;
	const char *method;
	const char *path;
	struct buf body;
	char request_id[72];
	int64_t start_ms;
	const struct api_key *key;
	const char *route; /* route pattern, for logs and metrics */
	int status;        /* status queued, for logs and metrics */
	char *params[HTTP_MAX_PARAMS]; /* decoded {} path segments */
	int n_params;
	char *decoded[HTTP_MAX_DECODED]; /* query values handed out */
	int n_decoded;
	bool ops; /* came in on the operations listener */
	/* Set by idempotency.c: the JSON answers (http_json, http_error,
	 * api_reply_json) copy their body here and their Content-Type to
	 * capture_ctype (http_capture); the last one queued wins. */
	struct buf *capture;
	const char *capture_ctype;
	/* The hand-off to a worker (http.c). */
	bool on_loop;  /* on an event-loop thread: must not block */
	bool defer;    /* the handler asked to run again on a worker */
	bool deferred; /* suspended: http_queue keeps the answer in resp */
	struct MHD_Response *resp;
	enum MHD_Result fn_ret;
	enum MHD_Result (*fn)(struct req *r);
	struct http_job job;
};

typedef enum MHD_Result (*http_handler)(struct req *r);

/*
 * Where a route's handler runs.  HTTP_LOOP: on the event loop (it never
 * blocks).  HTTP_CACHED: on the event loop until it would block
 * (http_defer), then again from the start on a read worker, so cache hits
 * never leave the loop.  HTTP_READ, HTTP_BULK: on a worker of that pool.
 */
enum http_run { HTTP_LOOP, HTTP_CACHED, HTTP_READ, HTTP_BULK };

struct route {
	const char *method;
	const char *pattern; /* "/v1/links/{}": {} is one path segment */
	http_handler fn;
	unsigned scope;      /* 0: no API key needed */
	enum http_run run;
};

/* The route table (api.c); NULL-terminated. */
extern const struct route routes[];

/* Start listening (and on FINXD_OPS_LISTEN when set); false with a
 * logged reason. */
bool http_start(const struct config *cfg);
/* Stop accepting, wait up to drain_s for running requests, stop. */
void http_stop(long drain_s);
/* Requests being served right now. */
long http_active(void);

/*
 * True when r runs on an event loop, which must not block: the handler
 * then returns MHD_YES at once, queueing nothing, and runs again from the
 * start on a worker.  False on a worker.
 */
bool http_defer(struct req *r);

/* Lookups on the current request.  http_query: the decoded value, NULL
 * when absent or not decodable (a bad escape, %00); http_query_sent:
 * whether the parameter came at all, to tell the two apart. */
const char *http_query(struct req *r, const char *name);
bool http_query_sent(struct req *r, const char *name);
const char *http_header(struct req *r, const char *name);
const char *http_cookie(struct req *r, const char *name);

/*
 * Response helpers: each queues the response and returns MHD's result.
 * http_json takes ownership of obj.
 */
enum MHD_Result http_json(struct req *r, unsigned status, json_object *obj);
enum MHD_Result http_error(struct req *r, unsigned status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The same with Retry-After: retry_s seconds (0: 5 for a 503, else
 * none). */
enum MHD_Result http_error_after(struct req *r, unsigned status,
    const char *code, long retry_s, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/*
 * Queue resp (which the caller built with its Content-Type) with the
 * headers every answer carries, and destroy the caller's reference.
 */
enum MHD_Result http_queue(struct req *r, unsigned status,
    struct MHD_Response *resp);
/* Copy an answer's body and Content-Type (static text) to r->capture
 * when set (idempotency.c keeps them); the response helpers call it. */
void http_capture(struct req *r, const char *ctype, const void *data,
    size_t len);
/* A small self-contained HTML page; title and text are escaped here. */
enum MHD_Result http_page(struct req *r, unsigned status, const char *title,
    const char *text);
/* 303 to location, optional Set-Cookie, with the callback's headers. */
enum MHD_Result http_redirect(struct req *r, const char *location,
    const char *set_cookie);

/*
 * Parse the request body as a JSON object, enforcing Content-Type and
 * nesting depth.  On failure queues 400/415 and returns NULL with *ret.
 */
json_object *http_body_object(struct req *r, enum MHD_Result *ret);

/* Pure helpers, exposed for unit tests and tests/fuzz/fuzz_request.c. */
char *http_unescape(const char *s, size_t n);
/*
 * The checks of http_body_object: Content-Type ctype (may be NULL) and
 * body[0..len), where body[len] is '\0'.  ST_OK with the JSON object in
 * *ret_obj (caller puts it), else the refusal's status and its detail in
 * *ret_why (static text or NULL).
 */
enum status http_body_parse(const char *ctype, const char *body, size_t len,
    json_object **ret_obj, const char **ret_why);
/* Whether a client's X-Request-Id is one to keep (1-64 of [A-Za-z0-9._-:]). */
bool http_request_id_ok(const char *s);
/* path against pattern ({} one segment): decoded {} segments in params. */
bool http_match(const char *pattern, const char *path, char **params,
    int *n_params);
/* Whether http_match would match, without decoding or allocating. */
bool http_path_matches(const char *pattern, const char *path);
const struct api_key *http_find_key(const struct config *cfg,
    const char *authorization);

#endif
