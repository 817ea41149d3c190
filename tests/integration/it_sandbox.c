/*
 * finx-sandbox's own calls, over HTTP against the sandbox the harness
 * starts (no finxd, no PostgreSQL): /rest/notifications (register, list,
 * read, replace, delete; each user touches only its own; bad observe
 * keys and notify URIs are 400), firing them at a tiny loopback receiver
 * in this test (the payload, the User-Agent, the statuses, a redirect
 * not followed, a receiver past the timeout), and the bank changes of
 * /_sandbox/transactions/{book,add,correct,drop} as the next /rest reads
 * show them, with exact amounts and balances.
 */
#include "it_common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#define NTX 6      /* sandbox --transactions: per account */
#define RECV_MAX 64 /* requests the receiver keeps */

/* ---- a loopback receiver of notifications ---------------------------- */

struct got {
	char method[16];
	char path[256];
	char ua[128];
	char ctype[128];
	char *body;
};

static struct {
	pthread_mutex_t mu;
	pthread_t th;
	int fd;
	int port;
	volatile int stop;
	int status;   /* what it answers */
	long delay_ms; /* before answering */
	int n;
	struct got got[RECV_MAX];
} rv = { .mu = PTHREAD_MUTEX_INITIALIZER, .status = 204 };

/* The value of header name in the head (lower-cased names), into out. */
static void
head_value(const char *head, const char *name, char *out, size_t n)
{
	const char *p = head;
	size_t len = strlen(name), k;

	out[0] = '\0';
	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, name, len) != 0 || p[len] != ':')
			continue;
		for (p += len + 1; *p == ' '; p++)
			;
		k = strcspn(p, "\r\n");
		snprintf(out, n, "%.*s", (int)k, p);
		return;
	}
}

/* Reads one request (head and Content-Length body) from fd. */
static bool
recv_read(int fd, struct got *g)
{
	char buf[16384], cl[32], *end = NULL;
	size_t have = 0, want;
	ssize_t k;

	while (end == NULL && have < sizeof(buf) - 1) {
		if ((k = read(fd, buf + have, sizeof(buf) - 1 - have)) <= 0)
			return false;
		have += (size_t)k;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	if (end == NULL)
		return false;
	*end = '\0';
	sscanf(buf, "%15s %255s", g->method, g->path);
	head_value(buf, "user-agent", g->ua, sizeof(g->ua));
	head_value(buf, "content-type", g->ctype, sizeof(g->ctype));
	head_value(buf, "content-length", cl, sizeof(cl));
	want = (size_t)strtoul(cl, NULL, 10) + (size_t)(end + 4 - buf);
	while (have < want && have < sizeof(buf) - 1) {
		if ((k = read(fd, buf + have, sizeof(buf) - 1 - have)) <= 0)
			return false;
		have += (size_t)k;
	}
	g->body = strndup(end + 4, have - (size_t)(end + 4 - buf));
	return true;
}

static void
recv_one(int fd)
{
	struct got g;
	char reply[256];
	int status;
	long delay;

	memset(&g, 0, sizeof(g));
	if (!recv_read(fd, &g))
		return;
	pthread_mutex_lock(&rv.mu);
	if (rv.n < RECV_MAX)
		rv.got[rv.n++] = g;
	else
		free(g.body);
	status = rv.status;
	delay = rv.delay_ms;
	pthread_mutex_unlock(&rv.mu);
	h_sleep_ms(delay);
	snprintf(reply, sizeof(reply),
	    "HTTP/1.1 %d Test\r\nContent-Length: 0\r\nConnection: close\r\n"
	    "%s\r\n",
	    status, status / 100 == 3 ? "Location: /elsewhere\r\n" : "");
	/* the sandbox may have given up already: no SIGPIPE */
	if (send(fd, reply, strlen(reply), MSG_NOSIGNAL) < 0)
		return;
}

static void *
recv_main(void *arg)
{
	struct pollfd p = { .events = POLLIN };
	int c;

	(void)arg;
	p.fd = rv.fd;
	while (!rv.stop) {
		if (poll(&p, 1, 100) <= 0)
			continue;
		if ((c = accept(rv.fd, NULL, NULL)) < 0)
			continue;
		recv_one(c);
		close(c);
	}
	return NULL;
}

static void
recv_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rv.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (rv.fd < 0 || bind(rv.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(rv.fd, 16) < 0 ||
	    getsockname(rv.fd, (struct sockaddr *)&sa, &len) < 0)
		h_bail("receiver: %s", strerror(errno));
	rv.port = ntohs(sa.sin_port);
	if (pthread_create(&rv.th, NULL, recv_main, NULL) != 0)
		h_bail("receiver thread");
}

static void
recv_stop(void)
{
	int i;

	rv.stop = 1;
	pthread_join(rv.th, NULL);
	close(rv.fd);
	for (i = 0; i < rv.n; i++)
		free(rv.got[i].body);
}

/* Forget what came; answer status after delay_ms from now on. */
static void
recv_reset(int status, long delay_ms)
{
	int i;

	pthread_mutex_lock(&rv.mu);
	for (i = 0; i < rv.n; i++)
		free(rv.got[i].body);
	rv.n = 0;
	rv.status = status;
	rv.delay_ms = delay_ms;
	pthread_mutex_unlock(&rv.mu);
}

static int
recv_count(void)
{
	int n;

	pthread_mutex_lock(&rv.mu);
	n = rv.n;
	pthread_mutex_unlock(&rv.mu);
	return n;
}

/* ---- helpers ---------------------------------------------------------- */

static char *tok, *tok2; /* users "it-sbx-0" and "it-other-0" */
static const char *user = "it-sbx-0";
static char acc1[64], acc2[64];

/* A whole amount in cents from the JSON number's text (never a double);
 * INT64_MIN when it is not one with two decimals. */
static int64_t
cents_of(struct json_object *o, const char *key)
{
	struct json_object *v;
	const char *s, *dot;
	long long whole;
	int64_t c;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_double))
		return INT64_MIN;
	s = json_object_get_string(v);
	if ((dot = strchr(s, '.')) == NULL || strlen(dot) != 3)
		return INT64_MIN;
	whole = strtoll(s, NULL, 10);
	c = (int64_t)(dot[1] - '0') * 10 + (dot[2] - '0');
	whole *= 100;
	return s[0] == '-' ? (int64_t)whole - c : (int64_t)whole + c;
}

