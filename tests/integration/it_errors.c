/*
 * Error paths: API authentication and input validation, return_url allow
 * list, finX unreachable / failing / slow when a link is created, the token
 * exchange failing or timing out at the callback, and expired states.
 */
#include "it_common.h"

#include <ctype.h>
#include <unistd.h>

static const char *db;
static int f_main;    /* defaults */
static int f_timeout; /* FINXD_FINX_TIMEOUT_MS=2000 */
static int f_ttl;     /* FINXD_STATE_TTL=1 */
static int f_down;    /* FINXD_FINX_URL points at a closed port */
static char closed_port[16]; /* that port */

static void
test_auth(void)
{
	static const char body[] = "{\"user_id\":\"u1\"}";
	char bearer[128], wrong[128];
	struct h_resp r;

	snprintf(bearer, sizeof(bearer), "Bearer %s", h_api_key());
	snprintf(wrong, sizeof(wrong), "Bearer %sx", h_api_key());

	h_links_post_raw(f_main, NULL, "application/json", body, strlen(body),
	    &r);
	CHECK(r.status == 401 && h_err_is(&r, "unauthorized"),
	    "no Authorization: 401 unauthorized (got %ld)", r.status);
	CHECK(h_leaks(r.body, r.body_len) == 0, "401 body holds no secret");
	h_resp_free(&r);
	h_links_post_raw(f_main, wrong, "application/json", body, strlen(body),
	    &r);
	CHECK(r.status == 401 && h_err_is(&r, "unauthorized"),
	    "wrong key: 401 unauthorized (got %ld)", r.status);
	h_resp_free(&r);
	h_links_post_raw(f_main, "Bearer ", "application/json", body,
	    strlen(body), &r);
	CHECK(r.status == 401, "empty bearer: 401 (got %ld)", r.status);
	h_resp_free(&r);
	{
		char basic[160];

		snprintf(basic, sizeof(basic), "Basic %s", h_api_key());
		h_links_post_raw(f_main, basic, "application/json", body,
		    strlen(body), &r);
		CHECK(r.status == 401, "Basic scheme: 401 (got %ld)", r.status);
		h_resp_free(&r);
	}
	h_links_post_raw(f_main, bearer, "text/plain", body, strlen(body), &r);
	CHECK(r.status == 415, "text/plain body: 415 (got %ld)", r.status);
	h_resp_free(&r);
	/* the positive control: the same request with the right key */
	h_links_post_raw(f_main, bearer, "application/json", body, strlen(body),
	    &r);
	CHECK(r.status == 201, "right key: 201 (got %ld)", r.status);
	h_resp_free(&r);
}

