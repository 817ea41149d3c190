/*
 * One typed table of knobs (name, type, field, bounds), in the way
 * pgbouncer and redis keep theirs; both the command line and the control
 * API go through it, so adding a knob means adding one line here.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "sbx_config.h"

enum cfg_type {
	CFG_LONG,
	CFG_BOOL,
	CFG_STYLE,
	CFG_CANCEL,
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t off;
	long min;
	long max;
};

#define K(n, t, lo, hi)                                                        \
	{                                                                      \
#n, t, offsetof(struct sbx_config, n), lo, hi                  \
	}

static const struct cfg_key cfg_keys[] = {
	K(code_ttl, CFG_LONG, 0, 315360000),
	K(access_ttl, CFG_LONG, 0, 315360000),
	K(refresh_ttl, CFG_LONG, 0, 315360000),
	K(rotate, CFG_BOOL, 0, 0),
	K(omit_refresh_token, CFG_BOOL, 0, 0),
	K(token_bytes, CFG_LONG, SBX_TOKEN_BYTES_MIN, SBX_TOKEN_BYTES_MAX),
	K(latency_ms, CFG_LONG, 0, 600000),
	K(token_latency_ms, CFG_LONG, 0, 600000),
	K(token_latency_min_ms, CFG_LONG, 0, 600000),
	K(token_latency_max_ms, CFG_LONG, 0, 600000),
	K(rotate_percent, CFG_LONG, 0, 100),
	K(error_style, CFG_STYLE, 0, 0),
	K(cancel_param, CFG_CANCEL, 0, 0),
	K(transactions, CFG_LONG, 0, 100000),
	K(sync_step_ms, CFG_LONG, 0, 3600000),
	K(sync_fail, CFG_BOOL, 0, 0),
	K(repeat_transaction, CFG_BOOL, 0, 0),
};
#define NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

static const struct cfg_key *
key_find(const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(cfg_keys[i].name, name) == 0)
			return &cfg_keys[i];
	return NULL;
}

/* Stores already-typed text or numbers; shared by both setters. */
static int
key_store(struct sbx_config *c, const struct cfg_key *k, long n, bool b,
    const char *s, char *err, size_t errlen)
{
	char *field = (char *)c + k->off;

	switch (k->type) {
	case CFG_LONG:
		if (n < k->min || n > k->max) {
			snprintf(err, errlen, "%s must be between %ld and %ld",
			    k->name, k->min, k->max);
			return -1;
		}
		memcpy(field, &n, sizeof(n));
		return 0;
	case CFG_BOOL:
		memcpy(field, &b, sizeof(b));
		return 0;
	case CFG_STYLE:
		if (strcmp(s, "oauth") == 0)
			c->error_style = SBX_ERR_OAUTH;
		else if (strcmp(s, "finx") == 0)
			c->error_style = SBX_ERR_FINX;
		else
			break;
		return 0;
	case CFG_CANCEL:
		if (strcmp(s, "abort") != 0 && strcmp(s, "cancel") != 0)
			break;
		snprintf(c->cancel_param, sizeof(c->cancel_param), "%s", s);
		return 0;
	}
	snprintf(err, errlen, "%s: '%.32s' is not allowed", k->name, s);
	return -1;
}

int
config_set_json(struct sbx_config *c, const char *name, json_object *v,
    char *err, size_t errlen)
{
	const struct cfg_key *k = key_find(name);
	json_type want;

	if (k == NULL) {
		snprintf(err, errlen, "unknown key '%.64s'", name);
		return -1;
	}
	want = k->type == CFG_LONG ? json_type_int
	    : k->type == CFG_BOOL  ? json_type_boolean
	                           : json_type_string;
	if (!json_object_is_type(v, want)) {
		snprintf(err, errlen, "%s must be %s", name,
		    want == json_type_int           ? "an integer"
		        : want == json_type_boolean ? "a boolean"
		                                    : "a string");
		return -1;
	}
	if (k->type == CFG_LONG &&
	    (json_object_get_int64(v) < k->min ||
	        json_object_get_int64(v) > k->max)) {
		snprintf(err, errlen, "%s must be between %ld and %ld", name,
		    k->min, k->max);
		return -1;
	}
	return key_store(c, k, (long)json_object_get_int64(v),
	    json_object_get_boolean(v), json_object_get_string(v), err, errlen);
}

int
config_set_str(struct sbx_config *c, const char *name, const char *s, char *err,
    size_t errlen)
{
	const struct cfg_key *k = key_find(name);
	long n = 0;
	bool b = false;

	if (k == NULL) {
		snprintf(err, errlen, "unknown option '%.64s'", name);
		return -1;
	}
	if (k->type == CFG_LONG && parse_long(s, k->min, k->max, &n) == -1) {
		snprintf(err, errlen,
		    "%s must be an integer between %ld and "
		    "%ld",
		    name, k->min, k->max);
		return -1;
	}
	if (k->type == CFG_BOOL) {
		if (strcmp(s, "on") == 0 || strcmp(s, "true") == 0)
			b = true;
		else if (strcmp(s, "off") != 0 && strcmp(s, "false") != 0) {
			snprintf(err, errlen, "%s must be on or off", name);
			return -1;
		}
	}
	return key_store(c, k, n, b, s, err, errlen);
}

json_object *
config_json(const struct sbx_config *c)
{
	json_object *o = json_object_new_object();
	const char *field;
	size_t i;
	long n;
	bool b;

	for (i = 0; i < NKEYS; i++) {
		field = (const char *)c + cfg_keys[i].off;
		switch (cfg_keys[i].type) {
		case CFG_LONG:
			memcpy(&n, field, sizeof(n));
			json_object_object_add(o, cfg_keys[i].name,
			    json_object_new_int64(n));
			break;
		case CFG_BOOL:
			memcpy(&b, field, sizeof(b));
			json_object_object_add(o, cfg_keys[i].name,
			    json_object_new_boolean(b));
			break;
		case CFG_STYLE:
			json_object_object_add(o, cfg_keys[i].name,
			    json_object_new_string(
			        c->error_style == SBX_ERR_FINX ? "finx"
			                                       : "oauth"));
			break;
		case CFG_CANCEL:
			json_object_object_add(o, cfg_keys[i].name,
			    json_object_new_string(c->cancel_param));
			break;
		}
	}
	return o;
}
