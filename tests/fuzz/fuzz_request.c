/*
 * libFuzzer target: the pure parsing the front does for every request.
 * The input is a request as it arrives, roughly: "METHOD URL" on the
 * first line, "Name: value" header lines up to an empty line, then the
 * body.  The path goes through http_match against every route of the
 * route table (as dispatch does: method compared after the path, each
 * {} segment decoded, ids checked and lower-cased with api_uuid_param),
 * the query's values through http_unescape (MHD hands them over raw, see
 * on_unescape), X-Request-Id through http_request_id_ok, Authorization
 * through http_find_key, and Content-Type with the body through
 * http_body_parse (UTF-8, json_text_check, one JSON object).  Whatever
 * is accepted must satisfy what the handlers rely on.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http.h"
#include "json_check.h"
#include "mem.h"
#include "secret.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
require(int cond)
{
	if (!cond)
		abort();
}

/* The request split up; pointers into one writable copy of the input. */
struct fz_req {
	const char *method, *url, *ctype, *request_id, *auth;
	const char *body;
	size_t body_len;
};

/* Cut the line at *p (CR LF or LF) and move *p past it; NULL at the end. */
static char *
next_line(char **p, char *end)
{
	char *line = *p, *nl;

	if (line >= end)
		return NULL;
	nl = memchr(line, '\n', (size_t)(end - line));
	if (nl == NULL)
		nl = end;
	*p = nl < end ? nl + 1 : end;
	if (nl > line && nl[-1] == '\r')
		nl--;
	*nl = '\0';
	return line;
}

static void
header(struct fz_req *q, char *line)
{
	char *colon = strchr(line, ':'), *v;

	if (colon == NULL)
		return;
	*colon = '\0';
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	if (strcasecmp(line, "Content-Type") == 0)
		q->ctype = v;
	else if (strcasecmp(line, "X-Request-Id") == 0)
		q->request_id = v;
	else if (strcasecmp(line, "Authorization") == 0)
		q->auth = v;
}

/* Split s[0..n) (NUL-terminated at n) into q; false when no first line. */
static bool
split(char *s, size_t n, struct fz_req *q)
{
	char *p = s, *end = s + n, *line, *sp;

	if ((line = next_line(&p, end)) == NULL ||
	    (sp = strchr(line, ' ')) == NULL)
		return false;
	*sp = '\0';
	q->method = line;
	q->url = sp + 1;
	while ((line = next_line(&p, end)) != NULL && *line != '\0')
		header(q, line);
	q->body = p;
	q->body_len = (size_t)(end - p);
	return true;
}

/* A matched route's parameters, checked the way its handler checks them. */
static void
params(const struct route *rt, char **p, int n)
{
	struct req r = { .method = rt->method, .n_params = n };
	int i;

	memcpy(r.params, p, sizeof(r.params));
	for (i = 0; i < n; i++) {
		require(p[i] != NULL && p[i][0] != '\0');
		if (api_uuid_param(&r, i)) {
			require(strlen(p[i]) == 36 && uuid_valid(p[i]));
			require(strspn(p[i], "0123456789abcdef-") == 36);
		}
		(void)api_valid_text(p[i], 255);
	}
}

/* Every route, as dispatch tries them: the first match of method and path
 * wins; a path match with another method makes a 405. */
static void
route(const char *method, const char *path)
{
	const struct route *rt;
	char *p[HTTP_MAX_PARAMS];
	int n, i;
	bool won = false;

	for (rt = routes; rt->pattern != NULL; rt++) {
		if (!http_match(rt->pattern, path, p, &n))
			continue;
		require(n >= 0 && n <= HTTP_MAX_PARAMS);
		if (!won && strcmp(rt->method, method) == 0) {
			won = true;
			params(rt, p, n);
		}
		for (i = 0; i < n; i++)
			free(p[i]);
	}
}

/* The query's values, decoded one by one as http_query does. */
static void
query(const char *q)
{
	char *s = xstrdup(q), *arg, *next, *eq, *v;

	for (arg = s; arg != NULL; arg = next) {
		if ((next = strchr(arg, '&')) != NULL)
			*next++ = '\0';
		eq = strchr(arg, '=');
		if (eq == NULL)
			continue;
		v = http_unescape(eq + 1, strlen(eq + 1));
		/* Decoding only shrinks, and never lets a NUL through. */
		require(v == NULL || strlen(v) <= strlen(eq + 1));
		free(v);
	}
	free(s);
}

static void
url(const char *method, const char *u)
{
	char *path = xstrdup(u), *q = strchr(path, '?');

	if (q != NULL)
		*q++ = '\0';
	route(method, path);
	if (q != NULL)
		query(q);
	free(path);
}

static void
request_id(const char *id)
{
	if (!http_request_id_ok(id))
		return;
	require(strlen(id) >= 1 && strlen(id) <= 64);
	require(!has_ctl(id, strlen(id)));
}

/* One configured key, "fuzz-key", with every scope. */
static void
auth(const char *a)
{
	static struct api_key key;
	static struct config cfg;
	const struct api_key *found;

	if (cfg.n_api_keys == 0) {
		sha256("fuzz-key", 8, key.hash);
		key.scopes = ~0u;
		cfg.api_keys = &key;
		cfg.n_api_keys = 1;
	}
	found = http_find_key(&cfg, a);
	require(found == NULL || found == &key);
}

static void
body(const char *ctype, const char *b, size_t n)
{
	json_object *o = NULL;
	const char *why = NULL;

	if (http_body_parse(ctype, b, n, &o, &why) != ST_OK) {
		require(o == NULL);
		return;
	}
	require(o != NULL && json_object_is_type(o, json_type_object));
	require(utf8_valid(b, n) && json_text_check(b, n) == JSON_SOUND);
	json_object_put(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_req q = { 0 };
	/* A copy the size of the input (NULs kept), NUL-terminated. */
	char *s = xmalloc(size + 1);

	memcpy(s, data, size);
	s[size] = '\0';
	if (split(s, size, &q)) {
		url(q.method, q.url);
		request_id(q.request_id);
		auth(q.auth);
		body(q.ctype, q.body, q.body_len);
	}
	free(s);
	return 0;
}
