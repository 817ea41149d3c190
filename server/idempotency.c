/*
 * Idempotency keys (idempotency.h).  A request with a key commits a claim
 * first (one statement: the row with a claim id and a deadline), runs its
 * handler with no transaction open, then stores the answer under that
 * claim (a compare-and-set: a claim that ran out and was taken over
 * stores nothing).  Answers of 500 and above free the key, and so does a
 * 429, whose Retry-After a replay 24 hours long would contradict.  The
 * stored body is sealed (store_seal): a link's location carries finX's
 * one-time widget token.
 */
#include "idempotency.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "encode.h"
#include "log.h"
#include "mem.h"
#include "secret.h"
#include "store_idem.h"

#define IDEM_KEY_MAX 255
/* Claim, or find the row that holds the key, this many times at most:
 * a row can vanish (released, pruned) between the two. */
#define IDEM_TRIES 3
/* Rows past 24 hours are pruned by a claim at most once a minute. */
#define IDEM_PRUNE_MS 60000
/* The largest answer kept (answers of these routes are small). */
#define IDEM_ANSWER_MAX (256 * 1024)

struct idem {
	struct store_idem_req q;
	char *claim, *hash_hex;
};

static _Atomic int64_t next_prune;

bool
idem_key_ok(const char *s)
{
	size_t n;

	if (s == NULL)
		return false;
	for (n = 0; s[n] != '\0'; n++)
		if (n >= IDEM_KEY_MAX || (unsigned char)s[n] < 0x20 ||
		    (unsigned char)s[n] > 0x7e)
			return false;
	return n > 0;
}

long
idem_lock_ms(const struct config *cfg)
{
	return 3 * cfg->finx_timeout_ms + 4 * cfg->db_timeout_ms + 5000;
}

/* Forget rows past 24 hours, once a minute per process (c's claim runs
 * next; a failure here only delays the pruning). */
static void
maybe_prune(PGconn *c)
{
	int64_t now = mono_ms(), due = atomic_load(&next_prune);

	if (now < due || !atomic_compare_exchange_strong(&next_prune, &due,
			     now + IDEM_PRUNE_MS))
		return;
	if (!store_idem_prune(c))
		log_kv(LOG_WARN, "idempotency keys past 24 hours not pruned",
		    "sqlstate", db_failure_sqlstate(), NULL);
}

/* The stored answer a again, as it was first queued. */
static enum MHD_Result
idem_replay(struct req *r, const struct idem *d,
    const struct store_idem_answer *a)
{
	char *body = store_idem_open(a);
	struct MHD_Response *resp;

	if (body == NULL)
		return api_fail(r, ST_DECRYPT_FAILED,
		    "the stored answer of this Idempotency-Key");
	resp = MHD_create_response_from_buffer(strlen(body), body,
	    MHD_RESPMEM_MUST_COPY);
	free_secret(body);
	MHD_add_response_header(resp, "Content-Type",
	    a->content_type ? a->content_type
			    : "application/json; charset=utf-8");
	MHD_add_response_header(resp, "Idempotent-Replayed", "true");
	return http_queue(r, (unsigned)a->status, resp);
}

/* The answer when another row holds the key (st says how). */
static enum MHD_Result
idem_answer(struct req *r, const struct idem *d, enum store_idem_state st,
    const struct store_idem_answer *a)
{
	switch (st) {
	case SI_ANSWERED:
		return idem_replay(r, d, a);
	case SI_OTHER:
		return api_fail(r, ST_IDEM_REUSED, NULL);
	case SI_FAILED:
		return api_fail_db(r);
	default: /* running, or still changing hands after IDEM_TRIES */
		return api_fail(r, ST_IDEM_IN_USE, NULL);
	}
}

