/*
 * Who may present a connection's refresh token: this process's identity,
 * its heartbeat in PostgreSQL, and the connections whose refresh it has in
 * flight.  A refresh lease is a committed row (connections.lease_*), not a
 * lock, so it outlives a PostgreSQL restart; it is taken over only from a
 * holder that is gone.  See server/REFRESH.md, "Leases".
 */
#ifndef FINXD_LEASE_H
#define FINXD_LEASE_H

#include <stdbool.h>

struct config;

/*
 * A holder counts as gone once its heartbeat is older than this, and a
 * process may take over only after it has itself been connected to
 * PostgreSQL this long (so after an outage every live holder has had time
 * to speak, and to store what it holds).
 */
#define LEASE_STALE_S 15
#define LEASE_HEARTBEAT_MS 2000

/* This process's id (a UUID: kept in FINXD_STATE_DIR across restarts
 * when there is one) and the lease length from cfg. */
void lease_init(const struct config *cfg);
const char *lease_process_id(void);
/* Seconds a lease lasts: longer than any finX call plus its store. */
int lease_seconds(void);

/*
 * The heartbeat thread: registers this process in finxd_processes, then
 * renews heartbeat_at every LEASE_HEARTBEAT_MS on a connection of its own.
 */
void lease_heartbeat_start(void);
/* Stop it; with forget, delete this process's row as well. */
void lease_heartbeat_stop(bool forget);
/* True once the heartbeat has succeeded without a break for
 * LEASE_STALE_S seconds. */
bool lease_may_take_over(void);

/*
 * Connections whose lease this process holds and whose refresh it has not
 * finished (the finX call, or a store still pending in the rescue).  Its
 * own expired leases outside this set are free for it to take again.
 * add returns false when id was already there (another thread has it).
 */
bool lease_inflight_add(const char *id);
/* The rescue's hold on a rotation it loaded: counted, never refused. */
void lease_inflight_hold(const char *id);
void lease_inflight_del(const char *id);
/* The set as a PostgreSQL uuid[] literal, "{a,b}" (caller frees). */
char *lease_inflight_literal(void);

#endif
