/*
 * The sandbox's whole state: knobs, OAuth objects (flows, codes, grants,
 * tokens), injected faults, recorded requests and counters. One global
 * mutex guards all of it; callers take it with sbx_lock() and must never
 * sleep or queue an HTTP response while holding it.
 */
#ifndef SBX_STATE_H
#define SBX_STATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sbx_util.h"

#define SBX_RECORD_MAX 20000
#define SBX_REFRESH_LOG_MAX 100000
#define SBX_TOKEN_BYTES_MIN 16
#define SBX_TOKEN_BYTES_MAX 65536
#define SBX_SCOPE "accounts=ro balance=ro transactions=ro offline"

enum sbx_err_style {
	SBX_ERR_OAUTH,
	SBX_ERR_FINX,
};

/* Knobs changeable at runtime; copied out whole under the lock. */
struct sbx_config {
	long code_ttl;
	long access_ttl;
	long refresh_ttl;
	bool rotate;
	bool omit_refresh_token;
	long token_bytes;
	long latency_ms;
	long token_latency_ms;
	/* /auth/token also waits a random min..max ms (max 0: not at all) */
	long token_latency_min_ms;
	long token_latency_max_ms;
	/* with rotation on: percent of refresh answers that rotate; the
	 * others carry no refresh_token (the presented one stays current) */
	long rotate_percent;
	enum sbx_err_style error_style;
	char cancel_param[8];
	long transactions;
	long sync_step_ms;
	bool sync_fail;
	/* each transactions page ends with its first entry again, changed */
	bool repeat_transaction;
};

enum sbx_stat {
	STAT_FLOWS_CREATED,
	STAT_CODES_ISSUED,
	STAT_CODES_EXCHANGED,
	STAT_CODE_REPLAYS,
	STAT_REFRESHES,
	STAT_REFRESH_REUSE,
	STAT_GRANTS_REVOKED,
	STAT_REVOCATIONS,
	STAT_ACCESS_TOKENS_ISSUED,
	STAT_REFRESH_TOKENS_ISSUED,
	STAT_AUTH_FAILURES,
	STAT_SYNCS_CREATED,
	STAT_REST_CALLS,
	STAT_INVALID_GRANTS,
	STAT_REQUESTS,
	STAT_TOKEN_REQUESTS_JSON,
	STAT_TOKEN_REQUESTS_FORM,
	STAT_FAULTS_INJECTED,
	STAT__COUNT
};

extern const char *const sbx_stat_names[STAT__COUNT];

enum sbx_tok_kind {
	TOK_CODE,
	TOK_ACCESS,
	TOK_REFRESH,
};

struct sbx_user;
struct sbx_grant;
struct sbx_flow;

struct sbx_token {
	char *value;
	enum sbx_tok_kind kind;
	int64_t expires_ms;
	bool revoked;
	bool superseded;         /* refresh: a newer one replaced it */
	bool used;               /* code: already exchanged */
	struct sbx_flow *flow;   /* code: the flow it finished */
	struct sbx_grant *grant; /* owner; for a code, the grant it produced */
};

struct sbx_flow {
	char id[37];
	char *state; /* NULL when none was sent */
	char *redirect_uri;
	char *widget_token;
	char *client_id;
	struct sbx_user *user;
	bool decided;
	int64_t created_ms;
};

struct sbx_grant {
	long id;
	struct sbx_user *user;
	char *client_id;
	bool revoked;
	const char *revoked_why;   /* static text; NULL while active */
	int64_t revoked_ms;        /* 0 while active */
	struct sbx_token *refresh; /* current refresh token */
	struct sbx_vec tokens;     /* borrowed: every token of the grant */
	int64_t created_ms;
	long refresh_requests; /* refresh_token requests naming this grant */
	long refreshes;        /* of those, answered with a new access token */
};

/* Why a grant was revoked (sbx_grant_revoke's second argument). */
#define SBX_WHY_SUPERSEDED "superseded token presented"
#define SBX_WHY_CODE_REPLAY "authorization code replayed"
#define SBX_WHY_AUTH_REVOKE "revoked by /auth/revoke"
#define SBX_WHY_REVOKE_USER "revoke-user"

/* What became of one refresh_token request at /auth/token. */
enum sbx_rf_outcome {
	RFO_IN_FLIGHT,   /* not decided yet */
	RFO_ROTATED,     /* new access and new refresh token */
	RFO_NOT_ROTATED, /* new access token, the refresh token stays */
	RFO_SUPERSEDED,  /* a superseded token: the grant was revoked */
	RFO_INVALID,     /* invalid_grant: unknown, revoked or expired */
	RFO_FAULT,       /* an injected fault answered instead */
	RFO_REJECTED,    /* client auth, malformed request, bad scope */
	RFO__COUNT
};

extern const char *const sbx_rf_outcome_names[RFO__COUNT];

/* One entry of the refresh log (never a token: short hashes only). */
struct sbx_refresh_ev {
	uint64_t seq;          /* 1, 2, ...; 0 marks an empty slot */
	long grant_id;         /* 0 when the presented token was unknown */
	struct sbx_user *user; /* borrowed; NULL when unknown */
	int64_t received_ms;   /* before latency and faults */
	int64_t acted_ms;      /* when the token state changed; 0: never */
	int64_t answered_ms;   /* reply queued; 0 while in flight */
	enum sbx_rf_outcome outcome;
	unsigned int status; /* HTTP status answered; 0: connection closed */
	char presented[17];  /* first 16 hex digits of SHA-256 */
	char issued[17];     /* of the new refresh token; "" when none */
};

