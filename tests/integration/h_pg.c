/*
 * The test's private PostgreSQL: initdb, pg_ctl (through runuser when
 * root), extra databases, the h_sql helpers (libpq) and the peeks and
 * waits at finxd's tables (h_conn_col, h_wait_pull_after, ...).
 */
#include "harness_int.h"

#include <sys/stat.h>

#include <errno.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char pg_bindir[256];
static char pg_datadir[320];
static int pg_port;
static pid_t pg_pid;
char *hs_pg_conninfo;

static int pg_ctl(const char *action, long timeout_ms);
static pid_t h_pg_read_pid(void);

void
h_pg_stop(int from_signal)
{
	long end;

	if (pg_pid <= 0)
		return;
	if (!from_signal)
		pg_ctl("stop", 20000);
	/* SIGQUIT is PostgreSQL's immediate shutdown, same as -m immediate */
	if (h_alive(pg_pid))
		kill(pg_pid, SIGQUIT);
	end = h_now_ms() + 10000;
	while (h_alive(pg_pid) && h_now_ms() < end)
		h_sleep_ms(20);
	if (h_alive(pg_pid))
		kill(pg_pid, SIGKILL);
	pg_pid = 0;
}

/* ---- PostgreSQL ------------------------------------------------------ */

static bool
h_pg_find_bindir(void)
{
	const char *env = getenv("PG_BINDIR");
	char path[300];
	glob_t g;
	size_t i;
	FILE *p;

	if (env != NULL) {
		snprintf(path, sizeof(path), "%s/initdb", env);
		if (access(path, X_OK) == 0) {
			snprintf(pg_bindir, sizeof(pg_bindir), "%s", env);
			return true;
		}
	}
	if (access("/usr/lib/postgresql/15/bin/initdb", X_OK) == 0) {
		snprintf(pg_bindir, sizeof(pg_bindir),
		    "/usr/lib/postgresql/15/bin");
		return true;
	}
	p = popen("pg_config --bindir 2>/dev/null", "r");
	if (p != NULL) {
		char line[256] = "";

		if (fgets(line, sizeof(line), p) != NULL) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "%s/initdb", line);
			if (access(path, X_OK) == 0) {
				snprintf(pg_bindir, sizeof(pg_bindir), "%s",
				    line);
				pclose(p);
				return true;
			}
		}
		pclose(p);
	}
	if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0) {
		for (i = g.gl_pathc; i > 0; i--) {
			char *s = g.gl_pathv[i - 1];

			if (access(s, X_OK) == 0) {
				s[strlen(s) - strlen("/initdb")] = '\0';
				snprintf(pg_bindir, sizeof(pg_bindir), "%s", s);
				globfree(&g);
				return true;
			}
		}
		globfree(&g);
	}
	return false;
}
static int
h_pg_tool(const char *const *args, const char *log, long timeout_ms)
{
	char *argv[32];
	char **envp;
	char *bin;
	pid_t pid;
	int a = 0, i, rc;

	if (geteuid() == 0) {
		argv[a++] = access("/usr/sbin/runuser", X_OK) == 0
		    ? "/usr/sbin/runuser"
		    : "runuser";
		argv[a++] = "-u";
		argv[a++] = "postgres";
		argv[a++] = "--";
	}
	bin = h_fmt("%s/%s", pg_bindir, args[0]);
	argv[a++] = bin;
	for (i = 1; args[i] != NULL && a < 31; i++)
		argv[a++] = (char *)args[i];
	argv[a] = NULL;
	envp = h_clean_environ(0);
	pid = h_spawn(argv, envp, log, log, true);
	free(envp);
	hs_run_pid = pid;
	rc = h_wait(pid, timeout_ms);
	hs_run_pid = 0;
	free(bin);
	return rc;
}