/* GET path on the sandbox as tok: the JSON of a 200 (caller puts). */
static struct json_object *
rest_get(const char *t, const char *path)
{
	struct json_object *o = NULL;
	struct h_resp r;

	if (h_sbx_rest(t, "GET", path, NULL, &r) == 200 && h_resp_json(&r))
		o = json_object_get(r.json);
	h_resp_free(&r);
	return o;
}

static long
rest_status(const char *t, const char *method, const char *path,
    const char *json)
{
	struct h_resp r;
	long st = h_sbx_rest(t, method, path, json, &r);

	h_resp_free(&r);
	return st;
}

/* POST /rest/notifications: the status; the id (malloc'd) in *id. */
static long
note_add(const char *t, const char *key, const char *uri, char **id)
{
	char *body = h_fmt("{\"observe_key\":\"%s\",\"notify_uri\":\"%s\","
	                   "\"state\":\"st-1\"}",
	    key, uri);
	struct h_resp r;
	long st = h_sbx_rest(t, "POST", "/rest/notifications", body, &r);

	if (id != NULL)
		*id = st == 200 ? h_dup(h_jstr(h_resp_json(&r),
		                      "notification_id"))
		                : NULL;
	h_resp_free(&r);
	free(body);
	return st;
}

static size_t
list_len(struct json_object *o, const char *key)
{
	struct json_object *a;

	if (o == NULL || !json_object_object_get_ex(o, key, &a) ||
	    !json_object_is_type(a, json_type_array))
		return (size_t)-1;
	return json_object_array_length(a);
}

static size_t
notes_of(const char *t)
{
	struct json_object *o = rest_get(t, "/rest/notifications");
	size_t n = list_len(o, "notifications");

	json_object_put(o);
	return n;
}

/* ---- /rest/notifications --------------------------------------------- */

static char *id1, *id2, *id3, *uri;

