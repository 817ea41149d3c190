/*
 * finxd processes: their environment, h_setup (the usual start of a
 * test), h_finxd_run (one command), h_finxd_start/stop (servers) and
 * h_run for other programs.
 */
#include "harness_int.h"

#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* finxd environment: "NAME=value" strings */
char **hs_env_list;
int hs_env_n;

/* ---- finxd ------------------------------------------------------------ */

void
h_env_set(const char *name, const char *value)
{
	size_t nl = strlen(name);
	int i;

	for (i = 0; i < hs_env_n; i++) {
		if (strncmp(hs_env_list[i], name, nl) == 0 &&
		    hs_env_list[i][nl] == '=') {
			free(hs_env_list[i]);
			if (value == NULL) {
				hs_env_list[i] = hs_env_list[--hs_env_n];
			} else {
				hs_env_list[i] = h_fmt("%s=%s", name, value);
			}
			return;
		}
	}
	if (value == NULL)
		return;
	hs_env_list = realloc(hs_env_list, sizeof(char *) * (size_t)(hs_env_n + 1));
	if (hs_env_list == NULL)
		h_bail("out of memory");
	hs_env_list[hs_env_n++] = h_fmt("%s=%s", name, value);
}

void
h_env_defaults(const char *conninfo)
{
	h_env_set("FINXD_DATABASE_URL", conninfo);
	if (hs_sbx.url[0] != '\0')
		h_env_set("FINXD_FINX_URL", hs_sbx.url);
	h_env_set("FINXD_FINX_CLIENT_ID", "test-client");
	h_env_set("FINXD_FINX_CLIENT_SECRET", hs_client_secret);
	h_env_set("FINXD_API_KEYS", hs_api_key);
	h_env_set("FINXD_RETURN_URLS", "https://partner.example/return");
	h_env_set("FINXD_TOKEN_KEYS", hs_token_key);
	h_env_set("FINXD_LOG_LEVEL", "debug");
	/* The environment is cleaned of FINXD_*: a suite registered to run
	 * without prepared statements (PgBouncer's mode) says so here. */
	if (getenv("FINXD_TEST_DB_PREPARED") != NULL)
		h_env_set("FINXD_DB_PREPARED", getenv("FINXD_TEST_DB_PREPARED"));
}

/* The environment for a finxd: ours (cleaned) + env_list + listen. */
static char **
h_finxd_envp(int port, char **ret_a, char **ret_b)
{
	char **e = h_clean_environ(hs_env_n + 2);
	int n = 0, i;

	while (e[n] != NULL)
		n++;
	for (i = 0; i < hs_env_n; i++)
		e[n++] = hs_env_list[i];
	*ret_a = h_fmt("FINXD_LISTEN=127.0.0.1:%d", port);
	*ret_b = h_fmt("FINXD_PUBLIC_URL=http://127.0.0.1:%d", port);
	e[n++] = *ret_a;
	e[n++] = *ret_b;
	e[n] = NULL;
	return e;
}

static const char *
h_finxd_exe(void)
{
	const char *exe = getenv("FINXD_EXE");

	if (exe == NULL)
		h_bail("FINXD_EXE is not set (run through meson test)");
	return exe;
}

const char *
h_setup(const char *const *sbx_args)
{
	const char *migrate[] = { "migrate", NULL };
	const char *db = h_pg_start();

	h_sandbox_start(sbx_args);
	h_env_defaults(db);
	if (h_finxd_run(migrate, 60) != 0)
		h_bail("finxd migrate failed");
	return db;
}

int
h_finxd_run(const char *const *args, int timeout_s)
{
	return h_finxd_run_exe(h_finxd_exe(), args, timeout_s);
}

int
h_finxd_run_exe(const char *exe, const char *const *args, int timeout_s)
{
	char *out = h_path("run.out");
	char *argv[32];
	char *la, *lb;
	char **envp;
	int a = 0, i, rc;

	argv[a++] = (char *)exe;
	for (i = 0; args != NULL && args[i] != NULL && a < 31; i++)
		argv[a++] = (char *)args[i];
	argv[a] = NULL;
	envp = h_finxd_envp(h_free_port(), &la, &lb);
	hs_run_pid = h_spawn(argv, envp, out, out, false);
	rc = h_wait(hs_run_pid, (long)timeout_s * 1000);
	hs_run_pid = 0;
	free(envp);
	free(la);
	free(lb);
	free(out);
	return rc;
}

int
h_run(const char *const *argv, const char *out_name, int timeout_s)
{
	char *out = h_path(out_name);
	int rc;

	hs_run_pid = h_spawn((char *const *)argv, NULL, out, out, false);
	rc = h_wait(hs_run_pid, (long)timeout_s * 1000);
	hs_run_pid = 0;
	free(out);
	return rc;
}

