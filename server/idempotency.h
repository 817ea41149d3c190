/*
 * Idempotency-Key (SPEC "Lists, idempotency, changes") on POST /v1/links,
 * POST /v1/connections/{id}/sync and POST /v1/connections/{id}/reauth:
 * the route table names these wrappers, which claim the key in
 * PostgreSQL (store_idem.c), run the handler and keep its answer, or
 * answer a stored answer, 409 idempotency_key_in_use or 422
 * idempotency_key_reused instead of running it.
 */
#ifndef FINXD_IDEMPOTENCY_H
#define FINXD_IDEMPOTENCY_H

#include <stdbool.h>

#include "config.h"
#include "http.h"

enum MHD_Result h_idem_links_create(struct req *r);
enum MHD_Result h_idem_conn_sync(struct req *r);
enum MHD_Result h_idem_conn_reauth(struct req *r);

/* 1 to 255 bytes of printable ASCII (space to '~'). */
bool idem_key_ok(const char *s);

/*
 * How long a claim holds its key: the longest a request may run (three
 * finX calls, four waits for the database, 5 s), after which a request
 * that died (its process killed) no longer holds it.
 */
long idem_lock_ms(const struct config *cfg);

#endif