static int
pg_ctl(const char *action, long timeout_ms)
{
	char *log = h_path("pg.log");
	char *sock = h_path("pgsock");
	const char *start[] = { "pg_ctl", "-D", pg_datadir, "-l", log, "-w",
		"-t", "60", "start", NULL };
	const char *stop[] = { "pg_ctl", "-D", pg_datadir, "-w", "-t", "15",
		"-m", "immediate", "stop", NULL };
	char *ctl_log = h_path("pg_ctl.log");
	int rc;

	rc = h_pg_tool(strcmp(action, "start") == 0 ? start : stop, ctl_log,
	    timeout_ms);
	free(log);
	free(sock);
	free(ctl_log);
	return rc;
}

static void
h_pg_append_conf(const char *sockdir)
{
	char *conf = h_fmt("%s/postgresql.conf", pg_datadir);
	FILE *f = fopen(conf, "a");

	if (f == NULL)
		h_bail("open postgresql.conf: %s", strerror(errno));
	fprintf(f,
	    "\n# finxd integration tests\n"
	    "port = %d\n"
	    "listen_addresses = '127.0.0.1'\n"
	    "unix_socket_directories = '%s'\n"
	    "fsync = off\n"
	    "synchronous_commit = off\n"
	    "full_page_writes = off\n"
	    "max_connections = 100\n"
	    "shared_buffers = 32MB\n"
	    "log_min_messages = warning\n",
	    pg_port, sockdir);
	/* For profiling by hand: extra settings, ';' between lines (e.g.
	 * "log_min_duration_statement = 0;log_line_prefix = '%p '"). */
	if (getenv("FINXD_TEST_PG_CONF") != NULL) {
		for (const char *p = getenv("FINXD_TEST_PG_CONF"); *p; p++)
			fputc(*p == ';' ? '\n' : *p, f);
		fputc('\n', f);
	}
	fclose(f);
	free(conf);
}

static pid_t
h_pg_read_pid(void)
{
	char *path = h_fmt("%s/postmaster.pid", pg_datadir);
	char *s = h_read_file(path, NULL);
	long v = 0;

	free(path);
	if (s != NULL) {
		v = strtol(s, NULL, 10);
		free(s);
	}
	return (pid_t)v;
}

