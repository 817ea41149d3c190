/*
 * Tokens at rest: AES-256-GCM with a random 96-bit nonce per value, the
 * key id and format version in the stored text, and additional
 * authenticated data that binds a ciphertext to its table, row and column
 * (so a value copied to another row does not decrypt).
 *
 * Stored form: "v1:<key id>:<base64url(nonce | ciphertext | tag)>".
 */
#ifndef FINXD_CRYPTO_H
#define FINXD_CRYPTO_H

#include <stdbool.h>

#include "config.h"

/* Keys come from cfg->token_keys; the first one encrypts. */
void crypto_init(const struct config *cfg);

/* "connections:<id>:refresh_token": the AAD for one column of one row. */
char *crypto_aad(const char *table, const char *id, const char *column);

/* Encrypt plain with the first key; returns the stored form (caller frees). */
char *crypto_seal(const char *plain, const char *aad);

/*
 * Decrypt a stored value.  Returns the plain text (free with free_secret)
 * or NULL when the key id is unknown, the AAD does not match or the value
 * was tampered with.  A value without the "v1:" prefix is a legacy plain
 * text row: *legacy is set, and it is returned as is, or NULL once
 * crypto_refuse_plaintext(true) was called.
 */
char *crypto_open(const char *stored, const char *aad, bool *legacy);

/* Refuse (true) or read (false, the start) legacy plain-text rows. */
void crypto_refuse_plaintext(bool refuse);
bool crypto_plaintext_refused(void);

/* True when stored is not encrypted with the first (current) key. */
bool crypto_needs_rekey(const char *stored);

#endif
