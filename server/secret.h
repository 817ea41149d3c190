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
/* The same for n bytes that need not be a C string. */
void free_secret_n(void *p, size_t n);

/*
 * json-c keeps what it parses and prints in buffers of its own, freed
 * without wiping; these wipe what finxd can reach of them.
 *
 * wipe_json: every string in o and below (values; names are not
 * secrets), before json_object_put.  o must not share a string with
 * anything still in use.  NULL-safe.
 */
struct json_object;
struct json_tokener;
void wipe_json(struct json_object *o);
/* The text json_object_to_json_string_length returned (json-c's printbuf,
 * alive until its object is put): wipe it before the put. */
void wipe_json_text(const char *s, size_t n);
/* A tokener's scratch buffer (the strings it decoded), before its free. */
void tokener_wipe(struct json_tokener *tok);

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
