/*
 * Unit tests for the small helper modules: encode.c, secret.c (random
 * identifiers, ct_equal, wiping json-c's copies), text.c (validation,
 * parse_long), buf.c and clock.c (rfc3339).  No network, no database.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "buf.h"
#include "clock.h"
#include "encode.h"
#include "mem.h"
#include "secret.h"
#include "text.h"
#include "test.h"

static bool b64_is(const char *in, const char *want);
static bool b64url_is(const char *in, size_t n, const char *want);
static bool b64_dec_is(const char *s, const char *want, long wantlen);
static bool b64url_dec_is(const char *s, const void *want, long wantlen);
static bool b64_bad(const char *s);
static bool b64url_bad(const char *s);
static bool utf8(const char *s, size_t n);
static bool str_is(char *got, const char *want);
static void test_b64(void);
static void test_hex(void);
static void test_random_ids(void);
static void test_ct_equal(void);
static void test_utf8(void);
static void test_user_id(void);
static void test_header_safe(void);
static void test_escaping(void);
static void test_buf(void);
static void test_parse_long(void);
static void test_rfc3339(void);
static void test_json_quote(void);
static void test_wipe_json(void);

/* Encode in; true when the result is want.  Frees the result. */
static bool
b64_is(const char *in, const char *want)
{
	char *got = b64_encode(in, strlen(in));
	bool ok = strcmp(got, want) == 0;

	free(got);
	return ok;
}

static bool
b64url_is(const char *in, size_t n, const char *want)
{
	char *got = b64url_encode(in, n);
	bool ok = strcmp(got, want) == 0;

	free(got);
	return ok;
}

/* Decode an exact-size copy of s, so over-reads show under ASan. */
static bool
b64_dec_is(const char *s, const char *want, long wantlen)
{
	char *copy = xstrdup(s);
	unsigned char *out = NULL;
	long n = b64_decode(copy, &out);
	bool ok = n == wantlen && (n < 0 || memcmp(out, want, (size_t)n) == 0);

	if (n >= 0)
		free(out);
	free(copy);
	return ok;
}

static bool
b64url_dec_is(const char *s, const void *want, long wantlen)
{
	char *copy = xstrdup(s);
	unsigned char *out = NULL;
	long n = b64url_decode(copy, &out);
	bool ok = n == wantlen && (n < 0 || memcmp(out, want, (size_t)n) == 0);

	if (n >= 0)
		free(out);
	free(copy);
	return ok;
}

static bool
b64_bad(const char *s)
{
	return b64_dec_is(s, NULL, -1);
}

static bool
b64url_bad(const char *s)
{
	return b64url_dec_is(s, NULL, -1);
}

/* utf8_valid on an exact-size heap copy (no NUL after it). */
static bool
utf8(const char *s, size_t n)
{
	char *copy = xmalloc(n);
	bool ok;

	memcpy(copy, s, n);
	ok = utf8_valid(copy, n);
	free(copy);
	return ok;
}

/* Compare and free got. */
static bool
str_is(char *got, const char *want)
{
	bool ok = got != NULL && strcmp(got, want) == 0;

	free(got);
	return ok;
}

