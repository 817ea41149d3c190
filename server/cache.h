/*
 * A per-process cache of rendered read-API bodies (GET accounts and
 * transactions), kept correct across finxd processes through PostgreSQL
 * alone: whatever changes what those reads show notifies channel
 * finxd_data with the user_id (a trigger on connections, the pull's own
 * pg_notify), and a listener thread drops that user's entries.  While the
 * listener is not connected the cache is off and empty.  The JSON string
 * writer the bodies are rendered with lives here too.
 */
#ifndef FINXD_CACHE_H
#define FINXD_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct config;

/* Seconds an entry lives at most (a safety net; notifications rule). */
#define CACHE_TTL_S 30
#define CACHE_MAX_ENTRIES 4096
#define CACHE_MAX_BYTES (64 * 1024 * 1024)
/* A body larger than this is served but never cached. */
#define CACHE_MAX_BODY (4 * 1024 * 1024)
#define CACHE_CHANNEL "finxd_data"

/* A rendered body, shared by the cache and the responses serving it. */
struct cache_body {
	atomic_long refs;
	size_t len;
	char data[];
};

/* A body holding a copy of p[0..n), one reference (the caller's). */
struct cache_body *cache_body_new(const void *p, size_t n);
/* Drop one reference; the last frees it.  NULL-safe. */
void cache_body_unref(struct cache_body *b);

/*
 * Start the listener thread when cfg->read_cache is on (else the cache
 * stays off for good).  The cache turns on once the listener listens.
 */
void cache_start(const struct config *cfg);
/* Stop the listener (within about 200 ms) and empty the cache. */
void cache_stop(void);

/* True while the cache may serve and store (listener connected). */
bool cache_enabled(void);

/*
 * The body cached under key[0..klen), with a reference the caller
 * drops (cache_body_unref), or NULL.
 */
struct cache_body *cache_get(const char *key, size_t klen);

/*
 * One database read per key at a time.  On a miss, a request asks to
 * fill the key: CACHE_FILL_MINE, it reads the database and calls
 * cache_fill_end once it has stored the body (or failed to);
 * CACHE_FILL_WAITED, another request was filling it and stored the body:
 * look in the cache again; CACHE_FILL_OFF, the cache is off, the other
 * request stored nothing (a 404, an invalidation, too large) or
 * deadline_ms (mono_ms) passed: read without filling.  Without it, a
 * popular page that expired sent every request that asked for it
 * meanwhile to PostgreSQL at once (bench_api: 64 requests, up to 3.9 s).
 */
enum cache_fill { CACHE_FILL_OFF, CACHE_FILL_MINE, CACHE_FILL_WAITED };
#define CACHE_FILL_WAIT_MS 2000
enum cache_fill cache_fill_begin(const char *key, size_t klen,
    int64_t deadline_ms);
void cache_fill_end(const char *key, size_t klen);
/* Requests waiting for key's fill (tests). */
int cache_fill_waiting(const char *key, size_t klen);

/*
 * Note the invalidation sequence before reading the database for a body
 * that may be stored; 0 when the cache is off (cache_put then stores
 * nothing).
 */
uint64_t cache_begin(void);

/*
 * Store body under key, tagged with the user whose data it shows, unless
 * any invalidation happened since cache_begin returned ticket (the body
 * may predate it), a local write is committing, or the cache is off.
 * Takes its own reference; the caller keeps its one.
 */
void cache_put(const char *key, size_t klen, const char *user,
    struct cache_body *body, uint64_t ticket);

/* Drop user's entries (NULL or "": every entry) and bump the sequence. */
void cache_invalidate(const char *user);

/*
 * Bracket the COMMIT of a local write that changes user's reads: begin
 * drops the user's entries and refuses stores until end, which drops them
 * again.  So this process never serves the old data once the commit is
 * visible, without waiting for its own notification.
 */
void cache_write_begin(const char *user);
void cache_write_end(const char *user);

/* Empty the cache and turn it on or off (the listener's state). */
void cache_set_enabled(bool on);

/* Counters since start, for logs and tests. */
void cache_stats(long *hits, long *misses, long *entries, long *bytes);

/* Append one key component, length-prefixed (NULL is distinct from ""). */
void cache_key_add(struct buf *k, const char *s);

/*
 * Append s as a JSON string (quotes included): '"' and '\' escaped,
 * \b \f \n \r \t short, other control characters as \u00xx, everything
 * else (UTF-8 included) as is.  NULL appends null.  The same bytes
 * json-c writes with JSON_C_TO_STRING_NOSLASHESCAPE.
 */
void cache_json_str(struct buf *b, const char *s);

#endif
