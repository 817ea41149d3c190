/*
 * The widget flow end to end against finx-sandbox: a connection is made,
 * replays, unknown states and forged flow ids are refused without the
 * code being exchanged, cancel and failure come back to the partner, both
 * token encodings work, 4 KB tokens survive, and no token, code, client
 * secret or API key reaches finxd's log or the database in plain text.
 */
#include "it_common.h"

#include <signal.h>

static const char *db;
static int f_json; /* FINXD_FINX_TOKEN_FORMAT=json */
static int f_form; /* FINXD_FINX_TOKEN_FORMAT=form */

static bool
has_string_member(struct json_object *o, const char *key)
{
	return h_jstr(o, key) != NULL && h_jstr(o, key)[0] != '\0';
}

static void
test_health(void)
{
	long st = h_finxd_get(f_json, "/readyz", NULL);

	CHECK(st == 200, "/readyz 200 (got %ld)", st);
}

/* start_url sends the browser on to the widget. */
static void
check_start_url(const char *start_url, const char *location)
{
	struct h_resp r;
	const char *loc;

	if (start_url == NULL || location == NULL) {
		CHECK(0, "start_url: no start_url or location to try");
		return;
	}
	h_http("GET", start_url, NULL, NULL, 0, &r);
	loc = h_resp_header(&r, "Location");
	CHECK(r.status == 303 || r.status == 302,
	    "start_url redirects (got %ld)", r.status);
	CHECK(loc != NULL && strcmp(loc, location) == 0,
	    "start_url: Location is the widget location");
	h_resp_free(&r);
}

/* /metrics answers and shows no secret. */
static void
test_metrics(void)
{
	struct h_resp r;

	h_finxd_get(f_json, "/metrics", &r);
	CHECK(r.status == 200 && r.body_len > 0, "/metrics 200 (got %ld)",
	    r.status);
	CHECK(h_leaks(r.body, r.body_len) == 0, "/metrics shows no secret");
	h_resp_free(&r);
}

/* The connection resource: active, with scope, and no token in it. */
static void
check_connection(const char *cid, const char *user)
{
	struct json_object *o;
	struct h_resp r;
	char path[512];

	h_conn_api(f_json, "GET", cid, NULL, &r);
	o = h_resp_json(&r);
	CHECK(r.status == 200, "GET connection 200 (got %ld)", r.status);
	CHECK(h_jstr(o, "connection_id") != NULL &&
	        strcmp(h_jstr(o, "connection_id"), cid) == 0,
	    "connection_id matches");
	CHECK(h_jstr(o, "user_id") != NULL &&
	        strcmp(h_jstr(o, "user_id"), user) == 0,
	    "user_id matches");
	CHECK(h_jstr(o, "status") != NULL &&
	        strcmp(h_jstr(o, "status"), "active") == 0,
	    "status active");
	CHECK(has_string_member(o, "scope"), "scope is set");
	CHECK(has_string_member(o, "access_expires_at"),
	    "access_expires_at is set");
	CHECK(has_string_member(o, "created_at"), "created_at is set");
	CHECK(o != NULL &&
	        !json_object_object_get_ex(o, "access_token", NULL) &&
	        !json_object_object_get_ex(o, "refresh_token", NULL),
	    "no token members");
	CHECK(h_leaks(r.body, r.body_len) == 0,
	    "no token anywhere in the "
	    "connection body");
	h_resp_free(&r);

	snprintf(path, sizeof(path), "/v1/users/%s/connections", user);
	h_api(f_json, "GET", path, NULL, &r);
	o = h_resp_json(&r);
	{
		struct json_object *a = NULL;
		bool found = false;
		size_t i;

		if (o != NULL &&
		    json_object_object_get_ex(o, "connections", &a) &&
		    json_object_is_type(a, json_type_array)) {
			for (i = 0; i < json_object_array_length(a); i++) {
				const char *id =
				    h_jstr(json_object_array_get_idx(a, i),
				        "connection_id");

				if (id != NULL && strcmp(id, cid) == 0)
					found = true;
			}
		}
		CHECK(r.status == 200 && found,
		    "the user's connections list "
		    "has it (status %ld)",
		    r.status);
	}
	CHECK(h_leaks(r.body, r.body_len) == 0, "no token in the list");
	h_resp_free(&r);
}

