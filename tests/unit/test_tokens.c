/*
 * Unit tests for tokens.c's pure parts: when a token is due for refresh,
 * the retry backoff and the access token lifetime.  No database.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "finx_decode.h"
#include "tokens.h"
#include "test.h"

#define DAY 86400L
#define WEEK (7 * DAY)

static long base_of(int);
static void test_due_in(void);
static void test_backoff(void);
static void test_access_ttl(void);
static void test_policy(void);
static void test_policy_day(void);

/* The documented backoff base: doubling from 5 s, capped at 900 s. */
static long
base_of(int failures)
{
	long b = 5;

	for (int i = 1; i < failures && b < 900; i++)
		b *= 2;
	return b > 900 ? 900 : b;
}

static void
test_due_in(void)
{
	long l, prev;
	bool mono = true, bounded = true;

	CHECK(tokens_due_in(3600, 300, WEEK) == 3300,
	    "1 h token, margin 300: due in 3300 (got %ld)",
	    tokens_due_in(3600, 300, WEEK));
	CHECK(tokens_due_in(20, 300, WEEK) == 10,
	    "20 s token, margin 300: due in 10 (got %ld)",
	    tokens_due_in(20, 300, WEEK));
	CHECK(tokens_due_in(30, 300, WEEK) == 15, "30 s token: due in 15");
	CHECK(tokens_due_in(600, 300, WEEK) == 300,
	    "600 s token: margin equals half");
	CHECK(tokens_due_in(601, 300, WEEK) == 301, "601 s token: 301");
	CHECK(tokens_due_in(1, 300, WEEK) >= 1, "1 s token: at least 1 s");
	CHECK(tokens_due_in(1, 300, WEEK) == 1, "1 s token: 1 s");
	CHECK(tokens_due_in(0, 300, WEEK) == 1, "0 s token: 1 s, no hot loop");
	CHECK(tokens_due_in(-5, 300, WEEK) == 1, "negative lifetime: 1 s");
	CHECK(tokens_due_in(3600, 0, WEEK) == 3600, "margin 0: full lifetime");
	CHECK(tokens_due_in(90 * DAY, 300, WEEK) == WEEK,
	    "90-day token: keepalive caps at 7 days");
	CHECK(tokens_due_in(3600, 300, 60) == 60, "keepalive 60 caps 3300");
	CHECK(tokens_due_in(WEEK + 300, 300, WEEK) == WEEK,
	    "due exactly at the keepalive");
	CHECK(tokens_due_in(WEEK + 301, 300, WEEK) == WEEK,
	    "one past the keepalive is capped");

	/* Due time grows with the lifetime and never passes it. */
	prev = tokens_due_in(1, 300, WEEK);
	for (l = 2; l <= 20000; l++) {
		long d = tokens_due_in(l, 300, WEEK);

		if (d < prev)
			mono = false;
		if (d < 1 || d >= l)
			bounded = false;
		prev = d;
	}
	CHECK(mono, "due_in non-decreasing in lifetime");
	CHECK(bounded, "due_in in [1, lifetime) for lifetimes 2..20000");
}

