/*
 * Unit tests for crypto.c: AES-256-GCM sealing of tokens at rest, the
 * AAD binding to table/row/column, tamper detection, key ids, rekeying
 * and legacy plain text rows.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "buf.h"
#include "config.h"
#include "crypto.h"
#include "encode.h"
#include "mem.h"
#include "secret.h"
#include "test.h"

static unsigned char k1_raw[32], k2_raw[32];
static char *k1_b64, *k2_b64;

static void load_keys(struct config *, const char *);
static bool opens_to(const char *, const char *, const char *);
static bool refused(const char *, const char *);
static char *seal_with(const unsigned char *, const char *, const char *,
    const void *, size_t);
static void test_round_trip(const char *);
static void test_aad(const char *);
static void test_tamper(const char *);
static void test_keys(void);
static void test_legacy(void);

/* A config with FINXD_TOKEN_KEYS=spec ("%1" is k1, "%2" is k2). */
static void
load_keys(struct config *cfg, const char *spec)
{
	struct config_errors e = { 0 };
	struct buf b;
	char *env, *envp[4];

	buf_init(&b, 4096);
	buf_append_str(&b, "FINXD_TOKEN_KEYS=");
	for (const char *p = spec; *p; p++) {
		if (p[0] == '%' && (p[1] == '1' || p[1] == '2')) {
			buf_append_str(&b, p[1] == '1' ? k1_b64 : k2_b64);
			p++;
		} else
			buf_append(&b, p, 1);
	}
	env = buf_steal(&b);
	envp[0] = (char *)"FINXD_FINX_CLIENT_ID=c";
	envp[1] = (char *)"FINXD_FINX_CLIENT_SECRET=s";
	envp[2] = env;
	envp[3] = NULL;
	if (!config_load(cfg, NULL, envp, &e)) {
		fprintf(stderr, "config_load failed: %s\n", e.lines[0]);
		abort();
	}
	config_errors_free(&e);
	free(env);
}

/* crypto_open(stored, aad) gives want and no legacy flag. */
static bool
opens_to(const char *stored, const char *aad, const char *want)
{
	bool legacy = true;
	char *p = crypto_open(stored, aad, &legacy);
	bool ok = p != NULL && strcmp(p, want) == 0 && !legacy;

	free_secret(p);
	return ok;
}

static bool
refused(const char *stored, const char *aad)
{
	bool legacy = true;
	char *p = crypto_open(stored, aad, &legacy);
	bool ok = p == NULL && !legacy;

	free_secret(p);
	return ok;
}

/* Seal plain[0..n) by hand, as crypto_seal would with key/id. */
static char *
seal_with(const unsigned char *key, const char *id, const char *aad,
    const void *plain, size_t n)
{
	unsigned char *out = xmalloc(12 + n + 16);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	char *b64, *res;
	int len;

	rand_bytes(out, 12);
	if (ctx == NULL ||
	    !EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out) ||
	    !EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)aad,
		(int)strlen(aad)) ||
	    !EVP_EncryptUpdate(ctx, out + 12, &len, plain, (int)n) ||
	    !EVP_EncryptFinal_ex(ctx, out + 12 + len, &len) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + n))
		abort();
	EVP_CIPHER_CTX_free(ctx);
	b64 = b64url_encode(out, 12 + n + 16);
	res = xasprintf("v1:%s:%s", id, b64);
	free(b64);
	free(out);
	return res;
}

static void
test_round_trip(const char *aad)
{
	char *big = xmalloc(8193), *s1, *s2;
	size_t i;

	s1 = crypto_seal("x", aad);
	CHECK(strncmp(s1, "v1:k1:", 6) == 0, "sealed form starts v1:k1:");
	CHECK(strspn(s1 + 6, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
			     "vwxyz0123456789-_") == strlen(s1 + 6),
	    "payload is base64url");
	CHECK(opens_to(s1, aad, "x"), "1-char token round trip");
	s2 = crypto_seal("x", aad);
	CHECK(strcmp(s1, s2) != 0, "two seals of one value differ (nonce)");
	CHECK(opens_to(s2, aad, "x"), "second seal opens too");
	free(s1);
	free(s2);

	s1 = crypto_seal("", aad);
	CHECK(opens_to(s1, aad, ""), "empty token round trip");
	free(s1);

	for (i = 0; i < 8192; i++)
		big[i] = "abcdefghijklmnopqrstuvwxyz0123456789-._~"[i % 40];
	big[8192] = '\0';
	s1 = crypto_seal(big, aad);
	CHECK(opens_to(s1, aad, big), "8 KB token round trip");
	free(s1);
	free(big);

	s1 = crypto_seal("J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80", aad);
	CHECK(opens_to(s1, aad, "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80"),
	    "UTF-8 token round trip");
	free(s1);
}

