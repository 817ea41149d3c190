/*
 * The connections of the HTTP front, apart from their requests: the
 * per-address cap, and the absolute deadlines libmicrohttpd lacks (its own
 * timeout is an idle one, which one byte every few seconds resets).  Every
 * accepted connection is tracked from MHD's NOTIFY_CONNECTION until it
 * closes; a reaper thread shuts down the socket of one past its deadline,
 * and MHD then closes it as if the client had gone.
 */
#ifndef FINXD_HTTP_CONN_H
#define FINXD_HTTP_CONN_H

#include <stdbool.h>
#include <sys/socket.h>
#include <microhttpd.h>

#include "config.h"
#include "netaddr.h"

/* Where a connection is; each phase has its own deadline. */
enum http_phase {
	HP_HEADERS, /* accepted, or reading a request: header timeout */
	HP_BODY,    /* headers in, body coming: body timeout */
	HP_HANDLER, /* a handler runs: none (finX and PostgreSQL bound it) */
	HP_REPLY,   /* answer queued: body timeout to take it */
	HP_IDLE,    /* between requests: idle + header timeout for the next */
};

/* Start the reaper (limits from cfg); false with a logged reason. */
bool http_conns_start(const struct config *cfg);
void http_conns_stop(void);

/* MHD's accept policy: the per-address cap. */
enum MHD_Result http_conn_accept(void *cls, const struct sockaddr *addr,
    socklen_t len);
/* MHD_OPTION_NOTIFY_CONNECTION. */
void http_conn_notify(void *cls, struct MHD_Connection *c,
    void **socket_context, enum MHD_ConnectionNotificationCode code);
/* Connection c enters phase ph. */
void http_conn_phase(struct MHD_Connection *c, enum http_phase ph);
/* The client's address for logs (X-Forwarded-For believed only from a
 * trusted proxy) into out[NETADDR_TEXT]. */
void http_conn_client(struct MHD_Connection *c, char *out);

struct http_conn_stats {
	long open;             /* connections held now */
	long closed_late;      /* closed by a deadline */
	long refused_address;  /* refused by the per-address cap */
};
void http_conn_stats(struct http_conn_stats *s);

#endif
