/*
 * Pure decoders of finX answers (finx_decode.h): token, flow and error
 * bodies parsed with bounded depth, upstream text cleaned before it is
 * kept.  No I/O and no logging; libcurl is used only for its URL parser.
 */
#include "finx_decode.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "mem.h"
#include "secret.h"
#include "text.h"

#define FINX_MSG_MAX 200   /* bytes of upstream text kept in a message */
#define FINX_CODE_MAX 64   /* bytes of an upstream error code kept */
#define FINX_DEPTH 16      /* JSON nesting for token, flow, error bodies */
#define FINX_MAX_LIFETIME (10L * 366 * 86400) /* "absurd" expires_in */

static bool finx_tokchar(unsigned char);
static size_t finx_utf8_len(unsigned char);
static size_t finx_utf8_fix(char *, size_t);
static const char *finx_jstr(json_object *, const char *, size_t *);
static void finx_decode_finx_error(json_object *, struct finx_error *);
static void finx_decode_oauth_error(json_object *, struct finx_error *);
static long finx_lifetime(json_object *, const char *);
static bool finx_location_ok(const char *);

/* Free the strings in e and zero it, so it can be reused. */
void
finx_error_free(struct finx_error *e)
{
	if (e == NULL)
		return;
	free(e->code);
	free(e->message);
	free(e->detail);
	memset(e, 0, sizeof(*e));
}

/* Wipe and free the token strings; leaves t empty (lifetimes -1). */
void
finx_tokens_free(struct finx_tokens *t)
{
	if (t == NULL)
		return;
	free_secret(t->access_token);
	free_secret(t->refresh_token);
	free(t->token_type);
	free(t->scope);
	memset(t, 0, sizeof(*t));
	t->expires_in = -1;
	t->refresh_expires_in = -1;
}

/*
 * Parse a whole JSON document whose root is an object or an array.  The
 * length passed to json-c excludes the NUL: body need not be terminated
 * (fuzzers), and an object or array ends at its closing bracket anyway.
 * Trailing bytes other than whitespace are rejected.
 */