static void
test_bad_bodies(void)
{
	struct {
		const char *what;
		const char *body;
		size_t len; /* 0: strlen */
	} cases[] = {
		{ "empty body", "", 0 },
		{ "truncated JSON", "{\"user_id\":\"u1\"", 0 },
		{ "not an object", "[\"u1\"]", 0 },
		{ "a bare string", "\"u1\"", 0 },
		{ "missing user_id", "{\"return_url\":\"" H_RETURN_URL "\"}",
		    0 },
		{ "user_id not a string", "{\"user_id\":42}", 0 },
		{ "user_id null", "{\"user_id\":null}", 0 },
		{ "empty user_id", "{\"user_id\":\"\"}", 0 },
		{ "user_id with a control char", "{\"user_id\":\"u\\u0001x\"}",
		    0 },
		{ "user_id with a newline", "{\"user_id\":\"u\\nx\"}", 0 },
		{ "user_id with invalid UTF-8", "{\"user_id\":\"u\xff\xfex\"}",
		    0 },
		{ "user_id with a NUL escape", "{\"user_id\":\"u\\u0000x\"}",
		    0 },
		{ "return_url not a string",
		    "{\"user_id\":\"u1\",\"return_url\":5}", 0 },
		{ "trailing garbage", "{\"user_id\":\"u1\"} x", 0 },
	};
	char bearer[128], big[400];
	struct h_resp r;
	size_t i;

	snprintf(bearer, sizeof(bearer), "Bearer %s", h_api_key());
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len =
		    cases[i].len ? cases[i].len : strlen(cases[i].body);

		h_links_post_raw(f_main, bearer, "application/json",
		    cases[i].body, len, &r);
		CHECK(r.status == 400 && h_err_is(&r, "invalid_request"),
		    "%s: 400 invalid_request (got %ld, %s)", cases[i].what,
		    r.status, h_err_code(&r) ? h_err_code(&r) : "-");
		h_resp_free(&r);
	}

	/* 256 bytes is one too many; 255 is fine */
	memset(big, 'a', sizeof(big));
	snprintf(big, sizeof(big), "{\"user_id\":\"%.*s\"}", 256,
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	h_links_post_raw(f_main, bearer, "application/json", big, strlen(big),
	    &r);
	CHECK(r.status == 400 && h_err_is(&r, "invalid_request"),
	    "user_id of 256 bytes: 400 invalid_request (got %ld)", r.status);
	h_resp_free(&r);
	snprintf(big, sizeof(big), "{\"user_id\":\"%.*s\"}", 255,
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	h_links_post_raw(f_main, bearer, "application/json", big, strlen(big),
	    &r);
	CHECK(r.status == 201, "user_id of 255 bytes: 201 (got %ld)", r.status);
	h_resp_free(&r);
	/* multi-byte UTF-8 is fine and reaches finX unchanged */
	h_sbx_reset();
	h_links_post_raw(f_main, bearer, "application/json",
	    "{\"user_id\":\"Zo\xc3\xab \xe2\x82\xac\"}",
	    strlen("{\"user_id\":\"Zo\xc3\xab \xe2\x82\xac\"}"), &r);
	CHECK(r.status == 201, "UTF-8 user_id: 201 (got %ld)", r.status);
	h_resp_free(&r);
	{
		struct json_object *req = h_sbx_last_request("/ongoing/access");
		struct json_object *b = json_tokener_parse(
		    h_jstr(req, "body") ? h_jstr(req, "body") : "");

		CHECK(h_jstr(b, "user_id") &&
		        strcmp(h_jstr(b, "user_id"),
		            "Zo\xc3\xab \xe2\x82\xac") == 0,
		    "UTF-8 user_id passed to finX unchanged");
		json_object_put(b);
		json_object_put(req);
	}
}

/* The body finX received for the last POST /ongoing/access (put it). */
static struct json_object *
finx_flow_body(void)
{
	struct json_object *req = h_sbx_last_request("/ongoing/access");
	struct json_object *b = json_tokener_parse(
	    h_jstr(req, "body") ? h_jstr(req, "body") : "");

	json_object_put(req);
	return b;
}

/* The JSON text of member key of o, "-" when absent. */
static const char *
member_text(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return "-";
	return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
		JSON_C_TO_STRING_NOSLASHESCAPE);
}

/*
 * Every widget field of SPEC's POST /v1/links reaches finX as
 * finx-api.md section 1 documents it: accounts as {"id": ...} objects
 * (given as objects or as IBAN strings), the others as given (issue 13,
 * finding 6: the accounts field answered 400 or went to finX as strings).
 */
static void
test_widget_fields(void)
{
	static const char body[] =
	    "{\"user_id\":\"u-widget\",\"language\":\"en\","
	    "\"provider_id\":\"74bab9d2-9f60-4ab1-be63-706e67b99f58\","
	    "\"accounts\":[{\"id\":\"DE89370400440532013000\"},"
	    "\"DE02120300000000202051\"],"
	    "\"account_types\":[\"Giro account\"],"
	    "\"allow_multi_selection\":false,\"sync_period\":30,"
	    "\"save_secrets\":true,\"tracking_id\":\"campaign-7\"}";
	static const char *const want[][2] = {
		{ "language", "\"en\"" },
		{ "provider_id", "\"74bab9d2-9f60-4ab1-be63-706e67b99f58\"" },
		{ "accounts", "[{\"id\":\"DE89370400440532013000\"},"
			      "{\"id\":\"DE02120300000000202051\"}]" },
		{ "account_types", "[\"Giro account\"]" },
		{ "allow_multi_selection", "false" },
		{ "sync_period", "30" },
		{ "save_secrets", "true" },
		{ "tracking_id", "\"campaign-7\"" },
		{ "user_id", "\"u-widget\"" },
	};
	struct json_object *b;
	struct h_resp r;
	char bearer[128];
	size_t i;

	snprintf(bearer, sizeof(bearer), "Bearer %s", h_api_key());
	h_sbx_reset();
	h_links_post_raw(f_main, bearer, "application/json", body,
	    strlen(body), &r);
	CHECK(r.status == 201, "every widget field: 201 (got %ld)", r.status);
	h_resp_free(&r);
	b = finx_flow_body();
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		CHECK(strcmp(member_text(b, want[i][0]), want[i][1]) == 0,
		    "widget field %s reaches finX as %s (got %s)", want[i][0],
		    want[i][1], member_text(b, want[i][0]));
	json_object_put(b);
}