static PGconn *
h_pg_connect(const char *conninfo)
{
	char *ci = h_fmt("%s connect_timeout=10", conninfo);
	PGconn *c = PQconnectdb(ci);

	free(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		printf("# connect to PostgreSQL failed: %.*s\n",
		    (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

char *
h_pg_create_db(const char *name)
{
	char *admin = h_fmt("host=127.0.0.1 port=%d dbname=postgres "
	                    "user=postgres",
	    pg_port);
	PGconn *c = h_pg_connect(admin);
	char *q;
	PGresult *res;

	free(admin);
	if (c == NULL)
		h_bail("cannot connect to the test PostgreSQL");
	q = h_fmt("CREATE DATABASE \"%s\"", name);
	res = PQexec(c, q);
	free(q);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		h_bail("CREATE DATABASE %s: %s", name, PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
	return h_fmt("host=127.0.0.1 port=%d dbname=%s user=postgres", pg_port,
	    name);
}

const char *
h_pg_start(void)
{
	char *sockdir, *initlog;
	struct passwd *pw = NULL;
	int attempt, rc;

	if (hs_pg_conninfo != NULL)
		return hs_pg_conninfo;
	if (!h_pg_find_bindir()) {
		printf("1..0 # SKIP no PostgreSQL server binaries (initdb)\n");
		fflush(stdout);
		exit(0);
	}
	if (geteuid() == 0) {
		pw = getpwnam("postgres");
		if (pw == NULL)
			h_bail("running as root but there is no postgres user");
		if (chown(hs_tmpdir, pw->pw_uid, pw->pw_gid) < 0)
			h_bail("chown temp dir: %s", strerror(errno));
	}
	snprintf(pg_datadir, sizeof(pg_datadir), "%s/pgdata", hs_tmpdir);
	sockdir = h_path("pgsock");
	if (mkdir(sockdir, 0700) < 0)
		h_bail("mkdir: %s", strerror(errno));
	if (pw != NULL && chown(sockdir, pw->pw_uid, pw->pw_gid) < 0)
		h_bail("chown socket dir: %s", strerror(errno));

	initlog = h_path("initdb.log");
	{
		const char *args[] = { "initdb", "-D", pg_datadir, "-A",
			"trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
			"--no-sync", NULL };

		rc = h_pg_tool(args, initlog, 120000);
	}
	free(initlog);
	if (rc != 0)
		h_bail("initdb failed (exit %d), see initdb.log", rc);

	/* the port was free a moment ago; retry when someone took it */
	for (attempt = 0; attempt < 3; attempt++) {
		pg_port = h_free_port();
		h_pg_append_conf(sockdir);
		rc = pg_ctl("start", 90000);
		if (rc == 0)
			break;
	}
	free(sockdir);
	if (rc != 0)
		h_bail("pg_ctl start failed (exit %d), see pg.log", rc);
	pg_pid = h_pg_read_pid();
	if (pg_pid <= 0)
		h_bail("cannot read postmaster.pid");
	hs_pg_conninfo = h_pg_create_db("finxd");
	printf("# %s: PostgreSQL on 127.0.0.1:%d\n", hs_name, pg_port);
	return hs_pg_conninfo;
}

int
h_pg_ctl(const char *action)
{
	bool stop = strcmp(action, "stop") == 0,
	     start = strcmp(action, "start") == 0,
	     restart = strcmp(action, "restart") == 0;
	char *log, *ctl_log;
	const char *args[16];
	pid_t pid;
	int a = 0, rc;

	if (hs_pg_conninfo == NULL)
		h_bail("h_pg_ctl: PostgreSQL was not started");
	if (!stop && !start && !restart)
		h_bail("h_pg_ctl: unknown action %s", action);
	log = h_path("pg.log");
	ctl_log = h_path("pg_ctl.log");
	args[a++] = "pg_ctl";
	args[a++] = "-D";
	args[a++] = pg_datadir;
	args[a++] = "-w";
	args[a++] = "-t";
	args[a++] = "60";
	if (!stop) {
		args[a++] = "-l";
		args[a++] = log;
	}
	if (!start) {
		args[a++] = "-m";
		args[a++] = "fast";
	}
	args[a++] = action;
	args[a] = NULL;
	rc = h_pg_tool(args, ctl_log, 90000);
	/* a restart makes a new postmaster: follow it, so cleanup stops
	 * the right one (and never signals a stale pid) */
	pid = h_pg_read_pid();
	pg_pid = pid > 0 && h_alive(pid) ? pid : 0;
	free(log);
	free(ctl_log);
	return rc;
}

PGresult *
h_sql(const char *conninfo, const char *query, const char *const *params)
{
	PGconn *c = h_pg_connect(conninfo);
	PGresult *res;
	int n = 0;

	if (c == NULL)
		return NULL;
	while (params != NULL && params[n] != NULL)
		n++;
	res = PQexecParams(c, query, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK &&
	    PQresultStatus(res) != PGRES_COMMAND_OK) {
		/* first line only: DETAIL lines may quote values */
		printf("# SQL error: %.*s\n",
		    (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
		PQclear(res);
		res = NULL;
	}
	PQfinish(c);
	return res;
}

char *
h_sql_value(const char *conninfo, const char *query, const char *const *params)
{
	PGresult *res = h_sql(conninfo, query, params);
	char *v = NULL;

	if (res != NULL && PQntuples(res) > 0 && PQnfields(res) > 0 &&
	    !PQgetisnull(res, 0, 0))
		v = h_xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

char *
h_db_dump(const char *conninfo)
{
	PGresult *tabs = h_sql(conninfo,
	    "SELECT format('SELECT coalesce(string_agg(t::text, E''\\n''), "
	    "'''') FROM %I.%I t', table_schema, table_name) "
	    "FROM information_schema.tables "
	    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
	    "AND table_type = 'BASE TABLE'",
	    NULL);
	char *out = h_xstrdup("");
	int i;

	if (tabs == NULL)
		return out;
	for (i = 0; i < PQntuples(tabs); i++) {
		char *v = h_sql_value(conninfo, PQgetvalue(tabs, i, 0), NULL);
		char *n;

		if (v == NULL)
			continue;
		n = h_fmt("%s%s\n", out, v);
		free(out);
		free(v);
		out = n;
	}
	PQclear(tabs);
	return out;
}

long
h_sql_long(const char *conninfo, const char *query, const char *const *params)
{
	char *v = h_sql_value(conninfo, query, params);
	long n = v != NULL ? strtol(v, NULL, 10) : -1;

	free(v);
	return n;
}

bool
h_sql_do(const char *conninfo, const char *query, const char *const *params)
{
	PGresult *res = h_sql(conninfo, query, params);

	PQclear(res);
	return res != NULL;
}

bool
h_sql_true(const char *conninfo, const char *query, const char *const *params)
{
	char *v = h_sql_value(conninfo, query, params);
	bool t = v != NULL && strcmp(v, "t") == 0;

	free(v);
	return t;
}

struct h_count_wait {
	const char *conninfo, *query;
	const char *const *params;
	long want, last;
};

static bool
h_count_reached(void *arg)
{
	struct h_count_wait *w = arg;
	char *v = h_sql_value(w->conninfo, w->query, w->params);

	w->last = v != NULL ? strtol(v, NULL, 10) : 0;
	free(v);
	return w->last >= w->want;
}

long
h_sql_wait_count(const char *conninfo, const char *query,
    const char *const *params, long want, long timeout_ms)
{
	struct h_count_wait w = { conninfo, query, params, want, 0 };

	h_wait_every(h_count_reached, &w, timeout_ms, 500);
	return w.last;
}

bool
h_revocations_gone(void *cid)
{
	return h_sql_long(hs_pg_conninfo,
	           "SELECT count(*) FROM revocations WHERE connection_id = $1",
	           (const char *[]){ cid, NULL }) == 0;
}

char *
h_conn_col(const char *conninfo, const char *cid, const char *col)
{
	char *q = h_fmt("SELECT %s::text FROM connections WHERE id = $1", col);
	char *v = h_sql_value(conninfo, q, (const char *[]){ cid, NULL });

	free(q);
	return v;
}

long
h_conn_long(const char *conninfo, const char *cid, const char *col)
{
	char *v = h_conn_col(conninfo, cid, col);
	long n = v != NULL ? strtol(v, NULL, 10) : -1;

	free(v);
	return n;
}

char *
h_last_pull(const char *conninfo, const char *cid)
{
	char *v = h_sql_value(conninfo,
	    "SELECT coalesce(to_char(last_pull_at, 'YYYY-MM-DD "
	    "HH24:MI:SS.US'), '') FROM pulls WHERE connection_id = $1",
	    (const char *[]){ cid, NULL });

	return v != NULL ? v : h_xstrdup("");
}

struct h_pull_wait {
	const char *conninfo, *cid, *before;
};

static bool
h_pull_moved(void *arg)
{
	struct h_pull_wait *w = arg;
	char *now = h_last_pull(w->conninfo, w->cid);
	bool moved = now[0] != '\0' && strcmp(now, w->before) != 0;

	free(now);
	return moved;
}

bool
h_wait_pull_after(const char *conninfo, const char *cid, const char *before,
    int secs)
{
	struct h_pull_wait w = { conninfo, cid, before };

	return h_wait_every(h_pull_moved, &w, secs * 1000L, 50);
}

bool
h_repull(const char *conninfo, const char *cid, int secs)
{
	char *before = h_last_pull(conninfo, cid);
	bool ok;

	h_sql_do(conninfo,
	    "UPDATE pulls SET next_pull_at = now(), attended = true WHERE "
	    "connection_id = $1",
	    (const char *[]){ cid, NULL });
	ok = h_wait_pull_after(conninfo, cid, before, secs);
	if (!ok)
		printf("# no pull within %d s\n", secs);
	free(before);
	return ok;
}
