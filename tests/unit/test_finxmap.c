/*
 * Unit tests for the finX JSON to row mapping (server/finxmap.c): exact
 * decimal text of amounts (never through a double), ISO-8601 timestamps
 * as finX sends them, and accounts and transactions with missing fields,
 * nulls, wrong types, unicode and long texts.  No I/O.
 */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "finxmap.h"
#include "mem.h"
#include "test.h"

/* finxmap_decimal of the JSON text j as json-c parses it; "(null)" when
 * refused.  Caller frees. */
static char *
dec(const char *j)
{
	json_object *v = json_tokener_parse(j);
	char *s;

	if (v == NULL && strcmp(j, "null") != 0)
		return xstrdup("(unparsable)");
	s = finxmap_decimal(v);
	json_object_put(v);
	return s ? s : xstrdup("(null)");
}

static void
check_dec(const char *json, const char *want)
{
	char *got = dec(json);

	CHECK(strcmp(got, want) == 0, "decimal %s -> %s (got %s)", json, want,
	    got);
	free(got);
}

static void
test_decimal(void)
{
	json_object *s;
	char *d;

	check_dec("-0.01", "-0.01");
	check_dec("1e2", "1e2");
	check_dec("12345678901234.56", "12345678901234.56");
	check_dec("0", "0");
	check_dec("-0", "0");
	check_dec("1E-2", "1E-2");
	check_dec("100", "100");
	check_dec("-17.89", "-17.89");
	check_dec("13.37", "13.37");
	check_dec("0.1", "0.1"); /* a double would print 0.1000000000000000055 */
	check_dec("1.5e+3", "1.5e+3");
	check_dec("9007199254740993.01", "9007199254740993.01"); /* > 2^53 */
	check_dec("-9223372036854775807", "-9223372036854775807");
	/* json-c saturates integers it cannot hold: refused, not clipped */
	check_dec("99999999999999999999", "(null)");
	check_dec("-99999999999999999999", "(null)");
	check_dec("18446744073709551615", "(null)");
	/* out of bounds: exponent beyond +-30, more than 40 digits */
	check_dec("1e400", "(null)");
	check_dec("-1e400", "(null)");
	check_dec("1e-400", "(null)");
	check_dec("1e31", "(null)");
	check_dec("1e30", "1e30");
	check_dec("12345678901234567890123456789012345678901.5", "(null)");
	/* strings holding a number are taken as finX sometimes sends them */
	check_dec("\"13.37\"", "13.37");
	check_dec("\"-0.01\"", "-0.01");
	check_dec("\"abc\"", "(null)");
	check_dec("\"\"", "(null)");
	check_dec("\"1.\"", "(null)");
	check_dec("\".5\"", "(null)");
	check_dec("\"1e\"", "(null)");
	check_dec("\"1e2x\"", "(null)");
	check_dec("\" 1\"", "(null)");
	check_dec("\"NaN\"", "(null)");
	check_dec("\"Infinity\"", "(null)");
	check_dec("true", "(null)");
	check_dec("false", "(null)");
	check_dec("null", "(null)");
	check_dec("{\"amount\":1}", "(null)");
	check_dec("[1]", "(null)");
	/* a string with an embedded NUL stops at it and is refused whole */
	s = json_object_new_string_len("1\0002", 3);
	d = finxmap_decimal(s);
	CHECK(d == NULL, "decimal of \"1\\u00002\" refused, not read as 1");
	free(d);
	json_object_put(s);
	CHECK(finxmap_decimal(NULL) == NULL, "decimal of NULL is NULL");
}

static void
check_ts(const char *in, const char *want)
{
	char *got = finxmap_timestamp(in);

	if (want == NULL)
		CHECK(got == NULL, "timestamp \"%s\" refused (got %s)",
		    in ? in : "NULL", got ? got : "NULL");
	else
		CHECK(got != NULL && strcmp(got, want) == 0,
		    "timestamp \"%s\" -> %s (got %s)", in, want,
		    got ? got : "NULL");
	free(got);
}

