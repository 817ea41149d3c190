/*
 * Webhook deliveries (webhook.h; the reasoning is in EVENTS.md).
 *
 * One dispatcher thread claims due events, as many as there are idle
 * senders, in one committed UPDATE ... SKIP LOCKED (store_events.c), and
 * hands them to the sender threads; each sender POSTs its event on a
 * handle of its own (keep-alive: a re-sent webhook is harmless, it is at
 * least once anyway) and records the outcome with a compare-and-set on
 * the claim.  No database connection is held while an endpoint answers.
 * The claim's deadline is the attempt's timeout plus a margin, so an
 * event whose process died is attempted again after it, and never while
 * its attempt can still be running.
 *
 * The dispatcher polls every 200 ms when it finds nothing (a commit-to-
 * delivery latency well under a second, one cheap index probe per poll
 * and process) and, every few seconds, keeps house: pending events of
 * types this process does not deliver become 'none', a URL that answered
 * 410 fails what is pending, events past FINXD_EVENT_RETENTION go, and
 * after a delivery succeeded, retries still waiting on their backoff
 * (up to an hour after a long outage) are made due: an endpoint that
 * comes back gets its backlog within seconds, not within the hour.
 */
#include "webhook.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "encode.h"
#include "finx.h"
#include "lease.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "secret.h"
#include "store_events.h"

#ifndef FINXD_VERSION
#define FINXD_VERSION "dev"
#endif

#define POLL_MS 200
#define HOUSEKEEPING_MS 5000
#define PRUNE_MS 60000
#define CLAIM_MARGIN_S 10 /* beyond the attempt's timeout */
#define READ_CAP (64 * 1024) /* of an endpoint's answer; the rest unread */
#define RETRY_MAX_S 3600
#define WAKE_AFTER_S 60

struct job {
	struct store_delivery d;
	struct job *next;
};

static struct {
	const struct config *cfg;
	char *url_hash; /* hex SHA-256 of the URL */
	char *types;    /* text[] literal of FINXD_WEBHOOK_EVENTS, or NULL */
	bool loopback;
	pthread_t dispatcher;
	bool dispatcher_up;
	pthread_t *senders;
	int n_senders;
	pthread_mutex_t mu;
	pthread_cond_t work; /* a job queued, or stop */
	pthread_cond_t idle; /* a sender became idle, or stop */
	struct job *head, *tail;
	int queued, idle_n;
	atomic_bool stop;
	atomic_bool gone; /* the URL answered 410 (any process) */
	/* a delivery succeeded since the last housekeeping */
	atomic_bool delivered;
	atomic_bool claim_failing;
	/* the gauges, as the dispatcher last read them */
	atomic_long pending;
	_Atomic double oldest_s;
} wh = { .mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
	.idle = PTHREAD_COND_INITIALIZER };

/* ---- pure ---------------------------------------------------------- */

char *
webhook_signature(const struct webhook_secret *s, size_t n, const char *id,
    long ts, const char *body, size_t len)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mlen;
	struct buf msg, out;
	size_t i;

	buf_init(&msg, len + strlen(id) + 64);
	buf_appendf(&msg, "%s.%ld.", id, ts);
	buf_append(&msg, body, len);
	buf_init(&out, 256 * (n + 1));
	for (i = 0; i < n; i++) {
		char *b64;

		HMAC(EVP_sha256(), s[i].key, (int)s[i].len,
		    (const unsigned char *)msg.data, msg.len,
		    mac, &mlen);
		b64 = b64_encode(mac, mlen);
		buf_appendf(&out, "%sv1,%s", i ? " " : "", b64);
		free(b64);
	}
	buf_free(&msg);
	return buf_steal(&out);
}

long
webhook_retry_delay(long attempt, long status, long retry_after,
    unsigned rnd)
{
	long base = 10;

	if ((status == 429 || status == 503) && retry_after >= 0)
		return retry_after < 1 ? 1
		    : retry_after > RETRY_MAX_S ? RETRY_MAX_S : retry_after;
	while (--attempt > 0 && base < RETRY_MAX_S)
		base *= 2;
	if (base > RETRY_MAX_S)
		base = RETRY_MAX_S;
	return base - base / 2 + (long)(rnd % (unsigned)(base / 2 + 1));
}

