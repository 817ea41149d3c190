/*
 * Control calls that change a user's bank data the way a bank would:
 * book pending transactions (under the same id or a new one), add new
 * ones, correct an amount, a purpose text or a booking date, and drop a
 * pending one.  The next /rest read shows the change.  Amounts are exact
 * decimal text turned into integer cents, never a double.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx_data.h"
#include "sbx_handlers.h"

#define BANK_ADD_MAX 1000
#define BANK_PURPOSE_MAX 2000

/* One transaction to add, or the fields of a correction. */
struct bank_spec {
	const char *account_id; /* NULL: the first account */
	bool has_amount;
	int64_t cents;
	const char *purpose; /* NULL: unchanged, or the generated text */
	bool booked;
	bool has_date;
	int64_t booking_s;
};

static enum MHD_Result
bank_fail(struct sbx_req *r, unsigned int status, const char *msg)
{
	int code = status == MHD_HTTP_NOT_FOUND ? 1002
	    : status == MHD_HTTP_CONFLICT       ? 1001
	                                        : 1000;

	return http_reply_error(r, status, code, "Invalid request", msg, NULL);
}

/* A non-empty string member (borrowed) or NULL. */
static const char *
bank_str(json_object *in, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(in, key, &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0)
		return NULL;
	return json_object_get_string(v);
}

/* amount: a JSON number or string of exact decimal text; its source
 * text is parsed, never its double. */
static bool
bank_amount(json_object *v, int64_t *ret)
{
	if (!json_object_is_type(v, json_type_string) &&
	    !json_object_is_type(v, json_type_int) &&
	    !json_object_is_type(v, json_type_double))
		return false;
	return parse_cents(json_object_get_string(v), ret) == 0;
}

static const char *
bank_field(struct bank_spec *s, const char *key, json_object *v)
{
	size_t n;

	if (strcmp(key, "amount") == 0) {
		s->has_amount = bank_amount(v, &s->cents);
		return s->has_amount ? NULL
		                     : "amount must be exact decimal text "
		                       "with at most 2 decimals";
	}
	if (strcmp(key, "purpose") == 0) {
		n = json_object_is_type(v, json_type_string)
		    ? (size_t)json_object_get_string_len(v)
		    : 0;
		s->purpose = json_object_get_string(v);
		return n >= 1 && n <= BANK_PURPOSE_MAX
		    ? NULL
		    : "purpose must be a string of 1 to 2000 bytes";
	}
	if (strcmp(key, "booking_date") == 0) {
		s->has_date = json_object_is_type(v, json_type_string) &&
		    iso_parse(json_object_get_string(v), &s->booking_s,
		        NULL) == 0;
		return s->has_date ? NULL
		                   : "booking_date must be an ISO-8601 date "
		                     "or datetime";
	}
	if (strcmp(key, "booked") == 0) {
		s->booked = json_object_get_boolean(v);
		return json_object_is_type(v, json_type_boolean)
		    ? NULL
		    : "booked must be true or false";
	}
	if (strcmp(key, "account_id") == 0) {
		s->account_id = json_object_get_string(v);
		return json_object_is_type(v, json_type_string)
		    ? NULL
		    : "account_id must be a string";
	}
	return "unknown field (account_id, amount, purpose, booked, "
	       "booking_date)";
}

/* Reads one object of fields into s; an error message or NULL. */
static const char *
bank_spec_parse(json_object *o, struct bank_spec *s, bool correction)
{
	const char *msg;

	memset(s, 0, sizeof(*s));
	s->booked = true;
	if (!json_object_is_type(o, json_type_object))
		return "each transaction must be an object";
	json_object_object_foreach(o, key, val)
	{
		if (correction && (strcmp(key, "user_id") == 0 ||
		                      strcmp(key, "transaction_id") == 0))
			continue;
		if (correction && (strcmp(key, "booked") == 0 ||
		                      strcmp(key, "account_id") == 0))
			return "a correction changes amount, purpose or "
			       "booking_date";
		if ((msg = bank_field(s, key, val)) != NULL)
			return msg;
	}
	return NULL;
}

/*
 * Parses the body and finds its user (lock taken on success: the caller
 * unlocks).  On failure the answer is queued, *in freed, and false
 * returned with *ret set.
 */
static bool
bank_begin(struct sbx_req *r, json_object **in, struct sbx_user **ret_u,
    enum MHD_Result *ret)
{
	const char *uid;
	char err[256];

	if (http_body_json(r, in, err, sizeof(err)) == -1) {
		*ret = bank_fail(r, MHD_HTTP_BAD_REQUEST, err);
		return false;
	}
	if ((uid = bank_str(*in, "user_id")) == NULL) {
		json_object_put(*in);
		*ret = bank_fail(r, MHD_HTTP_BAD_REQUEST,
		    "user_id (non-empty string) is required");
		return false;
	}
	sbx_lock();
	if ((*ret_u = data_user_find(uid)) == NULL) {
		sbx_unlock();
		json_object_put(*in);
		*ret = bank_fail(r, MHD_HTTP_NOT_FOUND, "No such user");
		return false;
	}
	return true;
}