static void
test_return_urls(void)
{
	static const char *const bad[] = {
		"https://evil.example/",
		"//evil",
		"javascript:alert(1)",
		"https://partner.example/",
		"http://partner.example/return",
		"https://partner.example.evil.example/return",
	};
	struct h_resp r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h_link_create(f_main, "u-ret", bad[i], &r);
		CHECK(r.status == 400 && h_err_is(&r, "return_url_not_allowed"),
		    "return_url \"%s\": 400 return_url_not_allowed (got %ld, "
		    "%s)",
		    bad[i], r.status, h_err_code(&r) ? h_err_code(&r) : "-");
		h_resp_free(&r);
	}
	h_link_create(f_main, "u-ret", "https://partner.example/return", &r);
	CHECK(r.status == 201, "the allowed prefix itself: 201 (got %ld)",
	    r.status);
	h_resp_free(&r);
}

/*
 * The first of the words of finX's transport (libcurl's, its host and
 * port) in r's body, case aside, or NULL: answers say "finX is not
 * available" and leave the rest to the log.
 */
static const char *
transport_word(const struct h_resp *r)
{
	const char *const words[] = { "127.0.0.1", closed_port, "curl",
		"connect", "port", "milliseconds", "timed out after" };
	char *low = h_dup(r->body ? r->body : "");
	const char *hit = NULL;
	size_t i;

	for (i = 0; low[i]; i++)
		low[i] = (char)tolower((unsigned char)low[i]);
	for (i = 0; i < sizeof(words) / sizeof(words[0]) && !hit; i++)
		if (strstr(low, words[i]) != NULL)
			hit = words[i];
	free(low);
	return hit;
}

/* POST /v1/links while finX misbehaves. */
static void
test_finx_down(void)
{
	struct h_resp r;
	const char *w;
	char *in_log;

	h_link_create(f_down, "u-down", H_RETURN_URL, &r);
	CHECK(r.status == 503 && h_err_is(&r, "finx_unavailable"),
	    "finX unreachable: 503 finx_unavailable (got %ld, %s)", r.status,
	    h_err_code(&r) ? h_err_code(&r) : "-");
	CHECK(h_leaks(r.body, r.body_len) == 0,
	    "finX unreachable: no secret"
	    " in the answer");
	w = transport_word(&r);
	CHECK(w == NULL, "finX unreachable: the answer names no host, port or "
			 "libcurl detail (\"%s\")", w ? w : "none");
	h_resp_free(&r);
	in_log = h_fmt("port %s", closed_port);
	CHECK(h_log_contains(in_log),
	    "finX unreachable: the transport's detail is in the log");
	free(in_log);

	h_sbx_reset();
	CHECK(sbx_ok(h_sbx_post("/_sandbox/faults",
	          "{\"path\":\"/ongoing/access\","
	          "\"mode\":\"status\",\"status\":500,\"count\":1}")),
	    "sandbox fault: /ongoing/access 500");
	h_link_create(f_main, "u-down", H_RETURN_URL, &r);
	CHECK(r.status == 502 && h_err_is(&r, "finx_error"),
	    "finX 500: 502 finx_error (got %ld, %s)", r.status,
	    h_err_code(&r) ? h_err_code(&r) : "-");
	CHECK(h_leaks(r.body, r.body_len) == 0,
	    "finX 500: no secret in the "
	    "answer");
	h_resp_free(&r);

	h_sbx_reset();
	h_sbx_post("/_sandbox/faults",
	    "{\"path\":\"/ongoing/access\","
	    "\"mode\":\"close\",\"count\":1}");
	h_link_create(f_main, "u-down", H_RETURN_URL, &r);
	CHECK((r.status == 503 && h_err_is(&r, "finx_unavailable")) ||
	        (r.status == 502 && h_err_is(&r, "finx_error")),
	    "finX closes the connection: 502/503 (got %ld, %s)", r.status,
	    h_err_code(&r) ? h_err_code(&r) : "-");
	h_resp_free(&r);
	CHECK(h_sbx_count("/ongoing/access") == 1,
	    "finX closes the "
	    "connection: no silent resend (%d requests)",
	    h_sbx_count("/ongoing/access"));

	h_sbx_reset();
	h_sbx_post("/_sandbox/faults",
	    "{\"path\":\"/ongoing/access\","
	    "\"mode\":\"badjson\",\"count\":1}");
	h_link_create(f_main, "u-down", H_RETURN_URL, &r);
	CHECK(r.status == 502 && h_err_is(&r, "finx_error"),
	    "finX answers bad JSON: 502 finx_error (got %ld, %s)", r.status,
	    h_err_code(&r) ? h_err_code(&r) : "-");
	h_resp_free(&r);

	h_sbx_reset();
	h_sbx_post("/_sandbox/faults",
	    "{\"path\":\"/ongoing/access\","
	    "\"mode\":\"delay\",\"delay_ms\":5000,\"count\":1}");
	h_link_create(f_timeout, "u-down", H_RETURN_URL, &r);
	CHECK(r.status == 503 && h_err_is(&r, "finx_unavailable"),
	    "finX too slow: 503 finx_unavailable (got %ld, %s)", r.status,
	    h_err_code(&r) ? h_err_code(&r) : "-");
	CHECK(r.ms < 4000, "finX too slow: answered in %ld ms (< 4000)", r.ms);
	w = transport_word(&r);
	CHECK(w == NULL, "finX too slow: the answer names no libcurl detail "
			 "(\"%s\")", w ? w : "none");
	h_resp_free(&r);
	h_sbx_reset();

	/* and the positive control: finX healthy again */
	h_link_create(f_main, "u-down", H_RETURN_URL, &r);
	CHECK(r.status == 201, "finX healthy again: 201 (got %ld)", r.status);
	h_resp_free(&r);
}

