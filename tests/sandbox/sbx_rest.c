/*
 * The resource-server half of finx-sandbox: the /rest endpoints behind a
 * Bearer access token (accounts, balances, transactions, accesses and
 * manual syncs), plus the unauthenticated /version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx_data.h"
#include "sbx_handlers.h"

#define TXN_COUNT_MAX 100000

enum since_type {
	SINCE_BOOKED,
	SINCE_CREATED,
	SINCE_MODIFIED,
};

struct txn_query {
	const char *accounts; /* comma-separated ids or NULL */
	long count;
	long offset;
	bool pending;
	bool asc;
	bool has_since;
	enum since_type since_type;
	int64_t since_s;
	bool has_until;
	int64_t until_s;
};

struct txn_ref {
	const struct sbx_account *a;
	const struct sbx_txn *t;
};

static enum MHD_Result
not_found(struct sbx_req *r, const char *what)
{
	return http_reply_error(r, MHD_HTTP_NOT_FOUND, 1002, "Entity not found",
	    what, NULL);
}

static enum MHD_Result
bad_request(struct sbx_req *r, const char *msg)
{
	return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
	    "Invalid request", msg, NULL);
}

enum MHD_Result
h_version(struct sbx_req *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "environment",
	    json_object_new_string("sandbox"));
	json_object_object_add(o, "version",
	    json_object_new_string("finx-sandbox 1"));
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_accounts(struct sbx_req *r)
{
	json_object *o, *arr;
	struct sbx_user *u;
	int k;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	arr = json_object_new_array();
	for (k = 0; k < SBX_NACCOUNTS; k++)
		json_object_array_add(arr, data_account_json(u, &u->acc[k]));
	sbx_unlock();
	o = json_object_new_object();
	json_object_object_add(o, "accounts", arr);
	return http_reply_json(r, MHD_HTTP_OK, o);
}

/* Shared by the one-account endpoints: balance or the whole account. */
static enum MHD_Result
account_reply(struct sbx_req *r, bool balance_only)
{
	struct sbx_account *a;
	struct sbx_user *u;
	json_object *o;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	if ((a = data_account_find(u, r->caps[0])) == NULL) {
		sbx_unlock();
		return not_found(r, "No such account");
	}
	o = balance_only ? data_balance_json(a) : data_account_json(u, a);
	sbx_unlock();
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_account(struct sbx_req *r)
{
	return account_reply(r, false);
}

enum MHD_Result
h_balance(struct sbx_req *r)
{
	return account_reply(r, true);
}

static int
parse_bool(const char *s, bool *ret)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
		*ret = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
		*ret = false;
	else
		return -1;
	return 0;
}

static const char *
query_since(struct sbx_req *r, struct txn_query *q)
{
	const char *s;
	bool date_only;

	if ((s = http_arg(r, "since_type")) != NULL) {
		if (strcmp(s, "booked") == 0)
			q->since_type = SINCE_BOOKED;
		else if (strcmp(s, "created") == 0)
			q->since_type = SINCE_CREATED;
		else if (strcmp(s, "modified") == 0)
			q->since_type = SINCE_MODIFIED;
		else
			return "since_type must be booked, created or modified";
	}
	if ((s = http_arg(r, "since")) != NULL) {
		if (iso_parse(s, &q->since_s, NULL) == -1)
			return "since must be an ISO-8601 date or datetime";
		q->has_since = true;
	}
	if ((s = http_arg(r, "until")) != NULL) {
		if (iso_parse(s, &q->until_s, &date_only) == -1)
			return "until must be an ISO-8601 date or datetime";
		if (date_only)
			q->until_s += 86399;
		q->has_until = true;
	}
	return NULL;
}

/* Reads the list parameters; returns an error message or NULL. */
static const char *
query_parse(struct sbx_req *r, struct txn_query *q)
{
	const char *s;

	memset(q, 0, sizeof(*q));
	q->count = 1000;
	q->accounts = http_arg(r, "accounts");
	if ((s = http_arg(r, "count")) != NULL &&
	    parse_long(s, 1, TXN_COUNT_MAX, &q->count) == -1)
		return "count must be an integer between 1 and 100000";
	if ((s = http_arg(r, "offset")) != NULL &&
	    parse_long(s, 0, 1L << 30, &q->offset) == -1)
		return "offset must be a non-negative integer";
	if ((s = http_arg(r, "include_pending")) != NULL &&
	    parse_bool(s, &q->pending) == -1)
		return "include_pending must be true or false";
	if ((s = http_arg(r, "sort")) != NULL) {
		if (strcmp(s, "asc") == 0)
			q->asc = true;
		else if (strcmp(s, "desc") != 0)
			return "sort must be asc or desc";
	}
	return query_since(r, q);
}

static bool
list_has(const char *list, const char *id)
{
	size_t n, idlen = strlen(id);

	while (*list != '\0') {
		n = strcspn(list, ",");
		if (n == idlen && strncmp(list, id, n) == 0)
			return true;
		list += n;
		if (*list == ',')
			list++;
	}
	return false;
}

