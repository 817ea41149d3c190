/*
 * Pulling accounts, balances and transactions from finX into PostgreSQL,
 * and following manual syncs.  Called by the background workers
 * (refresh.c) with a connection of their own.
 */
#ifndef FINXD_DATA_H
#define FINXD_DATA_H

#include <stdbool.h>
#include <libpq-fe.h>

struct config;

void data_init(const struct config *cfg);

/*
 * Claim one due pull (a committed claim with a deadline, SKIP LOCKED)
 * and run it, on c (the worker's own connection; no transaction stays
 * open while finX answers); false when none was due.
 */
bool pull_one(PGconn *c);
/*
 * The pick of its claim ($1 PULLS_PER_DAY): the pulls row due first and
 * not claimed, whatever its connection's status (the claim parks the
 * row of one that is not active at 'infinity'), so rows of deleted
 * connections never pile up at the head of pulls_due_idx.  A part of a
 * statement of store_data.c, exported for bench_sched.
 */
extern const char pull_claim_sql[];

/* Unattended pulls allowed per connection per 24 h (PSD2 RTS art. 36). */
#define PULLS_PER_DAY 4

#endif