json_object *
finx_decode_json(const char *body, size_t len, int depth)
{
	struct json_tokener *tok;
	json_object *o;
	size_t end;

	if (body == NULL || len == 0 || len >= INT_MAX ||
	    memchr(body, '\0', len) != NULL)
		return NULL;
	if ((tok = json_tokener_new_ex(depth)) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, body, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (o != NULL && json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		o = NULL;
	}
	/* Its scratch buffer held each string: a token answer's tokens. */
	tokener_wipe(tok);
	json_tokener_free(tok);
	if (o == NULL)
		return NULL;
	while (end < len && isspace((unsigned char)body[end]))
		end++;
	if (end != len ||
	    (!json_object_is_type(o, json_type_object) &&
	        !json_object_is_type(o, json_type_array))) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* Base64/JWT-like characters: runs of these may be an echoed secret. */
static bool
finx_tokchar(unsigned char ch)
{
	return isalnum(ch) || (ch != '\0' && strchr("-._~+/=", ch) != NULL);
}

/* Bytes a UTF-8 sequence starting with lead byte ch should have. */
static size_t
finx_utf8_len(unsigned char ch)
{
	if (ch >= 0xf0)
		return 4;
	if (ch >= 0xe0)
		return 3;
	if (ch >= 0xc0)
		return 2;
	return 1;
}

/*
 * Make out[0..o) valid UTF-8: drop a sequence cut short at the end, and
 * if anything else is broken, replace every non-ASCII byte with '?'.
 */
static size_t
finx_utf8_fix(char *out, size_t o)
{
	size_t j, k;

	for (j = o, k = 0; j > 0 && k < 4; j--, k++) {
		unsigned char ch = (unsigned char)out[j - 1];

		if ((ch & 0xc0) == 0x80)
			continue;
		if (k + 1 < finx_utf8_len(ch))
			o = j - 1;
		break;
	}
	if (!utf8_valid(out, o))
		for (j = 0; j < o; j++)
			if ((unsigned char)out[j] >= 0x80)
				out[j] = '?';
	return o;
}

/*
 * The end of the run of token characters at s[i]; *secretish when it may
 * be a code or a token (16+ bytes mixing letters and digits).
 */
static size_t
finx_tok_run(const char *s, size_t i, size_t n, bool *secretish)
{
	bool alpha = false, digit = false;
	size_t j;

	for (j = i; j < n && finx_tokchar((unsigned char)s[j]); j++) {
		alpha |= isalpha((unsigned char)s[j]) != 0;
		digit |= isdigit((unsigned char)s[j]) != 0;
	}
	*secretish = j - i >= 16 && alpha && digit;
	return j;
}

/*
 * End the cleaned text out[0..o): valid UTF-8, no trailing space, "..."
 * when the input was cut, NUL-terminated.  Its length.
 */
static size_t
finx_clean_end(char *out, size_t o, bool cut)
{
	o = finx_utf8_fix(out, o);
	while (o > 0 && out[o - 1] == ' ')
		o--;
	if (cut && o > 0) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return o;
}

/*
 * Upstream text made safe to log and show: control characters become
 * single spaces, long token-like runs (16+ bytes with letters and digits)
 * become "[redacted]" in case finX echoes a code or token, at most
 * FINX_MSG_MAX bytes ("..." marks a cut), valid UTF-8.  NULL when nothing
 * printable is left.  Linear in n.
 */
char *
finx_clean_text(const char *s, size_t n)
{
	static const char mark[] = "[redacted]";
	char *out = xmalloc(FINX_MSG_MAX + 4);
	size_t i = 0, o = 0, j, room;
	bool secretish;

	while (i < n && o < FINX_MSG_MAX) {
		unsigned char ch = (unsigned char)s[i];

		if (!finx_tokchar(ch)) {
			if (ch < 0x20 || ch == 0x7f)
				ch = ' ';
			if (ch != ' ' || (o > 0 && out[o - 1] != ' '))
				out[o++] = (char)ch;
			i++;
			continue;
		}
		j = finx_tok_run(s, i, n, &secretish);
		room = FINX_MSG_MAX - o;
		if (secretish) {
			if (room < sizeof(mark) - 1)
				break;
			memcpy(out + o, mark, sizeof(mark) - 1);
			o += sizeof(mark) - 1;
		} else {
			memcpy(out + o, s + i, j - i < room ? j - i : room);
			o += j - i < room ? j - i : room;
			if (j - i > room)
				break;
		}
		i = j;
	}
	if (finx_clean_end(out, o, i < n) == 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* A string member of o (no embedded NUL), or NULL; *len its length. */
static const char *
finx_jstr(json_object *o, const char *key, size_t *len)
{
	json_object *v;
	const char *s;
	size_t n;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (s == NULL || strlen(s) != n)
		return NULL;
	if (len != NULL)
		*len = n;
	return s;
}

/* finX's {"error": {...}} shape. */
static void
finx_decode_finx_error(json_object *eo, struct finx_error *err)
{
	const char *desc, *msg, *code;
	json_object *cv;
	size_t n;

	if (json_object_object_get_ex(eo, "code", &cv)) {
		if (json_object_is_type(cv, json_type_int)) {
			err->code = xasprintf("%lld",
			    (long long)json_object_get_int64(cv));
		} else if ((code = finx_jstr(eo, "code", &n)) != NULL) {
			err->code = finx_clean_text(code,
			    n < FINX_CODE_MAX ? n : FINX_CODE_MAX);
			if (strcasestr(code, "invalid_grant") != NULL)
				err->invalid_grant = true;
		}
	}
	desc = finx_jstr(eo, "description", NULL);
	msg = finx_jstr(eo, "message", NULL);
	if ((desc != NULL && strcasestr(desc, "invalid_grant") != NULL) ||
	    (msg != NULL && strcasestr(msg, "invalid_grant") != NULL))
		err->invalid_grant = true;
	if (desc != NULL)
		err->message = finx_clean_text(desc, strlen(desc));
	if (err->message == NULL && msg != NULL)
		err->message = finx_clean_text(msg, strlen(msg));
}

/* OAuth's {"error": "...", "error_description": "..."} shape. */
static void
finx_decode_oauth_error(json_object *root, struct finx_error *err)
{
	const char *e, *desc;
	size_t n;

	e = finx_jstr(root, "error", &n);
	if (e == NULL)
		return;
	if (strcmp(e, "invalid_grant") == 0)
		err->invalid_grant = true;
	err->code = finx_clean_text(e, n < FINX_CODE_MAX ? n : FINX_CODE_MAX);
	if ((desc = finx_jstr(root, "error_description", &n)) != NULL)
		err->message = finx_clean_text(desc, n);
}

/*
 * Fill err (reset first) from an HTTP error answer.  Code and message come
 * from the body when it has a known shape, cleaned and bounded; otherwise
 * the message is "finX answered HTTP <status>".  5xx and 429 are
 * transient.
 */
void
finx_decode_error(long status, const char *body, size_t len,
    struct finx_error *err)
{
	json_object *root, *eo;

	finx_error_free(err);
	err->http_status = status;
	err->transient = status >= 500 || status == 429;
	root = finx_decode_json(body, len, FINX_DEPTH);
	if (root != NULL && json_object_is_type(root, json_type_object) &&
	    json_object_object_get_ex(root, "error", &eo)) {
		if (json_object_is_type(eo, json_type_object))
			finx_decode_finx_error(eo, err);
		else
			finx_decode_oauth_error(root, err);
	}
	json_object_put(root);
	if (err->message == NULL)
		err->message = xasprintf("finX answered HTTP %ld", status);
}

/*
 * A lifetime in seconds from an integer, a number with a fraction or a
 * numeric string; -1 when missing, not positive, not numeric or absurd.
 */
static long
finx_lifetime(json_object *o, const char *key)
{
	json_object *v;
	const char *s, *p;
	double d;
	int64_t i;

	if (!json_object_object_get_ex(o, key, &v))
		return -1;
	switch (json_object_get_type(v)) {
	case json_type_int:
		i = json_object_get_int64(v);
		return i > 0 && i <= FINX_MAX_LIFETIME ? (long)i : -1;
	case json_type_double:
		d = json_object_get_double(v);
		break;
	case json_type_string:
		s = finx_jstr(o, key, NULL);
		if (s == NULL || !isdigit((unsigned char)s[0]) ||
		    strlen(s) > 20)
			return -1;
		for (p = s; isdigit((unsigned char)*p); p++)
			;
		if (*p == '.')
			for (p++; isdigit((unsigned char)*p); p++)
				;
		if (*p != '\0')
			return -1;
		d = strtod(s, NULL);
		break;
	default:
		return -1;
	}
	if (!isfinite(d) || d < 1 || d > (double)FINX_MAX_LIFETIME)
		return -1;
	return (long)d;
}

/*
 * The refresh_token of a token answer into out: none when absent, null or
 * empty (the caller keeps the old token); false when it is not usable.
 */
static bool
finx_decode_refresh(json_object *root, struct finx_tokens *out)
{
	json_object *v;
	const char *s;
	size_t n;

	if (!json_object_object_get_ex(root, "refresh_token", &v) ||
	    json_object_is_type(v, json_type_null))
		return true;
	s = finx_jstr(root, "refresh_token", &n);
	if (s == NULL || has_ctl(s, n))
		return false;
	if (n > 0)
		out->refresh_token = xstrdup(s);
	return true;
}

/*
 * Parse a /auth/token success body into out (always initialised, so
 * finx_tokens_free(out) is safe).  Needs a header-safe access_token; the
 * other fields are optional.  False with *why (static text) otherwise.
 */
bool
finx_decode_tokens(const char *body, size_t len, struct finx_tokens *out,
    const char **why)
{
	json_object *root;
	const char *s;
	size_t n;
	bool ok = false;

	memset(out, 0, sizeof(*out));
	out->expires_in = out->refresh_expires_in = -1;
	*why = NULL;
	root = finx_decode_json(body, len, FINX_DEPTH);
	if (root == NULL || !json_object_is_type(root, json_type_object)) {
		*why = "token answer is not a JSON object";
		goto out;
	}
	s = finx_jstr(root, "access_token", &n);
	if (s == NULL || n == 0 || !token_header_safe(s)) {
		*why = "access_token missing or unusable";
		goto out;
	}
	out->access_token = xstrdup(s);
	if (!finx_decode_refresh(root, out)) {
		*why = "refresh_token is not a usable string";
		goto out;
	}
	/* Informational fields: a wrong type is ignored, not fatal. */
	if ((s = finx_jstr(root, "token_type", &n)) != NULL && n > 0)
		out->token_type = xstrdup(s);
	if ((s = finx_jstr(root, "scope", &n)) != NULL && n > 0)
		out->scope = xstrdup(s);
	out->expires_in = finx_lifetime(root, "expires_in");
	out->refresh_expires_in = finx_lifetime(root, "refresh_expires_in");
	ok = true;
out:
	wipe_json(root);
	json_object_put(root);
	if (!ok)
		finx_tokens_free(out);
	return ok;
}

/*
 * A widget URL we may send a browser to: printable ASCII without spaces,
 * http or https, with a host and without credentials.
 */
static bool
finx_location_ok(const char *loc)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL, *user = NULL;
	const char *p;
	bool ok;

	for (p = loc; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	if ((u = curl_url()) == NULL)
		return false;
	ok = curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    (strcmp(scheme, "https") == 0 || strcmp(scheme, "http") == 0) &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    *host != '\0' &&
	    curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_OK;
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_url_cleanup(u);
	return ok;
}

/*
 * Parse a /ongoing/access success body: "location" (an http(s) URL) and
 * "id", both non-empty strings.  Outputs are written only on success.
 */
bool
finx_decode_flow(const char *body, size_t len, char **flow_id, char **location,
    const char **why)
{
	json_object *root;
	const char *loc = NULL, *id = NULL;
	size_t ln, in;

	*why = NULL;
	root = finx_decode_json(body, len, FINX_DEPTH);
	if (root == NULL || !json_object_is_type(root, json_type_object))
		*why = "flow answer is not a JSON object";
	else if ((loc = finx_jstr(root, "location", &ln)) == NULL || ln == 0)
		*why = "location missing";
	else if (!finx_location_ok(loc))
		*why = "location is not an http(s) URL";
	else if ((id = finx_jstr(root, "id", &in)) == NULL || in == 0 ||
	    in > 1024 || !token_header_safe(id))
		*why = "id missing or unusable";
	if (*why != NULL) {
		wipe_json(root);
		json_object_put(root);
		return false;
	}
	*flow_id = xstrdup(id);
	*location = xstrdup(loc);
	/* location is sealed at rest: no copy left in json-c's strings */
	wipe_json(root);
	json_object_put(root);
	return true;
}
