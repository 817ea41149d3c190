/*
 * finX notifications (SPEC "finX notifications", finx-api.md 5.4): their
 * registration and removal at finX for the workers, the pull a
 * notification asks for, and the pure pieces (secrets, notify_uri, the
 * registration's body and answer).  The design is at the top of
 * notify.c.
 */
#ifndef FINXD_NOTIFY_H
#define FINXD_NOTIFY_H

#include <stdbool.h>
#include <json-c/json.h>
#include <libpq-fe.h>

struct config;

/* The path prefix of notify_uri; what follows it is the secret. */
#define NOTIFY_PATH "/finx/notify/"
/* How the access log spells every path under it. */
#define NOTIFY_PATH_LOGGED "/finx/notify/..."
/* A secret's length: 32 random bytes, base64url without padding. */
#define NOTIFY_SECRET_LEN 43

/* Once, before the workers and the listener start (cfg borrowed). */
void notify_init(const struct config *cfg);

/*
 * The workers' share, on their timer: moves of pulls that notifications
 * left while a pull ran, then one removal at finX, then one registration.
 * True when it found work (the caller runs it again).
 */
bool notify_one(PGconn *c);
/* After a pull of conn_id committed: rows to register for its accounts
 * that have none (registered by notify_one). */
void notify_after_pull(PGconn *c, const char *conn_id);
/* Before DELETE of connection id queues its tokens for revocation: when
 * notifications of it are registered, make sure the access token queued
 * then is fresh (their removal presents it).  Uses pooled connections. */
void notify_before_delete(const char *id);
/* After DELETE committed: remove id's notifications at finX now; what
 * fails stays queued for notify_one (and its revocations wait). */
void notify_removals_try(PGconn *c, const char *id);

/*
 * A request to NOTIFY_PATH<secret>: *known when the secret is one of a
 * connection that is not revoked; the pull it asks for is scheduled,
 * *due when it is due now (the caller wakes the pull scan).  False when
 * the database failed.
 */
bool notify_received(PGconn *c, const char *secret, bool *known,
    bool *due);

/* ---- pure, for unit tests ------------------------------------------ */

/* Whether s has the form of a secret (NOTIFY_SECRET_LEN of base64url). */
bool notify_secret_ok(const char *s);
/* Lower-case hex SHA-256 of secret (caller frees): what is stored. */
char *notify_secret_hash(const char *secret);
/* The path the access log shows for path: NOTIFY_PATH_LOGGED for every
 * path under NOTIFY_PATH (a secret, right or wrong), else path. */
const char *notify_log_path(const char *path);
/* The body of POST /rest/notifications for the account (caller puts it;
 * it holds the secret: wipe_json before). */
json_object *notify_body(const char *public_url, const char *secret,
    const char *finx_account_id, const char *state);
/* finX's notification id in its answer: the whole notification, or the
 * legacy SDKs' {"notification_id"} (borrowed), NULL when none usable. */
const char *notify_answer_id(json_object *answer);

#endif
