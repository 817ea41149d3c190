/*
 * Unit tests for the keyset cursor of GET /v1/connections and
 * GET /v1/links (server/api_lists.c): round trips, and a cursor of the
 * other list, of other filters, edited or not made by finxd is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "encode.h"
#include "mem.h"
#include "test.h"

#define ID "0b6f6c1e-6a47-4d8e-9f57-1f3f1e0c9a21"

static const char *const none[3] = { NULL, NULL, NULL };

static bool
decodes(const char *s, const char *list, const char *const *filters)
{
	char micros[24], id[37];

	return list_cursor_decode(s, list, filters, 3, micros, id);
}

static void
round_trip(const char *list, const char *const *filters, const char *m)
{
	char *s = list_cursor_encode(list, filters, 3, m, ID);
	char micros[24] = "", id[37] = "";
	bool ok = list_cursor_decode(s, list, filters, 3, micros, id);

	CHECK(ok && strcmp(micros, m) == 0 && strcmp(id, ID) == 0,
	    "round trip of list %s at %s", list, m);
	CHECK(strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			"0123456789-_") == strlen(s),
	    "cursor is URL-safe base64 without padding");
	free(s);
}

/* The plain text p, base64url'd, as a cursor of list c, no filters. */
static void
refuse_plain(const char *p, const char *what)
{
	char *s = b64url_encode(p, strlen(p));

	CHECK(!decodes(s, "c", none), "refused: %s", what);
	free(s);
}

static void
test_filters(void)
{
	const char *active[3] = { "active", NULL, NULL };
	const char *user[3] = { NULL, "active", NULL };
	const char *both[3] = { "active", "u-1", NULL };
	const char *empty[3] = { "", NULL, NULL };
	char *s = list_cursor_encode("c", active, 3, "1700000000123456", ID);

	CHECK(decodes(s, "c", active), "same list, same filters: decodes");
	CHECK(!decodes(s, "l", active), "refused: a cursor of the other list");
	CHECK(!decodes(s, "c", none), "refused: without its filter");
	CHECK(!decodes(s, "c", user), "refused: the value under another "
				      "filter");
	CHECK(!decodes(s, "c", both), "refused: with one more filter");
	CHECK(!decodes(s, "c", empty), "refused: another value");
	free(s);
	s = list_cursor_encode("c", none, 3, "1700000000123456", ID);
	CHECK(!decodes(s, "c", empty), "refused: an empty value for none");
	free(s);
}

static void
test_edits(void)
{
	char *s = list_cursor_encode("l", none, 3, "1700000000123456", ID);
	unsigned char *raw;
	long n = b64url_decode(s, &raw);
	char *text = xstrndup((const char *)raw, (size_t)n), *t, *c;

	CHECK(decodes(s, "l", none), "a fresh cursor decodes");
	text[3] = text[3] == '1' ? '2' : '1'; /* the time */
	c = b64url_encode(text, strlen(text));
	CHECK(!decodes(c, "l", none), "refused: the time edited");
	free(c);
	text[3] = s[3]; /* restore only matters for the next edits */
	t = xasprintf("l:1700000000123456:%s:0000000000000000", ID);
	refuse_plain(t, "a tag of zeros");
	free(t);
	t = xasprintf("%sAAAA", s);
	CHECK(!decodes(t, "l", none), "refused: junk appended");
	free(t);
	free(text);
	free(raw);
	free(s);
}

int
main(void)
{
	round_trip("c", none, "1700000000123456");
	round_trip("l", none, "0");
	round_trip("c", none, "-1");
	round_trip("l", (const char *[]){ "pending", "u \xc3\xa9", NULL },
	    "253402300799999999");
	round_trip("c", (const char *[]){ NULL, NULL, "2026-01-01T00:00:00Z" },
	    "1");
	test_filters();
	test_edits();
	CHECK(!decodes("", "c", none), "refused: empty");
	CHECK(!decodes("garbage!", "c", none), "refused: not base64url");
	refuse_plain("c:1:" ID, "three fields");
	refuse_plain("c:1:" ID ":a:b", "five fields");
	refuse_plain("c::" ID ":0", "empty time");
	refuse_plain("c:01:" ID ":0", "time with a leading zero");
	refuse_plain("c:+1:" ID ":0", "time with a plus sign");
	refuse_plain("c:-62135596800000000:" ID ":0", "before year 1");
	refuse_plain("c:253402300800000000:" ID ":0", "after year 9999");
	refuse_plain("c:99999999999999999999:" ID ":0", "time overflowing");
	refuse_plain("c:1:not-a-uuid:0", "id not a UUID");
	refuse_plain("c:1:" ID "0:0", "id too long");
	{
		char big[400];

		memset(big, 'A', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		CHECK(!decodes(big, "c", none), "refused: overlong");
	}
	return test_done();
}
