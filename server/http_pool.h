/*
 * Worker pools for the HTTP front.  A handler that may block (PostgreSQL,
 * finX) runs on a worker while its connection is suspended, never on an
 * event-loop thread.  Two pools, so a burst of callbacks waiting on finX
 * never delays a read, and the other way round.
 */
#ifndef FINXD_HTTP_POOL_H
#define FINXD_HTTP_POOL_H

enum http_pool_id { HTTP_POOL_READ, HTTP_POOL_BULK, HTTP_NPOOLS };

/* One piece of work; embedded in what it works on. */
struct http_job {
	struct http_job *next;
	void (*run)(struct http_job *job);
};

/* Start the spawners; the read pool gets read_workers at most (2 or more). */
void http_pools_start(long read_workers);
/* Queue job on pool p; a worker runs job->run(job). */
void http_pool_submit(enum http_pool_id p, struct http_job *job);
/* Wait until no job is queued or running. */
void http_pools_wait_idle(void);
/* Stop every worker (none may be running: wait_idle first). */
void http_pools_stop(void);
/* Jobs queued and running now, for /metrics. */
long http_pool_busy(enum http_pool_id p);

#endif
