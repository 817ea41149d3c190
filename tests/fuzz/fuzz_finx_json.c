/*
 * libFuzzer target: everything finxd decodes from finX.  The same input
 * goes to the /auth/token decoder, the /ongoing/access decoder and the
 * error decoder (both error shapes), then is parsed as JSON and mapped as
 * accounts and transactions (a single object, an array, or the
 * "accounts" / "transactions" arrays of a /rest answer).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "finx_decode.h"
#include "finxmap.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
map_one(json_object *o)
{
	struct account_row a;
	struct txn_row t;
	const char *why;
	json_object *v;

	if (finxmap_account(o, &a, &why))
		account_row_free(&a);
	if (finxmap_transaction(o, &t, &why))
		txn_row_free(&t);
	if (json_object_object_get_ex(o, "amount", &v))
		free(finxmap_decimal(v));
	if (json_object_object_get_ex(o, "booking_date", &v) &&
	    json_object_is_type(v, json_type_string))
		free(finxmap_timestamp(json_object_get_string(v)));
}

static void
map_all(json_object *o)
{
	static const char *const lists[] = { "accounts", "transactions" };
	json_object *arr;
	size_t i, k;

	if (json_object_is_type(o, json_type_array)) {
		for (i = 0; i < json_object_array_length(o); i++)
			map_one(json_object_array_get_idx(o, i));
		return;
	}
	map_one(o);
	for (k = 0; k < 2; k++)
		if (json_object_object_get_ex(o, lists[k], &arr) &&
		    json_object_is_type(arr, json_type_array))
			for (i = 0; i < json_object_array_length(arr); i++)
				map_one(json_object_array_get_idx(arr, i));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data, *why;
	struct finx_tokens t;
	struct finx_error e = { 0 };
	char *flow = NULL, *loc = NULL;
	json_tokener *tok;
	json_object *o;
	static int quiet;

	if (!quiet) {
		log_set_level(LOG_ERROR);
		quiet = 1;
	}
	memset(&t, 0, sizeof(t));
	finx_decode_tokens(body, size, &t, &why);
	finx_tokens_free(&t);
	if (finx_decode_flow(body, size, &flow, &loc, &why)) {
		free(flow);
		free(loc);
	}
	finx_decode_error(400, body, size, &e);
	finx_error_free(&e);
	finx_decode_error(503, body, size, &e);
	finx_error_free(&e);

	if (size == 0 || size > 1 << 20 || (tok = json_tokener_new_ex(64)) ==
	    NULL)
		return 0;
	o = json_tokener_parse_ex(tok, body, (int)size);
	if (o != NULL)
		map_all(o);
	json_object_put(o);
	json_tokener_free(tok);
	return 0;
}
