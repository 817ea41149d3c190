/*
 * Deterministic bank data per finX user: two accounts (a giro account and
 * a credit card), their transactions, the access that holds them and its
 * manual syncs. All functions require the state lock.
 */
#ifndef SBX_DATA_H
#define SBX_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "sbx_util.h"

#define SBX_NACCOUNTS 2
#define SBX_SYNCS_PER_DAY 4

struct sbx_txn {
	long idx; /* i of T<n>.<k>.<i> */
	char id[48];
	int64_t cents;
	int cp; /* counterparty */
	int purpose;
	int kind;
	int64_t booking_s;
	long booking_us;
	int64_t value_s;
	bool fmt_z; /* ".000Z" dates, else "+00:00" with micros */
	bool booked;
	int64_t created_ms;
	int64_t modified_ms;
};

struct sbx_account {
	int k; /* 1: giro, 2: credit card */
	char id[32];
	char number[24];
	char iban[40]; /* "" for the card */
	int64_t opening_cents;
	int64_t credit_line_cents;
	int64_t limit_cents;
	struct sbx_txn *tx; /* oldest first */
	size_t ntx;
	size_t captx;
};

struct sbx_sync {
	char id[37];
	int64_t created_ms;
	long step_ms;
	bool fail;
};

struct sbx_user {
	char *user_id;
	unsigned long n;
	uint64_t rng;
	char access_id[32];
	char access_method_id[37];
	char owner[64];
	int64_t created_ms;
	struct sbx_account acc[SBX_NACCOUNTS];
	struct sbx_vec syncs; /* owned struct sbx_sync, oldest first */
};

/* Finds or creates the user; owned by the state. */
struct sbx_user *data_user_get(const char *);
struct sbx_user *data_user_find(const char *);
void data_user_free(struct sbx_user *);
struct sbx_account *data_account_find(struct sbx_user *, const char *);

/* New json objects, owned by the caller. */
json_object *
data_account_json(const struct sbx_user *, const struct sbx_account *);
json_object *data_balance_json(const struct sbx_account *);
json_object *data_txn_json(const struct sbx_user *, const struct sbx_account *,
    const struct sbx_txn *);
json_object *data_access_json(const struct sbx_user *);
json_object *data_sync_json(const struct sbx_sync *, int64_t);

void data_add_txns(struct sbx_user *, long);
/* Books every pending transaction; returns how many changed. */
long data_book_pending(struct sbx_user *);
/* Number of syncs created in the 24 h before now. */
long data_syncs_recent(const struct sbx_user *, int64_t);
struct sbx_sync *data_sync_find(const struct sbx_user *, const char *);

#endif
