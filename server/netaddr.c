#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0xff, 0xff };

/* ::ffff:a.b.c.d becomes a.b.c.d. */
static void
unmap(struct netaddr *a)
{
	if (a->family == AF_INET6 && a->prefix >= 96 &&
	    memcmp(a->addr, v4mapped, 12) == 0) {
		memmove(a->addr, a->addr + 12, 4);
		memset(a->addr + 4, 0, 12);
		a->family = AF_INET;
		a->prefix -= 96;
	}
}

bool
netaddr_of_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		out->family = AF_INET;
		memcpy(out->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		out->prefix = 32;
		return true;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	out->family = AF_INET6;
	memcpy(out->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	out->prefix = 128;
	unmap(out);
	return true;
}

bool
netaddr_parse(const char *s, struct netaddr *out)
{
	char text[NETADDR_TEXT + 8], *slash, *end;
	unsigned long bits;
	size_t n = strlen(s);

	memset(out, 0, sizeof(*out));
	if (n == 0 || n >= sizeof(text))
		return false;
	memcpy(text, s, n + 1);
	if ((slash = strchr(text, '/')) != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, text, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, text, out->addr) == 1)
		out->family = AF_INET6;
	else
		return false;
	out->prefix = out->family == AF_INET ? 32 : 128;
	if (slash != NULL) {
		if (slash[1] < '0' || slash[1] > '9')
			return false;
		bits = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || bits > out->prefix)
			return false;
		out->prefix = (unsigned)bits;
	}
	unmap(out);
	return true;
}

/* The first bits of a and b agree. */
static bool
prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));

	if (memcmp(a, b, whole) != 0)
		return false;
	return rest == 0 || ((a[whole] ^ b[whole]) & mask) == 0;
}

bool
netaddr_in(const struct netaddr *list, size_t n, const struct netaddr *a)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i].family == a->family &&
		    prefix_equal(list[i].addr, a->addr, list[i].prefix))
			return true;
	return false;
}

void
netaddr_text(const struct netaddr *a, char *out)
{
	if (inet_ntop(a->family, a->addr, out, NETADDR_TEXT) == NULL)
		snprintf(out, NETADDR_TEXT, "-");
}

/* The last comma-separated item of s[0..n), trimmed, into *item. */
static size_t
last_item(const char *s, size_t n, const char **item, size_t *len)
{
	size_t end = n, start;

	while (end > 0 && s[end - 1] == ' ')
		end--;
	start = end;
	while (start > 0 && s[start - 1] != ',')
		start--;
	*item = s + start;
	while (*item < s + end && **item == ' ')
		(*item)++;
	*len = (size_t)(s + end - *item);
	return start > 0 ? start - 1 : 0;
}

void
netaddr_client(const struct netaddr *list, size_t n,
    const struct netaddr *peer, const char *xff, char *out)
{
	size_t rest = xff != NULL ? strlen(xff) : 0;
	struct netaddr hop = *peer;

	netaddr_text(peer, out);
	while (rest > 0 && netaddr_in(list, n, &hop)) {
		char text[NETADDR_TEXT + 8];
		const char *item;
		size_t len;

		rest = last_item(xff, rest, &item, &len);
		if (len == 0 || len >= sizeof(text))
			return;
		memcpy(text, item, len);
		text[len] = '\0';
		if (!netaddr_parse(text, &hop) ||
		    hop.prefix != (hop.family == AF_INET ? 32u : 128u))
			return;
		netaddr_text(&hop, out);
	}
}
