/*
 * Unit tests for server/cache.c without PostgreSQL: the JSON string
 * writer against json-c's own output, key components, and the cache's
 * rules (off means off, per-user invalidation, the sequence check that
 * keeps a body read before an invalidation out, the local-commit bracket,
 * eviction, one database read per key at a time).
 */
#include <json-c/json.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cache.h"
#include "clock.h"
#include "test.h"

#include <unistd.h>

/* cache_json_str(s) must equal json-c's serialisation of s. */
static bool
same_as_jsonc(const char *s)
{
	json_object *o = json_object_new_string(s);
	const char *want = json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	struct buf b;
	bool ok;

	buf_init(&b, 1 << 20);
	cache_json_str(&b, s);
	ok = b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
	if (!ok)
		printf("# got %s want %s\n", b.data, want);
	buf_free(&b);
	json_object_put(o);
	return ok;
}

static bool
writes(const char *s, const char *want)
{
	struct buf b;
	bool ok;

	buf_init(&b, 1 << 20);
	cache_json_str(&b, s);
	ok = b.data != NULL && strcmp(b.data, want) == 0;
	if (!ok)
		printf("# got %s want %s\n", b.data ? b.data : "(none)", want);
	buf_free(&b);
	return ok;
}

static void
test_escaper(void)
{
	char all[256], one[2] = { 0, 0 }, big[10001];
	int c;
	bool each = true;

	CHECK(writes("plain", "\"plain\""), "plain text is quoted");
	CHECK(writes("", "\"\""), "empty string");
	CHECK(writes(NULL, "null"), "NULL writes null");
	CHECK(writes("a\"b\\c", "\"a\\\"b\\\\c\""), "quote and backslash");
	CHECK(writes("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\""),
	    "short escapes for \\n \\r \\t \\b \\f");
	CHECK(writes("\x01\x1f", "\"\\u0001\\u001f\""),
	    "other control characters as \\u00xx (lower-case hex)");
	CHECK(writes("Gehalt/Lohn", "\"Gehalt/Lohn\""), "slash as is");
	CHECK(writes("J\xc3\xbcrgen \xe2\x80\x93 \xf0\x9f\x92\xb6",
		  "\"J\xc3\xbcrgen \xe2\x80\x93 \xf0\x9f\x92\xb6\""),
	    "UTF-8 passes through");
	CHECK(writes("\x7f", "\"\x7f\""), "DEL as is (as json-c)");
	for (c = 1; c < 256; c++) {
		one[0] = (char)c;
		all[c - 1] = (char)c;
		each = each && same_as_jsonc(one);
	}
	all[255] = '\0';
	CHECK(each, "every single byte 1..255 as json-c writes it");
	CHECK(same_as_jsonc(all), "all bytes in one string as json-c");
	CHECK(same_as_jsonc("Einkauf \"Br\xc3\xb6tchen\"\\\n\tGr\xc3\xbc\xc3"
			    "\x9f"
			    "e / Kaffee\x02"),
	    "mixed text as json-c");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[5000] = '"';
	CHECK(same_as_jsonc(big), "a 10 kB string as json-c");
}

static bool
key_eq(const char *a1, const char *a2, const char *b1, const char *b2)
{
	struct buf a, b;
	bool eq;

	buf_init(&a, 4096);
	buf_init(&b, 4096);
	cache_key_add(&a, a1);
	cache_key_add(&a, a2);
	cache_key_add(&b, b1);
	cache_key_add(&b, b2);
	eq = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
	buf_free(&a);
	buf_free(&b);
	return eq;
}

static void
test_keys(void)
{
	CHECK(key_eq("a", "b", "a", "b"), "equal components, equal keys");
	CHECK(!key_eq("ab", "", "a", "b"), "boundaries count (ab|'' vs a|b)");
	CHECK(!key_eq(NULL, "x", "", "x"), "absent differs from empty");
	CHECK(!key_eq("-;", "x", NULL, "x"), "\"-;\" differs from absent");
	CHECK(!key_eq("1:a", NULL, "a", NULL), "a length prefix is no value");
}