/* Ends a call: unlock, free the body, answer (o, or the error msg). */
static enum MHD_Result
bank_end(struct sbx_req *r, json_object *in, unsigned int status,
    const char *msg, json_object *o)
{
	sbx_unlock();
	json_object_put(in);
	if (msg != NULL) {
		json_object_put(o);
		return bank_fail(r, status, msg);
	}
	return http_reply_json(r, MHD_HTTP_OK, o);
}

static json_object *
booked_pair(const char *old_id, const struct sbx_txn *b)
{
	json_object *p = json_object_new_object();

	json_object_object_add(p, "transaction_id",
	    json_object_new_string(old_id));
	json_object_object_add(p, "booked_id", json_object_new_string(b->id));
	return p;
}

/* Books every pending transaction of u; adds the pairs to arr. */
static void
book_all(struct sbx_user *u, bool new_id, json_object *arr)
{
	struct sbx_account *a;
	struct sbx_txn *b;
	char old[sizeof(a->tx->id)];
	size_t i;
	int k;

	for (k = 0; k < SBX_NACCOUNTS; k++) {
		a = &u->acc[k];
		/* a new id appends a booked copy and removes the pending one,
		 * so index i then holds the next transaction */
		for (i = 0; i < a->ntx;) {
			if (a->tx[i].booked) {
				i++;
				continue;
			}
			memcpy(old, a->tx[i].id, sizeof(old));
			b = data_txn_book(u, a, &a->tx[i], new_id);
			json_object_array_add(arr, booked_pair(old, b));
			if (!new_id)
				i++;
		}
	}
}

/* Books the named ones; an error message (and *status) or NULL. */
static const char *
book_named(struct sbx_user *u, json_object *ids, bool new_id,
    json_object *arr, unsigned int *status)
{
	struct sbx_account *a;
	struct sbx_txn *t;
	const char *id;
	size_t i, n = json_object_array_length(ids);

	*status = MHD_HTTP_BAD_REQUEST;
	for (i = 0; i < n; i++) {
		id = json_object_get_string(json_object_array_get_idx(ids, i));
		if (!json_object_is_type(json_object_array_get_idx(ids, i),
		        json_type_string))
			return "transaction_ids must be strings";
		*status = MHD_HTTP_NOT_FOUND;
		if ((t = data_txn_find(u, id, &a)) == NULL)
			return "No such transaction";
		*status = MHD_HTTP_CONFLICT;
		if (t->booked)
			return "The transaction is booked already";
	}
	for (i = 0; i < n; i++) {
		id = json_object_get_string(json_object_array_get_idx(ids, i));
		if ((t = data_txn_find(u, id, &a)) != NULL && !t->booked)
			json_object_array_add(arr,
			    booked_pair(id, data_txn_book(u, a, t, new_id)));
	}
	return NULL;
}

/*
 * POST /_sandbox/transactions/book {"user_id", "transaction_ids"?,
 * "new_ids"?} -> {"booked": [{"transaction_id", "booked_id"}]}.
 */
enum MHD_Result
h_ctl_txn_book(struct sbx_req *r)
{
	json_object *in, *v, *ids = NULL, *arr, *o;
	unsigned int status = MHD_HTTP_BAD_REQUEST;
	const char *msg = NULL;
	struct sbx_user *u;
	enum MHD_Result ret;
	bool new_id = false;

	if (!bank_begin(r, &in, &u, &ret))
		return ret;
	if (json_object_object_get_ex(in, "new_ids", &v)) {
		new_id = json_object_get_boolean(v);
		if (!json_object_is_type(v, json_type_boolean))
			msg = "new_ids must be true or false";
	}
	if (json_object_object_get_ex(in, "transaction_ids", &ids) &&
	    !json_object_is_type(ids, json_type_array))
		msg = "transaction_ids must be an array of ids";
	arr = json_object_new_array();
	if (msg == NULL && ids != NULL)
		msg = book_named(u, ids, new_id, arr, &status);
	else if (msg == NULL)
		book_all(u, new_id, arr);
	o = json_object_new_object();
	json_object_object_add(o, "booked", arr);
	return bank_end(r, in, status, msg, o);
}

/* Applies spec s to a new transaction on a; lock held. */
static struct sbx_txn *
add_one(struct sbx_user *u, struct sbx_account *a, const struct bank_spec *s)
{
	int64_t when = s->has_date ? s->booking_s : now_ms() / 1000;
	struct sbx_txn *t = data_txn_add(u, a, s->booked, when);

	if (s->has_amount)
		t->cents = s->cents;
	if (s->purpose != NULL)
		data_txn_set_purpose(t, s->purpose);
	return t;
}

