/*
 * The background workers of finxd serve (worker.c): refreshes due,
 * revocations, manual syncs and pulls, from every process alike.
 */
#ifndef FINXD_WORKER_H
#define FINXD_WORKER_H

struct config;

/* Start them (and the rescue thread) once the schema is servable. */
void worker_start(const struct config *cfg);
/* Ask them to stop and wait for them: a running refresh finishes. */
void worker_stop(void);
/*
 * Wake one idle worker of this process now for a pull scan only (a new
 * connection wants its first pull).  Only a shortcut: workers of every
 * process also find the work by polling PostgreSQL every
 * refresh_interval, when they run every scan.
 */
void worker_wake_pull(void);
/* Wake an idle worker for a refresh scan only: a handed-out token's
 * connection is due (refresh_set_kick). */
void worker_kick(void);

#endif
