/*
 * finx-sandbox's pure helpers: parse_cents, the exact decimal money text
 * the bank-change control calls take (never through a double), against
 * cents_text, its inverse.
 */
#include "test.h"

#include <stdint.h>
#include <string.h>

#include "sandbox/sbx_util.h"

static void
check_good(void)
{
	static const struct {
		const char *text;
		int64_t cents;
	} good[] = {
		{ "0", 0 },
		{ "-17.8", -1780 },
		{ "-17.80", -1780 },
		{ "12", 1200 },
		{ "0.05", 5 },
		{ "-0.05", -5 },
		{ "1234.5", 123450 },
		{ "9999999999999.99", 999999999999999 },
		{ "-9999999999999", -999999999999900 },
	};
	char back[32];
	int64_t c;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		c = -1;
		CHECK(parse_cents(good[i].text, &c) == 0 && c == good[i].cents,
		    "parse_cents(\"%s\") is %lld", good[i].text,
		    (long long)good[i].cents);
	}
	CHECK(parse_cents("-17.8", &c) == 0 &&
	        (cents_text(c, back, sizeof(back)), strcmp(back, "-17.80")) ==
	            0,
	    "cents_text gives the two-decimal text back");
}

static void
check_bad(void)
{
	static const char *const bad[] = { "", "-", ".5", "5.", "1.234",
		"1e2", "1E2", "+1", " 1", "1 ", "1,5", "0x10", "--1", "1.-5",
		"12345678901234", "NaN", "inf", "1.2.3" };
	int64_t c = 42;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(parse_cents(bad[i], &c) == -1,
		    "parse_cents(\"%s\") fails", bad[i]);
	CHECK(c == 42, "a failed parse leaves the result alone");
}

int
main(void)
{
	check_good();
	check_bad();
	return test_done();
}
