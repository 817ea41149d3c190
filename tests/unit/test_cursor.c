/*
 * Unit tests for the opaque keyset cursor of the transaction listings
 * (server/api_data.c): round trips, and everything a client could send
 * instead of a cursor finxd made is refused.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "encode.h"
#include "mem.h"
#include "test.h"

static void
round_trip(int64_t micros, int64_t id)
{
	char *s = cursor_encode(micros, id);
	int64_t m = 0, i = 0;
	bool ok = s != NULL && cursor_decode(s, &m, &i);

	CHECK(ok && m == micros && i == id,
	    "round trip (%" PRId64 ", %" PRId64 ") via %s", micros, id,
	    s ? s : "NULL");
	CHECK(s != NULL && strspn(s,
	                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrst"
	                       "uvwxyz0123456789-_") == strlen(s),
	    "cursor is URL-safe base64 without padding");
	free(s);
}

/* The cursor made of the plain text p (base64url of it). */
static bool
decode_plain(const char *p)
{
	char *s = b64url_encode(p, strlen(p));
	int64_t m, i;
	bool ok = cursor_decode(s, &m, &i);

	free(s);
	return ok;
}

static void
refuse_plain(const char *p, const char *what)
{
	CHECK(!decode_plain(p), "refused: %s (\"%s\")", what, p);
}

static void
refuse(const char *s, const char *what)
{
	int64_t m = 0, i = 0;

	CHECK(!cursor_decode(s, &m, &i), "refused: %s", what);
}

int
main(void)
{
	char *s, *t;
	int64_t m, i;

	round_trip(1700000000123456LL, 1);
	round_trip(1700000000123456LL, 987654321);
	round_trip(0, 42);
	round_trip(-1, 7); /* one microsecond before 1970 */
	round_trip(-62135596799999999LL, 1); /* near year 1 */
	round_trip(253402300799999999LL, 1); /* end of year 9999 */
	round_trip(1700000000000000LL, INT64_MAX);

	CHECK(decode_plain("1:1700000000123456:5"),
	    "a hand-made version 1 cursor decodes");

	refuse(NULL, "NULL");
	refuse("", "empty");
	refuse("garbage!", "not base64url");
	refuse("MToxOjE=", "padded standard base64 (\"1:1:1\")");
	refuse("MToxOj+x", "standard base64 alphabet");
	refuse("MToxO", "base64 of impossible length");
	refuse("MToxOjF", "non-canonical trailing bits");
	refuse("MT ox", "space inside");
	refuse_plain("1:1", "no id");
	refuse_plain("1:1:", "empty id");
	refuse_plain("1::5", "empty time");
	refuse_plain("2:1700000000123456:5", "version 2");
	refuse_plain("0:1700000000123456:5", "version 0");
	refuse_plain("v1:1700000000123456:5", "other version prefix");
	refuse_plain(":1700000000123456:5", "no version");
	refuse_plain("1:1700000000123456:0", "id zero");
	refuse_plain("1:1700000000123456:-5", "negative id");
	refuse_plain("1:1700000000123456:+5", "id with plus sign");
	refuse_plain("1:1700000000123456:05", "id with a leading zero");
	refuse_plain("1:1700000000123456:5x", "junk after the id");
	refuse_plain("1:1700000000123456:5:6", "a fourth field");
	refuse_plain("1:1700000000123456:5 ", "trailing space");
	refuse_plain("1:17000000001234x6:5", "junk in the time");
	refuse_plain("1: 1700000000123456:5", "space before the time");
	refuse_plain("1:+1700000000123456:5", "time with plus sign");
	refuse_plain("1:-:5", "time only a minus");
	refuse_plain("1:1e15:5", "time in exponent notation");
	refuse_plain("1:-62135596800000000:5", "time before year 1");
	refuse_plain("1:253402300800000000:5", "time after year 9999");
	refuse_plain("1:99999999999999999999999:5", "time overflowing");
	refuse_plain("1:5:99999999999999999999999", "id overflowing");
	{
		/* a NUL inside the decoded text */
		static const char raw[] = "1:1700000000123456:5\0" "00";
		char *c = b64url_encode(raw, sizeof(raw) - 1);

		refuse(c, "NUL inside");
		free(c);
	}
	/* overlong: a valid cursor with junk appended, and 65+ characters */
	s = cursor_encode(1700000000123456LL, 5);
	t = xasprintf("%sAAAA", s);
	refuse(t, "valid cursor with base64 junk appended");
	free(t);
	t = xasprintf("%s.", s);
	refuse(t, "valid cursor with a dot appended");
	free(t);
	free(s);
	t = xmalloc(200);
	memset(t, 'A', 199);
	t[199] = '\0';
	refuse(t, "200 characters");
	free(t);
	s = xmalloc(66);
	memset(s, '1', 65);
	s[65] = '\0';
	t = b64url_encode(s, strlen(s));
	refuse(t, "overlong plain text");
	free(t);
	free(s);
	CHECK(cursor_decode(s = cursor_encode(1, 1), &m, &i) && m == 1 &&
	        i == 1,
	    "smallest positive values");
	free(s);
	return test_done();
}
