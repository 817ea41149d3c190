/*
 * Secrets and the randomness they come from: the kernel CSPRNG and the
 * random values made from it (OAuth state, UUID v4), SHA-256 digests,
 * constant-time comparison and wiping a secret before it is freed.
 */
#ifndef FINXD_SECRET_H
#define FINXD_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/* Overwrite a secret and free it; NULL-safe. */
void free_secret(char *s);

/* Constant-time equality of two byte strings of possibly different length. */
bool ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* SHA-256 of p[0..n) into out. */
void sha256(const void *p, size_t n, unsigned char out[32]);

/* Fill p with n bytes from the kernel CSPRNG (getrandom); aborts on error. */
void rand_bytes(void *p, size_t n);
/* A new random UUID v4 in canonical lower-case text form (caller frees). */
char *uuid_new(void);
/* A fresh OAuth state: 32 random bytes, base64url without padding (43). */
char *state_new(void);

#endif
