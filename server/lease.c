/*
 * Process identity, heartbeat and the in-flight set: see lease.h.
 */
#include "lease.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "util.h"

#ifndef FINXD_VERSION
#define FINXD_VERSION "dev"
#endif

static struct {
	char *id;
	int lease_s;
	const struct config *cfg;
	/* heartbeat */
	pthread_t thread;
	bool running;
	atomic_bool stop;
	/* mono ms since the heartbeat has succeeded without a break; 0 while
	 * it is failing */
	_Atomic int64_t connected_since;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* in flight */
	char **ids;
	size_t n, cap;
} ls = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

void
lease_init(const struct config *cfg)
{
	ls.cfg = cfg;
	free(ls.id);
	ls.id = uuid_new();
	/* The finX call's own bound, its store, and slack for a slow
	 * database: a holder that is alive is never overtaken. */
	ls.lease_s = (int)(cfg->finx_timeout_ms / 1000) + LEASE_STALE_S;
}

const char *
lease_process_id(void)
{
	return ls.id;
}

int
lease_seconds(void)
{
	return ls.lease_s;
}

bool
lease_may_take_over(void)
{
	int64_t since = atomic_load(&ls.connected_since);

	return since != 0 && mono_ms() - since >= LEASE_STALE_S * 1000L;
}

static bool
beat(PGconn *c)
{
	char pid[16], host[256] = "";

	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "unknown");
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	return db_cmd(c,
	    "INSERT INTO finxd_processes (id, host, pid, version) VALUES "
	    "($1, $2, $3::int, $4) ON CONFLICT (id) DO UPDATE SET "
	    "heartbeat_at = now()",
	    4, (const char *[]){ ls.id, host, pid, FINXD_VERSION });
}

static void *
heartbeat(void *arg)
{
	PGconn *c = NULL;

	(void)arg;
	while (!atomic_load(&ls.stop)) {
		struct timespec until;

		if (c != NULL && PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = NULL;
		}
		if (c == NULL) {
			char *err = NULL;

			if ((c = db_connect(ls.cfg->database_url, &err)) == NULL)
				free(err);
			else
				/* Rows of processes gone for a week: their
				 * leases have long been free for the taking. */
				db_cmd(c,
				    "DELETE FROM finxd_processes WHERE "
				    "heartbeat_at < now() - interval '7 days'",
				    0, NULL);
		}
		if (c != NULL && beat(c)) {
			int64_t zero = 0;

			atomic_compare_exchange_strong(&ls.connected_since,
			    &zero, mono_ms());
		} else
			atomic_store(&ls.connected_since, 0);
		until = realtime_after_ms(LEASE_HEARTBEAT_MS);
		pthread_mutex_lock(&ls.mu);
		if (!atomic_load(&ls.stop))
			pthread_cond_timedwait(&ls.cv, &ls.mu, &until);
		pthread_mutex_unlock(&ls.mu);
	}
	PQfinish(c);
	return NULL;
}

void
lease_heartbeat_start(void)
{
	atomic_store(&ls.stop, false);
	atomic_store(&ls.connected_since, 0);
	if (pthread_create(&ls.thread, NULL, heartbeat, NULL) != 0)
		abort();
	ls.running = true;
}

void
lease_heartbeat_stop(bool forget)
{
	if (!ls.running)
		return;
	pthread_mutex_lock(&ls.mu);
	atomic_store(&ls.stop, true);
	pthread_cond_broadcast(&ls.cv);
	pthread_mutex_unlock(&ls.mu);
	pthread_join(ls.thread, NULL);
	ls.running = false;
	if (forget) {
		char *err = NULL;
		PGconn *c = db_connect(ls.cfg->database_url, &err);

		if (c != NULL)
			db_cmd(c, "DELETE FROM finxd_processes WHERE id = $1", 1,
			    (const char *[]){ ls.id });
		free(err);
		PQfinish(c);
	}
}

/* The in-flight set: small (at most the workers plus on-demand refreshes
 * running at once), so a plain array. */

bool
lease_inflight_add(const char *id)
{
	size_t i;

	pthread_mutex_lock(&ls.mu);
	for (i = 0; i < ls.n; i++)
		if (strcmp(ls.ids[i], id) == 0) {
			pthread_mutex_unlock(&ls.mu);
			return false;
		}
	if (ls.n == ls.cap) {
		ls.cap = ls.cap ? ls.cap * 2 : 16;
		ls.ids = xrealloc(ls.ids, ls.cap * sizeof(char *));
	}
	ls.ids[ls.n++] = xstrdup(id);
	pthread_mutex_unlock(&ls.mu);
	return true;
}

void
lease_inflight_del(const char *id)
{
	size_t i;

	pthread_mutex_lock(&ls.mu);
	for (i = 0; i < ls.n; i++)
		if (strcmp(ls.ids[i], id) == 0) {
			free(ls.ids[i]);
			ls.ids[i] = ls.ids[--ls.n];
			break;
		}
	pthread_mutex_unlock(&ls.mu);
}

char *
lease_inflight_literal(void)
{
	struct buf b;
	size_t i;

	buf_init(&b, 1u << 20);
	buf_append_str(&b, "{");
	pthread_mutex_lock(&ls.mu);
	for (i = 0; i < ls.n; i++) {
		if (i > 0)
			buf_append_str(&b, ",");
		buf_append_str(&b, ls.ids[i]);
	}
	pthread_mutex_unlock(&ls.mu);
	buf_append_str(&b, "}");
	return buf_steal(&b);
}
