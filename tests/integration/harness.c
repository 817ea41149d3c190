/*
 * Integration test harness (see harness.h): process control for
 * PostgreSQL, finx-sandbox and finxd, libcurl and libpq helpers, and the
 * secret-leak scans.  Cleanup runs from atexit, h_bail, the alarm and
 * SIGINT/SIGTERM, and kills whole process groups.
 */
#include "harness.h"

#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

extern char **environ;

#define H_BODY_MAX (16 * 1024 * 1024)
#define H_LOOPBACK "http://127.0.0.1:"

struct h_proc {
	pid_t pid;
	int port;
	char url[64];
};

static char h_name[128];
static char tmpdir[256];
static pid_t owner_pid;
static volatile sig_atomic_t cleaned;

static char client_secret[41];
static char api_key[49];
static char token_key[64];

/* PostgreSQL */
static char pg_bindir[256];
static char pg_datadir[320];
static int pg_port;
static pid_t pg_pid;
static char *pg_conninfo;

/* processes we spawned */
static struct h_proc finxd[H_MAX_FINXD];
static int nfinxd;
static struct h_proc sbx;
static pid_t run_pid; /* an h_finxd_run in progress */

/* finxd environment: "NAME=value" strings */
static char **env_list;
static int env_n;

/* extra secrets of the test (more API keys), for scans and redaction */
static char **extra_secrets;
static int nextra_secrets;

/* issued tokens last seen, for redaction when printing logs */
static char **known_issued;
static int known_nissued;

static void h_cleanup(int from_signal);

/* ---- small utilities ---------------------------------------------- */

static void *
h_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		h_bail("out of memory");
	return p;
}

static char *
h_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = h_xmalloc(n);

	memcpy(p, s, n);
	return p;
}

static char *
h_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		h_bail("vsnprintf failed");
	s = h_xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static void
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
static void
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

static void
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

long
h_long(const char *s, long dflt)
{
	char *end;
	long v;

	if (s == NULL)
		return dflt;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		h_bail("not a whole number: %.40s", s);
	return v;
}

void
h_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

long
h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long
h_realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whole file into a malloc'd NUL-terminated string; NULL when unreadable. */
static char *
h_read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *s = NULL;
	size_t len = 0, cap = 0;

	if (f == NULL)
		return NULL;
	for (;;) {
		size_t n;

		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 65536;
			s = realloc(s, cap + 1);
			if (s == NULL)
				h_bail("out of memory");
		}
		n = fread(s + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	s[len] = '\0';
	if (ret_len != NULL)
		*ret_len = len;
	return s;
}

static bool
h_memmem(const char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	return n > 0 && memmem(hay, len, needle, n) != NULL;
}

const char *
h_tmpdir(void)
{
	return tmpdir;
}

char *
h_path(const char *name)
{
	return h_xasprintf("%s/%s", tmpdir, name);
}

const char *
h_client_secret(void)
{
	return client_secret;
}

const char *
h_api_key(void)
{
	return api_key;
}

const char *
h_token_key(void)
{
	return token_key;
}

int
h_free_port(void)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int fd, port;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		h_bail("socket: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = 0;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
		h_bail("bind 127.0.0.1:0: %s", strerror(errno));
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* ---- processes ------------------------------------------------------ */

/*
 * fork+exec argv in its own process group with envp (NULL: ours), stdin
 * from /dev/null, stdout and stderr to files (append when asked).  The
 * child gets SIGKILL when we die without cleaning up.
 */
static pid_t
h_spawn(char *const argv[], char *const envp[], const char *out,
    const char *err, bool append)
{
	pid_t parent = getpid();
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		h_bail("fork: %s", strerror(errno));
	if (pid == 0) {
		int flags = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
		sigset_t none;
		int fd;

		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, 0);
		fd = open(out ? out : "/dev/null", flags, 0644);
		if (fd >= 0)
			dup2(fd, 1);
		fd = open(err ? err : "/dev/null", flags, 0644);
		if (fd >= 0)
			dup2(fd, 2);
		for (fd = 3; fd < 1024; fd++)
			close(fd);
		if (envp != NULL)
			execvpe(argv[0], argv, envp);
		else
			execvp(argv[0], argv);
		_exit(127);
	}
	setpgid(pid, pid);
	return pid;
}

