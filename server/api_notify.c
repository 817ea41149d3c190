/*
 * ANY /finx/notify/{secret}: a finX notification (SPEC "finX
 * notifications"; design in notify.c).  The payload is never read: a
 * known secret schedules a pull of its connection and answers 204 with
 * no body, anything else 404.  The secret is never logged (the access
 * log shows the path as NOTIFY_PATH_LOGGED).
 */
#include "api.h"

#include "db.h"
#include "notify.h"
#include "worker.h"

enum MHD_Result
h_finx_notify(struct req *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	bool known, due, ok;
	PGconn *c;

	if (!notify_secret_ok(r->params[0]))
		return api_fail(r, ST_NOT_FOUND, NULL);
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	ok = notify_received(c, r->params[0], &known, &due);
	db_release(c);
	if (!ok)
		return api_fail_db(r);
	/* Committed: a worker of this process pulls it now. */
	if (due)
		worker_wake_pull();
	if (!known)
		return api_fail(r, ST_NOT_FOUND, NULL);
	resp = MHD_create_response_from_buffer(0, (void *)"",
	    MHD_RESPMEM_PERSISTENT);
	return http_queue(r, MHD_HTTP_NO_CONTENT, resp);
}
