/*
 * The read cache: a hash table of rendered bodies under one mutex, with a
 * FIFO list for simple eviction, and a listener thread that LISTENs on
 * finxd_data over a PGconn of its own and drops a user's entries when a
 * notification names them.  The cache serves only while that listener is
 * connected: a lost connection may have lost notifications, so the cache
 * is emptied and turned off until LISTEN succeeds again.
 *
 * The race that matters: a request reads the database, an invalidation
 * arrives, then the request stores what it read.  Every invalidation
 * bumps a sequence number; a request notes it before reading
 * (cache_begin) and cache_put refuses to store when it moved.
 *
 * One database read per key at a time (cache_fill_begin): requests that
 * miss a key another request is reading wait for it, up to
 * CACHE_FILL_WAIT_MS, instead of all reading PostgreSQL at once.
 */
#include "cache.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "secret.h"

#define NBUCKETS 8192 /* power of two */
#define POLL_MS 200
#define PING_IDLE_MS 10000 /* re-LISTEN after this much silence */
#define PING_TIMEOUT_MS 5000
#define CONNECT_TIMEOUT_MS 5000
#define RETRY_MAX_MS 5000

struct entry {
	struct entry *hnext;      /* hash chain */
	struct entry *prev, *next; /* insertion order, oldest first */
	uint64_t hash;
	char *key;
	size_t klen;
	char *user;
	int64_t born_ms;
	struct cache_body *body;
};

/*
 * A key one request is reading from the database (cache_fill_begin).
 * Unlinked by its filler when done; freed by whoever leaves it last, so a
 * waiter never mistakes a new flight at the same address for its own.
 */
struct flight {
	struct flight *next;
	uint64_t hash;
	char *key;
	size_t klen;
	int waiters;
	bool done, stored;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t filled; /* a flight ended */
	struct flight *flights;
	bool enabled;
	uint64_t seq;   /* bumped by every invalidation and state change */
	int writers;    /* local commits in progress (cache_write_begin) */
	struct entry *tab[NBUCKETS];
	struct entry *oldest, *newest;
	size_t n, bytes;
	long hits, misses;
} cache = { .mu = PTHREAD_MUTEX_INITIALIZER,
	.filled = PTHREAD_COND_INITIALIZER, .seq = 1 };

static struct {
	pthread_t thread;
	bool running;
	atomic_bool stop;
	char *conninfo;
} lsn;

struct cache_body *
cache_body_new(const void *p, size_t n)
{
	struct cache_body *b = xmalloc(sizeof(*b) + n + 1);

	atomic_init(&b->refs, 1);
	b->len = n;
	if (n > 0)
		memcpy(b->data, p, n);
	b->data[n] = '\0';
	return b;
}

