/*
 * Smoke test of the harness itself, against PostgreSQL alone: the private
 * cluster starts and answers, and it is gone again (with the temp dir)
 * after a normal exit, after h_bail() and after the alarm fires.
 */
#include "harness.h"
#include "test.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum child_mode { CHILD_EXIT, CHILD_BAIL, CHILD_ALARM };

/* In a child: start PostgreSQL, report postmaster pid and temp dir on fd,
 * then leave the way mode says.  Never returns. */
static void
child(enum child_mode mode, int fd)
{
	char path[512], buf[600];
	FILE *f;
	long pid = 0;
	int devnull;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* keep the child's TAP lines out of ours */
	devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, 1);
	unsetenv("FINXD_TEST_KEEP");
	h_init("it_harness-child", 60);
	h_pg_start();
	snprintf(path, sizeof(path), "%s/pgdata/postmaster.pid", h_tmpdir());
	f = fopen(path, "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	snprintf(buf, sizeof(buf), "%ld %s\n", pid, h_tmpdir());
	if (write(fd, buf, strlen(buf)) < 0)
		_exit(3);
	close(fd);
	switch (mode) {
	case CHILD_EXIT:
		exit(0);
	case CHILD_BAIL:
		h_bail("deliberate bail out");
	case CHILD_ALARM:
		alarm(1);
		for (;;)
			pause();
	}
	_exit(4);
}

static bool
pid_gone(long pid)
{
	int i;

	for (i = 0; i < 100; i++) {
		if (kill((pid_t)pid, 0) == -1 && errno == ESRCH)
			return true;
		h_sleep_ms(50);
	}
	return false;
}

static void
check_cleanup(enum child_mode mode, const char *what, int want_rc)
{
	char buf[600] = "", dir[512] = "";
	long pid = 0;
	int fds[2], st = 0;
	ssize_t n;
	pid_t c;

	if (pipe(fds) < 0)
		return;
	fflush(stdout);
	c = fork();
	if (c == 0) {
		close(fds[0]);
		child(mode, fds[1]);
	}
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	if (n > 0)
		buf[n] = '\0';
	waitpid(c, &st, 0);
	if (sscanf(buf, "%ld %511s", &pid, dir) != 2)
		pid = 0;
	CHECK(pid > 0, "%s: child started PostgreSQL", what);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == want_rc,
	    "%s: child exit status %d (want %d)", what,
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1, want_rc);
	CHECK(pid > 0 && pid_gone(pid), "%s: postmaster is gone", what);
	CHECK(dir[0] != '\0' && access(dir, F_OK) == -1 && errno == ENOENT,
	    "%s: temp dir removed", what);
}

static void
check_url_helpers(void)
{
	const char *u = "http://127.0.0.1:1/callback?flow_id=f1&code=a%2Bb"
	                "&success=true&state=s%20x";
	char *v;

	v = h_qparam(u, "state");
	CHECK(v != NULL && strcmp(v, "s x") == 0, "h_qparam decodes");
	free(v);
	v = h_qparam(u, "flow");
	CHECK(v == NULL, "h_qparam: no prefix match");
	free(v);
	v = h_qreplace(u, "flow_id", "zz");
	CHECK(strstr(v, "?flow_id=zz&code=") != NULL, "h_qreplace replaces");
	free(v);
	v = h_qreplace("http://127.0.0.1:1/x", "a", "1");
	CHECK(strcmp(v, "http://127.0.0.1:1/x?a=1") == 0, "h_qreplace adds");
	free(v);
}

static bool
third_time(void *calls)
{
	return ++*(int *)calls >= 3;
}

static bool
never(void *arg)
{
	return false;
}

static void
check_wait_helpers(void)
{
	int calls = 0;
	long t0;

	CHECK(h_wait_until(third_time, &calls, 5000) && calls == 3,
	    "h_wait_until: true once the predicate is (%d calls)", calls);
	t0 = h_now_ms();
	CHECK(!h_wait_every(never, NULL, 100, 10) && h_now_ms() - t0 >= 100,
	    "h_wait_every: false after its timeout");
	calls = 2;
	CHECK(h_wait_until(third_time, &calls, 0),
	    "h_wait_until: asks once even with no time");
	CHECK(h_streq("a", "a") && !h_streq("a", "b") && !h_streq(NULL, "a") &&
	        !h_streq(NULL, NULL),
	    "h_streq: equal strings only");
}

int
main(void)
{
	const char *ci;
	char *v, *ci2, *dump;
	PGresult *res;

	check_cleanup(CHILD_EXIT, "normal exit", 0);
	check_cleanup(CHILD_BAIL, "h_bail", 1);
	check_cleanup(CHILD_ALARM, "alarm", 1);

	h_init("it_harness", 90);
	check_url_helpers();
	check_wait_helpers();
	CHECK(h_free_port() > 1024, "h_free_port gives a port");
	ci = h_pg_start();
	v = h_sql_value(ci, "SELECT 40 + 2", NULL);
	CHECK(v != NULL && strcmp(v, "42") == 0, "SELECT answers");
	free(v);
	v = h_sql_value(ci, "SELECT current_setting('fsync')", NULL);
	CHECK(v != NULL && strcmp(v, "off") == 0, "fsync is off");
	free(v);
	v = h_sql_value(ci, "SELECT current_database()", NULL);
	CHECK(v != NULL && strcmp(v, "finxd") == 0, "database finxd");
	free(v);
	{
		const char *p[] = { "it's", NULL };

		v = h_sql_value(ci, "SELECT $1::text || '!'", p);
		CHECK(v != NULL && strcmp(v, "it's!") == 0, "parameters");
		free(v);
	}
	CHECK(h_sql_long(ci, "SELECT 7", NULL) == 7 &&
	        h_sql_long(ci, "SELECT NULL::int", NULL) == -1 &&
	        h_sql_true(ci, "SELECT true", NULL) &&
	        !h_sql_true(ci, "SELECT false", NULL),
	    "h_sql_long and h_sql_true");
	res = h_sql(ci, "SELECT nonsense FROM nowhere", NULL);
	CHECK(res == NULL, "SQL error gives NULL");
	PQclear(res);

	ci2 = h_pg_create_db("second");
	res = h_sql(ci2, "CREATE TABLE t (a text, b int)", NULL);
	CHECK(res != NULL, "create table in a second database");
	PQclear(res);
	res = h_sql(ci2, "INSERT INTO t VALUES ('needle-1', 7)", NULL);
	PQclear(res);
	dump = h_db_dump(ci2);
	CHECK(strstr(dump, "needle-1") != NULL, "h_db_dump sees rows");
	free(dump);
	dump = h_db_dump(ci);
	CHECK(strstr(dump, "needle-1") == NULL, "databases are separate");
	free(dump);
	free(ci2);
	return h_done(test_done());
}
