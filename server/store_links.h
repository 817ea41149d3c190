/*
 * Store: widget links and the grants their callbacks bring (new
 * connections and renewals).  Every function takes the connection its
 * caller acquired and holds no other; a false, NULL or *_DB_ERROR answer
 * leaves how it failed in db_failure(), and nothing is logged here.
 */
#ifndef FINXD_STORE_LINKS_H
#define FINXD_STORE_LINKS_H

#include <stdbool.h>
#include <libpq-fe.h>

#include "finx_decode.h"

/* How a lookup of one link ended. */
enum store_link_res {
	SL_OK,       /* found (and, for store_link_start, bound) */
	SL_NONE,     /* no such link, or not usable any more */
	SL_UNSEALED, /* the stored location does not open with our keys */
	SL_DB_ERROR, /* a statement failed */
};

/* A new link (POST /v1/links, reauth): location is the plain widget URL,
 * sealed here; connection_id only for kind "reauth". */
struct store_link_new {
	const char *id, *user_id, *api_key_id, *return_url, *kind, *flow_id;
	const char *location, *connection_id;
	unsigned char state_hash[32]; /* SHA-256 of the state */
	long ttl_s;
};
/* Insert it; *expires_at (RFC 3339, caller frees) on success. */
bool store_link_create(PGconn *c, const struct store_link_new *in,
    char **expires_at);

/* A link as GET /v1/links/{id} shows it (text columns, NULL when SQL
 * NULL; timestamps RFC 3339); free with store_link_view_free. */
struct store_link_view {
	char *id, *user_id, *status, *connection_id, *reason, *kind;
	char *created_at, *expires_at, *completed_at;
	char *created_micros; /* since the epoch: pages only */
};
enum store_link_res store_link_get(PGconn *c, const char *id,
    struct store_link_view *out);
void store_link_view_free(struct store_link_view *v);

/* A page of links (store.h), newest first: *n views in *out (free with
 * store_link_views_free). */
struct store_page;
bool store_link_page(PGconn *c, const struct store_page *q,
    struct store_link_view **out, int *n);
void store_link_views_free(struct store_link_view *v, int n);

/*
 * GET /start/{id}: the widget location of a pending, unused, live link,
 * opened (*location, free with free_secret).  With cookie set (browser
 * binding) the link is bound to its hash in the same statement, once:
 * a link already bound is SL_NONE.
 */
enum store_link_res store_link_start(PGconn *c, const char *id,
    const char *cookie, char **location);

/* A link its callback consumed; free with store_link_free. */
struct store_link {
	char *id, *return_url, *kind, *connection_id, *user_id;
};
void store_link_free(struct store_link *l);

/* The callback's state and what its browser brought. */
struct store_consume_in {
	const char *state, *flow_id;
	/* Browser binding required: the binding cookie of link_id on this
	 * request, NULL when it has none.  NULL: no binding. */
	const char *(*cookie)(void *arg, const char *link_id);
	void *cookie_arg;
};
enum store_consume {
	SC_OK,               /* consumed: the link may go on */
	SC_UNKNOWN_STATE,
	SC_ALREADY_USED,
	SC_EXPIRED,          /* now marked expired, with its event */
	SC_BINDING_MISMATCH, /* not consumed (its own browser may come),
				its event recorded */
	SC_FLOW_MISMATCH,    /* spent and failed, with its event */
	SC_DB_ERROR,
};
/* The reason of a refusal as logged ("unknown_state", ...). */
const char *store_consume_reason(enum store_consume k);
/*
 * Consume the state atomically, before its code is touched.  Without
 * browser binding a usable state is one statement; any other case (and
 * every case with binding) reads the row under a lock to tell why and
 * records it, in one transaction.  *out is filled on SC_OK only.
 */
enum store_consume store_link_consume(PGconn *c,
    const struct store_consume_in *in, struct store_link *out);

/*
 * A consumed link that ends without a grant: status "failed" or
 * "cancelled" with its reason, and the event (detail: a safe text, e.g.
 * finX's message), in one statement.
 */
bool store_link_finish(PGconn *c, const char *link_id, const char *status,
    const char *reason, const char *detail);

/*
 * The expiry scan: up to limit pending links past their expiry, never
 * used or used more than used_grace_s ago, marked expired with their
 * link.completed events, in one statement (SKIP LOCKED).  How many; -1
 * failed.  The callback of a link expired so sends no second event
 * (store_link_finish ends only a pending link).
 */
long store_link_expire_due(PGconn *c, int limit, long used_grace_s);

/*
 * The grant of a "connect" link in one statement: the connection with
 * its first tokens (lifetimes from the exchange's request), its first
 * pull (at once, attended), the link connected and the event.  The new
 * connection's id (caller frees) or NULL.
 */
char *store_grant_new(PGconn *c, const char *link_id, const char *user_id,
    const struct finx_tokens *t);
/*
 * The grant of a "reauth" link for connection conn_id, in one
 * transaction: a pull at once, the connection's row locked (refused
 * when deleted meanwhile), the old grant's tokens queued for
 * revocation, the new grant stored, the link connected and the event.
 */
bool store_grant_renew(PGconn *c, const char *link_id, const char *conn_id,
    const struct finx_tokens *t);

#endif