static bool
txn_wanted(const struct txn_query *q, const struct sbx_txn *t)
{
	int64_t ref;

	if (!t->booked)
		return q->pending; /* pending always as a complete set */
	if (q->has_since) {
		ref = q->since_type == SINCE_BOOKED  ? t->booking_s
		    : q->since_type == SINCE_CREATED ? t->created_ms / 1000
		                                     : t->modified_ms / 1000;
		if (ref < q->since_s)
			return false;
	}
	return !q->has_until || t->booking_s <= q->until_s;
}

static int
txn_cmp(const void *pa, const void *pb)
{
	const struct txn_ref *a = pa, *b = pb;

	if (a->t->booking_s != b->t->booking_s)
		return a->t->booking_s < b->t->booking_s ? -1 : 1;
	if (a->t->booking_us != b->t->booking_us)
		return a->t->booking_us < b->t->booking_us ? -1 : 1;
	if (a->a->k != b->a->k)
		return a->a->k < b->a->k ? -1 : 1;
	return a->t->idx < b->t->idx ? -1 : a->t->idx > b->t->idx;
}

/* Builds {"transactions": [...]}; lock held. acc limits to one account. */
static json_object *
txn_list(struct sbx_user *u, const struct sbx_account *acc,
    const struct txn_query *q)
{
	struct txn_ref *refs;
	json_object *o, *arr = json_object_new_array();
	size_t n = 0, total = 0, i, from;
	const struct sbx_account *a;
	int k;

	for (k = 0; k < SBX_NACCOUNTS; k++)
		total += u->acc[k].ntx;
	refs = xcalloc(total, sizeof(*refs));
	for (k = 0; k < SBX_NACCOUNTS; k++) {
		a = &u->acc[k];
		if ((acc != NULL && acc != a) ||
		    (q->accounts != NULL && !list_has(q->accounts, a->id)))
			continue;
		for (i = 0; i < a->ntx; i++) {
			if (!txn_wanted(q, &a->tx[i]))
				continue;
			refs[n].a = a;
			refs[n].t = &a->tx[i];
			n++;
		}
	}
	qsort(refs, n, sizeof(*refs), txn_cmp);
	from = (size_t)q->offset;
	for (i = from; i < n && i < from + (size_t)q->count; i++) {
		/* Ascending order sorted; desc reads from the back. */
		const struct txn_ref *t = q->asc ? &refs[i] : &refs[n - 1 - i];

		json_object_array_add(arr, data_txn_json(u, t->a, t->t));
	}
	if (sbx.cfg.repeat_transaction && i > from) {
		const struct txn_ref *t = q->asc ? &refs[from]
						 : &refs[n - 1 - from];
		json_object *again = data_txn_json(u, t->a, t->t);

		json_object_object_add(again, "purpose",
		    json_object_new_string("repeated in page"));
		json_object_array_add(arr, again);
	}
	free(refs);
	o = json_object_new_object();
	json_object_object_add(o, "transactions", arr);
	return o;
}

