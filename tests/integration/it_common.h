/*
 * Shared steps of the flow tests: open a link, drive the sandbox widget,
 * follow the callback, and the checks every callback answer must pass.
 * Header-only (static functions) so each it_*.c stays self-contained.
 */
#ifndef FINXD_IT_COMMON_H
#define FINXD_IT_COMMON_H

#include "harness.h"
#include "test.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct flow {
	char *link_id;
	char *location;
	char *flow_id;
	char *callback; /* the widget's redirect to finxd (carries the code) */
};

/* True for a 2xx answer of the sandbox control API. */
static inline bool
sbx_ok(long status)
{
	return status / 100 == 2;
}

static inline void
flow_free(struct flow *fl)
{
	free(fl->link_id);
	free(fl->location);
	free(fl->flow_id);
	free(fl->callback);
	memset(fl, 0, sizeof(*fl));
}

/* POST /v1/links on instance f; true on 201 with link_id and location. */
static inline bool
flow_open(int f, const char *user, const char *ret, struct flow *fl)
{
	struct h_resp r;
	struct json_object *o;

	memset(fl, 0, sizeof(*fl));
	h_link_create(f, user, ret, &r);
	o = h_resp_json(&r);
	fl->link_id = h_dup(h_jstr(o, "link_id"));
	fl->location = h_dup(h_jstr(o, "location"));
	fl->flow_id = h_dup(h_jstr(o, "flow_id"));
	if (r.status != 201 || fl->link_id == NULL || fl->location == NULL)
		printf("# POST /v1/links answered %ld (error %s)\n", r.status,
		    h_err_code(&r) ? h_err_code(&r) : "-");
	h_resp_free(&r);
	return fl->link_id != NULL && fl->location != NULL;
}

/* Open a link and let the widget decide; true when a callback URL came. */
static inline bool
flow_widget(int f, const char *user, const char *ret, const char *decision,
    struct flow *fl)
{
	if (!flow_open(f, user, ret, fl))
		return false;
	fl->callback = h_widget(fl->location, decision);
	return fl->callback != NULL;
}

/* The value of a parameter in the Location of r (malloc'd) or NULL. */
static inline char *
loc_param(const struct h_resp *r, const char *name)
{
	return h_qparam(h_resp_header(r, "Location"), name);
}

/* True when the parameter of r's Location equals want. */
static inline bool
loc_is(const struct h_resp *r, const char *name, const char *want)
{
	char *v = loc_param(r, name);
	bool ok = v != NULL && want != NULL && strcmp(v, want) == 0;

	free(v);
	return ok;
}

/* Headers every /callback answer carries. */
static inline void
check_callback_headers(const struct h_resp *r, const char *what)
{
	const char *cc = h_resp_header(r, "Cache-Control");
	const char *rp = h_resp_header(r, "Referrer-Policy");

	CHECK(cc != NULL && strstr(cc, "no-store") != NULL,
	    "%s: Cache-Control no-store", what);
	CHECK(rp != NULL && strcmp(rp, "no-referrer") == 0,
	    "%s: Referrer-Policy no-referrer", what);
}

/* GET /v1/links/{id} on f; returns its status string (malloc'd) or NULL. */
static inline char *
link_status(int f, const char *link_id, struct json_object **ret)
{
	struct h_resp r;
	char path[512];
	char *st = NULL;

	snprintf(path, sizeof(path), "/v1/links/%s", link_id);
	if (h_api(f, "GET", path, NULL, &r) == 200) {
		st = h_dup(h_jstr(h_resp_json(&r), "status"));
		if (ret != NULL)
			*ret = json_object_get(h_resp_json(&r));
	}
	h_resp_free(&r);
	return st;
}

static inline bool
link_status_is(int f, const char *link_id, const char *want)
{
	char *st = link_id ? link_status(f, link_id, NULL) : NULL;
	bool ok = st != NULL && strcmp(st, want) == 0;

	if (!ok)
		printf("# link status %s, want %s\n", st ? st : "(none)", want);
	free(st);
	return ok;
}

/* finxd's log is there and holds no secret, token or code. */
static inline void
check_log_clean(void)
{
	size_t len;
	char *log = h_log_read(&len);
	int n;

	CHECK(len > 1000, "finxd wrote a log (%zu bytes)", len);
	n = h_leaks(log, len);
	CHECK(n == 0, "no secret, token or code in finxd's log (%d found)", n);
	free(log);
}

/*
 * Every line finxd wrote is one JSON object: nothing, libpq's notices
 * included, prints around the structured log.  Lines the harness adds
 * start with "#".
 */
static inline void
check_log_json(void)
{
	size_t len, bad = 0, lines = 0;
	char *log = h_log_read(&len), *line, *save = NULL;

	for (line = strtok_r(log, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		json_object *o;

		if (line[0] == '#')
			continue;
		lines++;
		o = json_tokener_parse(line);
		if (o == NULL || !json_object_is_type(o, json_type_object))
			bad++;
		json_object_put(o);
	}
	CHECK(lines > 0 && bad == 0,
	    "every line of finxd's log is a JSON object (%zu of %zu are not)",
	    bad, lines);
	free(log);
}

/*
 * Stop every finxd and the sandbox with SIGTERM: each must exit 0, and no
 * sanitizer report may appear in their logs (under ASan a leak or error
 * makes the exit status non-zero too).
 */
static inline void
check_clean_shutdown(void)
{
	int i, rc;

	for (i = 0; i < h_finxd_count(); i++) {
		rc = h_finxd_stop(i, SIGTERM);
		if (rc == -1)
			continue; /* stopped earlier by the test */
		CHECK(rc == 0, "finxd #%d exits 0 on SIGTERM (got %d)", i, rc);
	}
	CHECK(!h_file_contains("finxd.log", "Sanitizer") &&
	        !h_file_contains("finxd.log", "runtime error:"),
	    "no sanitizer report from finxd");
	rc = h_sandbox_stop();
	CHECK(rc == 0, "finx-sandbox exits 0 on SIGTERM (got %d)", rc);
	CHECK(!h_file_contains("sandbox.log", "Sanitizer") &&
	        !h_file_contains("sandbox.log", "runtime error:"),
	    "no sanitizer report from finx-sandbox");
}

#endif