static void
test_timestamp(void)
{
	check_ts("2018-04-01T00:00:00Z", "2018-04-01T00:00:00Z");
	check_ts("2018-04-01T00:00:00.000Z", "2018-04-01T00:00:00.000Z");
	check_ts("2024-08-29T09:36:33.079349+00:00",
	    "2024-08-29T09:36:33.079349+00:00");
	check_ts("2024-08-29T09:36:33+01:00", "2024-08-29T09:36:33+01:00");
	check_ts("2024-08-29T09:36:33-05:30", "2024-08-29T09:36:33-05:30");
	check_ts("2024-08-29T09:36:33+0100", "2024-08-29T09:36:33+0100");
	check_ts("2024-08-29T09:36:33.5+0100", "2024-08-29T09:36:33.5+0100");
	check_ts("2024-08-29 09:36:33Z", "2024-08-29 09:36:33Z");
	/* a date only: UTC midnight */
	check_ts("2013-04-11", "2013-04-11T00:00:00Z");
	/* no zone: finX means UTC, never the server's zone */
	check_ts("2013-04-11T12:00:00", "2013-04-11T12:00:00Z");
	check_ts("2013-04-11T12:00:00.123", "2013-04-11T12:00:00.123Z");
	check_ts("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z");
	check_ts("2000-02-29", "2000-02-29T00:00:00Z");
	check_ts("2016-12-31T23:59:60Z", "2016-12-31T23:59:60Z");
	check_ts("2024-01-01T00:00:00.123456789Z",
	    "2024-01-01T00:00:00.123456789Z");
	/* refused */
	check_ts(NULL, NULL);
	check_ts("", NULL);
	check_ts("garbage", NULL);
	check_ts("yesterday at noon", NULL);
	check_ts("2013-04-1", NULL);
	check_ts("2013/04/11", NULL);
	check_ts("20130411T120000Z", NULL);
	check_ts("2013-04-11T12:00Z", NULL);
	check_ts("2013-04-11T12:00:00.Z", NULL);
	check_ts("2013-04-11T12:00:00.1234567890Z", NULL); /* 10 digits */
	check_ts("2013-04-11T12:00:00+1", NULL);
	check_ts("2013-04-11T12:00:00+01:0", NULL);
	check_ts("2013-04-11T12:00:00+01:00 ", NULL);
	check_ts("2013-04-11T12:00:00ZZ", NULL);
	check_ts("2013-04-11T12:00:00 UTC", NULL);
	check_ts("2013-04-11X12:00:00Z", NULL);
	check_ts("2013-04-11 ", NULL);
	/* fields out of range (PostgreSQL would refuse the whole pull) */
	check_ts("2026-02-30", NULL);
	check_ts("2023-02-29T00:00:00Z", NULL);
	check_ts("1900-02-29", NULL);
	check_ts("2026-13-01", NULL);
	check_ts("2026-00-10", NULL);
	check_ts("2026-04-31T00:00:00Z", NULL);
	check_ts("2026-01-00", NULL);
	check_ts("0000-01-01", NULL);
	check_ts("2026-01-01T24:00:01Z", NULL);
	check_ts("2026-01-01T12:60:00Z", NULL);
	check_ts("2026-01-01T12:00:61Z", NULL);
	check_ts("2026-01-01T12:00:00+16:00", NULL);
	check_ts("2026-01-01T12:00:00+01:60", NULL);
	check_ts("2026-01-01T12:00:00+1600", NULL);
}

static json_object *
obj(const char *j)
{
	json_object *o = json_tokener_parse(j);

	if (o == NULL) {
		printf("Bail out! test JSON does not parse: %.60s\n", j);
		exit(1);
	}
	return o;
}

/* Map the transaction JSON j; the reason on failure in *why. */
static bool
txn(const char *j, struct txn_row *t, const char **why)
{
	json_object *o = obj(j);
	bool ok = finxmap_transaction(o, t, why);

	json_object_put(o);
	return ok;
}

