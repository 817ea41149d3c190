/*
 * Integration test harness: a private PostgreSQL, finx-sandbox and finxd
 * processes on 127.0.0.1, an HTTP client (libcurl), SQL helpers (libpq) and
 * checks that no secret leaks.  Everything it starts is stopped again on
 * every way out: normal exit, h_bail(), the alarm, SIGINT and SIGTERM.
 *
 * Never print a token, code, client secret or API key: compare values and
 * print "match"/"mismatch" and lengths only.
 */
#ifndef FINXD_HARNESS_H
#define FINXD_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>
#include <stddef.h>

#include <json-c/json.h>
#include <libpq-fe.h>

/* finxd instances per test, stopped ones included (it_storm replaces
 * killed processes with new ones) */
#define H_MAX_FINXD 32

/*
 * Start a test: arm alarm(timeout_s) (its handler cleans up and exits 1),
 * install atexit and SIGINT/SIGTERM cleanup, make a temp dir (kept when
 * FINXD_TEST_KEEP is set) and random test secrets.
 */
void h_init(const char *name, int timeout_s);
/* Print "Bail out! ..." (TAP), clean up and exit 1. */
void
h_bail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/*
 * End of a test's main: when rc != 0, print a redacted tail of finxd's log
 * to stderr.  Returns rc.
 */
int h_done(int rc);
/* The temp dir; "<tmpdir>/<name>" in a malloc'd string. */
const char *h_tmpdir(void);
char *h_path(const char *name);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int h_free_port(void);
/* A server on 127.0.0.1:<free port> (the port in *port): a thread
 * accepts, and each connection runs conn((void *)(intptr_t)fd) on a
 * detached thread of its own (conn closes fd).  Lives until the test
 * exits; h_bail() when it cannot listen. */
void h_serve_loopback(void *(*conn)(void *), int *port);
/* A whole decimal number, or h_bail() when s is not one (NULL -> dflt). */
long h_long(const char *s, long dflt);
/* printf into a new string (caller frees); h_bail() when out of memory.
 * Not for threads other than main: use plain vasprintf there. */
char *h_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* strdup (caller frees); NULL stays NULL; h_bail() when out of memory. */
char *h_dup(const char *s);
/* Sleep for ms milliseconds. */
void h_sleep_ms(long ms);
/* Monotonic milliseconds. */
long h_now_ms(void);
/* Milliseconds since the epoch (CLOCK_REALTIME): the sandbox's clock for
 * received_at_ms and the like. */
long h_realtime_ms(void);
/* True when a and b are both strings and equal. */
bool h_streq(const char *a, const char *b);
/* The environment variable name as a whole number; dflt when unset or
 * empty, h_bail() when it is not a number. */
long h_env_long(const char *name, long dflt);

/*
 * Poll pred(arg) every 20 ms (h_wait_every: every every_ms) until it is
 * true, for up to timeout_ms.  True when it became true in time.  pred is
 * always asked at least once.
 */
typedef bool (*h_pred)(void *arg);
bool h_wait_until(h_pred pred, void *arg, long timeout_ms);
bool h_wait_every(h_pred pred, void *arg, long timeout_ms, long every_ms);

/* The test's generated secrets (never print them). */
const char *h_client_secret(void);
const char *h_api_key(void);
const char *h_token_key(void); /* "k1:<base64 of 32 bytes>" */
/* A new random secret of n alphanumerics (owned by the harness), added to
 * the values h_leaks() looks for and the log redaction hides. */
char *h_secret_new(size_t n);
/* A new token key "<id>:<base64 of 32 random bytes>" (caller frees),
 * added to the values h_leaks() looks for like h_secret_new. */
char *h_token_key_new(const char *id);

/*
 * PostgreSQL: initdb + pg_ctl start a private cluster in the temp dir on a
 * free port (through runuser when root), create database "finxd" and
 * return its conninfo (owned by the harness).  When no PostgreSQL binaries
 * exist, print the TAP skip plan and exit 0 (meson: SKIP).
 */
const char *h_pg_start(void);
/*
 * pg_ctl on the private cluster: "stop" and "restart" with -m fast (every
 * backend ends, clients see their connections die), "start".  Waits up to
 * 60 s; returns pg_ctl's exit status.  Cleanup follows the new postmaster.
 */
int h_pg_ctl(const char *action);
/* Create another database; returns its conninfo (caller frees). */
char *h_pg_create_db(const char *name);

/* Run a statement; params is a NULL-terminated list (may be NULL).
 * Returns the result (caller PQclear()s) or NULL on any error. */