/* Put body text under key for user with a ticket; returns the body. */
static void
put(const char *key, const char *user, const char *text, uint64_t ticket)
{
	struct cache_body *b = cache_body_new(text, strlen(text));

	cache_put(key, strlen(key), user, b, ticket);
	cache_body_unref(b);
}

/* The text cached under key, or "" on a miss. */
static bool
has(const char *key, const char *want)
{
	struct cache_body *b = cache_get(key, strlen(key));
	bool ok;

	if (b == NULL)
		return want == NULL;
	ok = want != NULL && b->len == strlen(want) &&
	    memcmp(b->data, want, b->len) == 0;
	cache_body_unref(b);
	return ok;
}

static void
test_cache_rules(void)
{
	uint64_t t, t2;
	long hits, misses, n, bytes;
	char key[32];
	int i;

	/* Off (no listener yet): nothing is served or stored. */
	CHECK(!cache_enabled(), "off until the listener listens");
	CHECK(cache_begin() == 0, "cache_begin gives 0 while off");
	put("k", "u1", "body", cache_begin());
	CHECK(has("k", NULL), "nothing is stored while off");

	cache_set_enabled(true);
	t = cache_begin();
	CHECK(t != 0, "on: a ticket");
	put("k1", "u1", "one", t);
	put("k2", "u2", "two", t);
	CHECK(has("k1", "one") && has("k2", "two"), "stored and served");
	put("k1", "u1", "one again", t);
	CHECK(has("k1", "one again"), "a second put replaces the entry");

	/* A body read before an invalidation is not stored after it. */
	t = cache_begin();
	cache_invalidate("someone-else");
	put("k3", "u3", "stale?", t);
	CHECK(has("k3", NULL), "a ticket older than an invalidation stores "
			       "nothing");
	CHECK(has("k1", "one again") && has("k2", "two"),
	    "other users' entries stay");
	cache_invalidate("u1");
	CHECK(has("k1", NULL) && has("k2", "two"),
	    "invalidating u1 drops only u1's entries");
	cache_invalidate("");
	CHECK(has("k2", NULL), "an empty payload drops everything");

	/* The local commit bracket. */
	t = cache_begin();
	put("k4", "u4", "old", t);
	cache_write_begin("u4");
	CHECK(has("k4", NULL), "write_begin drops the user's entries");
	t2 = cache_begin();
	put("k4", "u4", "read during the commit", t2);
	CHECK(has("k4", NULL), "nothing is stored while a commit runs");
	cache_write_end("u4");
	put("k4", "u4", "read during the commit", t2);
	CHECK(has("k4", NULL), "nor after it with a ticket from during it");
	put("k4", "u4", "new", cache_begin());
	CHECK(has("k4", "new"), "a fresh ticket stores again");

	/* Eviction: never more than CACHE_MAX_ENTRIES, oldest out first. */
	t = cache_begin();
	for (i = 0; i < CACHE_MAX_ENTRIES + 10; i++) {
		snprintf(key, sizeof(key), "e%d", i);
		put(key, "ue", "x", t);
	}
	cache_stats(&hits, &misses, &n, &bytes);
	CHECK(n == CACHE_MAX_ENTRIES, "at most %d entries (%ld)",
	    CACHE_MAX_ENTRIES, n);
	CHECK(has("e0", NULL) && has("e9", NULL), "the oldest were evicted");
	snprintf(key, sizeof(key), "e%d", CACHE_MAX_ENTRIES + 9);
	CHECK(has(key, "x"), "the newest stays");

	/* A served body outlives its entry (the response holds a ref). */
	{
		struct cache_body *b;

		put("held", "uh", "held body", cache_begin());
		b = cache_get("held", 4);
		cache_invalidate("uh");
		CHECK(b != NULL && strcmp(b->data, "held body") == 0,
		    "a body being served survives invalidation");
		cache_body_unref(b);
	}

	/* Off again (listener lost): emptied, and old tickets are void. */
	t = cache_begin();
	put("k5", "u5", "five", t);
	cache_set_enabled(false);
	cache_set_enabled(true);
	CHECK(has("k5", NULL), "losing the listener empties the cache");
	put("k5", "u5", "five", t);
	CHECK(has("k5", NULL), "a ticket from before the outage stores "
			       "nothing");
	cache_stop();
	CHECK(!cache_enabled() && has("k2", NULL), "cache_stop: off, empty");
}