static void
test_backoff(void)
{
	static const unsigned rnds[] = { 0, 1, 2, 3, 7, 100, 449, 450, 451,
		1000, 65535, 0x7fffffffu, 0x80000000u, UINT_MAX - 1, UINT_MAX };
	long prev_lo = 0, prev_hi = 0;
	bool in_range = true, mono = true, capped = true, floor1 = true;
	bool reach = true;
	int n;

	for (n = 1; n <= 20; n++) {
		long base = base_of(n), lo = LONG_MAX, hi = LONG_MIN;
		size_t i;

		for (i = 0; i < sizeof(rnds) / sizeof(rnds[0]); i++) {
			long b = tokens_backoff_s(n, rnds[i]);

			lo = b < lo ? b : lo;
			hi = b > hi ? b : hi;
		}
		for (unsigned r = 0; r < 2000; r++) {
			long b = tokens_backoff_s(n, r);

			lo = b < lo ? b : lo;
			hi = b > hi ? b : hi;
		}
		if (lo < base / 2 || hi > base)
			in_range = false;
		/* Both ends of the jitter range are reachable. */
		if (lo != base / 2 || hi != base / 2 + base / 2)
			reach = false;
		if (lo < prev_lo || hi < prev_hi)
			mono = false;
		if (hi > 900)
			capped = false;
		if (lo < 1)
			floor1 = false;
		prev_lo = lo;
		prev_hi = hi;
	}
	CHECK(in_range, "backoff within [base/2, base] for failures 1..20");
	CHECK(reach, "backoff jitter spans the whole range");
	CHECK(mono, "backoff bounds non-decreasing over failures 1..20");
	CHECK(capped, "backoff never above 900 s");
	CHECK(floor1, "backoff never below 1 s");
	CHECK(tokens_backoff_s(1, 0) >= 2 && tokens_backoff_s(1, UINT_MAX) <= 5,
	    "first failure: 2..5 s");
	CHECK(tokens_backoff_s(2, 0) == 5 && tokens_backoff_s(2, 5) == 10,
	    "second failure: 5..10 s");
	CHECK(tokens_backoff_s(20, 0) == 450 &&
		tokens_backoff_s(20, 450) == 900,
	    "many failures: 450..900 s");
	CHECK(tokens_backoff_s(INT_MAX, UINT_MAX) <= 900 &&
		tokens_backoff_s(INT_MAX, 0) >= 450, "INT_MAX failures capped");
	CHECK(tokens_backoff_s(0, 0) >= 1 && tokens_backoff_s(0, UINT_MAX) <= 5,
	    "0 failures: treated like the first");
	CHECK(tokens_backoff_s(-3, 7) >= 1 && tokens_backoff_s(-3, 7) <= 5,
	    "negative failures: treated like the first");
}

static void
test_access_ttl(void)
{
	struct finx_tokens t;

	memset(&t, 0, sizeof(t));
	t.expires_in = -1;
	CHECK(tokens_access_ttl(&t) == ACCESS_TTL_UNKNOWN &&
		ACCESS_TTL_UNKNOWN == 300, "expires_in -1: 300");
	t.expires_in = 0;
	CHECK(tokens_access_ttl(&t) == 300, "expires_in 0: 300");
	t.expires_in = LONG_MIN;
	CHECK(tokens_access_ttl(&t) == 300, "expires_in LONG_MIN: 300");
	t.expires_in = 1;
	CHECK(tokens_access_ttl(&t) == 1, "expires_in 1: 1");
	t.expires_in = 3600;
	CHECK(tokens_access_ttl(&t) == 3600, "expires_in 3600: 3600");
	CHECK(tokens_due_in(tokens_access_ttl(&t), 300, WEEK) == 3300,
	    "stored due time for a 1 h token");
	t.expires_in = -1;
	CHECK(tokens_due_in(tokens_access_ttl(&t), 300, WEEK) == 150,
	    "unknown lifetime: refreshed after 150 s");
}

static void
test_policy(void)
{
	CHECK(tokens_idle_due_in(0, WEEK) == WEEK &&
		tokens_idle_due_in(-1, WEEK) == WEEK,
	    "idle, refresh token's end unknown: keep-alive");
	CHECK(tokens_idle_due_in(90 * DAY, WEEK) == WEEK,
	    "idle, 90-day refresh token: keep-alive (7 days)");
	CHECK(tokens_idle_due_in(3 * DAY, WEEK) == 2 * DAY,
	    "idle, refresh token dies in 3 days: a day before (got %ld)",
	    tokens_idle_due_in(3 * DAY, WEEK));
	CHECK(tokens_idle_due_in(3600, WEEK) == 1800,
	    "idle, refresh token dies in 1 h: after half of it");
	CHECK(tokens_idle_due_in(1, WEEK) == 1, "refresh token dies in 1 s: 1");
	CHECK(tokens_next_due(true, 3600, 90 * DAY, 300, WEEK) == 3300,
	    "hot 1 h token: 5 minutes before expiry");
	CHECK(tokens_next_due(false, 3600, 90 * DAY, 300, WEEK) == WEEK,
	    "idle 1 h token: keep-alive only");
	CHECK(tokens_next_due(true, 3600, 1200, 300, WEEK) == 600,
	    "hot, but the refresh token dies first: before it does");
	CHECK(tokens_next_due(true, 20, 90 * DAY, 300, WEEK) == 10,
	    "hot 20 s token: after 10 s");
	CHECK(tokens_need_refresh(150, 3600, 300) &&
		!tokens_need_refresh(151, 3600, 300),
	    "a reader refreshes a 1 h token with 150 s left, not 151");
	CHECK(tokens_need_refresh(5, 20, 300) && !tokens_need_refresh(5.5, 20, 300),
	    "a reader refreshes a 20 s token with 5 s left");
	CHECK(tokens_need_refresh(-1, 3600, 300), "expired: refresh");
	CHECK(!tokens_need_refresh(0.5, 1, 300) && tokens_need_refresh(0, 1, 300),
	    "1 s token: only once expired, never in a loop");
}

