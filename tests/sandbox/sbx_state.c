/*
 * Global sandbox state: the lock, defaults, token issuing and revocation,
 * the request recording ring and the fault list.
 */
#include <stdlib.h>
#include <string.h>

#include "sbx_data.h"
#include "sbx_state.h"

struct sbx_state sbx = { .lock = PTHREAD_MUTEX_INITIALIZER };

const char *const sbx_stat_names[STAT__COUNT] = {
	[STAT_FLOWS_CREATED] = "flows_created",
	[STAT_CODES_ISSUED] = "codes_issued",
	[STAT_CODES_EXCHANGED] = "codes_exchanged",
	[STAT_CODE_REPLAYS] = "code_replays",
	[STAT_REFRESHES] = "refreshes",
	[STAT_REFRESH_REUSE] = "refresh_reuse",
	[STAT_GRANTS_REVOKED] = "grants_revoked",
	[STAT_REVOCATIONS] = "revocations",
	[STAT_ACCESS_TOKENS_ISSUED] = "access_tokens_issued",
	[STAT_REFRESH_TOKENS_ISSUED] = "refresh_tokens_issued",
	[STAT_AUTH_FAILURES] = "auth_failures",
	[STAT_SYNCS_CREATED] = "syncs_created",
	[STAT_REST_CALLS] = "rest_calls",
	[STAT_INVALID_GRANTS] = "invalid_grants",
	[STAT_REQUESTS] = "requests",
	[STAT_TOKEN_REQUESTS_JSON] = "token_requests_json",
	[STAT_TOKEN_REQUESTS_FORM] = "token_requests_form",
	[STAT_FAULTS_INJECTED] = "faults_injected",
};

const char *const sbx_rf_outcome_names[RFO__COUNT] = {
	[RFO_IN_FLIGHT] = "in_flight",
	[RFO_ROTATED] = "rotated",
	[RFO_NOT_ROTATED] = "not_rotated",
	[RFO_SUPERSEDED] = "superseded_revoked",
	[RFO_INVALID] = "invalid_grant",
	[RFO_FAULT] = "fault",
	[RFO_REJECTED] = "rejected",
};

static _Thread_local int lock_held;

void
sbx_lock(void)
{
	pthread_mutex_lock(&sbx.lock);
	lock_held = 1;
}

void
sbx_unlock(void)
{
	lock_held = 0;
	pthread_mutex_unlock(&sbx.lock);
}

bool
sbx_locked(void)
{
	return lock_held != 0;
}

void
sbx_state_init(void)
{
	struct sbx_config *c = &sbx.cfg;

	c->code_ttl = 300;
	c->access_ttl = 3600;
	c->refresh_ttl = 7776000;
	c->rotate = true;
	c->omit_refresh_token = false;
	c->token_bytes = 600;
	c->latency_ms = 0;
	c->token_latency_ms = 0;
	c->token_latency_min_ms = 0;
	c->token_latency_max_ms = 0;
	c->rotate_percent = 100;
	c->error_style = SBX_ERR_OAUTH;
	memcpy(c->cancel_param, "abort", sizeof("abort"));
	c->transactions = 30;
	c->sync_step_ms = 200;
	c->sync_fail = false;
	c->repeat_transaction = false;
	sbx.started_ms = now_ms();
	sbx.rec = xcalloc(SBX_RECORD_MAX, sizeof(*sbx.rec));
	sbx.rlog_next = 1;
	sbx.rlog_first = 1;
}

void
sbx_count(enum sbx_stat s, int64_t n)
{
	sbx.stats[s] += n;
}

struct sbx_token *
sbx_token_new(enum sbx_tok_kind kind, long ttl, struct sbx_grant *g)
{
	struct sbx_token *t = xcalloc(1, sizeof(*t));
	const char *prefix = kind == TOK_REFRESH ? "" : "eyJ";

	/* Collisions are astronomically unlikely; still, never reuse. */
	do {
		free(t->value);
		t->value = rand_token((size_t)sbx.cfg.token_bytes, prefix);
	} while (map_get(&sbx.tokmap, t->value) != NULL);
	t->kind = kind;
	t->expires_ms = now_ms() + (int64_t)ttl * 1000;
	t->grant = g;
	if (g != NULL && kind != TOK_CODE)
		vec_push(&g->tokens, t);
	vec_push(&sbx.tokens, t);
	map_put(&sbx.tokmap, t->value, t);
	if (kind == TOK_ACCESS)
		sbx_count(STAT_ACCESS_TOKENS_ISSUED, 1);
	else if (kind == TOK_REFRESH)
		sbx_count(STAT_REFRESH_TOKENS_ISSUED, 1);
	else
		sbx_count(STAT_CODES_ISSUED, 1);
	return t;
}

