/*
 * libFuzzer target: the small decoders on the request path.  The input is
 * tried as a transaction-listing cursor (cursor_decode, plus a round trip
 * through cursor_encode when it decodes), as a cursor of the connection
 * and link lists (list_cursor_decode, a round trip, and never valid for
 * the other list), as a percent-encoded value
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
list_cursor(const char *s)
{
	static const char *const none[3] = { NULL, NULL, NULL };
	char m[24], id[37], m2[24], id2[37], *enc;

	if (!list_cursor_decode(s, "c", none, 3, m, id))
		return;
	if (list_cursor_decode(s, "l", none, 3, m2, id2))
		abort();
	enc = list_cursor_encode("c", none, 3, m, id);
	if (!list_cursor_decode(enc, "c", none, 3, m2, id2) ||
	    strcmp(m, m2) != 0 || strcmp(id, id2) != 0)
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
	list_cursor(s);
	unescape(s, strlen(s));
	match(s);
	free(s);
	return 0;
}
