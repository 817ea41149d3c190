/*
 * libFuzzer target: the /callback query parser and validator.  The input
 * is a raw query string; it is split into arguments the way libmicrohttpd
 * does with finxd's pass-through unescape callback ('&' between
 * arguments, the first '=' between name and value, no decoding), fed to
 * callback_arg() and checked with callback_params_check().  Whatever it
 * accepts must satisfy the rules the database lookup relies on.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "mem.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
require(int cond)
{
	if (!cond)
		abort();
}

static void
check_accepted(const struct cb_params *p)
{
	const char *s = p->v[CB_STATE], *f = p->v[CB_FLOW_ID];
	size_t i;

	require(s != NULL && f != NULL);
	require(strlen(s) >= 1 && strlen(s) <= 512);
	require(strlen(f) >= 1 && strlen(f) <= 256);
	require(!has_ctl(s, strlen(s)) && !has_ctl(f, strlen(f)));
	require(utf8_valid(s, strlen(s)) && utf8_valid(f, strlen(f)));
	if (p->v[CB_CODE] != NULL)
		require(!has_ctl(p->v[CB_CODE], strlen(p->v[CB_CODE])));
	for (i = 0; i < CB_NPARAMS; i++)
		require(p->count[i] <= 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cb_params p = { 0 };
	char *q = xstrndup((const char *)data, size), *arg, *next, *eq;

	/* A URL never carries a raw NUL: xstrndup stops at the first. */
	for (arg = q; arg != NULL; arg = next) {
		if ((next = strchr(arg, '&')) != NULL)
			*next++ = '\0';
		if (*arg == '\0')
			continue;
		if ((eq = strchr(arg, '=')) != NULL)
			*eq++ = '\0';
		callback_arg(&p, arg, eq);
	}
	if (callback_params_check(&p) == NULL)
		check_accepted(&p);
	callback_params_free(&p);
	free(q);
	return 0;
}
