/*
 * A small metrics registry: counters and histograms keyed by metric name
 * and a preformatted label set, in one table under a mutex.  Scrapes are
 * rare and the table is small (routes x statuses), so a linear scan is
 * fine and keeps the code obvious.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

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

void
metrics_http(const char *route, int status, int64_t ms)
{
	char st[8];

	snprintf(st, sizeof(st), "%d", status);
	inc(families[0].name, label("route", route, "status", st));
	observe(families[1].name, label("route", route, NULL, NULL), ms);
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

static void
render_family(struct buf *out, const struct family *f)
{
	int i;
	size_t b;

	buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
	    f->name, f->type);
	for (i = 0; i < reg.n; i++) {
		struct series *s = &reg.s[i];
		const char *sep = s->labels[0] ? "," : "";

		if (s->name != f->name)
			continue;
		if (!s->histogram) {
			buf_appendf(out, "%s{%s} %lld\n", f->name, s->labels,
			    s->count);
			continue;
		}
		for (b = 0; b < NBUCKETS; b++)
			buf_appendf(out, "%s_bucket{%s%sle=\"%g\"} %lld\n",
			    f->name, s->labels, sep, buckets[b], s->le[b]);
		buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", f->name,
		    s->labels, sep, s->count);
		buf_appendf(out, "%s_sum{%s} %.6f\n", f->name, s->labels,
		    s->sum);
		buf_appendf(out, "%s_count{%s} %lld\n", f->name, s->labels,
		    s->count);
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
