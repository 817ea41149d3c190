/*
 * The event log and webhooks end to end (issue 14): events written with
 * their changes, GET /v1/events walked while three sessions commit
 * events out of order (none missed, none twice), GET /v1/events/{id}
 * with its delivery state, redelivery, and deliveries to a receiver in
 * this process through every fault SPEC names: an outage (500), a
 * redirect (never followed), a 10 MB answer, a receiver slower than the
 * timeout, Retry-After, a kill -9 of the delivering finxd mid-attempt,
 * two secrets during a rotation, and 410 Gone (deliveries stop, and
 * start again at a new URL).  Signatures are checked here with OpenSSL's
 * HMAC, not with finxd's code; tests/webhooks checks them with the
 * Standard Webhooks library from npm.
 */
#include "it_common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

/* Two whsec_ secrets of 24 bytes (test values, not secrets of anyone). */
#define SECRET1 "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SECRET2 "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHMh"

static const char *db;
static int f;

/* ---- the receiver ---------------------------------------------------- */

enum mode { M_OK, M_FAIL, M_REDIRECT, M_BIG, M_SLOW, M_GONE, M_RETRY_AFTER };

#define MAXGOT 4096
struct got {
	char id[64], ts[24], sig[512], path[64];
	char *body;
	bool valid1, valid2; /* a v1 entry verifies with SECRET1 / SECRET2 */
};

static struct {
	int fd, port;
	pthread_t th;
	atomic_int mode;
	atomic_int hits;     /* requests, every path */
	atomic_int redirected; /* requests for the Location of M_REDIRECT */
	pthread_mutex_t mu;
	struct got got[MAXGOT];
	int n;
} rx = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* The decoded bytes of a whsec_ secret (24 here). */
static int
secret_key(const char *whsec, unsigned char out[64])
{
	EVP_ENCODE_CTX *c = EVP_ENCODE_CTX_new();
	const char *b = whsec + 6;
	int n = 0, m = 0;

	EVP_DecodeInit(c);
	EVP_DecodeUpdate(c, out, &n, (const unsigned char *)b, (int)strlen(b));
	EVP_DecodeFinal(c, out + n, &m);
	EVP_ENCODE_CTX_free(c);
	return n + m;
}

/* True when some "v1,<b64>" entry of sig is HMAC(whsec, id.ts.body). */
static bool
sig_valid(const char *whsec, const struct got *g)
{
	unsigned char key[64], mac[32], b64[64];
	unsigned int mlen;
	char *msg = h_fmt("%s.%s.%s", g->id, g->ts, g->body), want[80];
	int klen = secret_key(whsec, key);

	HMAC(EVP_sha256(), key, klen, (unsigned char *)msg, strlen(msg), mac,
	    &mlen);
	EVP_EncodeBlock(b64, mac, (int)mlen);
	snprintf(want, sizeof(want), "v1,%s", b64);
	free(msg);
	for (const char *p = g->sig; (p = strstr(p, want)) != NULL; p++)
		if ((p == g->sig || p[-1] == ' ') &&
		    (p[strlen(want)] == '\0' || p[strlen(want)] == ' '))
			return true;
	return false;
}

/* The value of header name in the head (lower-case names), into out. */
static void
head_value(const char *head, const char *name, char *out, size_t n)
{
	char *pat = h_fmt("\r\n%s:", name);
	const char *p = strcasestr(head, pat);
	size_t len;

	out[0] = '\0';
	if (p != NULL) {
		p += strlen(pat);
		while (*p == ' ')
			p++;
		len = strcspn(p, "\r\n");
		if (len < n) {
			memcpy(out, p, len);
			out[len] = '\0';
		}
	}
	free(pat);
}

/* Read a request (head and Content-Length body) from fd. */
static char *
read_request(int fd, char **body)
{
	char *buf = calloc(1, 1 << 20), *end, cl[24];
	size_t n = 0, want;
	ssize_t k;

	*body = NULL;
	while (n < (1 << 20) - 1 && (end = strstr(buf, "\r\n\r\n")) == NULL) {
		if ((k = read(fd, buf + n, (1 << 20) - 1 - n)) <= 0)
			return buf;
		n += (size_t)k;
	}
	if (end == NULL)
		return buf;
	head_value(buf, "content-length", cl, sizeof(cl));
	want = (size_t)(end + 4 - buf) + (size_t)h_long(cl, 0);
	while (n < want && n < (1 << 20) - 1) {
		if ((k = read(fd, buf + n, want - n)) <= 0)
			break;
		n += (size_t)k;
	}
	*body = h_dup(end + 4);
	*end = '\0';
	return buf;
}