static void
test_b64(void)
{
	/* RFC 4648 section 10 vectors. */
	static const char *const vec[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" },
		{ "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	static const char *const urlvec[] = { "", "Zg", "Zm8", "Zm9v",
		"Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
	unsigned char all[256], *out = NULL;
	char *enc;
	long n;
	size_t i, len;

	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		CHECK(b64_is(vec[i][0], vec[i][1]), "b64_encode(\"%s\")",
		    vec[i][0]);
		CHECK(b64_dec_is(vec[i][1], vec[i][0], (long)strlen(vec[i][0])),
		    "b64_decode(\"%s\")", vec[i][1]);
		CHECK(b64url_is(vec[i][0], strlen(vec[i][0]), urlvec[i]),
		    "b64url_encode(\"%s\")", vec[i][0]);
		CHECK(b64url_dec_is(urlvec[i], vec[i][0],
			  (long)strlen(vec[i][0])),
		    "b64url_decode(\"%s\")", urlvec[i]);
	}

	/* The two alphabets differ in 62 and 63. */
	CHECK(b64url_is("\xfb\xff\xbf", 3, "-_-_"), "b64url uses - and _");
	enc = b64_encode("\xfb\xff\xbf", 3);
	CHECK(strcmp(enc, "+/+/") == 0, "b64 uses + and /");
	free(enc);
	CHECK(b64url_bad("+/+/"), "b64url refuses + and /");
	CHECK(b64_bad("-_-_"), "b64 refuses - and _");

	/* Round trips of every byte value at every length up to 256. */
	for (i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)(255 - i);
	for (len = 0; len <= sizeof(all); len++) {
		bool ok;

		enc = b64_encode(all, len);
		n = b64_decode(enc, &out);
		ok = n == (long)len && memcmp(out, all, len) == 0 &&
		    strlen(enc) == (len + 2) / 3 * 4;
		free(out);
		free(enc);
		enc = b64url_encode(all, len);
		n = b64url_decode(enc, &out);
		ok = ok && n == (long)len && memcmp(out, all, len) == 0 &&
		    strchr(enc, '=') == NULL &&
		    strlen(enc) == (len * 4 + 2) / 3;
		free(out);
		free(enc);
		if (!ok) {
			CHECK(false, "b64/b64url round trip of %zu bytes", len);
			break;
		}
	}
	if (len > sizeof(all))
		CHECK(true, "b64/b64url round trips, 0..256 bytes");

	/* Bad characters. */
	CHECK(b64_bad("Zm9v!A=="), "b64 refuses '!'");
	CHECK(b64_bad("Zm 9v"), "b64 refuses a space (and length)");
	CHECK(b64_bad("Zm9vYmF\n"), "b64 refuses a newline");
	CHECK(b64_bad("Zm\xc3\xa4"), "b64 refuses non-ASCII");
	CHECK(b64url_bad("Zm9v.A"), "b64url refuses '.'");
	CHECK(b64url_bad("Zg=="), "b64url refuses padding");

	/* Padding rules. */
	CHECK(b64_bad("Zg"), "b64 requires padding");
	CHECK(b64_bad("Zg="), "b64 refuses length not a multiple of 4");
	CHECK(b64_bad("Z==="), "b64 refuses three pad characters");
	CHECK(b64_bad("===="), "b64 refuses all padding");
	CHECK(b64_bad("Zg=a"), "b64 refuses '=' inside");
	CHECK(b64_bad("Z=g="), "b64 refuses '=' before data");
	CHECK(b64_bad("Zg==Zg=="), "b64 refuses padding in the middle");
	CHECK(b64url_bad("Z"), "b64url refuses a single character");
	CHECK(b64url_bad("Zm9vY"), "b64url refuses length 4n+1");

	/* Non-canonical trailing bits must be zero. */
	CHECK(b64_dec_is("AQ==", "\x01", 1), "b64 AQ== is 0x01");
	CHECK(b64_bad("AR=="), "b64 refuses AR== (non-zero spare bits)");
	CHECK(b64_bad("Zh=="), "b64 refuses Zh== (non-canonical f)");
	CHECK(b64_bad("Zm9="), "b64 refuses Zm9= (non-canonical fo)");
	CHECK(b64url_bad("Zh"), "b64url refuses Zh");
	CHECK(!b64url_bad("Zm9w"),
	    "b64url Zm9w decodes (full quantum, no spare bits)");
	CHECK(!b64url_bad("Zm99"), "b64url Zm99 decodes");
	CHECK(b64url_bad("Zm-"), "b64url refuses Zm- (non-zero spare bits)");
}

static void
test_hex(void)
{
	CHECK(str_is(hex_encode("", 0), ""), "hex of nothing is empty");
	CHECK(str_is(hex_encode("\x00\x01\x7f\x80\xab\xff", 6),
		  "00017f80abff"), "hex is lower-case, two digits per byte");
}

static void
test_random_ids(void)
{
	enum { NSTATES = 1000 };
	char *u = uuid_new(), **st;
	bool ok = true, distinct = true;
	size_t i, j;

	CHECK(uuid_valid(u), "uuid_new is valid");
	CHECK(strlen(u) == 36 && u[14] == '4' && strchr("89ab", u[19]) != NULL,
	    "uuid_new is version 4, RFC 4122 variant");
	CHECK(strspn(u, "0123456789abcdef-") == 36, "uuid_new is lower case");
	free(u);

	CHECK(uuid_valid("123e4567-e89b-12d3-a456-426614174000"),
	    "uuid_valid: lower case");
	CHECK(uuid_valid("123E4567-E89B-12D3-A456-426614174000"),
	    "uuid_valid: upper case");
	CHECK(!uuid_valid(NULL), "uuid_valid: NULL");
	CHECK(!uuid_valid(""), "uuid_valid: empty");
	CHECK(!uuid_valid("123e4567-e89b-12d3-a456-42661417400"),
	    "uuid_valid: 35 chars");
	CHECK(!uuid_valid("123e4567-e89b-12d3-a456-4266141740000"),
	    "uuid_valid: 37 chars");
	CHECK(!uuid_valid("123e4567-e89b-12d3-a456-42661417400g"),
	    "uuid_valid: bad hex char");
	CHECK(!uuid_valid("123e4567+e89b-12d3-a456-426614174000"),
	    "uuid_valid: wrong separator");
	CHECK(!uuid_valid("123e4567e89b12d3a456426614174000"),
	    "uuid_valid: no dashes");
	CHECK(!uuid_valid("123e4567-e89b-12d3-a456426614174000-"),
	    "uuid_valid: dash in the wrong place");
	CHECK(!uuid_valid("{23e4567-e89b-12d3-a456-42661417400}"),
	    "uuid_valid: braces");

	st = xcalloc(NSTATES, sizeof(char *));
	for (i = 0; i < NSTATES; i++) {
		st[i] = state_new();
		if (strlen(st[i]) != 43 ||
		    strspn(st[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
				  "qrstuvwxyz0123456789-_") != 43)
			ok = false;
	}
	for (i = 0; i < NSTATES && distinct; i++)
		for (j = i + 1; j < NSTATES; j++)
			if (strcmp(st[i], st[j]) == 0) {
				distinct = false;
				break;
			}
	CHECK(ok, "state_new: 43 chars of the base64url alphabet");
	CHECK(distinct, "state_new: %d states all distinct", NSTATES);
	for (i = 0; i < NSTATES; i++)
		free(st[i]);
	free(st);
}

static void
test_ct_equal(void)
{
	CHECK(ct_equal("abc", 3, "abc", 3), "ct_equal: equal");
	CHECK(!ct_equal("abc", 3, "abd", 3), "ct_equal: last byte differs");
	CHECK(!ct_equal("abc", 3, "xbc", 3), "ct_equal: first byte differs");
	CHECK(!ct_equal("abc", 3, "abcd", 4), "ct_equal: prefix, longer b");
	CHECK(!ct_equal("abcd", 4, "abc", 3), "ct_equal: prefix, longer a");
	CHECK(ct_equal("", 0, "", 0), "ct_equal: both empty");
	CHECK(!ct_equal("", 0, "a", 1), "ct_equal: empty vs one byte");
	CHECK(ct_equal("a\0b", 3, "a\0b", 3), "ct_equal: embedded NUL equal");
	CHECK(!ct_equal("a\0b", 3, "a\0c", 3),
	    "ct_equal: differs after embedded NUL");
}

static void
test_utf8(void)
{
	CHECK(utf8("", 0), "utf8: empty");
	CHECK(utf8("hello, world", 12), "utf8: ASCII");
	CHECK(utf8("\x7f", 1), "utf8: U+007F");
	CHECK(utf8("\xc3\xa4", 2), "utf8: 2-byte U+00E4");
	CHECK(utf8("\xc2\x80", 2), "utf8: 2-byte U+0080 (lowest)");
	CHECK(utf8("\xdf\xbf", 2), "utf8: 2-byte U+07FF (highest)");
	CHECK(utf8("\xe2\x82\xac", 3), "utf8: 3-byte U+20AC");
	CHECK(utf8("\xe0\xa0\x80", 3), "utf8: 3-byte U+0800 (lowest)");
	CHECK(utf8("\xed\x9f\xbf", 3), "utf8: U+D7FF (below surrogates)");
	CHECK(utf8("\xee\x80\x80", 3), "utf8: U+E000 (above surrogates)");
	CHECK(utf8("\xef\xbf\xbf", 3), "utf8: U+FFFF");
	CHECK(utf8("\xf0\x9f\x98\x80", 4), "utf8: 4-byte U+1F600");
	CHECK(utf8("\xf0\x90\x80\x80", 4), "utf8: U+10000 (lowest 4-byte)");
	CHECK(utf8("\xf4\x8f\xbf\xbf", 4), "utf8: U+10FFFF (highest)");
	CHECK(utf8("a\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80z", 11),
	    "utf8: mixed");
	CHECK(utf8("a\0b", 3), "utf8: NUL is a valid code point");

	CHECK(!utf8("\xc0\x80", 2), "utf8: overlong C0 80");
	CHECK(!utf8("\xc1\xbf", 2), "utf8: overlong C1 BF");
	CHECK(!utf8("\xe0\x80\x80", 3), "utf8: overlong E0 80 80");
	CHECK(!utf8("\xe0\x9f\xbf", 3), "utf8: overlong E0 9F BF");
	CHECK(!utf8("\xf0\x80\x80\x80", 4), "utf8: overlong F0 80 80 80");
	CHECK(!utf8("\xf0\x8f\xbf\xbf", 4), "utf8: overlong F0 8F BF BF");
	CHECK(!utf8("\xed\xa0\x80", 3), "utf8: surrogate ED A0 80");
	CHECK(!utf8("\xed\xbf\xbf", 3), "utf8: surrogate ED BF BF");
	CHECK(!utf8("\xf4\x90\x80\x80", 4), "utf8: U+110000 F4 90 80 80");
	CHECK(!utf8("\xf5\x80\x80\x80", 4), "utf8: lead byte F5");
	CHECK(!utf8("\xf8\x88\x80\x80\x80", 5), "utf8: 5-byte form");
	CHECK(!utf8("\xff", 1), "utf8: FF");
	CHECK(!utf8("\xfe", 1), "utf8: FE");
	CHECK(!utf8("\xc3", 1), "utf8: truncated 2-byte");
	CHECK(!utf8("\xe2\x82", 2), "utf8: truncated 3-byte");
	CHECK(!utf8("\xf0\x9f\x98", 3), "utf8: truncated 4-byte");
	CHECK(!utf8("ab\xe2\x82", 4), "utf8: truncated at the end");
	CHECK(!utf8("\xe2\x82" "a", 3), "utf8: truncated, ASCII follows");
	CHECK(!utf8("\x80", 1), "utf8: lone continuation 80");
	CHECK(!utf8("a\xbf" "b", 3), "utf8: lone continuation BF");
	CHECK(!utf8("\xc3\xa4\xa4", 3), "utf8: extra continuation");
	/* The length is honoured: a valid prefix of a bad string passes. */
	CHECK(utf8("ab\xff", 2), "utf8: only n bytes are looked at");
}

static void
test_user_id(void)
{
	char s[258];

	CHECK(!user_id_valid(NULL), "user_id: NULL");
	CHECK(!user_id_valid(""), "user_id: empty (0 bytes)");
	CHECK(user_id_valid("u"), "user_id: 1 byte");
	memset(s, 'a', 255);
	s[255] = '\0';
	CHECK(user_id_valid(s), "user_id: 255 bytes");
	s[255] = 'a';
	s[256] = '\0';
	CHECK(!user_id_valid(s), "user_id: 256 bytes");
	/* 127 two-byte characters plus one byte: 255 bytes of UTF-8. */
	for (int i = 0; i < 127; i++)
		memcpy(s + 2 * i, "\xc3\xa4", 2);
	s[254] = 'x';
	s[255] = '\0';
	CHECK(user_id_valid(s), "user_id: 255 bytes of multi-byte UTF-8");
	memcpy(s + 254, "\xc3\xa4", 2);
	s[256] = '\0';
	CHECK(!user_id_valid(s), "user_id: 256 bytes of multi-byte UTF-8");
	CHECK(user_id_valid("J\xc3\xbcrgen M\xc3\xbcller \xf0\x9f\x98\x80"),
	    "user_id: unicode");
	CHECK(user_id_valid("user@example.com/with spaces:and%2F"),
	    "user_id: punctuation and spaces");
	CHECK(!user_id_valid("a\tb"), "user_id: tab");
	CHECK(!user_id_valid("a\nb"), "user_id: newline");
	CHECK(!user_id_valid("\x01"), "user_id: 0x01");
	CHECK(!user_id_valid("a\x1f"), "user_id: 0x1f");
	CHECK(!user_id_valid("a\x7f"), "user_id: DEL");
	CHECK(!user_id_valid("a\xc3"), "user_id: truncated UTF-8");
	CHECK(!user_id_valid("\xc0\xaf"), "user_id: overlong '/'");
	CHECK(!user_id_valid("\xed\xa0\x80"), "user_id: surrogate");
	CHECK(!user_id_valid("\xff"), "user_id: byte FF");

	CHECK(!has_ctl("", 0), "has_ctl: empty");
	CHECK(!has_ctl(" ~\xc3\xa4", 4), "has_ctl: printable and UTF-8");
	CHECK(has_ctl("a\0b", 3), "has_ctl: NUL inside n");
	CHECK(has_ctl("\r", 1), "has_ctl: CR");
	CHECK(has_ctl("\x7f", 1), "has_ctl: DEL");
	CHECK(!has_ctl("ab\n", 2), "has_ctl: only n bytes are looked at");
}

static void
test_header_safe(void)
{
	CHECK(token_header_safe("abcDEF012-._~+/="),
	    "header_safe: token chars");
	CHECK(token_header_safe("!"), "header_safe: one char");
	CHECK(!token_header_safe(NULL), "header_safe: NULL");
	CHECK(!token_header_safe(""), "header_safe: empty");
	CHECK(!token_header_safe("a b"), "header_safe: space");
	CHECK(!token_header_safe(" ab"), "header_safe: leading space");
	CHECK(!token_header_safe("ab\r"), "header_safe: CR");
	CHECK(!token_header_safe("ab\nX-Evil: 1"), "header_safe: LF");
	CHECK(!token_header_safe("a\tb"), "header_safe: tab");
	CHECK(!token_header_safe("a\x7f"), "header_safe: DEL");
	CHECK(!token_header_safe("\xc3\xa4"), "header_safe: non-ASCII");
	CHECK(!token_header_safe("a\x80"), "header_safe: byte 0x80");
}

static void
test_escaping(void)
{
	CHECK(str_is(url_encode(""), ""), "url_encode: empty");
	CHECK(str_is(url_encode("AZaz09-._~"), "AZaz09-._~"),
	    "url_encode: unreserved kept");
	CHECK(str_is(url_encode("a b&c=d/e?f#g+h%i"),
		  "a%20b%26c%3Dd%2Fe%3Ff%23g%2Bh%25i"),
	    "url_encode: reserved and space encoded, upper-case hex");
	CHECK(str_is(url_encode("\xc3\xa4\x01\x7f\xff"), "%C3%A4%01%7F%FF"),
	    "url_encode: non-ASCII and control bytes");
	CHECK(str_is(url_encode("https://p.example/r?x=1"),
		  "https%3A%2F%2Fp.example%2Fr%3Fx%3D1"),
	    "url_encode: a URL as a query value");

	CHECK(str_is(html_escape(""), ""), "html_escape: empty");
	CHECK(str_is(html_escape("plain text \xc3\xa4"), "plain text \xc3\xa4"),
	    "html_escape: nothing to escape");
	CHECK(str_is(html_escape("<a href=\"x\" title='y'>&amp;</a>"),
		  "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;"
		  "&lt;/a&gt;"),
	    "html_escape: & < > \" '");
	CHECK(str_is(html_escape("<script>alert(1)</script>"),
		  "&lt;script&gt;alert(1)&lt;/script&gt;"),
	    "html_escape: script tag");
}

static void
test_buf(void)
{
	struct buf b;
	char *s, big[64];

	buf_init(&b, 8);
	CHECK(b.len == 0 && !b.overflow, "buf: starts empty");
	s = buf_steal(&b);
	CHECK(s != NULL && s[0] == '\0', "buf_steal of an empty buf is \"\"");
	free(s);

	buf_init(&b, 8);
	CHECK(buf_append(&b, "abcd", 4), "buf: append 4 of 8");
	CHECK(buf_append_str(&b, "efgh"), "buf: append up to max");
	CHECK(b.len == 8 && strcmp(b.data, "abcdefgh") == 0 && !b.overflow,
	    "buf: exactly max bytes, NUL-terminated");
	CHECK(!buf_append(&b, "i", 1), "buf: one byte beyond max refused");
	CHECK(b.overflow, "buf: overflow set");
	CHECK(b.len == 8 && strcmp(b.data, "abcdefgh") == 0,
	    "buf: data kept and NUL-terminated after overflow");
	CHECK(!buf_appendf(&b, "%d", 1), "buf_appendf beyond max refused");
	CHECK(buf_append(&b, "", 0), "buf: empty append at max is fine");
	buf_reset(&b);
	CHECK(b.len == 0 && !b.overflow && b.data[0] == '\0',
	    "buf_reset clears data and overflow");
	CHECK(buf_appendf(&b, "%s-%d", "ab", 42) &&
		strcmp(b.data, "ab-42") == 0, "buf_appendf formats");
	CHECK(!buf_append_str(&b, "xyzw"), "buf: partial overflow refused");
	CHECK(b.len == 5 && strcmp(b.data, "ab-42") == 0,
	    "buf: a refused append adds nothing");
	s = buf_steal(&b);
	CHECK(strcmp(s, "ab-42") == 0, "buf_steal hands over the data");
	CHECK(b.data == NULL && b.len == 0 && !b.overflow,
	    "buf_steal resets the buf");
	free(s);
	CHECK(buf_append_str(&b, "again"), "buf usable after steal");
	buf_free(&b);
	CHECK(b.data == NULL && b.len == 0, "buf_free resets");
	buf_free(&b); /* twice is harmless */

	/* Growth past the initial capacity keeps every byte. */
	buf_init(&b, 4096);
	memset(big, 'x', sizeof(big));
	for (int i = 0; i < 64; i++)
		buf_append(&b, big, sizeof(big));
	CHECK(b.len == 4096 && !b.overflow && strlen(b.data) == 4096,
	    "buf: grows to 4096 bytes");
	CHECK(!buf_append(&b, "x", 1) && b.overflow, "buf: 4097th refused");
	buf_free_secret(&b);
	CHECK(b.data == NULL, "buf_free_secret frees");

	/* A huge n must not wrap the size arithmetic. */
	buf_init(&b, 16);
	buf_append(&b, "ab", 2);
	CHECK(!buf_append(&b, "x", SIZE_MAX) && b.overflow,
	    "buf: SIZE_MAX append refused without wrap");
	CHECK(!buf_append(&b, "x", SIZE_MAX - 1), "buf: SIZE_MAX-1 refused");
	buf_free(&b);

	buf_init(&b, 0);
	CHECK(buf_append(&b, "", 0), "buf max 0: empty append ok");
	CHECK(!buf_append(&b, "a", 1), "buf max 0: one byte refused");
	buf_free(&b);
}

static void
test_parse_long(void)
{
	long v = -7;

	CHECK(parse_long("42", 0, 100, &v) && v == 42, "parse_long: 42");
	CHECK(parse_long("0", 0, 100, &v) && v == 0, "parse_long: min bound");
	CHECK(parse_long("100", 0, 100, &v) && v == 100,
	    "parse_long: max bound");
	CHECK(parse_long("-5", -10, 10, &v) && v == -5, "parse_long: negative");
	v = -7;
	CHECK(!parse_long("101", 0, 100, &v) && v == -7,
	    "parse_long: above max, out untouched");
	CHECK(!parse_long("-1", 0, 100, &v), "parse_long: below min");
	CHECK(!parse_long("12x", 0, 100, &v), "parse_long: trailing junk");
	CHECK(!parse_long("12 ", 0, 100, &v), "parse_long: trailing space");
	CHECK(!parse_long(" 12", 0, 100, &v), "parse_long: leading space");
	CHECK(!parse_long("\t12", 0, 100, &v), "parse_long: leading tab");
	CHECK(!parse_long("", 0, 100, &v), "parse_long: empty");
	CHECK(!parse_long(NULL, 0, 100, &v), "parse_long: NULL");
	CHECK(!parse_long("-", -10, 10, &v), "parse_long: sign only");
	CHECK(!parse_long("0x10", 0, 100, &v), "parse_long: hex");
	CHECK(!parse_long("1.5", 0, 100, &v), "parse_long: decimal point");
	CHECK(!parse_long("1e3", 0, 10000, &v), "parse_long: exponent");
	CHECK(parse_long("010", 0, 100, &v) && v == 10,
	    "parse_long: leading zero is decimal");
	CHECK(!parse_long("99999999999999999999999", LONG_MIN, LONG_MAX, &v),
	    "parse_long: overflow");
	CHECK(!parse_long("-99999999999999999999999", LONG_MIN, LONG_MAX, &v),
	    "parse_long: underflow");
	CHECK(parse_long("9223372036854775807", LONG_MIN, LONG_MAX, &v) &&
		v == LONG_MAX, "parse_long: LONG_MAX");
	CHECK(!parse_long("9223372036854775808", LONG_MIN, LONG_MAX, &v),
	    "parse_long: LONG_MAX + 1");
}

static void
test_rfc3339(void)
{
	CHECK(str_is(rfc3339(0), "1970-01-01T00:00:00Z"), "rfc3339: epoch");
	CHECK(str_is(rfc3339(1795710009), "2026-11-26T16:20:09Z"),
	    "rfc3339: header example");
	CHECK(str_is(rfc3339(951782400), "2000-02-29T00:00:00Z"),
	    "rfc3339: leap day");
	CHECK(str_is(rfc3339(4102444799), "2099-12-31T23:59:59Z"),
	    "rfc3339: end of 2099");
	CHECK(now_unix() > 1700000000, "now_unix is plausible");
	CHECK(mono_ms() > 0, "mono_ms is positive");
	{
		int64_t before = now_unix();
		struct timespec a = realtime_after_ms(2999),
				b = realtime_after_ms(0);

		CHECK(a.tv_nsec >= 0 && a.tv_nsec < 1000000000L &&
		        b.tv_nsec >= 0 && b.tv_nsec < 1000000000L,
		    "realtime_after_ms: nanoseconds stay normalised");
		CHECK(a.tv_sec >= before + 2 && a.tv_sec <= before + 4 &&
		        b.tv_sec >= before && b.tv_sec <= before + 1,
		    "realtime_after_ms: that many milliseconds from now");
	}
}

static void
test_date_text(void)
{
	static const char *good[] = { "2026-02-28", "2024-02-29", "2000-02-29",
		"0001-01-01", "9999-12-31", "2026-11-26T16:20:09Z",
		"2026-11-26T16:20:09.123456789Z", "2026-11-26T16:20:09+15:59",
		"2026-11-26T16:20:09-08:00", "2016-12-31T23:59:60Z" };
	static const char *bad[] = { "2026-02-30", "2026-02-29", "1900-02-29",
		"0000-01-01", "2026-13-01", "2026-00-10", "2026-01-00",
		"2026-02-30T00:00:00Z", "0000-01-01T00:00:00Z",
		"2026-01-01T00:00:00+99:99", "2026-01-01T00:00:00+16:00",
		"2026-01-01T00:00:00+01:60", "2026-01-01T24:00:00Z",
		"2026-01-01T00:60:00Z", "2026-01-01T00:00:61Z",
		"2026-01-01T00:00:00", "2026-01-01T00:00:00.Z",
		"2026-01-01T00:00:00.1234567890Z", "2026-01-01 00:00:00Z",
		"2026-01-01T00:00:00Zjunk", "2026-01-01T00:00:00+0100",
		"+2026-01-01", "2026-1-01", "20260101", "", "2026-01-01T" };
	bool is_date;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(date_text_valid(good[i], &is_date) &&
			is_date == (strlen(good[i]) == 10),
		    "date %s accepted", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!date_text_valid(bad[i], &is_date), "date \"%s\" refused",
		    bad[i]);
}

int
main(void)
{
	test_b64();
	test_hex();
	test_random_ids();
	test_ct_equal();
	test_utf8();
	test_user_id();
	test_header_safe();
	test_escaping();
	test_buf();
	test_parse_long();
	test_rfc3339();
	test_date_text();
	test_json_quote();
	test_wipe_json();
	return test_done();
}

static void
test_json_quote(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "", "\"\"" },
		{ "abc.DEF-_~", "\"abc.DEF-_~\"" },
		{ "a\"b\\c", "\"a\\\"b\\\\c\"" },
		{ "\n\x01\x7f", "\"\\u000a\\u0001\\u007f\"" },
		{ "caf\xc3\xa9", "\"caf\xc3\xa9\"" },
	};
	char out[64];
	size_t i, n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = json_quote(out, cases[i].in);
		CHECK(n == strlen(cases[i].want) &&
		        strcmp(out, cases[i].want) == 0,
		    "json_quote case %zu", i);
	}
}

