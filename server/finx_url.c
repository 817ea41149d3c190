/*
 * The finX base URL policy (finx_url.h): parsed with libcurl's URL API,
 * the same parser the transfer uses, so what we check is what curl sends.
 */
#include "finx_url.h"

#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <curl/curl.h>

#include "text.h"

/* 127.0.0.0/8, ::1 or localhost (host as curl's URL parser returns it). */
static bool
finx_host_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char tmp[INET6_ADDRSTRLEN + 2];
	size_t n;

	if (strcasecmp(host, "localhost") == 0 ||
	    strcasecmp(host, "localhost.") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	n = strlen(host);
	if (n < 3 || host[0] != '[' || host[n - 1] != ']' ||
	    n - 2 >= sizeof(tmp))
		return false;
	memcpy(tmp, host + 1, n - 2);
	tmp[n - 2] = '\0';
	return inet_pton(AF_INET6, tmp, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Why the parsed URL u is refused, or NULL; *loopback for its host. */
static const char *
finx_url_refusal(CURLU *u, bool *loopback)
{
	char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL,
	     *frag = NULL;
	const char *bad = NULL;

	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    *host == '\0') {
		bad = "finX URL is not a valid absolute URL";
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		bad = "finX URL must not carry credentials";
		goto out;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
		bad = "finX URL must not have a query or fragment";
		goto out;
	}
	*loopback = finx_host_loopback(host);
	if (strcmp(scheme, "https") == 0)
		goto out;
	if (strcmp(scheme, "http") != 0)
		bad = "finX URL scheme must be https";
	else if (!*loopback)
		bad = "plain http to finX is allowed only to a loopback host";
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(query);
	curl_free(frag);
	return bad;
}

/* finx_url_allowed() that also says whether the host is loopback. */
bool
finx_url_check(const char *url, bool *loopback, const char **why)
{
	const char *bad;
	CURLU *u = NULL;

	*loopback = false;
	if (url == NULL || *url == '\0' || has_ctl(url, strlen(url)) ||
	    strchr(url, ' ') != NULL)
		bad = "finX URL is empty or has spaces or control characters";
	else if ((u = curl_url()) == NULL ||
	    curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		bad = "finX URL is not a valid absolute URL";
	else
		bad = finx_url_refusal(u, loopback);
	curl_url_cleanup(u);
	if (why != NULL)
		*why = bad;
	return bad == NULL;
}

/*
 * True when url may serve as the finX base URL: https anywhere, plain http
 * only to 127.0.0.0/8, ::1 or localhost; no credentials, query or
 * fragment.  On false, *why (if not NULL) is a static reason.
 */
bool
finx_url_allowed(const char *url, const char **why)
{
	bool loopback;

	return finx_url_check(url, &loopback, why);
}