char *
h_finxd_output(void)
{
	char *out = h_path("run.out");
	char *s = h_read_file(out, NULL);

	free(out);
	return s ? s : h_xstrdup("");
}

const char *
h_finxd_url(int i)
{
	if (i < 0 || i >= hs_nfinxd)
		h_bail("no finxd instance %d", i);
	return hs_finxd[i].url;
}

/* The operations routes: with an operations listener, served there only. */
static bool
h_ops_path(const char *path)
{
	static const char *const ops[] = { "/healthz", "/readyz", "/metrics" };
	size_t n = strcspn(path, "?"), i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strlen(ops[i]) == n && strncmp(path, ops[i], n) == 0)
			return true;
	return false;
}

const char *
h_finxd_base(int i, const char *path)
{
	const char *url = h_finxd_url(i); /* bails on a bad i */

	if (hs_finxd[i].ops_url[0] != '\0' && h_ops_path(path))
		return hs_finxd[i].ops_url;
	return url;
}

/* FINXD_OPS_LISTEN of the environment a finxd starts with, or NULL. */
static const char *
h_env_ops_listen(void)
{
	static const char name[] = "FINXD_OPS_LISTEN=";
	int i;

	for (i = 0; i < hs_env_n; i++)
		if (strncmp(hs_env_list[i], name, sizeof(name) - 1) == 0)
			return hs_env_list[i] + sizeof(name) - 1;
	return NULL;
}

/* Poll path on p until 200; bails when finxd exits or limit_ms passes. */
static void
h_finxd_poll(struct h_proc *p, const char *path, long limit_ms)
{
	char *url = h_fmt("%s%s", p->ops_url[0] ? p->ops_url : p->url, path);
	long end = h_now_ms() + limit_ms;
	int st;

	while (h_now_ms() < end) {
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			p->pid = 0;
			free(url);
			h_bail("finxd serve exited with %d before %s answered "
			       "200",
			    h_status_code(st), path);
		}
		if (h_probe(url) == 200) {
			free(url);
			return;
		}
		h_sleep_ms(50);
	}
	free(url);
	h_bail("finxd %s did not answer 200 within %ld s", path,
	    limit_ms / 1000);
}

int
h_finxd_start(void)
{
	return h_finxd_start_exe(h_finxd_exe(), true);
}

int
h_finxd_start_listening(void)
{
	return h_finxd_start_exe(h_finxd_exe(), false);
}

int
h_finxd_start_exe(const char *exe, bool ready)
{
	const char *argv[] = { exe, "serve", NULL };
	char *log = h_path("finxd.log");
	struct h_proc *p;
	char *la, *lb;
	char **envp;

	if (hs_nfinxd >= H_MAX_FINXD)
		h_bail("too many finxd instances");
	p = &hs_finxd[hs_nfinxd];
	p->port = h_free_port();
	snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", p->port);
	p->ops_url[0] = '\0';
	if (h_env_ops_listen() != NULL)
		snprintf(p->ops_url, sizeof(p->ops_url), "http://%s",
		    h_env_ops_listen());
	envp = h_finxd_envp(p->port, &la, &lb);
	p->pid = h_spawn((char *const *)argv, envp, log, log, true);
	hs_nfinxd++;
	free(envp);
	free(la);
	free(lb);
	free(log);

	/* serve listens before the database is ready: /healthz first,
	 * then /readyz (200 once the pool is open and the workers run) */
	h_finxd_poll(p, "/healthz", 20000);
	if (ready)
		h_finxd_poll(p, "/readyz", 30000);
	printf("# %s: finxd #%d on 127.0.0.1:%d%s\n", hs_name, hs_nfinxd - 1,
	    p->port, ready ? "" : " (listening)");
	return hs_nfinxd - 1;
}

int
h_finxd_stop(int i, int sig)
{
	return h_finxd_stop_wait(i, sig, 5000);
}

int
h_finxd_stop_wait(int i, int sig, long wait_ms)
{
	int rc;

	if (i < 0 || i >= hs_nfinxd || hs_finxd[i].pid <= 0)
		return -1;
	rc = h_kill_wait_ms(hs_finxd[i].pid, sig, wait_ms);
	hs_finxd[i].pid = 0;
	return rc;
}

int
h_finxd_count(void)
{
	return hs_nfinxd;
}

int
h_finxd_pid(int i)
{
	return i >= 0 && i < hs_nfinxd ? (int)hs_finxd[i].pid : 0;
}

bool
h_file_contains(const char *name, const char *needle)
{
	char *path = h_path(name);
	size_t len = 0;
	char *s = h_read_file(path, &len);
	bool found = s != NULL && h_memmem(s, len, needle);

	free(path);
	free(s);
	return found;
}
