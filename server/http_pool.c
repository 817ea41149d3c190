/*
 * Workers are started on demand by a spawner thread per pool (never by an
 * event loop, where a pthread_create would sit in front of every other
 * connection) and leave after a minute idle; a few stay.  A pool's workers
 * are capped: beyond, jobs wait in its queue while their connections stay
 * suspended (they cost no thread).  The caps are well above what the
 * database pool and finX's rate allow to run at once.
 */
#include "http_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define POOL_IDLE_S 60       /* others leave after this long idle */
#define POOL_STACK (256 * 1024)

struct pool {
	const char *name;
	int max;
	int keep; /* workers started at once and kept however idle */
	pthread_mutex_t mu;
	pthread_cond_t work;  /* idle workers wait here */
	pthread_cond_t spawn; /* the spawner waits here */
	pthread_cond_t done;  /* wait_idle and stop wait here */
	struct http_job *head, *tail;
	int queued, idle, starting, threads, running;
	bool stop;
	pthread_t spawner;
};

#define POOL_INIT(n, m, k)                                                    \
	{ .name = n, .max = m, .keep = k, .mu = PTHREAD_MUTEX_INITIALIZER,    \
		.work = PTHREAD_COND_INITIALIZER,                             \
		.spawn = PTHREAD_COND_INITIALIZER,                            \
		.done = PTHREAD_COND_INITIALIZER }

/*
 * Callbacks wait on finX for seconds: many bulk workers.  Reads wait on
 * PostgreSQL only, so more read workers than can hold a database
 * connection at once only contend for the pool: http_pools_start sizes
 * the read pool to half the database pool.  bench_api with the read cache
 * off (2 cores shared with PostgreSQL, pool of 8): 64 read workers 7.1k
 * req/s p99 80 ms, 8 workers 9.0k p99 19 ms, 4 workers 10.2k p99 14 ms
 * (thread per connection before: 9.8k, p99 36 ms).  Bulk workers for the
 * first 32 waiting callbacks are started with the pool and kept, so a
 * burst does not wait for threads to be created.
 */
static struct pool pools[HTTP_NPOOLS] = {
	[HTTP_POOL_READ] = POOL_INIT("read", 4, 4),
	[HTTP_POOL_BULK] = POOL_INIT("bulk", 512, 32),
};

/* Run queued jobs; p->mu held on entry and on exit. */
static void
work(struct pool *p)
{
	struct http_job *job;

	while ((job = p->head) != NULL) {
		if ((p->head = job->next) == NULL)
			p->tail = NULL;
		p->queued--;
		p->running++;
		pthread_mutex_unlock(&p->mu);
		job->run(job);
		pthread_mutex_lock(&p->mu);
		if (--p->running == 0 && p->head == NULL)
			pthread_cond_broadcast(&p->done);
	}
}

static void
deadline_in(struct timespec *ts, long s)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += s;
}

static void *
worker(void *arg)
{
	struct pool *p = arg;
	struct timespec until;
	int rc;

	pthread_mutex_lock(&p->mu);
	p->starting--;
	for (;;) {
		work(p);
		if (p->stop)
			break;
		deadline_in(&until, POOL_IDLE_S);
		p->idle++;
		rc = pthread_cond_timedwait(&p->work, &p->mu, &until);
		p->idle--;
		if (rc == ETIMEDOUT && p->head == NULL && p->threads > p->keep)
			break;
	}
	p->threads--;
	pthread_cond_broadcast(&p->done);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Under p->mu: start one worker, or wait a little if that fails. */
static void
spawn_one(struct pool *p, pthread_attr_t *attr)
{
	pthread_t t;

	p->threads++;
	p->starting++;
	pthread_mutex_unlock(&p->mu);
	if (pthread_create(&t, attr, worker, p) != 0) {
		log_kv(LOG_ERROR, "cannot start an HTTP worker", "pool",
		    p->name, NULL);
		pthread_mutex_lock(&p->mu);
		p->threads--;
		p->starting--;
		pthread_mutex_unlock(&p->mu);
		/* the queue still drains through the workers there are */
		usleep(100 * 1000);
	}
	pthread_mutex_lock(&p->mu);
}

static void *
spawner(void *arg)
{
	struct pool *p = arg;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, POOL_STACK);
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		if (p->threads < p->keep)
			spawn_one(p, &attr);
		else if (p->queued <= p->idle + p->starting ||
		    p->threads >= p->max)
			pthread_cond_wait(&p->spawn, &p->mu);
		else
			spawn_one(p, &attr);
	}
	pthread_mutex_unlock(&p->mu);
	pthread_attr_destroy(&attr);
	return NULL;
}

void
http_pools_start(long read_workers)
{
	int i;

	pools[HTTP_POOL_READ].max = read_workers < 2 ? 2 : (int)read_workers;
	pools[HTTP_POOL_READ].keep = pools[HTTP_POOL_READ].max;
	for (i = 0; i < HTTP_NPOOLS; i++) {
		pools[i].stop = false;
		if (pthread_create(&pools[i].spawner, NULL, spawner,
			&pools[i]) != 0)
			abort();
	}
}

void
http_pool_submit(enum http_pool_id id, struct http_job *job)
{
	struct pool *p = &pools[id];

	job->next = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->tail != NULL)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	p->queued++;
	if (p->idle > 0)
		pthread_cond_signal(&p->work);
	if (p->queued > p->idle + p->starting)
		pthread_cond_signal(&p->spawn);
	pthread_mutex_unlock(&p->mu);
}

void
http_pools_wait_idle(void)
{
	int i;

	for (i = 0; i < HTTP_NPOOLS; i++) {
		struct pool *p = &pools[i];

		pthread_mutex_lock(&p->mu);
		while (p->running > 0 || p->head != NULL)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}

void
http_pools_stop(void)
{
	int i;

	for (i = 0; i < HTTP_NPOOLS; i++) {
		struct pool *p = &pools[i];

		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_broadcast(&p->work);
		pthread_cond_broadcast(&p->spawn);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->spawner, NULL);
		pthread_mutex_lock(&p->mu);
		while (p->threads > 0)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}

long
http_pool_busy(enum http_pool_id id)
{
	struct pool *p = &pools[id];
	long n;

	pthread_mutex_lock(&p->mu);
	n = p->queued + p->running;
	pthread_mutex_unlock(&p->mu);
	return n;
}