/* True when n bytes at p are all zero. */
static bool
zeroed(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != '\0')
			return false;
	return true;
}

/*
 * A token answer parsed by json-c: its strings, its tokener's scratch
 * buffer and its serialization all hold the token until wiped.
 */
static void
test_wipe_json(void)
{
	static const char doc[] =
	    "{\"access_token\":\"at-0123456789abcdefghij\",\"n\":1,"
	    "\"list\":[\"rt-0123456789abcdefghij\",{\"deep\":\"deep-secret\"}],"
	    "\"none\":null}";
	json_tokener *tok = json_tokener_new();
	json_object *o = json_tokener_parse_ex(tok, doc, (int)strlen(doc));
	json_object *at, *list, *deep;
	const char *s, *text;
	size_t len;

	CHECK(o != NULL, "the token answer parses");
	if (o == NULL)
		return;
	/* printbuf_reset only moves the start: later, shorter strings
	 * overwrite the head of a token and leave its tail behind. */
	CHECK(memmem(tok->pb->buf, (size_t)tok->pb->size, "abcdefghij", 10) !=
	        NULL,
	    "before: the tokener's scratch buffer holds a token's tail");
	tokener_wipe(tok);
	CHECK(zeroed(tok->pb->buf, (size_t)tok->pb->size),
	    "tokener_wipe zeroes the scratch buffer");
	json_tokener_free(tok);
	tokener_wipe(NULL);

	text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN,
	    &len);
	CHECK(strstr(text, "at-0123456789") != NULL,
	    "before: json-c's serialization holds the token");
	wipe_json_text(text, len);
	CHECK(zeroed(text, len), "wipe_json_text zeroes the serialization");

	json_object_object_get_ex(o, "access_token", &at);
	json_object_object_get_ex(o, "list", &list);
	json_object_object_get_ex(json_object_array_get_idx(list, 1), "deep",
	    &deep);
	s = json_object_get_string(at);
	wipe_json(o);
	CHECK(zeroed(s, strlen("at-0123456789abcdefghij")),
	    "wipe_json zeroes a string member");
	CHECK(zeroed(json_object_get_string(json_object_array_get_idx(list,
			 0)),
	          strlen("rt-0123456789abcdefghij")),
	    "... a string in an array");
	CHECK(zeroed(json_object_get_string(deep), strlen("deep-secret")),
	    "... a string in an object in an array");
	CHECK(json_object_get_int(json_object_object_get(o, "n")) == 1,
	    "... and leaves numbers alone");
	wipe_json(NULL);
	json_object_put(o);
	free_secret_n(NULL, 4);
	{
		char *p = xstrdup("abcd");

		free_secret_n(p, 4);
		CHECK(1, "free_secret_n frees (ASan checks)");
	}
}