static enum MHD_Result
transactions_reply(struct sbx_req *r, bool one_account)
{
	struct sbx_account *a = NULL;
	struct txn_query q;
	struct sbx_user *u;
	const char *err;
	json_object *o;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	if (one_account && (a = data_account_find(u, r->caps[0])) == NULL) {
		sbx_unlock();
		return not_found(r, "No such account");
	}
	if ((err = query_parse(r, &q)) != NULL) {
		sbx_unlock();
		return bad_request(r, err);
	}
	o = txn_list(u, a, &q);
	sbx_unlock();
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_transactions(struct sbx_req *r)
{
	return transactions_reply(r, false);
}

enum MHD_Result
h_account_transactions(struct sbx_req *r)
{
	return transactions_reply(r, true);
}

/* One transaction by id, optionally within one account. */
static enum MHD_Result
transaction_reply(struct sbx_req *r, const char *acc_id, const char *id)
{
	struct sbx_account *a;
	struct sbx_user *u;
	json_object *o = NULL;
	size_t i;
	int k;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	for (k = 0; k < SBX_NACCOUNTS && o == NULL; k++) {
		a = &u->acc[k];
		if (acc_id != NULL && strcmp(acc_id, a->id) != 0)
			continue;
		for (i = 0; i < a->ntx && o == NULL; i++)
			if (strcmp(a->tx[i].id, id) == 0)
				o = data_txn_json(u, a, &a->tx[i]);
	}
	sbx_unlock();
	if (o == NULL)
		return not_found(r, "No such transaction");
	return http_reply_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_transaction(struct sbx_req *r)
{
	return transaction_reply(r, NULL, r->caps[0]);
}

enum MHD_Result
h_account_transaction(struct sbx_req *r)
{
	return transaction_reply(r, r->caps[0], r->caps[1]);
}

enum MHD_Result
h_accesses(struct sbx_req *r)
{
	struct sbx_user *u;
	json_object *arr;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	arr = json_object_new_array();
	json_object_array_add(arr, data_access_json(u));
	sbx_unlock();
	return http_reply_json(r, MHD_HTTP_OK, arr);
}

enum MHD_Result
h_access(struct sbx_req *r)
{
	struct sbx_user *u;
	json_object *o = NULL;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	if (strcmp(u->access_id, r->caps[0]) == 0)
		o = data_access_json(u);
	sbx_unlock();
	if (o == NULL)
		return not_found(r, "No such access");
	return http_reply_json(r, MHD_HTTP_OK, o);
}

static const char *
sync_field(const char *key, json_object *v)
{
	size_t i, n;
	const char *s;

	if (strcmp(key, "credentials") == 0)
		return json_object_is_type(v, json_type_object)
		    ? NULL
		    : "Not a valid object.";
	if (strcmp(key, "save_secrets") == 0 ||
	    strcmp(key, "disable_notifications") == 0)
		return json_object_is_type(v, json_type_boolean)
		    ? NULL
		    : "Not a valid boolean.";
	if (strcmp(key, "redirect_uri") == 0)
		return json_object_is_type(v, json_type_string)
		    ? NULL
		    : "Not a valid string.";
	if (strcmp(key, "state") == 0) {
		n = json_object_is_type(v, json_type_string)
		    ? (size_t)json_object_get_string_len(v)
		    : 0;
		return n >= 1 && n <= 1024
		    ? NULL
		    : "Must be a string of 1 to 1024 characters.";
	}
	if (strcmp(key, "scope") != 0)
		return "Unknown field.";
	if (!json_object_is_type(v, json_type_array))
		return "Not a valid list.";
	for (i = 0; i < json_object_array_length(v); i++) {
		s = json_object_get_string(json_object_array_get_idx(v, i));
		if (!json_object_is_type(json_object_array_get_idx(v, i),
		        json_type_string) ||
		    (strcmp(s, "ACCOUNTS") != 0 &&
		        strcmp(s, "TRANSACTIONS") != 0))
			return "Entries must be ACCOUNTS or TRANSACTIONS.";
	}
	return NULL;
}

/* Checks the optional sync body; returns a finX data object or NULL. */
static json_object *
sync_validate(struct sbx_req *r)
{
	json_object *o, *data, *arr;
	const char *msg;
	char err[256];

	if (r->body.len == 0)
		return NULL;
	data = json_object_new_object();
	if (http_body_json(r, &o, err, sizeof(err)) == -1) {
		json_object_object_add(data, "_body",
		    json_object_new_string(err));
		return data;
	}
	json_object_object_foreach(o, key, val)
	{
		if ((msg = sync_field(key, val)) == NULL)
			continue;
		arr = json_object_new_array();
		json_object_array_add(arr, json_object_new_string(msg));
		json_object_object_add(data, key, arr);
	}
	json_object_put(o);
	if (json_object_object_length(data) == 0) {
		json_object_put(data);
		return NULL;
	}
	return data;
}

enum MHD_Result
h_sync_create(struct sbx_req *r)
{
	struct sbx_sync *s;
	struct sbx_user *u;
	json_object *data, *o;
	int64_t now = now_ms();

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	if (strcmp(u->access_id, r->caps[0]) != 0) {
		sbx_unlock();
		return not_found(r, "No such access");
	}
	sbx_unlock();
	if ((data = sync_validate(r)) != NULL)
		return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
		    "Request body doesn't match input schema.",
		    "Invalid fields", data);
	sbx_lock();
	if (data_syncs_recent(u, now) >= SBX_SYNCS_PER_DAY) {
		sbx_unlock();
		return http_reply_error(r, MHD_HTTP_TOO_MANY_REQUESTS, 1020,
		    "Maximum number of account synchronizations exceeded",
		    "At most 4 synchronizations per access in 24 hours", NULL);
	}
	s = xcalloc(1, sizeof(*s));
	rand_uuid(s->id);
	s->created_ms = now;
	s->step_ms = sbx.cfg.sync_step_ms;
	s->fail = sbx.cfg.sync_fail;
	vec_push(&u->syncs, s);
	sbx_count(STAT_SYNCS_CREATED, 1);
	o = data_sync_json(s, now);
	sbx_unlock();
	return http_reply_json(r, MHD_HTTP_CREATED, o);
}

enum MHD_Result
h_sync_get(struct sbx_req *r)
{
	struct sbx_sync *s;
	struct sbx_user *u;
	json_object *o = NULL;

	sbx_lock();
	if ((u = http_bearer_user(r)) == NULL) {
		sbx_unlock();
		return http_reply_bearer_auth(r);
	}
	if (strcmp(u->access_id, r->caps[0]) == 0 &&
	    (s = data_sync_find(u, r->caps[1])) != NULL)
		o = data_sync_json(s, now_ms());
	sbx_unlock();
	if (o == NULL)
		return not_found(r, "No such sync");
	return http_reply_json(r, MHD_HTTP_OK, o);
}
