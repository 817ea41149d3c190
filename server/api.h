/*
 * Route handlers and what they share: JSON field validation, the SQL
 * snippets that format timestamps, and database access with a quick 503.
 */
#ifndef FINXD_API_H
#define FINXD_API_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>
#include <libpq-fe.h>

#include "config.h"
#include "http.h"
#include "status.h"

extern const struct config *api_cfg;

/* The OpenAPI document (server/openapi.json), served at /openapi.json. */
extern const char openapi_json[];
extern const size_t openapi_json_len;
void api_init(const struct config *cfg);

/*
 * finxd serve's start (main.c): until api_set_started, /readyz answers 503
 * with the code and message last set here ("starting" at first).  Both
 * are copied; they go to probes, so never pass a secret or a libpq error.
 */
void api_set_starting(const char *code, const char *message);
void api_set_started(void);

/* Acquire a pooled connection or queue a 503 and return NULL. */
PGconn *api_db(struct req *r, enum MHD_Result *ret);
/* The first of the NULL-terminated query parameters names that came but
 * do not decode (a bad escape, %00), or NULL: such a value must be a
 * 400, not taken as absent (a bad cursor would restart a walk). */
const char *api_query_undecodable(struct req *r, const char *const *names);
/* api_query_undecodable, answered: true when it queued the 400. */
bool api_fail_undecodable(struct req *r, const char *const *names,
    enum MHD_Result *ret);

/*
 * Answer status s (status.h) with its code and message, and ": detail"
 * after the message when detail is set (a safe text: never a secret,
 * never a value PostgreSQL refused).  A 5xx is logged here, once, with
 * the database failure behind it when there is one; 4xx answers are in
 * the access log.  api_fail_after sets Retry-After to retry_s.
 */
enum MHD_Result api_fail(struct req *r, enum status s, const char *detail);
enum MHD_Result api_fail_after(struct req *r, enum status s,
    const char *detail, long retry_s);
/* api_fail_after for a failed finX call whose transport failed: that
 * failure's own words (finx_error.detail, may be NULL) go to the log
 * line only. */
enum MHD_Result api_fail_transport(struct req *r, enum status s,
    const char *detail, long retry_s, const char *transport);
/* api_fail for the last failed statement of this thread (db_failure). */
enum MHD_Result api_fail_db(struct req *r);

/*
 * Queue 200 with the JSON body data[0..len), handed to libmicrohttpd
 * without a copy: release(cls) runs when it is done with it (also when
 * the response cannot be made).
 */
enum MHD_Result api_reply_json(struct req *r, const char *data, size_t len,
    void (*release)(void *cls), void *cls);

/* Add a column value to obj as a string, or null. */
void json_add_col(json_object *obj, const char *key, const PGresult *res,
    int row, int col);

/*
 * Whether path parameter i is a UUID (a link, connection or account id),
 * lower-cased in place when it is: PostgreSQL's uuid type matches any
 * letter case, so everything built from the id afterwards (sealing
 * contexts, cookie names, revocations, logs) must see the one spelling
 * the rows were written with.  User ids are the partner's own text and
 * never pass through here.
 */
bool api_uuid_param(struct req *r, int i);

/* Queue the 400 for a user_id path segment that breaks SPEC.md's rule. */
enum MHD_Result api_bad_user_id(struct req *r);

/* 1..max bytes of UTF-8 without control characters. */
bool api_valid_text(const char *s, size_t max);

/*
 * The string inside a JSON value when it is a string of 1..max bytes of
 * UTF-8 without control characters or embedded NUL; else NULL.  Borrowed.
 */
const char *api_json_text(json_object *v, size_t max);

/*
 * Validate return_url and finX's widget fields of a link request body;
 * *fields receives the fields to send to finX (caller puts it, also on
 * failure).  false queues a 400 in *ret.
 */
bool api_link_body(struct req *r, json_object *body, const char **return_url,
    json_object **fields, enum MHD_Result *ret);

