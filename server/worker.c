/*
 * The background workers of finxd serve: each owns one PostgreSQL
 * connection and loops over the work every process shares through the
 * database, most urgent first: due refreshes, revocations, manual syncs
 * to follow, the notice scans (notices.c: expired links, expiring and
 * failing connections; once per refresh_interval per process), pulls,
 * finX notifications (their removals, the pulls they left for after a
 * running pull, their registration).  It is the top of the work layer:
 * it calls refresh, sync, notices, data and notify; none of them calls
 * it (a read that finds its connection due wakes a worker through
 * refresh_set_kick).
 *
 * A wake says what it is for, and a woken worker runs only that scan
 * (again while it finds work), then naps again: a callback's
 * worker_wake_pull costs one pull scan, a kick of refresh_set_kick one
 * refresh scan.  Every scan that finds nothing is a statement or two
 * (a SELECT ... SKIP LOCKED; the pull scan's claim is one UPDATE);
 * running all four for each callback was most of PostgreSQL's cost per
 * callback.  Only a nap that ends on its timer
 * runs every scan, tokens first, which also finds all the work other
 * processes created: the wakes are a shortcut, the timer the guarantee.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "clock.h"
#include "config.h"
#include "data.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "notices.h"
#include "notify.h"
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
	 * A pull was announced by worker_wake_pull.  A wake while every pull
	 * slot is busy signals no one (a burst of callbacks would otherwise
	 * send a worker through an empty scan per callback); the flag makes
	 * the puller that is finishing look once more instead of napping.
	 */
	atomic_bool pull_pending;
	/* A refresh was asked for by worker_kick; under mu. */
	bool refresh_pending;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const struct config *cfg;
} bg = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* What a worker runs next: the scan it was woken for, or all. */
enum wake { WAKE_NONE, WAKE_TIMER, WAKE_PULL, WAKE_REFRESH };

/*
 * Under mu: a pending wake.  A refresh is taken (cleared) here; a pull
 * only when a pull slot is free, and left set for try_pull to clear
 * when it holds a slot, so it cannot get lost between here and there.
 */
static enum wake
wanted(void)
{
	if (bg.refresh_pending) {
		bg.refresh_pending = false;
		return WAKE_REFRESH;
	}
	if (atomic_load(&bg.pull_pending) &&
	    atomic_load(&bg.pulling) < bg.max_pulls)
		return WAKE_PULL;
	return WAKE_NONE;
}

/* Wait up to ms for a wake: what it is for, WAKE_TIMER when none came. */
static enum wake
nap(long ms)
{
	struct timespec until = realtime_after_ms(ms);
	enum wake w = WAKE_NONE;
	int rc = 0;

	pthread_mutex_lock(&bg.mu);
	while (!atomic_load(&bg.stop) && (w = wanted()) == WAKE_NONE &&
	    rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&bg.cv, &bg.mu, &until);
	pthread_mutex_unlock(&bg.mu);
	return w == WAKE_NONE ? WAKE_TIMER : w;
}

void
worker_kick(void)
{
	pthread_mutex_lock(&bg.mu);
	bg.refresh_pending = true;
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

/* One round of what w is for; true when it found work. */
static bool
scan(PGconn *c, enum wake w)
{
	switch (w) {
	case WAKE_PULL:
		return try_pull(c);
	case WAKE_REFRESH:
		return refresh_one(c);
	default:
		/* Tokens first: a refresh missed is a connection lost.  The
		 * notices before the pulls, which may find work for long.
		 * Notifications last: a burst of registrations must not hold
		 * up pulls (a deleted connection's revocations that wait for
		 * its removals are skipped by revocations_one meanwhile). */
		return refresh_one(c) || revocations_one(c) ||
		    sync_poll_one(c) || notices_one(c, bg.cfg) ||
		    try_pull(c) || notify_one(c);
	}
}

/* The worker's connection, opened again when lost; NULL when it cannot. */
static PGconn *
connection(PGconn *c)
{
	char *err = NULL;

	if (c != NULL && PQstatus(c) == CONNECTION_OK)
		return c;
	PQfinish(c);
	if ((c = db_open(bg.cfg->database_url, &err)) == NULL) {
		log_kv(LOG_WARN, "refresher cannot connect", "error", err, NULL);
		free(err);
	}
	return c;
}

static void *
worker(void *arg)
{
	PGconn *c = NULL;
	long idle_ms = bg.cfg->refresh_interval_s * 1000;
	enum wake w = WAKE_TIMER;

	(void)arg;
	while (!atomic_load(&bg.stop)) {
		if ((c = connection(c)) == NULL) {
			nap(2000);
			w = WAKE_TIMER; /* a wake taken meanwhile: scan all */
			continue;
		}
		/* Rotations still waiting for PostgreSQL are stored before
		 * anything else is refreshed (the rescue thread has them). */
		if (rescue_holds_workers()) {
			nap(250);
			w = WAKE_TIMER;
			continue;
		}
		/* Found work: the same again, else wait for the next wake. */
		if (!scan(c, w))
			w = nap(idle_ms);
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
