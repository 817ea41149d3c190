/*
 * Unit tests for the one status model: the table of status.c (a row for
 * every value, codes unique), the SQLSTATE classification of db.c
 * (db_classify) and the mappings of database and finX failures to a
 * status.  No network, no database.
 */
#include <stdbool.h>
#include <string.h>

#include "db.h"
#include "status.h"
#include "test.h"

static void test_classify(void);
static void test_rows(void);
static void test_codes_unique(void);
static void test_of_db(void);
static bool finx_maps(bool transport, long http, enum status want);
static void test_of_finx(void);

int
main(void)
{
	test_classify();
	test_rows();
	test_codes_unique();
	test_of_db();
	test_of_finx();
	return test_done();
}

static void
test_classify(void)
{
	static const struct {
		const char *state;
		enum db_fail want;
	} cases[] = {
		{ "23505", DBF_CONFLICT },
		{ "22007", DBF_BAD_INPUT },
		{ "22008", DBF_BAD_INPUT },
		{ "22003", DBF_BAD_INPUT },
		{ "22P02", DBF_BAD_INPUT },
		{ "40001", DBF_RETRY },
		{ "40P01", DBF_RETRY },
		{ "08006", DBF_UNAVAILABLE },
		{ "57P01", DBF_UNAVAILABLE },
		{ "57014", DBF_UNAVAILABLE },
		{ "", DBF_UNAVAILABLE },
		{ "42P01", DBF_FAILED },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(db_classify(cases[i].state) == cases[i].want,
		    "db_classify(\"%s\") is %d", cases[i].state,
		    (int)cases[i].want);
	CHECK(db_classify(NULL) == DBF_UNAVAILABLE,
	    "db_classify(NULL) is DBF_UNAVAILABLE");
}

static void
test_rows(void)
{
	const struct status_row *row;
	int s;

	for (s = 0; s < ST_COUNT; s++) {
		row = status_row((enum status)s);
		CHECK(row != NULL && row->code != NULL && row->code[0] != '\0',
		    "status %d has a code", s);
		CHECK(row != NULL && row->message != NULL,
		    "status %d has a message", s);
		CHECK(row != NULL && row->http >= 200 && row->http <= 599,
		    "status %d has an HTTP status in 200..599 (%u)", s,
		    row != NULL ? row->http : 0);
	}
	CHECK(status_row(ST_OK)->http == 200, "ST_OK is 200");
	CHECK(status_row(ST_COUNT) == status_row(ST_INTERNAL),
	    "a value out of range reads as ST_INTERNAL");
	CHECK(status_row(ST_UNAUTHORIZED)->http == 401 &&
		strcmp(status_row(ST_UNAUTHORIZED)->code, "unauthorized") == 0,
	    "ST_UNAUTHORIZED is 401 unauthorized");
	CHECK(status_row(ST_METHOD_NOT_ALLOWED)->http == 405,
	    "ST_METHOD_NOT_ALLOWED is 405");
	CHECK(status_row(ST_PAYLOAD_TOO_LARGE)->http == 413,
	    "ST_PAYLOAD_TOO_LARGE is 413");
}

static void
test_codes_unique(void)
{
	int s, t;
	bool unique;

	for (s = 0; s < ST_COUNT; s++) {
		unique = true;
		for (t = 0; t < ST_COUNT; t++)
			if (t != s && strcmp(status_row((enum status)s)->code,
					  status_row((enum status)t)->code) == 0)
				unique = false;
		CHECK(unique, "the code of status %d (%s) is unique", s,
		    status_row((enum status)s)->code);
	}
}

static void
test_of_db(void)
{
	CHECK(status_of_db(DBF_CONFLICT) == ST_CONFLICT,
	    "a conflict is ST_CONFLICT");
	CHECK(status_of_db(DBF_BAD_INPUT) == ST_INVALID_PARAMETER,
	    "a refused value is ST_INVALID_PARAMETER");
	CHECK(status_of_db(DBF_UNAVAILABLE) == ST_DB_UNAVAILABLE,
	    "no connection is ST_DB_UNAVAILABLE");
	CHECK(status_of_db(DBF_RETRY) == ST_DB_UNAVAILABLE,
	    "retries exhausted is ST_DB_UNAVAILABLE");
	CHECK(status_of_db(DBF_FAILED) == ST_DB_UNAVAILABLE,
	    "any other failure is ST_DB_UNAVAILABLE");
}

static bool
finx_maps(bool transport, long http, enum status want)
{
	struct finx_error e;

	memset(&e, 0, sizeof(e));
	e.transport = transport;
	e.http_status = http;
	return status_of_finx(&e) == want;
}

static void
test_of_finx(void)
{
	static const long unavailable[] = { 429, 502, 503, 504 };
	static const long refused[] = { 500, 400, 401, 404 };
	size_t i;

	CHECK(finx_maps(true, 0, ST_FINX_UNAVAILABLE),
	    "a transport failure is ST_FINX_UNAVAILABLE");
	for (i = 0; i < sizeof(unavailable) / sizeof(unavailable[0]); i++)
		CHECK(finx_maps(false, unavailable[i], ST_FINX_UNAVAILABLE),
		    "finX %ld is ST_FINX_UNAVAILABLE", unavailable[i]);
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		CHECK(finx_maps(false, refused[i], ST_FINX_ERROR),
		    "finX %ld is ST_FINX_ERROR", refused[i]);
	CHECK(status_row(ST_FINX_UNAVAILABLE)->http == 503,
	    "finX unavailable answers 503");
	CHECK(status_row(ST_FINX_ERROR)->http == 502, "finX refusing answers 502");
}