/*
 * One connection over a stretch of time under the policy, with the
 * functions finxd uses: the workers refresh at the due time (at most
 * worker_lag seconds late), a reader or a pull that needs a token and
 * finds it too close to expiry refreshes first (and waits on finX), and
 * a handed-out token makes the connection hot (due at the margin before
 * expiry, as GET .../token sets it).
 */
struct sim {
	long lifetime, margin, keepalive, pull_every, read_every, worker_lag;
	long rotations, waits;
};

static void
sim_refresh(struct sim *s, long t, long last_read, double *expires,
    long *due)
{
	bool hot = last_read >= 0 && last_read > t - s->lifetime;

	s->rotations++;
	*expires = (double)(t + s->lifetime);
	*due = t + tokens_next_due(hot, s->lifetime, 90 * DAY, s->margin,
		       s->keepalive);
}

static void
sim_run(struct sim *s, long seconds)
{
	double expires = (double)s->lifetime; /* the code exchange at 0 */
	long due = tokens_next_due(false, s->lifetime, 90 * DAY, s->margin,
	    s->keepalive);
	long t, last_read = -1;

	for (t = 1; t <= seconds; t++) {
		bool pull = s->pull_every > 0 && t % s->pull_every == 0;
		bool read = s->read_every > 0 && t % s->read_every == 0;

		if (t >= due + s->worker_lag)
			sim_refresh(s, t, last_read, &expires, &due);
		if (pull || read) {
			if (tokens_need_refresh(expires - (double)t, s->lifetime,
				s->margin)) {
				s->waits++;
				sim_refresh(s, t, last_read, &expires, &due);
			}
		}
		if (read) {
			long ahead = s->lifetime -
			    tokens_due_in(s->lifetime, s->margin, LONG_MAX);

			last_read = t;
			if ((double)due > expires - (double)ahead)
				due = (long)expires - ahead;
		}
	}
}

static void
test_policy_day(void)
{
	struct sim a = { .lifetime = 3600, .margin = 300, .keepalive = WEEK,
		.pull_every = 6 * 3600, .worker_lag = 5 };
	struct sim n = a, idle = { .lifetime = 20, .margin = 300,
		.keepalive = WEEK, .worker_lag = 5 };
	struct sim hot = { .lifetime = 20, .margin = 300, .keepalive = WEEK,
		.read_every = 2, .worker_lag = 1 };

	sim_run(&a, DAY);
	CHECK(a.rotations <= 5,
	    "finX defaults (60-minute tokens, pulls every 6 h): %ld rotations "
	    "a day, at most 5",
	    a.rotations);
	n.pull_every = 15 * 60; /* a notification every 15 minutes */
	sim_run(&n, DAY);
	CHECK(n.rotations <= DAY / 3600 + 1,
	    "pulls on notifications every 15 min: %ld rotations a day, at "
	    "most one per access-token lifetime",
	    n.rotations);
	sim_run(&idle, 60);
	CHECK(idle.rotations * 10 <= 10,
	    "20 s tokens: 10 idle connections get %ld refreshes in 60 s "
	    "(at most 10)",
	    idle.rotations * 10);
	sim_run(&hot, 3600);
	CHECK(hot.waits == 0 && hot.rotations >= 3600 / 20,
	    "20 s tokens read every 2 s for an hour: %ld waits on finX, %ld "
	    "refreshes ahead of expiry",
	    hot.waits, hot.rotations);
}

int
main(void)
{
	test_due_in();
	test_backoff();
	test_access_ttl();
	test_policy();
	test_policy_day();
	return test_done();
}