static void
record(const char *head, char *body)
{
	struct got *g;

	pthread_mutex_lock(&rx.mu);
	if (rx.n < MAXGOT) {
		g = &rx.got[rx.n++];
		head_value(head, "webhook-id", g->id, sizeof(g->id));
		head_value(head, "webhook-timestamp", g->ts, sizeof(g->ts));
		head_value(head, "webhook-signature", g->sig, sizeof(g->sig));
		sscanf(head, "POST %63s", g->path);
		g->body = body;
		g->valid1 = sig_valid(SECRET1, g);
		g->valid2 = sig_valid(SECRET2, g);
		body = NULL;
	}
	pthread_mutex_unlock(&rx.mu);
	free(body);
}

static void
answer(int fd, enum mode m)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
				 "Connection: close\r\n\r\nok";
	char *big;

	switch (m) {
	case M_OK:
		write(fd, ok, sizeof(ok) - 1);
		break;
	case M_FAIL:
		dprintf(fd, "HTTP/1.1 500 Oops\r\nContent-Length: 20\r\n"
			    "Connection: close\r\n\r\nreceiver body secret");
		break;
	case M_REDIRECT:
		dprintf(fd, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:"
			    "%d/moved\r\nContent-Length: 0\r\nConnection: "
			    "close\r\n\r\n", rx.port);
		break;
	case M_BIG:
		/* 10 MB of answer to a 200: finxd reads 64 KiB at most. */
		dprintf(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n"
			    "Connection: close\r\n\r\n");
		big = calloc(1, 1 << 20);
		memset(big, 'x', 1 << 20);
		for (int i = 0; i < 10; i++)
			if (write(fd, big, 1 << 20) < 0)
				break;
		free(big);
		break;
	case M_SLOW:
		h_sleep_ms(4000); /* past FINXD_WEBHOOK_TIMEOUT=2 */
		write(fd, ok, sizeof(ok) - 1);
		break;
	case M_GONE:
		dprintf(fd, "HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n"
			    "Connection: close\r\n\r\n");
		break;
	case M_RETRY_AFTER:
		dprintf(fd, "HTTP/1.1 503 Busy\r\nRetry-After: 2\r\n"
			    "Content-Length: 0\r\nConnection: close\r\n\r\n");
		break;
	}
}

static void *
serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *body, *head = read_request(fd, &body);
	enum mode m = (enum mode)atomic_load(&rx.mode);

	atomic_fetch_add(&rx.hits, 1);
	if (strstr(head, "POST /moved") != NULL ||
	    strstr(head, "GET /moved") != NULL)
		atomic_fetch_add(&rx.redirected, 1);
	if (body != NULL && strncmp(head, "POST /hook", 10) == 0 &&
	    (m == M_OK || m == M_BIG))
		record(head, body); /* only what was answered 2xx */
	else
		free(body);
	answer(fd, m);
	free(head);
	close(fd);
	return NULL;
}

static void *
rx_loop(void *arg)
{
	int c;
	pthread_t t;

	(void)arg;
	while ((c = accept(rx.fd, NULL, NULL)) >= 0) {
		pthread_create(&t, NULL, serve_one, (void *)(intptr_t)c);
		pthread_detach(t);
	}
	return NULL;
}

