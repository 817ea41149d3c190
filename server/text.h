/*
 * Input validation of text: well-formed UTF-8, control characters, the
 * user_id and header-token rules, canonical UUIDs and bounded decimal
 * integers.  Pure: nothing allocates, nothing logs.
 */
#ifndef FINXD_TEXT_H
#define FINXD_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const char *s, size_t n);
/* True when s contains a C0 control character or DEL. */
bool has_ctl(const char *s, size_t n);
/* min..max bytes of UTF-8 without C0, DEL or C1 control characters. */
bool text_valid(const char *s, size_t min, size_t max);
/* The user_id rule of SPEC.md: 1..255 bytes of UTF-8, no control chars. */
bool user_id_valid(const char *s);
/* A header-safe token: non-empty, printable ASCII, no space, CR or LF. */
bool token_header_safe(const char *s);
/* True when s is a canonical UUID (8-4-4-4-12 hex, any case). */
bool uuid_valid(const char *s);

/* Parse a decimal integer in [min,max] with nothing after it. */
bool parse_long(const char *s, long min, long max, long *out);

/* s without leading and trailing white space (cut in place). */
char *text_trim(char *s);
/*
 * A comma-separated list as trimmed non-empty items (n of them; NULL when
 * none), copied; the copy of v used on the way is wiped (lists of
 * secrets).  Free with text_free_list, which wipes each item.
 */
char **text_split_list(const char *v, size_t *n);
void text_free_list(char **l, size_t n);

#endif
