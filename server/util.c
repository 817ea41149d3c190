/*
 * Shared helpers: allocation, bounded buffers, randomness, encodings,
 * input validation and time.  Nothing here logs.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

static void
oom(void)
{
	fputs("{\"level\":\"error\",\"msg\":\"out of memory\"}\n", stderr);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom();
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		oom();
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom();
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		oom();
	va_end(ap);
	return s;
}

void
free_secret(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void
buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

static bool
buf_reserve(struct buf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (n > b->max || b->len > b->max - n) {
		b->overflow = true;
		return false;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	/* Grow by copy so a buffer that held a secret leaves no copy behind. */
	p = xmalloc(cap);
	if (b->data != NULL) {
		memcpy(p, b->data, b->len + 1);
		OPENSSL_cleanse(b->data, b->cap);
		free(b->data);
	}
	b->data = p;
	b->cap = cap;
	return true;
}

bool
buf_append(struct buf *b, const void *p, size_t n)
{
	if (!buf_reserve(b, n))
		return false;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

bool
buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

bool
buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;
	bool ok;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom();
	ok = buf_append(b, s, (size_t)n);
	free(s);
	return ok;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	b->overflow = false;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_free_secret(struct buf *b)
{
	if (b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	buf_free(b);
}

char *
buf_steal(struct buf *b)
{
	char *p = b->data ? b->data : xstrdup("");

	b->data = NULL;
	b->len = b->cap = 0;
	b->overflow = false;
	return p;
}

void
rand_bytes(void *p, size_t n)
{
	unsigned char *c = p;

	while (n > 0) {
		ssize_t r = getrandom(c, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			fputs("{\"level\":\"error\",\"msg\":\"getrandom failed\"}\n",
			    stderr);
			abort();
		}
		c += r;
		n -= (size_t)r;
	}
}

char *
uuid_new(void)
{
	unsigned char u[16];

	rand_bytes(u, sizeof(u));
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	return xasprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
			 "%02x%02x%02x%02x%02x%02x",
	    u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
	    u[11], u[12], u[13], u[14], u[15]);
}

bool
uuid_valid(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

char *
state_new(void)
{
	unsigned char r[32];
	char *s;

	rand_bytes(r, sizeof(r));
	s = b64url_encode(r, sizeof(r));
	OPENSSL_cleanse(r, sizeof(r));
	return s;
}

static const char b64std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *
b64_enc(const void *p, size_t n, const char *alpha, bool pad)
{
	const unsigned char *in = p;
	char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		*o++ = alpha[in[i] >> 2];
		*o++ = alpha[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*o++ = alpha[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		*o++ = alpha[in[i + 2] & 63];
	}
	if (i < n) {
		*o++ = alpha[in[i] >> 2];
		if (i + 1 < n) {
			*o++ = alpha[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
			*o++ = alpha[(in[i + 1] & 15) << 2];
		} else {
			*o++ = alpha[(in[i] & 3) << 4];
			if (pad)
				*o++ = '=';
		}
		if (pad)
			*o++ = '=';
	}
	*o = '\0';
	return out;
}

static long
b64_dec(const char *s, unsigned char **out, const char *alpha, bool pad)
{
	size_t n = strlen(s), i, o = 0;
	unsigned char *d;
	unsigned v = 0;
	int bits = 0;

	if (pad) {
		if (n % 4 != 0)
			return -1;
		while (n > 0 && s[n - 1] == '=')
			n--;
		if (strlen(s) - n > 2)
			return -1;
	} else if (n % 4 == 1)
		return -1;
	d = xmalloc(n * 3 / 4 + 1);
	for (i = 0; i < n; i++) {
		const char *p = s[i] ? strchr(alpha, s[i]) : NULL;

		if (p == NULL) {
			free(d);
			return -1;
		}
		v = (v << 6) | (unsigned)(p - alpha);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			d[o++] = (unsigned char)(v >> bits);
		}
	}
	/* Leftover bits must be zero, so every encoding is canonical. */
	if (bits > 0 && (v & ((1u << bits) - 1)) != 0) {
		free(d);
		return -1;
	}
	*out = d;
	return (long)o;
}

char *
b64_encode(const void *p, size_t n)
{
	return b64_enc(p, n, b64std, true);
}

long
b64_decode(const char *s, unsigned char **out)
{
	return b64_dec(s, out, b64std, true);
}

char *
b64url_encode(const void *p, size_t n)
{
	return b64_enc(p, n, b64url, false);
}

long
b64url_decode(const char *s, unsigned char **out)
{
	return b64_dec(s, out, b64url, false);
}

char *
hex_encode(const void *p, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	const unsigned char *in = p;
	char *out = xmalloc(n * 2 + 1);
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * n] = '\0';
	return out;
}

void
sha256(const void *p, size_t n, unsigned char out[32])
{
	SHA256(p, n, out);
}

bool
ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	unsigned char ha[32], hb[32];

	/* Hash first so the comparison time does not depend on lengths. */
	SHA256(a, alen, ha);
	SHA256(b, blen, hb);
	return CRYPTO_memcmp(ha, hb, 32) == 0 && alen == blen;
}

bool
utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t len, k;
		unsigned cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else
			return false;
		if (i + len > n)
			return false;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

bool
has_ctl(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

/* C1 controls (U+0080..U+009F) are C2 80..C2 9F in UTF-8. */
static bool
has_c1(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i++)
		if ((unsigned char)s[i] == 0xc2 &&
		    (unsigned char)s[i + 1] >= 0x80 &&
		    (unsigned char)s[i + 1] <= 0x9f)
			return true;
	return false;
}

bool
text_valid(const char *s, size_t min, size_t max)
{
	size_t n;

	if (s == NULL)
		return false;
	n = strlen(s);
	return n >= min && n <= max && utf8_valid(s, n) && !has_ctl(s, n) &&
	    !has_c1(s, n);
}

bool
user_id_valid(const char *s)
{
	return text_valid(s, 1, 255);
}

bool
token_header_safe(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	return true;
}

char *
url_encode(const char *s)
{
	static const char hx[] = "0123456789ABCDEF";
	char *out = xmalloc(strlen(s) * 3 + 1), *o = out;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			*o++ = (char)c;
		else {
			*o++ = '%';
			*o++ = hx[c >> 4];
			*o++ = hx[c & 15];
		}
	}
	*o = '\0';
	return out;
}

char *
html_escape(const char *s)
{
	struct buf b;

	buf_init(&b, SIZE_MAX / 2);
	for (; *s; s++) {
		switch (*s) {
		case '&':
			buf_append_str(&b, "&amp;");
			break;
		case '<':
			buf_append_str(&b, "&lt;");
			break;
		case '>':
			buf_append_str(&b, "&gt;");
			break;
		case '"':
			buf_append_str(&b, "&quot;");
			break;
		case '\'':
			buf_append_str(&b, "&#39;");
			break;
		default:
			buf_append(&b, s, 1);
		}
	}
	return buf_steal(&b);
}

int64_t
now_unix(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

int64_t
now_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec
realtime_after_ms(int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *
rfc3339(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char s[32];

	gmtime_r(&tt, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return xstrdup(s);
}

bool
parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}
