/*
 * A tiny test helper in the spirit of redis' testhelp.h: CHECK counts
 * failures and prints TAP lines; test_done() prints the plan and the
 * closing "N passed, N failed" line and returns the exit code.
 * Never pass a token, code or secret to CHECK's message.
 */
#ifndef FINXD_TEST_H
#define FINXD_TEST_H

#include <stdio.h>

static int test_n, test_failed;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		test_n++;                                                     \
		if (cond) {                                                   \
			printf("ok %d - ", test_n);                           \
		} else {                                                      \
			test_failed++;                                        \
			printf("not ok %d - %s:%d: ", test_n, __FILE__,       \
			    __LINE__);                                        \
		}                                                             \
		printf(__VA_ARGS__);                                          \
		printf("\n");                                                 \
		fflush(stdout);                                               \
	} while (0)

static inline int
test_done(void)
{
	printf("1..%d\n", test_n);
	printf("# %d passed, %d failed\n", test_n - test_failed, test_failed);
	return test_failed ? 1 : 0;
}

#endif