static int
h_status_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* Wait for pid up to timeout_ms; returns the exit code, or -1 (and the
 * process group is killed) when it ran too long. */
static int
h_wait(pid_t pid, long timeout_ms)
{
	long end = h_now_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return h_status_code(st);
		if (r < 0 && errno != EINTR)
			return -1;
		if (h_now_ms() > end)
			break;
		h_sleep_ms(10);
	}
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* Stop a process group: sig, up to wait_ms, then SIGKILL.  Exit code or
 * -1. */
static int
h_kill_wait_ms(pid_t pid, int sig, long wait_ms)
{
	long end;
	int st;

	if (pid <= 0)
		return -1;
	kill(-pid, sig);
	kill(pid, sig);
	end = h_now_ms() + wait_ms;
	while (h_now_ms() < end) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid) {
			kill(-pid, SIGKILL); /* stragglers of the group */
			return h_status_code(st);
		}
		if (r < 0 && errno != EINTR)
			return -1;
		h_sleep_ms(10);
	}
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static int
h_kill_wait(pid_t pid, int sig)
{
	return h_kill_wait_ms(pid, sig, 5000);
}

/* True while pid exists (it need not be our child). */
static bool
h_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

/* ---- init and cleanup ---------------------------------------------- */

static void
h_rm_rf(const char *dir)
{
	char *argv[] = { "rm", "-rf", (char *)dir, NULL };
	pid_t pid;
	int st;

	if (dir[0] == '\0' || strncmp(dir, "/tmp/", 5) != 0)
		return;
	pid = fork();
	if (pid == 0) {
		execv("/bin/rm", argv);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
}

static int pg_ctl(const char *action, long timeout_ms);
static pid_t h_pg_read_pid(void);

static void
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

static void
h_cleanup(int from_signal)
{
	sigset_t block;
	int i;

	if (owner_pid != getpid() || cleaned)
		return;
	cleaned = 1;
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, NULL);
	alarm(0);
	if (run_pid > 0)
		h_kill_wait(run_pid, SIGKILL);
	run_pid = 0;
	for (i = 0; i < nfinxd; i++) {
		if (finxd[i].pid > 0)
			h_kill_wait(finxd[i].pid, SIGTERM);
		finxd[i].pid = 0;
	}
	if (sbx.pid > 0)
		h_kill_wait(sbx.pid, SIGTERM);
	sbx.pid = 0;
	h_pg_stop(from_signal);
	if (tmpdir[0] != '\0') {
		if (getenv("FINXD_TEST_KEEP") != NULL) {
			fprintf(stderr, "# %s: kept %s\n", h_name, tmpdir);
		} else {
			h_rm_rf(tmpdir);
		}
	}
	if (!from_signal) {
		h_strv_free(known_issued, known_nissued);
		known_issued = NULL;
		known_nissued = 0;
		h_strv_free(extra_secrets, nextra_secrets);
		extra_secrets = NULL;
		nextra_secrets = 0;
		for (i = 0; i < env_n; i++)
			free(env_list[i]);
		free(env_list);
		env_list = NULL;
		env_n = 0;
		free(pg_conninfo);
		pg_conninfo = NULL;
		curl_global_cleanup();
	}
}

static void
h_atexit(void)
{
	h_cleanup(0);
}

static void
h_on_signal(int sig)
{
	static const char tmo[] = "Bail out! test timed out (alarm)\n";
	static const char intr[] = "Bail out! interrupted by a signal\n";
	ssize_t w;

	if (sig == SIGALRM)
		w = write(1, tmo, sizeof(tmo) - 1);
	else
		w = write(1, intr, sizeof(intr) - 1);
	(void)w;
	h_cleanup(1);
	_exit(1);
}

void
h_bail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	printf("Bail out! %s: ", h_name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	h_done(1);
	exit(1);
}

