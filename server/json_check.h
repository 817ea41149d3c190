/*
 * A lexical pass over JSON text for what json-c 0.16 parses without a
 * word: a member name repeated in one object (json-c keeps the last value,
 * and "user_id" and "user_\u0069d" are one name to it), a \u0000 escape
 * (json-c's names are C strings: "a\u0000b" would be "a"), and a UTF-16
 * surrogate escape that is not part of a proper pair (json-c turns it
 * into U+FFFD, so "u\ud800" and "u\udbff" would be one user id).
 *
 * Pure: no logging, no global state; it allocates only scratch memory it
 * frees before returning.  It judges text json-c accepts; for text json-c
 * refuses anyway the answer may be either.
 */
#ifndef FINXD_JSON_CHECK_H
#define FINXD_JSON_CHECK_H

#include <stddef.h>

enum json_fault {
	JSON_SOUND = 0,     /* none of the faults below */
	JSON_DUPLICATE_KEY, /* one object names a member twice */
	JSON_NUL_ESCAPE,    /* a name or a string holds \u0000 */
	JSON_LONE_SURROGATE, /* a \uD800-\uDFFF escape outside a proper pair */
	JSON_BAD_ESCAPE,    /* \u not followed by four hex digits */
};

/* The first fault of the JSON text s[0..n), in document order. */
enum json_fault json_text_check(const char *s, size_t n);

#endif
