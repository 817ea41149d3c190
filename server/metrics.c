/*
 * A small metrics registry: counters and histograms keyed by metric name
 * and a preformatted label set.  The two HTTP families, touched by every
 * request, live in a lock-free table (metrics_http); the others (callbacks,
 * finX calls, refreshes: a few per second at most) in one table under a
 * mutex, where a linear scan is fine and keeps the code obvious.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mem.h"

#define MAX_SERIES 512
static const double buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10 };
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct series {
	const char *name;
	char *labels;
	long long count;
	double sum;       /* histograms only: seconds */
	long long le[NBUCKETS];
	int histogram;
};

static struct {
	pthread_mutex_t mu;
	struct series s[MAX_SERIES];
	int n;
} reg = { .mu = PTHREAD_MUTEX_INITIALIZER };

struct family {
	const char *name;
	const char *type;
	const char *help;
};

static const struct family families[] = {
	{ "finxd_http_requests_total", "counter",
	    "HTTP requests by route and status." },
	{ "finxd_http_request_duration_seconds", "histogram",
	    "HTTP request duration by route." },
	{ "finxd_callbacks_total", "counter", "Widget callbacks by outcome." },
	{ "finxd_finx_requests_total", "counter",
	    "finX calls by endpoint and outcome." },
	{ "finxd_finx_request_duration_seconds", "histogram",
	    "finX call duration by endpoint." },
	{ "finxd_refreshes_total", "counter", "Token refreshes by outcome." },
	{ "finxd_webhook_deliveries_total", "counter",
	    "Webhook attempts by outcome: delivered, retry, failed (for "
	    "good), gone (410), unrecorded (the database did not take the "
	    "outcome)." },
	{ "finxd_webhook_attempt_duration_seconds", "histogram",
	    "Webhook attempt duration, the outcome's write included." },
};

/* Label values are our own route patterns and enums; escape anyway. */
static char *
label(const char *k1, const char *v1, const char *k2, const char *v2)
{
	struct buf b;

	buf_init(&b, 4096);
	for (int i = 0; i < 2; i++) {
		const char *k = i ? k2 : k1, *v = i ? v2 : v1;

		if (k == NULL)
			break;
		buf_appendf(&b, "%s%s=\"", i ? "," : "", k);
		for (; *v; v++) {
			if (*v == '"' || *v == '\\')
				buf_append(&b, "\\", 1);
			if (*v == '\n')
				buf_append_str(&b, "\\n");
			else
				buf_append(&b, v, 1);
		}
		buf_append(&b, "\"", 1);
	}
	return buf_steal(&b);
}

static struct series *
find(const char *name, char *labels, int histogram)
{
	int i;

	for (i = 0; i < reg.n; i++)
		if (reg.s[i].name == name && strcmp(reg.s[i].labels, labels) == 0) {
			free(labels);
			return &reg.s[i];
		}
	if (reg.n == MAX_SERIES) {
		free(labels);
		return NULL;
	}
	reg.s[reg.n].name = name;
	reg.s[reg.n].labels = labels;
	reg.s[reg.n].histogram = histogram;
	return &reg.s[reg.n++];
}

static void
inc(const char *name, char *labels)
{
	struct series *s;

	pthread_mutex_lock(&reg.mu);
	if ((s = find(name, labels, 0)) != NULL)
		s->count++;
	pthread_mutex_unlock(&reg.mu);
}

static void
observe(const char *name, char *labels, int64_t ms)
{
	struct series *s;
	double secs = (double)ms / 1000.0;
	size_t i;

	pthread_mutex_lock(&reg.mu);
	if ((s = find(name, labels, 1)) != NULL) {
		s->count++;
		s->sum += secs;
		for (i = 0; i < NBUCKETS; i++)
			if (secs <= buckets[i])
				s->le[i]++;
	}
	pthread_mutex_unlock(&reg.mu);
}

/*
 * finxd_http_requests_total and finxd_http_request_duration_seconds, the
 * two families every request touches, without a lock or an allocation
 * once a route's series exist: a fixed open-addressed table of routes,
 * each with a fixed table of statuses.  An entry is built whole (labels
 * included) and then published with one compare-and-swap; counters are
 * atomics.  A histogram keeps one count per bucket and sums them when
 * rendered, so a scrape racing a request still sees buckets that never
 * decrease and an le="+Inf" bucket equal to _count.
 */
#define HTTP_ROUTES 128 /* power of two; the route table has ~40 */
#define HTTP_STATUSES 16 /* power of two; statuses seen per route */

struct http_status {
	int status;
	char *labels; /* route="...",status="..." */
	atomic_llong count;
};

struct http_route {
	char *route;
	char *labels; /* route="..." */
	atomic_llong bucket[NBUCKETS + 1]; /* per bucket, then over the last */
	atomic_llong sum_ms;
	_Atomic(struct http_status *) st[HTTP_STATUSES];
};

static _Atomic(struct http_route *) http_routes[HTTP_ROUTES];

