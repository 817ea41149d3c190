/*
 * Secret handling: wiping, constant-time comparison, SHA-256, and random
 * bytes from getrandom(2) with the identifiers made from them.  Aborts
 * only when the kernel CSPRNG fails.
 */
#include "secret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "encode.h"
#include "mem.h"

void
free_secret(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void
free_secret_n(void *p, size_t n)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, n);
	free(p);
}

void
wipe_json(json_object *o)
{
	size_t i, n;

	switch (json_object_get_type(o)) {
	case json_type_string:
		/* json-c's own writable copy; get_string only says const. */
		OPENSSL_cleanse((char *)json_object_get_string(o),
		    (size_t)json_object_get_string_len(o));
		break;
	case json_type_array:
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			wipe_json(json_object_array_get_idx(o, i));
		break;
	case json_type_object: {
		json_object_object_foreach(o, k, v) {
			(void)k;
			wipe_json(v);
		}
		break;
	}
	default:
		break; /* NULL, numbers and booleans hold no secret text */
	}
}

void
wipe_json_text(const char *s, size_t n)
{
	if (s != NULL)
		OPENSSL_cleanse((char *)s, n);
}

void
tokener_wipe(json_tokener *tok)
{
	if (tok != NULL && tok->pb != NULL && tok->pb->buf != NULL &&
	    tok->pb->size > 0)
		OPENSSL_cleanse(tok->pb->buf, (size_t)tok->pb->size);
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

void
sha256(const void *p, size_t n, unsigned char out[32])
{
	SHA256(p, n, out);
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
