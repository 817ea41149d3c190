/*
 * finxd rekey: re-encrypt every stored secret with the first key of
 * FINXD_TOKEN_KEYS, and encrypt legacy plain-text rows.
 */
#ifndef FINXD_REKEY_H
#define FINXD_REKEY_H

#include <stdbool.h>

struct config;

/* Runs in batches under row locks; safe while other finxd serve. */
bool rekey_run(const struct config *cfg);

#endif
