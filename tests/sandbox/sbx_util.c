/*
 * Generic helpers for finx-sandbox: memory, buffers, containers, time,
 * randomness (OpenSSL RAND_bytes) and URL coding. Nothing here knows about
 * HTTP or finX.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sbx_util.h"

struct map_ent {
	char *key;
	void *val;
	struct map_ent *next;
};

static void
oom(void)
{
	static const char msg[] = "finx-sandbox: out of memory\n";

	(void)!fwrite(msg, 1, sizeof(msg) - 1, stderr);
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
xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);

	if (p == NULL)
		oom();
	return p;
}

void *
xrealloc(void *o, size_t n)
{
	void *p = realloc(o, n ? n : 1);

	if (p == NULL)
		oom();
	return p;
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
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

void
buf_init(struct sbx_buf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

void
buf_free(struct sbx_buf *b)
{
	free(b->p);
	buf_init(b);
}

static void
buf_reserve(struct sbx_buf *b, size_t more)
{
	size_t want = b->len + more + 1;

	if (want <= b->cap)
		return;
	if (b->cap == 0)
		b->cap = 64;
	while (b->cap < want)
		b->cap *= 2;
	b->p = xrealloc(b->p, b->cap);
}

void
buf_add(struct sbx_buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
buf_adds(struct sbx_buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_addf(struct sbx_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		buf_add(b, small, (size_t)n);
		return;
	}
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	(void)vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *
buf_steal(struct sbx_buf *b)
{
	char *p;

	if (b->p == NULL)
		return xstrdup("");
	p = b->p;
	buf_init(b);
	return p;
}

const char *
buf_str(const struct sbx_buf *b)
{
	return b->p != NULL ? b->p : "";
}

void
vec_push(struct sbx_vec *v, void *p)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 16;
		v->v = xrealloc(v->v, v->cap * sizeof(*v->v));
	}
	v->v[v->n++] = p;
}

void
vec_remove(struct sbx_vec *v, size_t i)
{
	if (i >= v->n)
		return;
	memmove(&v->v[i], &v->v[i + 1], (v->n - i - 1) * sizeof(*v->v));
	v->n--;
}

void
vec_free(struct sbx_vec *v)
{
	free(v->v);
	v->v = NULL;
	v->n = v->cap = 0;
}

uint64_t
fnv1a(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static void
map_grow(struct sbx_map *m)
{
	struct map_ent **nb, *e, *next;
	size_t n = m->nb ? m->nb * 2 : 64, i, h;

	nb = xcalloc(n, sizeof(*nb));
	for (i = 0; i < m->nb; i++) {
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			h = fnv1a(e->key, strlen(e->key)) & (n - 1);
			e->next = nb[h];
			nb[h] = e;
		}
	}
	free(m->b);
	m->b = nb;
	m->nb = n;
}

void
map_put(struct sbx_map *m, const char *key, void *val)
{
	struct map_ent *e;
	size_t h;

	if (m->n + 1 > m->nb / 4 * 3)
		map_grow(m);
	h = fnv1a(key, strlen(key)) & (m->nb - 1);
	for (e = m->b[h]; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0) {
			e->val = val;
			return;
		}
	}
	e = xmalloc(sizeof(*e));
	e->key = xstrdup(key);
	e->val = val;
	e->next = m->b[h];
	m->b[h] = e;
	m->n++;
}

void *
map_get(const struct sbx_map *m, const char *key)
{
	struct map_ent *e;
	size_t h;

	if (m->nb == 0 || key == NULL)
		return NULL;
	h = fnv1a(key, strlen(key)) & (m->nb - 1);
	for (e = m->b[h]; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->val;
	return NULL;
}

void
map_free(struct sbx_map *m)
{
	struct map_ent *e, *next;
	size_t i;

	for (i = 0; i < m->nb; i++) {
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e->key);
			free(e);
		}
	}
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
sleep_ms(long ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

void
iso_ms(int64_t ms, char *out, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (int)(ms % 1000));
}

void
iso_us(int64_t sec, long us, char *out, size_t n)
{
	time_t t = (time_t)sec;
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, us);
}

static int
digits(const char *s, int n, int *ret)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*ret = v;
	return 0;
}

int
iso_parse(const char *s, int64_t *ret_sec, bool *ret_date_only)
{
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, se = 0;
	bool date_only = true;

	if (strlen(s) < 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) ||
	    digits(s + 5, 2, &mo) || digits(s + 8, 2, &d))
		return -1;
	if (s[10] == 'T' || s[10] == ' ') {
		if (strlen(s) < 19 || s[13] != ':' || s[16] != ':' ||
		    digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) ||
		    digits(s + 17, 2, &se))
			return -1;
		date_only = false;
	} else if (s[10] != '\0')
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    se > 60)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	*ret_sec = (int64_t)timegm(&tm);
	if (ret_date_only != NULL)
		*ret_date_only = date_only;
	return 0;
}

uint64_t
rand_u64(void)
{
	uint64_t v;

	if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
		abort();
	return v;
}

char *
rand_token(size_t n, const char *prefix)
{
	static const char b64u[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char *rnd;
	size_t plen = strlen(prefix), i;
	char *s;

	if (plen > n)
		plen = n;
	s = xmalloc(n + 1);
	memcpy(s, prefix, plen);
	rnd = xmalloc(n);
	if (RAND_bytes(rnd, (int)n) != 1)
		abort();
	for (i = plen; i < n; i++)
		s[i] = b64u[rnd[i] & 63];
	s[n] = '\0';
	free(rnd);
	return s;
}

void
rand_uuid(char out[37])
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		abort();
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
	    b[11], b[12], b[13], b[14], b[15]);
}

void
url_encode(struct sbx_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char c;
	char esc[3];

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~') {
			buf_add(b, s, 1);
			continue;
		}
		esc[0] = '%';
		esc[1] = hex[c >> 4];
		esc[2] = hex[c & 15];
		buf_add(b, esc, 3);
	}
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
url_decode(const char *s, size_t n, bool plus, char **ret)
{
	char *out = xmalloc(n + 1);
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if (s[i] == '%') {
			if (i + 2 >= n)
				goto bad;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			/* %00 would cut the C string short: refuse it. */
			if (hi < 0 || lo < 0 || (hi | lo) == 0)
				goto bad;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (s[i] == '+' && plus)
			out[o++] = ' ';
		else
			out[o++] = s[i];
	}
	out[o] = '\0';
	*ret = out;
	return 0;