static void
test_happy_path(void)
{
	struct json_object *o, *req;
	struct h_resp r;
	struct flow fl;
	char *cid = NULL, *st, *ret_prefix;
	const char *loc;

	h_sbx_reset();
	h_link_create(f_json, "u-happy", H_RETURN_URL, &r);
	o = h_resp_json(&r);
	CHECK(r.status == 201, "POST /v1/links 201 (got %ld, %s)", r.status,
	    h_err_code(&r) ? h_err_code(&r) : "-");
	CHECK(has_string_member(o, "link_id") &&
	        has_string_member(o, "location") &&
	        has_string_member(o, "start_url") &&
	        has_string_member(o, "flow_id") &&
	        has_string_member(o, "expires_at"),
	    "link has link_id, location, start_url, flow_id, expires_at");
	CHECK(h_jstr(o, "status") &&
	        strcmp(h_jstr(o, "status"), "pending") == 0,
	    "new link is pending");
	CHECK(h_jstr(o, "location") &&
	        strncmp(h_jstr(o, "location"), h_sandbox_url(),
	            strlen(h_sandbox_url())) == 0,
	    "location is the sandbox widget");
	CHECK(h_jstr(o, "start_url") &&
	        strncmp(h_jstr(o, "start_url"), h_finxd_url(f_json),
	            strlen(h_finxd_url(f_json))) == 0,
	    "start_url is a finxd URL");
	check_start_url(h_jstr(o, "start_url"), h_jstr(o, "location"));
	memset(&fl, 0, sizeof(fl));
	fl.link_id = h_dup(h_jstr(o, "link_id"));
	fl.location = h_dup(h_jstr(o, "location"));
	fl.flow_id = h_dup(h_jstr(o, "flow_id"));
	h_resp_free(&r);

	req = h_sbx_last_request("/ongoing/access");
	CHECK(req != NULL, "finX saw POST /ongoing/access");
	if (req != NULL) {
		struct json_object *b = json_tokener_parse(
		    h_jstr(req, "body") ? h_jstr(req, "body") : "");
		char want[128];

		snprintf(want, sizeof(want), "%s/callback",
		    h_finxd_url(f_json));
		CHECK(h_jstr(b, "redirect_uri") &&
		        strcmp(h_jstr(b, "redirect_uri"), want) == 0,
		    "redirect_uri is FINXD_PUBLIC_URL/callback");
		CHECK(h_jstr(b, "user_id") &&
		        strcmp(h_jstr(b, "user_id"), "u-happy") == 0,
		    "user_id passed to finX unchanged");
		CHECK(h_jstr(b, "state") && strlen(h_jstr(b, "state")) >= 22,
		    "a state of >= 128 bits was sent (length %zu)",
		    h_jstr(b, "state") ? strlen(h_jstr(b, "state")) : 0);
		json_object_put(b);
		json_object_put(req);
	}
	CHECK(fl.link_id && link_status_is(f_json, fl.link_id, "pending"),
	    "GET link before the callback: pending");

	fl.callback = h_widget(fl.location, "approve");
	CHECK(fl.callback != NULL &&
	        strncmp(fl.callback, h_finxd_url(f_json),
	            strlen(h_finxd_url(f_json))) == 0,
	    "widget approve redirects to finxd");
	h_http("GET", fl.callback, NULL, NULL, 0, &r);
	loc = h_resp_header(&r, "Location");
	CHECK(r.status == 303, "callback answers 303 (got %ld)", r.status);
	check_callback_headers(&r, "callback success");
	ret_prefix = H_RETURN_URL "&";
	CHECK(loc != NULL && strncmp(loc, ret_prefix, strlen(ret_prefix)) == 0,
	    "Location is the return_url with & appended");
	CHECK(loc_is(&r, "status", "connected"), "status=connected");
	CHECK(loc_is(&r, "link_id", fl.link_id), "link_id in Location");
	CHECK(loc_is(&r, "x", "1"), "return_url's own query kept");
	cid = loc_param(&r, "connection_id");
	CHECK(cid != NULL && cid[0] != '\0', "connection_id in Location");
	CHECK(loc != NULL && h_leaks(loc, strlen(loc)) == 0,
	    "no code or token in the Location");
	h_resp_free(&r);

	CHECK(h_sbx_count("/auth/token") == 1,
	    "exactly one /auth/token "
	    "request");
	req = h_sbx_last_request("/auth/token");
	CHECK(req && h_jstr(req, "content_type") &&
	        strncmp(h_jstr(req, "content_type"), "application/json", 16) ==
	            0,
	    "token format json: application/json body");
	if (req != NULL) {
		struct json_object *b = json_tokener_parse(
		    h_jstr(req, "body") ? h_jstr(req, "body") : "");

		CHECK(h_jstr(b, "grant_type") &&
		        strcmp(h_jstr(b, "grant_type"), "authorization_code") ==
		            0,
		    "grant_type authorization_code");
		json_object_put(b);
	}
	json_object_put(req);

	o = NULL;
	st = fl.link_id ? link_status(f_json, fl.link_id, &o) : NULL;
	CHECK(st && strcmp(st, "connected") == 0, "GET link: connected");
	CHECK(cid && h_jstr(o, "connection_id") &&
	        strcmp(h_jstr(o, "connection_id"), cid) == 0,
	    "GET link: the same connection_id");
	CHECK(has_string_member(o, "completed_at"), "GET link: completed_at");
	CHECK(h_jnull(o, "reason"), "GET link: reason null");
	free(st);
	json_object_put(o);

	if (cid != NULL)
		check_connection(cid, "u-happy");

	/* the same callback again: state already used */
	h_http("GET", fl.callback, NULL, NULL, 0, &r);
	CHECK(r.status == 400, "replayed callback 400 (got %ld)", r.status);
	CHECK(h_resp_header(&r, "Content-Type") &&
	        strstr(h_resp_header(&r, "Content-Type"), "text/html"),
	    "replayed callback answers HTML");
	check_callback_headers(&r, "replayed callback");
	h_resp_free(&r);
	CHECK(h_sbx_count("/auth/token") == 1,
	    "replay: still exactly one "
	    "/auth/token request");
	CHECK(fl.link_id && link_status_is(f_json, fl.link_id, "connected"),
	    "replay leaves the link connected");
	free(cid);
	flow_free(&fl);

	h_api(f_json, "GET",
	    "/v1/connections/00000000-0000-4000-8000-"
	    "000000000000",
	    NULL, &r);
	CHECK(r.status == 404 && h_err_code(&r) &&
	        strcmp(h_err_code(&r), "not_found") == 0,
	    "unknown connection 404 not_found (got %ld)", r.status);
	h_resp_free(&r);
	h_api(f_json, "GET", "/v1/links/00000000-0000-4000-8000-000000000000",
	    NULL, &r);
	CHECK(r.status == 404 && h_err_code(&r) &&
	        strcmp(h_err_code(&r), "not_found") == 0,
	    "unknown link 404 not_found (got %ld)", r.status);
	h_resp_free(&r);
}