/* The code exchange fails: the partner hears token_exchange_failed. */
static void
test_token_exchange(const char *fault, int f, const char *what)
{
	struct flow fl;
	struct h_resp r;

	h_sbx_reset();
	if (!flow_widget(f, "u-tok", H_RETURN_URL, "approve", &fl)) {
		CHECK(0, "%s: could not open a flow", what);
		flow_free(&fl);
		return;
	}
	CHECK(sbx_ok(h_sbx_post("/_sandbox/faults", fault)),
	    "%s: sandbox fault set", what);
	h_http("GET", fl.callback, NULL, NULL, 0, &r);
	CHECK(r.status == 303, "%s: 303 (got %ld)", what, r.status);
	CHECK(loc_is(&r, "status", "failed"), "%s: status=failed", what);
	CHECK(loc_is(&r, "reason", "token_exchange_failed"),
	    "%s: reason=token_exchange_failed", what);
	CHECK(r.ms < 4000, "%s: answered in %ld ms (< 4000)", what, r.ms);
	check_callback_headers(&r, what);
	h_resp_free(&r);
	/* the sandbox may record a delayed request only when it is done */
	if (strstr(fault, "delay") != NULL)
		h_sleep_ms(3500);
	CHECK(h_sbx_count("/auth/token") == 1,
	    "%s: one /auth/token attempt "
	    "(%d)",
	    what, h_sbx_count("/auth/token"));
	CHECK(link_status_is(f, fl.link_id, "failed"), "%s: link failed", what);
	flow_free(&fl);
	h_sbx_reset();
}

static void
test_expired_state(void)
{
	struct flow fl;
	struct h_resp r;

	h_sbx_reset();
	if (!flow_widget(f_ttl, "u-ttl", H_RETURN_URL, "approve", &fl)) {
		CHECK(0, "expired state: could not open a flow");
		flow_free(&fl);
		return;
	}
	h_sleep_ms(2200);
	h_http("GET", fl.callback, NULL, NULL, 0, &r);
	CHECK(r.status == 400, "expired state: 400 (got %ld)", r.status);
	check_callback_headers(&r, "expired state");
	h_resp_free(&r);
	CHECK(h_sbx_count("/auth/token") == 0,
	    "expired state: code never "
	    "sent to finX");
	CHECK(link_status_is(f_ttl, fl.link_id, "expired"),
	    "expired state: link expired");
	flow_free(&fl);
}

