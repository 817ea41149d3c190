/*
 * Pure encodings: base64 (RFC 4648 section 4), base64url without padding
 * (section 5), lower-case hex, URL query percent-encoding and HTML
 * escaping.  Every result is malloc'd for the caller.
 */
#ifndef FINXD_ENCODE_H
#define FINXD_ENCODE_H

#include <stddef.h>

char *b64_encode(const void *p, size_t n);
/* Returns decoded length, or -1 on bad input; *out is malloc'd. */
long b64_decode(const char *s, unsigned char **out);
char *b64url_encode(const void *p, size_t n);
long b64url_decode(const char *s, unsigned char **out);
/* Lower-case hex. */
char *hex_encode(const void *p, size_t n);

/* Percent-encode for a URL query component (RFC 3986 unreserved kept). */
char *url_encode(const char *s);
/* Escape &, <, >, ", ' for HTML text and attributes. */
char *html_escape(const char *s);
/*
 * s as a JSON string literal with its quotes into dst, which has room for
 * 6 * strlen(s) + 3 bytes; returns the length (dst is NUL-terminated).
 * Writes only to dst: for secrets kept in buffers the caller wipes.
 */
size_t json_quote(char *dst, const char *s);

#endif