void
h_init(const char *name, int timeout_s)
{
	struct sigaction sa;
	unsigned char key[32];
	char b64[48];

	snprintf(h_name, sizeof(h_name), "%s", name);
	owner_pid = getpid();
	cleaned = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	atexit(h_atexit);
	alarm((unsigned)timeout_s);

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/finxd-it-XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		tmpdir[0] = '\0';
		h_bail("mkdtemp: %s", strerror(errno));
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		h_bail("curl_global_init failed");

	h_random_alnum(client_secret, 40);
	h_random_alnum(api_key, 48);
	h_random(key, sizeof(key));
	h_base64(key, sizeof(key), b64);
	snprintf(token_key, sizeof(token_key), "k1:%s", b64);
	printf("# %s: temp dir %s\n", h_name, tmpdir);
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

/*
 * Our environment without PG* variables (they would redirect libpq and
 * the server tools) and without FINXD_*; caller frees the array only.
 */
static char **
h_clean_environ(int extra)
{
	char **e;
	int n = 0, i, o = 0;

	while (environ[n] != NULL)
		n++;
	e = h_xmalloc(sizeof(char *) * (size_t)(n + extra + 1));
	for (i = 0; i < n; i++) {
		if (strncmp(environ[i], "PG", 2) == 0 ||
		    strncmp(environ[i], "FINXD_", 6) == 0)
			continue;
		e[o++] = environ[i];
	}
	e[o] = NULL;
	return e;
}

/* Run a PostgreSQL tool (as user postgres when root); exit code or -1. */
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
	bin = h_xasprintf("%s/%s", pg_bindir, args[0]);
	argv[a++] = bin;
	for (i = 1; args[i] != NULL && a < 31; i++)
		argv[a++] = (char *)args[i];
	argv[a] = NULL;
	envp = h_clean_environ(0);
	pid = h_spawn(argv, envp, log, log, true);
	free(envp);
	run_pid = pid;
	rc = h_wait(pid, timeout_ms);
	run_pid = 0;
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
	char *conf = h_xasprintf("%s/postgresql.conf", pg_datadir);
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
	fclose(f);
	free(conf);
}

static pid_t
h_pg_read_pid(void)
{
	char *path = h_xasprintf("%s/postmaster.pid", pg_datadir);
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
	char *ci = h_xasprintf("%s connect_timeout=10", conninfo);
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
	char *admin = h_xasprintf("host=127.0.0.1 port=%d dbname=postgres "
	                          "user=postgres",
	    pg_port);
	PGconn *c = h_pg_connect(admin);
	char *q;
	PGresult *res;

	free(admin);
	if (c == NULL)
		h_bail("cannot connect to the test PostgreSQL");
	q = h_xasprintf("CREATE DATABASE \"%s\"", name);
	res = PQexec(c, q);
	free(q);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		h_bail("CREATE DATABASE %s: %s", name, PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
	return h_xasprintf("host=127.0.0.1 port=%d dbname=%s user=postgres",
	    pg_port, name);
}

const char *
h_pg_start(void)
{
	char *sockdir, *initlog;
	struct passwd *pw = NULL;
	int attempt, rc;

	if (pg_conninfo != NULL)
		return pg_conninfo;
	if (!h_pg_find_bindir()) {
		printf("1..0 # SKIP no PostgreSQL server binaries (initdb)\n");
		fflush(stdout);
		exit(0);
	}
	if (geteuid() == 0) {
		pw = getpwnam("postgres");
		if (pw == NULL)
			h_bail("running as root but there is no postgres user");
		if (chown(tmpdir, pw->pw_uid, pw->pw_gid) < 0)
			h_bail("chown temp dir: %s", strerror(errno));
	}
	snprintf(pg_datadir, sizeof(pg_datadir), "%s/pgdata", tmpdir);
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
	pg_conninfo = h_pg_create_db("finxd");
	printf("# %s: PostgreSQL on 127.0.0.1:%d\n", h_name, pg_port);
	return pg_conninfo;
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

	if (pg_conninfo == NULL)
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
		n = h_xasprintf("%s%s\n", out, v);
		free(out);
		free(v);
		out = n;
	}
	PQclear(tabs);
	return out;
}

/* ---- HTTP ------------------------------------------------------------ */

struct h_buf {
	char *p;
	size_t len, cap;
};

static bool
h_buf_add(struct h_buf *b, const char *p, size_t n)
{
	if (b->len + n > H_BODY_MAX)
		return false;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (b->p == NULL)
			h_bail("out of memory");
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return true;
}

