/*
 * finx-sandbox: starting and stopping it, and its control API
 * (/_sandbox/...).
 */
#include "harness_int.h"

#include <sys/wait.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- finx-sandbox ---------------------------------------------------- */

const char *
h_sandbox_url(void)
{
	return hs_sbx.url;
}

static long
h_sbx_call(const char *method, const char *path, const char *json,
    struct h_resp *r)
{
	char *url = h_fmt("%s%s", hs_sbx.url, path);
	const char *hdrs[] = { "Content-Type: application/json", NULL };

	h_http(method, url, json ? hdrs : NULL, json, json ? strlen(json) : 0,
	    r);
	free(url);
	return r->status;
}

const char *
h_sandbox_start(const char *const *extra)
{
	const char *exe = getenv("SANDBOX_EXE");
	char *portfile = h_path("sbx.port");
	char *errlog = h_path("sandbox.log");
	char *argv[40];
	long end;
	int a = 0, i;

	if (exe == NULL)
		h_bail("SANDBOX_EXE is not set (run through meson test)");
	if (hs_sbx.pid > 0)
		h_sandbox_stop();
	unlink(portfile);
	argv[a++] = (char *)exe;
	argv[a++] = "--listen";
	argv[a++] = "127.0.0.1:0";
	argv[a++] = "--port-file";
	argv[a++] = portfile;
	argv[a++] = "--client-id";
	argv[a++] = "test-client";
	argv[a++] = "--client-secret";
	argv[a++] = hs_client_secret;
	for (i = 0; extra != NULL && extra[i] != NULL && a < 39; i++)
		argv[a++] = (char *)extra[i];
	argv[a] = NULL;
	hs_sbx.pid = h_spawn(argv, NULL, errlog, errlog, true);

	end = h_now_ms() + 15000;
	hs_sbx.port = 0;
	while (h_now_ms() < end) {
		char *s = h_read_file(portfile, NULL);
		int st;

		if (s != NULL) {
			long p = strtol(s, NULL, 10);

			free(s);
			if (p > 0 && p < 65536 && hs_sbx.port == 0) {
				struct h_resp r;

				hs_sbx.port = (int)p;
				snprintf(hs_sbx.url, sizeof(hs_sbx.url),
				    "http://127.0.0.1:%d", hs_sbx.port);
				h_sbx_call("GET", "/_sandbox/stats", NULL, &r);
				if (r.status != 200)
					hs_sbx.port = 0;
				h_resp_free(&r);
				if (hs_sbx.port != 0)
					break;
			}
		}
		if (waitpid(hs_sbx.pid, &st, WNOHANG) == hs_sbx.pid) {
			hs_sbx.pid = 0;
			h_bail("finx-sandbox exited with %d before it was ready"
			       " (see sandbox.log)",
			    h_status_code(st));
		}
		h_sleep_ms(20);
	}
	free(portfile);
	free(errlog);
	if (hs_sbx.port == 0)
		h_bail("finx-sandbox did not become ready in 15 s");
	return hs_sbx.url;
}

int
h_sandbox_stop(void)
{
	int rc = -1;

	if (hs_sbx.pid > 0)
		rc = h_kill_wait(hs_sbx.pid, SIGTERM);
	hs_sbx.pid = 0;
	return rc;
}

long
h_sbx_post(const char *path, const char *json)
{
	struct h_resp r;
	long st = h_sbx_call("POST", path, json, &r);

	h_resp_free(&r);
	return st;
}

long
h_sbx_delete(const char *path)
{
	struct h_resp r;
	long st = h_sbx_call("DELETE", path, NULL, &r);

	h_resp_free(&r);
	return st;
}

struct json_object *
h_sbx_get(const char *path)
{
	struct h_resp r;
	struct json_object *o = NULL;

	if (h_sbx_call("GET", path, NULL, &r) == 200 && h_resp_json(&r)) {
		o = json_object_get(r.json);
	}
	h_resp_free(&r);
	return o;
}

bool
h_sbx_config(const char *json)
{
	return h_sbx_post("/_sandbox/config", json) / 100 == 2;
}

long
h_stat_of(struct json_object *st, const char *name)
{
	return h_jlong(st, name, -1);
}

long
h_sbx_stat(const char *name)
{
	struct json_object *st = h_sbx_get("/_sandbox/stats");
	long v = h_stat_of(st, name);

	json_object_put(st);
	return v;
}

long
h_sbx_grants(const char *user, const char *which)
{
	char *path = h_fmt("/_sandbox/grants?user_id=%s", user);
	struct json_object *g = h_sbx_get(path);
	long v = h_stat_of(g, which);

	json_object_put(g);
	free(path);
	return v;
}

bool
h_token_works(const char *tok)
{
	struct h_resp r;
	char *url, *auth;
	bool ok;

	if (tok == NULL)
		return false;
	url = h_fmt("%s/rest/accounts", h_sandbox_url());
	auth = h_fmt("Authorization: Bearer %s", tok);
	{
		const char *hdrs[] = { auth, NULL };

		h_http("GET", url, hdrs, NULL, 0, &r);
	}
	ok = r.status == 200;
	h_resp_free(&r);
	free(url);
	free(auth);
	return ok;
}

void
h_sbx_reset(void)
{
	if (h_sbx_delete("/_sandbox/requests") / 100 != 2 ||
	    h_sbx_delete("/_sandbox/faults") / 100 != 2)
		h_bail("cannot reset the sandbox");
}

