#include "http_conn.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mem.h"

/* How often the reaper looks: deadlines are whole seconds. */
#define REAP_EVERY_MS 200
#define ADDR_BUCKETS 4096

struct hconn {
	struct hconn *prev, *next; /* the tracked list */
	int fd;
	bool shut;                 /* the reaper shut it down */
	bool counted;              /* counted against its address */
	atomic_llong deadline;     /* mono ms; 0: none */
	struct netaddr peer;
};

/* Connections from one address, while any is open. */
struct addr_count {
	struct addr_count *next;
	struct netaddr a;
	long n;
};

static const struct config *ccfg;
static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hconn *head;
static pthread_mutex_t addr_mu = PTHREAD_MUTEX_INITIALIZER;
static struct addr_count *buckets[ADDR_BUCKETS];
static atomic_long n_open, n_late, n_refused;
static pthread_t reaper;
static bool reaper_stop;
static pthread_cond_t reaper_cv = PTHREAD_COND_INITIALIZER;

static size_t
addr_hash(const struct netaddr *a)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < 16; i++)
		h = (h ^ a->addr[i]) * 16777619u;
	return h % ADDR_BUCKETS;
}

static struct addr_count **
addr_find(const struct netaddr *a)
{
	struct addr_count **p = &buckets[addr_hash(a)];

	while (*p != NULL && ((*p)->a.family != a->family ||
				 memcmp((*p)->a.addr, a->addr, 16) != 0))
		p = &(*p)->next;
	return p;
}

/* Count a connection from a; false when a has its cap already. */
static bool
addr_take(const struct netaddr *a)
{
	struct addr_count **p, *e;
	bool ok = true;

	pthread_mutex_lock(&addr_mu);
	p = addr_find(a);
	if ((e = *p) == NULL) {
		e = *p = xcalloc(1, sizeof(*e));
		e->a = *a;
	}
	if (e->n >= ccfg->http_max_per_address)
		ok = false;
	else
		e->n++;
	pthread_mutex_unlock(&addr_mu);
	return ok;
}

static void
addr_put(const struct netaddr *a)
{
	struct addr_count **p, *e;

	pthread_mutex_lock(&addr_mu);
	p = addr_find(a);
	if ((e = *p) != NULL && --e->n <= 0) {
		*p = e->next;
		free(e);
	}
	pthread_mutex_unlock(&addr_mu);
}

static bool
trusted(const struct netaddr *a)
{
	return netaddr_in(ccfg->trusted_proxies, ccfg->n_trusted_proxies, a);
}

/*
 * Refuse at accept only: the count itself is taken when the connection
 * starts (http_conn_notify), so a connection MHD drops in between is never
 * counted.  Two loop threads may both pass for the last free place: the
 * cap holds to within one.
 */
enum MHD_Result
http_conn_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct netaddr a;
	struct addr_count *e;
	bool full;

	(void)cls;
	(void)len;
	if (!netaddr_of_sockaddr(addr, &a) || trusted(&a))
		return MHD_YES;
	pthread_mutex_lock(&addr_mu);
	e = *addr_find(&a);
	full = e != NULL && e->n >= ccfg->http_max_per_address;
	pthread_mutex_unlock(&addr_mu);
	if (full)
		atomic_fetch_add(&n_refused, 1);
	return full ? MHD_NO : MHD_YES;
}

static int64_t
deadline_of(enum http_phase ph)
{
	switch (ph) {
	case HP_HEADERS:
		return mono_ms() + ccfg->http_header_timeout_s * 1000;
	case HP_BODY:
	case HP_REPLY:
		return mono_ms() + ccfg->http_body_timeout_s * 1000;
	case HP_IDLE:
		return mono_ms() + (ccfg->http_idle_timeout_s +
				       ccfg->http_header_timeout_s) * 1000;
	case HP_HANDLER:
	default:
		return 0;
	}
}

static struct hconn *
hconn_new(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;
	struct hconn *h = xcalloc(1, sizeof(*h));

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	h->fd = ci != NULL ? ci->connect_fd : -1;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || !netaddr_of_sockaddr(ci->client_addr, &h->peer))
		h->peer.family = AF_UNSPEC;
	atomic_init(&h->deadline, deadline_of(HP_HEADERS));
	return h;
}