static size_t
h_write_cb(char *p, size_t size, size_t n, void *ud)
{
	return h_buf_add(ud, p, size * n) ? size * n : 0;
}

static void
h_resp_clear_headers(struct h_resp *r)
{
	int i;

	for (i = 0; i < r->nh; i++) {
		free(r->hname[i]);
		free(r->hval[i]);
	}
	free(r->hname);
	free(r->hval);
	r->hname = r->hval = NULL;
	r->nh = 0;
}

static size_t
h_header_cb(char *p, size_t size, size_t n, void *ud)
{
	struct h_resp *r = ud;
	size_t len = size * n;
	const char *colon;
	size_t nl, vs, ve;

	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* a new response (e.g. after 100 Continue) */
		h_resp_clear_headers(r);
		return len;
	}
	colon = memchr(p, ':', len);
	if (colon == NULL)
		return len;
	nl = (size_t)(colon - p);
	vs = nl + 1;
	while (vs < len && (p[vs] == ' ' || p[vs] == '\t'))
		vs++;
	ve = len;
	while (ve > vs &&
	    (p[ve - 1] == '\r' || p[ve - 1] == '\n' || p[ve - 1] == ' '))
		ve--;
	r->hname = realloc(r->hname, sizeof(char *) * (size_t)(r->nh + 1));
	r->hval = realloc(r->hval, sizeof(char *) * (size_t)(r->nh + 1));
	if (r->hname == NULL || r->hval == NULL)
		h_bail("out of memory");
	r->hname[r->nh] = strndup(p, nl);
	r->hval[r->nh] = strndup(p + vs, ve - vs);
	if (r->hname[r->nh] == NULL || r->hval[r->nh] == NULL)
		h_bail("out of memory");
	r->nh++;
	return len;
}

int
h_http(const char *method, const char *url, const char *const *headers,
    const char *body, size_t body_len, struct h_resp *r)
{
	struct curl_slist *hl = NULL;
	struct h_buf b = { NULL, 0, 0 };
	CURL *c;
	CURLcode cc;
	long t0;
	int i;

	memset(r, 0, sizeof(*r));
	/* loopback only; never print the URL, it may carry a code */
	if (url == NULL || strncmp(url, H_LOOPBACK, strlen(H_LOOPBACK)) != 0) {
		printf("# h_http: refusing a non-loopback or missing URL\n");
		r->body = h_xstrdup("");
		return -1;
	}
	c = curl_easy_init();
	if (c == NULL)
		h_bail("curl_easy_init failed");
	hl = curl_slist_append(hl, "Expect:");
	for (i = 0; headers != NULL && headers[i] != NULL; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else {
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		if (body != NULL || strcmp(method, "POST") == 0) {
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
			    (long)(body ? body_len : 0));
			curl_easy_setopt(c, CURLOPT_POSTFIELDS,
			    body ? body : "");
		}
	}
	t0 = h_now_ms();
	cc = curl_easy_perform(c);
	r->ms = h_now_ms() - t0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	else
		printf("# h_http %s: %s\n", method, curl_easy_strerror(cc));
	curl_easy_cleanup(c);
	curl_slist_free_all(hl);
	r->body = b.p ? b.p : h_xstrdup("");
	r->body_len = b.len;
	return cc == CURLE_OK ? 0 : -1;
}

void
h_resp_free(struct h_resp *r)
{
	h_resp_clear_headers(r);
	free(r->body);
	json_object_put(r->json);
	memset(r, 0, sizeof(*r));
}

const char *
h_resp_header(const struct h_resp *r, const char *name)
{
	int i;

	for (i = r->nh - 1; i >= 0; i--)
		if (strcasecmp(r->hname[i], name) == 0)
			return r->hval[i];
	return NULL;
}

struct json_object *
h_resp_json(struct h_resp *r)
{
	if (r->json == NULL && r->body != NULL && r->body_len > 0)
		r->json = json_tokener_parse(r->body);
	return r->json;
}

const char *
h_jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

bool
h_jnull(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o != NULL && json_object_object_get_ex(o, key, &v) && v == NULL;
}

const char *
h_err_code(struct h_resp *r)
{
	struct json_object *o = h_resp_json(r), *e;

	if (o == NULL || !json_object_object_get_ex(o, "error", &e) ||
	    !json_object_is_type(e, json_type_object))
		return NULL;
	return h_jstr(e, "code");
}

