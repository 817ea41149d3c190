/*
 * AES-256-GCM sealing of tokens with OpenSSL's EVP interface.  See crypto.h
 * for the stored format.  Keys stay in the config; nothing here logs.
 */
#include "crypto.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "encode.h"
#include "mem.h"
#include "secret.h"

#define NONCE_LEN 12
#define TAG_LEN 16

static const struct config *kcfg;
/* Plain-text rows are read until this is set (rekey.c decides). */
static atomic_bool plain_refused;

void
crypto_init(const struct config *cfg)
{
	kcfg = cfg;
}

void
crypto_refuse_plaintext(bool refuse)
{
	atomic_store(&plain_refused, refuse);
}

bool
crypto_plaintext_refused(void)
{
	return atomic_load(&plain_refused);
}

char *
crypto_aad(const char *table, const char *id, const char *column)
{
	return xasprintf("%s:%s:%s", table, id, column);
}

static const struct token_key *
key_by_id(const char *id, size_t n)
{
	size_t i;

	for (i = 0; i < kcfg->n_token_keys; i++)
		if (strlen(kcfg->token_keys[i].id) == n &&
		    memcmp(kcfg->token_keys[i].id, id, n) == 0)
			return &kcfg->token_keys[i];
	return NULL;
}

char *
crypto_seal(const char *plain, const char *aad)
{
	const struct token_key *k = &kcfg->token_keys[0];
	size_t plen = strlen(plain);
	unsigned char *out = xmalloc(NONCE_LEN + plen + TAG_LEN);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int len, ok;
	char *b64, *res;

	if (ctx == NULL)
		abort();
	rand_bytes(out, NONCE_LEN);
	ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, out) &&
	    EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)aad,
		(int)strlen(aad)) &&
	    EVP_EncryptUpdate(ctx, out + NONCE_LEN, &len,
		(const unsigned char *)plain, (int)plen) &&
	    EVP_EncryptFinal_ex(ctx, out + NONCE_LEN + len, &len) &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
		out + NONCE_LEN + plen);
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		abort(); /* only on a broken libcrypto */
	b64 = b64url_encode(out, NONCE_LEN + plen + TAG_LEN);
	res = xasprintf("v1:%s:%s", k->id, b64);
	free(b64);
	free(out);
	return res;
}

/*
 * Decrypt raw (nonce, n bytes of ciphertext, tag) with k and aad into
 * plain (n bytes); false when the tag does not match.
 */
static bool
gcm_open(const struct token_key *k, const char *aad, unsigned char *raw,
    long n, char *plain)
{
	EVP_CIPHER_CTX *ctx;
	int len, ok;

	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		abort();
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, raw) &&
	    EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)aad,
		(int)strlen(aad)) &&
	    EVP_DecryptUpdate(ctx, (unsigned char *)plain, &len,
		raw + NONCE_LEN, (int)n) &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
		raw + NONCE_LEN + n) &&
	    EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + len, &len) > 0;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

char *
crypto_open(const char *stored, const char *aad, bool *legacy)
{
	const struct token_key *k;
	const char *kid, *colon;
	unsigned char *raw = NULL;
	char *plain = NULL;
	long n;
	bool ok;

	if (legacy != NULL)
		*legacy = false;
	if (strncmp(stored, "v1:", 3) != 0) {
		if (legacy != NULL)
			*legacy = true;
		return atomic_load(&plain_refused) ? NULL : xstrdup(stored);
	}
	kid = stored + 3;
	if ((colon = strchr(kid, ':')) == NULL)
		return NULL;
	if ((k = key_by_id(kid, (size_t)(colon - kid))) == NULL)
		return NULL;
	n = b64url_decode(colon + 1, &raw);
	if (n < NONCE_LEN + TAG_LEN) {
		free(raw);
		return NULL;
	}
	n -= NONCE_LEN + TAG_LEN;
	plain = xmalloc((size_t)n + 1);
	ok = gcm_open(k, aad, raw, n, plain);
	free(raw);
	plain[n] = '\0';
	/* A token with a NUL inside is not one we wrote. */
	if (!ok || strlen(plain) != (size_t)n) {
		OPENSSL_cleanse(plain, (size_t)n);
		free(plain);
		return NULL;
	}
	return plain;
}

bool
crypto_needs_rekey(const char *stored)
{
	const char *id = kcfg->token_keys[0].id;
	size_t n = strlen(id);

	return strncmp(stored, "v1:", 3) != 0 ||
	    strncmp(stored + 3, id, n) != 0 || stored[3 + n] != ':';
}
