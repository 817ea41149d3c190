/*
 * libFuzzer target: the small decoders on the request path.  The input is
 * tried as a transaction-listing cursor (cursor_decode, plus a round trip
 * through cursor_encode when it decodes), as a percent-encoded value
 * (http_unescape) and as a request path against every route pattern
 * (http_match, which decodes each {} segment).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http.h"
#include "mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
cursor(const char *s)
{
	int64_t m, id, m2, id2;
	char *enc;

	if (!cursor_decode(s, &m, &id))
		return;
	if (id <= 0)
		abort();
	enc = cursor_encode(m, id);
	if (!cursor_decode(enc, &m2, &id2) || m2 != m || id2 != id)
		abort();
	free(enc);
}

static void
unescape(const char *s, size_t n)
{
	char *u = http_unescape(s, n);

	/* Decoding only shrinks, and never lets a NUL through. */
	if (u != NULL && strlen(u) > n)
		abort();
	free(u);
}

static void
match(const char *path)
{
	const struct route *rt;
	char *p[HTTP_MAX_PARAMS];
	int n, i;

	for (rt = routes; rt->pattern != NULL; rt++) {
		if (!http_match(rt->pattern, path, p, &n))
			continue;
		for (i = 0; i < n; i++) {
			if (p[i] == NULL || p[i][0] == '\0')
				abort();
			free(p[i]);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = xstrndup((const char *)data, size);

	cursor(s);
	unescape(s, strlen(s));
	match(s);
	free(s);
	return 0;
}