long
h_api(int i, const char *method, const char *path, const char *body,
    struct h_resp *r)
{
	return h_api_key_call(i, api_key, method, path, body, r);
}

long
h_api_key_call(int i, const char *key, const char *method, const char *path,
    const char *body, struct h_resp *r)
{
	char *auth = h_xasprintf("Authorization: Bearer %s", key);
	char *url = h_xasprintf("%s%s", h_finxd_url(i), path);
	const char *hdrs[] = { auth, "Content-Type: application/json", NULL };

	if (body == NULL)
		hdrs[1] = NULL;
	h_http(method, url, hdrs, body, body ? strlen(body) : 0, r);
	free(auth);
	free(url);
	return r->status;
}

/* ---- URL helpers ----------------------------------------------------- */

static int
h_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static char *
h_urldecode(const char *s, size_t n)
{
	char *o = h_xmalloc(n + 1);
	size_t i, j = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '+') {
			o[j++] = ' ';
		} else if (s[i] == '%' && i + 2 < n &&
		    h_hexval(s[i + 1]) >= 0 && h_hexval(s[i + 2]) >= 0) {
			o[j++] = (char)(h_hexval(s[i + 1]) * 16 +
			    h_hexval(s[i + 2]));
			i += 2;
		} else {
			o[j++] = s[i];
		}
	}
	o[j] = '\0';
	return o;
}

/* Find name in url's query: start of the "name=" pair and its end. */
static const char *
h_qfind(const char *url, const char *name, const char **ret_end)
{
	const char *q = strchr(url, '?');
	size_t nl = strlen(name);

	if (q == NULL)
		return NULL;
	q++;
	while (*q != '\0' && *q != '#') {
		const char *e = q + strcspn(q, "&#");

		if ((size_t)(e - q) > nl && strncmp(q, name, nl) == 0 &&
		    q[nl] == '=') {
			*ret_end = e;
			return q;
		}
		if ((size_t)(e - q) == nl && strncmp(q, name, nl) == 0) {
			*ret_end = e;
			return q;
		}
		q = *e == '&' ? e + 1 : e;
	}
	return NULL;
}

char *
h_qparam(const char *url, const char *name)
{
	const char *end, *p;
	size_t nl = strlen(name);

	if (url == NULL)
		return NULL;
	p = h_qfind(url, name, &end);
	if (p == NULL)
		return NULL;
	if ((size_t)(end - p) == nl)
		return h_xstrdup("");
	return h_urldecode(p + nl + 1, (size_t)(end - p) - nl - 1);
}

char *
h_qreplace(const char *url, const char *name, const char *value)
{
	const char *end, *p = h_qfind(url, name, &end);

	if (p == NULL)
		return h_xasprintf("%s%c%s=%s", url,
		    strchr(url, '?') ? '&' : '?', name, value);
	return h_xasprintf("%.*s%s=%s%s", (int)(p - url), url, name, value,
	    end);
}

/* ---- finx-sandbox ---------------------------------------------------- */

const char *
h_sandbox_url(void)
{
	return sbx.url;
}

static long
h_sbx_call(const char *method, const char *path, const char *json,
    struct h_resp *r)
{
	char *url = h_xasprintf("%s%s", sbx.url, path);
	const char *hdrs[] = { "Content-Type: application/json", NULL };

	h_http(method, url, json ? hdrs : NULL, json, json ? strlen(json) : 0,
	    r);
	free(url);
	return r->status;
}