/* Claim d's key: true when the handler is to run; else *ret answered. */
static bool
idem_begin(struct req *r, const struct idem *d, enum MHD_Result *ret)
{
	struct store_idem_answer a = { 0 };
	enum store_idem_state st = SI_FAILED;
	PGconn *c = db_acquire_bulk();
	int i, got = -1;

	if (c == NULL) {
		db_fail_unavailable();
		*ret = api_fail_db(r);
		return false;
	}
	maybe_prune(c);
	for (i = 0; i < IDEM_TRIES; i++) {
		if ((got = store_idem_claim(c, &d->q, d->claim)) != 0)
			break;
		st = store_idem_find(c, &d->q, &a);
		if (st != SI_GONE && st != SI_EXPIRED)
			break;
	}
	db_release(c);
	if (got == 1)
		return true;
	*ret = got < 0 ? api_fail_db(r) : idem_answer(r, d, st, &a);
	store_idem_answer_free(&a);
	return false;
}

/*
 * Whether r's answer (in cap) is one to keep for the key: SPEC keeps every
 * answer below 500, a 429 too (Stripe frees it instead; a SPEC question).
 */
static bool
idem_keeps(const struct req *r, const struct buf *cap)
{
	return r->status > 0 && r->status < 500 &&
	    r->capture_ctype != NULL && !cap->overflow;
}

/* After the handler: keep its answer under d's claim, or free the key. */
static void
idem_finish(struct req *r, const struct idem *d, const struct buf *cap)
{
	bool keep = idem_keeps(r, cap), ok = false, lost = false;
	PGconn *c = db_acquire_bulk();

	if (c == NULL)
		db_fail_unavailable();
	else if (keep)
		ok = store_idem_complete(c, &d->q, d->claim, r->status,
		    r->capture_ctype, cap->data, &lost);
	else
		ok = store_idem_release(c, &d->q, d->claim);
	db_release(c);
	if (lost)
		log_kv(LOG_WARN, "idempotency key taken over before its "
				 "answer was stored", NULL);
	else if (!ok)
		log_kv(LOG_WARN, keep ? "idempotency key's answer not stored"
				      : "idempotency key not freed",
		    "sqlstate", db_failure_sqlstate(), NULL);
}

/* d for r with key: what the request asks, hashed, and a new claim id. */
static void
idem_init(struct idem *d, struct req *r, const char *key)
{
	unsigned char h[32];

	sha256(r->body.data ? r->body.data : "", r->body.len, h);
	d->hash_hex = hex_encode(h, sizeof(h));
	d->claim = uuid_new();
	d->q = (struct store_idem_req){ .api_key_id = r->key->id,
		.key = key, .method = r->method, .path = r->path,
		.body_sha256_hex = d->hash_hex,
		.lock_ms = idem_lock_ms(api_cfg) };
}

/* Run fn for r under its Idempotency-Key, when it has one. */
static enum MHD_Result
idem_run(struct req *r, http_handler fn)
{
	const char *key = http_header(r, "Idempotency-Key");
	struct idem d;
	struct buf cap;
	enum MHD_Result ret;

	if (key == NULL || r->key == NULL)
		return fn(r);
	if (!idem_key_ok(key))
		return api_fail(r, ST_INVALID_REQUEST,
		    "Idempotency-Key must be 1 to 255 printable ASCII "
		    "characters");
	idem_init(&d, r, key);
	if (idem_begin(r, &d, &ret)) {
		buf_init(&cap, IDEM_ANSWER_MAX);
		r->capture = &cap;
		ret = fn(r);
		idem_finish(r, &d, &cap);
		r->capture = NULL;
		buf_free_secret(&cap);
	}
	free(d.claim);
	free(d.hash_hex);
	return ret;
}

enum MHD_Result
h_idem_links_create(struct req *r)
{
	return idem_run(r, h_links_create);
}

enum MHD_Result
h_idem_conn_sync(struct req *r)
{
	return idem_run(r, h_conn_sync);
}

enum MHD_Result
h_idem_conn_reauth(struct req *r)
{
	return idem_run(r, h_conn_reauth);
}
