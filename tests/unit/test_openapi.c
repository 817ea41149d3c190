/*
 * The OpenAPI document and the route table agree: every route finxd
 * serves is documented with its method, and every documented operation
 * is served.  ("{}" in a route pattern matches any "{name}" segment.)
 */
#include <string.h>

#include "api.h"
#include "buf.h"
#include "test.h"

/* "/v1/links/{link_id}" -> "/v1/links/{}" */
static char *
normalise(const char *path)
{
	struct buf b;
	const char *p;

	buf_init(&b, 4096);
	for (p = path; *p; p++) {
		if (*p == '{') {
			buf_append_str(&b, "{}");
			p = strchr(p, '}');
			if (p == NULL)
				break;
		} else
			buf_append(&b, p, 1);
	}
	return buf_steal(&b);
}

static bool
documented(json_object *paths, const struct route *rt)
{
	bool found = false;
	char method[16];
	size_t i;

	for (i = 0; rt->method[i] && i < sizeof(method) - 1; i++)
		method[i] = (char)(rt->method[i] | 0x20);
	method[i] = '\0';
	json_object_object_foreach(paths, path, ops) {
		char *n = normalise(path);

		/* A route of any method ("*"): documented with some. */
		if (strcmp(n, rt->pattern) == 0 &&
		    (strcmp(rt->method, "*") == 0 ||
			json_object_object_get_ex(ops, method, NULL)))
			found = true;
		free(n);
	}
	return found;
}

static bool
served(const char *path, const char *method)
{
	char *n = normalise(path);
	const struct route *rt;
	bool found = false;

	for (rt = routes; rt->pattern != NULL; rt++)
		if (strcmp(rt->pattern, n) == 0 &&
		    (strcmp(rt->method, "*") == 0 ||
			strcasecmp(rt->method, method) == 0))
			found = true;
	free(n);
	return found;
}

int
main(void)
{
	json_object *doc = json_tokener_parse(openapi_json), *paths, *v;
	const struct route *rt;
	int n_ops = 0;

	CHECK(doc != NULL, "openapi.json parses");
	if (doc == NULL)
		return test_done();
	CHECK(json_object_object_get_ex(doc, "openapi", &v) &&
		strcmp(json_object_get_string(v), "3.1.0") == 0,
	    "document is OpenAPI 3.1.0");
	CHECK(json_object_object_get_ex(doc, "paths", &paths),
	    "document has paths");
	for (rt = routes; rt->pattern != NULL; rt++)
		CHECK(documented(paths, rt), "route %s %s is documented",
		    rt->method, rt->pattern);
	json_object_object_foreach(paths, path, ops) {
		json_object_object_foreach(ops, method, op) {
			(void)op;
			if (strcmp(method, "parameters") == 0)
				continue;
			n_ops++;
			CHECK(served(path, method), "documented %s %s is served",
			    method, path);
		}
	}
	CHECK(n_ops > 0, "document has %d operations", n_ops);
	/* Every /v1 operation requires the API key unless it says not. */
	json_object_object_foreach(paths, p2, ops2) {
		if (strncmp(p2, "/v1/", 4) != 0)
			continue;
		json_object_object_foreach(ops2, m2, op2) {
			CHECK(!json_object_object_get_ex(op2, "security", &v),
			    "%s %s uses the default bearer security", m2, p2);
		}
	}
	json_object_put(doc);
	return test_done();
}
