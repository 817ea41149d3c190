/*
 * Deterministic per-user bank data. A user's seed is the FNV-1a hash of
 * its user_id; a splitmix64 generator then picks owner, amounts, partners
 * and dates. Dates hang off the sandbox start time. Amounts are integer
 * cents and reach JSON as exact 2-decimal number text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx_data.h"
#include "sbx_state.h"

#define DAY_S 86400

struct counterparty {
	const char *name;
	const char *bank_code;
	const char *bic;
	int role; /* 0 shop, 1 salary, 2 rent, 3 fees */
};

static const struct counterparty cps[] = {
	{ "Rogers Shipping, Inc.", "90090042", "DEMODE01XXX", 0 },
	{ "Bäckerei Müller GmbH", "37040044", "COBADEFFXXX", 0 },
	{ "Stadtwerke Köln", "37050198", "COLSDE33XXX", 0 },
	{ "REWE Markt Düsseldorf", "30050110", "DUSSDEDDXXX", 0 },
	{ "Telekom Deutschland GmbH", "50010060", "PBNKDEFFXXX", 0 },
	{ "Deutsche Bahn Fernverkehr", "10070000", "DEUTDEBBXXX", 0 },
	{ "Arbeitgeber Süd AG", "70020270", "HYVEDEMMXXX", 1 },
	{ "Hausverwaltung Schröder & Söhne", "20050550", "HASPDEHHXXX", 2 },
	{ "Demobank", "90090042", "DEMODE01XXX", 3 },
};
#define NCPS (sizeof(cps) / sizeof(cps[0]))

static const char *const purposes[] = {
	"Ihre Sendung 0815 vom 01.03.2012, Vielen Dank",
	"Einkauf Brötchen und Kaffee, Grüße aus der Bäckerei",
	"Stromabschlag Grundversorgung Köln-Ehrenfeld",
	"Lebensmittel Einkauf Filiale Königsallee",
	"Mobilfunk Rechnung Nr. 4711 für März",
	"Fahrkarte München – Düsseldorf, Sitzplatz 42",
	"Gehalt/Lohn Monatsübersicht, Überstunden inkl.",
	"Miete Wohnung 3. OG, Nebenkosten-Vorauszahlung",
	"Kontoführungsgebühr und Zinsen Quartalsabschluss",
};

static const char *const kinds[] = {
	"Transfer",
	"Direct debit",
	"Standing order",
	"Salary or rent",
	"Charges or interest",
};
static const char *const booking_texts[] = {
	"Ueberweisung",
	"Lastschrift",
	"Dauerauftrag",
	"Gehalt/Miete",
	"Entgelt",
};

static const struct {
	int id;
	const char *name;
} categories[] = {
	{ 150, "Lebenshaltung" },
	{ 110, "Einnahmen" },
	{ 160, "Wohnen" },
	{ 190, "Bankgebühren" },
};