/*
 * The callback's query, parsed and checked without I/O (callback.c; the
 * fuzzer drives it too).  Feed every argument as MHD hands it over (name
 * and raw, still percent-encoded value, NULL when it had no '=') to
 * callback_arg; the first exact-case occurrence of each name is decoded
 * into v[].  callback_params_check then returns NULL when the values may
 * be used, else a static reason: "duplicate_parameter" (a name twice, in
 * any case) or "malformed_parameters" (a name not in lower case, a bad
 * escape or %00, state/flow_id missing, too long, control characters or
 * invalid UTF-8).  callback_params_free wipes and frees v[].
 */
enum { CB_STATE, CB_FLOW_ID, CB_SUCCESS, CB_CODE, CB_ABORT, CB_CANCEL,
	CB_NPARAMS };
struct cb_params {
	char *v[CB_NPARAMS];
	int count[CB_NPARAMS];
	bool odd_case, bad_escape;
};
void callback_arg(struct cb_params *p, const char *name, const char *raw);
const char *callback_params_check(const struct cb_params *p);
void callback_params_free(struct cb_params *p);

/* Name of the browser-binding cookie of one link (caller frees). */
char *link_cookie_name(const char *link_id);

/* Opaque keyset cursor of the transaction listings. */
char *cursor_encode(int64_t micros, int64_t id);
bool cursor_decode(const char *s, int64_t *micros, int64_t *id);

/*
 * The keyset cursor of GET /v1/connections and GET /v1/links
 * (api_lists.c): list "c" or "l", the nf filter values as sent (NULL:
 * absent), created_at in microseconds and the id of the last row shown.
 * Decoding refuses a cursor made for another list or other filters;
 * micros and id receive the position.  The change feed's cursor is one
 * too (list "x": its seq as micros, the connection as id).
 */
char *list_cursor_encode(const char *list, const char *const *filters,
    int nf, const char *micros, const char *id);
bool list_cursor_decode(const char *s, const char *list,
    const char *const *filters, int nf, char micros[24], char id[37]);

/*
 * One transaction as JSON into b, as GET /v1/accounts/{id}/transactions
 * shows it (api_data.c; the change feed shows its items the same way).
 */
struct buf;
struct store_txn;
void api_txn_render(struct buf *b, const struct store_txn *t);

/*
 * The cursor of a connection's change feed (api_changes.c): the position
 * seq (>= 0) in the feed of connection conn_id (a lower-case UUID), in
 * list_cursor_encode's form.  Decoding refuses a cursor of another
 * connection, an edited one and anything else that is not one.
 */
char *changes_cursor_encode(const char *conn_id, int64_t seq);
bool changes_cursor_decode(const char *s, const char *conn_id, int64_t *seq);

/* One connection or link as its GET by id shows it. */
struct store_conn;
struct store_link_view;
json_object *api_conn_json(const struct store_conn *k);
json_object *api_link_json(const struct store_link_view *v);

/* Handlers. */
enum MHD_Result h_links_create(struct req *r);
enum MHD_Result h_links_get(struct req *r);
enum MHD_Result h_links_list(struct req *r);
enum MHD_Result h_conns_list(struct req *r);
enum MHD_Result h_events_list(struct req *r);
enum MHD_Result h_event_get(struct req *r);
enum MHD_Result h_event_redeliver(struct req *r);
enum MHD_Result h_link_start(struct req *r);
enum MHD_Result h_callback(struct req *r);
enum MHD_Result h_finx_notify(struct req *r);
enum MHD_Result h_conn_get(struct req *r);
enum MHD_Result h_conn_changes(struct req *r);
enum MHD_Result h_user_conns(struct req *r);
enum MHD_Result h_conn_token(struct req *r);
enum MHD_Result h_conn_refresh(struct req *r);
enum MHD_Result h_conn_delete(struct req *r);
enum MHD_Result h_conn_reauth(struct req *r);
enum MHD_Result h_conn_sync(struct req *r);
enum MHD_Result h_sync_get(struct req *r);
enum MHD_Result h_user_accounts(struct req *r);
enum MHD_Result h_account_get(struct req *r);
enum MHD_Result h_account_txns(struct req *r);
enum MHD_Result h_user_txns(struct req *r);

/* Shared by the link and reauth handlers: make a finX flow and a link. */
enum MHD_Result api_open_link(struct req *r, const char *user_id,
    const char *return_url, json_object *widget_fields, const char *kind,
    const char *connection_id);

#endif