static void
test_aad(const char *aad)
{
	char *other_row = crypto_aad("connections",
	    "00000000-0000-4000-8000-000000000002", "refresh_token");
	char *other_col = crypto_aad("connections",
	    "00000000-0000-4000-8000-000000000001", "access_token");
	char *other_tab = crypto_aad("links",
	    "00000000-0000-4000-8000-000000000001", "refresh_token");
	char *s = crypto_seal("refresh-token-value", aad);

	CHECK(strcmp(aad, "connections:00000000-0000-4000-8000-000000000001:"
			  "refresh_token") == 0,
	    "crypto_aad is table:id:column");
	CHECK(opens_to(s, aad, "refresh-token-value"), "opens with its AAD");
	CHECK(refused(s, other_row), "other row id: refused");
	CHECK(refused(s, other_col), "other column: refused");
	CHECK(refused(s, other_tab), "other table: refused");
	CHECK(refused(s, ""), "empty AAD: refused");
	free(s);
	free(other_row);
	free(other_col);
	free(other_tab);
}

static void
test_tamper(const char *aad)
{
	char *s = crypto_seal("token-0123456789", aad), *t;
	const char *payload = s + 6;
	unsigned char *raw = NULL;
	long n = b64url_decode(payload, &raw), i;
	size_t len = strlen(s), j;
	bool all = true;

	CHECK(n == 12 + 16 + 16, "payload is nonce + ciphertext + tag (%ld)",
	    n);
	/* Flip each bit position 0 and 7 of every byte in turn. */
	for (i = 0; i < n && all; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			char *b64;

			raw[i] ^= (unsigned char)(1u << bit);
			b64 = b64url_encode(raw, (size_t)n);
			t = xasprintf("v1:k1:%s", b64);
			if (!refused(t, aad))
				all = false;
			free(t);
			free(b64);
			raw[i] ^= (unsigned char)(1u << bit);
		}
	}
	CHECK(all, "a flipped bit in any payload byte is refused");
	free(raw);

	/* Every truncation of the text is refused. */
	all = true;
	for (j = 6; j < len; j++) {
		t = xstrndup(s, j);
		if (!refused(t, aad))
			all = false;
		free(t);
	}
	CHECK(all, "every truncation refused");
	t = xasprintf("%sA", s);
	CHECK(refused(t, aad), "one extra character refused");
	free(t);
	t = xasprintf("%sAAAA", s);
	CHECK(refused(t, aad), "four extra characters refused");
	free(t);
	t = xstrdup(s);
	t[6] = t[6] == 'A' ? 'B' : 'A';
	CHECK(refused(t, aad), "changed first payload character refused");
	free(t);
	t = xstrdup(s);
	t[len - 1] = '=';
	CHECK(refused(t, aad), "padding character refused");
	free(t);
	t = xasprintf("v1:k1:%s", "");
	CHECK(refused(t, aad), "empty payload refused");
	free(t);
	CHECK(refused("v1:", aad), "\"v1:\" refused");
	CHECK(refused("v1:k1", aad), "no payload separator refused");
	t = xasprintf("v1::%s", payload);
	CHECK(refused(t, aad), "empty key id refused");
	free(t);
	t = xasprintf("v1:k9:%s", payload);
	CHECK(refused(t, aad), "unknown key id refused");
	free(t);
	t = xasprintf("v1:K1:%s", payload);
	CHECK(refused(t, aad), "key id is case-sensitive");
	free(t);
	t = xasprintf("v1:k:%s", payload);
	CHECK(refused(t, aad), "key id prefix k refused");
	free(t);
	free(s);

	/* A NUL inside the plain text: not a token we wrote. */
	t = seal_with(k1_raw, "k1", aad, "ab\0cd", 5);
	CHECK(refused(t, aad), "plain text with an embedded NUL refused");
	free(t);
	t = seal_with(k1_raw, "k1", aad, "abcd", 4);
	CHECK(opens_to(t, aad, "abcd"), "hand-sealed value opens (format)");
	free(t);
	/* Right id, wrong key material. */
	t = seal_with(k2_raw, "k1", aad, "abcd", 4);
	CHECK(refused(t, aad), "value under id k1 with other key refused");
	free(t);
}

