/*
 * Process identity, heartbeat and the in-flight set: see lease.h.
 */
#include "lease.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "rekey.h"
#include "secret.h"
#include "store_lease.h"
#include "text.h"

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
	int *holds;
	size_t n, cap;
} ls = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/*
 * The process id survives restarts on one state directory: a process
 * that was stopped with rotations pending comes back as the holder of
 * its own leases (peers see its heartbeat again at once, and its own
 * expired leases are its to take), instead of a stranger whose leases
 * look abandoned.  Without a state directory every start is a new id.
 */
static char *
persisted_id(const char *dir)
{
	char *path = xasprintf("%s/process-id", dir), *tmp, buf[64] = "";
	char *id = NULL;
	FILE *f = fopen(path, "r");

	if (f != NULL) {
		if (fgets(buf, sizeof(buf), f) != NULL) {
			buf[strcspn(buf, "\n")] = '\0';
			if (uuid_valid(buf))
				id = xstrdup(buf);
		}
		fclose(f);
	}
	if (id == NULL) {
		bool ok;

		id = uuid_new();
		tmp = xasprintf("%s.tmp", path);
		f = fopen(tmp, "w");
		ok = f != NULL && fprintf(f, "%s\n", id) > 0 && fflush(f) == 0 &&
		    fsync(fileno(f)) == 0;
		if (f != NULL && fclose(f) != 0)
			ok = false;
		if (!ok || rename(tmp, path) != 0)
			log_kv(LOG_WARN, "cannot keep the process id in "
					 "FINXD_STATE_DIR; a new one each start",
			    "error", strerror(errno), NULL);
		free(tmp);
	}
	free(path);
	return id;
}

void
lease_init(const struct config *cfg)
{
	ls.cfg = cfg;
	free(ls.id);
	ls.id = cfg->state_dir ? persisted_id(cfg->state_dir) : uuid_new();
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
	char host[256] = "";

	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "unknown");
	return store_process_beat(c, ls.id, host, (long)getpid(),
	    FINXD_VERSION);
}

static void
log_db(const char *what)
{
	log_kv(LOG_WARN, what, "sqlstate", db_failure_sqlstate(), "db_error",
	    db_failure_message(), NULL);
}

/* The heartbeat's own connection: c while it works, else a new one
 * (NULL when PostgreSQL cannot be reached). */
static PGconn *
heartbeat_conn(PGconn *c)
{
	char *err = NULL;

	if (c != NULL && PQstatus(c) == CONNECTION_OK)
		return c;
	PQfinish(c);
	if ((c = db_open(ls.cfg->database_url, &err)) == NULL)
		free(err);
	/* Rows of processes gone for a week: their leases have long been
	 * free for the taking. */
	else if (!store_process_prune(c))
		log_db("processes gone for a week not forgotten");
	return c;
}

static void *
heartbeat(void *arg)
{
	PGconn *c = NULL;
	bool failing = false;

	(void)arg;
	while (!atomic_load(&ls.stop)) {
		struct timespec until;
		int64_t zero = 0;

		c = heartbeat_conn(c);
		if (c != NULL && beat(c)) {
			atomic_compare_exchange_strong(&ls.connected_since,
			    &zero, mono_ms());
			failing = false;
			rekey_policy_poll(c);
		} else {
			/* Once per break: a lost connection says so itself. */
			if (c != NULL && !failing)
				log_db("heartbeat failed");
			failing = c != NULL;
			atomic_store(&ls.connected_since, 0);
		}
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
		PGconn *c = db_open(ls.cfg->database_url, &err);

		if (c != NULL && !store_process_forget(c, ls.id))
			log_db("this process's heartbeat row not removed");
		free(err);
		PQfinish(c);
	}
}

/*
 * The in-flight set: small (at most the workers plus on-demand refreshes
 * running at once, plus rotations the rescue holds), so a plain array.
 * Each id counts its holds: a refresher holds it alone (add), the rescue
 * may hold one id twice (a journal with two rotations of it).
 */
static ssize_t
find(const char *id)
{
	size_t i;

	for (i = 0; i < ls.n; i++)
		if (strcasecmp(ls.ids[i], id) == 0)
			return (ssize_t)i;
	return -1;
}

static void
hold(const char *id)
{
	ssize_t i = find(id);

	if (i >= 0) {
		ls.holds[i]++;
		return;
	}
	if (ls.n == ls.cap) {
		ls.cap = ls.cap ? ls.cap * 2 : 16;
		ls.ids = xrealloc(ls.ids, ls.cap * sizeof(char *));
		ls.holds = xrealloc(ls.holds, ls.cap * sizeof(int));
	}
	ls.ids[ls.n] = xstrdup(id);
	ls.holds[ls.n++] = 1;
}

bool
lease_inflight_add(const char *id)
{
	bool added;

	pthread_mutex_lock(&ls.mu);
	added = find(id) < 0;
	if (added)
		hold(id);
	pthread_mutex_unlock(&ls.mu);
	return added;
}

void
lease_inflight_hold(const char *id)
{
	pthread_mutex_lock(&ls.mu);
	hold(id);
	pthread_mutex_unlock(&ls.mu);
}

void
lease_inflight_del(const char *id)
{
	ssize_t i;

	pthread_mutex_lock(&ls.mu);
	if ((i = find(id)) >= 0 && --ls.holds[i] == 0) {
		free(ls.ids[i]);
		ls.ids[i] = ls.ids[--ls.n];
		ls.holds[i] = ls.holds[ls.n];
	}
	pthread_mutex_unlock(&ls.mu);
}

char *
lease_inflight_literal(void)
{
	struct buf b;
	size_t i;

	/* 37 bytes an id: room for far more than can be in flight. */
	buf_init(&b, 64u << 20);
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