struct sbx_token *
sbx_token_find(const char *value)
{
	return map_get(&sbx.tokmap, value);
}

bool
sbx_token_live(const struct sbx_token *t, int64_t now)
{
	if (t == NULL || t->revoked || now >= t->expires_ms)
		return false;
	return t->grant == NULL || !t->grant->revoked;
}

struct sbx_grant *
sbx_grant_new(struct sbx_user *u, const char *client_id)
{
	struct sbx_grant *g = xcalloc(1, sizeof(*g));

	g->id = ++sbx.next_grant;
	g->user = u;
	g->client_id = xstrdup(client_id);
	g->created_ms = now_ms();
	vec_push(&sbx.grants, g);
	return g;
}

void
sbx_grant_revoke(struct sbx_grant *g, const char *why)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < g->tokens.n; i++)
		((struct sbx_token *)g->tokens.v[i])->revoked = true;
	if (!g->revoked) {
		sbx_count(STAT_GRANTS_REVOKED, 1);
		g->revoked_why = why;
		g->revoked_ms = now_ms();
	}
	g->revoked = true;
}

void
sbx_record_free(struct sbx_record *r)
{
	size_t i;

	if (r == NULL)
		return;
	free(r->method);
	free(r->path);
	free(r->query);
	free(r->content_type);
	free(r->auth_scheme);
	for (i = 0; i < r->nhdrs; i++) {
		free(r->hdrs[i].name);
		free(r->hdrs[i].value);
	}
	free(r->hdrs);
	free(r->body);
	free(r);
}

uint64_t
sbx_record_add(struct sbx_record *r)
{
	size_t slot = (sbx.rec_head + sbx.rec_n) % SBX_RECORD_MAX;

	if (sbx.rec_n == SBX_RECORD_MAX) {
		/* Full: drop the oldest. */
		sbx_record_free(sbx.rec[sbx.rec_head]);
		sbx.rec[sbx.rec_head] = NULL;
		sbx.rec_head = (sbx.rec_head + 1) % SBX_RECORD_MAX;
		sbx.rec_n--;
		slot = (sbx.rec_head + sbx.rec_n) % SBX_RECORD_MAX;
	}
	r->seq = ++sbx.rec_seq;
	r->handled_us = -1;
	sbx.rec[slot] = r;
	sbx.rec_n++;
	return r->seq;
}

/* The ring holds consecutive seqs from its head on (added in order,
 * dropped from the head or all at once). */
void
sbx_record_handled(uint64_t seq, int64_t us)
{
	uint64_t first;

	if (sbx.rec_n == 0)
		return;
	first = sbx.rec[sbx.rec_head]->seq;
	if (seq < first || seq - first >= sbx.rec_n)
		return;
	sbx.rec[(sbx.rec_head + (size_t)(seq - first)) % SBX_RECORD_MAX]
	    ->handled_us = us;
}

void
sbx_records_clear(void)
{
	size_t i;

	for (i = 0; i < sbx.rec_n; i++) {
		sbx_record_free(sbx.rec[(sbx.rec_head + i) % SBX_RECORD_MAX]);
		sbx.rec[(sbx.rec_head + i) % SBX_RECORD_MAX] = NULL;
	}
	sbx.rec_head = 0;
	sbx.rec_n = 0;
}

void
sbx_fault_free(struct sbx_fault *f)
{
	if (f == NULL)
		return;
	free(f->path);
	free(f);
}

void
sbx_faults_clear(void)
{
	size_t i;

	for (i = 0; i < sbx.faults.n; i++)
		sbx_fault_free(sbx.faults.v[i]);
	sbx.faults.n = 0;
}

void
sbx_faults_expire(int64_t now)
{
	struct sbx_fault *f;
	size_t i = 0;

	while (i < sbx.faults.n) {
		f = sbx.faults.v[i];
		if (f->until_ms != 0 && now >= f->until_ms) {
			sbx_fault_free(f);
			vec_remove(&sbx.faults, i);
		} else
			i++;
	}
}

