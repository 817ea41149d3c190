/*
 * Encodings: base64 and base64url (canonical decoding only: leftover bits
 * must be zero), hex, URL query components and HTML text.  Pure; results
 * are malloc'd (mem.c).
 */
#include "encode.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mem.h"

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

size_t
json_quote(char *dst, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	dst[o++] = '"';
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			memcpy(dst + o, "\\u00", 4);
			dst[o + 4] = hex[ch >> 4];
			dst[o + 5] = hex[ch & 0xf];
			o += 6;
		} else {
			dst[o++] = (char)ch;
		}
	}
	dst[o++] = '"';
	dst[o] = '\0';
	return o;
}