/* Scoped API keys: each key reaches only what its scopes allow. */
static void
test_scopes(const char *links_key, const char *read_key)
{
	static const char body[] = "{\"user_id\":\"u-scope\"}";
	char conn[256], tok[256];
	struct h_resp r;
	char *cid = h_connect(f_main, "u-scope");

	CHECK(cid != NULL, "scopes: connected with the full key");
	if (cid == NULL)
		return;
	snprintf(conn, sizeof(conn), "/v1/connections/%s", cid);
	snprintf(tok, sizeof(tok), "/v1/connections/%s/token", cid);

	h_api_key_call(f_main, links_key, "POST", "/v1/links", body, &r);
	CHECK(r.status == 201, "links key: POST /v1/links 201 (got %ld)",
	    r.status);
	h_resp_free(&r);
	h_api_key_call(f_main, links_key, "GET", conn, NULL, &r);
	CHECK(r.status == 403, "links key: GET connection 403 (got %ld)",
	    r.status);
	h_resp_free(&r);
	h_api_key_call(f_main, links_key, "GET", tok, NULL, &r);
	CHECK(r.status == 403 && h_leaks(r.body, r.body_len) == 0,
	    "links key: GET token 403 (got %ld)", r.status);
	h_resp_free(&r);

	h_api_key_call(f_main, read_key, "POST", "/v1/links", body, &r);
	CHECK(r.status == 403, "read key: POST /v1/links 403 (got %ld)",
	    r.status);
	h_resp_free(&r);
	h_api_key_call(f_main, read_key, "GET", conn, NULL, &r);
	CHECK(r.status == 200, "read key: GET connection 200 (got %ld)",
	    r.status);
	h_resp_free(&r);
	h_api_key_call(f_main, read_key, "GET", tok, NULL, &r);
	CHECK(r.status == 403 && h_leaks(r.body, r.body_len) == 0,
	    "read key: GET token 403 (got %ld)", r.status);
	h_resp_free(&r);

	h_api(f_main, "GET", tok, NULL, &r);
	CHECK(r.status == 200, "full key: GET token 200 (got %ld)", r.status);
	h_resp_free(&r);
	free(cid);
}

int
main(void)
{
	char closed[64], keys[256];
	char *links_key, *read_key;

	h_init("it_errors", 240);
	db = h_setup(NULL);
	links_key = h_secret_new(40);
	read_key = h_secret_new(40);
	snprintf(keys, sizeof(keys), "%s,%s:links,%s:read", h_api_key(),
	    links_key, read_key);
	h_env_set("FINXD_API_KEYS", keys);
	f_main = h_finxd_start();
	h_env_set("FINXD_FINX_TIMEOUT_MS", "2000");
	h_env_set("FINXD_FINX_CONNECT_TIMEOUT_MS", "1000");
	f_timeout = h_finxd_start();
	h_env_set("FINXD_FINX_TIMEOUT_MS", NULL);
	h_env_set("FINXD_FINX_CONNECT_TIMEOUT_MS", NULL);
	h_env_set("FINXD_STATE_TTL", "1");
	f_ttl = h_finxd_start();
	h_env_set("FINXD_STATE_TTL", NULL);
	snprintf(closed_port, sizeof(closed_port), "%d", h_free_port());
	snprintf(closed, sizeof(closed), "http://127.0.0.1:%s", closed_port);
	h_env_set("FINXD_FINX_URL", closed);
	f_down = h_finxd_start();
	h_env_set("FINXD_FINX_URL", h_sandbox_url());

	test_auth();
	test_scopes(links_key, read_key);
	test_bad_bodies();
	test_widget_fields();
	test_return_urls();
	test_finx_down();
	test_token_exchange("{\"path\":\"/auth/token\",\"mode\":\"status\","
	                    "\"status\":500,\"count\":1}",
	    f_main, "token endpoint 500");
	test_token_exchange("{\"path\":\"/auth/token\",\"mode\":\"delay\","
	                    "\"delay_ms\":5000,\"count\":1}",
	    f_timeout, "token endpoint too slow");
	test_token_exchange("{\"path\":\"/auth/token\",\"mode\":\"close\","
	                    "\"count\":1}",
	    f_main, "token endpoint closes the connection");
	test_expired_state();
	check_log_clean();
	check_clean_shutdown();
	return h_done(test_done());
}