const char *
h_sandbox_start(const char *const *extra)
{
	const char *exe = getenv("SANDBOX_EXE");
	char *portfile = h_path("sbx.port");
	char *errlog = h_path("sandbox.log");
	char *argv[40];
	long end;
	int a = 0, i;

	if (exe == NULL)
		h_bail("SANDBOX_EXE is not set (run through meson test)");
	if (sbx.pid > 0)
		h_sandbox_stop();
	unlink(portfile);
	argv[a++] = (char *)exe;
	argv[a++] = "--listen";
	argv[a++] = "127.0.0.1:0";
	argv[a++] = "--port-file";
	argv[a++] = portfile;
	argv[a++] = "--client-id";
	argv[a++] = "test-client";
	argv[a++] = "--client-secret";
	argv[a++] = client_secret;
	for (i = 0; extra != NULL && extra[i] != NULL && a < 39; i++)
		argv[a++] = (char *)extra[i];
	argv[a] = NULL;
	sbx.pid = h_spawn(argv, NULL, errlog, errlog, true);

	end = h_now_ms() + 15000;
	sbx.port = 0;
	while (h_now_ms() < end) {
		char *s = h_read_file(portfile, NULL);
		int st;

		if (s != NULL) {
			long p = strtol(s, NULL, 10);

			free(s);
			if (p > 0 && p < 65536 && sbx.port == 0) {
				struct h_resp r;

				sbx.port = (int)p;
				snprintf(sbx.url, sizeof(sbx.url),
				    "http://127.0.0.1:%d", sbx.port);
				h_sbx_call("GET", "/_sandbox/stats", NULL, &r);
				if (r.status != 200)
					sbx.port = 0;
				h_resp_free(&r);
				if (sbx.port != 0)
					break;
			}
		}
		if (waitpid(sbx.pid, &st, WNOHANG) == sbx.pid) {
			sbx.pid = 0;
			h_bail("finx-sandbox exited with %d before it was ready"
			       " (see sandbox.log)",
			    h_status_code(st));
		}
		h_sleep_ms(20);
	}
	free(portfile);
	free(errlog);
	if (sbx.port == 0)
		h_bail("finx-sandbox did not become ready in 15 s");
	return sbx.url;
}

int
h_sandbox_stop(void)
{
	int rc = -1;

	if (sbx.pid > 0)
		rc = h_kill_wait(sbx.pid, SIGTERM);
	sbx.pid = 0;
	return rc;
}

int
h_finxd_count(void)
{
	return nfinxd;
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

long
h_sbx_post(const char *path, const char *json)
{
	struct h_resp r;
	long st = h_sbx_call("POST", path, json, &r);

	h_resp_free(&r);
	return st;
}

long
h_sbx_delete(const char *path)
{
	struct h_resp r;
	long st = h_sbx_call("DELETE", path, NULL, &r);

	h_resp_free(&r);
	return st;
}

struct json_object *
h_sbx_get(const char *path)
{
	struct h_resp r;
	struct json_object *o = NULL;

	if (h_sbx_call("GET", path, NULL, &r) == 200 && h_resp_json(&r)) {
		o = json_object_get(r.json);
	}
	h_resp_free(&r);
	return o;
}

bool
h_sbx_config(const char *json)
{
	return h_sbx_post("/_sandbox/config", json) / 100 == 2;
}

long
h_stat_of(struct json_object *st, const char *name)
{
	struct json_object *v;

	if (st == NULL || !json_object_object_get_ex(st, name, &v))
		return -1;
	return (long)json_object_get_int64(v);
}

long
h_sbx_stat(const char *name)
{
	struct json_object *st = h_sbx_get("/_sandbox/stats");
	long v = h_stat_of(st, name);

	json_object_put(st);
	return v;
}

bool
h_token_works(const char *tok)
{
	struct h_resp r;
	char *url, *auth;
	bool ok;

	if (tok == NULL)
		return false;
	url = h_xasprintf("%s/rest/accounts", h_sandbox_url());
	auth = h_xasprintf("Authorization: Bearer %s", tok);
	{
		const char *hdrs[] = { auth, NULL };

		h_http("GET", url, hdrs, NULL, 0, &r);
	}
	ok = r.status == 200;
	h_resp_free(&r);
	free(url);
	free(auth);
	return ok;
}

void
h_sbx_reset(void)
{
	if (h_sbx_delete("/_sandbox/requests") / 100 != 2 ||
	    h_sbx_delete("/_sandbox/faults") / 100 != 2)
		h_bail("cannot reset the sandbox");
}

static struct json_object *
h_sbx_requests(void)
{
	struct json_object *o = h_sbx_get("/_sandbox/requests"), *a;

	if (o == NULL)
		return NULL;
	if (!json_object_object_get_ex(o, "requests", &a) ||
	    !json_object_is_type(a, json_type_array)) {
		json_object_put(o);
		return NULL;
	}
	a = json_object_get(a);
	json_object_put(o);
	return a;
}

int
h_sbx_count(const char *path)
{
	struct json_object *a = h_sbx_requests();
	size_t i;
	int n = 0;

	if (a == NULL)
		return -1;
	for (i = 0; i < json_object_array_length(a); i++) {
		const char *p = h_jstr(json_object_array_get_idx(a, i), "path");

		if (p != NULL && strcmp(p, path) == 0)
			n++;
	}
	json_object_put(a);
	return n;
}

struct json_object *
h_sbx_last_request(const char *path)
{
	struct json_object *a = h_sbx_requests(), *found = NULL;
	size_t i;

	if (a == NULL)
		return NULL;
	for (i = 0; i < json_object_array_length(a); i++) {
		struct json_object *q = json_object_array_get_idx(a, i);
		const char *p = h_jstr(q, "path");

		if (p != NULL && strcmp(p, path) == 0)
			found = q;
	}
	if (found != NULL)
		json_object_get(found);
	json_object_put(a);
	return found;
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
		h_strv_free(known_issued, known_nissued);
		known_issued = NULL;
		known_nissued = 0;
		for (i = 0; i < (size_t)n; i++)
			h_strv_add(&known_issued, &known_nissued, v[i]);
	}
	*ret_n = n;
	return v;
}