static bool
acct(const char *j, struct account_row *a, const char **why)
{
	json_object *o = obj(j);
	bool ok = finxmap_account(o, a, why);

	json_object_put(o);
	return ok;
}

static bool
eq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

#define T_MIN "\"transaction_id\":\"T1.1.25\",\"account_id\":\"A1.1\""

static void
test_transaction(void)
{
	struct txn_row t;
	const char *why;
	char *big, *j;
	json_object *o, *raw;
	bool ok;

	/* the full example of finx-api.md 4.3 */
	ok = txn("{" T_MIN ",\"name\":\"Rogers Shipping, Inc.\","
		 "\"account_number\":\"4711951501\",\"bank_code\":\"90090042\","
		 "\"iban\":\"DE67900900424711951501\",\"bic\":\"DEMODE01XXX\","
		 "\"amount\":-17.89,\"currency\":\"EUR\","
		 "\"booking_date\":\"2013-04-11T12:00:00.000Z\","
		 "\"value_date\":\"2013-04-12T12:00:00.000Z\","
		 "\"purpose\":\"Ihre Sendung 0815\",\"type\":\"Transfer\","
		 "\"booking_text\":\"Ueberweisung\",\"booked\":false,"
		 "\"categories\":[{\"id\":150,\"parent_id\":null,"
		 "\"name\":\"Lebenshaltung\"}],\"visited\":true,"
		 "\"additional_info\":{\"x\":1.10}}",
	    &t, &why);
	CHECK(ok, "full transaction maps (%s)", ok ? "-" : why);
	if (ok) {
		CHECK(eq(t.finx_id, "T1.1.25") && eq(t.finx_account_id, "A1.1"),
		    "ids kept");
		CHECK(eq(t.amount, "-17.89"), "amount -17.89 (got %s)",
		    t.amount ? t.amount : "NULL");
		CHECK(eq(t.currency, "EUR"), "currency");
		CHECK(eq(t.booking_date, "2013-04-11T12:00:00.000Z") &&
		        eq(t.value_date, "2013-04-12T12:00:00.000Z"),
		    "booking and value dates");
		CHECK(!t.booked, "booked false means pending");
		CHECK(eq(t.name, "Rogers Shipping, Inc.") &&
		        eq(t.iban, "DE67900900424711951501") &&
		        eq(t.bic, "DEMODE01XXX"),
		    "counterparty name, iban, bic");
		CHECK(eq(t.purpose, "Ihre Sendung 0815") &&
		        eq(t.type, "Transfer") &&
		        eq(t.booking_text, "Ueberweisung"),
		    "purpose, type, booking_text");
		/* raw keeps the fields finxd does not model, number text too */
		raw = t.raw ? json_tokener_parse(t.raw) : NULL;
		CHECK(raw != NULL &&
		        json_object_object_get_ex(raw, "categories", NULL) &&
		        json_object_object_get_ex(raw, "visited", NULL) &&
		        json_object_object_get_ex(raw, "account_number", NULL),
		    "raw JSON keeps unmodelled fields");
		CHECK(t.raw && strstr(t.raw, "-17.89") != NULL &&
		        strstr(t.raw, "1.10") != NULL,
		    "raw JSON keeps the numbers' text");
		json_object_put(raw);
	}
	txn_row_free(&t);

	/* the minimum: ids, amount, currency; booked missing -> true */
	ok = txn("{" T_MIN ",\"amount\":1e2,\"currency\":\"EUR\"}", &t, &why);
	CHECK(ok && t.booked, "minimal transaction maps, booked defaults true");
	CHECK(ok && eq(t.amount, "1e2"), "amount 1e2 kept as text");
	CHECK(ok && t.booking_date == NULL && t.value_date == NULL &&
	        t.name == NULL && t.iban == NULL && t.bic == NULL &&
	        t.purpose == NULL && t.type == NULL && t.booking_text == NULL,
	    "missing optional fields are NULL");
	txn_row_free(&t);

	/* nulls everywhere optional */
	ok = txn("{" T_MIN ",\"amount\":12345678901234.56,\"currency\":\"EUR\","
		 "\"booking_date\":null,\"value_date\":null,\"name\":null,"
		 "\"iban\":null,\"bic\":null,\"purpose\":null,\"type\":null,"
		 "\"booking_text\":null,\"booked\":null}",
	    &t, &why);
	CHECK(ok && t.booked && t.name == NULL && t.booking_date == NULL,
	    "nulls map to NULL, booked null -> true (%s)", ok ? "-" : why);
	CHECK(ok && eq(t.amount, "12345678901234.56"),
	    "amount 12345678901234.56 exact");
	txn_row_free(&t);

	ok = txn("{" T_MIN ",\"amount\":-0.01,\"currency\":\"EUR\","
		 "\"booked\":true}",
	    &t, &why);
	CHECK(ok && t.booked && eq(t.amount, "-0.01"),
	    "booked true, amount -0.01");
	txn_row_free(&t);
	ok = txn("{" T_MIN ",\"amount\":\"-0.01\",\"currency\":\"EUR\"}", &t,
	    &why);
	CHECK(ok && eq(t.amount, "-0.01"), "amount as a string");
	txn_row_free(&t);

	/* required fields */
	CHECK(!txn("{\"account_id\":\"A1.1\",\"amount\":1,\"currency\":\"EUR\"}",
		  &t, &why) && why != NULL,
	    "missing transaction_id refused (%s)", why ? why : "-");
	CHECK(!txn("{\"transaction_id\":\"T1\",\"amount\":1,\"currency\":"
		   "\"EUR\"}",
		  &t, &why),
	    "missing account_id refused");
	CHECK(!txn("{" T_MIN ",\"currency\":\"EUR\"}", &t, &why),
	    "missing amount refused");
	CHECK(!txn("{" T_MIN ",\"amount\":null,\"currency\":\"EUR\"}", &t,
		  &why),
	    "null amount refused");
	CHECK(!txn("{" T_MIN ",\"amount\":\"abc\",\"currency\":\"EUR\"}", &t,
		  &why),
	    "amount \"abc\" refused");
	CHECK(!txn("{" T_MIN ",\"amount\":true,\"currency\":\"EUR\"}", &t,
		  &why),
	    "amount true refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1e400,\"currency\":\"EUR\"}", &t,
		  &why),
	    "amount 1e400 refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1}", &t, &why),
	    "missing currency refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":null}", &t, &why),
	    "null currency refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EURO\"}", &t, &why),
	    "currency of 4 letters refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":978}", &t, &why),
	    "numeric currency refused");
	CHECK(!txn("{\"transaction_id\":\"\",\"account_id\":\"A1.1\","
		   "\"amount\":1,\"currency\":\"EUR\"}",
		  &t, &why),
	    "empty transaction_id refused");
	CHECK(!txn("{\"transaction_id\":42,\"account_id\":\"A1.1\","
		   "\"amount\":1,\"currency\":\"EUR\"}",
		  &t, &why),
	    "numeric transaction_id refused");
	CHECK(!txn("{\"transaction_id\":\"T\\n1\",\"account_id\":\"A1.1\","
		   "\"amount\":1,\"currency\":\"EUR\"}",
		  &t, &why),
	    "transaction_id with a control character refused");
	j = xasprintf("{\"transaction_id\":\"%0256d\",\"account_id\":\"A\","
		      "\"amount\":1,\"currency\":\"EUR\"}",
	    7);
	CHECK(!txn(j, &t, &why), "transaction_id of 256 bytes refused");
	free(j);
	j = xasprintf("{\"transaction_id\":\"%0255d\",\"account_id\":\"A\","
		      "\"amount\":1,\"currency\":\"EUR\"}",
	    7);
	CHECK(txn(j, &t, &why), "transaction_id of 255 bytes kept");
	txn_row_free(&t);
	free(j);

	/* wrong types */
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"booked\":\"yes\"}",
		  &t, &why),
	    "booked as a string refused (%s)", why ? why : "-");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"booked\":1}",
		  &t, &why),
	    "booked as a number refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"purpose\":12}",
		  &t, &why),
	    "purpose as a number refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"name\":{\"x\":1}}",
		  &t, &why),
	    "name as an object refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"booking_date\":\"yesterday\"}",
		  &t, &why),
	    "booking_date garbage refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"value_date\":\"2026-02-30\"}",
		  &t, &why),
	    "value_date 2026-02-30 refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"booking_date\":20130411}",
		  &t, &why),
	    "booking_date as a number refused");
	o = json_object_new_array();
	CHECK(!finxmap_transaction(o, &t, &why) && why != NULL,
	    "an array is not a transaction");
	json_object_put(o);

	/* unicode */
	ok = txn("{" T_MIN ",\"amount\":-4.2,\"currency\":\"EUR\","
		 "\"name\":\"B\\u00e4ckerei M\\u00fcller GmbH\","
		 "\"purpose\":\"Gr\xc3\xbc\xc3\x9f" "e \\ud83d\\ude00 \xf0\x9f\x8d\x9e "
		 "\xe2\x82\xac 5\"}",
	    &t, &why);
	CHECK(ok && eq(t.name, "B\xc3\xa4" "ckerei M\xc3\xbcller GmbH"),
	    "umlauts kept as UTF-8 (%s)", ok ? "-" : why);
	CHECK(ok && eq(t.purpose, "Gr\xc3\xbc\xc3\x9f" "e \xf0\x9f\x98\x80 "
				  "\xf0\x9f\x8d\x9e \xe2\x82\xac 5"),
	    "emoji (escaped and raw) kept");
	CHECK(ok && t.raw && strstr(t.raw, "\xf0\x9f\x98\x80") != NULL,
	    "raw JSON holds the emoji as UTF-8");
	txn_row_free(&t);
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"purpose\":\"bad \xff byte\"}",
		  &t, &why),
	    "invalid UTF-8 in purpose refused");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"additional_info\":{\"x\":\"bad \xc3 byte\"}}",
		  &t, &why) && why != NULL,
	    "invalid UTF-8 in an unmodelled field refused (%s)",
	    why ? why : "-");
	CHECK(!txn("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		   "\"purpose\":\"a\\u0000b\"}",
		  &t, &why),
	    "NUL inside purpose refused");

	/* a 10 kB purpose is kept whole */
	big = xmalloc(10241);
	for (int i = 0; i < 10240; i++)
		big[i] = (char)('a' + i % 26);
	big[10240] = '\0';
	memcpy(big + 5000, "\xc3\xa4", 2); /* an umlaut in the middle */
	j = xasprintf("{" T_MIN ",\"amount\":1,\"currency\":\"EUR\","
		      "\"purpose\":\"%s\"}",
	    big);
	ok = txn(j, &t, &why);
	CHECK(ok && t.purpose && strlen(t.purpose) == 10240 &&
	        strcmp(t.purpose, big) == 0,
	    "10 kB purpose kept whole (%zu bytes)",
	    ok && t.purpose ? strlen(t.purpose) : 0);
	CHECK(ok && t.raw && strstr(t.raw, big) != NULL,
	    "10 kB purpose whole in raw JSON");
	txn_row_free(&t);
	free(j);
	free(big);
}