/* A callback with a changed parameter must be refused before any code
 * exchange; afterwards the genuine callback still works. */
static void
test_tampered(const char *param, const char *what)
{
	struct flow fl;
	struct h_resp r;
	char value[64];
	char *bad;

	h_sbx_reset();
	if (!flow_widget(f_json, "u-tamper", H_RETURN_URL, "approve", &fl)) {
		CHECK(0, "%s: could not open a flow", what);
		flow_free(&fl);
		return;
	}
	if (strcmp(param, "flow_id") == 0)
		snprintf(value, sizeof(value),
		    "11111111-2222-4333-8444-555555555555");
	else
		snprintf(value, sizeof(value),
		    "AAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKK");
	bad = h_qreplace(fl.callback, param, value);
	h_http("GET", bad, NULL, NULL, 0, &r);
	CHECK(r.status == 400, "%s: 400 (got %ld)", what, r.status);
	check_callback_headers(&r, what);
	h_resp_free(&r);
	free(bad);
	CHECK(h_sbx_count("/auth/token") == 0, "%s: code never sent to finX",
	    what);
	if (strcmp(param, "state") == 0) {
		/* an unknown state consumed nothing: the real one works */
		h_http("GET", fl.callback, NULL, NULL, 0, &r);
		CHECK(r.status == 303 && loc_is(&r, "status", "connected"),
		    "%s: the genuine callback still connects (got %ld)", what,
		    r.status);
		h_resp_free(&r);
	}
	flow_free(&fl);
}

