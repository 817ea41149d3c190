/*
 * The finX base URL policy: https to any host, plain http only to a
 * loopback host; no credentials, query or fragment.  Pure (libcurl's URL
 * parser only), so config validation can use it before finx_init.
 */
#ifndef FINXD_FINX_URL_H
#define FINXD_FINX_URL_H

#include <stdbool.h>

/*
 * True when url may be the finX base URL: https to any host, plain http
 * only to 127.0.0.0/8, ::1 or localhost; no credentials, query or
 * fragment.  On false *why (if not NULL) is a static reason.
 */
bool finx_url_allowed(const char *url, const char **why);

/* finx_url_allowed() that also sets *loopback when the host is loopback. */
bool finx_url_check(const char *url, bool *loopback, const char **why);

#endif
