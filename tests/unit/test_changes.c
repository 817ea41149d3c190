/*
 * Unit tests for the cursor of the transaction change feed
 * (server/api_changes.c): round trips, and a cursor of another
 * connection, of a list, edited, negative or not made by finxd is
 * refused.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "encode.h"
#include "mem.h"
#include "test.h"

#define ID "0b6f6c1e-6a47-4d8e-9f57-1f3f1e0c9a21"
#define OTHER "7d1c5e0a-3b2f-4c6d-8e9f-0a1b2c3d4e5f"

static void
round_trip(int64_t seq)
{
	char *s = changes_cursor_encode(ID, seq);
	int64_t got = -1;

	CHECK(changes_cursor_decode(s, ID, &got) && got == seq,
	    "round trip at %lld", (long long)seq);
	CHECK(strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			"0123456789-_") == strlen(s),
	    "cursor is URL-safe base64 without padding");
	free(s);
}

static bool
decodes(const char *s)
{
	int64_t seq = 0;

	return changes_cursor_decode(s, ID, &seq);
}

/* The plain text p, base64url'd, is no cursor. */
static void
refuse_plain(const char *p, const char *what)
{
	char *s = b64url_encode(p, strlen(p));

	CHECK(!decodes(s), "refused: %s", what);
	free(s);
}

static void
test_other(void)
{
	char *s = changes_cursor_encode(OTHER, 7);
	char *l = list_cursor_encode("c", NULL, 0, "7", ID);
	int64_t seq = 99;

	CHECK(!changes_cursor_decode(s, ID, &seq) && seq == 99,
	    "another connection's cursor is refused, seq untouched");
	CHECK(changes_cursor_decode(s, OTHER, &seq) && seq == 7,
	    "it is that connection's");
	CHECK(!decodes(l), "a list's cursor with the same id is refused");
	free(s);
	free(l);
}

/* Every single-character edit of a cursor's text is refused. */
static void
test_edited(void)
{
	char *s = changes_cursor_encode(ID, 42), *e;
	unsigned char *raw = NULL;
	long n = b64url_decode(s, &raw), i, bad = 0;
	char *plain = xstrndup((const char *)raw, (size_t)n);

	for (i = 0; i < n; i++) {
		char *p = xstrdup(plain);

		p[i] = p[i] == '1' ? '2' : '1';
		e = b64url_encode(p, strlen(p));
		bad += decodes(e);
		free(e);
		free(p);
	}
	CHECK(bad == 0, "no edit of the %ld characters decodes (%ld did)", n,
	    bad);
	e = xstrdup(s);
	e[3] = e[3] == 'A' ? 'B' : 'A';
	CHECK(!decodes(e), "an edited base64 character is refused");
	free(e);
	free(raw);
	free(plain);
	free(s);
}

static void
test_garbage(void)
{
	char *neg = list_cursor_encode("x", NULL, 0, "-5", ID);
	char *lng = xcalloc(2000, 1);

	CHECK(!decodes(neg), "a negative position is refused");
	CHECK(!decodes(""), "an empty cursor is refused");
	CHECK(!decodes("!!!!"), "not base64: refused");
	CHECK(!decodes("eDo1"), "\"x:5\": refused");
	memset(lng, 'A', 1999);
	CHECK(!decodes(lng), "a 1999-character cursor is refused");
	CHECK(!changes_cursor_decode(NULL, ID, &(int64_t){ 0 }),
	    "no cursor is no cursor");
	refuse_plain("x:5:" ID ":0000000000000000", "a made-up tag");
	refuse_plain("x:5:" ID, "no tag");
	refuse_plain("x:05:" ID ":0000000000000000", "a leading zero");
	free(neg);
	free(lng);
}

int
main(void)
{
	round_trip(0);
	round_trip(1);
	round_trip(123456789012LL);
	round_trip(250000000000000000LL);
	test_other();
	test_edited();
	test_garbage();
	return test_done();
}
