/*
 * One status model for every answer that is not a success: one enum, and
 * one table from it to the HTTP status, the error code partners see and
 * the message.  Failures of finX and of PostgreSQL are mapped to it once,
 * here; handlers answer with api_fail (api.h), which also logs once.
 * The codes are the contract of SPEC.md and openapi.json.
 */
#ifndef FINXD_STATUS_H
#define FINXD_STATUS_H

#include "db.h"
#include "finx_decode.h"

enum status {
	ST_OK,
	ST_INVALID_REQUEST,     /* 400: the body or a field is wrong */
	ST_INVALID_PARAMETER,   /* 400: a query or path parameter is wrong */
	ST_RETURN_URL_NOT_ALLOWED, /* 400 */
	ST_UNAUTHORIZED,        /* 401: no valid API key */
	ST_FORBIDDEN,           /* 403: the key lacks the scope */
	ST_NOT_FOUND,           /* 404 */
	ST_METHOD_NOT_ALLOWED,  /* 405 */
	ST_CONFLICT,            /* 409: a concurrent change won */
	ST_NOT_ACTIVE,          /* 409 connection_not_active */
	ST_REAUTH_REQUIRED,     /* 409: finX rejected the refresh token */
	ST_REVOKED,             /* 409 connection_revoked */
	ST_NOT_PULLED_YET,      /* 409 */
	ST_IDEM_IN_USE,         /* 409: that Idempotency-Key's request runs */
	ST_PAYLOAD_TOO_LARGE,   /* 413 */
	ST_UNSUPPORTED_MEDIA_TYPE, /* 415 */
	ST_IDEM_REUSED,         /* 422: that key came with another request */
	ST_TOO_MANY_SYNCS,      /* 429 */
	ST_INTERNAL,            /* 500 internal_error */
	ST_DECRYPT_FAILED,      /* 500: a stored token does not open */
	ST_FINX_ERROR,          /* 502: finX refused */
	ST_DB_UNAVAILABLE,      /* 503 database_unavailable */
	ST_FINX_UNAVAILABLE,    /* 503: no answer, 5xx or 429 from finX */
	ST_REFRESH_IN_PROGRESS, /* 503: another holder's refresh runs */
	ST_SCHEMA_NOT_CURRENT,  /* 503 */
	ST_COUNT
};

struct status_row {
	unsigned http;
	const char *code;
	const char *message; /* default text; a detail may follow it */
};

/* The row of s (ST_INTERNAL's for a value out of range). */
const struct status_row *status_row(enum status s);

/*
 * A failed statement: a unique violation is a conflict, a value
 * PostgreSQL refused is the caller's bad parameter, the rest (lost
 * connection, retries exhausted, a bug) is the database unavailable.
 */
enum status status_of_db(enum db_fail f);

/*
 * A failed finX call: no answer, 429, or a gateway's 502, 503, 504 is
 * finX unavailable (503, try later); any other answer, a 500 among them,
 * is finX refusing this request (502 finx_error).  A rejected refresh
 * token is the refresh's own outcome (reauth_required), not mapped here.
 */
enum status status_of_finx(const struct finx_error *e);

#endif
