/*
 * webhook.c's pure parts: the Standard Webhooks 1.0 signature (the
 * specification's own example vector, then two secrets), the retry
 * schedule (first retry within 10 s, doubling, at most an hour,
 * Retry-After only on 429/503 and within 1 s to an hour), the types
 * literal, and the configuration of secrets (whsec_ prefix, length).
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "webhook.h"

static struct webhook_secret
secret(const char *b64)
{
	struct config cfg;
	struct config_errors e = { 0 };
	struct webhook_secret s = { 0 };
	char *env[] = { "FINXD_FINX_CLIENT_ID=x", "FINXD_FINX_CLIENT_SECRET=y",
		"FINXD_TOKEN_KEYS=k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"FINXD_WEBHOOK_URL=http://127.0.0.1:1/h", NULL, NULL };
	char *w = NULL;

	if (asprintf(&w, "FINXD_WEBHOOK_SECRET=%s", b64) < 0)
		abort();
	env[4] = w;
	if (config_load(&cfg, NULL, env, &e) && cfg.n_webhook_secrets == 1) {
		s.len = cfg.webhook_secrets[0].len;
		s.key = malloc(s.len);
		memcpy(s.key, cfg.webhook_secrets[0].key, s.len);
	}
	config_free(&cfg);
	config_errors_free(&e);
	free(w);
	return s;
}

static bool
config_ok(const char *secrets)
{
	struct config cfg;
	struct config_errors e = { 0 };
	char *w = NULL;
	bool ok;
	char *env[] = { "FINXD_FINX_CLIENT_ID=x", "FINXD_FINX_CLIENT_SECRET=y",
		"FINXD_TOKEN_KEYS=k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"FINXD_WEBHOOK_URL=http://127.0.0.1:1/h", NULL, NULL };

	if (secrets != NULL && asprintf(&w, "FINXD_WEBHOOK_SECRET=%s",
				   secrets) < 0)
		abort();
	env[4] = w;
	ok = config_load(&cfg, NULL, env, &e);
	config_free(&cfg);
	config_errors_free(&e);
	free(w);
	return ok;
}

static void
test_signature(void)
{
	struct webhook_secret s[2];
	const char *body = "{\"test\": 2432232314}";
	char *sig;

	s[0] = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
	CHECK(s[0].len == 24, "a whsec_ secret decodes to its 24 bytes");
	sig = webhook_signature(s, 1, "msg_p5jXN8AQM9LWM0D4loKWxJek",
	    1614265330, body, strlen(body));
	CHECK(strcmp(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") ==
		0,
	    "the Standard Webhooks example vector");
	free(sig);
	s[1] = secret("whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHMh");
	sig = webhook_signature(s, 2, "msg_p5jXN8AQM9LWM0D4loKWxJek",
	    1614265330, body, strlen(body));
	CHECK(strncmp(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= "
			   "v1,",
		  51) == 0 &&
		strchr(sig + 51, ' ') == NULL && strlen(sig) == 95,
	    "two secrets: two space-separated v1 entries, the first one's "
	    "first");
	free(sig);
	free(s[0].key);
	free(s[1].key);
}

static void
test_config(void)
{
	CHECK(config_ok("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "one secret");
	CHECK(config_ok("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, "
			"whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHMh"),
	    "two secrets");
	CHECK(!config_ok(NULL), "a URL needs a secret");
	CHECK(!config_ok("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
	    "without whsec_: refused");
	CHECK(!config_ok("whsec_c2hvcnQ="), "too short: refused");
	CHECK(!config_ok("whsec_!!!"), "not base64: refused");
}

static void
test_retry(void)
{
	long d, prev = 0;
	unsigned r;
	int a;

	for (r = 0; r < 1000; r += 7) {
		d = webhook_retry_delay(1, 500, -1, r);
		if (d < 5 || d > 10)
			break;
	}
	CHECK(r >= 1000, "the first retry comes within 5 to 10 s");
	for (a = 1; a <= 40; a++) {
		long lo = webhook_retry_delay(a, 0, -1, 0);
		long hi = webhook_retry_delay(a, 0, -1, 0xffffffu);

		if (lo < prev / 2 || hi > 3600 || lo > hi)
			break;
		prev = lo;
	}
	CHECK(a > 40, "doubling, never more than an hour apart");
	CHECK(webhook_retry_delay(12, 0, -1, 0) >= 1800,
	    "late retries are about an hour apart");
	CHECK(webhook_retry_delay(1, 429, 120, 0) == 120,
	    "Retry-After on a 429 is honoured");
	CHECK(webhook_retry_delay(1, 503, 999999, 0) == 3600,
	    "Retry-After is capped at an hour");
	CHECK(webhook_retry_delay(1, 503, 0, 0) == 1, "and at least 1 s");
	d = webhook_retry_delay(1, 500, 120, 5);
	CHECK(d >= 5 && d <= 10, "Retry-After on a 500 is not honoured");
}

static void
test_types(void)
{
	char *t[] = { "link.completed", "sync.failed" };
	char *l = webhook_types_literal(t, 2);

	CHECK(strcmp(l, "{link.completed,sync.failed}") == 0, "types literal");
	free(l);
	CHECK(webhook_types_literal(t, 0) == NULL, "no types: every type");
}

int
main(void)
{
	test_signature();
	test_config();
	test_retry();
	test_types();
	return test_done();
}
