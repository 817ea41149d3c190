/*
 * The test's secrets: generation, the leak scans, finxd's log and its
 * redaction when h_done prints a tail of it.
 */
#include "harness_int.h"

#include <sys/random.h>

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char hs_client_secret[41];
char hs_api_key[49];
char hs_token_key[64];

/* extra secrets of the test (more API keys), for scans and redaction */
char **hs_extra_secrets;
int hs_nextra_secrets;

/* issued tokens last seen, for redaction when printing logs */
char **hs_known_issued;
int hs_known_nissued;

void
h_random(void *p, size_t n)
{
	unsigned char *b = p;

	while (n > 0) {
		ssize_t r = getrandom(b, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			h_bail("getrandom: %s", strerror(errno));
		}
		b += r;
		n -= (size_t)r;
	}
}

/* n random alphanumerics into s (s has n+1 bytes). */
void
h_random_alnum(char *s, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                        "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char r[128];
	size_t i;

	if (n > sizeof(r))
		h_bail("h_random_alnum: too long");
	h_random(r, n);
	for (i = 0; i < n; i++)
		s[i] = a[r[i] % (sizeof(a) - 1)];
	s[n] = '\0';
}

void
h_base64(const unsigned char *in, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                        "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63];
		out[o++] = t[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
}
const char *
h_client_secret(void)
{
	return hs_client_secret;
}

const char *
h_api_key(void)
{
	return hs_api_key;
}

const char *
h_token_key(void)
{
	return hs_token_key;
}

static void
h_strv_add(char ***v, int *n, const char *s)
{
	if (s == NULL || *s == '\0')
		return;
	*v = realloc(*v, sizeof(char *) * (size_t)(*n + 1));
	if (*v == NULL)
		h_bail("out of memory");
	(*v)[(*n)++] = h_xstrdup(s);
}

void
h_strv_free(char **v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * Collect issued values: plain strings, or objects whose value fields name
 * the secret (never labels such as "kind").
 */
static void
h_issued_collect(struct json_object *e, char ***v, int *n)
{
	static const char *const fields[] = { "value", "token", "code",
		"access_token", "refresh_token", NULL };
	int f;

	if (json_object_is_type(e, json_type_string)) {
		h_strv_add(v, n, json_object_get_string(e));
		return;
	}
	if (!json_object_is_type(e, json_type_object))
		return;
	for (f = 0; fields[f] != NULL; f++)
		h_strv_add(v, n, h_jstr(e, fields[f]));
}

char **
h_sbx_issued(int *ret_n)
{
	struct json_object *o = h_sbx_get("/_sandbox/issued"), *a = NULL;
	char **v = NULL;
	int n = 0;
	size_t i;

	if (o != NULL) {
		if (!json_object_object_get_ex(o, "tokens", &a) ||
		    !json_object_is_type(a, json_type_array))
			a = NULL;
		for (i = 0; a != NULL && i < json_object_array_length(a); i++)
			h_issued_collect(json_object_array_get_idx(a, i), &v,
			    &n);
		if (json_object_object_get_ex(o, "codes", &a) &&
		    json_object_is_type(a, json_type_array))
			for (i = 0; i < json_object_array_length(a); i++)
				h_issued_collect(json_object_array_get_idx(a,
				                     i),
				    &v, &n);
		json_object_put(o);
	}
	/* keep a copy for redacting logs at the end */
	if (n > 0) {
		h_strv_free(hs_known_issued, hs_known_nissued);
		hs_known_issued = NULL;
		hs_known_nissued = 0;
		for (i = 0; i < (size_t)n; i++)
			h_strv_add(&hs_known_issued, &hs_known_nissued, v[i]);
	}
	*ret_n = n;
	return v;
}

int
h_leaks(const char *s, size_t len)
{
	int n = 0, k, i;
	char **v = h_sbx_issued(&k);

	if (h_memmem(s, len, hs_client_secret))
		n++;
	if (h_memmem(s, len, hs_api_key))
		n++;
	if (h_memmem(s, len, hs_token_key + 3))
		n++;
	for (i = 0; i < k; i++)
		if (h_memmem(s, len, v[i]))
			n++;
	for (i = 0; i < hs_nextra_secrets; i++)
		if (h_memmem(s, len, hs_extra_secrets[i]))
			n++;
	h_strv_free(v, k);
	return n;
}

char *
h_secret_new(size_t n)
{
	char *s;

	if (n < 16 || n > 120)
		h_bail("h_secret_new: bad length");
	s = h_xmalloc(n + 1);
	h_random_alnum(s, n);
	h_strv_add(&hs_extra_secrets, &hs_nextra_secrets, s);
	free(s);
	return hs_extra_secrets[hs_nextra_secrets - 1];
}

char *
h_token_key_new(const char *id)
{
	unsigned char key[32];
	char b64[48];

	h_random(key, sizeof(key));
	h_base64(key, sizeof(key), b64);
	h_strv_add(&hs_extra_secrets, &hs_nextra_secrets, b64);
	return h_fmt("%s:%s", id, b64);
}

/* ---- logs -------------------------------------------------------------- */

char *
h_log_read(size_t *len)
{
	char *path = h_path("finxd.log");
	char *s = h_read_file(path, len);

	free(path);
	if (s == NULL) {
		if (len != NULL)
			*len = 0;
		return h_xstrdup("");
	}
	return s;
}

bool
h_log_contains(const char *needle)
{
	size_t len;
	char *s = h_log_read(&len);
	bool found = h_memmem(s, len, needle);

	free(s);
	return found;
}

long
h_log_size(void)
{
	size_t len;
	char *s = h_log_read(&len);

	free(s);
	return (long)len;
}

static void
h_redact_exact(char *s, const char *secret)
{
	size_t n = strlen(secret);
	char *p;

	if (n == 0)
		return;
	while ((p = strstr(s, secret)) != NULL)
		memset(p, '*', n);
}

static bool
h_tokchar(int c)
{
	return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
	    c == '+' || c == '/' || c == '=' || c == '%';
}

static bool
h_is_uuid(const char *s, size_t n)
{
	size_t i;

	if (n != 36)
		return false;
	for (i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* A run that is plainly not a secret: a path or name made of UUIDs and
 * lower-case snake_case words (no digits, so no hex). */
static bool
h_benign_run(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		bool word = true;

		while (j < n && s[j] != '/')
			j++;
		if (!h_is_uuid(s + i, j - i)) {
			size_t k;

			for (k = i; k < j; k++)
				if (!(islower((unsigned char)s[k]) ||
				        s[k] == '_' || s[k] == '.' ||
				        s[k] == '{' || s[k] == '}'))
					word = false;
			if (!word)
				return false;
		}
		i = j + 1;
	}
	return true;
}

/*
 * Blank every run of 16+ token-like characters unless it is plainly
 * benign (UUIDs, snake_case words, paths of those): the log must never be
 * printed with a token or code in it, even one the sandbox did not report.
 */
static void
h_redact_runs(char *s)
{
	size_t i = 0, n = strlen(s);

	while (i < n) {
		size_t j = i;

		while (j < n && h_tokchar((unsigned char)s[j]))
			j++;
		if (j - i >= 16 && !h_benign_run(s + i, j - i))
			memset(s + i, '*', j - i);
		i = j == i ? i + 1 : j;
	}
}

int
h_done(int rc)
{
	size_t len;
	char *s, *p;
	int i, lines = 0;

	if (rc == 0 || hs_tmpdir[0] == '\0' || hs_owner_pid != getpid())
		return rc;
	s = h_log_read(&len);
	if (len == 0) {
		free(s);
		return rc;
	}
	if (hs_sbx.pid > 0) {
		int k;
		char **v = h_sbx_issued(&k);

		h_strv_free(v, k);
	}
	h_redact_exact(s, hs_client_secret);
	h_redact_exact(s, hs_api_key);
	for (i = 0; i < hs_nextra_secrets; i++)
		h_redact_exact(s, hs_extra_secrets[i]);
	h_redact_exact(s, hs_token_key + 3);
	for (i = 0; i < hs_known_nissued; i++)
		h_redact_exact(s, hs_known_issued[i]);
	h_redact_runs(s);
	/* the last 60 lines */
	for (p = s + len; p > s; p--)
		if (*(p - 1) == '\n' && ++lines > 60)
			break;
	fprintf(stderr, "# --- finxd.log tail (redacted) ---\n");
	fputs(p, stderr);
	fprintf(stderr, "# --- end (FINXD_TEST_KEEP=1 keeps %s) ---\n", hs_tmpdir);
	free(s);
	return rc;
}
