/*
 * The rescue of rotated tokens: see rescue.h.
 *
 * Journal: one file per rotation, <state_dir>/rescue-<connection>-<gen>.json,
 * written to a .tmp name, fsynced, renamed and the directory fsynced, so a
 * file that exists under its final name is complete.  It holds the
 * tokens sealed with the first token key (AAD "rescue:<id>:<column>") and
 * the times needed to store them as of the request: never a token in
 * plain text.  <state_dir>/lock (flock) keeps two processes off one
 * directory: two replaying the same rotation could not both store it.
 */
#include "rescue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "clock.h"
#include "config.h"
#include "db.h"
#include "lease.h"
#include "log.h"
#include "mem.h"
#include "secret.h"
#include "store.h"
#include "store_tokens.h"
#include "text.h"

#define JOURNAL_MAX (64 * 1024)
#define BACKOFF_MIN_MS 250
/* Short: the rescue must land well inside LEASE_STALE_S after
 * PostgreSQL is back, before anyone may take the lease over. */
#define BACKOFF_MAX_MS 4000

struct entry {
	struct entry *next;
	char *id;
	char *grant; /* connections.connected_at of the grant, or NULL */
	long gen;
	long due_s;
	struct finx_tokens t;
	char *path; /* journal file, or NULL (in memory only) */
};

static struct {
	const struct config *cfg;
	char *dir;
	int lock_fd;
	struct entry *head;
	atomic_int pending;
	atomic_bool tried_on_db; /* the last try had a working connection */
	int left;                /* still pending when rescue_stop ended */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool running;
	atomic_bool stop;
} rs = { .lock_fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER };

static void
entry_free(struct entry *e)
{
	free(e->id);
	free(e->grant);
	finx_tokens_free(&e->t);
	free(e->path);
	free(e);
}