static struct json_object *
h_sbx_requests(void)
{
	struct json_object *o = h_sbx_get("/_sandbox/requests"), *a;

	if (o == NULL)
		return NULL;
	if (!json_object_object_get_ex(o, "requests", &a) ||
	    !json_object_is_type(a, json_type_array)) {
		json_object_put(o);
		return NULL;
	}
	a = json_object_get(a);
	json_object_put(o);
	return a;
}

int
h_sbx_count(const char *path)
{
	struct json_object *a = h_sbx_requests();
	size_t i;
	int n = 0;

	if (a == NULL)
		return -1;
	for (i = 0; i < json_object_array_length(a); i++) {
		const char *p = h_jstr(json_object_array_get_idx(a, i), "path");

		if (p != NULL && strcmp(p, path) == 0)
			n++;
	}
	json_object_put(a);
	return n;
}

struct json_object *
h_sbx_last_request(const char *path)
{
	struct json_object *a = h_sbx_requests(), *found = NULL;
	size_t i;

	if (a == NULL)
		return NULL;
	for (i = 0; i < json_object_array_length(a); i++) {
		struct json_object *q = json_object_array_get_idx(a, i);
		const char *p = h_jstr(q, "path");

		if (p != NULL && strcmp(p, path) == 0)
			found = q;
	}
	if (found != NULL)
		json_object_get(found);
	json_object_put(a);
	return found;
}

long
h_sbx_json(const char *method, const char *path, const char *json,
    struct json_object **ret)
{
	struct h_resp r;
	long st = h_sbx_call(method, path, json, &r);

	if (ret != NULL)
		*ret = h_resp_json(&r) != NULL ? json_object_get(r.json)
		                               : NULL;
	h_resp_free(&r);
	return st;
}

long
h_sbx_bank(const char *what, const char *json, struct json_object **ret)
{
	char *path = h_fmt("/_sandbox/transactions/%s", what);
	long st = h_sbx_json("POST", path, json, ret);

	free(path);
	return st;
}

long
h_sbx_bank_user(const char *user, const char *what, const char *rest,
    struct json_object **ret)
{
	char *body = h_fmt("{\"user_id\":\"%s\"%s%s}", user,
	    rest != NULL ? "," : "", rest != NULL ? rest : "");
	long st = h_sbx_bank(what, body, ret);

	free(body);
	return st;
}

long
h_sbx_fire(const char *user, const char *extra, struct json_object **ret)
{
	struct json_object *u = json_object_new_string(user);
	char *body = h_fmt("{\"user_id\":%s%s}", json_object_to_json_string(u),
	    extra != NULL ? extra : "");
	long st =
	    h_sbx_json("POST", "/_sandbox/notifications/fire", body, ret);

	json_object_put(u);
	free(body);
	return st;
}

long
h_sbx_rest(const char *tok, const char *method, const char *path,
    const char *json, struct h_resp *r)
{
	char *url = h_fmt("%s%s", hs_sbx.url, path);
	char *auth = h_fmt("Authorization: Bearer %s", tok);
	const char *hdrs[] = { auth, "Content-Type: application/json", NULL };

	if (json == NULL)
		hdrs[1] = NULL;
	h_http(method, url, hdrs, json, json != NULL ? strlen(json) : 0, r);
	free(auth);
	free(url);
	return r->status;
}

/* The one refresh token a mint of one grant answered (malloc'd) or NULL. */
static char *
h_sbx_mint_one(const char *prefix)
{
	struct json_object *p = json_object_new_string(prefix);
	struct json_object *o = NULL, *arr;
	char *body = h_fmt("{\"user_id_prefix\":%s,\"count\":1}",
	    json_object_to_json_string(p));
	char *rt = NULL;

	if (h_sbx_json("POST", "/_sandbox/grants", body, &o) == 200 &&
	    json_object_object_get_ex(o, "refresh_tokens", &arr) &&
	    json_object_array_length(arr) == 1)
		rt = h_dup(json_object_get_string(
		    json_object_array_get_idx(arr, 0)));
	json_object_put(o);
	json_object_put(p);
	free(body);
	return rt;
}

char *
h_sbx_access(const char *prefix)
{
	char *rt = h_sbx_mint_one(prefix), *url, *basic, *body, *at = NULL;
	struct h_resp r;

	if (rt == NULL)
		return NULL;
	url = h_fmt("%s/auth/token", hs_sbx.url);
	basic = h_fmt("test-client:%s", hs_client_secret);
	body = h_fmt("grant_type=refresh_token&refresh_token=%s", rt);
	{
		char *b64 = malloc(strlen(basic) / 3 * 4 + 8), *auth;
		const char *hdrs[] = { NULL,
			"Content-Type: application/x-www-form-urlencoded",
			NULL };

		if (b64 == NULL)
			h_bail("out of memory");
		h_base64((const unsigned char *)basic, strlen(basic), b64);
		auth = h_fmt("Authorization: Basic %s", b64);
		hdrs[0] = auth;
		h_http("POST", url, hdrs, body, strlen(body), &r);
		free(auth);
		free(b64);
	}
	if (r.status == 200)
		at = h_dup(h_jstr(h_resp_json(&r), "access_token"));
	h_resp_free(&r);
	free(body);
	free(basic);
	free(url);
	free(rt);
	return at;
}