int
h_leaks(const char *s, size_t len)
{
	int n = 0, k, i;
	char **v = h_sbx_issued(&k);

	if (h_memmem(s, len, client_secret))
		n++;
	if (h_memmem(s, len, api_key))
		n++;
	if (h_memmem(s, len, token_key + 3))
		n++;
	for (i = 0; i < k; i++)
		if (h_memmem(s, len, v[i]))
			n++;
	for (i = 0; i < nextra_secrets; i++)
		if (h_memmem(s, len, extra_secrets[i]))
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
	h_strv_add(&extra_secrets, &nextra_secrets, s);
	free(s);
	return extra_secrets[nextra_secrets - 1];
}

/* ---- finxd ------------------------------------------------------------ */

void
h_env_set(const char *name, const char *value)
{
	size_t nl = strlen(name);
	int i;

	for (i = 0; i < env_n; i++) {
		if (strncmp(env_list[i], name, nl) == 0 &&
		    env_list[i][nl] == '=') {
			free(env_list[i]);
			if (value == NULL) {
				env_list[i] = env_list[--env_n];
			} else {
				env_list[i] = h_xasprintf("%s=%s", name, value);
			}
			return;
		}
	}
	if (value == NULL)
		return;
	env_list = realloc(env_list, sizeof(char *) * (size_t)(env_n + 1));
	if (env_list == NULL)
		h_bail("out of memory");
	env_list[env_n++] = h_xasprintf("%s=%s", name, value);
}

void
h_env_defaults(const char *conninfo)
{
	h_env_set("FINXD_DATABASE_URL", conninfo);
	if (sbx.url[0] != '\0')
		h_env_set("FINXD_FINX_URL", sbx.url);
	h_env_set("FINXD_FINX_CLIENT_ID", "test-client");
	h_env_set("FINXD_FINX_CLIENT_SECRET", client_secret);
	h_env_set("FINXD_API_KEYS", api_key);
	h_env_set("FINXD_RETURN_URLS", "https://partner.example/return");
	h_env_set("FINXD_TOKEN_KEYS", token_key);
	h_env_set("FINXD_LOG_LEVEL", "debug");
}

/* The environment for a finxd: ours (cleaned) + env_list + listen. */
static char **
h_finxd_envp(int port, char **ret_a, char **ret_b)
{
	char **e = h_clean_environ(env_n + 2);
	int n = 0, i;

	while (e[n] != NULL)
		n++;
	for (i = 0; i < env_n; i++)
		e[n++] = env_list[i];
	*ret_a = h_xasprintf("FINXD_LISTEN=127.0.0.1:%d", port);
	*ret_b = h_xasprintf("FINXD_PUBLIC_URL=http://127.0.0.1:%d", port);
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
	run_pid = h_spawn(argv, envp, out, out, false);
	rc = h_wait(run_pid, (long)timeout_s * 1000);
	run_pid = 0;
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

	run_pid = h_spawn((char *const *)argv, NULL, out, out, false);
	rc = h_wait(run_pid, (long)timeout_s * 1000);
	run_pid = 0;
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
	if (i < 0 || i >= nfinxd)
		h_bail("no finxd instance %d", i);
	return finxd[i].url;
}

