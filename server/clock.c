/*
 * Time: clock_gettime wrappers (realtime and monotonic), deadlines for
 * condition variables and RFC 3339 formatting.  Nothing here sleeps.
 */
#include "clock.h"

#include <string.h>

#include "mem.h"

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

/* The n digits at s as a number; -1 when one is not a digit. */
static long
digits(const char *s, int n)
{
	long v = 0;
	int i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static long
month_days(long y, long m)
{
	static const long days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/* "HH:MM:SS" at s within the day (a leap second :60 allowed). */
static bool
time_valid(const char *s)
{
	long h = digits(s, 2), m = digits(s + 3, 2), sec = digits(s + 6, 2);

	return s[2] == ':' && s[5] == ':' && h >= 0 && h <= 23 && m >= 0 &&
	    m <= 59 && sec >= 0 && sec <= 60;
}

/* What follows the seconds: ".fraction" then "Z" or "+HH:MM". */
static bool
zone_valid(const char *p)
{
	int n = 0;
	long h, m;

	if (*p == '.') {
		while (p[1 + n] >= '0' && p[1 + n] <= '9')
			n++;
		if (n == 0 || n > 9)
			return false;
		p += 1 + n;
	}
	if (p[0] == 'Z' && p[1] == '\0')
		return true;
	if ((*p != '+' && *p != '-') || p[3] != ':' || p[6] != '\0')
		return false;
	h = digits(p + 1, 2);
	m = digits(p + 4, 2);
	return h >= 0 && h <= 15 && m >= 0 && m <= 59;
}

bool
date_text_valid(const char *s, bool *is_date)
{
	size_t n = strlen(s);
	long y, mo, d;

	if (n < 10 || s[4] != '-' || s[7] != '-')
		return false;
	y = digits(s, 4);
	mo = digits(s + 5, 2);
	d = digits(s + 8, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo))
		return false;
	*is_date = n == 10;
	if (n == 10)
		return true;
	return n >= 20 && s[10] == 'T' && time_valid(s + 11) &&
	    zone_valid(s + 19);
}