struct waiter {
	const char *key;
	enum cache_fill got;
	bool hit;
};

static void *
wait_fill(void *arg)
{
	struct waiter *w = arg;

	w->got = cache_fill_begin(w->key, strlen(w->key),
	    mono_ms() + CACHE_FILL_WAIT_MS);
	if (w->got == CACHE_FILL_MINE)
		cache_fill_end(w->key, strlen(w->key));
	w->hit = has(w->key, "filled");
	return NULL;
}

/* Start n waiters on key (filled by the caller) and wait until all of
 * them wait; false when they did not within 10 s. */
static bool
start_waiters(struct waiter *w, pthread_t *th, int n, const char *key)
{
	int64_t end = mono_ms() + 10000;
	int i;

	for (i = 0; i < n; i++) {
		w[i].key = key;
		w[i].got = CACHE_FILL_OFF;
		w[i].hit = false;
		pthread_create(&th[i], NULL, wait_fill, &w[i]);
	}
	while (cache_fill_waiting(key, strlen(key)) < n && mono_ms() < end)
		usleep(1000);
	return cache_fill_waiting(key, strlen(key)) == n;
}

static void
test_single_flight(void)
{
	struct waiter w[4];
	pthread_t th[4];
	int64_t t0;
	int i, waited, hits, off;
	bool all;

	cache_set_enabled(true);
	CHECK(cache_fill_begin("sf", 2, mono_ms() + 1000) == CACHE_FILL_MINE,
	    "the first miss on a key reads it");
	all = start_waiters(w, th, 4, "sf");
	CHECK(all, "four more requests for it wait");
	CHECK(cache_fill_begin("other", 5, mono_ms() + 1000) ==
	        CACHE_FILL_MINE,
	    "a miss on another key does not wait");
	cache_fill_end("other", 5);
	put("sf", "usf", "filled", cache_begin());
	cache_fill_end("sf", 2);
	for (i = waited = hits = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		waited += w[i].got == CACHE_FILL_WAITED;
		hits += w[i].hit;
	}
	CHECK(waited == 4 && hits == 4,
	    "they waited for that read, then found the body (%d waited, %d "
	    "found it)",
	    waited, hits);
	CHECK(cache_fill_waiting("sf", 2) == 0 &&
	        cache_fill_begin("sf", 2, mono_ms() + 1000) == CACHE_FILL_MINE,
	    "the fill ended: the next miss reads again");
	cache_fill_end("sf", 2);

	/* A fill that stores nothing (a 404, an invalidation): the waiters
	 * read for themselves, together, at once. */
	CHECK(cache_fill_begin("nf", 2, mono_ms() + 1000) == CACHE_FILL_MINE,
	    "nf: mine");
	all = start_waiters(w, th, 4, "nf");
	cache_fill_end("nf", 2);
	for (i = off = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		off += w[i].got == CACHE_FILL_OFF;
	}
	CHECK(all && off == 4,
	    "a fill that stored nothing sends its %d waiters to read at once",
	    off);

	/* A read that never ends: the waiter gives up at its deadline. */
	CHECK(cache_fill_begin("stuck", 5, mono_ms() + 1000) == CACHE_FILL_MINE,
	    "stuck: mine");
	t0 = mono_ms();
	CHECK(cache_fill_begin("stuck", 5, t0 + 300) == CACHE_FILL_OFF &&
	        mono_ms() - t0 >= 290,
	    "a waiter gives up at its deadline (%ld ms of 300)",
	    (long)(mono_ms() - t0));
	cache_fill_end("stuck", 5);

	cache_set_enabled(false);
	CHECK(cache_fill_begin("sf", 2, mono_ms() + 1000) == CACHE_FILL_OFF,
	    "cache off: nobody fills or waits");
	cache_fill_end("sf", 2);
}

int
main(void)
{
	test_escaper();
	test_keys();
	test_cache_rules();
	test_single_flight();
	return test_done();
}
