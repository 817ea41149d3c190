/*
 * Small helpers for finx-sandbox: allocation that never fails (this is a
 * test tool: OOM aborts), a bounded growable buffer, a pointer vector, a
 * string-keyed hash map, time formatting, randomness and URL coding.
 */
#ifndef SBX_UTIL_H
#define SBX_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xrealloc(void *, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);

/* Growable byte buffer, always NUL-terminated once something was added. */
struct sbx_buf {
	char *p;
	size_t len;
	size_t cap;
};

void buf_init(struct sbx_buf *);
void buf_free(struct sbx_buf *);
void buf_add(struct sbx_buf *, const void *, size_t);
void buf_adds(struct sbx_buf *, const char *);
void buf_addf(struct sbx_buf *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
/* Hands the string over to the caller (never NULL); the buffer is reset. */
char *buf_steal(struct sbx_buf *);
/* The text, "" when nothing was added; borrowed. */
const char *buf_str(const struct sbx_buf *);

/* Vector of owned or borrowed pointers; the vector never frees elements. */
struct sbx_vec {
	void **v;
	size_t n;
	size_t cap;
};

void vec_push(struct sbx_vec *, void *);
void vec_remove(struct sbx_vec *, size_t);
void vec_free(struct sbx_vec *);

/* String -> pointer map. Keys are copied; values are borrowed. */
struct sbx_map {
	struct map_ent **b;
	size_t nb;
	size_t n;
};

void map_put(struct sbx_map *, const char *, void *);
void *map_get(const struct sbx_map *, const char *);
void map_free(struct sbx_map *);

uint64_t fnv1a(const char *, size_t);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t now_ms(void);
/* Microseconds of CLOCK_MONOTONIC, for durations. */
int64_t mono_us(void);
void sleep_ms(long);
/* "2024-01-02T03:04:05.678Z" into out (at least 32 bytes). */
void iso_ms(int64_t, char *, size_t);
/* "2024-01-02T03:04:05.123456+00:00" from seconds and microseconds. */
void iso_us(int64_t, long, char *, size_t);
/* Parses "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SS[...]" as UTC; 0 or -1. */
int iso_parse(const char *, int64_t *, bool *);

/* n random base64url characters (after prefix, which counts toward n). */
char *rand_token(size_t, const char *);
void rand_uuid(char out[37]);
uint64_t rand_u64(void);

/* RFC 3986 percent-encoding of everything except unreserved characters. */
void url_encode(struct sbx_buf *, const char *);
/* Decodes %XX and, when plus is true, '+' to space. -1 on bad escapes. */
int url_decode(const char *, size_t, bool, char **);

/* Constant-time equality of two strings of any length. */
bool ct_streq(const char *, const char *);

/*
 * Lower-case hex SHA-256 of s into out (n bytes, NUL included): 65 for
 * the whole digest, 17 for its first 16 digits.  Lets the control API
 * name a token without showing it.
 */
void sha256_hex(const char *, char *, size_t);

/* Whole-string integer parse within [min, max]; 0 or -1. */
int parse_long(const char *, long, long, long *);

/* Money text "-17.89" from integer cents into out (at least 32 bytes). */
void cents_text(int64_t, char *, size_t);
/*
 * Parses exact decimal money text ("-17.8", "12", "0.05": an optional
 * minus, 1..13 digits, optionally '.' and 1..2 digits; no exponent) into
 * integer cents; 0 or -1.  Never through a double.
 */
int parse_cents(const char *, int64_t *);

#endif
