/*
 * Unit tests for json_text_check (server/json_check.c): repeated member
 * names however they are spelled, \u0000 in names and strings, lone
 * surrogate escapes, and the shapes (nesting, many names) a hostile body
 * can take.  No network, no database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_check.h"
#include "test.h"

static void test_cases(void);
static void test_many_names(void);
static void test_deep(void);

int
main(void)
{
	test_cases();
	test_many_names();
	test_deep();
	return test_done();
}

static void
test_cases(void)
{
	static const struct {
		const char *text;
		enum json_fault want;
	} cases[] = {
		{ "{\"a\":1,\"b\":2}", JSON_SOUND },
		{ "{}", JSON_SOUND },
		{ "{\"a\":\"a\",\"b\":\"a\"}", JSON_SOUND },
		{ "[\"a\",\"a\"]", JSON_SOUND },
		{ "{\"a\":1,\"A\":1}", JSON_SOUND },
		{ "{\"a\":{\"a\":1},\"b\":[{\"a\":1},{\"a\":2}]}", JSON_SOUND },
		{ "{\"a\":{\"a\":1,\"b\":2},\"b\":1,\"c\":{\"b\":1}}",
		    JSON_SOUND },
		{ "{\"a\\\"\":1,\"a\":2}", JSON_SOUND },
		{ "{\"a\\\\\":1,\"a\":2}", JSON_SOUND },
		{ "{\"e\\u0301\":1,\"\\u00e9\":2}", JSON_SOUND },
		{ "{\"x\":\"\\ud83d\\ude00\"}", JSON_SOUND },
		{ "{\"a\":[1,2,{\"b\":3}],\"b\":true}", JSON_SOUND },
		/* a value that looks like a name is not one */
		{ "{\"a\":\"b\",\"b\":\"a\"}", JSON_SOUND },
		{ "{\"user_id\":\"a\",\"user_id\":\"b\"}", JSON_DUPLICATE_KEY },
		{ "{\"user_id\":\"a\",\"user_\\u0069d\":\"b\"}",
		    JSON_DUPLICATE_KEY },
		{ "{\"user_\\u0069d\":\"a\",\"user_\\u0069d\":\"b\"}",
		    JSON_DUPLICATE_KEY },
		{ "{\"\\u00e9\":1,\"\xc3\xa9\":2}", JSON_DUPLICATE_KEY },
		{ "{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}",
		    JSON_DUPLICATE_KEY },
		{ "{\"a\\/b\":1,\"a/b\":2}", JSON_DUPLICATE_KEY },
		{ "{\"\\n\":1,\"\\u000a\":2}", JSON_DUPLICATE_KEY },
		{ "{\"\\t\":1,\"\\u0009\":2}", JSON_DUPLICATE_KEY },
		{ "{\"x\":{\"a\":1,\"a\":2}}", JSON_DUPLICATE_KEY },
		{ "{\"x\":[{\"id\":\"1\",\"id\":\"2\"}]}", JSON_DUPLICATE_KEY },
		{ "[{\"a\":1},{\"a\":1,\"a\":2}]", JSON_DUPLICATE_KEY },
		{ "{\"a\":{\"b\":1},\"a\":2}", JSON_DUPLICATE_KEY },
		{ "{\"a\":[{\"a\":1}],\"b\":{\"c\":1},\"a\":2}",
		    JSON_DUPLICATE_KEY },
		{ "{\"\":1,\"\":2}", JSON_DUPLICATE_KEY },
		{ "{\"a\\u0000\":1}", JSON_NUL_ESCAPE },
		{ "{\"a\":\"x\\u0000y\"}", JSON_NUL_ESCAPE },
		{ "[\"\\u0000\"]", JSON_NUL_ESCAPE },
		{ "{\"user_id\":\"u\\ud800\"}", JSON_LONE_SURROGATE },
		{ "{\"user_id\":\"u\\udbff\"}", JSON_LONE_SURROGATE },
		{ "{\"user_id\":\"u\\udc00\"}", JSON_LONE_SURROGATE },
		{ "{\"user_id\":\"\\ud800\\u0041\"}", JSON_LONE_SURROGATE },
		{ "{\"user_id\":\"\\ud800x\"}", JSON_LONE_SURROGATE },
		{ "{\"\\ud800\":1}", JSON_LONE_SURROGATE },
		{ "\"\\ud800", JSON_LONE_SURROGATE },
		{ "\"\\ud8", JSON_BAD_ESCAPE },
		{ "{\"a\":\"\\uzzzz\"}", JSON_BAD_ESCAPE },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum json_fault f =
		    json_text_check(cases[i].text, strlen(cases[i].text));

		CHECK(f == cases[i].want, "%s: fault %d (got %d)",
		    cases[i].text, (int)cases[i].want, (int)f);
	}
}

/* 5,000 distinct names, then the same with the first one repeated last. */
static void
test_many_names(void)
{
	enum { N = 5000 };
	size_t cap = N * 16 + 16, len = 0;
	char *s = malloc(cap);
	int i;

	if (s == NULL)
		abort();
	s[len++] = '{';
	for (i = 0; i < N; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s\"k%d\":%d",
		    i ? "," : "", i, i);
	memcpy(s + len, "}", 2);
	CHECK(json_text_check(s, len + 1) == JSON_SOUND,
	    "5000 distinct names: sound");
	len += (size_t)snprintf(s + len, cap - len, ",\"k0\":1}");
	CHECK(json_text_check(s, len) == JSON_DUPLICATE_KEY,
	    "5000 names and the first again: duplicate");
	free(s);
}

/* 10,000 nested objects of one name each: sound, and a repeat deep down. */
static void
test_deep(void)
{
	enum { D = 10000 };
	size_t len = 0, cap = D * 6 + 32;
	char *s = malloc(cap);
	int i;

	if (s == NULL)
		abort();
	for (i = 0; i < D; i++, len += 5)
		memcpy(s + len, "{\"a\":", 5);
	s[len++] = '1';
	for (i = 0; i < D; i++)
		s[len++] = '}';
	CHECK(json_text_check(s, len) == JSON_SOUND,
	    "10000 nested objects: sound");
	memcpy(s + (size_t)D * 5, "1,\"a\":2", 7);
	memset(s + (size_t)D * 5 + 7, '}', D);
	CHECK(json_text_check(s, (size_t)D * 6 + 7) == JSON_DUPLICATE_KEY,
	    "a repeat in the innermost of 10000 objects: duplicate");
	free(s);
}