static void
track(struct hconn *h)
{
	pthread_mutex_lock(&list_mu);
	h->next = head;
	if (head != NULL)
		head->prev = h;
	head = h;
	pthread_mutex_unlock(&list_mu);
	atomic_fetch_add(&n_open, 1);
}

/* Under list_mu: after this the reaper never sees h (nor its fd, which
 * MHD closes only after NOTIFY_CLOSED returns). */
static void
untrack(struct hconn *h)
{
	pthread_mutex_lock(&list_mu);
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		head = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&list_mu);
	atomic_fetch_sub(&n_open, 1);
}

void
http_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
    enum MHD_ConnectionNotificationCode code)
{
	struct hconn *h = *socket_context;

	(void)cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		h = *socket_context = hconn_new(c);
		if (h->peer.family != AF_UNSPEC && !trusted(&h->peer)) {
			h->counted = true;
			if (!addr_take(&h->peer)) {
				/* over the cap after a race at accept */
				h->counted = false;
				atomic_store(&h->deadline, 1);
			}
		}
		track(h);
		return;
	}
	if (code != MHD_CONNECTION_NOTIFY_CLOSED || h == NULL)
		return;
	untrack(h);
	if (h->counted)
		addr_put(&h->peer);
	free(h);
	*socket_context = NULL;
}

static struct hconn *
hconn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
	    MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

void
http_conn_phase(struct MHD_Connection *c, enum http_phase ph)
{
	struct hconn *h = hconn_of(c);

	if (h != NULL)
		atomic_store(&h->deadline, deadline_of(ph));
}

void
http_conn_client(struct MHD_Connection *c, char *out)
{
	struct hconn *h = hconn_of(c);

	if (h == NULL || h->peer.family == AF_UNSPEC) {
		snprintf(out, NETADDR_TEXT, "-");
		return;
	}
	if (ccfg->n_trusted_proxies == 0) {
		netaddr_text(&h->peer, out);
		return;
	}
	netaddr_client(ccfg->trusted_proxies, ccfg->n_trusted_proxies,
	    &h->peer,
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-For"),
	    out);
}

/* Shut down every socket past its deadline; MHD sees the end and closes. */
static void
reap(void)
{
	int64_t now = mono_ms();
	struct hconn *h;

	pthread_mutex_lock(&list_mu);
	for (h = head; h != NULL; h = h->next) {
		long long d = atomic_load(&h->deadline);

		if (d == 0 || d > now || h->shut || h->fd < 0)
			continue;
		h->shut = true;
		shutdown(h->fd, SHUT_RDWR);
		atomic_fetch_add(&n_late, 1);
	}
	pthread_mutex_unlock(&list_mu);
}

static void *
reaper_main(void *arg)
{
	struct timespec until;

	(void)arg;
	pthread_mutex_lock(&list_mu);
	while (!reaper_stop) {
		pthread_mutex_unlock(&list_mu);
		reap();
		pthread_mutex_lock(&list_mu);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += REAP_EVERY_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		if (!reaper_stop)
			pthread_cond_timedwait(&reaper_cv, &list_mu, &until);
	}
	pthread_mutex_unlock(&list_mu);
	return NULL;
}

bool
http_conns_start(const struct config *cfg)
{
	ccfg = cfg;
	reaper_stop = false;
	if (pthread_create(&reaper, NULL, reaper_main, NULL) != 0) {
		log_kv(LOG_ERROR, "cannot start the connection reaper", NULL);
		return false;
	}
	return true;
}

void
http_conns_stop(void)
{
	pthread_mutex_lock(&list_mu);
	reaper_stop = true;
	pthread_cond_signal(&reaper_cv);
	pthread_mutex_unlock(&list_mu);
	pthread_join(reaper, NULL);
}

void
http_conn_stats(struct http_conn_stats *s)
{
	s->open = atomic_load(&n_open);
	s->closed_late = atomic_load(&n_late);
	s->refused_address = atomic_load(&n_refused);
}
