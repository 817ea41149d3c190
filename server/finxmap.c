/*
 * Mapping finX accounts and transactions to rows.  finX may omit any
 * field or send null; only the ids, the amount and the currency of a
 * transaction are required (finx-api.md 4.3).  Text fields are bounded
 * and must be valid UTF-8 without NUL.
 */
#include "finxmap.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "text.h"

#define MAX_TEXT (64 * 1024)

/* Skip the digits at *p; how many there were. */
static int
skip_digits(const char **p)
{
	int n = 0;

	while (isdigit((unsigned char)**p)) {
		(*p)++;
		n++;
	}
	return n;
}

/*
 * s is a plain decimal: a sign ('+' only when plus_ok), digits, maybe a
 * fraction, maybe an exponent within +-30; at most 40 digits.
 */
static bool
decimal_text(const char *s, bool plus_ok)
{
	const char *p = s;
	int n;
	long exp = 0;

	if (*p == '-' || (*p == '+' && plus_ok))
		p++;
	if ((n = skip_digits(&p)) == 0)
		return false;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		n += skip_digits(&p);
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (!parse_long(p, -30, 30, &exp) &&
		    !(*p == '+' && parse_long(p + 1, 0, 30, &exp)))
			return false;
		p += strlen(p);
	}
	return *p == '\0' && n <= 40;
}

char *
finxmap_decimal(json_object *v)
{
	bool str = json_object_is_type(v, json_type_string);
	const char *s;

	if (v == NULL)
		return NULL;
	if (json_object_is_type(v, json_type_int)) {
		int64_t i = json_object_get_int64(v);

		/* json-c saturates integers it cannot hold: refuse them. */
		if (i == INT64_MAX || i == INT64_MIN)
			return NULL;
		return xasprintf("%lld", (long long)i);
	}
	if (!json_object_is_type(v, json_type_double) && !str)
		return NULL;
	/* For a parsed double json-c keeps the number's source text. */
	s = str ? json_object_get_string(v)
		: json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
	/* "1\u00002" must not read as 1. */
	if (str && (size_t)json_object_get_string_len(v) != strlen(s))
		return NULL;
	if (!decimal_text(s, str))
		return NULL;
	return xstrdup(s);
}

static bool
digits(const char *s, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* Two or four digits at s as a number (already checked to be digits). */
static int
num2(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/*
 * A real calendar day: PostgreSQL refuses 2026-02-30 or month 13, and one
 * such row would fail the whole pull, so it must be refused here.
 */
static bool
valid_day(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };
	int y = num2(s) * 100 + num2(s + 2), m = num2(s + 5), d = num2(s + 8);
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	if (y < 1 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	return !(m == 2 && d == 29 && !leap);
}

char *
finxmap_timestamp(const char *s)
{
	const char *p;
	int frac = 0;

	if (s == NULL || strlen(s) < 10 || !digits(s, 4) || s[4] != '-' ||
	    !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2) ||
	    !valid_day(s))
		return NULL;
	if (s[10] == '\0')
		return xasprintf("%sT00:00:00Z", s); /* a date: UTC midnight */
	if ((s[10] != 'T' && s[10] != ' ') || strlen(s) < 19 ||
	    !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) ||
	    s[16] != ':' || !digits(s + 17, 2))
		return NULL;
	/* 60 seconds: a leap second, which PostgreSQL accepts. */
	if (num2(s + 11) > 23 || num2(s + 14) > 59 || num2(s + 17) > 60)
		return NULL;
	p = s + 19;
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)p[frac]))
			frac++;
		if (frac == 0 || frac > 9)
			return NULL;
		p += frac;
	}
	if (strcmp(p, "Z") == 0 || strcmp(p, "z") == 0)
		return xstrdup(s);
	/* Offsets up to 15:59, the most PostgreSQL takes. */
	if ((*p == '+' || *p == '-') && strlen(p) == 6 && digits(p + 1, 2) &&
	    p[3] == ':' && digits(p + 4, 2) && num2(p + 1) <= 15 &&
	    num2(p + 4) <= 59)
		return xstrdup(s);
	if ((*p == '+' || *p == '-') && strlen(p) == 5 && digits(p + 1, 4) &&
	    num2(p + 1) <= 15 && num2(p + 3) <= 59)
		return xstrdup(s);
	/* No zone: finX means UTC; never guess the server's zone. */
	if (*p == '\0')
		return xasprintf("%sZ", s);
	return NULL;
}

/* Optional string field: NULL when absent or null; false on a bad value. */
static bool
opt_text(json_object *o, const char *key, char **out)
{
	json_object *v;
	const char *s;
	size_t n;

	*out = NULL;
	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return true;
	if (!json_object_is_type(v, json_type_string))
		return false;
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n > MAX_TEXT || strlen(s) != n || !utf8_valid(s, n))
		return false;
	*out = xstrdup(s);
	return true;
}

/* An id: required, 1..255 bytes, no control characters. */
static bool
req_id(json_object *o, const char *key, char **out)
{
	if (!opt_text(o, key, out) || *out == NULL)
		return false;
	if (**out == '\0' || strlen(*out) > 255 ||
	    has_ctl(*out, strlen(*out))) {
		free(*out);
		*out = NULL;
		return false;
	}
	return true;
}

/*
 * The object as JSON text, or NULL when it is not valid UTF-8: json-c
 * passes invalid bytes inside strings through, and jsonb would refuse the
 * row and with it the whole pull.
 */