static void
check_register_bad(void)
{
	char *k_acc1 = h_fmt("/rest/accounts/%s/transactions", acc1);
	const char *bad[][2] = {
		{ k_acc1, "ftp://127.0.0.1/x" },
		{ k_acc1, "javascript:alert(1)" },
		{ k_acc1, "/finx/notify/relative" },
		{ k_acc1, "http://" },
		{ k_acc1, "http://127.0.0.1/a b" },
		{ k_acc1, "" },
		{ "/rest/accounts/A0.1/transactions", uri },
		{ "/rest/accounts/A0.1", uri },
		{ "/rest/transactions?include_pending=maybe", uri },
		{ "/rest/transactions?current_month_expense_goal=1&"
		  "more_expenses_then_deposits=1",
		    uri },
		{ "/rest/balance", uri },
		{ "", uri },
	};
	const char *raw[] = {
		"not json",
		"{\"observe_key\":\"/rest/transactions\"}",
		"{\"notify_uri\":\"http://127.0.0.1/x\"}",
		"{\"observe_key\":\"/rest/transactions\",\"notify_uri\":"
		"\"http://127.0.0.1/x\",\"colour\":\"red\"}",
		"{\"observe_key\":\"/rest/transactions\",\"notify_uri\":"
		"\"http://127.0.0.1/x\",\"state\":5}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(note_add(tok, bad[i][0], bad[i][1], NULL) == 400,
		    "notification with bad input %zu is 400", i);
	for (i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
		CHECK(rest_status(tok, "POST", "/rest/notifications",
		          raw[i]) == 400,
		    "notification body %zu is 400", i);
	free(k_acc1);
}

static void
check_register(void)
{
	char *k1 = h_fmt("/rest/accounts/%s/transactions?include_pending=1",
	    acc1);
	char *k3 = h_fmt("/rest/accounts/%s/balance?inferior_limit=100", acc2);
	struct json_object *o;
	char *path;

	CHECK(note_add("not-a-token", "/rest/transactions", uri, NULL) == 401,
	    "POST /rest/notifications without a live token is 401");
	CHECK(note_add(tok, k1, uri, &id1) == 200 && id1 != NULL,
	    "an account's transactions are observed");
	CHECK(note_add(tok, "/rest/transactions", uri, &id2) == 200 &&
	        id2 != NULL,
	    "the legacy /rest/transactions key is accepted");
	CHECK(note_add(tok, k3, uri, &id3) == 200 && id3 != NULL,
	    "a balance key with inferior_limit is accepted");
	CHECK(id1 && id2 && strcmp(id1, id2) != 0, "ids differ");
	check_register_bad();
	o = rest_get(tok, "/rest/notifications");
	CHECK(list_len(o, "notifications") == 3,
	    "GET /rest/notifications lists the user's 3");
	json_object_put(o);
	CHECK(notes_of(tok2) == 0, "another user lists none of them");
	path = h_fmt("/rest/notifications/%s", id1);
	o = rest_get(tok, path);
	free(path);
	CHECK(h_streq(h_jstr(o, "notification_id"), id1) &&
	        h_streq(h_jstr(o, "observe_key"), k1) &&
	        h_streq(h_jstr(o, "notify_uri"), uri) &&
	        h_streq(h_jstr(o, "state"), "st-1"),
	    "GET /rest/notifications/{id} answers what was registered");
	json_object_put(o);
	free(k1);
	free(k3);
}

static void
check_put(void)
{
	char *p3 = h_fmt("/rest/notifications/%s", id3);
	char *good = h_fmt("{\"observe_key\":\"/rest/transactions\","
	                   "\"notify_uri\":\"%s\",\"state\":\"st-2\"}",
	    uri);
	const char *bad = "{\"observe_key\":\"/rest/transactions\","
	                  "\"notify_uri\":\"gopher://127.0.0.1/x\"}";
	struct json_object *o;
	struct h_resp r;

	CHECK(rest_status(tok2, "PUT", p3, good) == 404,
	    "another user's notification is 404 to replace");
	CHECK(rest_status(tok, "PUT", "/rest/notifications/N0.0", good) ==
	        404,
	    "PUT on an unknown id is 404");
	CHECK(rest_status(tok, "PUT", p3, bad) == 400, "a bad PUT is 400");
	o = rest_get(tok, p3);
	CHECK(h_streq(h_jstr(o, "state"), "st-1"), "and changed nothing");
	json_object_put(o);
	CHECK(h_sbx_rest(tok, "PUT", p3, good, &r) == 200 &&
	        h_streq(h_jstr(h_resp_json(&r), "notification_id"), id3) &&
	        h_streq(h_jstr(h_resp_json(&r), "state"), "st-2"),
	    "PUT replaces it under the same id");
	h_resp_free(&r);
	o = rest_get(tok, p3);
	CHECK(h_streq(h_jstr(o, "observe_key"), "/rest/transactions") &&
	        h_streq(h_jstr(o, "state"), "st-2"),
	    "the next GET shows the replacement");
	json_object_put(o);
	free(good);
	free(p3);
}

static void
check_delete(void)
{
	char *p1 = h_fmt("/rest/notifications/%s", id1);
	char *p3 = h_fmt("/rest/notifications/%s", id3);
	struct json_object *o;

	CHECK(rest_status(tok2, "GET", p1, NULL) == 404,
	    "another user's notification is 404 to read");
	CHECK(rest_status(tok2, "DELETE", p1, NULL) == 404,
	    "and 404 to delete");
	CHECK(rest_status(tok, "DELETE", "/rest/notifications/N0.0", NULL) ==
	        404,
	    "an unknown id is 404");
	CHECK(rest_status(tok, "DELETE", p3, NULL) == 200,
	    "the owner deletes its notification");
	CHECK(rest_status(tok, "DELETE", p3, NULL) == 404,
	    "a second delete is 404");
	CHECK(rest_status("not-a-token", "DELETE", p1, NULL) == 401,
	    "DELETE without a live token is 401");
	CHECK(notes_of(tok) == 2, "two are left, the other user's deletes "
	                          "changed nothing");
	o = h_sbx_get("/_sandbox/notifications?user_id=it-sbx-0");
	CHECK(list_len(o, "notifications") == 2,
	    "GET /_sandbox/notifications?user_id= shows them");
	json_object_put(o);
	free(p1);
	free(p3);
}

/* ---- firing ----------------------------------------------------------- */

static struct json_object *
delivery(struct json_object *o, size_t i)
{
	struct json_object *a;

	if (o == NULL || !json_object_object_get_ex(o, "deliveries", &a))
		return NULL;
	return json_object_array_get_idx(a, i);
}

/* One received POST looks like a finX notification of ours. */
static bool
got_ok(const struct got *g)
{
	struct json_object *b = json_tokener_parse(g->body), *d;
	const char *nid = h_jstr(b, "notification_id");
	bool ok = strcmp(g->method, "POST") == 0 &&
	    strcmp(g->path, "/finx/notify/abc") == 0 &&
	    strncmp(g->ua, "finx-notification/", 18) == 0 &&
	    strcmp(g->ctype, "application/json") == 0 && nid != NULL &&
	    (strcmp(nid, id1) == 0 || strcmp(nid, id2) == 0) &&
	    h_jstr(b, "observe_key") != NULL &&
	    h_streq(h_jstr(b, "state"), "st-1") &&
	    json_object_object_get_ex(b, "data", &d) &&
	    h_jstr(b, "notify_uri") == NULL;

	json_object_put(b);
	return ok;
}

static void
check_fire_ok(void)
{
	struct json_object *o = NULL;
	char *extra;
	int i, good = 0;

	recv_reset(204, 0);
	CHECK(h_sbx_fire(user, NULL, &o) == 200 &&
	        h_jlong(o, "fired", -1) == 2 &&
	        h_jlong(o, "delivered", -1) == 2 &&
	        h_jlong(delivery(o, 0), "status", 0) == 204,
	    "fire: 2 fired, 2 delivered with 204");
	json_object_put(o);
	pthread_mutex_lock(&rv.mu);
	for (i = 0; i < rv.n; i++)
		good += got_ok(&rv.got[i]);
	pthread_mutex_unlock(&rv.mu);
	CHECK(recv_count() == 2 && good == 2,
	    "the receiver got 2 POSTs with the legacy payload and "
	    "User-Agent finx-notification/...");
	extra = h_fmt(",\"account_id\":\"%s\"", acc2);
	CHECK(h_sbx_fire(user, extra, &o) == 200 &&
	        h_jlong(o, "fired", -1) == 1 &&
	        h_streq(h_jstr(delivery(o, 0), "notification_id"), id2),
	    "account_id fires what observes it or all accounts");
	json_object_put(o);
	free(extra);
	extra = h_fmt(",\"notification_id\":\"%s\"", id1);
	CHECK(h_sbx_fire(user, extra, &o) == 200 &&
	        h_jlong(o, "fired", -1) == 1,
	    "notification_id fires that one");
	json_object_put(o);
	free(extra);
}

static void
check_fire_failures(void)
{
	struct json_object *o = NULL, *d;
	long t0;

	recv_reset(500, 0);
	CHECK(h_sbx_fire(user, NULL, &o) == 200 &&
	        h_jlong(o, "delivered", -1) == 0 &&
	        h_jlong(delivery(o, 0), "status", 0) == 500,
	    "a 500 counts as not delivered, with its status");
	json_object_put(o);
	recv_reset(302, 0);
	CHECK(h_sbx_fire(user, NULL, &o) == 200 &&
	        h_jlong(o, "delivered", -1) == 2 &&
	        h_jlong(delivery(o, 1), "status", 0) == 302,
	    "a 3xx counts as delivered (finx-api.md 5.4)");
	json_object_put(o);
	CHECK(recv_count() == 2, "the redirect was not followed");
	recv_reset(204, 1500);
	t0 = h_now_ms();
	CHECK(h_sbx_fire(user, ",\"timeout_ms\":300", &o) == 200 &&
	        h_jlong(o, "delivered", -1) == 0 &&
	        (d = delivery(o, 0)) != NULL && h_jnull(d, "status") &&
	        h_jstr(d, "error") != NULL,
	    "a receiver past the timeout: not delivered, no status");
	CHECK(h_now_ms() - t0 < 1400, "the total timeout holds (%ld ms)",
	    h_now_ms() - t0);
	json_object_put(o);
	h_sleep_ms(3200); /* let the receiver finish its slow answers */
	recv_reset(204, 0);
}

static void
check_fire_bad(void)
{
	struct json_object *o = NULL;
	char *id = NULL;

	CHECK(h_sbx_fire("nobody-at-all", NULL, NULL) == 404,
	    "fire for an unknown user is 404");
	CHECK(h_sbx_json("POST", "/_sandbox/notifications/fire", "{}", NULL) ==
	        400,
	    "fire without user_id is 400");
	CHECK(h_sbx_fire(user, ",\"timeout_ms\":0", NULL) == 400,
	    "timeout_ms 0 is 400");
	CHECK(h_sbx_fire(user, ",\"colour\":1", NULL) == 400,
	    "an unknown key is 400");
	CHECK(h_sbx_fire("it-other-0", NULL, &o) == 200 &&
	        h_jlong(o, "fired", -1) == 0,
	    "a user without notifications fires none");
	json_object_put(o);
	CHECK(note_add(tok2, "/rest/transactions", "http://127.0.0.1:1/x",
	          &id) == 200,
	    "a notification to a closed port registers");
	CHECK(h_sbx_fire("it-other-0", NULL, &o) == 200 &&
	        h_jlong(o, "delivered", -1) == 0 &&
	        h_jstr(delivery(o, 0), "error") != NULL,
	    "a refused connection is not delivered and says why");
	json_object_put(o);
	free(id);
}

/* ---- bank changes ----------------------------------------------------- */

static struct json_object *
txn_get(const char *id)
{
	char *path = h_fmt("/rest/transactions/%s", id);
	struct json_object *o = rest_get(tok, path);

	free(path);
	return o;
}

static int64_t
txn_cents(const char *id)
{
	struct json_object *o = txn_get(id);
	int64_t c = cents_of(o, "amount");

	json_object_put(o);
	return c;
}

static int64_t
balance(const char *acc)
{
	char *path = h_fmt("/rest/accounts/%s/balance", acc);
	struct json_object *o = rest_get(tok, path);
	int64_t c = cents_of(o, "balance");

	json_object_put(o);
	free(path);
	return c;
}

/* The account's transactions (pending too), or NULL; caller puts. */
static struct json_object *
txn_list(const char *acc, const char *extra)
{
	char *path = h_fmt("/rest/accounts/%s/transactions?include_pending="
	                   "true%s",
	    acc, extra != NULL ? extra : "");
	struct json_object *o = rest_get(tok, path), *a = NULL;

	free(path);
	if (o != NULL && json_object_object_get_ex(o, "transactions", &a))
		a = json_object_get(a);
	json_object_put(o);
	return a;
}

/* How many listed transactions are pending (booked false) or have id. */
static int
txn_scan(const char *acc, const char *id, const char *extra)
{
	struct json_object *a = txn_list(acc, extra), *t, *b;
	int n = 0;
	size_t i;

	for (i = 0; a != NULL && i < json_object_array_length(a); i++) {
		t = json_object_array_get_idx(a, i);
		if (id != NULL ? h_streq(h_jstr(t, "transaction_id"), id)
		               : json_object_object_get_ex(t, "booked", &b) &&
		            !json_object_get_boolean(b))
			n++;
	}
	json_object_put(a);
	return a != NULL ? n : -1;
}

/* The ids of the account's pending transactions, up to 2. */
static void
pending_ids(const char *acc, char *out[2])
{
	struct json_object *a = txn_list(acc, NULL), *t, *b;
	size_t i;
	int k = 0;

	out[0] = out[1] = NULL;
	for (i = 0; a != NULL && i < json_object_array_length(a); i++) {
		t = json_object_array_get_idx(a, i);
		if (k < 2 && json_object_object_get_ex(t, "booked", &b) &&
		    !json_object_get_boolean(b))
			out[k++] = h_dup(h_jstr(t, "transaction_id"));
	}
	json_object_put(a);
}

static bool
txn_booked(const char *id)
{
	struct json_object *o = txn_get(id), *b;
	bool v = o != NULL && json_object_object_get_ex(o, "booked", &b) &&
	    json_object_get_boolean(b);

	json_object_put(o);
	return v;
}

/* bank call what with body "{\"user_id\":user,<rest>}": the status. */
static long
bank(const char *what, const char *rest, struct json_object **ret)
{
	return h_sbx_bank_user(user, what, rest, ret);
}

/* The i-th pair's member of a book answer (borrowed from o). */
static const char *
booked_of(struct json_object *o, size_t i, const char *key)
{
	struct json_object *a;

	if (o == NULL || !json_object_object_get_ex(o, "booked", &a))
		return NULL;
	return h_jstr(json_object_array_get_idx(a, i), key);
}

static char *booked1; /* acc1's first pending, booked in place */

static void
check_book_same_id(char *p1[2])
{
	struct json_object *o = NULL;
	int64_t b1 = balance(acc1), a = txn_cents(p1[0]);
	char *rest = h_fmt("\"transaction_ids\":[\"%s\"]", p1[0]);

	CHECK(bank("book", rest, &o) == 200 &&
	        h_streq(booked_of(o, 0, "booked_id"), p1[0]),
	    "book in place: the same id");
	json_object_put(o);
	CHECK(txn_booked(p1[0]), "the next read shows it booked");
	CHECK(balance(acc1) == b1 + a, "the balance counts its amount");
	CHECK(bank("book", rest, NULL) == 409, "booking it again is 409");
	booked1 = h_dup(p1[0]);
	free(rest);
}

static void
check_book_new_id(char *p1[2])
{
	struct json_object *o = NULL, *t;
	int64_t b1 = balance(acc1), a = txn_cents(p1[1]);
	char *rest = h_fmt("\"transaction_ids\":[\"%s\"],\"new_ids\":true",
	    p1[1]);
	const char *nid;

	CHECK(bank("book", rest, &o) == 200 &&
	        (nid = booked_of(o, 0, "booked_id")) != NULL &&
	        strcmp(nid, p1[1]) != 0,
	    "book under a new id: another id");
	nid = booked_of(o, 0, "booked_id");
	t = txn_get(p1[1]);
	CHECK(t == NULL && txn_scan(acc1, p1[1], NULL) == 0,
	    "the pending one is gone (404, not listed)");
	json_object_put(t);
	CHECK(nid != NULL && txn_booked(nid) && txn_cents(nid) == a,
	    "the booked one carries its amount");
	CHECK(balance(acc1) == b1 + a, "the balance counts it once");
	json_object_put(o);
	free(rest);
}

static void
check_book(void)
{
	char *p1[2], *p2[2];
	struct json_object *o = NULL;

	pending_ids(acc1, p1);
	pending_ids(acc2, p2);
	CHECK(p1[1] != NULL && p2[1] != NULL, "two pending per account");
	if (p1[1] == NULL || p2[1] == NULL)
		h_bail("the sandbox's data has no pending transactions");
	check_book_same_id(p1);
	check_book_new_id(p1);
	CHECK(bank("book", NULL, &o) == 200 && booked_of(o, 1, "booked_id") &&
	        !booked_of(o, 2, "booked_id") &&
	        txn_scan(acc2, NULL, NULL) == 0,
	    "book without ids books the rest (acc2's 2)");
	json_object_put(o);
	CHECK(bank("book", "\"transaction_ids\":[\"T0.0.0\"]", NULL) == 404,
	    "an unknown transaction is 404");
	CHECK(bank("book", "\"transaction_ids\":\"x\"", NULL) == 400,
	    "transaction_ids not an array is 400");
	CHECK(bank("book", "\"new_ids\":\"yes\"", NULL) == 400,
	    "new_ids not a boolean is 400");
	CHECK(h_sbx_bank("book", "{\"user_id\":\"nobody-at-all\"}", NULL) ==
	        404,
	    "an unknown user is 404");
	CHECK(h_sbx_bank("book", "{}", NULL) == 400, "no user_id is 400");
	CHECK(h_sbx_bank("book", "[1]", NULL) == 400, "not an object is 400");
	free(p1[0]);
	free(p1[1]);
	free(p2[0]);
	free(p2[1]);
}

static char *added_pending;

static void
check_add_bad(void)
{
	int before = txn_scan(acc1, NULL, "&count=100000");
	const char *bad[] = {
		"\"transactions\":[{\"amount\":1.234}]",
		"\"transactions\":[{\"amount\":1e2}]",
		"\"transactions\":[{\"amount\":true}]",
		"\"transactions\":[{\"amount\":\"12.\"}]",
		"\"transactions\":[{\"booking_date\":\"soon\"}]",
		"\"transactions\":[{\"colour\":\"red\"}]",
		"\"transactions\":[]",
		"\"transactions\":{}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(bank("add", bad[i], NULL) == 400,
		    "add: bad input %zu is 400", i);
	CHECK(bank("add",
	          "\"transactions\":[{\"booked\":false},"
	          "{\"account_id\":\"A0.1\"}]",
	          NULL) == 404,
	    "add: an unknown account is 404");
	CHECK(txn_scan(acc1, NULL, "&count=100000") == before,
	    "and nothing of that call was added");
}

static void
check_add(void)
{
	struct json_object *o = NULL, *a = NULL, *t;
	int64_t b1 = balance(acc1), b2 = balance(acc2);
	char *rest = h_fmt("\"transactions\":[{\"amount\":\"-17.80\","
	                   "\"purpose\":\"Neu im Test\",\"booked\":false},"
	                   "{\"account_id\":\"%s\",\"amount\":1234.5,"
	                   "\"booking_date\":\"2026-11-01\"}]",
	    acc2);

	CHECK(bank("add", rest, &o) == 200 &&
	        json_object_object_get_ex(o, "transactions", &a) &&
	        json_object_array_length(a) == 2,
	    "add: two transactions");
	added_pending = h_dup(h_jstr(json_object_array_get_idx(a, 0),
	    "transaction_id"));
	t = added_pending != NULL ? txn_get(added_pending) : NULL;
	CHECK(t != NULL && cents_of(t, "amount") == -1780 &&
	        h_streq(h_jstr(t, "purpose"), "Neu im Test") &&
	        h_streq(h_jstr(t, "account_id"), acc1) && !txn_booked(
	            added_pending),
	    "the pending one reads back exactly");
	json_object_put(t);
	t = txn_get(h_jstr(json_object_array_get_idx(a, 1), "transaction_id"));
	CHECK(t != NULL && cents_of(t, "amount") == 123450 &&
	        strncmp(h_jstr(t, "booking_date"), "2026-11-01", 10) == 0,
	    "the booked one: 1234.50, booked on 2026-11-01");
	json_object_put(t);
	CHECK(balance(acc2) == b2 + 123450 && balance(acc1) == b1,
	    "balances count the booked one only");
	json_object_put(o);
	free(rest);
	check_add_bad();
}

/* A query value with '+' and ':' percent-encoded. */
static char *
q_escape(const char *s)
{
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (out == NULL)
		h_bail("out of memory");
	for (; *s != '\0'; s++)
		o += *s == '+' || *s == ':' ? sprintf(o, "%%%02X", *s)
		                            : sprintf(o, "%c", *s);
	return out;
}

/* Correct id with rest; the answer's transaction (caller puts). */
static struct json_object *
correct(const char *id, const char *rest)
{
	char *body = h_fmt("\"transaction_id\":\"%s\",%s", id, rest);
	struct json_object *o = NULL, *t = NULL;

	if (bank("correct", body, &o) == 200 &&
	    json_object_object_get_ex(o, "transaction", &t))
		t = json_object_get(t);
	json_object_put(o);
	free(body);
	return t;
}

static void
check_correct_modified(const char *id)
{
	struct json_object *t = correct(id, "\"purpose\":\"Korrigiert: "
	                                    "Müller & Söhne\"");
	char *since, *extra;

	CHECK(t != NULL &&
	        h_streq(h_jstr(t, "purpose"), "Korrigiert: Müller & Söhne"),
	    "correct purpose: the answer has the new text");
	since = q_escape(t != NULL ? h_jstr(t, "modification_timestamp") : "");
	extra = h_fmt("&since_type=modified&since=%s", since);
	CHECK(txn_scan(acc1, id, extra) == 1,
	    "since_type=modified from its modification time lists it");
	json_object_put(t);
	t = txn_get(id);
	CHECK(h_streq(h_jstr(t, "purpose"), "Korrigiert: Müller & Söhne"),
	    "and the next read too");
	json_object_put(t);
	free(extra);
	free(since);
}

static void
check_correct(void)
{
	int64_t b1 = balance(acc1), old = txn_cents(booked1);
	struct json_object *t = correct(booked1, "\"amount\":\"-99.99\"");

	CHECK(t != NULL && cents_of(t, "amount") == -9999,
	    "correct amount: -99.99");
	json_object_put(t);
	CHECK(txn_cents(booked1) == -9999 &&
	        balance(acc1) == b1 - old - 9999,
	    "the next reads show the amount and the balance follows");
	check_correct_modified(booked1);
	t = correct(booked1, "\"booking_date\":\"2026-10-05\"");
	json_object_put(t);
	t = txn_get(booked1);
	CHECK(t != NULL &&
	        strncmp(h_jstr(t, "booking_date"), "2026-10-05", 10) == 0,
	    "move the booking date: 2026-10-05");
	json_object_put(t);
	t = correct(booked1, "\"colour\":1");
	CHECK(t == NULL, "an unknown field is refused");
	CHECK(bank("correct", "\"transaction_id\":\"T0.0.0\",\"amount\":1",
	          NULL) == 404,
	    "correct: an unknown transaction is 404");
	CHECK(bank("correct", "\"amount\":1", NULL) == 400,
	    "correct: no transaction_id is 400");
	CHECK(h_sbx_bank("correct", "{\"user_id\":\"nobody-at-all\","
	                            "\"transaction_id\":\"T0.0.0\","
	                            "\"amount\":1}",
	          NULL) == 404,
	    "correct: an unknown user is 404");
}

static void
check_correct_bad(void)
{
	const char *bad[] = {
		"\"amount\":\"1,5\"",
		"\"booked\":true",
		"\"booking_date\":\"yesterday\"",
		"\"purpose\":\"\"",
		"\"purpose\":7",
	};
	char *rest = h_fmt("\"transaction_id\":\"%s\"", booked1);
	size_t i;

	CHECK(bank("correct", rest, NULL) == 400,
	    "correct without a change is 400");
	free(rest);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rest = h_fmt("\"transaction_id\":\"%s\",%s", booked1, bad[i]);
		CHECK(bank("correct", rest, NULL) == 400,
		    "correct: bad input %zu is 400", i);
		free(rest);
	}
}

