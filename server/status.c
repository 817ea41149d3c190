/*
 * The status table (status.h).  Messages are fixed texts: a detail the
 * caller adds (a finX message, a field name) never carries a secret or
 * a value of the caller's that PostgreSQL refused.
 */
#include "status.h"

static const struct status_row rows[ST_COUNT] = {
	[ST_OK] = { 200, "ok", "ok" },
	[ST_INVALID_REQUEST] = { 400, "invalid_request",
	    "the request is not valid" },
	[ST_INVALID_PARAMETER] = { 400, "invalid_parameter",
	    "a parameter is not valid" },
	[ST_RETURN_URL_NOT_ALLOWED] = { 400, "return_url_not_allowed",
	    "return_url is not under an allowed prefix "
	    "(FINXD_ALLOWED_RETURN_URLS)" },
	[ST_UNAUTHORIZED] = { 401, "unauthorized",
	    "a valid API key is required" },
	[ST_FORBIDDEN] = { 403, "forbidden",
	    "this API key lacks the scope for this request" },
	[ST_NOT_FOUND] = { 404, "not_found", "not found" },
	[ST_METHOD_NOT_ALLOWED] = { 405, "method_not_allowed",
	    "method not allowed on this path" },
	[ST_CONFLICT] = { 409, "conflict",
	    "a concurrent request changed this; try again" },
	[ST_NOT_ACTIVE] = { 409, "connection_not_active",
	    "the connection is not active; see its status" },
	[ST_REAUTH_REQUIRED] = { 409, "reauth_required",
	    "finX rejected the refresh token; the user must re-authenticate "
	    "(POST /v1/connections/{id}/reauth)" },
	[ST_REVOKED] = { 409, "connection_revoked",
	    "a deleted connection cannot be renewed; create a new link" },
	[ST_NOT_PULLED_YET] = { 409, "not_pulled_yet",
	    "the connection's accounts have not been pulled yet; try again "
	    "shortly" },
	[ST_IDEM_IN_USE] = { 409, "idempotency_key_in_use",
	    "a request with this Idempotency-Key is still running; try again "
	    "shortly" },
	[ST_PAYLOAD_TOO_LARGE] = { 413, "payload_too_large",
	    "the request body is too large" },
	[ST_UNSUPPORTED_MEDIA_TYPE] = { 415, "unsupported_media_type",
	    "Content-Type must be application/json" },
	[ST_IDEM_REUSED] = { 422, "idempotency_key_reused",
	    "this Idempotency-Key was used with a different request (method, "
	    "path or body)" },
	[ST_TOO_MANY_SYNCS] = { 429, "too_many_syncs",
	    "finX allows no more synchronisations of this connection right "
	    "now" },
	[ST_INTERNAL] = { 500, "internal_error", "internal error" },
	[ST_DECRYPT_FAILED] = { 500, "decrypt_failed",
	    "the stored token cannot be decrypted with the configured keys "
	    "(FINXD_TOKEN_KEYS)" },
	[ST_FINX_ERROR] = { 502, "finx_error", "finX refused the request" },
	[ST_DB_UNAVAILABLE] = { 503, "database_unavailable",
	    "the database is not reachable" },
	[ST_FINX_UNAVAILABLE] = { 503, "finx_unavailable",
	    "finX is not available" },
	[ST_REFRESH_IN_PROGRESS] = { 503, "refresh_in_progress",
	    "a refresh of this connection is still in progress; try again" },
	[ST_SCHEMA_NOT_CURRENT] = { 503, "schema_not_current",
	    "the database schema is not one this binary serves" },
};

const struct status_row *
status_row(enum status s)
{
	if ((unsigned)s >= ST_COUNT)
		s = ST_INTERNAL;
	return &rows[s];
}

enum status
status_of_db(enum db_fail f)
{
	switch (f) {
	case DBF_CONFLICT:
		return ST_CONFLICT;
	case DBF_BAD_INPUT:
		return ST_INVALID_PARAMETER;
	default:
		return ST_DB_UNAVAILABLE;
	}
}

enum status
status_of_finx(const struct finx_error *e)
{
	long h = e->http_status;

	if (e->transport || h == 429 || h == 502 || h == 503 || h == 504)
		return ST_FINX_UNAVAILABLE;
	return ST_FINX_ERROR;
}
