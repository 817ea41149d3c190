/*
 * finX JSON to database rows (finx-api.md section 4).  Pure functions: no
 * I/O, unit-tested and fuzzed.  Amounts keep the exact decimal text of
 * the JSON number; a binary double never touches money.
 */
#ifndef FINXD_FINXMAP_H
#define FINXD_FINXMAP_H

#include <stdbool.h>
#include <json-c/json.h>

/*
 * The exact decimal text of a JSON number (or numeric string) for
 * PostgreSQL's numeric: "-0.01", "1e2", "12345678901234.56".  NULL when v
 * is not a plain finite number within sane bounds (at most 40 digits,
 * exponent within +-30).  Caller frees.
 */
char *finxmap_decimal(json_object *v);

/*
 * An ISO-8601 timestamp accepted by finX ("...Z", "+hh:mm", 0-6
 * fractional digits, or a plain date) normalised to text PostgreSQL reads
 * as timestamptz.  NULL when malformed.  Caller frees.
 */
char *finxmap_timestamp(const char *s);

struct account_row {
	char *finx_id, *access_id, *iban, *bic, *name, *type, *currency;
	char *owner, *bank_name, *account_number;
	char *balance, *balance_currency, *balance_date; /* may be NULL */
	char *raw; /* the JSON object as text */
};

struct txn_row {
	char *finx_id, *finx_account_id, *amount, *currency;
	char *booking_date, *value_date; /* normalised, may be NULL */
	bool booked;
	char *name, *iban, *bic, *purpose, *type, *booking_text;
	char *raw;
};

/* Map one account / transaction object; false with *why (static). */
bool finxmap_account(json_object *o, struct account_row *out,
    const char **why);
bool finxmap_transaction(json_object *o, struct txn_row *out,
    const char **why);
void account_row_free(struct account_row *r);
void txn_row_free(struct txn_row *r);

#endif