static void
test_cancel(const char *flag)
{
	struct flow fl;
	struct h_resp r;
	char what[64], *v;

	snprintf(what, sizeof(what), "cancel with %s=true", flag);
	h_sbx_reset();
	if (!flow_widget(f_json, "u-cancel", H_RETURN_URL, "cancel", &fl)) {
		CHECK(0, "%s: could not open a flow", what);
		flow_free(&fl);
		return;
	}
	v = h_qparam(fl.callback, flag);
	CHECK(v && strcmp(v, "true") == 0, "%s: sandbox sent it", what);
	free(v);
	h_http("GET", fl.callback, NULL, NULL, 0, &r);
	CHECK(r.status == 303, "%s: 303 (got %ld)", what, r.status);
	CHECK(loc_is(&r, "status", "cancelled"), "%s: status=cancelled", what);
	CHECK(loc_is(&r, "reason", "user_cancelled"),
	    "%s: reason=user_cancelled", what);
	CHECK(loc_is(&r, "link_id", fl.link_id), "%s: link_id", what);
	check_callback_headers(&r, what);
	h_resp_free(&r);
	CHECK(link_status_is(f_json, fl.link_id, "cancelled"),
	    "%s: link cancelled", what);
	CHECK(h_sbx_count("/auth/token") == 0, "%s: no /auth/token", what);
	flow_free(&fl);
}

static void
test_failed_flow(void)
{
	struct flow fl;
	struct h_resp r;
	char *reason;

	h_sbx_reset();
	if (!flow_widget(f_json, "u-fail", H_RETURN_URL, "fail", &fl)) {
		CHECK(0, "failed flow: could not open a flow");
		flow_free(&fl);
		return;
	}
	h_http("GET", fl.callback, NULL, NULL, 0, &r);
	CHECK(r.status == 303, "failed flow: 303 (got %ld)", r.status);
	CHECK(loc_is(&r, "status", "failed"), "failed flow: status=failed");
	reason = loc_param(&r, "reason");
	CHECK(reason && reason[0] && strcmp(reason, "user_cancelled") != 0,
	    "failed flow: a reason that is not user_cancelled");
	free(reason);
	check_callback_headers(&r, "failed flow");
	h_resp_free(&r);
	CHECK(link_status_is(f_json, fl.link_id, "failed"),
	    "failed flow: link failed");
	CHECK(h_sbx_count("/auth/token") == 0, "failed flow: no /auth/token");
	flow_free(&fl);
}

static void
test_form_encoding(void)
{
	struct json_object *req;
	char *cid;
	const char *ct, *body;

	h_sbx_reset();
	cid = h_connect(f_form, "u-form");
	CHECK(cid != NULL, "token format form: connected");
	req = h_sbx_last_request("/auth/token");
	ct = h_jstr(req, "content_type");
	body = h_jstr(req, "body");
	CHECK(ct && strncmp(ct, "application/x-www-form-urlencoded", 33) == 0,
	    "token format form: application/x-www-form-urlencoded");
	CHECK(body && strstr(body, "grant_type=authorization_code"),
	    "token format form: grant_type in the form body");
	json_object_put(req);
	free(cid);
}

/* With 4 KB tokens the token endpoint hands back exactly what finX
 * issued. */
static void
test_big_tokens(void)
{
	struct h_resp r;
	char *cid;
	const char *tok;
	char **issued;
	int n, i;
	bool found = false;

	CHECK(sbx_ok(h_sbx_post("/_sandbox/config", "{\"token_bytes\":4096}")),
	    "sandbox token_bytes 4096");
	cid = h_connect(f_json, "u-big");
	CHECK(cid != NULL, "4 KB tokens: connected");
	if (cid == NULL)
		return;
	h_conn_api(f_json, "GET", cid, "token", &r);
	tok = h_jstr(h_resp_json(&r), "access_token");
	CHECK(r.status == 200, "GET token 200 (got %ld)", r.status);
	CHECK(has_string_member(h_resp_json(&r), "expires_at"),
	    "GET token: expires_at");
	issued = h_sbx_issued(&n);
	for (i = 0; tok != NULL && i < n; i++)
		if (strcmp(issued[i], tok) == 0)
			found = true;
	CHECK(tok && strlen(tok) >= 4096, "access token length %zu >= 4096",
	    tok ? strlen(tok) : 0);
	CHECK(found, "access token: %s the sandbox's",
	    found ? "match" : "mismatch");
	/* the leak scan itself must see an issued token */
	CHECK(tok && h_leaks(tok, strlen(tok)) >= 1,
	    "h_leaks finds an issued "
	    "token");
	h_strv_free(issued, n);
	h_resp_free(&r);
	free(cid);
	h_sbx_post("/_sandbox/config", "{\"token_bytes\":600}");
}