static void
rx_start(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int one = 1;

	rx.fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(rx.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(rx.fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(rx.fd, 128) != 0)
		h_bail("receiver: bind/listen");
	getsockname(rx.fd, (struct sockaddr *)&a, &l);
	rx.port = ntohs(a.sin_port);
	pthread_create(&rx.th, NULL, rx_loop, NULL);
}

/* How many deliveries of event id the receiver took (2xx). */
static int
rx_count(const char *id)
{
	int i, n = 0;

	pthread_mutex_lock(&rx.mu);
	for (i = 0; i < rx.n; i++)
		n += h_streq(rx.got[i].id, id);
	pthread_mutex_unlock(&rx.mu);
	return n;
}

struct wait_id {
	const char *id;
	int n;
};

static bool
rx_has(void *arg)
{
	struct wait_id *w = arg;

	return rx_count(w->id) >= w->n;
}

/* ---- finxd ----------------------------------------------------------- */

static void
start_finxd(const char *path, const char *secrets)
{
	char *url = h_fmt("http://127.0.0.1:%d%s", rx.port, path);

	h_env_set("FINXD_WEBHOOK_URL", url);
	h_env_set("FINXD_WEBHOOK_SECRET", secrets);
	free(url);
	f = h_finxd_start();
}

/* The ids (evt_...) of the events of type, oldest first, by SQL. */
static char *
last_event_id(const char *type)
{
	return h_sql_value(db,
	    "SELECT 'evt_' || replace(id::text, '-', '') FROM event_log "
	    "WHERE type = $1 ORDER BY xid DESC, seq DESC LIMIT 1",
	    (const char *[]){ type, NULL });
}

static struct json_object *
event_get(const char *id, long *status)
{
	struct h_resp r;
	char *path = h_fmt("/v1/events/%s", id);
	struct json_object *o;

	*status = h_api(f, "GET", path, NULL, &r);
	o = h_resp_json(&r);
	o = o ? json_object_get(o) : NULL;
	h_resp_free(&r);
	free(path);
	return o;
}

/* delivery.<key> of event id as text (malloc'd) or NULL. */
static char *
delivery_of(const char *id, const char *key)
{
	long st;
	struct json_object *o = event_get(id, &st), *d;
	char *v = NULL;

	if (o != NULL && json_object_object_get_ex(o, "delivery", &d) &&
	    json_object_object_get_ex(d, key, &d) && d != NULL)
		v = h_dup(json_object_get_string(d));
	json_object_put(o);
	return v;
}

struct wait_delivery {
	const char *id, *key, *want;
};

static bool
delivery_is(void *arg)
{
	struct wait_delivery *w = arg;
	char *v = delivery_of(w->id, w->key);
	bool ok = v != NULL && strstr(v, w->want) != NULL;

	free(v);
	return ok;
}

static bool
wait_delivery(const char *id, const char *key, const char *want, long ms)
{
	struct wait_delivery w = { id, key, want };

	return h_wait_every(delivery_is, &w, ms, 100);
}

/* A connection and its link.completed, delivered: the event id. */
static char *
connect_one(const char *user)
{
	char *cid = h_connect_retry(f, user), *id;

	if (cid == NULL)
		h_bail("no connection for %s", user);
	free(cid);
	id = last_event_id("link.completed");
	if (id == NULL)
		h_bail("no link.completed event");
	return id;
}

/* ---- tests ----------------------------------------------------------- */

static void
test_event_shapes(void)
{
	char *cid = h_connect_retry(f, "evt-user-1"), *id;
	struct json_object *o, *data;
	struct wait_id w;
	long st;

	id = last_event_id("link.completed");
	CHECK(cid != NULL && id != NULL, "a connection has its link.completed");
	o = event_get(id, &st);
	CHECK(st == 200 && h_streq(h_jstr(o, "id"), id) &&
		h_streq(h_jstr(o, "type"), "link.completed") &&
		h_jstr(o, "timestamp") != NULL &&
		strchr(h_jstr(o, "timestamp"), 'Z') != NULL,
	    "GET /v1/events/{id}: id, type, an RFC 3339 UTC timestamp");
	CHECK(o != NULL && json_object_object_get_ex(o, "data", &data) &&
		h_streq(h_jstr(data, "user_id"), "evt-user-1") &&
		h_streq(h_jstr(data, "status"), "connected") &&
		h_streq(h_jstr(data, "connection_id"), cid) &&
		h_jnull(data, "reason") && h_jstr(data, "link_id") != NULL,
	    "link.completed data: link_id, user_id, status, connection_id, "
	    "reason");
	json_object_put(o);
	w.id = id;
	w.n = 1;
	CHECK(h_wait_every(rx_has, &w, 5000, 50), "delivered within 5 s");
	CHECK(wait_delivery(id, "status", "delivered", 3000),
	    "delivery.status delivered");
	pthread_mutex_lock(&rx.mu);
	for (int i = 0; i < rx.n; i++)
		if (h_streq(rx.got[i].id, id)) {
			CHECK(rx.got[i].valid1 && rx.got[i].valid2,
			    "both secrets' signatures verify (rotation)");
			CHECK(strstr(rx.got[i].body, id) != NULL &&
				labs(h_long(rx.got[i].ts, 0) -
				    h_realtime_ms() / 1000) < 60,
			    "the body is the event; webhook-timestamp is now");
		}
	pthread_mutex_unlock(&rx.mu);
	CHECK(h_conn_api(f, "DELETE", cid, NULL, NULL) == 200,
	    "DELETE the connection");
	free(id);
	id = last_event_id("connection.revoked");
	o = id ? event_get(id, &st) : NULL;
	CHECK(o != NULL && json_object_object_get_ex(o, "data", &data) &&
		h_streq(h_jstr(data, "connection_id"), cid) &&
		h_streq(h_jstr(data, "user_id"), "evt-user-1"),
	    "connection.revoked with connection_id and user_id");
	json_object_put(o);
	free(id);
	free(cid);
}

/* A cancelled widget: link.completed cancelled with its reason and no
 * connection; a replay of the callback adds no second event. */
static void
test_cancelled(void)
{
	struct flow fl;
	struct h_resp r;
	struct json_object *o, *data;
	char *id, *q;
	long st, n;

	if (!flow_widget(f, "evt-cancel", H_RETURN_URL, "cancel", &fl)) {
		CHECK(0, "a cancelled flow");
		flow_free(&fl);
		return;
	}
	h_http("GET", fl.callback, NULL, NULL, 0, &r);
	h_resp_free(&r);
	h_http("GET", fl.callback, NULL, NULL, 0, &r);
	h_resp_free(&r);
	q = h_fmt("SELECT count(*) FROM event_log WHERE link_id = '%s'",
	    fl.link_id);
	n = h_sql_long(db, q, NULL);
	id = last_event_id("link.completed");
	o = id ? event_get(id, &st) : NULL;
	CHECK(n == 1 && o != NULL &&
		json_object_object_get_ex(o, "data", &data) &&
		h_streq(h_jstr(data, "link_id"), fl.link_id) &&
		h_streq(h_jstr(data, "status"), "cancelled") &&
		h_streq(h_jstr(data, "reason"), "user_cancelled") &&
		h_jnull(data, "connection_id"),
	    "a cancelled link: one link.completed, cancelled, user_cancelled, "
	    "no connection (a replayed callback adds none; %ld)", n);
	json_object_put(o);
	free(id);
	free(q);
	flow_free(&fl);
}

static void
test_bad_ids(void)
{
	struct h_resp r;
	static const char *const bad[] = { "/v1/events/evt_nothex",
		"/v1/events/123", "/v1/events/evt_0000000000000000000000000000"
				  "0000",
		NULL };

	for (int i = 0; bad[i] != NULL; i++) {
		CHECK(h_api(f, "GET", bad[i], NULL, &r) == 404, "%s: 404",
		    bad[i]);
		h_resp_free(&r);
	}
	static const char *const q[] = { "/v1/events?limit=0",
		"/v1/events?limit=501", "/v1/events?limit=x",
		"/v1/events?types=link.completed,nope",
		"/v1/events?after=garbage", "/v1/events?after=ZTox",
		"/v1/events?after=evt_00000000000000000000000000000000",
		"/v1/events?after=%00", "/v1/events?after=%zz",
		"/v1/events?types=%00", NULL };
	for (int i = 0; q[i] != NULL; i++) {
		CHECK(h_api(f, "GET", q[i], NULL, &r) == 400 &&
			h_err_is(&r, "invalid_parameter"),
		    "%s: 400", q[i]);
		h_resp_free(&r);
	}
}

/* Each of n sessions commits events in transactions held open for a
 * random while, so commits land out of xid order. */
struct writer {
	int n, k;
	pthread_t th;

};

static void *
writer_run(void *arg)
{
	struct writer *w = arg;
	PGconn *c = PQconnectdb(db);

	for (int i = 0; i < w->n && PQstatus(c) == CONNECTION_OK; i++) {
		char ms[16];

		PQclear(PQexec(c, "BEGIN"));
		PQclear(PQexec(c, "INSERT INTO event_log (type, data) VALUES "
				  "('transactions.updated', '{\"walk\": 1}')"));
		snprintf(ms, sizeof(ms), "%d", rand() % 40);
		h_sleep_ms(h_long(ms, 0));
		PQclear(PQexec(c, "COMMIT"));
	}
	PQfinish(c);
	return NULL;
}

/* Walk GET /v1/events?types=...&limit=7 from *cursor; ids appended. */
static int
walk(char **cursor, char ***ids, int *n, int *cap)
{
	struct h_resp r;
	struct json_object *o, *arr;
	char *path = *cursor
	    ? h_fmt("/v1/events?types=transactions.updated&limit=7&after=%s",
		  *cursor)
	    : h_dup("/v1/events?types=transactions.updated&limit=7");
	int got = -1;

	if (h_api(f, "GET", path, NULL, &r) == 200 &&
	    (o = h_resp_json(&r)) != NULL &&
	    json_object_object_get_ex(o, "events", &arr)) {
		got = (int)json_object_array_length(arr);
		for (int i = 0; i < got; i++) {
			struct json_object *e = json_object_array_get_idx(arr, i),
					   *d;

			/* Only the writers' rows: pulls add real ones. */
			if (!json_object_object_get_ex(e, "data", &d) ||
			    !json_object_object_get_ex(d, "walk", NULL))
				continue;
			if (*n == *cap)
				*ids = realloc(*ids, sizeof(char *) *
					(size_t)(*cap = *cap * 2 + 64));
			(*ids)[(*n)++] = h_dup(h_jstr(e, "id"));
		}
		free(*cursor);
		*cursor = h_dup(h_jstr(o, "next_cursor"));
	}
	h_resp_free(&r);
	free(path);
	return got;
}

static long
walk_rows(void)
{
	return h_sql_long(db, "SELECT count(*) FROM event_log WHERE type = "
			      "'transactions.updated' AND data ? 'walk'", NULL);
}

static void
test_walk_concurrent(void)
{
	struct writer w[3] = { { .n = 60 }, { .n = 60 }, { .n = 60 } };
	char *cursor = NULL, **ids = NULL;
	int n = 0, cap = 0, dup = 0, i, j, rounds = 0, got;
	bool joined = false;

	for (i = 0; i < 3; i++)
		pthread_create(&w[i].th, NULL, writer_run, &w[i]);
	/* Walk while they write; once they are done, until a page is empty
	 * with every row seen. */
	for (; rounds < 5000; rounds++) {
		if ((got = walk(&cursor, &ids, &n, &cap)) < 0)
			break;
		if (got == 0 && joined && n >= walk_rows())
			break;
		if (got == 0 && !joined && rounds > 20) {
			for (i = 0; i < 3; i++)
				pthread_join(w[i].th, NULL);
			joined = true;
		}
		if (got == 0)
			h_sleep_ms(5);
	}
	if (!joined)
		for (i = 0; i < 3; i++)
			pthread_join(w[i].th, NULL);
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			dup += h_streq(ids[i], ids[j]);
	CHECK(walk_rows() == 180 && n == 180 && dup == 0,
	    "a reader walking while 3 sessions commit out of order saw all "
	    "%ld events once (saw %d, %d twice, %d pages)", walk_rows(), n,
	    dup, rounds);
	j = n;
	CHECK(walk(&cursor, &ids, &n, &cap) >= 0 && n == j,
	    "the last cursor answers nothing new");
	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(cursor);
}

/* Mode m for one new event: its id once it reached delivery.<key>. */
static char *
fault(enum mode m, const char *user, const char *key, const char *want,
    long ms, const char *what)
{
	char *id;

	atomic_store(&rx.mode, m);
	id = connect_one(user);
	CHECK(wait_delivery(id, key, want, ms), "%s: delivery.%s has %s", what,
	    key, want);
	return id;
}

static void
test_faults(void)
{
	char *id, *err;
	struct wait_id w;
	int before;

	id = fault(M_FAIL, "evt-fail", "last_error", "HTTP 500", 5000,
	    "a receiver answering 500");
	err = delivery_of(id, "status");
	CHECK(h_streq(err, "pending"), "still pending after a 500");
	free(err);
	err = delivery_of(id, "last_error");
	CHECK(err != NULL && strstr(err, "receiver body") == NULL,
	    "last_error never holds the endpoint's body");
	free(err);
	atomic_store(&rx.mode, M_OK);
	w.id = id;
	w.n = 1;
	CHECK(h_wait_every(rx_has, &w, 15000, 100),
	    "the outage ends: delivered by the first retry (within 10 s)");
	free(id);

	before = atomic_load(&rx.redirected);
	id = fault(M_REDIRECT, "evt-redirect", "last_error", "redirects", 5000,
	    "a 302");
	CHECK(atomic_load(&rx.redirected) == before,
	    "the redirect was not followed");
	free(id);

	id = fault(M_SLOW, "evt-slow", "last_error", "no answer within", 9000,
	    "a receiver slower than the timeout");
	free(id);

	id = fault(M_RETRY_AFTER, "evt-retry-after", "last_error", "HTTP 503",
	    5000, "503 with Retry-After: 2");
	atomic_store(&rx.mode, M_OK);
	w.id = id;
	CHECK(h_wait_every(rx_has, &w, 8000, 100),
	    "delivered after the Retry-After");
	free(id);

	id = fault(M_BIG, "evt-big", "status", "delivered", 10000,
	    "a 200 with a 10 MB body");
	free(id);
	atomic_store(&rx.mode, M_OK);
}

/* A cursor is for its own types; has_more says a page was full. */
static void
test_cursor_types(void)
{
	struct h_resp r;
	char *cur, *path;

	CHECK(h_api(f, "GET", "/v1/events?types=link.completed&limit=1", NULL,
		  &r) == 200 &&
		json_object_get_boolean(json_object_object_get(h_resp_json(&r),
		    "has_more")),
	    "a full page: has_more true");
	cur = h_dup(h_jstr(h_resp_json(&r), "next_cursor"));
	h_resp_free(&r);
	path = h_fmt("/v1/events?types=connection.revoked&after=%s", cur);
	CHECK(h_api(f, "GET", path, NULL, &r) == 400,
	    "a cursor of other types: 400");
	h_resp_free(&r);
	free(path);
	path = h_fmt("/v1/events?types=link.completed&after=%s", cur);
	CHECK(h_api(f, "GET", path, NULL, &r) == 200,
	    "the same cursor with its own types: 200");
	h_resp_free(&r);
	free(path);
	free(cur);
}

static bool
row_gone(void *q)
{
	return h_sql_long(db, q, NULL) == 0;
}

/* Housekeeping: a pending event past its 3-day window fails; an event
 * past the retention goes. */
static char *hk_old, *hk_gone;

/* Before finxd starts: its first housekeeping (2 s after start) finds
 * them. */
static void
plant_housekeeping(void)
{
	hk_old = h_sql_value(db,
	    "INSERT INTO event_log (type, data, at, queued_at) VALUES "
	    "('transactions.updated', '{\"old\": 1}', now() - interval "
	    "'4 days', now() - interval '4 days') RETURNING "
	    "'evt_' || replace(id::text, '-', '')", NULL);
	hk_gone = h_sql_value(db,
	    "INSERT INTO event_log (type, data, at, queued_at, delivery) "
	    "VALUES ('transactions.updated', '{\"ancient\": 1}', now() - "
	    "interval '31 days', now() - interval '31 days', 'delivered') "
	    "RETURNING id::text", NULL);
}

static void
test_housekeeping(void)
{
	char *q = h_fmt("SELECT count(*) FROM event_log WHERE id = '%s'",
	    hk_gone);

	CHECK(wait_delivery(hk_old, "last_error", "within 3 days", 12000),
	    "pending past its 3-day window: failed, not sent");
	CHECK(rx_count(hk_old) == 0, "and never attempted");
	CHECK(h_wait_every(row_gone, q, 15000, 200),
	    "an event past FINXD_EVENT_RETENTION is deleted");
	free(q);
	free(hk_old);
	free(hk_gone);
}

/* An endpoint down for an hour: an event whose retry waits an hour more
 * goes within seconds of the first delivery that succeeds. */
static void
test_backlog_after_outage(void)
{
	char *planted = h_sql_value(db,
	    "INSERT INTO event_log (type, data, attempts, last_attempt_at, "
	    "next_attempt_at, last_error, at, queued_at) VALUES "
	    "('transactions.updated', '{\"backlog\": 1}', 9, now() - "
	    "interval '5 minutes', now() + interval '55 minutes', 'HTTP 500', "
	    "now() - interval '1 hour', now() - interval '1 hour') RETURNING "
	    "'evt_' || replace(id::text, '-', '')", NULL);
	struct wait_id w = { planted, 1 };
	char *id;

	atomic_store(&rx.mode, M_OK);
	id = connect_one("evt-backlog");
	CHECK(h_wait_every(rx_has, &w, 12000, 100),
	    "after an hour's outage the backlog goes within seconds of the "
	    "first success, not at its next retry an hour later");
	free(id);
	free(planted);
}

static void
test_redeliver(void)
{
	char *id = connect_one("evt-redeliver"), *path;
	struct h_resp r;
	struct wait_id w = { id, 1 };

	CHECK(h_wait_every(rx_has, &w, 5000, 50), "delivered once");
	path = h_fmt("/v1/events/%s/redeliver", id);
	CHECK(h_api(f, "POST", path, NULL, &r) == 202, "redeliver: 202");
	h_resp_free(&r);
	w.n = 2;
	CHECK(h_wait_every(rx_has, &w, 5000, 50),
	    "redelivered with the same webhook-id");
	free(path);
	free(id);
}

static void
test_kill_mid_delivery(void)
{
	char *id;
	struct wait_id w;

	atomic_store(&rx.mode, M_SLOW);
	id = connect_one("evt-kill");
	h_sleep_ms(1000); /* the attempt runs: the receiver holds it */
	h_finxd_stop(f, SIGKILL);
	atomic_store(&rx.mode, M_OK);
	start_finxd("/hook", SECRET1 "," SECRET2);
	w.id = id;
	w.n = 1;
	CHECK(h_wait_every(rx_has, &w, 25000, 100),
	    "kill -9 mid-attempt: another process delivers it after the "
	    "claim's deadline");
	CHECK(wait_delivery(id, "status", "delivered", 3000),
	    "and records it delivered");
	free(id);
}

static void
test_gone(void)
{
	char *id, *id2, *v;
	struct wait_id w;

	id = fault(M_GONE, "evt-gone", "last_error", "endpoint_gone", 5000,
	    "410 Gone");
	v = delivery_of(id, "status");
	CHECK(h_streq(v, "failed"), "a 410 fails the event");
	free(v);
	CHECK(h_metric(f, "finxd_webhook_endpoint_gone") == 1,
	    "the metric says the endpoint is gone");
	atomic_store(&rx.mode, M_OK);
	id2 = connect_one("evt-after-gone");
	CHECK(wait_delivery(id2, "last_error", "endpoint_gone", 8000),
	    "a later event fails too: deliveries stopped");
	CHECK(rx_count(id2) == 0, "and nothing was sent");
	CHECK(h_log_contains("410 Gone"), "finxd logs it");
	/* A new URL: deliveries start again, and a failed one can go. */
	h_finxd_stop(f, SIGTERM);
	start_finxd("/hook/v2", SECRET1);
	free(id);
	id = connect_one("evt-new-url");
	w.id = id;
	w.n = 1;
	CHECK(h_wait_every(rx_has, &w, 5000, 50),
	    "a new URL: deliveries resume");
	free(id);
	free(id2);
}

int
main(void)
{
	h_init("it_events", 280);
	db = h_setup(NULL);
	rx_start();
	h_env_set("FINXD_WEBHOOK_TIMEOUT", "2");
	h_env_set("FINXD_REFRESH_INTERVAL", "3600");
	plant_housekeeping();
	start_finxd("/hook", SECRET1 "," SECRET2);

	test_housekeeping();
	test_event_shapes();
	test_cancelled();
	test_bad_ids();
	test_walk_concurrent();
	test_faults();
	test_cursor_types();
	test_backlog_after_outage();
	test_redeliver();
	test_kill_mid_delivery();
	test_gone();
	CHECK(!h_log_contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") &&
		!h_log_contains("c2Vjb25kLXNlY3JldC1mb3ItdGVzdHMh") &&
		!h_log_contains("/hook"),
	    "neither the secrets nor the webhook URL are in finxd's log");
	return h_done(test_done());
}
