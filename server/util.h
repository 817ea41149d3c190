/*
 * Small helpers shared by every module: allocation that never returns NULL,
 * a bounded growable buffer, randomness, encodings and input validation.
 */
#ifndef FINXD_UTIL_H
#define FINXD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Allocation wrappers: abort the process on OOM, so callers never check. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Overwrite a secret and free it; NULL-safe. */
void free_secret(char *s);

/*
 * A growable byte buffer with a hard limit.  buf_append returns false (and
 * sets overflow) once the limit would be passed; data stays NUL-terminated.
 */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
	bool overflow;
};
void buf_init(struct buf *b, size_t max);
bool buf_append(struct buf *b, const void *p, size_t n);
bool buf_appendf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool buf_append_str(struct buf *b, const char *s);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Wipe the contents before freeing: for buffers that held secrets. */
void buf_free_secret(struct buf *b);
/* Hand the data to the caller (who frees it) and reset b. */
char *buf_steal(struct buf *b);

/* Fill p with n bytes from the kernel CSPRNG (getrandom); aborts on error. */
void rand_bytes(void *p, size_t n);
/* A new random UUID v4 in canonical lower-case text form. */
char *uuid_new(void);
/* True when s is a canonical UUID (8-4-4-4-12 hex, any case). */
bool uuid_valid(const char *s);
/* A fresh OAuth state: 32 random bytes, base64url without padding (43). */
char *state_new(void);

/* base64 (RFC 4648 section 4) and base64url without padding (section 5). */
char *b64_encode(const void *p, size_t n);
/* Returns decoded length, or -1 on bad input; *out is malloc'd. */
long b64_decode(const char *s, unsigned char **out);
char *b64url_encode(const void *p, size_t n);
long b64url_decode(const char *s, unsigned char **out);
/* Lower-case hex. */
char *hex_encode(const void *p, size_t n);
/* SHA-256 of s (NUL-terminated) into out. */
void sha256(const void *p, size_t n, unsigned char out[32]);

/* Constant-time equality of two byte strings of possibly different length. */
bool ct_equal(const void *a, size_t alen, const void *b, size_t blen);

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

/* Percent-encode for a URL query component (RFC 3986 unreserved kept). */
char *url_encode(const char *s);
/* Escape &, <, >, ", ' for HTML text and attributes. */
char *html_escape(const char *s);

/* Time: now in seconds and milliseconds (realtime / monotonic). */
int64_t now_unix(void);
/* CLOCK_REALTIME in milliseconds since the epoch. */
int64_t now_unix_ms(void);
int64_t mono_ms(void);
/* CLOCK_REALTIME ms from now, for pthread_cond_timedwait. */
struct timespec realtime_after_ms(int64_t ms);
/* RFC 3339 UTC text ("2026-11-26T16:20:09Z") for t. */
char *rfc3339(int64_t t);

/* Parse a decimal integer in [min,max] with nothing after it. */
bool parse_long(const char *s, long min, long max, long *out);

#endif