static void
check_drop(void)
{
	char *rest = h_fmt("\"transaction_id\":\"%s\"", added_pending);
	struct json_object *o = NULL, *t;

	CHECK(bank("drop", rest, &o) == 200 &&
	        h_streq(h_jstr(o, "dropped"), added_pending),
	    "drop a pending transaction");
	json_object_put(o);
	t = txn_get(added_pending);
	CHECK(t == NULL && txn_scan(acc1, added_pending, NULL) == 0,
	    "it is gone from the next reads");
	json_object_put(t);
	CHECK(bank("drop", rest, NULL) == 404, "dropping it again is 404");
	free(rest);
	rest = h_fmt("\"transaction_id\":\"%s\"", booked1);
	CHECK(bank("drop", rest, NULL) == 409,
	    "a booked transaction is not dropped (409)");
	o = txn_get(booked1);
	CHECK(o != NULL, "and is still there");
	json_object_put(o);
	CHECK(bank("drop", NULL, NULL) == 400, "drop without an id is 400");
	free(rest);
}

/* ---- main ------------------------------------------------------------- */

static void
setup(void)
{
	const char *args[] = { "--transactions", "6", NULL };
	struct json_object *o, *a;

	h_sandbox_start(args);
	recv_start();
	uri = h_fmt("http://127.0.0.1:%d/finx/notify/abc", rv.port);
	tok = h_sbx_access("it-sbx");
	tok2 = h_sbx_access("it-other");
	if (tok == NULL || tok2 == NULL)
		h_bail("no access tokens from the sandbox");
	o = rest_get(tok, "/rest/accounts");
	if (o == NULL || !json_object_object_get_ex(o, "accounts", &a) ||
	    json_object_array_length(a) != 2)
		h_bail("GET /rest/accounts did not list 2 accounts");
	snprintf(acc1, sizeof(acc1), "%s",
	    h_jstr(json_object_array_get_idx(a, 0), "account_id"));
	snprintf(acc2, sizeof(acc2), "%s",
	    h_jstr(json_object_array_get_idx(a, 1), "account_id"));
	json_object_put(o);
}

int
main(void)
{
	h_init("it_sandbox", 110);
	setup();
	check_register();
	check_put();
	check_delete();
	check_fire_ok();
	check_fire_failures();
	check_fire_bad();
	check_book();
	check_add();
	check_correct();
	check_correct_bad();
	check_drop();
	recv_stop();
	free(tok);
	free(tok2);
	free(uri);
	free(id1);
	free(id2);
	free(id3);
	free(booked1);
	free(added_pending);
	return h_done(test_done());
}
