/*
 * Unit tests for migrate.c's pure parts: the "-- finxd: compatible_from N"
 * parser (and that every embedded migration's declaration parses), the
 * rule of which schemas a binary may serve, and the retry backoff.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "migrate.h"
#include "test.h"

/* migrate_compatible_from, with the reason dropped. */
static int
cf(const char *sql, int version)
{
	const char *why = NULL;
	int n = migrate_compatible_from(sql, version, &why);

	if (n < 0 && why == NULL)
		return -2; /* an error must say why */
	return n;
}

static void
test_parser(void)
{
	const char *why = NULL;

	CHECK(cf("CREATE TABLE t (a int);\n", 5) == 5,
	    "no declaration: the migration's own version");
	CHECK(cf("", 3) == 3, "empty file: its own version");
	CHECK(cf("-- finxd: compatible_from 4\nALTER TABLE t ADD b int;\n", 5)
		== 4,
	    "first line declares 4");
	CHECK(cf("-- finxd: compatible_from 5\n", 5) == 5,
	    "declaring its own version is allowed");
	CHECK(cf("-- comment\n--\n\t--   finxd:   compatible_from\t2  \r\n"
		 "SELECT 1;\n",
		  3) == 2,
	    "indented, extra blanks, CRLF: 2");
	CHECK(cf("--finxd:compatible_from 1\n", 2) == 1,
	    "no blanks after -- and finxd: is fine");
	CHECK(cf("SELECT 1;\n-- finxd: compatible_from 2", 3) == 2,
	    "a last line without newline counts");
	CHECK(cf("-- from each file's \"finxd: compatible_from N\" line\n", 4)
		== 4,
	    "the words inside another comment are not a declaration");
	CHECK(cf("SELECT 1; -- finxd: compatible_from 1\n", 4) == 4,
	    "a trailing comment after SQL is not a declaration");
	CHECK(cf("-- finxd: compatible_from 2\n-- finxd: compatible_from 3\n",
		  4) == -1,
	    "two declarations: malformed");
	CHECK(cf("-- finxd: compatible_from x\n", 4) == -1,
	    "not a number: malformed");
	CHECK(cf("-- finxd: compatible_from\n", 4) == -1,
	    "no number: malformed");
	CHECK(cf("-- finxd: compatible_from 3 or so\n", 4) == -1,
	    "trailing words: malformed");
	CHECK(cf("-- finxd: compatible_from 0\n", 4) == -1, "0: malformed");
	CHECK(cf("-- finxd: compatible_from 5\n", 4) == -1,
	    "above its own version: malformed");
	CHECK(cf("-- finxd: compatible_from 99999999999\n", 4) == -1,
	    "a huge number: malformed, no overflow");
	CHECK(cf("-- finxd: compatible-from 3\n", 4) == -1,
	    "a misspelt name is refused, not ignored");
	CHECK(cf("-- finxd: compatible_from3\n", 4) == -1,
	    "name and number run together: malformed");
	CHECK(migrate_compatible_from("-- finxd: nonsense\n", 4, &why) == -1 &&
		why != NULL && strlen(why) > 0,
	    "an unknown directive: malformed, with a reason");
}

static void
test_embedded(void)
{
	const char *why = NULL;
	int i, bad = 0, n;

	CHECK(migrations_count >= 4, "at least 4 embedded migrations (%d)",
	    migrations_count);
	for (i = 0; i < migrations_count; i++) {
		n = migrate_compatible_from(migrations[i].sql,
		    migrations[i].version, &why);
		if (n < 1 || n > migrations[i].version) {
			printf("# %s: %s\n", migrations[i].name,
			    why ? why : "out of range");
			bad++;
		}
	}
	CHECK(bad == 0, "every embedded migration's declaration parses (%d bad)",
	    bad);
	CHECK(migrations_count >= 4 &&
		migrate_compatible_from(migrations[3].sql, 4, &why) == 4,
	    "0004_lease.sql (the refresh lease) serves only schema-4 finxd");
	CHECK(migrate_compatible_from(migrations[0].sql, 1, &why) == 1,
	    "0001 declares nothing: 1");
}

/* rows: version, compatible_from pairs (0: NULL) */
static enum migrate_verdict
judge(int own, int *blocker, size_t n, const int *rows)
{
	struct migrate_applied a[16];
	size_t i;

	for (i = 0; i < n && i < 16; i++) {
		a[i].version = rows[2 * i];
		a[i].compatible_from = rows[2 * i + 1];
	}
	return migrate_judge(own, a, n, blocker);
}

