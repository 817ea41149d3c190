/*
 * The background workers of finxd serve: each owns one PostgreSQL
 * connection and loops over the work every process shares through the
 * database, most urgent first: due refreshes, revocations, manual syncs
 * to follow, pulls.  It is the top of the work layer: it calls refresh,
 * sync and data; none of them calls it (a read that finds its
 * connection due wakes a worker through refresh_set_kick).
 */
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "clock.h"
#include "config.h"
#include "data.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "refresh.h"
#include "rescue.h"
#include "sync.h"

static struct {
	pthread_t *threads;
	int n;
	atomic_bool stop;
	/*
	 * Pulls are long (thousands of upserts) and may wait; refreshes may
	 * not.  At most a quarter of the workers pull at a time, so the
	 * others stay free for due tokens and the database is not swamped
	 * by pulls after a burst of new connections.
	 */
	atomic_int pulling;
	int max_pulls;
	/*
	 * A pull was announced by refresher_wake.  A wake while every pull
	 * slot is busy signals no one (a burst of callbacks would otherwise
	 * send a worker through an empty scan per callback); the flag makes
	 * the puller that is finishing look once more instead of napping.
	 */
	atomic_bool pull_pending;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const struct config *cfg;
} bg = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void
nap(long ms)
{
	struct timespec until = realtime_after_ms(ms);

	pthread_mutex_lock(&bg.mu);
	if (!atomic_load(&bg.stop))
		pthread_cond_timedwait(&bg.cv, &bg.mu, &until);
	pthread_mutex_unlock(&bg.mu);
}

void
worker_kick(void)
{
	pthread_mutex_lock(&bg.mu);
	pthread_cond_signal(&bg.cv);
	pthread_mutex_unlock(&bg.mu);
}

void
worker_wake_pull(void)
{
	atomic_store(&bg.pull_pending, true);
	if (atomic_load(&bg.pulling) >= bg.max_pulls)
		return;
	pthread_mutex_lock(&bg.mu);
	pthread_cond_signal(&bg.cv);
	pthread_mutex_unlock(&bg.mu);
}

/*
 * A pull, when one of the pull slots is free.  True when it pulled, or
 * when it held a slot and a pull was announced after it looked (the
 * caller loops instead of napping).  The flag is cleared before the
 * scan and set only after the announcing transaction committed, so an
 * announcement is either seen by the scan or still pending afterwards.
 */
static bool
try_pull(PGconn *c)
{
	bool did = false, slot;

	slot = atomic_fetch_add(&bg.pulling, 1) < bg.max_pulls;
	if (slot) {
		atomic_store(&bg.pull_pending, false);
		did = pull_one(c);
	}
	atomic_fetch_sub(&bg.pulling, 1);
	/* Only a slot holder re-looks: the others would spin on the flag. */
	return did || (slot && atomic_load(&bg.pull_pending));
}

static void *
worker(void *arg)
{
	PGconn *c = NULL;
	long idle_ms = bg.cfg->refresh_interval_s * 1000;

	(void)arg;
	while (!atomic_load(&bg.stop)) {
		bool did;

		if (c == NULL || PQstatus(c) != CONNECTION_OK) {
			char *err = NULL;

			PQfinish(c);
			if ((c = db_open(bg.cfg->database_url, &err)) == NULL) {
				log_kv(LOG_WARN, "refresher cannot connect",
				    "error", err, NULL);
				free(err);
				nap(2000);
				continue;
			}
		}
		/* Rotations still waiting for PostgreSQL are stored before
		 * anything else is refreshed (the rescue thread has them). */
		if (rescue_holds_workers()) {
			nap(250);
			continue;
		}
		/* Tokens first: a refresh missed is a connection lost. */
		did = refresh_one(c);
		if (!did)
			did = revocations_one(c);
		if (!did)
			did = sync_poll_one(c);
		if (!did)
			did = try_pull(c);
		if (!did)
			nap(idle_ms);
	}
	PQfinish(c);
	return NULL;
}

void
worker_start(const struct config *cfg)
{
	int i;

	bg.cfg = cfg;
	bg.n = (int)cfg->refresh_concurrency;
	bg.max_pulls = bg.n >= 4 ? bg.n / 4 : 1;
	bg.threads = xcalloc((size_t)bg.n, sizeof(pthread_t));
	atomic_store(&bg.stop, false);
	/* Only now that the schema is known to be servable does the rescue
	 * write what the journal holds. */
	rescue_start();
	for (i = 0; i < bg.n; i++)
		if (pthread_create(&bg.threads[i], NULL, worker, NULL) != 0)
			abort();
}

void
worker_stop(void)
{
	int i;

	if (bg.threads != NULL) {
		pthread_mutex_lock(&bg.mu);
		atomic_store(&bg.stop, true);
		pthread_cond_broadcast(&bg.cv);
		pthread_mutex_unlock(&bg.mu);
		for (i = 0; i < bg.n; i++)
			pthread_join(bg.threads[i], NULL);
		free(bg.threads);
		bg.threads = NULL;
	}
}