static bool
fsync_dir(void)
{
	int fd = open(rs.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool ok = fd >= 0 && fsync(fd) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

static char *
seal_col(const char *id, const char *column, const char *plain)
{
	return store_seal("rescue", id, column, plain);
}

static bool
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* The journal text of e: its tokens sealed, never in plain text. */
static json_object *
journal_json(const struct entry *e)
{
	json_object *o = json_object_new_object();
	char *access = seal_col(e->id, "access_token", e->t.access_token);
	char *refresh = e->t.refresh_token
	    ? seal_col(e->id, "refresh_token", e->t.refresh_token)
	    : NULL;

	json_object_object_add(o, "v", json_object_new_int(1));
	json_object_object_add(o, "connection_id", json_object_new_string(e->id));
	json_object_object_add(o, "generation", json_object_new_int64(e->gen));
	if (e->grant != NULL)
		json_object_object_add(o, "grant",
		    json_object_new_string(e->grant));
	json_object_object_add(o, "due_s", json_object_new_int64(e->due_s));
	json_object_object_add(o, "sent_ms", json_object_new_int64(e->t.sent_ms));
	json_object_object_add(o, "expires_in",
	    json_object_new_int64(e->t.expires_in));
	json_object_object_add(o, "refresh_expires_in",
	    json_object_new_int64(e->t.refresh_expires_in));
	if (e->t.scope != NULL)
		json_object_object_add(o, "scope",
		    json_object_new_string(e->t.scope));
	json_object_object_add(o, "access", json_object_new_string(access));
	json_object_object_add(o, "refresh",
	    refresh ? json_object_new_string(refresh) : NULL);
	free(access);
	free(refresh);
	return o;
}

/*
 * Write text to path so that a file under that name is complete: a .tmp
 * name, fsynced, renamed, the directory fsynced.  0, or the errno.
 */
static int
write_durably(const char *path, const char *text)
{
	char *tmp = xasprintf("%s.tmp", path);
	int fd, err;
	bool ok;

	errno = 0;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ok = fd >= 0 && write_all(fd, text, strlen(text)) && fsync(fd) == 0;
	err = errno;
	if (fd >= 0 && close(fd) != 0)
		ok = false;
	ok = ok && rename(tmp, path) == 0 && fsync_dir();
	if (!ok && err == 0)
		err = errno != 0 ? errno : EIO;
	if (!ok)
		unlink(tmp);
	free(tmp);
	return ok ? 0 : err;
}

/* Write e's journal file; false (logged) when the disk refuses. */
static bool
journal_write(struct entry *e)
{
	json_object *o = journal_json(e);
	char *path = xasprintf("%s/rescue-%s-%ld.json", rs.dir, e->id, e->gen);
	int err = write_durably(path,
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));

	json_object_put(o);
	if (err != 0) {
		log_kv(LOG_ERROR, "rescue journal not written; the rotated "
				  "tokens are kept in memory only",
		    "connection_id", e->id, "error", strerror(err), NULL);
		free(path);
		return false;
	}
	e->path = path;
	return true;
}

static char *
open_col(const char *id, const char *column, json_object *v)
{
	if (!json_object_is_type(v, json_type_string))
		return NULL;
	return store_open("rescue", id, column, json_object_get_string(v));
}

static long
jlong(json_object *o, const char *key, long dflt)
{
	json_object *v = json_object_object_get(o, key);

	return json_object_is_type(v, json_type_int)
	    ? (long)json_object_get_int64(v)
	    : dflt;
}

/* Parse one journal file into an entry; NULL when it is unusable. */
static struct entry *
journal_parse(const char *path, const char *text)
{
	json_object *o = json_tokener_parse(text), *v;
	struct entry *e = NULL;
	const char *id;

	if (o == NULL || jlong(o, "v", 0) != 1 ||
	    !json_object_is_type(v = json_object_object_get(o,
				     "connection_id"),
		json_type_string) ||
	    !uuid_valid(id = json_object_get_string(v)))
		goto out;
	e = xcalloc(1, sizeof(*e));
	e->id = xstrdup(id);
	e->gen = jlong(o, "generation", -1);
	v = json_object_object_get(o, "grant");
	e->grant = json_object_is_type(v, json_type_string)
	    ? xstrdup(json_object_get_string(v))
	    : NULL;
	e->due_s = jlong(o, "due_s", 0);
	e->t.sent_ms = jlong(o, "sent_ms", 0);
	e->t.expires_in = jlong(o, "expires_in", -1);
	e->t.refresh_expires_in = jlong(o, "refresh_expires_in", -1);
	v = json_object_object_get(o, "scope");
	e->t.scope = json_object_is_type(v, json_type_string)
	    ? xstrdup(json_object_get_string(v))
	    : NULL;
	e->t.access_token = open_col(id, "access_token",
	    json_object_object_get(o, "access"));
	v = json_object_object_get(o, "refresh");
	e->t.refresh_token = v != NULL ? open_col(id, "refresh_token", v)
				       : NULL;
	if (e->gen < 1 || e->t.access_token == NULL ||
	    (v != NULL && e->t.refresh_token == NULL)) {
		entry_free(e);
		e = NULL;
	} else
		e->path = xstrdup(path);
out:
	json_object_put(o);
	return e;
}

static char *
slurp(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *text;
	ssize_t n;

	if (fd < 0)
		return NULL;
	text = xcalloc(1, JOURNAL_MAX + 1);
	n = read(fd, text, JOURNAL_MAX);
	close(fd);
	if (n <= 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void
push(struct entry *e)
{
	pthread_mutex_lock(&rs.mu);
	e->next = rs.head;
	rs.head = e;
	pthread_cond_signal(&rs.cv);
	pthread_mutex_unlock(&rs.mu);
}

static void
load_entry(struct entry *e, int *loaded)
{
	lease_inflight_hold(e->id);
	atomic_store(&rs.tried_on_db, false);
	atomic_fetch_add(&rs.pending, 1);
	push(e);
	(*loaded)++;
}

/* The entry of journal file path, to be known as as_path; NULL when it
 * is unusable. */
static struct entry *
journal_read(const char *path, const char *as_path)
{
	char *text = slurp(path);
	struct entry *e = text ? journal_parse(as_path, text) : NULL;

	free_secret(text);
	return e;
}

/*
 * A .json.tmp file, never renamed, so its store was never tried: the
 * only copy when it is complete (fsynced before the crash), rubbish
 * when it is not.
 */
static void
load_tmp(const char *path, int *loaded)
{
	char *final = xstrndup(path, strlen(path) - 4);
	struct entry *e = journal_read(path, final);

	if (e != NULL && rename(path, final) == 0 && fsync_dir())
		load_entry(e, loaded);
	else {
		if (e != NULL)
			entry_free(e);
		unlink(path);
	}
	free(final);
}

static void
load_json(const char *path, int *loaded)
{
	struct entry *e = journal_read(path, path);
	char *bad;

	if (e != NULL) {
		load_entry(e, loaded);
		return;
	}
	/* Kept for the operator: perhaps a key that was removed from
	 * FINXD_TOKEN_KEYS too early. */
	bad = xasprintf("%s.bad", path);
	log_kv(LOG_ERROR, "rescue journal file unusable; moved aside", "file",
	    bad, NULL);
	rename(path, bad);
	free(bad);
}

/* Load what an earlier process left: each rotation becomes pending. */
static void
journal_load(void)
{
	DIR *d = opendir(rs.dir);
	struct dirent *de;
	int loaded = 0;
	char nbuf[16];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		size_t n = strlen(name);
		char *path;

		if (strncmp(name, "rescue-", 7) != 0)
			continue;
		path = xasprintf("%s/%s", rs.dir, name);
		if (n > 9 && strcmp(name + n - 9, ".json.tmp") == 0)
			load_tmp(path, &loaded);
		else if (n >= 5 && strcmp(name + n - 5, ".json") == 0)
			load_json(path, &loaded);
		free(path);
	}
	closedir(d);
	if (loaded == 0)
		return;
	snprintf(nbuf, sizeof(nbuf), "%d", loaded);
	log_kv(LOG_WARN, "rescue journal replayed: rotated tokens from an "
			 "earlier run are being stored",
	    "count", nbuf, NULL);
}

bool
rescue_init(const struct config *cfg)
{
	char *lock;

	rs.cfg = cfg;
	if (cfg->state_dir == NULL) {
		log_kv(LOG_WARN, "FINXD_STATE_DIR is not set: rotated tokens "
				 "that PostgreSQL cannot take are kept in memory "
				 "only and die with the process",
		    NULL);
		return true;
	}
	rs.dir = xstrdup(cfg->state_dir);
	if (mkdir(rs.dir, 0700) != 0 && errno != EEXIST) {
		log_kv(LOG_ERROR, "cannot create FINXD_STATE_DIR", "dir", rs.dir,
		    "error", strerror(errno), NULL);
		return false;
	}
	lock = xasprintf("%s/lock", rs.dir);
	rs.lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(lock);
	if (rs.lock_fd < 0 || flock(rs.lock_fd, LOCK_EX | LOCK_NB) != 0) {
		log_kv(LOG_ERROR, "FINXD_STATE_DIR is unusable or used by another "
				  "finxd process (each process needs its own)",
		    "dir", rs.dir, "error", strerror(errno), NULL);
		return false;
	}
	journal_load();
	return true;
}

/* A rotation is settled (stored or sent to revocation): forget it. */
static void
settle(struct entry *e, enum tokens_cas res)
{
	if (res == TOK_REVOKED)
		log_kv(LOG_WARN, "the connection changed while its refresh was in "
				 "flight; the rotated tokens were queued for "
				 "revocation at finX",
		    "connection_id", e->id, NULL);
	else if (res == TOK_GONE)
		log_kv(LOG_WARN, "the connection no longer exists; its rotated "
				 "tokens are dropped",
		    "connection_id", e->id, NULL);
	/* A file left behind is replayed harmlessly (the same grant past
	 * its generation is a success), but say so. */
	if (e->path != NULL && unlink(e->path) != 0)
		log_kv(LOG_WARN, "rescue journal file not removed", "file",
		    e->path, "error", strerror(errno), NULL);
	lease_inflight_del(e->id);
	entry_free(e);
}

enum tokens_cas
rescue_store(PGconn *c, const char *id, const char *grant, long gen,
    struct finx_tokens *t, long due_s)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	enum tokens_cas res = TOK_DB_ERROR;

	e->id = xstrdup(id);
	e->grant = grant ? xstrdup(grant) : NULL;
	e->gen = gen;
	e->due_s = due_s;
	e->t = *t;
	memset(t, 0, sizeof(*t));
	if (rs.dir != NULL)
		journal_write(e);
	if (c != NULL)
		res = store_conn_rotate(c, e->id, e->grant, e->gen, &e->t, e->due_s);
	if (res != TOK_DB_ERROR) {
		settle(e, res);
		return res;
	}
	log_kv(LOG_WARN, "refreshed tokens could not be stored yet; rescue "
			 "keeps trying",
	    "connection_id", id, "journal", e->path ? "yes" : "no",
	    "sqlstate", c ? db_failure_sqlstate() : NULL, "db_error",
	    c ? db_failure_message() : NULL, NULL);
	atomic_store(&rs.tried_on_db, false);
	atomic_fetch_add(&rs.pending, 1);
	push(e);
	return res;
}

int
rescue_pending(void)
{
	return atomic_load(&rs.pending);
}

bool
rescue_left_in_journal(void)
{
	return rs.left > 0;
}

bool
rescue_holds_workers(void)
{
	return rescue_pending() > 0 && !atomic_load(&rs.tried_on_db);
}

/* Try every pending rotation once on c; false when any is left. */
static bool
drain(PGconn *c)
{
	struct entry *list, *e, *keep = NULL;

	pthread_mutex_lock(&rs.mu);
	list = rs.head;
	rs.head = NULL;
	pthread_mutex_unlock(&rs.mu);
	while ((e = list) != NULL) {
		enum tokens_cas res;

		list = e->next;
		res = c ? store_conn_rotate(c, e->id, e->grant, e->gen, &e->t, e->due_s)
			: TOK_DB_ERROR;
		if (res == TOK_DB_ERROR) {
			e->next = keep;
			keep = e;
			continue;
		}
		if (res == TOK_STORED)
			log_kv(LOG_INFO, "rescued rotated tokens stored",
			    "connection_id", e->id, NULL);
		settle(e, res);
		atomic_fetch_sub(&rs.pending, 1);
	}
	pthread_mutex_lock(&rs.mu);
	while ((e = keep) != NULL) {
		keep = e->next;
		e->next = rs.head;
		rs.head = e;
	}
	pthread_mutex_unlock(&rs.mu);
	return rescue_pending() == 0;
}

/* The rescue's own connection: c while it works, else a new one (NULL
 * when PostgreSQL cannot be reached). */
static PGconn *
rescue_conn(PGconn *c)
{
	char *err = NULL;

	if (c != NULL && PQstatus(c) == CONNECTION_OK)
		return c;
	PQfinish(c);
	c = db_open(rs.cfg->database_url, &err);
	free(err);
	return c;
}

/* A drain left rotations behind: say so once PostgreSQL answers, and
 * drop c when a failed statement left it broken or mid-way. */
static PGconn *
rescue_failed(PGconn *c)
{
	if (c != NULL && PQstatus(c) == CONNECTION_OK &&
	    !atomic_exchange(&rs.tried_on_db, true))
		log_kv(LOG_ERROR, "rotated tokens could not be stored although "
				  "PostgreSQL answers; still trying",
		    "sqlstate", db_failure_sqlstate(), "db_error",
		    db_failure_message(), NULL);
	if (c != NULL && PQtransactionStatus(c) != PQTRANS_IDLE) {
		PQfinish(c);
		c = NULL;
	}
	return c;
}

static void *
rescue_loop(void *arg)
{
	PGconn *c = NULL;
	long backoff = BACKOFF_MIN_MS;

	(void)arg;
	while (!atomic_load(&rs.stop)) {
		struct timespec until;

		pthread_mutex_lock(&rs.mu);
		while (rs.head == NULL && !atomic_load(&rs.stop))
			pthread_cond_wait(&rs.cv, &rs.mu);
		pthread_mutex_unlock(&rs.mu);
		if (atomic_load(&rs.stop))
			break;
		c = rescue_conn(c);
		if (drain(c)) {
			backoff = BACKOFF_MIN_MS;
			continue;
		}
		c = rescue_failed(c);
		until = realtime_after_ms(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
						       : backoff * 2;
		pthread_mutex_lock(&rs.mu);
		if (!atomic_load(&rs.stop))
			pthread_cond_timedwait(&rs.cv, &rs.mu, &until);
		pthread_mutex_unlock(&rs.mu);
	}
	PQfinish(c);
	return NULL;
}

void
rescue_start(void)
{
	atomic_store(&rs.stop, false);
	if (pthread_create(&rs.thread, NULL, rescue_loop, NULL) != 0)
		abort();
	rs.running = true;
}

void
rescue_stop(long wait_s)
{
	int64_t end = mono_ms() + wait_s * 1000;
	struct entry *e;

	while (rs.running && rescue_pending() > 0 && mono_ms() < end)
		usleep(100 * 1000);
	if (rs.running) {
		pthread_mutex_lock(&rs.mu);
		atomic_store(&rs.stop, true);
		pthread_cond_broadcast(&rs.cv);
		pthread_mutex_unlock(&rs.mu);
		pthread_join(rs.thread, NULL);
		rs.running = false;
	}
	pthread_mutex_lock(&rs.mu);
	while ((e = rs.head) != NULL) {
		rs.head = e->next;
		if (e->path != NULL)
			log_kv(LOG_WARN, "rotated tokens left in the rescue "
					 "journal for the next start",
			    "connection_id", e->id, NULL);
		else
			log_kv(LOG_ERROR, "rotated tokens could not be stored and "
					  "there is no journal: the connection "
					  "will need its user to log in again",
			    "connection_id", e->id, NULL);
		entry_free(e); /* the file stays */
		atomic_fetch_sub(&rs.pending, 1);
		rs.left++;
	}
	pthread_mutex_unlock(&rs.mu);
	if (rs.lock_fd >= 0) {
		close(rs.lock_fd);
		rs.lock_fd = -1;
	}
	free(rs.dir);
	rs.dir = NULL;
}