static unsigned
str_hash(const char *s)
{
	unsigned h = 2166136261u; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* Claim an empty slot for e, or return what another thread put there. */
#define PUBLISH(slot, e, cur)                                               \
	atomic_compare_exchange_strong_explicit(slot, &(cur), e,             \
	    memory_order_acq_rel, memory_order_acquire)

static struct http_route *
http_route_get(const char *route)
{
	unsigned h = str_hash(route), i;
	struct http_route *e = NULL, *cur;

	for (i = 0; i < HTTP_ROUTES; i++) {
		_Atomic(struct http_route *) *slot =
		    &http_routes[(h + i) & (HTTP_ROUTES - 1)];

		cur = atomic_load_explicit(slot, memory_order_acquire);
		if (cur == NULL) {
			if (e == NULL) {
				e = xcalloc(1, sizeof(*e));
				e->route = xstrdup(route);
				e->labels = label("route", route, NULL, NULL);
			}
			if (PUBLISH(slot, e, cur))
				return e;
		}
		if (strcmp(cur->route, route) == 0)
			break;
	}
	if (e != NULL) {
		free(e->route);
		free(e->labels);
		free(e);
	}
	return i < HTTP_ROUTES ? cur : NULL;
}

static struct http_status *
http_status_get(struct http_route *rt, int status)
{
	struct http_status *e = NULL, *cur;
	unsigned i;

	for (i = 0; i < HTTP_STATUSES; i++) {
		_Atomic(struct http_status *) *slot =
		    &rt->st[((unsigned)status + i) & (HTTP_STATUSES - 1)];

		cur = atomic_load_explicit(slot, memory_order_acquire);
		if (cur == NULL) {
			if (e == NULL) {
				char st[16];

				snprintf(st, sizeof(st), "%d", status);
				e = xcalloc(1, sizeof(*e));
				e->status = status;
				e->labels = label("route", rt->route, "status",
				    st);
			}
			if (PUBLISH(slot, e, cur))
				return e;
		}
		if (cur->status == status)
			break;
	}
	if (e != NULL) {
		free(e->labels);
		free(e);
	}
	return i < HTTP_STATUSES ? cur : NULL;
}

void
metrics_http(const char *route, int status, int64_t ms)
{
	struct http_route *rt = http_route_get(route);
	struct http_status *st;
	size_t b = 0;

	if (rt == NULL)
		return;
	if ((st = http_status_get(rt, status)) != NULL)
		atomic_fetch_add_explicit(&st->count, 1, memory_order_relaxed);
	while (b < NBUCKETS && (double)ms / 1000.0 > buckets[b])
		b++;
	atomic_fetch_add_explicit(&rt->bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&rt->sum_ms, ms, memory_order_relaxed);
}

void
metrics_callback(const char *outcome)
{
	inc(families[2].name, label("outcome", outcome, NULL, NULL));
}

void
metrics_finx(const char *endpoint, const char *outcome, int64_t ms)
{
	inc(families[3].name, label("endpoint", endpoint, "outcome", outcome));
	observe(families[4].name, label("endpoint", endpoint, NULL, NULL), ms);
}

void
metrics_refresh(const char *outcome)
{
	inc(families[5].name, label("outcome", outcome, NULL, NULL));
}

void
metrics_webhook(const char *outcome, int64_t ms)
{
	inc(families[6].name, label("outcome", outcome, NULL, NULL));
	observe(families[7].name, xstrdup(""), ms);
}

/* One histogram series: le[] cumulative, le[NBUCKETS] the +Inf count. */
static void
render_hist(struct buf *out, const char *name, const char *labels,
    const long long *le, double sum)
{
	const char *sep = labels[0] ? "," : "";
	size_t b;

	for (b = 0; b < NBUCKETS; b++)
		buf_appendf(out, "%s_bucket{%s%sle=\"%g\"} %lld\n", name,
		    labels, sep, buckets[b], le[b]);
	buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", name, labels,
	    sep, le[NBUCKETS]);
	buf_appendf(out, "%s_sum{%s} %.6f\n", name, labels, sum);
	buf_appendf(out, "%s_count{%s} %lld\n", name, labels, le[NBUCKETS]);
}

/* The lock-free HTTP series of family f (families[0] or [1]). */
static void
render_http(struct buf *out, const struct family *f)
{
	size_t i, j;

	for (i = 0; i < HTTP_ROUTES; i++) {
		struct http_route *rt = atomic_load(&http_routes[i]);
		long long le[NBUCKETS + 1], acc = 0;

		if (rt == NULL)
			continue;
		if (f == &families[1]) {
			for (j = 0; j <= NBUCKETS; j++)
				le[j] = acc += atomic_load(&rt->bucket[j]);
			render_hist(out, f->name, rt->labels, le,
			    (double)atomic_load(&rt->sum_ms) / 1000.0);
			continue;
		}
		for (j = 0; j < HTTP_STATUSES; j++) {
			struct http_status *st = atomic_load(&rt->st[j]);

			if (st != NULL)
				buf_appendf(out, "%s{%s} %lld\n", f->name,
				    st->labels, atomic_load(&st->count));
		}
	}
}

static void
render_family(struct buf *out, const struct family *f)
{
	int i;

	buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
	    f->name, f->type);
	if (f == &families[0] || f == &families[1])
		render_http(out, f);
	for (i = 0; i < reg.n; i++) {
		struct series *s = &reg.s[i];
		long long le[NBUCKETS + 1];

		if (s->name != f->name)
			continue;
		if (!s->histogram) {
			buf_appendf(out, "%s{%s} %lld\n", f->name, s->labels,
			    s->count);
			continue;
		}
		memcpy(le, s->le, sizeof(s->le));
		le[NBUCKETS] = s->count;
		render_hist(out, f->name, s->labels, le, s->sum);
	}
}

void
metrics_gauge(struct buf *out, const char *name, const char *help,
    const char *type, long value)
{
	buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %ld\n", name, help,
	    name, type, name, value);
}

void
metrics_render(struct buf *out)
{
	size_t i;

	pthread_mutex_lock(&reg.mu);
	for (i = 0; i < sizeof(families) / sizeof(families[0]); i++)
		render_family(out, &families[i]);
	pthread_mutex_unlock(&reg.mu);
}