PGresult *
h_sql(const char *conninfo, const char *query, const char *const *params);
/* First column of the first row (malloc'd) or NULL. */
char *
h_sql_value(const char *conninfo, const char *query, const char *const *params);
/* Text of every row of every table in the database (malloc'd). */
char *h_db_dump(const char *conninfo);
/* First column of the first row as a whole number, -1 when none. */
long
h_sql_long(const char *conninfo, const char *query, const char *const *params);
/* Run a statement for its effect; true when it succeeded. */
bool
h_sql_do(const char *conninfo, const char *query, const char *const *params);
/* True when the first column of the first row is boolean true. */
bool
h_sql_true(const char *conninfo, const char *query, const char *const *params);
/* Poll query (a count: SQL NULL and no row are 0) every 500 ms until it
 * is at least want, for up to timeout_ms; returns the last count. */
long h_sql_wait_count(const char *conninfo, const char *query,
    const char *const *params, long want, long timeout_ms);
/* An h_pred: no revocation of connection cid (a char *) is left in the
 * revocations table of the test's database (h_pg_start's). */
bool h_revocations_gone(void *cid);
/* Column col of connection cid as text (malloc'd), NULL for SQL NULL or
 * no such row. */
char *h_conn_col(const char *conninfo, const char *cid, const char *col);
/* The same as a whole number, -1 for NULL or no such row. */
long h_conn_long(const char *conninfo, const char *cid, const char *col);
/* pulls.last_pull_at of connection cid with microseconds, "" when it was
 * never pulled (malloc'd, never NULL). */
char *h_last_pull(const char *conninfo, const char *cid);
/* Wait up to secs until cid's last_pull_at is set and differs from
 * before (h_last_pull's text; "" for the first pull). */
bool h_wait_pull_after(const char *conninfo, const char *cid,
    const char *before, int secs);
/* Make cid due now (attended: not counted against the daily cap) and
 * wait up to secs for a pull of it; says so on stdout when none came. */
bool h_repull(const char *conninfo, const char *cid, int secs);

/*
 * finx-sandbox ($SANDBOX_EXE): start it with --listen 127.0.0.1:0, the test
 * client id/secret and the extra args (NULL-terminated, may be NULL); wait
 * until it answers; return its base URL (owned by the harness).
 */
const char *h_sandbox_start(const char *const *extra);
/* SIGTERM, wait; returns its exit status (-1 when none was running). */
int h_sandbox_stop(void);
const char *h_sandbox_url(void);

/* The sandbox control API (/_sandbox/...). */
long h_sbx_post(const char *path, const char *json);
long h_sbx_delete(const char *path);
/* GET path and parse the JSON answer (caller json_object_put()s), or NULL. */
struct json_object *h_sbx_get(const char *path);
/* Number of recorded requests to path (any method), -1 on error. */
int h_sbx_count(const char *path);
/* The last recorded request to path (caller json_object_put()s) or NULL. */
struct json_object *h_sbx_last_request(const char *path);
/* Forget recorded requests and faults. */
void h_sbx_reset(void);
/* POST /_sandbox/config with json; true on 2xx. */
bool h_sbx_config(const char *json);
/* A member of a JSON object as an integer, -1 when absent. */
long h_stat_of(struct json_object *st, const char *name);
/* One counter of GET /_sandbox/stats, -1 on error. */
long h_sbx_stat(const char *name);
/* A counter of GET /_sandbox/grants?user_id=<user>: how many of the
 * user's grants are "active" or "revoked"; -1 on error. */
long h_sbx_grants(const char *user, const char *which);
/* The access token works at finX right now (GET /rest/accounts). */
bool h_token_works(const char *tok);
/* method on the sandbox's path with json as the body (NULL: none):
 * the status; the parsed answer in *ret (caller json_object_put()s,
 * NULL when it was not JSON) when ret is not NULL. */
long h_sbx_json(const char *method, const char *path, const char *json,
    struct json_object **ret);
/* A bank change, POST /_sandbox/transactions/<what> (book, add,
 * correct, drop; tests/sandbox/README.md): like h_sbx_json. */
long h_sbx_bank(const char *what, const char *json, struct json_object **ret);
/* The same with the body {"user_id": user, <rest>} (rest: members, or
 * NULL for none). */
long h_sbx_bank_user(const char *user, const char *what, const char *rest,
    struct json_object **ret);
/* POST /_sandbox/notifications/fire {"user_id": user} plus the members
 * in extra (",\"timeout_ms\":500", or NULL): like h_sbx_json. */
long h_sbx_fire(const char *user, const char *extra, struct json_object **ret);
/* A grant minted at the sandbox for user "<prefix>-0" and refreshed once:
 * its access token (caller frees) or NULL. */
char *h_sbx_access(const char *prefix);
struct h_resp;
/* method on the sandbox's /rest path with "Authorization: Bearer tok"
 * (and a JSON body when json is not NULL); the status.  Free r with
 * h_resp_free. */
long h_sbx_rest(const char *tok, const char *method, const char *path,
    const char *json, struct h_resp *r);