void
cache_body_unref(struct cache_body *b)
{
	if (b != NULL && atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

/* FNV-1a, 64 bits. */
static uint64_t
hash_key(const char *k, size_t n)
{
	uint64_t h = 14695981039346656037ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)k[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Unlink e from the table and the list and free it (lock held). */
static void
entry_remove(struct entry *e)
{
	struct entry **pp = &cache.tab[e->hash & (NBUCKETS - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		cache.oldest = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		cache.newest = e->prev;
	cache.n--;
	cache.bytes -= e->body->len + e->klen;
	cache_body_unref(e->body);
	free(e->key);
	free(e->user);
	free(e);
}

static struct entry *
entry_find(const char *key, size_t klen, uint64_t h)
{
	struct entry *e;

	for (e = cache.tab[h & (NBUCKETS - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && e->klen == klen &&
		    memcmp(e->key, key, klen) == 0)
			return e;
	return NULL;
}

/* Drop user's entries, or all when user is NULL (lock held). */
/* Younger than CACHE_TTL_S: still served. */
static bool
entry_fresh(const struct entry *e)
{
	return mono_ms() - e->born_ms < CACHE_TTL_S * 1000L;
}

static void
drop_locked(const char *user)
{
	struct entry *e, *next;

	cache.seq++;
	for (e = cache.oldest; e != NULL; e = next) {
		next = e->next;
		if (user == NULL || strcmp(e->user, user) == 0)
			entry_remove(e);
	}
}

bool
cache_enabled(void)
{
	bool on;

	pthread_mutex_lock(&cache.mu);
	on = cache.enabled;
	pthread_mutex_unlock(&cache.mu);
	return on;
}

struct cache_body *
cache_get(const char *key, size_t klen)
{
	uint64_t h = hash_key(key, klen);
	struct cache_body *b = NULL;
	struct entry *e;

	pthread_mutex_lock(&cache.mu);
	if (!cache.enabled) {
		pthread_mutex_unlock(&cache.mu);
		return NULL;
	}
	if ((e = entry_find(key, klen, h)) != NULL) {
		if (!entry_fresh(e))
			entry_remove(e);
		else {
			b = e->body;
			atomic_fetch_add(&b->refs, 1);
		}
	}
	if (b != NULL)
		cache.hits++;
	else
		cache.misses++;
	pthread_mutex_unlock(&cache.mu);
	return b;
}

static struct flight **
flight_find(const char *key, size_t klen, uint64_t h)
{
	struct flight **f;

	for (f = &cache.flights; *f != NULL; f = &(*f)->next)
		if ((*f)->hash == h && (*f)->klen == klen &&
		    memcmp((*f)->key, key, klen) == 0)
			return f;
	return NULL;
}

static void
flight_free(struct flight *f)
{
	free(f->key);
	free(f);
}

enum cache_fill
cache_fill_begin(const char *key, size_t klen, int64_t deadline_ms)
{
	uint64_t h = hash_key(key, klen);
	struct flight **fp, *f;
	bool stored;

	pthread_mutex_lock(&cache.mu);
	if (!cache.enabled) {
		pthread_mutex_unlock(&cache.mu);
		return CACHE_FILL_OFF;
	}
	if ((fp = flight_find(key, klen, h)) == NULL) {
		f = xcalloc(1, sizeof(*f));
		f->hash = h;
		f->key = xmalloc(klen);
		memcpy(f->key, key, klen);
		f->klen = klen;
		f->next = cache.flights;
		cache.flights = f;
		pthread_mutex_unlock(&cache.mu);
		return CACHE_FILL_MINE;
	}
	f = *fp;
	f->waiters++;
	while (!f->done) {
		int64_t left = deadline_ms - mono_ms();
		struct timespec until;

		if (left <= 0)
			break;
		/* The condition variable keeps the wall clock; a clock step
		 * only shortens or stretches this one wait. */
		until = realtime_after_ms(left);
		pthread_cond_timedwait(&cache.filled, &cache.mu, &until);
	}
	stored = f->done && f->stored;
	if (--f->waiters == 0 && f->done)
		flight_free(f);
	pthread_mutex_unlock(&cache.mu);
	return stored ? CACHE_FILL_WAITED : CACHE_FILL_OFF;
}

void
cache_fill_end(const char *key, size_t klen)
{
	uint64_t h = hash_key(key, klen);
	struct flight **fp, *f;
	struct entry *e;

	pthread_mutex_lock(&cache.mu);
	/* Only the filler ends a flight, and a new one for the key starts
	 * only after this unlinks it: the one found is the caller's. */
	if ((fp = flight_find(key, klen, h)) != NULL) {
		f = *fp;
		*fp = f->next;
		f->done = true;
		f->stored = (e = entry_find(key, klen, h)) != NULL &&
		    entry_fresh(e);
		if (f->waiters == 0)
			flight_free(f);
		else
			pthread_cond_broadcast(&cache.filled);
	}
	pthread_mutex_unlock(&cache.mu);
}

int
cache_fill_waiting(const char *key, size_t klen)
{
	struct flight **fp;
	int n;

	pthread_mutex_lock(&cache.mu);
	fp = flight_find(key, klen, hash_key(key, klen));
	n = fp != NULL ? (*fp)->waiters : 0;
	pthread_mutex_unlock(&cache.mu);
	return n;
}

uint64_t
cache_begin(void)
{
	uint64_t s;

	pthread_mutex_lock(&cache.mu);
	s = cache.enabled ? cache.seq : 0;
	pthread_mutex_unlock(&cache.mu);
	return s;
}

void
cache_put(const char *key, size_t klen, const char *user,
    struct cache_body *body, uint64_t ticket)
{
	uint64_t h = hash_key(key, klen);
	struct entry *e, *old;

	if (ticket == 0 || user == NULL || body->len > CACHE_MAX_BODY)
		return;
	e = xcalloc(1, sizeof(*e));
	e->hash = h;
	e->key = xmalloc(klen);
	memcpy(e->key, key, klen);
	e->klen = klen;
	e->user = xstrdup(user);
	e->body = body;
	pthread_mutex_lock(&cache.mu);
	if (!cache.enabled || cache.seq != ticket || cache.writers > 0) {
		pthread_mutex_unlock(&cache.mu);
		free(e->key);
		free(e->user);
		free(e);
		return;
	}
	atomic_fetch_add(&body->refs, 1);
	e->born_ms = mono_ms();
	if ((old = entry_find(key, klen, h)) != NULL)
		entry_remove(old);
	e->hnext = cache.tab[h & (NBUCKETS - 1)];
	cache.tab[h & (NBUCKETS - 1)] = e;
	e->prev = cache.newest;
	if (cache.newest != NULL)
		cache.newest->next = e;
	else
		cache.oldest = e;
	cache.newest = e;
	cache.n++;
	cache.bytes += body->len + klen;
	/* Evict oldest first: simple, and old entries are the likeliest
	 * to be near their TTL anyway. */
	while (cache.n > CACHE_MAX_ENTRIES || cache.bytes > CACHE_MAX_BYTES)
		entry_remove(cache.oldest);
	pthread_mutex_unlock(&cache.mu);
}

void
cache_invalidate(const char *user)
{
	pthread_mutex_lock(&cache.mu);
	drop_locked(user != NULL && *user != '\0' ? user : NULL);
	pthread_mutex_unlock(&cache.mu);
}

void
cache_write_begin(const char *user)
{
	pthread_mutex_lock(&cache.mu);
	cache.writers++;
	drop_locked(user);
	pthread_mutex_unlock(&cache.mu);
}

void
cache_write_end(const char *user)
{
	pthread_mutex_lock(&cache.mu);
	drop_locked(user);
	if (cache.writers > 0)
		cache.writers--;
	pthread_mutex_unlock(&cache.mu);
}

void
cache_set_enabled(bool on)
{
	pthread_mutex_lock(&cache.mu);
	drop_locked(NULL);
	cache.enabled = on;
	pthread_mutex_unlock(&cache.mu);
}

void
cache_stats(long *hits, long *misses, long *entries, long *bytes)
{
	pthread_mutex_lock(&cache.mu);
	*hits = cache.hits;
	*misses = cache.misses;
	*entries = (long)cache.n;
	*bytes = (long)cache.bytes;
	pthread_mutex_unlock(&cache.mu);
}

void
cache_key_add(struct buf *k, const char *s)
{
	if (s == NULL)
		buf_append(k, "-;", 2);
	else {
		buf_appendf(k, "%zu:", strlen(s));
		buf_append_str(k, s);
	}
}

/* Append the JSON escape of c, a quote, a backslash or a control. */
static void
json_escape_char(struct buf *b, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char esc[6] = { '\\', 'u', '0', '0', 0, 0 };

	switch (c) {
	case '"':
		buf_append(b, "\\\"", 2);
		break;
	case '\\':
		buf_append(b, "\\\\", 2);
		break;
	case '\b':
		buf_append(b, "\\b", 2);
		break;
	case '\f':
		buf_append(b, "\\f", 2);
		break;
	case '\n':
		buf_append(b, "\\n", 2);
		break;
	case '\r':
		buf_append(b, "\\r", 2);
		break;
	case '\t':
		buf_append(b, "\\t", 2);
		break;
	default:
		esc[4] = hex[c >> 4];
		esc[5] = hex[c & 0xf];
		buf_append(b, esc, 6);
	}
}

void
cache_json_str(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *run;

	if (s == NULL) {
		buf_append(b, "null", 4);
		return;
	}
	buf_append(b, "\"", 1);
	for (;;) {
		/* Copy the longest run that needs no escaping at once. */
		for (run = p; *p >= 0x20 && *p != '"' && *p != '\\'; p++)
			;
		if (p > run)
			buf_append(b, run, (size_t)(p - run));
		if (*p == '\0')
			break;
		json_escape_char(b, *p++);
	}
	buf_append(b, "\"", 1);
}

/* ---- the listener ---- */

static bool
stopping(void)
{
	return atomic_load(&lsn.stop);
}

/* Wait up to ms for fd to be ready for events; false on stop. */
static int
wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };

	return poll(&p, 1, ms);
}

/*
 * Connect without blocking past stop: PQconnectStartParams plus
 * PQconnectPoll with our own deadline.  NULL on failure (*err set).
 */
static PGconn *
listener_connect(char **err)
{
	/* Keywords before dbname are defaults the operator's string may
	 * override (as in db.c); keepalives notice a silent peer. */
	const char *const kw[] = { "application_name", "keepalives",
		"keepalives_idle", "keepalives_interval", "keepalives_count",
		"dbname", NULL };
	const char *const vals[] = { "finxd-listen", "1", "10", "5", "3",
		lsn.conninfo && *lsn.conninfo ? lsn.conninfo : NULL, NULL };
	int64_t until = mono_ms() + CONNECT_TIMEOUT_MS;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	PGconn *c = PQconnectStartParams(kw, vals, 1);

	if (c == NULL) {
		*err = xstrdup("out of memory");
		return NULL;
	}
	while (PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
	    st != PGRES_POLLING_FAILED) {
		int rc;

		if (stopping() || mono_ms() > until) {
			*err = xstrdup(stopping() ? "stopping" : "timeout");
			PQfinish(c);
			return NULL;
		}
		rc = wait_fd(PQsocket(c),
		    st == PGRES_POLLING_READING ? POLLIN : POLLOUT, POLL_MS);
		if (rc > 0)
			st = PQconnectPoll(c);
	}
	if (PQstatus(c) != CONNECTION_OK) {
		const char *m = PQerrorMessage(c);

		*err = xstrndup(m, strcspn(m, "\n"));
		PQfinish(c);
		return NULL;
	}
	db_quiet_notices(c);
	return c;
}

static bool
listen_now(PGconn *c)
{
	PGresult *r = PQexec(c, "LISTEN " CACHE_CHANNEL);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;

	PQclear(r);
	return ok;
}

/* Apply every pending notification; false when the connection broke. */
static bool
drain(PGconn *c, bool *ping_out)
{
	PGnotify *n;
	PGresult *r;

	if (!PQconsumeInput(c))
		return false;
	while ((n = PQnotifies(c)) != NULL) {
		cache_invalidate(n->extra);
		PQfreemem(n);
	}
	while (*ping_out && !PQisBusy(c)) {
		if ((r = PQgetResult(c)) == NULL) {
			*ping_out = false;
			break;
		}
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			PQclear(r);
			return false;
		}
		PQclear(r);
	}
	return PQstatus(c) == CONNECTION_OK;
}

/*
 * Serve one listening connection until it breaks or stop.  A quiet
 * connection is proved alive by re-sending LISTEN (a no-op that keeps
 * pg_stat_activity's query LISTEN ...) with a deadline for its answer.
 */
static void
listen_loop(PGconn *c)
{
	int64_t last = mono_ms(), ping_at = 0;
	bool ping_out = false;

	while (!stopping()) {
		int rc = wait_fd(PQsocket(c), POLLIN, POLL_MS);

		if (rc < 0)
			continue; /* EINTR */
		if (rc > 0) {
			if (!drain(c, &ping_out))
				return;
			last = mono_ms();
		}
		if (ping_out && mono_ms() - ping_at > PING_TIMEOUT_MS)
			return;
		if (!ping_out && mono_ms() - last > PING_IDLE_MS) {
			if (!PQsendQuery(c, "LISTEN " CACHE_CHANNEL))
				return;
			ping_out = true;
			ping_at = last = mono_ms();
		}
	}
}

static void *
listener_main(void *arg)
{
	long backoff = 250;
	bool warned = false;

	(void)arg;
	while (!stopping()) {
		char *err = NULL;
		PGconn *c = listener_connect(&err);

		if (c != NULL && !listen_now(c)) {
			const char *m = PQerrorMessage(c);

			err = xstrndup(m, strcspn(m, "\n"));
			PQfinish(c);
			c = NULL;
		}
		if (c == NULL) {
			if (!warned && !stopping())
				log_kv(LOG_WARN, "read cache off: cannot listen",
				    "error", err, NULL);
			warned = true;
			free(err);
			for (long t = 0; t < backoff && !stopping(); t += POLL_MS)
				wait_fd(-1, 0, POLL_MS);
			backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS
							     : backoff * 2;
			continue;
		}
		/* Notifications before LISTEN are lost: start empty. */
		cache_set_enabled(true);
		log_kv(LOG_INFO, "read cache on", "channel", CACHE_CHANNEL, NULL);
		warned = false;
		backoff = 250;
		listen_loop(c);
		cache_set_enabled(false);
		PQfinish(c);
		if (!stopping())
			log_kv(LOG_WARN, "read cache off: listener connection "
					 "lost", NULL);
	}
	return NULL;
}

void
cache_start(const struct config *cfg)
{
	if (!cfg->read_cache) {
		log_kv(LOG_INFO, "read cache disabled by configuration", NULL);
		return;
	}
	lsn.conninfo = xstrdup(cfg->database_url ? cfg->database_url : "");
	atomic_store(&lsn.stop, false);
	if (pthread_create(&lsn.thread, NULL, listener_main, NULL) != 0) {
		log_kv(LOG_ERROR, "cannot start the read cache listener", NULL);
		free_secret(lsn.conninfo);
		lsn.conninfo = NULL;
		return;
	}
	lsn.running = true;
}

void
cache_stop(void)
{
	if (lsn.running) {
		atomic_store(&lsn.stop, true);
		pthread_join(lsn.thread, NULL);
		lsn.running = false;
	}
	cache_set_enabled(false);
	free_secret(lsn.conninfo);
	lsn.conninfo = NULL;
}
