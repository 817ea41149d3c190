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
	char *purpose_text; /* owned; NULL: purposes[purpose] */
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
	struct sbx_txn *tx; /* by creation; read sorted by booking date */
	size_t ntx;
	size_t captx;
	long last_idx; /* i of the newest T<n>.<k>.<i>; never reused */
};

struct sbx_sync {
	char id[37];
	int64_t created_ms;
	long step_ms;
	bool fail;
};

/* A registered notification (POST /rest/notifications). */
struct sbx_note {
	char id[48];
	char *observe_key;
	char *notify_uri;
	char *state;         /* NULL when none was sent */
	char account_id[32]; /* the observed account; "" for all */
	int64_t created_ms;
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
	struct sbx_vec notes; /* owned struct sbx_note, oldest first */
	unsigned long note_seq;
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
/*
 * A bank's changes (control API).  Each stamps modification_timestamp
 * with now.  data_txn_find returns the transaction of id (its account in
 * *ret_a) or NULL.
 */
struct sbx_txn *
data_txn_find(struct sbx_user *, const char *, struct sbx_account **);
/*
 * Books the pending transaction t of a: with new_id false it keeps its
 * id; with new_id true a booked copy comes under a new id and t goes.
 * Returns the booked transaction (t may move: use only the return).
 */
struct sbx_txn *data_txn_book(struct sbx_user *, struct sbx_account *,
    struct sbx_txn *, bool);
/* A new transaction on a with a random partner; the caller sets fields
 * other than booked and the booking date. */
struct sbx_txn *data_txn_add(struct sbx_user *, struct sbx_account *, bool,
    int64_t);
/* Replaces the purpose text (copied). */
void data_txn_set_purpose(struct sbx_txn *, const char *);
/* Stamps t as modified now. */
void data_txn_touch(struct sbx_txn *);
/* Removes t from a (frees what it owns). */
void data_txn_remove(struct sbx_account *, struct sbx_txn *);
void data_note_free(struct sbx_note *);

/* Number of syncs created in the 24 h before now. */
long data_syncs_recent(const struct sbx_user *, int64_t);
struct sbx_sync *data_sync_find(const struct sbx_user *, const char *);

#endif