/*
 * finxd environment: h_env_defaults() sets FINXD_DATABASE_URL, FINX_URL
 * (the sandbox), client id/secret, API key, return URLs, token keys and
 * log level debug.  h_env_set() overrides one (value NULL removes it).
 * The parent's FINXD_* variables are never passed on.
 */
void h_env_defaults(const char *conninfo);
void h_env_set(const char *name, const char *value);
/*
 * The usual start of a test: h_pg_start(), h_sandbox_start(sbx_args),
 * h_env_defaults() and `finxd migrate` (h_bail() when it fails).
 * Returns the database's conninfo (owned by the harness).
 */
const char *h_setup(const char *const *sbx_args);

/*
 * Run "finxd <args...>" (NULL-terminated) with the current environment
 * plus a fresh FINXD_LISTEN, bounded by timeout_s.  Returns the exit
 * status, 128+signal when killed by a signal, or -1 when it ran too long
 * (and was killed).  Its stdout+stderr are kept for h_finxd_output().
 */
int h_finxd_run(const char *const *args, int timeout_s);
/* The same with another finxd executable (an older build, say). */
int h_finxd_run_exe(const char *exe, const char *const *args, int timeout_s);
/* stdout+stderr of the last h_finxd_run (malloc'd, never NULL). */
char *h_finxd_output(void);

/*
 * Run any program (argv[0] looked up in PATH, NULL-terminated) with the
 * test's own environment, stdout+stderr to <tmpdir>/<out_name>, bounded
 * by timeout_s; the exit status like h_finxd_run.
 */
int h_run(const char *const *argv, const char *out_name, int timeout_s);

/*
 * Spawn "finxd serve" on a free port with the current environment, output
 * appended to <tmp>/finxd.log, and poll /healthz and then /readyz (on the
 * operations listener when FINXD_OPS_LISTEN is set) until 200.  Returns
 * the instance index; bails out when it does not come up.
 */
int h_finxd_start(void);
/* The same, returning once /healthz answers (the database may not be). */
int h_finxd_start_listening(void);
/* Either, with another finxd executable; instances share finxd.log. */
int h_finxd_start_exe(const char *exe, bool ready);
const char *h_finxd_url(int i);
/* Where instance i serves path: its operations listener for /healthz,
 * /readyz and /metrics when FINXD_OPS_LISTEN was set at its start (they
 * are served there only), else h_finxd_url(i). */
const char *h_finxd_base(int i, const char *path);
/* Send sig, wait (bounded); returns the exit status like h_finxd_run. */
int h_finxd_stop(int i, int sig);
/* The same, waiting up to wait_ms (not 5 s) before SIGKILL: -1 then. */
int h_finxd_stop_wait(int i, int sig, long wait_ms);
/* Number of finxd instances started so far (stopped ones included). */
int h_finxd_count(void);
/* Instance i's process id (0 once stopped). */
int h_finxd_pid(int i);
/* CPU time (user + system) process pid has used, in ms; -1 when gone. */
long h_cpu_ms(int pid);
/* True when <tmpdir>/<name> contains needle. */
bool h_file_contains(const char *name, const char *needle);

/* HTTP (libcurl, 127.0.0.1 only, no redirects followed, 10 s timeout). */
struct h_resp {
	long status; /* 0 when the transfer failed */
	char *body;
	size_t body_len;
	char **hname, **hval; /* headers of the final response */
	int nh;
	long ms; /* wall time of the request */
	struct json_object *json;
};
/* headers: NULL-terminated "Name: value" list or NULL.  Returns 0 when an
 * HTTP answer came back, -1 otherwise.  Free r with h_resp_free. */
int h_http(const char *method, const char *url, const char *const *headers,
    const char *body, size_t body_len, struct h_resp *r);
void h_resp_free(struct h_resp *r);
/* Case-insensitive header lookup (borrowed from r) or NULL. */
const char *h_resp_header(const struct h_resp *r, const char *name);
/* Parsed JSON body (borrowed from r) or NULL. */
struct json_object *h_resp_json(struct h_resp *r);
/* error.code of a JSON error body (borrowed) or NULL. */
const char *h_err_code(struct h_resp *r);
/* True when the error.code of r is want. */
bool h_err_is(struct h_resp *r, const char *want);
/* error.message of a JSON error body (borrowed) or NULL. */
const char *h_err_message(struct h_resp *r);
/* A string member of o (borrowed) or NULL when absent or not a string. */
const char *h_jstr(struct json_object *o, const char *key);
/* True when o has key and its value is JSON null. */
bool h_jnull(struct json_object *o, const char *key);
/* A member of o as an integer; dflt when absent or JSON null. */
long h_jlong(struct json_object *o, const char *key, long dflt);

/*
 * Call finxd instance i: /v1 with "Authorization: Bearer <api key>" and
 * Content-Type application/json when body is given.  Returns the status.
 */
