/* netaddr.c: trusted proxy lists and the client behind them. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "netaddr.h"
#include "test.h"

static struct netaddr
addr(const char *s)
{
	struct netaddr a;

	if (!netaddr_parse(s, &a))
		memset(&a, 0, sizeof(a));
	return a;
}

static void
test_parse(void)
{
	struct netaddr a;
	char t[NETADDR_TEXT];

	CHECK(netaddr_parse("192.0.2.1", &a) && a.family == AF_INET &&
		a.prefix == 32, "IPv4 address is a /32");
	CHECK(netaddr_parse("10.0.0.0/8", &a) && a.prefix == 8, "IPv4 CIDR");
	CHECK(netaddr_parse("2001:db8::/32", &a) && a.family == AF_INET6 &&
		a.prefix == 32, "IPv6 CIDR");
	CHECK(netaddr_parse("::ffff:192.0.2.9", &a) && a.family == AF_INET &&
		a.prefix == 32, "IPv4-mapped counts as IPv4");
	netaddr_text(&a, t);
	CHECK(strcmp(t, "192.0.2.9") == 0, "mapped address printed as IPv4");
	CHECK(!netaddr_parse("10.0.0.0/33", &a), "prefix over 32 refused");
	CHECK(!netaddr_parse("10.0.0.0/", &a), "empty prefix refused");
	CHECK(!netaddr_parse("10.0.0.0/-1", &a), "negative prefix refused");
	CHECK(!netaddr_parse("10.0.0.0/8x", &a), "prefix junk refused");
	CHECK(!netaddr_parse("proxy.example", &a), "a name refused");
	CHECK(!netaddr_parse("", &a), "empty refused");
	CHECK(!netaddr_parse("1.2.3.4.5", &a), "five octets refused");
}

static void
test_in(void)
{
	struct netaddr list[3] = { addr("10.0.0.0/8"), addr("192.0.2.7"),
		addr("2001:db8::/32") };
	struct netaddr a = addr("10.200.1.1"), b = addr("11.0.0.1");

	CHECK(netaddr_in(list, 3, &a), "inside a /8");
	CHECK(!netaddr_in(list, 3, &b), "outside it");
	a = addr("192.0.2.7");
	b = addr("192.0.2.8");
	CHECK(netaddr_in(list, 3, &a) && !netaddr_in(list, 3, &b),
	    "a single address matches only itself");
	a = addr("2001:db8:1::5");
	b = addr("2001:db9::5");
	CHECK(netaddr_in(list, 3, &a) && !netaddr_in(list, 3, &b), "IPv6 /32");
	a = addr("::ffff:10.1.2.3");
	CHECK(netaddr_in(list, 3, &a), "mapped IPv4 matches an IPv4 list");
	list[0] = addr("10.2.0.0/15"); /* 10.2.x.x and 10.3.x.x */
	a = addr("10.1.255.255");
	b = addr("10.3.0.1");
	CHECK(!netaddr_in(list, 1, &a) && netaddr_in(list, 1, &b),
	    "a prefix that is not a whole byte");
	CHECK(!netaddr_in(list, 0, &b), "an empty list trusts nobody");
}

static void
test_client(void)
{
	struct netaddr list[1] = { addr("127.0.0.0/8") };
	struct netaddr proxy = addr("127.0.0.1"), other = addr("198.51.100.4");
	char t[NETADDR_TEXT];

	netaddr_client(list, 1, &proxy, "203.0.113.9", t);
	CHECK(strcmp(t, "203.0.113.9") == 0, "a trusted proxy's XFF believed");
	netaddr_client(list, 1, &other, "203.0.113.9", t);
	CHECK(strcmp(t, "198.51.100.4") == 0, "an untrusted peer's XFF not");
	netaddr_client(list, 1, &proxy, "6.6.6.6, 203.0.113.9 , 127.0.0.5", t);
	CHECK(strcmp(t, "203.0.113.9") == 0,
	    "the rightmost untrusted hop, a spoofed left part ignored");
	netaddr_client(list, 1, &proxy, NULL, t);
	CHECK(strcmp(t, "127.0.0.1") == 0, "no XFF: the proxy itself");
	netaddr_client(list, 1, &proxy, "not-an-address", t);
	CHECK(strcmp(t, "127.0.0.1") == 0, "a junk XFF: the proxy itself");
	netaddr_client(list, 1, &proxy, "10.0.0.0/8", t);
	CHECK(strcmp(t, "127.0.0.1") == 0, "a CIDR in XFF is junk");
	netaddr_client(list, 1, &proxy, ",,", t);
	CHECK(strcmp(t, "127.0.0.1") == 0, "empty items: the proxy itself");
}

int
main(void)
{
	test_parse();
	test_in();
	test_client();
	return test_done();
}
