/*
 * Client addresses: parsing a list of addresses and CIDRs
 * (FINXD_TRUSTED_PROXIES), matching a peer against it, and the text of an
 * address for logs.  IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a
 * dual-stack listener sees) count as their IPv4 address everywhere.
 */
#ifndef FINXD_NETADDR_H
#define FINXD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* An address or a network: family AF_INET or AF_INET6, prefix bits. */
struct netaddr {
	int family;
	unsigned char addr[16]; /* 4 bytes used for AF_INET */
	unsigned prefix;
};

/* INET6_ADDRSTRLEN, for the text of any address. */
#define NETADDR_TEXT 46

/* The address of sa (family AF_INET or AF_INET6) into *out, a /32 or
 * /128; false for another family. */
bool netaddr_of_sockaddr(const struct sockaddr *sa, struct netaddr *out);
/* "192.0.2.1", "2001:db8::/32", "10.0.0.0/8" into *out; false if bad. */
bool netaddr_parse(const char *s, struct netaddr *out);
/* True when a lies within one of the n networks of list. */
bool netaddr_in(const struct netaddr *list, size_t n,
    const struct netaddr *a);
/* The text of a (without its prefix) into out[NETADDR_TEXT]. */
void netaddr_text(const struct netaddr *a, char *out);
/*
 * The client behind a chain of trusted proxies: walking X-Forwarded-For
 * (xff, may be NULL) from its right end, the first address not in list;
 * the peer itself when it is not trusted.  Into out[NETADDR_TEXT].
 */
void netaddr_client(const struct netaddr *list, size_t n,
    const struct netaddr *peer, const char *xff, char *out);

#endif