/* Parses every entry of list (1..BANK_ADD_MAX) into specs. */
static const char *
add_parse(json_object *list, struct bank_spec *specs, size_t n)
{
	const char *msg;
	size_t i;

	for (i = 0; i < n; i++)
		if ((msg = bank_spec_parse(json_object_array_get_idx(list, i),
		         &specs[i], false)) != NULL)
			return msg;
	return NULL;
}

/*
 * POST /_sandbox/transactions/add {"user_id", "transactions": [{
 * "account_id"?, "amount"?, "purpose"?, "booked"?, "booking_date"?}]}
 * -> {"transactions": [<Transaction>...]}, all or none.
 */
enum MHD_Result
h_ctl_txn_add(struct sbx_req *r)
{
	json_object *in, *list, *arr = json_object_new_array(), *o;
	struct bank_spec *specs = NULL;
	struct sbx_account **accs = NULL;
	const char *msg = "transactions must be an array of 1 to 1000 objects";
	unsigned int status = MHD_HTTP_BAD_REQUEST;
	struct sbx_user *u;
	enum MHD_Result ret;
	size_t i, n = 0;

	if (!bank_begin(r, &in, &u, &ret)) {
		json_object_put(arr);
		return ret;
	}
	if (json_object_object_get_ex(in, "transactions", &list) &&
	    json_object_is_type(list, json_type_array))
		n = json_object_array_length(list);
	if (n >= 1 && n <= BANK_ADD_MAX) {
		specs = xcalloc(n, sizeof(*specs));
		accs = xcalloc(n, sizeof(*accs));
		msg = add_parse(list, specs, n);
	}
	for (i = 0; msg == NULL && i < n; i++) {
		accs[i] = specs[i].account_id != NULL
		    ? data_account_find(u, specs[i].account_id)
		    : &u->acc[0];
		if (accs[i] == NULL) {
			status = MHD_HTTP_NOT_FOUND;
			msg = "No such account";
		}
	}
	for (i = 0; msg == NULL && i < n; i++)
		json_object_array_add(arr,
		    data_txn_json(u, accs[i], add_one(u, accs[i], &specs[i])));
	free(specs);
	free(accs);
	o = json_object_new_object();
	json_object_object_add(o, "transactions", arr);
	return bank_end(r, in, status, msg, o);
}

/*
 * POST /_sandbox/transactions/correct {"user_id", "transaction_id",
 * "amount"?, "purpose"?, "booking_date"?} -> {"transaction": {...}}.
 */
enum MHD_Result
h_ctl_txn_correct(struct sbx_req *r)
{
	json_object *in, *o = NULL;
	unsigned int status = MHD_HTTP_BAD_REQUEST;
	struct bank_spec s;
	struct sbx_account *a;
	struct sbx_txn *t = NULL;
	struct sbx_user *u;
	const char *msg, *id;
	enum MHD_Result ret;

	if (!bank_begin(r, &in, &u, &ret))
		return ret;
	id = bank_str(in, "transaction_id");
	msg = bank_spec_parse(in, &s, true);
	if (msg == NULL && !s.has_amount && s.purpose == NULL && !s.has_date)
		msg = "give amount, purpose or booking_date";
	if (msg == NULL && id == NULL)
		msg = "transaction_id (non-empty string) is required";
	if (msg == NULL && (t = data_txn_find(u, id, &a)) == NULL) {
		status = MHD_HTTP_NOT_FOUND;
		msg = "No such transaction";
	}
	if (msg == NULL) {
		if (s.has_amount)
			t->cents = s.cents;
		if (s.purpose != NULL)
			data_txn_set_purpose(t, s.purpose);
		if (s.has_date)
			t->booking_s = s.booking_s;
		data_txn_touch(t);
		o = json_object_new_object();
		json_object_object_add(o, "transaction",
		    data_txn_json(u, a, t));
	}
	return bank_end(r, in, status, msg, o);
}

/*
 * POST /_sandbox/transactions/drop {"user_id", "transaction_id"} ->
 * {"dropped": id}: a pending transaction vanishes (409 for a booked one).
 */
enum MHD_Result
h_ctl_txn_drop(struct sbx_req *r)
{
	json_object *in, *o = NULL;
	unsigned int status = MHD_HTTP_BAD_REQUEST;
	struct sbx_account *a;
	struct sbx_txn *t = NULL;
	struct sbx_user *u;
	const char *msg = NULL, *id;
	enum MHD_Result ret;

	if (!bank_begin(r, &in, &u, &ret))
		return ret;
	if ((id = bank_str(in, "transaction_id")) == NULL)
		msg = "transaction_id (non-empty string) is required";
	else if ((t = data_txn_find(u, id, &a)) == NULL) {
		status = MHD_HTTP_NOT_FOUND;
		msg = "No such transaction";
	} else if (t->booked) {
		status = MHD_HTTP_CONFLICT;
		msg = "Only a pending transaction can be dropped";
	}
	if (msg == NULL) {
		o = json_object_new_object();
		json_object_object_add(o, "dropped",
		    json_object_new_string(id));
		data_txn_remove(a, t);
	}
	return bank_end(r, in, status, msg, o);
}
