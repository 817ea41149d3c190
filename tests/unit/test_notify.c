/*
 * The pure pieces of finX notifications (notify.h): the secret's form
 * and hash, the access log's spelling of notify paths, the registration
 * body, and both answer forms of POST /rest/notifications.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"
#include "secret.h"
#include "test.h"

static void
test_secret(void)
{
	char *s = state_new(), *h1, *h2;
	char bad[NOTIFY_SECRET_LEN + 2];

	CHECK(notify_secret_ok(s), "a fresh secret (state_new) has the form");
	memset(bad, 'A', sizeof(bad));
	bad[NOTIFY_SECRET_LEN] = '\0';
	CHECK(notify_secret_ok(bad), "43 base64url characters pass");
	bad[5] = '+';
	CHECK(!notify_secret_ok(bad), "'+' (plain base64) is refused");
	bad[5] = '=';
	CHECK(!notify_secret_ok(bad), "padding is refused");
	bad[5] = 'A';
	bad[NOTIFY_SECRET_LEN - 1] = '\0';
	CHECK(!notify_secret_ok(bad), "42 characters are refused");
	bad[NOTIFY_SECRET_LEN - 1] = 'A';
	bad[NOTIFY_SECRET_LEN] = 'A';
	bad[NOTIFY_SECRET_LEN + 1] = '\0';
	CHECK(!notify_secret_ok(bad), "44 characters are refused");
	CHECK(!notify_secret_ok("") && !notify_secret_ok(NULL),
	    "empty and NULL are refused");
	h1 = notify_secret_hash(s);
	h2 = notify_secret_hash(s);
	CHECK(strlen(h1) == 64 && strspn(h1, "0123456789abcdef") == 64,
	    "the hash is 64 lower-case hex digits");
	CHECK(strcmp(h1, h2) == 0, "the same secret hashes alike");
	CHECK(strstr(h1, s) == NULL, "the hash does not contain the secret");
	free(h2);
	h2 = notify_secret_hash("abc");
	CHECK(strcmp(h2, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb4"
			 "10ff61f20015ad") == 0,
	    "SHA-256 of \"abc\" (FIPS 180-2)");
	free(h1);
	free(h2);
	free_secret(s);
}

static void
test_log_path(void)
{
	CHECK(strcmp(notify_log_path("/finx/notify/abcdefsecret"),
		  NOTIFY_PATH_LOGGED) == 0,
	    "a notify path is logged redacted");
	CHECK(strcmp(notify_log_path("/finx/notify/"), NOTIFY_PATH_LOGGED) ==
		0,
	    "the bare prefix too");
	CHECK(strcmp(notify_log_path("/finx/notify"), NOTIFY_PATH_LOGGED) == 0,
	    "and the path without its last slash");
	CHECK(strcmp(notify_log_path("/finx/notify/a/b/c"),
		  NOTIFY_PATH_LOGGED) == 0,
	    "and deeper paths (unmatched, may still carry a secret)");
	CHECK(strcmp(notify_log_path("/finx/notifyX"), "/finx/notifyX") == 0,
	    "another path is logged as it is");
	CHECK(strcmp(notify_log_path("/v1/links"), "/v1/links") == 0,
	    "/v1/links is logged as it is");
	CHECK(notify_log_path(NULL) == NULL, "NULL stays NULL");
}

static void
test_body(void)
{
	json_object *o = notify_body("https://finxd.example", "SeCrEt",
	    "A1.2", "row-1"), *v;
	bool ok;

	ok = json_object_object_get_ex(o, "observe_key", &v) &&
	    strcmp(json_object_get_string(v),
		"/rest/accounts/A1.2/transactions?include_pending=1") == 0;
	CHECK(ok, "observe_key: the account's new transactions");
	ok = json_object_object_get_ex(o, "notify_uri", &v) &&
	    strcmp(json_object_get_string(v),
		"https://finxd.example/finx/notify/SeCrEt") == 0;
	CHECK(ok, "notify_uri: public URL, /finx/notify/, the secret");
	ok = json_object_object_get_ex(o, "state", &v) &&
	    strcmp(json_object_get_string(v), "row-1") == 0;
	CHECK(ok, "state: the row's id");
	CHECK(json_object_object_length(o) == 3, "nothing else");
	json_object_put(o);
	o = notify_body("http://x", "s", "a/b?c", "r");
	ok = json_object_object_get_ex(o, "observe_key", &v) &&
	    strcmp(json_object_get_string(v),
		"/rest/accounts/a%2Fb%3Fc/transactions?include_pending=1") == 0;
	CHECK(ok, "an odd account id is percent-encoded into one segment");
	json_object_put(o);
}

static const char *
answer(const char *json)
{
	static char out[256];
	json_object *o = json_tokener_parse(json);
	const char *id = notify_answer_id(o);

	out[0] = '\0';
	if (id != NULL)
		snprintf(out, sizeof(out), "%s", id);
	json_object_put(o);
	return id != NULL ? out : NULL;
}

static bool
answer_is(const char *json, const char *want)
{
	const char *got = answer(json);

	return want == NULL ? got == NULL : got != NULL && !strcmp(got, want);
}

static void
test_answer(void)
{
	CHECK(answer_is("{\"notification_id\":\"N1.2\",\"observe_key\":\"/r\","
			"\"notify_uri\":\"http://x/y\",\"state\":null}",
		  "N1.2"),
	    "the whole notification: its notification_id");
	CHECK(answer_is("{\"notification_id\":\"N7\"}", "N7"),
	    "the legacy SDKs' {notification_id}");
	CHECK(answer_is("{\"id\":\"abc-1\"}", "abc-1"), "an \"id\" member");
	CHECK(answer_is("{}", NULL), "no id: none");
	CHECK(answer_is("{\"notification_id\":5}", NULL), "a number: none");
	CHECK(answer_is("{\"notification_id\":\"\"}", NULL), "empty: none");
	CHECK(answer_is("{\"notification_id\":\"a/b\"}", NULL),
	    "a slash (not one path segment): none");
	CHECK(answer_is("{\"notification_id\":\"..\"}", NULL),
	    "a dot segment: none");
	CHECK(answer_is("{\"notification_id\":\"a b\"}", NULL),
	    "a space: none");
	CHECK(answer_is("[\"N1\"]", NULL), "an array: none");
	CHECK(notify_answer_id(NULL) == NULL, "NULL: none");
}

int
main(void)
{
	test_secret();
	test_log_path();
	test_body();
	test_answer();
	return test_done();
}
