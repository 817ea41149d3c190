/*
 * Bounded buffers: struct buf grows by copy up to its limit and refuses
 * (overflow) past it.  Allocation failure aborts (mem.c).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mem.h"

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
	bool ok;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	ok = buf_append(b, s, strlen(s));
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