char *
webhook_types_literal(char *const *types, size_t n)
{
	struct buf b;
	size_t i;

	if (n == 0)
		return NULL;
	buf_init(&b, 4096);
	buf_append_str(&b, "{");
	for (i = 0; i < n; i++)
		buf_appendf(&b, "%s%s", i ? "," : "", types[i]);
	buf_append_str(&b, "}");
	return buf_steal(&b);
}

bool
webhook_delivers(const struct config *cfg, const char *type)
{
	size_t i;

	if (cfg->webhook_url == NULL)
		return false;
	if (cfg->n_webhook_events == 0)
		return true;
	for (i = 0; i < cfg->n_webhook_events; i++)
		if (strcmp(cfg->webhook_events[i], type) == 0)
			return true;
	return false;
}

/* ---- one attempt --------------------------------------------------- */

struct attempt {
	size_t read;      /* bytes of the answer read */
	long retry_after; /* -1: none */
	long status;      /* 0: no answer */
	char error[96];   /* why it failed, our words */
};

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct attempt *a = arg;

	(void)p;
	a->read += size * n;
	/* Returning less stops the transfer: the status is known by now. */
	return a->read > READ_CAP ? 0 : size * n;
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct attempt *a = arg;
	size_t len = size * n;
	char v[128];

	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0)
		a->retry_after = -1;
	else if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		finx_header_value(p, len, v, sizeof(v));
		a->retry_after = finx_retry_after_value(v, RETRY_MAX_S);
	}
	return len;
}

static struct curl_slist *
headers(const struct store_delivery *d, long ts)
{
	struct curl_slist *h = NULL;
	char *sig = webhook_signature(wh.cfg->webhook_secrets,
	    wh.cfg->n_webhook_secrets, d->evt_id, ts, d->json,
	    strlen(d->json));
	char *l[4];
	int i;

	l[0] = xstrdup("Content-Type: application/json");
	l[1] = xasprintf("webhook-id: %s", d->evt_id);
	l[2] = xasprintf("webhook-timestamp: %ld", ts);
	l[3] = xasprintf("webhook-signature: %s", sig);
	for (i = 0; i < 4; i++) {
		h = curl_slist_append(h, l[i]);
		free(l[i]);
	}
	free(sig);
	return h;
}

#define SETOPT(opt, val) curl_easy_setopt(h, opt, val)

static void
setopts(CURL *h, const struct store_delivery *d, struct curl_slist *hd,
    struct attempt *a)
{
	long to = wh.cfg->webhook_timeout_s * 1000;

	SETOPT(CURLOPT_URL, wh.cfg->webhook_url);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, to < 5000 ? to : 5000L);
	SETOPT(CURLOPT_TIMEOUT_MS, to);
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	if (wh.loopback)
		SETOPT(CURLOPT_PROXY, "");
	SETOPT(CURLOPT_USERAGENT, "finxd/" FINXD_VERSION);
	SETOPT(CURLOPT_HTTPHEADER, hd);
	SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(d->json));
	SETOPT(CURLOPT_POSTFIELDS, d->json);
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_WRITEDATA, a);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, a);
}
#undef SETOPT

