/*
 * Store: idempotency keys (the idempotency_keys table), for
 * idempotency.c.  A claim is a committed row with a deadline, like a
 * refresh lease: no transaction is held across the request it guards.
 * Failures as in store.h: db_failure() tells how, nothing is logged.
 */
#ifndef FINXD_STORE_IDEM_H
#define FINXD_STORE_IDEM_H

#include <stdbool.h>
#include <libpq-fe.h>

/* One request carrying a key: whose key, the key and what it asks. */
struct store_idem_req {
	const char *api_key_id, *key, *method, *path;
	const char *body_sha256_hex; /* of the raw body, lower-case hex */
	long lock_ms;                /* how long a claim holds the key */
};

/*
 * Claim q's key for the request whose claim id is claim (a new UUID):
 * when the key is new, its claim ran out without an answer, or its row
 * is past 24 hours.  1 claimed, 0 held by another row (store_idem_find
 * tells which), -1 failed.  One statement, committed when it returns.
 */
int store_idem_claim(PGconn *c, const struct store_idem_req *q,
    const char *claim);

enum store_idem_state {
	SI_GONE,     /* no row (released or pruned since): claim again */
	SI_EXPIRED,  /* a claim that ran out (since): claim again */
	SI_OTHER,    /* another method, path or body under that key */
	SI_ANSWERED, /* the same request, answered: out has the answer */
	SI_RUNNING,  /* the same request, its claim still running */
	SI_FAILED,
};

/* A stored answer; body as stored (sealed: store_idem_open). */
struct store_idem_answer {
	int status;
	char *claim, *content_type, *body;
};
void store_idem_answer_free(struct store_idem_answer *a);

/* The row holding q's key within 24 hours, judged against q. */
enum store_idem_state store_idem_find(PGconn *c,
    const struct store_idem_req *q, struct store_idem_answer *out);

/*
 * Store the answer of claim: status, Content-Type and body (the plain
 * text, sealed here).  false when it failed or the claim is no longer
 * the row's (ran out and taken over): *lost says which.
 */
bool store_idem_complete(PGconn *c, const struct store_idem_req *q,
    const char *claim, int status, const char *content_type,
    const char *body, bool *lost);
/* The plain text of a stored answer's body (free_secret), or NULL when
 * it does not open.  Sealed as row <claim> of idempotency_keys, so
 * finxd rekey re-seals it like a token (store_conns.c). */
char *store_idem_open(const struct store_idem_answer *a);

/* Free the key claim holds, without an answer (a 5xx). */
bool store_idem_release(PGconn *c, const struct store_idem_req *q,
    const char *claim);

/* Forget rows past 24 hours. */
bool store_idem_prune(PGconn *c);

#endif