static void
test_keys(void)
{
	struct config a, b, only1;
	char *aad = crypto_aad("connections", "id-1", "access_token");
	char *s, *s1, *plain;
	bool legacy = true;

	load_keys(&a, "k1:%1,k2:%2");
	load_keys(&b, "k2:%2,k1:%1");
	load_keys(&only1, "k1:%1");

	crypto_init(&b);
	s = crypto_seal("sealed-with-k2", aad);
	CHECK(strncmp(s, "v1:k2:", 6) == 0, "the first key (k2) encrypts");
	CHECK(!crypto_needs_rekey(s), "k2 value under k2-first: no rekey");

	crypto_init(&a);
	plain = crypto_open(s, aad, &legacy);
	CHECK(plain != NULL && strcmp(plain, "sealed-with-k2") == 0 && !legacy,
	    "a value sealed with k2 opens when k1 is first");
	free_secret(plain);
	CHECK(crypto_needs_rekey(s), "... and needs a rekey");
	s1 = crypto_seal("sealed-with-k1", aad);
	CHECK(strncmp(s1, "v1:k1:", 6) == 0 && !crypto_needs_rekey(s1),
	    "k1 value under k1-first: no rekey");
	CHECK(crypto_needs_rekey("legacy-plain"), "legacy value needs a rekey");
	CHECK(crypto_needs_rekey("v1:k10:AAAA"), "id k10 is not k1");
	CHECK(crypto_needs_rekey("v1:k"), "id k is not k1");
	CHECK(crypto_needs_rekey(""), "empty value needs a rekey");

	crypto_init(&only1);
	CHECK(refused(s, aad), "k2 value with k2 removed: refused");
	CHECK(opens_to(s1, aad, "sealed-with-k1"), "k1 value still opens");

	free(s);
	free(s1);
	free(aad);
	config_free(&a);
	config_free(&b);
	config_free(&only1);
}

static void
test_legacy(void)
{
	struct config a;
	bool legacy = false;
	char *p;

	load_keys(&a, "k1:%1");
	crypto_init(&a);
	p = crypto_open("plain-legacy-token", "connections:x:access_token",
	    &legacy);
	CHECK(p != NULL && strcmp(p, "plain-legacy-token") == 0 && legacy,
	    "legacy plain text returned as is, legacy set");
	free_secret(p);
	legacy = false;
	p = crypto_open("", "aad", &legacy);
	CHECK(p != NULL && p[0] == '\0' && legacy, "empty legacy value");
	free_secret(p);
	p = crypto_open("V1:k1:AAAA", "aad", NULL);
	CHECK(p != NULL && strcmp(p, "V1:k1:AAAA") == 0,
	    "legacy flag pointer may be NULL");
	free_secret(p);

	/* Once refused (rekey sealed every row, or off): NULL, flag set. */
	crypto_refuse_plaintext(true);
	legacy = false;
	p = crypto_open("plain-legacy-token", "connections:x:access_token",
	    &legacy);
	CHECK(p == NULL && legacy && crypto_plaintext_refused(),
	    "refused: a plain-text row does not open, legacy set");
	p = crypto_open("", "aad", NULL);
	CHECK(p == NULL, "refused: nor an empty one");
	p = crypto_seal("still-sealed", "aad");
	{
		char *q = crypto_open(p, "aad", &legacy);

		CHECK(q != NULL && strcmp(q, "still-sealed") == 0 && !legacy,
		    "refused: sealed values still open");
		free_secret(q);
	}
	free(p);
	crypto_refuse_plaintext(false);
	p = crypto_open("plain-legacy-token", "aad", NULL);
	CHECK(p != NULL, "read again once allowed");
	free_secret(p);
	config_free(&a);
}

int
main(void)
{
	struct config cfg;
	char *aad;

	for (int i = 0; i < 32; i++) {
		k1_raw[i] = (unsigned char)(i * 11 + 3);
		k2_raw[i] = (unsigned char)(200 - i * 5);
	}
	k1_b64 = b64_encode(k1_raw, 32);
	k2_b64 = b64_encode(k2_raw, 32);

	load_keys(&cfg, "k1:%1,k2:%2");
	crypto_init(&cfg);
	aad = crypto_aad("connections", "00000000-0000-4000-8000-000000000001",
	    "refresh_token");
	test_round_trip(aad);
	test_aad(aad);
	test_tamper(aad);
	free(aad);
	config_free(&cfg);

	test_keys();
	test_legacy();

	free(k1_b64);
	free(k2_b64);
	return test_done();
}