long h_api(int i, const char *method, const char *path, const char *body,
    struct h_resp *r);

/* The same with another API key. */
long h_api_key_call(int i, const char *key, const char *method,
    const char *path, const char *body, struct h_resp *r);

/* GET path on finxd instance i without an API key (/healthz, /readyz,
 * /metrics... at h_finxd_base); returns the status.  r may be NULL
 * (answer discarded). */
long h_finxd_get(int i, const char *path, struct h_resp *r);
/* Poll GET path on instance i every 200 ms until it answers want; true
 * when it did within timeout_ms. */
bool h_finxd_wait_status(int i, const char *path, long want, long timeout_ms);
/* GET /readyz on instance i: the status; error.code and error.message in
 * *code and *msg (malloc'd or NULL), each when not NULL. */
long h_readyz(int i, char **code, char **msg);
/* The value of the sample `series` (name and labels, exactly as in the
 * exposition) on instance i's /metrics; 0 when absent, -1 when /metrics
 * did not answer 200. */
long h_metric(int i, const char *series);

/* POST raw bytes to /v1/links on instance i with "Authorization: <auth>"
 * and "Content-Type: <ctype>" (each left out when NULL). */
long h_links_post_raw(int i, const char *auth, const char *ctype,
    const char *body, size_t len, struct h_resp *r);

/* The connection calls on instance i: method on /v1/connections/{cid},
 * plus "/<what>" unless what is NULL.  Returns the status; r may be NULL
 * (answer discarded). */
long h_conn_api(int i, const char *method, const char *cid, const char *what,
    struct h_resp *r);
/* POST /v1/connections/{cid}/<what> (refresh, reauth...) without a body;
 * the status, error.code in *code (malloc'd or NULL) when code != NULL. */
long h_conn_post(int i, const char *cid, const char *what, char **code);
/* GET /v1/connections/{cid}/token: the status; the access token in *tok
 * (malloc'd, NULL when none) and the request's wall time in *ms, each
 * when not NULL. */
long h_token_get(int i, const char *cid, char **tok, long *ms);
/* POST /v1/connections/{cid}/reauth with return_url H_RETURN_URL; the
 * status (a link to approve in the widget on 201). */
long h_reauth(int i, const char *cid, struct h_resp *r);
/* GET /v1/connections/{cid}: the answer (caller json_object_put()s) on
 * 200, else NULL. */
struct json_object *h_conn_get(int i, const char *cid);
/* Its "status" (malloc'd) or NULL. */
char *h_conn_status(int i, const char *cid);
/* True when its "status" is want. */
bool h_conn_status_is(int i, const char *cid, const char *want);

/* URL query helpers: decoded value of a parameter (malloc'd) or NULL;
 * url with one parameter replaced (malloc'd). */
char *h_qparam(const char *url, const char *name);
char *h_qreplace(const char *url, const char *name, const char *value);

/* curl callbacks of the benches: a body thrown away; a header callback
 * that sets the bool at its data when a Location header carries
 * status=connected (a callback's redirect back to the partner). */
size_t h_curl_discard(char *p, size_t sz, size_t n, void *arg);
size_t h_curl_connected(char *p, size_t sz, size_t n, void *connected);

/* POST /v1/links on instance i; returns the status. */
long h_link_create(int i, const char *user_id, const char *return_url,
    struct h_resp *r);
/* The return URL of the tests' links (h_env_defaults allows it). */
#define H_RETURN_URL "https://partner.example/return?x=1"
/* GET <location>&decision=<decision> on the sandbox; returns the callback
 * URL from its 302 (malloc'd) or NULL. */
char *h_widget(const char *location, const char *decision);
/* A link for user (H_RETURN_URL) on instance i, approved in the widget:
 * the callback URL (malloc'd) or NULL; the link id in *link_id
 * (malloc'd) when link_id != NULL. */
char *h_link_approve(int i, const char *user, char **link_id);
/* A whole approved flow on instance i: link, widget approval and the
 * callback; the connection id (malloc'd) or NULL. */
char *h_connect(int i, const char *user);
/* h_connect, and once more when that failed (a stall of a shared
 * machine is not what the tests test); NULL when both failed. */
char *h_connect_retry(int i, const char *user);

/* Every token and code the sandbox issued (caller frees with
 * h_strv_free); count in *n. */
char **h_sbx_issued(int *n);
void h_strv_free(char **v, int n);
/* How many of the known secrets (client secret, API key, token key and
 * every issued token and code) occur in s[0..len). */
int h_leaks(const char *s, size_t len);
/* True when finxd's log contains needle; size of the log in *size. */
bool h_log_contains(const char *needle);
long h_log_size(void);
/* finxd's log (malloc'd, never NULL). */
char *h_log_read(size_t *len);

#endif
