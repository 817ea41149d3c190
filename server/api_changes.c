/*
 * GET /v1/connections/{id}/transactions/changes: the change feed of one
 * connection, oldest first from a cursor (absent: from the beginning).
 * Pulls write its rows (store_data.c) in their write transaction, each
 * change with the connection's next seq, taken under the pulls row's
 * lock, so seqs are in commit order: a client that stores next_cursor
 * and calls again sees every later change once, in order, whichever
 * processes pull and serve.
 *
 * What a change shows: an added or modified transaction as it is now,
 * rendered as GET /v1/accounts/{id}/transactions renders it (so two
 * changes of one transaction in one page both show its latest state);
 * a change of a transaction that was removed afterwards shows nothing
 * in added or modified (it is gone), and its removal comes later in the
 * feed, where a client that never saw it may ignore it.  removed holds
 * the ids only.
 *
 * The cursor is api_lists.c's (list "x", the last seq shown as its
 * position, the connection as its id, under the tag): a cursor of
 * another connection, or edited, does not decode (400).
 */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cache.h"
#include "db.h"
#include "mem.h"
#include "store_changes.h"
#include "text.h"

/* A page may grow this large (500 transactions of long purposes). */
#define BODY_MAX (64 * 1024 * 1024)
#define LIMIT_MAX 500

char *
changes_cursor_encode(const char *conn_id, int64_t seq)
{
	char pos[24];

	snprintf(pos, sizeof(pos), "%" PRId64, seq);
	return list_cursor_encode("x", NULL, 0, pos, conn_id);
}

bool
changes_cursor_decode(const char *s, const char *conn_id, int64_t *seq)
{
	char pos[24], id[37];
	long long v;
	char *end;

	if (s == NULL || !list_cursor_decode(s, "x", NULL, 0, pos, id) ||
	    strcmp(id, conn_id) != 0 || pos[0] == '-')
		return false;
	errno = 0;
	v = strtoll(pos, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*seq = v;
	return true;
}

/* The items of one kind of the first n changes of l, as a JSON array. */
static void
kind_render(struct buf *b, const struct store_changes *l, int n,
    const char *kind)
{
	bool removed = strcmp(kind, "removed") == 0, first = true;
	int i;

	buf_append(b, "[", 1);
	for (i = 0; i < n; i++) {
		const struct store_change *ch = &l->v[i];

		if (strcmp(ch->kind, kind) != 0 || (!removed && !ch->shown))
			continue;
		if (!first)
			buf_append(b, ",", 1);
		first = false;
		if (!removed)
			api_txn_render(b, &ch->txn);
		else {
			buf_append_str(b, "{\"transaction_id\":");
			cache_json_str(b, ch->transaction_id);
			buf_append(b, "}", 1);
		}
	}
	buf_append(b, "]", 1);
}

/* The answer of the first limit changes of l, read after position after. */
static void
changes_render(struct buf *b, const struct store_changes *l, long limit,
    const char *conn_id, int64_t after)
{
	int n = l->n > limit ? (int)limit : l->n;
	char *next = changes_cursor_encode(conn_id,
	    n > 0 ? l->v[n - 1].seq : after);

	buf_append_str(b, "{\"added\":");
	kind_render(b, l, n, "added");
	buf_append_str(b, ",\"modified\":");
	kind_render(b, l, n, "modified");
	buf_append_str(b, ",\"removed\":");
	kind_render(b, l, n, "removed");
	buf_append_str(b, ",\"next_cursor\":");
	cache_json_str(b, next);
	buf_append_str(b, l->n > limit ? ",\"has_more\":true}"
				       : ",\"has_more\":false}");
	free(next);
}

/* The page read and answered, once the query checked out. */
static enum MHD_Result
changes_answer(struct req *r, const char *id, int64_t after, long limit)
{
	struct store_changes l;
	enum MHD_Result ret;
	struct buf b;
	PGconn *c;
	bool ok;

	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	/* One more than shown tells whether more follow. */
	ok = store_changes_read(c, id, after, limit + 1, &l);
	db_release(c);
	if (!ok)
		return api_fail_db(r);
	if (!l.found) {
		store_changes_free(&l);
		return api_fail(r, ST_NOT_FOUND, "no such connection");
	}
	buf_init(&b, BODY_MAX);
	changes_render(&b, &l, limit, id, after);
	store_changes_free(&l);
	if (b.overflow) {
		buf_free(&b);
		return api_fail(r, ST_INTERNAL, "the answer is too large");
	}
	ret = api_reply_json(r, b.data, b.len, free, b.data);
	return ret;
}

enum MHD_Result
h_conn_changes(struct req *r)
{
	const char *cursor = http_query(r, "cursor");
	const char *limit_s = http_query(r, "limit"), *bad = NULL;
	int64_t after = 0;
	long limit = 100;

	if (!api_uuid_param(r, 0))
		return api_fail(r, ST_NOT_FOUND, "no such connection");
	/* Sent but not decodable is no cursor: not the beginning. */
	if ((limit_s == NULL && http_query_sent(r, "limit")) ||
	    (limit_s != NULL && !parse_long(limit_s, 1, LIMIT_MAX, &limit)))
		bad = "limit must be a whole number from 1 to 500";
	else if ((cursor == NULL && http_query_sent(r, "cursor")) ||
	    (cursor != NULL &&
		!changes_cursor_decode(cursor, r->params[0], &after)))
		bad = "cursor is not valid for this connection's changes";
	if (bad != NULL)
		return api_fail(r, ST_INVALID_PARAMETER, bad);
	return changes_answer(r, r->params[0], after, limit);
}