/* GET url quietly (refused connections are expected); the status or 0. */
static long
h_probe(const char *url)
{
	struct h_buf b = { NULL, 0, 0 };
	CURL *c = curl_easy_init();
	long status = 0;

	if (c == NULL)
		return 0;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	free(b.p);
	return status;
}

/* Poll path on p until 200; bails when finxd exits or limit_ms passes. */
static void
h_finxd_poll(struct h_proc *p, const char *path, long limit_ms)
{
	char *url = h_xasprintf("%s%s", p->url, path);
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

	if (nfinxd >= H_MAX_FINXD)
		h_bail("too many finxd instances");
	p = &finxd[nfinxd];
	p->port = h_free_port();
	snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", p->port);
	envp = h_finxd_envp(p->port, &la, &lb);
	p->pid = h_spawn((char *const *)argv, envp, log, log, true);
	nfinxd++;
	free(envp);
	free(la);
	free(lb);
	free(log);

	/* serve listens before the database is ready: /healthz first,
	 * then /readyz (200 once the pool is open and the workers run) */
	h_finxd_poll(p, "/healthz", 20000);
	if (ready)
		h_finxd_poll(p, "/readyz", 30000);
	printf("# %s: finxd #%d on 127.0.0.1:%d%s\n", h_name, nfinxd - 1,
	    p->port, ready ? "" : " (listening)");
	return nfinxd - 1;
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

	if (i < 0 || i >= nfinxd || finxd[i].pid <= 0)
		return -1;
	rc = h_kill_wait_ms(finxd[i].pid, sig, wait_ms);
	finxd[i].pid = 0;
	return rc;
}

/* ---- flows ------------------------------------------------------------- */

long
h_link_create(int i, const char *user_id, const char *return_url,
    struct h_resp *r)
{
	struct json_object *o = json_object_new_object();
	long st;

	json_object_object_add(o, "user_id", json_object_new_string(user_id));
	if (return_url != NULL)
		json_object_object_add(o, "return_url",
		    json_object_new_string(return_url));
	json_object_object_add(o, "language", json_object_new_string("en"));
	st = h_api(i, "POST", "/v1/links",
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), r);
	json_object_put(o);
	return st;
}

char *
h_widget(const char *location, const char *decision)
{
	char *url, *cb = NULL;
	struct h_resp r;

	if (location == NULL)
		return NULL;
	url = h_xasprintf("%s%cdecision=%s", location,
	    strchr(location, '?') ? '&' : '?', decision);
	h_http("GET", url, NULL, NULL, 0, &r);
	free(url);
	if (r.status == 302 && h_resp_header(&r, "Location") != NULL)
		cb = h_xstrdup(h_resp_header(&r, "Location"));
	else
		printf("# widget %s answered %ld, not 302 with Location\n",
		    decision, r.status);
	h_resp_free(&r);
	return cb;
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

	if (rc == 0 || tmpdir[0] == '\0' || owner_pid != getpid())
		return rc;
	s = h_log_read(&len);
	if (len == 0) {
		free(s);
		return rc;
	}
	if (sbx.pid > 0) {
		int k;
		char **v = h_sbx_issued(&k);

		h_strv_free(v, k);
	}
	h_redact_exact(s, client_secret);
	h_redact_exact(s, api_key);
	for (i = 0; i < nextra_secrets; i++)
		h_redact_exact(s, extra_secrets[i]);
	h_redact_exact(s, token_key + 3);
	for (i = 0; i < known_nissued; i++)
		h_redact_exact(s, known_issued[i]);
	h_redact_runs(s);
	/* the last 60 lines */
	for (p = s + len; p > s; p--)
		if (*(p - 1) == '\n' && ++lines > 60)
			break;
	fprintf(stderr, "# --- finxd.log tail (redacted) ---\n");
	fputs(p, stderr);
	fprintf(stderr, "# --- end (FINXD_TEST_KEEP=1 keeps %s) ---\n", tmpdir);
	free(s);
	return rc;
}