bad:
	free(out);
	return -1;
}

bool
ct_streq(const char *a, const char *b)
{
	unsigned char da[EVP_MAX_MD_SIZE], db[EVP_MAX_MD_SIZE];
	unsigned int la = 0, lb = 0;

	/* Hash first so the comparison time does not depend on lengths. */
	if (!EVP_Digest(a, strlen(a), da, &la, EVP_sha256(), NULL) ||
	    !EVP_Digest(b, strlen(b), db, &lb, EVP_sha256(), NULL))
		return false;
	return la == lb && CRYPTO_memcmp(da, db, la) == 0;
}

void
sha256_hex(const char *s, char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0, i;
	size_t o = 0;

	if (n == 0)
		return;
	if (EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL))
		for (i = 0; i < len && o + 2 < n; i++) {
			out[o++] = hex[md[i] >> 4];
			out[o++] = hex[md[i] & 15];
		}
	out[o] = '\0';
}

int
parse_long(const char *s, long min, long max, long *ret)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0' || *s == ' ' || *s == '+')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*ret = v;
	return 0;
}

void
cents_text(int64_t cents, char *out, size_t n)
{
	uint64_t a =
	    cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;

	snprintf(out, n, "%s%llu.%02llu", cents < 0 ? "-" : "",
	    (unsigned long long)(a / 100), (unsigned long long)(a % 100));
}

int
parse_cents(const char *s, int64_t *ret)
{
	int64_t v = 0;
	bool neg = *s == '-';
	size_t i, digits = 0, frac = 0;

	for (i = neg ? 1 : 0; s[i] >= '0' && s[i] <= '9'; i++, digits++)
		v = v * 10 + (s[i] - '0');
	if (digits == 0 || digits > 13)
		return -1;
	if (s[i] == '.')
		for (i++; s[i] >= '0' && s[i] <= '9' && frac < 3; i++, frac++)
			v = v * 10 + (s[i] - '0');
	if (s[i] != '\0' || frac > 2 || (s[i - 1] == '.'))
		return -1;
	for (; frac < 2; frac++)
		v *= 10;
	*ret = neg ? -v : v;
	return 0;
}