static void
test_account(void)
{
	struct account_row a;
	const char *why;
	bool ok;

	ok = acct("{\"account_id\":\"A12345.6\",\"access_id\":\"X12345.6\","
		  "\"account_number\":\"0013441006\",\"bank_code\":\"30030880\","
		  "\"iban\":\"DE93300308800013441006\",\"bic\":\"TUBDDEDD\","
		  "\"bank_name\":\"Bank XYZ\",\"icon\":{\"url\":\"x\"},"
		  "\"currency\":\"EUR\",\"balance\":{\"balance\":13.37,"
		  "\"balance_date\":\"2018-04-01T00:00:00.000Z\","
		  "\"status\":{\"message\":\"string\"}},"
		  "\"type\":\"Giro account\",\"name\":\"Giro account\","
		  "\"owner\":\"J\\u00fcrgen Sch\\u00e4fer\",\"auto_sync\":false}",
	    &a, &why);
	CHECK(ok, "the finx-api.md account maps (%s)", ok ? "-" : why);
	if (ok) {
		CHECK(eq(a.finx_id, "A12345.6") && eq(a.access_id, "X12345.6"),
		    "account and access ids");
		CHECK(eq(a.iban, "DE93300308800013441006") &&
		        eq(a.bic, "TUBDDEDD") && eq(a.name, "Giro account") &&
		        eq(a.type, "Giro account") && eq(a.currency, "EUR") &&
		        eq(a.bank_name, "Bank XYZ") &&
		        eq(a.account_number, "0013441006"),
		    "iban, bic, name, type, currency, bank, number");
		CHECK(eq(a.owner, "J\xc3\xbcrgen Sch\xc3\xa4" "fer"),
		    "owner with umlauts");
		CHECK(eq(a.balance, "13.37") && eq(a.balance_currency, "EUR") &&
		        eq(a.balance_date, "2018-04-01T00:00:00.000Z"),
		    "balance 13.37 EUR with date");
		CHECK(a.raw && strstr(a.raw, "\"icon\"") != NULL,
		    "raw JSON keeps the icon");
	}
	account_row_free(&a);

	/* a card: no iban/bic, no balance yet */
	ok = acct("{\"account_id\":\"A998944684550094849.1\",\"type\":"
		  "\"Credit card\",\"balance\":null,\"iban\":null}",
	    &a, &why);
	CHECK(ok && a.iban == NULL && a.bic == NULL && a.balance == NULL &&
	        a.balance_date == NULL && a.access_id == NULL,
	    "account without iban, bic, balance (%s)", ok ? "-" : why);
	account_row_free(&a);
	ok = acct("{\"account_id\":\"A1\",\"balance\":{\"balance\":null}}", &a,
	    &why);
	CHECK(ok && a.balance == NULL, "balance.balance null: no balance");
	account_row_free(&a);
	ok = acct("{\"account_id\":\"A1\",\"currency\":\"EUR\","
		  "\"balance\":{\"balance\":-0.01}}",
	    &a, &why);
	CHECK(ok && eq(a.balance, "-0.01") && a.balance_date == NULL,
	    "balance without date");
	account_row_free(&a);
	ok = acct("{\"account_id\":\"A1\",\"balance\":{\"balance\":100}}", &a,
	    &why);
	CHECK(ok && eq(a.balance, "100") && a.balance_currency == NULL,
	    "integer balance, no currency");
	account_row_free(&a);

	CHECK(!acct("{\"iban\":\"DE93300308800013441006\"}", &a, &why) &&
	        why != NULL,
	    "account without account_id refused (%s)", why ? why : "-");
	CHECK(!acct("{\"account_id\":null}", &a, &why), "null account_id");
	CHECK(!acct("{\"account_id\":7}", &a, &why), "numeric account_id");
	CHECK(!acct("{\"account_id\":\"A1\",\"name\":[1]}", &a, &why),
	    "name as an array refused");
	CHECK(!acct("{\"account_id\":\"A1\",\"balance\":{\"balance\":"
		    "\"lots\"}}",
		  &a, &why),
	    "balance \"lots\" refused");
	CHECK(!acct("{\"account_id\":\"A1\",\"balance\":{\"balance\":1,"
		    "\"balance_date\":\"soon\"}}",
		  &a, &why),
	    "bad balance_date refused");
	CHECK(!acct("{\"account_id\":\"A1\",\"balance\":{\"balance\":1,"
		    "\"balance_date\":7}}",
		  &a, &why),
	    "numeric balance_date refused");
	CHECK(!acct("[]", &a, &why), "an array is not an account");
}

int
main(void)
{
	test_decimal();
	test_timestamp();
	test_transaction();
	test_account();
	return test_done();
}