enum sbx_fault_mode {
	FAULT_STATUS,
	FAULT_DELAY,
	FAULT_DELAY_AFTER,
	FAULT_BADJSON,
	FAULT_CLOSE,
};

struct sbx_fault {
	char *path;
	enum sbx_fault_mode mode;
	int status;
	long delay_ms;
	long count;       /* -1: until cleared */
	int64_t until_ms; /* 0: no end; else dropped from this moment */
};

struct sbx_header {
	char *name;
	char *value;
};

struct sbx_record {
	char *method;
	char *path;
	char *query;        /* raw, still percent-encoded; "" if none */
	char *content_type; /* NULL when absent */
	char *auth_scheme;  /* NULL when absent */
	struct sbx_header *hdrs;
	size_t nhdrs;
	char *body;
	size_t body_len;
	int64_t at_ms;
	uint64_t seq;       /* 1, 2, ... in arrival order */
	int64_t handled_us; /* arrival to reply queued; -1 until then */
};

struct sbx_state {
	pthread_mutex_t lock;
	struct sbx_config cfg;
	char *client_id;
	char *client_secret;
	char *public_url;
	int64_t started_ms;

	struct sbx_vec flows;   /* owned */
	struct sbx_vec grants;  /* owned */
	struct sbx_vec tokens;  /* owned, in issue order */
	struct sbx_vec users;   /* owned */
	struct sbx_vec faults;  /* owned */
	struct sbx_map tokmap;  /* value -> struct sbx_token */
	struct sbx_map widgets; /* widget token -> struct sbx_flow */
	struct sbx_map usermap; /* user_id -> struct sbx_user */
	struct sbx_map unums;   /* "n" -> struct sbx_user, keeps ids unique */

	struct sbx_record **rec; /* ring of SBX_RECORD_MAX */
	size_t rec_head;
	size_t rec_n;
	uint64_t rec_seq; /* seq of the last record added */

	int64_t stats[STAT__COUNT];
	long next_grant;

	/* ring of SBX_REFRESH_LOG_MAX, allocated on first use; entry seq
	 * lives in slot seq % SBX_REFRESH_LOG_MAX */
	struct sbx_refresh_ev *rlog;
	uint64_t rlog_next;  /* seq of the next entry (starts at 1) */
	uint64_t rlog_first; /* oldest seq still kept */
};

extern struct sbx_state sbx;

/* Sets defaults; the caller fills in credentials and the public URL. */
void sbx_state_init(void);
/* Frees everything; no thread may still use the state. */
void sbx_state_free(void);

void sbx_lock(void);
void sbx_unlock(void);
/* True when the calling thread holds the state lock. */
bool sbx_locked(void);

/* The following all require the lock. */
void sbx_count(enum sbx_stat, int64_t);
/* Issues a unique token of kind with ttl seconds; owned by the state. */
struct sbx_token *sbx_token_new(enum sbx_tok_kind, long, struct sbx_grant *);
struct sbx_token *sbx_token_find(const char *);
/* True when the token exists, is unexpired and nothing revoked it. */
bool sbx_token_live(const struct sbx_token *, int64_t);
struct sbx_grant *sbx_grant_new(struct sbx_user *, const char *);
/* Revokes the grant and all its tokens; counts it once and keeps the
 * first reason (a static string, one of SBX_WHY_*) and time. */
void sbx_grant_revoke(struct sbx_grant *, const char *);
/* Takes ownership of the record. */
/* Adds a record to the ring (lock held); returns its seq. */
uint64_t sbx_record_add(struct sbx_record *);
/* Sets handled_us of record seq if the ring still holds it; lock held. */
void sbx_record_handled(uint64_t, int64_t);
void sbx_record_free(struct sbx_record *);
void sbx_records_clear(void);
/*
 * Finds the first fault whose prefix matches path, consumes one use and
 * copies it to ret (path not copied). Returns false when none matches.
 */
bool sbx_fault_take(const char *, struct sbx_fault *);
void sbx_fault_free(struct sbx_fault *);
void sbx_faults_clear(void);
/* Drops faults whose until_ms has passed. */
void sbx_faults_expire(int64_t);

/*
 * The refresh log: one entry per refresh_token request, opened when the
 * request arrives (before latency and faults) with the presented token
 * (hashed; counts a request on its grant); returns its seq.
 */
uint64_t sbx_refresh_begin(const char *);
/* The entry of seq, or NULL once it left the ring. */
struct sbx_refresh_ev *sbx_refresh_get(uint64_t);
/* Records the decision; issued is the new refresh token or NULL. */
void sbx_refresh_acted(uint64_t, enum sbx_rf_outcome, const char *);
/* Closes the entry: answered now with status; outcome dflt when the
 * handler decided none. */
void sbx_refresh_answered(uint64_t, unsigned int, enum sbx_rf_outcome);
void sbx_refresh_log_clear(void);

#endif