static void
test_rule(void)
{
	int b = -1;

	CHECK(judge(4, &b, 0, NULL) == MIGRATE_BEHIND && b == 0,
	    "empty database: behind");
	CHECK(judge(4, &b, 3, (int[]){ 1, 0, 2, 0, 3, 0 }) == MIGRATE_BEHIND,
	    "schema 3, binary 4: behind");
	CHECK(judge(4, &b, 4, (int[]){ 1, 0, 2, 0, 3, 0, 4, 4 }) ==
		    MIGRATE_CURRENT && b == 0,
	    "schema 4, binary 4: current");
	CHECK(judge(4, &b, 4, (int[]){ 1, 0, 2, 0, 3, 0, 4, 0 }) ==
		MIGRATE_CURRENT,
	    "current with compatible_from not recorded");
	CHECK(judge(3, &b, 4, (int[]){ 1, 0, 2, 0, 3, 0, 4, 4 }) ==
		    MIGRATE_NEWER_INCOMPATIBLE && b == 4,
	    "schema 4 (compatible_from 4), binary 3: not servable, by 4");
	CHECK(judge(4, &b, 5, (int[]){ 1, 0, 2, 0, 3, 0, 4, 4, 5, 4 }) ==
		    MIGRATE_NEWER_COMPATIBLE && b == 0,
	    "schema 5 compatible_from 4, binary 4: newer, compatible");
	CHECK(judge(4, &b, 5, (int[]){ 1, 0, 2, 0, 3, 0, 4, 4, 5, 5 }) ==
		    MIGRATE_NEWER_INCOMPATIBLE && b == 5,
	    "schema 5 compatible_from 5, binary 4: not servable, by 5");
	CHECK(judge(4, &b, 5, (int[]){ 1, 0, 2, 0, 3, 0, 4, 4, 5, 0 }) ==
		    MIGRATE_NEWER_INCOMPATIBLE && b == 5,
	    "schema 5 unrecorded (NULL: its own version), binary 4: not "
	    "servable");
	CHECK(judge(4, &b, 6,
		  (int[]){ 1, 0, 2, 0, 3, 0, 4, 4, 5, 4, 6, 5 }) ==
		    MIGRATE_NEWER_INCOMPATIBLE && b == 6,
	    "5 compatible but 6 not: the first blocker, 6");
	CHECK(judge(4, &b, 6,
		  (int[]){ 6, 3, 5, 4, 1, 0, 2, 0, 3, 0, 4, 4 }) ==
		MIGRATE_NEWER_COMPATIBLE,
	    "rows in any order; every newer one declares <= 4");
	CHECK(judge(3, &b, 6,
		  (int[]){ 1, 0, 2, 0, 3, 0, 4, 2, 5, 3, 6, 3 }) ==
		MIGRATE_NEWER_COMPATIBLE,
	    "binary 3 serves three newer compatible migrations");
	CHECK(judge(3, &b, 6,
		  (int[]){ 1, 0, 2, 0, 3, 0, 4, 4, 5, 3, 6, 3 }) ==
		    MIGRATE_NEWER_INCOMPATIBLE && b == 4,
	    "an incompatible one between compatible ones blocks (4)");
	CHECK(judge(5, &b, 5, (int[]){ 1, 0, 2, 0, 3, 0, 4, 4, 5, 4 }) ==
		MIGRATE_CURRENT,
	    "old migrations' declarations do not matter to a newer binary");
	CHECK(judge(4, NULL, 5, (int[]){ 1, 0, 2, 0, 3, 0, 4, 4, 5, 4 }) ==
		MIGRATE_NEWER_COMPATIBLE,
	    "blocker may be NULL");
}

static void
test_backoff(void)
{
	long lo, hi, v, prev_hi = 0;
	int a, mono = 1, capped = 1;

	CHECK(migrate_backoff_ms(0, 0) == 500, "first retry: 500 ms at most");
	CHECK(migrate_backoff_ms(0, UINT32_MAX) >= 250,
	    "first retry: 250 ms at least");
	CHECK(migrate_backoff_ms(1, 0) == 1000 && migrate_backoff_ms(2, 0) ==
		2000,
	    "doubling: 1 s, 2 s");
	CHECK(migrate_backoff_ms(6, 0) == 30000 &&
		migrate_backoff_ms(1000, 0) == 30000 &&
		migrate_backoff_ms(1000, UINT32_MAX) >= 15000,
	    "capped at 30 s, jittered within its upper half");
	for (a = 0; a < 40; a++) {
		lo = hi = migrate_backoff_ms(a, 0);
		for (uint32_t r = 1; r < 5000; r += 37) {
			v = migrate_backoff_ms(a, r * 2654435761u);
			if (v < lo)
				lo = v;
			if (v > hi)
				hi = v;
		}
		if (hi < prev_hi)
			mono = 0;
		if (hi > 30000 || lo * 2 < hi)
			capped = 0;
		prev_hi = hi;
	}
	CHECK(mono, "the upper bound never shrinks as tries go on");
	CHECK(capped, "every delay is at most 30 s and at least half its bound");
}

int
main(void)
{
	test_parser();
	test_embedded();
	test_rule();
	test_backoff();
	return test_done();
}