/* POST d on h into *a; never the endpoint's words in a->error. */
static void
post(CURL *h, const struct store_delivery *d, struct attempt *a)
{
	struct curl_slist *hd = headers(d, (long)now_unix());
	CURLcode rc;

	memset(a, 0, sizeof(*a));
	a->retry_after = -1;
	setopts(h, d, hd, a);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
	curl_slist_free_all(hd);
	curl_easy_reset(h);
	if (a->status >= 300 && a->status < 400)
		snprintf(a->error, sizeof(a->error),
		    "HTTP %ld (redirects are not followed)", a->status);
	else if (a->status > 0 && (a->status < 200 || a->status >= 300))
		snprintf(a->error, sizeof(a->error), "HTTP %ld", a->status);
	else if (a->status == 0 && rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(a->error, sizeof(a->error), "no answer within %ld s",
		    wh.cfg->webhook_timeout_s);
	else if (a->status == 0 && rc == CURLE_COULDNT_CONNECT)
		snprintf(a->error, sizeof(a->error), "connection refused");
	else if (a->status == 0)
		snprintf(a->error, sizeof(a->error), "transport error (%s)",
		    curl_easy_strerror(rc));
}

/* Record the outcome of *a for d; the outcome's metric label. */
static const char *
record(PGconn *c, const struct store_delivery *d, const struct attempt *a)
{
	const char *proc = lease_process_id();
	bool failed = false, ok;

	if (a->status >= 200 && a->status < 300) {
		ok = store_delivery_done(c, d, proc, a->status);
		atomic_store(&wh.delivered, true);
		return ok ? "delivered" : "unrecorded";
	}
	if (a->status == 410) {
		ok = store_endpoint_gone(c, d, proc, wh.url_hash);
		if (ok && !atomic_exchange(&wh.gone, true))
			log_kv(LOG_ERROR, "webhook endpoint answered 410 Gone: "
					  "deliveries stop until "
					  "FINXD_WEBHOOK_URL changes",
			    "event_id", d->evt_id, NULL);
		return ok ? "gone" : "unrecorded";
	}
	ok = store_delivery_retry(c, d, proc, a->status, a->error,
	    webhook_retry_delay(d->nth, a->status, a->retry_after,
		(unsigned)random()),
	    &failed);
	log_kv(failed ? LOG_ERROR : LOG_WARN,
	    failed ? "webhook delivery failed for good"
		   : "webhook delivery failed, will retry",
	    "event_id", d->evt_id, "error", a->error, NULL);
	return !ok ? "unrecorded" : failed ? "failed" : "retry";
}

static void
deliver(CURL *h, const struct store_delivery *d)
{
	int64_t t0 = mono_ms();
	struct attempt a;
	const char *outcome;
	PGconn *c;

	post(h, d, &a);
	if ((c = db_acquire_bulk()) == NULL)
		outcome = "unrecorded";
	else {
		outcome = record(c, d, &a);
		db_release(c);
	}
	if (strcmp(outcome, "unrecorded") == 0)
		/* The claim runs out and the event goes again: at least once. */
		log_kv(LOG_WARN, "webhook outcome not stored", "event_id",
		    d->evt_id, "sqlstate", db_failure_sqlstate(), NULL);
	metrics_webhook(outcome, mono_ms() - t0);
}

/* ---- threads ------------------------------------------------------- */

static void
job_free(struct job *j)
{
	free(j->d.id);
	free(j->d.evt_id);
	free(j->d.json);
	free(j);
}

static void *
sender(void *arg)
{
	CURL *h = curl_easy_init();
	struct job *j;

	(void)arg;
	for (;;) {
		pthread_mutex_lock(&wh.mu);
		while (wh.head == NULL && !atomic_load(&wh.stop))
			pthread_cond_wait(&wh.work, &wh.mu);
		/* Stopping: what is queued is released by webhook_stop. */
		j = atomic_load(&wh.stop) ? NULL : wh.head;
		if (j != NULL) {
			wh.head = j->next;
			if (wh.head == NULL)
				wh.tail = NULL;
			wh.queued--;
			wh.idle_n--;
		}
		pthread_mutex_unlock(&wh.mu);
		if (j == NULL)
			break;
		if (h != NULL)
			deliver(h, &j->d);
		job_free(j);
		pthread_mutex_lock(&wh.mu);
		wh.idle_n++;
		pthread_cond_signal(&wh.idle);
		pthread_mutex_unlock(&wh.mu);
	}
	curl_easy_cleanup(h);
	return NULL;
}

/* Queue the n claimed deliveries d (taken over: d is freed). */
static void
enqueue(struct store_delivery *d, int n)
{
	int i;

	pthread_mutex_lock(&wh.mu);
	for (i = 0; i < n; i++) {
		struct job *j = xcalloc(1, sizeof(*j));

		j->d = d[i];
		if (wh.tail != NULL)
			wh.tail->next = j;
		else
			wh.head = j;
		wh.tail = j;
		wh.queued++;
	}
	pthread_cond_broadcast(&wh.work);
	pthread_mutex_unlock(&wh.mu);
	free(d);
}

/* Claim for the idle senders; true when it filled every one of them. */
static bool
claim(void)
{
	struct store_delivery *d;
	PGconn *c;
	int free_n, n;

	pthread_mutex_lock(&wh.mu);
	free_n = wh.idle_n - wh.queued;
	pthread_mutex_unlock(&wh.mu);
	if (free_n <= 0)
		return true;
	if ((c = db_acquire_bulk()) == NULL)
		return false;
	n = store_deliveries_claim(c, lease_process_id(),
	    wh.cfg->webhook_timeout_s + CLAIM_MARGIN_S, wh.types, free_n, &d);
	db_release(c);
	if (n < 0) {
		/* Once per outage, not five times a second. */
		if (!atomic_exchange(&wh.claim_failing, true))
			log_kv(LOG_WARN, "webhook claims fail; retrying",
			    "sqlstate", db_failure_sqlstate(), NULL);
		return false;
	}
	atomic_store(&wh.claim_failing, false);
	enqueue(d, n);
	return n == free_n;
}

/* How long ago a retried attempt must have begun for the wake to take
 * it: a minute, and never while it may still run (its claim's
 * deadline). */
static long
wake_after_s(void)
{
	long running = wh.cfg->webhook_timeout_s + CLAIM_MARGIN_S + 1;

	return running > WAKE_AFTER_S ? running : WAKE_AFTER_S;
}

/* The sweeps, the gone check, the gauges; the prune when prune. */
static void
housekeeping(bool prune)
{
	PGconn *c = db_acquire_bulk();
	long n;
	double age;
	int g;

	if (c == NULL)
		return;
	store_events_expire(c, wh.cfg->webhook_url != NULL);
	if (wh.cfg->webhook_url != NULL) {
		if ((g = store_endpoint_is_gone(c, wh.url_hash)) >= 0)
			atomic_store(&wh.gone, g == 1);
		if (wh.types != NULL)
			store_events_sweep_unsubscribed(c, wh.types);
		if (atomic_load(&wh.gone))
			store_events_sweep_gone(c, wh.types, wh.url_hash);
		else
			store_events_requeue_gone(c, wh.types, wh.url_hash);
		/* The endpoint answers again: what waits on a backoff (up to
		 * an hour after a long outage) goes now.  Only attempts that
		 * failed a minute ago or more: an event the endpoint keeps
		 * refusing while it takes others is retried once a minute at
		 * most, not hammered. */
		if (atomic_exchange(&wh.delivered, false))
			store_events_wake_retries(c, wh.types, wake_after_s());
		if (store_events_pending(c, wh.types, &n, &age)) {
			atomic_store(&wh.pending, n);
			atomic_store(&wh.oldest_s, age);
		}
	}
	if (prune)
		while (!atomic_load(&wh.stop) &&
		    store_events_prune(c, wh.cfg->event_retention_s) >= 1000)
			;
	db_release(c);
}

/* Wait up to ms, or until a sender is idle when idle_wake. */
static void
nap(long ms, bool idle_wake)
{
	struct timespec until = realtime_after_ms(ms);
	int rc = 0;

	pthread_mutex_lock(&wh.mu);
	while (!atomic_load(&wh.stop) && rc == 0 &&
	    !(idle_wake && wh.idle_n > wh.queued))
		rc = pthread_cond_timedwait(&wh.idle, &wh.mu, &until);
	pthread_mutex_unlock(&wh.mu);
}

static void *
dispatcher(void *arg)
{
	int64_t next_house = 0, next_prune = mono_ms() + 2000;
	bool full;

	(void)arg;
	while (!atomic_load(&wh.stop)) {
		int64_t now = mono_ms();

		if (now >= next_house) {
			housekeeping(now >= next_prune);
			next_house = now + HOUSEKEEPING_MS;
			if (now >= next_prune)
				next_prune = now + PRUNE_MS;
		}
		full = wh.cfg->webhook_url != NULL &&
		    !atomic_load(&wh.gone) && claim();
		/* All senders busy: go on when one is free; else poll. */
		nap(wh.cfg->webhook_url != NULL ? POLL_MS : HOUSEKEEPING_MS,
		    full);
	}
	return NULL;
}

static bool
url_loopback(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL;
	bool lb = false;

	if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		lb = strcmp(host, "localhost") == 0 ||
		    strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0;
	curl_free(host);
	curl_url_cleanup(u);
	return lb;
}

bool
webhook_start(const struct config *cfg)
{
	unsigned char h[32];
	int i;

	wh.cfg = cfg;
	atomic_store(&wh.stop, false);
	if (cfg->webhook_url != NULL) {
		sha256(cfg->webhook_url, strlen(cfg->webhook_url), h);
		wh.url_hash = hex_encode(h, 32);
		wh.types = webhook_types_literal(cfg->webhook_events,
		    cfg->n_webhook_events);
		wh.loopback = url_loopback(cfg->webhook_url);
		if (strncmp(cfg->webhook_url, "http:", 5) == 0 && !wh.loopback)
			log_kv(LOG_WARN, "FINXD_WEBHOOK_URL is plain http to a "
					 "host that is not loopback: events "
					 "travel unencrypted",
			    NULL);
		wh.senders = xcalloc((size_t)cfg->webhook_concurrency,
		    sizeof(pthread_t));
		/* n_senders counts the threads that run: stop joins those. */
		for (i = 0; i < (int)cfg->webhook_concurrency; i++) {
			if (pthread_create(&wh.senders[i], NULL, sender, NULL))
				return false;
			wh.n_senders++;
			pthread_mutex_lock(&wh.mu);
			wh.idle_n++;
			pthread_mutex_unlock(&wh.mu);
		}
	}
	if (pthread_create(&wh.dispatcher, NULL, dispatcher, NULL))
		return false;
	wh.dispatcher_up = true;
	return true;
}

/* Claimed but not attempted (stopping): due again at once, at any
 * process, instead of when their claims run out. */
static void
release_queued(void)
{
	PGconn *c = wh.head != NULL ? db_acquire_bulk() : NULL;
	struct job *j;

	while ((j = wh.head) != NULL) {
		wh.head = j->next;
		if (c != NULL && !store_delivery_release(c, &j->d,
				     lease_process_id()))
			log_kv(LOG_WARN, "webhook claim not released; it runs "
					 "out",
			    "event_id", j->d.evt_id, NULL);
		job_free(j);
	}
	if (c != NULL)
		db_release(c);
	wh.tail = NULL;
	wh.queued = 0;
}

void
webhook_stop(void)
{
	int i;

	atomic_store(&wh.stop, true);
	pthread_mutex_lock(&wh.mu);
	pthread_cond_broadcast(&wh.work);
	pthread_cond_broadcast(&wh.idle);
	pthread_mutex_unlock(&wh.mu);
	/* The dispatcher first (a claim it is making still enqueues), then
	 * the senders (an attempt in flight ends within its timeout), then
	 * whatever is left queued. */
	if (wh.dispatcher_up)
		pthread_join(wh.dispatcher, NULL);
	wh.dispatcher_up = false;
	for (i = 0; i < wh.n_senders; i++)
		pthread_join(wh.senders[i], NULL);
	release_queued();
	free(wh.senders);
	wh.senders = NULL;
	wh.n_senders = 0;
	wh.idle_n = 0;
	free(wh.url_hash);
	free(wh.types);
	wh.url_hash = wh.types = NULL;
}

bool
webhook_gone(void)
{
	return atomic_load(&wh.gone);
}

void
webhook_render_gauges(struct buf *out)
{
	if (wh.cfg == NULL || wh.cfg->webhook_url == NULL)
		return;
	metrics_gauge(out, "finxd_webhook_pending",
	    "Events waiting for delivery (whole database, as of the last "
	    "housekeeping).", "gauge", atomic_load(&wh.pending));
	buf_appendf(out, "# HELP finxd_webhook_oldest_pending_seconds Age of "
			 "the oldest undelivered event.\n# TYPE "
			 "finxd_webhook_oldest_pending_seconds gauge\n"
			 "finxd_webhook_oldest_pending_seconds %.3f\n",
	    atomic_load(&wh.oldest_s));
	metrics_gauge(out, "finxd_webhook_endpoint_gone",
	    "1 when the webhook URL answered 410 Gone: deliveries stopped.",
	    "gauge", atomic_load(&wh.gone) ? 1 : 0);
}