static char *
raw_text(json_object *o)
{
	const char *s = json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	if (s == NULL || !utf8_valid(s, strlen(s)))
		return NULL;
	return xstrdup(s);
}

bool
finxmap_account(json_object *o, struct account_row *r, const char **why)
{
	json_object *bal, *v;

	memset(r, 0, sizeof(*r));
	*why = NULL;
	if (!json_object_is_type(o, json_type_object))
		*why = "account is not an object";
	else if (!req_id(o, "account_id", &r->finx_id))
		*why = "account_id missing or invalid";
	else if (!opt_text(o, "access_id", &r->access_id) ||
	    !opt_text(o, "iban", &r->iban) || !opt_text(o, "bic", &r->bic) ||
	    !opt_text(o, "name", &r->name) || !opt_text(o, "type", &r->type) ||
	    !opt_text(o, "currency", &r->currency) ||
	    !opt_text(o, "owner", &r->owner) ||
	    !opt_text(o, "bank_name", &r->bank_name) ||
	    !opt_text(o, "account_number", &r->account_number))
		*why = "account has a field of the wrong type";
	if (*why == NULL && json_object_object_get_ex(o, "balance", &bal) &&
	    json_object_is_type(bal, json_type_object) &&
	    json_object_object_get_ex(bal, "balance", &v) && v != NULL) {
		char *date = NULL;

		if ((r->balance = finxmap_decimal(v)) == NULL)
			*why = "balance is not a decimal number";
		else if (!opt_text(bal, "balance_date", &date))
			*why = "balance_date is not a string";
		else if (date != NULL &&
		    (r->balance_date = finxmap_timestamp(date)) == NULL)
			*why = "balance_date is not an ISO-8601 timestamp";
		free(date);
		if (r->currency)
			r->balance_currency = xstrdup(r->currency);
	}
	if (*why == NULL && (r->raw = raw_text(o)) == NULL)
		*why = "account JSON is not valid UTF-8";
	if (*why != NULL) {
		account_row_free(r);
		return false;
	}
	return true;
}

/* The fields of transaction o into r: NULL, or why it is refused. */
static const char *
txn_fields(json_object *o, struct txn_row *r)
{
	const char *why = NULL;
	char *bd = NULL, *vd = NULL;
	json_object *v;

	if (!json_object_is_type(o, json_type_object))
		why = "transaction is not an object";
	else if (!req_id(o, "transaction_id", &r->finx_id))
		why = "transaction_id missing or invalid";
	else if (!req_id(o, "account_id", &r->finx_account_id))
		why = "account_id missing or invalid";
	else if (!json_object_object_get_ex(o, "amount", &v) ||
	    (r->amount = finxmap_decimal(v)) == NULL)
		why = "amount missing or not a decimal number";
	else if (!opt_text(o, "currency", &r->currency) || r->currency == NULL ||
	    strlen(r->currency) != 3)
		why = "currency missing or not a 3-letter code";
	else if (!opt_text(o, "booking_date", &bd) ||
	    !opt_text(o, "value_date", &vd) || !opt_text(o, "name", &r->name) ||
	    !opt_text(o, "iban", &r->iban) || !opt_text(o, "bic", &r->bic) ||
	    !opt_text(o, "purpose", &r->purpose) ||
	    !opt_text(o, "type", &r->type) ||
	    !opt_text(o, "booking_text", &r->booking_text))
		why = "transaction has a field of the wrong type";
	else if (bd != NULL && (r->booking_date = finxmap_timestamp(bd)) == NULL)
		why = "booking_date is not an ISO-8601 timestamp";
	else if (vd != NULL && (r->value_date = finxmap_timestamp(vd)) == NULL)
		why = "value_date is not an ISO-8601 timestamp";
	free(bd);
	free(vd);
	return why;
}

/* finX: booked false means pending; absent means booked. */
static const char *
txn_booked(json_object *o, struct txn_row *r)
{
	json_object *v;

	r->booked = true;
	if (!json_object_object_get_ex(o, "booked", &v) || v == NULL)
		return NULL;
	if (!json_object_is_type(v, json_type_boolean))
		return "booked is not a boolean";
	r->booked = json_object_get_boolean(v);
	return NULL;
}

bool
finxmap_transaction(json_object *o, struct txn_row *r, const char **why)
{
	memset(r, 0, sizeof(*r));
	if ((*why = txn_fields(o, r)) == NULL)
		*why = txn_booked(o, r);
	if (*why == NULL && (r->raw = raw_text(o)) == NULL)
		*why = "transaction JSON is not valid UTF-8";
	if (*why != NULL) {
		txn_row_free(r);
		return false;
	}
	return true;
}

void
account_row_free(struct account_row *r)
{
	free(r->finx_id);
	free(r->access_id);
	free(r->iban);
	free(r->bic);
	free(r->name);
	free(r->type);
	free(r->currency);
	free(r->owner);
	free(r->bank_name);
	free(r->account_number);
	free(r->balance);
	free(r->balance_currency);
	free(r->balance_date);
	free(r->raw);
	memset(r, 0, sizeof(*r));
}

void
txn_row_free(struct txn_row *r)
{
	free(r->finx_id);
	free(r->finx_account_id);
	free(r->amount);
	free(r->currency);
	free(r->booking_date);
	free(r->value_date);
	free(r->name);
	free(r->iban);
	free(r->bic);
	free(r->purpose);
	free(r->type);
	free(r->booking_text);
	free(r->raw);
	memset(r, 0, sizeof(*r));
}