bool
sbx_fault_take(const char *path, struct sbx_fault *ret)
{
	struct sbx_fault *f;
	size_t i;

	sbx_faults_expire(now_ms());
	for (i = 0; i < sbx.faults.n; i++) {
		f = sbx.faults.v[i];
		if (strncmp(path, f->path, strlen(f->path)) != 0)
			continue;
		*ret = *f;
		ret->path = NULL;
		if (f->count > 0 && --f->count == 0) {
			sbx_fault_free(f);
			vec_remove(&sbx.faults, i);
		}
		sbx_count(STAT_FAULTS_INJECTED, 1);
		return true;
	}
	return false;
}

uint64_t
sbx_refresh_begin(const char *presented)
{
	struct sbx_token *t = sbx_token_find(presented);
	struct sbx_refresh_ev *ev;
	uint64_t seq = sbx.rlog_next++;

	if (sbx.rlog == NULL)
		sbx.rlog = xcalloc(SBX_REFRESH_LOG_MAX, sizeof(*sbx.rlog));
	if (seq - sbx.rlog_first >= SBX_REFRESH_LOG_MAX)
		sbx.rlog_first = seq - SBX_REFRESH_LOG_MAX + 1; /* full */
	ev = &sbx.rlog[seq % SBX_REFRESH_LOG_MAX];
	memset(ev, 0, sizeof(*ev));
	ev->seq = seq;
	ev->received_ms = now_ms();
	ev->outcome = RFO_IN_FLIGHT;
	sha256_hex(presented, ev->presented, sizeof(ev->presented));
	if (t != NULL && t->kind == TOK_REFRESH && t->grant != NULL) {
		ev->grant_id = t->grant->id;
		ev->user = t->grant->user;
		t->grant->refresh_requests++;
	}
	return seq;
}

struct sbx_refresh_ev *
sbx_refresh_get(uint64_t seq)
{
	struct sbx_refresh_ev *ev;

	if (seq == 0 || sbx.rlog == NULL || seq < sbx.rlog_first ||
	    seq >= sbx.rlog_next)
		return NULL;
	ev = &sbx.rlog[seq % SBX_REFRESH_LOG_MAX];
	return ev->seq == seq ? ev : NULL;
}

void
sbx_refresh_acted(uint64_t seq, enum sbx_rf_outcome o, const char *issued)
{
	struct sbx_refresh_ev *ev = sbx_refresh_get(seq);

	if (ev == NULL)
		return;
	ev->outcome = o;
	ev->acted_ms = now_ms();
	if (issued != NULL)
		sha256_hex(issued, ev->issued, sizeof(ev->issued));
}

void
sbx_refresh_answered(uint64_t seq, unsigned int status,
    enum sbx_rf_outcome dflt)
{
	struct sbx_refresh_ev *ev = sbx_refresh_get(seq);

	if (ev == NULL)
		return;
	if (ev->outcome == RFO_IN_FLIGHT)
		ev->outcome = dflt;
	ev->status = status;
	ev->answered_ms = now_ms();
}

void
sbx_refresh_log_clear(void)
{
	/* Entries before rlog_next are gone; seqs keep counting. */
	sbx.rlog_first = sbx.rlog_next;
}

void
sbx_state_free(void)
{
	struct sbx_flow *fl;
	struct sbx_grant *g;
	struct sbx_token *t;
	size_t i;

	for (i = 0; i < sbx.flows.n; i++) {
		fl = sbx.flows.v[i];
		free(fl->state);
		free(fl->redirect_uri);
		free(fl->widget_token);
		free(fl->client_id);
		free(fl);
	}
	for (i = 0; i < sbx.grants.n; i++) {
		g = sbx.grants.v[i];
		vec_free(&g->tokens);
		free(g->client_id);
		free(g);
	}
	for (i = 0; i < sbx.tokens.n; i++) {
		t = sbx.tokens.v[i];
		free(t->value);
		free(t);
	}
	for (i = 0; i < sbx.users.n; i++)
		data_user_free(sbx.users.v[i]);
	sbx_faults_clear();
	sbx_records_clear();
	free(sbx.rec);
	free(sbx.rlog);
	vec_free(&sbx.flows);
	vec_free(&sbx.grants);
	vec_free(&sbx.tokens);
	vec_free(&sbx.users);
	vec_free(&sbx.faults);
	map_free(&sbx.tokmap);
	map_free(&sbx.widgets);
	map_free(&sbx.usermap);
	map_free(&sbx.unums);
	free(sbx.client_id);
	free(sbx.client_secret);
	free(sbx.public_url);
}
