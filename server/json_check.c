/*
 * json_text_check: one pass over the text, a stack of open objects and
 * arrays, the decoded names of every open object.  When an object closes
 * its names are sorted and neighbours compared, then dropped, so the
 * scratch memory never exceeds the text's own size and the time is
 * O(n log n) whatever the shape of the body.
 */
#include "json_check.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

struct name {
	const char *p;
	size_t len;
};

struct frame {
	bool object, want_key;
	size_t first; /* index of its first name in lexer.names */
	size_t mark;  /* arena top when it opened */
};

struct lexer {
	const char *s;
	size_t n, i;
	char *arena; /* decoded names; n bytes always suffice */
	size_t top;
	struct name *names;
	size_t n_names, cap_names;
	struct frame *frames;
	size_t depth, cap_frames;
};

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

/* The four hex digits at s[i..i+4) as a number, or -1. */
static long
hex4(const char *s, size_t n, size_t i)
{
	long v = 0;
	size_t k;

	if (i + 4 > n)
		return -1;
	for (k = 0; k < 4; k++) {
		int h = hexval(s[i + k]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

static size_t
utf8_put(char *out, unsigned long cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * The \u escape whose 'u' is at s[*i]: its code point in *cp (a pair
 * joined), *i left on its last hex digit.  A UTF-8 encoding of a code
 * point is never longer than its escape, so names decode in place.
 */
static enum json_fault
unicode_escape(const char *s, size_t n, size_t *i, unsigned long *cp)
{
	long hi = hex4(s, n, *i + 1), lo;

	if (hi < 0)
		return JSON_BAD_ESCAPE;
	*i += 4;
	if (hi == 0)
		return JSON_NUL_ESCAPE;
	if (hi >= 0xdc00 && hi <= 0xdfff)
		return JSON_LONE_SURROGATE;
	*cp = (unsigned long)hi;
	if (hi < 0xd800 || hi > 0xdbff)
		return JSON_SOUND;
	if (*i + 2 >= n || s[*i + 1] != '\\' || s[*i + 2] != 'u')
		return JSON_LONE_SURROGATE;
	lo = hex4(s, n, *i + 3);
	if (lo < 0xdc00 || lo > 0xdfff)
		return JSON_LONE_SURROGATE;
	*i += 6;
	*cp = 0x10000 + (((unsigned long)hi - 0xd800) << 10) +
	    ((unsigned long)lo - 0xdc00);
	return JSON_SOUND;
}

/* The character an escape other than \u stands for. */
static char
simple_escape(char c)
{
	switch (c) {
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	default:
		return c; /* " \ / (json-c refuses the others) */
	}
}

/*
 * The string whose opening quote is at s[lx->i]: checked, and decoded to
 * out (*len bytes) when out is not NULL.  lx->i is left on the closing
 * quote, or at n when there is none (json-c refuses that text).
 */
static enum json_fault
lex_string(struct lexer *lx, char *out, size_t *len)
{
	const char *s = lx->s;
	enum json_fault f;
	unsigned long cp;
	size_t o = 0;

	for (lx->i++; lx->i < lx->n && s[lx->i] != '"'; lx->i++) {
		char c = s[lx->i];

		if (c == '\\' && lx->i + 1 < lx->n) {
			c = s[++lx->i];
			if (c == 'u') {
				f = unicode_escape(s, lx->n, &lx->i, &cp);
				if (f != JSON_SOUND)
					return f;
				if (out != NULL)
					o += utf8_put(out + o, cp);
				continue;
			}
			c = simple_escape(c);
		}
		if (out != NULL)
			out[o++] = c;
	}
	*len = o;
	return JSON_SOUND;
}

static void
push(struct lexer *lx, bool object)
{
	struct frame *fr;

	if (lx->depth == lx->cap_frames) {
		lx->cap_frames = lx->cap_frames ? lx->cap_frames * 2 : 16;
		lx->frames = xrealloc(lx->frames,
		    lx->cap_frames * sizeof(*lx->frames));
	}
	fr = &lx->frames[lx->depth++];
	fr->object = object;
	fr->want_key = object;
	fr->first = lx->n_names;
	fr->mark = lx->top;
}

static int
name_cmp(const void *a, const void *b)
{
	const struct name *x = a, *y = b;
	int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);

	if (c != 0)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

/* Close the innermost frame: an object's names must all differ. */
static enum json_fault
pop(struct lexer *lx)
{
	struct frame *fr;
	struct name *v;
	size_t k, m;

	if (lx->depth == 0)
		return JSON_SOUND; /* unbalanced: json-c refuses it */
	fr = &lx->frames[--lx->depth];
	m = lx->n_names - fr->first;
	if (m > 1) { /* names is NULL until the first one */
		v = lx->names + fr->first;
		qsort(v, m, sizeof(*v), name_cmp);
		for (k = 1; k < m; k++)
			if (name_cmp(&v[k - 1], &v[k]) == 0)
				return JSON_DUPLICATE_KEY;
	}
	lx->n_names = fr->first;
	lx->top = fr->mark;
	return JSON_SOUND;
}

/* A string: a member name when an object waits for one, else a value. */
static enum json_fault
on_string(struct lexer *lx)
{
	struct frame *fr = lx->depth ? &lx->frames[lx->depth - 1] : NULL;
	enum json_fault f;
	size_t len;

	if (fr == NULL || !fr->want_key)
		return lex_string(lx, NULL, &len);
	fr->want_key = false;
	if ((f = lex_string(lx, lx->arena + lx->top, &len)) != JSON_SOUND)
		return f;
	if (lx->n_names == lx->cap_names) {
		lx->cap_names = lx->cap_names ? lx->cap_names * 2 : 16;
		lx->names = xrealloc(lx->names,
		    lx->cap_names * sizeof(*lx->names));
	}
	lx->names[lx->n_names].p = lx->arena + lx->top;
	lx->names[lx->n_names++].len = len;
	lx->top += len;
	return JSON_SOUND;
}

static enum json_fault
lex_one(struct lexer *lx)
{
	switch (lx->s[lx->i]) {
	case '{':
	case '[':
		push(lx, lx->s[lx->i] == '{');
		return JSON_SOUND;
	case '}':
	case ']':
		return pop(lx);
	case ',':
		if (lx->depth > 0 && lx->frames[lx->depth - 1].object)
			lx->frames[lx->depth - 1].want_key = true;
		return JSON_SOUND;
	case '"':
		return on_string(lx);
	default:
		return JSON_SOUND;
	}
}

enum json_fault
json_text_check(const char *s, size_t n)
{
	struct lexer lx = { .s = s, .n = n };
	enum json_fault f = JSON_SOUND;

	lx.arena = xmalloc(n + 1);
	for (lx.i = 0; lx.i < n && f == JSON_SOUND; lx.i++)
		f = lex_one(&lx);
	free(lx.arena);
	free(lx.names);
	free(lx.frames);
	return f;
}
