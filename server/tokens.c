/*
 * The refresh policy's arithmetic: see tokens.h.  The token columns
 * themselves are written in store_tokens.c.
 */
#include "tokens.h"

#include "config.h"

static long margin_s = 300, keepalive_s = 7L * 86400;

void
tokens_init(const struct config *cfg)
{
	margin_s = cfg->refresh_margin_s;
	keepalive_s = cfg->refresh_keepalive_s;
}

long
tokens_due_in(long lifetime, long margin, long keepalive)
{
	long m = margin < lifetime / 2 ? margin : lifetime / 2;
	long due = lifetime - m;

	if (due < 1)
		due = 1;
	return due < keepalive ? due : keepalive;
}

long
tokens_backoff_s(int failures, unsigned rnd)
{
	long base = 5;
	int i;

	for (i = 1; i < failures && base < 900; i++)
		base *= 2;
	if (base > 900)
		base = 900;
	/* Between half and all of base. */
	return base / 2 + (long)(rnd % (unsigned)(base / 2 + 1));
}

long
tokens_idle_due_in(long refresh_left, long keepalive)
{
	long m;

	if (refresh_left <= 0)
		return keepalive;
	m = refresh_left / 2 < 86400 ? refresh_left / 2 : 86400;
	if (refresh_left - m < keepalive)
		return refresh_left - m > 1 ? refresh_left - m : 1;
	return keepalive;
}

long
tokens_next_due(bool hot, long lifetime, long refresh_left, long margin,
    long keepalive)
{
	long idle = tokens_idle_due_in(refresh_left, keepalive);
	long ahead;

	if (!hot)
		return idle;
	ahead = tokens_due_in(lifetime, margin, keepalive);
	return ahead < idle ? ahead : idle;
}

bool
tokens_need_refresh(double access_left, long lifetime, long margin)
{
	long m = margin < lifetime / 2 ? margin : lifetime / 2;

	return access_left <= (double)m / 2;
}

long
tokens_margin(void)
{
	return margin_s;
}

long
tokens_access_ttl(const struct finx_tokens *t)
{
	return t->expires_in > 0 ? t->expires_in : ACCESS_TTL_UNKNOWN;
}

long
tokens_due_after(const struct finx_tokens *t, bool hot, long row_refresh_left)
{
	long rleft = t->refresh_token == NULL ? row_refresh_left
	    : t->refresh_expires_in > 0       ? t->refresh_expires_in
					      : REFRESH_TTL_DEFAULT;

	return tokens_next_due(hot, tokens_access_ttl(t), rleft, margin_s,
	    keepalive_s);
}