/* Nothing secret in finxd's log, nor plain tokens in the database. */
static void
test_no_leaks(void)
{
	char **issued;
	char *log, *dump;
	size_t len;
	int n, i, in_log = 0, in_db = 0;

	issued = h_sbx_issued(&n);
	log = h_log_read(&len);
	dump = h_db_dump(db);
	CHECK(n >= 6, "the sandbox issued tokens and codes (%d)", n);
	CHECK(len > 1000, "finxd wrote a log (%zu bytes)", len);
	CHECK(strlen(dump) > 0 && strstr(dump, "u-happy") != NULL,
	    "the database dump has the rows (%zu bytes)", strlen(dump));
	for (i = 0; i < n; i++) {
		if (memmem(log, len, issued[i], strlen(issued[i])))
			in_log++;
		if (strstr(dump, issued[i]) != NULL)
			in_db++;
	}
	CHECK(in_log == 0,
	    "no issued token or code in finxd's log (%d of %d"
	    " found)",
	    in_log, n);
	CHECK(in_db == 0,
	    "no issued token or code in plain text in the "
	    "database (%d of %d found)",
	    in_db, n);
	CHECK(memmem(log, len, h_client_secret(), strlen(h_client_secret())) ==
	        NULL,
	    "client secret not in the log");
	CHECK(memmem(log, len, h_api_key(), strlen(h_api_key())) == NULL,
	    "API key not in the log");
	CHECK(memmem(log, len, h_token_key() + 3, strlen(h_token_key() + 3)) ==
	        NULL,
	    "token key not in the log");
	CHECK(strstr(dump, h_client_secret()) == NULL &&
	        strstr(dump, h_api_key()) == NULL,
	    "no secret in the database");
	h_strv_free(issued, n);
	free(log);
	free(dump);
}

/*
 * Every registered statement parsed against the schema when connections
 * opened (server/STORE.md), and the run used the mode it was registered
 * for (meson runs this suite once more with FINXD_DB_PREPARED=off).
 */
static void
check_statements(void)
{
	const char *mode = getenv("FINXD_TEST_DB_PREPARED");
	bool off = mode != NULL && strcmp(mode, "off") == 0;

	CHECK(!h_log_contains("statements not prepared"),
	    "every statement prepared when its connection opened");
	CHECK(h_log_contains(off ? "\"db_prepared\":\"off\""
				 : "\"db_prepared\":\"on\""),
	    "finxd served with prepared statements %s", off ? "off" : "on");
}

int
main(void)
{
	h_init("it_flow", 240);
	db = h_setup(NULL);
	h_env_set("FINXD_FINX_TOKEN_FORMAT", "json");
	f_json = h_finxd_start();
	h_env_set("FINXD_FINX_TOKEN_FORMAT", "form");
	f_form = h_finxd_start();
	h_env_set("FINXD_FINX_TOKEN_FORMAT", NULL);

	test_health();
	test_happy_path();
	test_tampered("state", "unknown state");
	test_tampered("flow_id", "forged flow_id");
	test_cancel("abort");
	CHECK(sbx_ok(h_sbx_post("/_sandbox/config",
	          "{\"cancel_param\":\"cancel\"}")),
	    "sandbox switched to cancel=true");
	test_cancel("cancel");
	h_sbx_post("/_sandbox/config", "{\"cancel_param\":\"abort\"}");
	test_failed_flow();
	test_form_encoding();
	test_big_tokens();
	test_metrics();
	test_no_leaks();
	check_statements();
	check_clean_shutdown();
	return h_done(test_done());
}