static const char *const first_names[] = {
	"John",
	"Jürgen",
	"Anna",
	"Zoë",
	"Mehmet",
	"Søren",
	"Lena",
	"Ole",
};
static const char *const last_names[] = {
	"Doe",
	"Müller",
	"Schäfer",
	"Öztürk",
	"Weiß",
	"Nguyen",
	"Krüger",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t z;

	*s += 0x9e3779b97f4a7c15ULL;
	z = *s;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static long
rng_range(uint64_t *s, long lo, long hi)
{
	return lo + (long)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* German IBAN with real mod-97 check digits. */
static void
iban_de(const char *bank_code, const char *number, char *out, size_t n)
{
	char digits[64];
	unsigned int mod = 0;
	size_t i;

	snprintf(digits, sizeof(digits), "%s%s131400", bank_code, number);
	for (i = 0; digits[i] != '\0'; i++)
		mod = (mod * 10 + (unsigned int)(digits[i] - '0')) % 97;
	snprintf(out, n, "DE%02u%s%s", 98 - mod, bank_code, number);
}

static void
cp_number(int cp, char *out, size_t n)
{
	snprintf(out, n, "%010lu", 4711000000UL + (unsigned long)cp * 7919UL);
}

static struct sbx_txn *
txn_append(struct sbx_user *u, struct sbx_account *a)
{
	struct sbx_txn *t;

	if (a->ntx == a->captx) {
		a->captx = a->captx ? a->captx * 2 : 32;
		a->tx = xrealloc(a->tx, a->captx * sizeof(*a->tx));
	}
	t = &a->tx[a->ntx++];
	memset(t, 0, sizeof(*t));
	t->idx = ++a->last_idx;
	snprintf(t->id, sizeof(t->id), "T%lu.%d.%ld", u->n, a->k, t->idx);
	t->fmt_z = t->idx % 2 == 0;
	return t;
}

/* Picks partner, amount and wording for one transaction. */
static void
txn_fill(struct sbx_user *u, struct sbx_account *a, struct sbx_txn *t)
{
	int role;

	t->cp = (int)rng_range(&u->rng, 0, NCPS - 1);
	if (a->k == 2 && cps[t->cp].role != 0)
		t->cp = (int)rng_range(&u->rng, 0, 5);
	role = cps[t->cp].role;
	switch (role) {
	case 1:
		t->cents = rng_range(&u->rng, 250000, 320000);
		t->purpose = 6;
		t->kind = 3;
		break;
	case 2:
		t->cents = -95000;
		t->purpose = 7;
		t->kind = 2;
		break;
	case 3:
		t->cents = -rng_range(&u->rng, 100, 990);
		t->purpose = 8;
		t->kind = 4;
		break;
	default:
		t->cents = -rng_range(&u->rng, 150, 25000);
		t->purpose = t->cp;
		t->kind = (int)rng_range(&u->rng, 0, 1);
		break;
	}
	t->booking_us = rng_range(&u->rng, 0, 999999);
}

static void
account_init(struct sbx_user *u, struct sbx_account *a, int k, long ntx,
    int64_t start_s)
{
	int64_t span = 89 * (int64_t)DAY_S, t0 = start_s - 90 * (int64_t)DAY_S;
	struct sbx_txn *t;
	long i;

	a->k = k;
	snprintf(a->id, sizeof(a->id), "A%lu.%d", u->n, k);
	if (k == 1) {
		snprintf(a->number, sizeof(a->number), "%010lu",
		    (unsigned long)(rng_next(&u->rng) % 10000000000ULL));
		iban_de("90090042", a->number, a->iban, sizeof(a->iban));
		a->opening_cents = rng_range(&u->rng, 50000, 500000);
		a->credit_line_cents = 200000;
		a->limit_cents = 0;
	} else {
		snprintf(a->number, sizeof(a->number), "4111********%04ld",
		    rng_range(&u->rng, 0, 9999));
		a->opening_cents = 0;
		a->credit_line_cents = 500000;
		a->limit_cents = 250000;
	}
	for (i = 1; i <= ntx; i++) {
		t = txn_append(u, a);
		txn_fill(u, a, t);
		t->booking_s =
		    t0 + i * span / (ntx + 1) + rng_range(&u->rng, 0, 3600);
		t->value_s = t->booking_s + (t->kind == 0 ? DAY_S : 0);
		t->booked = i <= ntx - 2;
		t->created_ms =
		    (t->booking_s + rng_range(&u->rng, 60, 7200)) * 1000 +
		    rng_range(&u->rng, 0, 999);
		t->modified_ms = t->created_ms;
	}
}

static struct sbx_user *
user_new(const char *user_id)
{
	struct sbx_user *u = xcalloc(1, sizeof(*u));
	uint64_t h = fnv1a(user_id, strlen(user_id));
	char key[32];
	int k;

	u->user_id = xstrdup(user_id);
	u->rng = h;
	/* Account numbers derive from the hash; skip numbers already taken. */
	u->n = 1000 + (unsigned long)(h % 900000);
	for (;;) {
		snprintf(key, sizeof(key), "%lu", u->n);
		if (map_get(&sbx.unums, key) == NULL)
			break;
		u->n++;
	}
	map_put(&sbx.unums, key, u);
	snprintf(u->access_id, sizeof(u->access_id), "X%lu.1", u->n);
	snprintf(u->access_method_id, sizeof(u->access_method_id),
	    "%08lx-0000-4000-8000-%012llx", u->n,
	    (unsigned long long)(h & 0xffffffffffffULL));
	snprintf(u->owner, sizeof(u->owner), "%s %s",
	    first_names[rng_next(&u->rng) % NELEM(first_names)],
	    last_names[rng_next(&u->rng) % NELEM(last_names)]);
	u->created_ms = sbx.started_ms;
	for (k = 0; k < SBX_NACCOUNTS; k++)
		account_init(u, &u->acc[k], k + 1, sbx.cfg.transactions,
		    sbx.started_ms / 1000);
	return u;
}

struct sbx_user *
data_user_find(const char *user_id)
{
	return map_get(&sbx.usermap, user_id);
}

struct sbx_user *
data_user_get(const char *user_id)
{
	struct sbx_user *u = data_user_find(user_id);

	if (u != NULL)
		return u;
	u = user_new(user_id);
	vec_push(&sbx.users, u);
	map_put(&sbx.usermap, user_id, u);
	return u;
}

void
data_user_free(struct sbx_user *u)
{
	size_t i;
	int k;

	if (u == NULL)
		return;
	for (k = 0; k < SBX_NACCOUNTS; k++) {
		for (i = 0; i < u->acc[k].ntx; i++)
			free(u->acc[k].tx[i].purpose_text);
		free(u->acc[k].tx);
	}
	for (i = 0; i < u->syncs.n; i++)
		free(u->syncs.v[i]);
	vec_free(&u->syncs);
	for (i = 0; i < u->notes.n; i++)
		data_note_free(u->notes.v[i]);
	vec_free(&u->notes);
	free(u->user_id);
	free(u);
}

struct sbx_account *
data_account_find(struct sbx_user *u, const char *id)
{
	int k;

	for (k = 0; k < SBX_NACCOUNTS; k++)
		if (strcmp(u->acc[k].id, id) == 0)
			return &u->acc[k];
	return NULL;
}

static json_object *
money(int64_t cents)
{
	char text[32];

	cents_text(cents, text, sizeof(text));
	return json_object_new_double_s((double)cents / 100.0, text);
}

static json_object *
ms_json(int64_t ms)
{
	char s[40];

	iso_ms(ms, s, sizeof(s));
	return json_object_new_string(s);
}

static json_object *
status_json(void)
{
	json_object *st = json_object_new_object();

	json_object_object_add(st, "synced_at", ms_json(sbx.started_ms));
	json_object_object_add(st, "succeeded_at", ms_json(sbx.started_ms));
	json_object_object_add(st, "message", json_object_new_string("OK"));
	return st;
}

static int64_t
balance_cents(const struct sbx_account *a)
{
	int64_t c = a->opening_cents;
	size_t i;

	for (i = 0; i < a->ntx; i++)
		if (a->tx[i].booked)
			c += a->tx[i].cents;
	return c;
}

json_object *
data_balance_json(const struct sbx_account *a)
{
	json_object *b = json_object_new_object();

	json_object_object_add(b, "balance", money(balance_cents(a)));
	json_object_object_add(b, "balance_date", ms_json(sbx.started_ms));
	json_object_object_add(b, "credit_line", money(a->credit_line_cents));
	json_object_object_add(b, "monthly_spending_limit",
	    money(a->limit_cents));
	json_object_object_add(b, "status", status_json());
	return b;
}

static json_object *
icon_json(void)
{
	json_object *icon = json_object_new_object(), *res;
	static const char *const sizes[] = { "48x48", "60x60", "120x120" };
	char url[96];
	size_t i;

	json_object_object_add(icon, "url",
	    json_object_new_string(
	        "https://sandbox.invalid/icons/demobank.png"));
	res = json_object_new_object();
	for (i = 0; i < NELEM(sizes); i++) {
		snprintf(url, sizeof(url),
		    "https://sandbox.invalid/icons/demobank-%s.png", sizes[i]);
		json_object_object_add(res, sizes[i],
		    json_object_new_string(url));
	}
	json_object_object_add(icon, "resolutions", res);
	return icon;
}

json_object *
data_account_json(const struct sbx_user *u, const struct sbx_account *a)
{
	json_object *o = json_object_new_object();
	const char *type = a->k == 1 ? "Giro account" : "Credit card";

	json_object_object_add(o, "account_id", json_object_new_string(a->id));
	json_object_object_add(o, "access_id",
	    json_object_new_string(u->access_id));
	json_object_object_add(o, "account_number",
	    json_object_new_string(a->number));
	json_object_object_add(o, "bank_code",
	    json_object_new_string("90090042"));
	if (a->iban[0] != '\0') {
		json_object_object_add(o, "iban",
		    json_object_new_string(a->iban));
		json_object_object_add(o, "bic",
		    json_object_new_string("DEMODE01XXX"));
	}
	json_object_object_add(o, "bank_name",
	    json_object_new_string("Demobank"));
	json_object_object_add(o, "icon", icon_json());
	json_object_object_add(o, "currency", json_object_new_string("EUR"));
	json_object_object_add(o, "balance", data_balance_json(a));
	json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "name", json_object_new_string(type));
	json_object_object_add(o, "owner", json_object_new_string(u->owner));
	json_object_object_add(o, "auto_sync", json_object_new_boolean(1));
	json_object_object_add(o, "save_pin", json_object_new_boolean(0));
	json_object_object_add(o, "supported_payments",
	    json_object_new_object());
	json_object_object_add(o, "is_jointly_managed",
	    json_object_new_boolean(0));
	json_object_object_add(o, "status", status_json());
	return o;
}

static json_object *
txn_date(const struct sbx_txn *t, int64_t sec, long us)
{
	char s[48];

	if (t->fmt_z)
		iso_ms(sec * 1000, s, sizeof(s));
	else
		iso_us(sec, us, s, sizeof(s));
	return json_object_new_string(s);
}

static json_object *
txn_stamp(const struct sbx_txn *t, int64_t ms)
{
	char s[48];

	if (t->fmt_z)
		iso_ms(ms, s, sizeof(s));
	else
		iso_us(ms / 1000, (long)(ms % 1000) * 1000 + 417, s, sizeof(s));
	return json_object_new_string(s);
}

static json_object *
txn_categories(const struct sbx_txn *t)
{
	json_object *arr = json_object_new_array(), *c;
	size_t i = cps[t->cp].role < 4 ? (size_t)cps[t->cp].role : 0;

	c = json_object_new_object();
	json_object_object_add(c, "id", json_object_new_int(categories[i].id));
	json_object_object_add(c, "parent_id", NULL);
	json_object_object_add(c, "name",
	    json_object_new_string(categories[i].name));
	json_object_array_add(arr, c);
	return arr;
}

json_object *
data_txn_json(const struct sbx_user *u, const struct sbx_account *a,
    const struct sbx_txn *t)
{
	const struct counterparty *cp = &cps[t->cp];
	json_object *o = json_object_new_object();
	char num[16], iban[40];

	cp_number(t->cp, num, sizeof(num));
	iban_de(cp->bank_code, num, iban, sizeof(iban));
	json_object_object_add(o, "transaction_id",
	    json_object_new_string(t->id));
	json_object_object_add(o, "account_id", json_object_new_string(a->id));
	json_object_object_add(o, "name", json_object_new_string(cp->name));
	json_object_object_add(o, "account_number",
	    json_object_new_string(num));
	json_object_object_add(o, "bank_code",
	    json_object_new_string(cp->bank_code));
	json_object_object_add(o, "bank_name",
	    json_object_new_string(cp->role == 3 ? "Demobank" : "Otherbank"));
	json_object_object_add(o, "iban", json_object_new_string(iban));
	json_object_object_add(o, "bic", json_object_new_string(cp->bic));
	json_object_object_add(o, "amount", money(t->cents));
	json_object_object_add(o, "currency", json_object_new_string("EUR"));
	json_object_object_add(o, "booking_date",
	    txn_date(t, t->booking_s, t->booking_us));
	json_object_object_add(o, "value_date",
	    txn_date(t, t->value_s, t->booking_us));
	json_object_object_add(o, "purpose",
	    json_object_new_string(t->purpose_text != NULL
	            ? t->purpose_text
	            : purposes[t->purpose]));
	json_object_object_add(o, "type",
	    json_object_new_string(kinds[t->kind]));
	json_object_object_add(o, "booking_text",
	    json_object_new_string(booking_texts[t->kind]));
	json_object_object_add(o, "booked", json_object_new_boolean(t->booked));
	json_object_object_add(o, "categories", txn_categories(t));
	json_object_object_add(o, "creation_timestamp",
	    txn_stamp(t, t->created_ms));
	json_object_object_add(o, "modification_timestamp",
	    txn_stamp(t, t->modified_ms));
	json_object_object_add(o, "visited", json_object_new_boolean(0));
	json_object_object_add(o, "additional_info", json_object_new_object());
	(void)u;
	return o;
}

json_object *
data_access_json(const struct sbx_user *u)
{
	json_object *o = json_object_new_object(), *consent, *arr, *acc;
	static const char *const scopes[] = { "ACCOUNTS", "BALANCES",
		"TRANSACTIONS" };
	const struct sbx_account *a;
	size_t i;
	int k;

	json_object_object_add(o, "id", json_object_new_string(u->access_id));
	json_object_object_add(o, "access_method_id",
	    json_object_new_string(u->access_method_id));
	json_object_object_add(o, "created_at", ms_json(u->created_ms));
	json_object_object_add(o, "auth_methods", json_object_new_array());
	consent = json_object_new_object();
	json_object_object_add(consent, "recurring",
	    json_object_new_boolean(1));
	json_object_object_add(consent, "period", json_object_new_int(90));
	arr = json_object_new_array();
	for (i = 0; i < NELEM(scopes); i++)
		json_object_array_add(arr, json_object_new_string(scopes[i]));
	json_object_object_add(consent, "scopes", arr);
	arr = json_object_new_array();
	for (k = 0; k < SBX_NACCOUNTS; k++) {
		a = &u->acc[k];
		acc = json_object_new_object();
		json_object_object_add(acc, "id",
		    json_object_new_string(
		        a->iban[0] != '\0' ? a->iban : a->number));
		json_object_object_add(acc, "currency",
		    json_object_new_string("EUR"));
		json_object_array_add(arr, acc);
	}
	json_object_object_add(consent, "accounts", arr);
	json_object_object_add(o, "consent", consent);
	return o;
}

void
data_add_txns(struct sbx_user *u, long n)
{
	int64_t now_s = now_ms() / 1000, last;
	struct sbx_account *a;
	long i;
	int k;

	for (k = 0; k < SBX_NACCOUNTS; k++) {
		a = &u->acc[k];
		last = a->ntx > 0 ? a->tx[a->ntx - 1].booking_s : 0;
		for (i = 0; i < n; i++) {
			/* Always newer than everything before it. */
			last = last + 60 > now_s ? last + 60 : now_s;
			(void)data_txn_add(u, a, true, last);
		}
	}
}

long
data_book_pending(struct sbx_user *u)
{
	int64_t now = now_ms();
	long changed = 0;
	size_t i;
	int k;

	for (k = 0; k < SBX_NACCOUNTS; k++) {
		for (i = 0; i < u->acc[k].ntx; i++) {
			if (u->acc[k].tx[i].booked)
				continue;
			u->acc[k].tx[i].booked = true;
			u->acc[k].tx[i].modified_ms = now;
			changed++;
		}
	}
	return changed;
}

struct sbx_txn *
data_txn_find(struct sbx_user *u, const char *id, struct sbx_account **ret_a)
{
	size_t i;
	int k;

	for (k = 0; k < SBX_NACCOUNTS; k++) {
		for (i = 0; i < u->acc[k].ntx; i++) {
			if (strcmp(u->acc[k].tx[i].id, id) != 0)
				continue;
			*ret_a = &u->acc[k];
			return &u->acc[k].tx[i];
		}
	}
	return NULL;
}

void
data_txn_touch(struct sbx_txn *t)
{
	int64_t now = now_ms();

	/* strictly later than before, so since_type=modified sees it */
	t->modified_ms = now > t->modified_ms ? now : t->modified_ms + 1;
}

void
data_txn_set_purpose(struct sbx_txn *t, const char *text)
{
	free(t->purpose_text);
	t->purpose_text = xstrdup(text);
}

void
data_txn_remove(struct sbx_account *a, struct sbx_txn *t)
{
	size_t i = (size_t)(t - a->tx);

	free(t->purpose_text);
	memmove(&a->tx[i], &a->tx[i + 1], (a->ntx - i - 1) * sizeof(*t));
	a->ntx--;
}

struct sbx_txn *
data_txn_add(struct sbx_user *u, struct sbx_account *a, bool booked,
    int64_t booking_s)
{
	struct sbx_txn *t = txn_append(u, a);

	txn_fill(u, a, t);
	t->booking_s = booking_s;
	t->value_s = booking_s;
	t->booked = booked;
	t->created_ms = now_ms();
	t->modified_ms = t->created_ms;
	return t;
}

struct sbx_txn *
data_txn_book(struct sbx_user *u, struct sbx_account *a, struct sbx_txn *t,
    bool new_id)
{
	size_t i = (size_t)(t - a->tx);
	struct sbx_txn copy, *b;

	if (!new_id) {
		t->booked = true;
		data_txn_touch(t);
		return t;
	}
	copy = *t;
	b = txn_append(u, a); /* may move a->tx: t is stale from here */
	memcpy(copy.id, b->id, sizeof(copy.id));
	copy.idx = b->idx;
	copy.fmt_z = b->fmt_z;
	copy.booked = true;
	copy.created_ms = now_ms();
	copy.modified_ms = copy.created_ms;
	*b = copy; /* takes over purpose_text */
	a->tx[i].purpose_text = NULL;
	data_txn_remove(a, &a->tx[i]);
	return &a->tx[a->ntx - 1];
}

void
data_note_free(struct sbx_note *n)
{
	if (n == NULL)
		return;
	free(n->observe_key);
	free(n->notify_uri);
	free(n->state);
	free(n);
}

long
data_syncs_recent(const struct sbx_user *u, int64_t now)
{
	const struct sbx_sync *s;
	long n = 0;
	size_t i;

	for (i = 0; i < u->syncs.n; i++) {
		s = u->syncs.v[i];
		if (s->created_ms > now - (int64_t)DAY_S * 1000)
			n++;
	}
	return n;
}

struct sbx_sync *
data_sync_find(const struct sbx_user *u, const char *id)
{
	size_t i;

	for (i = 0; i < u->syncs.n; i++)
		if (strcmp(((struct sbx_sync *)u->syncs.v[i])->id, id) == 0)
			return u->syncs.v[i];
	return NULL;
}

static json_object *
sync_error_json(void)
{
	json_object *e = json_object_new_object();

	json_object_object_add(e, "code", json_object_new_int(20000));
	json_object_object_add(e, "group", json_object_new_string("bank"));
	json_object_object_add(e, "description",
	    json_object_new_string("The bank could not be reached."));
	json_object_object_add(e, "message",
	    json_object_new_string("Sandbox: sync_fail is set"));
	json_object_object_add(e, "data", json_object_new_object());
	return e;
}

json_object *
data_sync_json(const struct sbx_sync *s, int64_t now)
{
	json_object *o = json_object_new_object();
	int64_t el = now - s->created_ms, step = s->step_ms;
	const char *status = "QUEUED";

	if (el >= 2 * step)
		status = s->fail ? "FAILED" : "COMPLETED";
	else if (el >= step)
		status = "RUNNING";
	json_object_object_add(o, "id", json_object_new_string(s->id));
	json_object_object_add(o, "status", json_object_new_string(status));
	json_object_object_add(o, "challenge", NULL);
	json_object_object_add(o, "error",
	    s->fail && el >= 2 * step ? sync_error_json() : NULL);
	json_object_object_add(o, "created_at", ms_json(s->created_ms));
	json_object_object_add(o, "started_at",
	    el >= step ? ms_json(s->created_ms + step) : NULL);
	json_object_object_add(o, "ended_at",
	    el >= 2 * step ? ms_json(s->created_ms + 2 * step) : NULL);
	return o;
}
