/*
 * finxd rekey: re-encrypt every stored secret with the first key of
 * FINXD_TOKEN_KEYS, and encrypt legacy plain-text rows.
 */
#ifndef FINXD_REKEY_H
#define FINXD_REKEY_H

#include <stdbool.h>

#include <libpq-fe.h>

struct config;

/*
 * Runs in batches under row locks; safe while other finxd serve.  When
 * every value is then sealed it records so in the database: from then on
 * FINXD_ALLOW_PLAINTEXT_TOKENS=auto refuses plain-text rows.
 */
bool rekey_run(const struct config *cfg);

/*
 * FINXD_ALLOW_PLAINTEXT_TOKENS with what the database says: on reads
 * plain-text rows, off refuses them, auto refuses them once rekey has
 * recorded every row sealed (crypto_refuse_plaintext).  False on a
 * database failure, with nothing changed.
 */
bool rekey_policy_apply(const struct config *cfg, PGconn *c);
/* On auto while still reading them: refuse from when rekey records. */
void rekey_policy_poll(PGconn *c);

#endif
