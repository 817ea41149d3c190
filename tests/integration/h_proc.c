/*
 * Harness core (see harness.h, harness_int.h): allocation, time and file
 * helpers, polling (h_wait_until), spawning, waiting and killing process
 * groups, h_init, h_bail and the cleanup that runs from atexit, the alarm
 * and SIGINT/SIGTERM.
 */
#include "harness_int.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

char hs_name[128];
char hs_tmpdir[256];
pid_t hs_owner_pid;
static volatile sig_atomic_t cleaned;

/* processes we spawned */
struct h_proc hs_finxd[H_MAX_FINXD];
int hs_nfinxd;
struct h_proc hs_sbx;
pid_t hs_run_pid; /* an h_finxd_run in progress */

/* ---- small utilities ---------------------------------------------- */

void *
h_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		h_bail("out of memory");
	return p;
}

char *
h_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = h_xmalloc(n);

	memcpy(p, s, n);
	return p;
}

char *
h_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		h_bail("out of memory");
	return s;
}

char *
h_dup(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		h_bail("out of memory");
	return d;
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

bool
h_streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

long
h_env_long(const char *name, long dflt)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? h_long(v, dflt) : dflt;
}

bool
h_wait_every(h_pred pred, void *arg, long timeout_ms, long every_ms)
{
	long end = h_now_ms() + timeout_ms;

	for (;;) {
		if (pred(arg))
			return true;
		if (h_now_ms() >= end)
			return false;
		h_sleep_ms(every_ms);
	}
}

bool
h_wait_until(h_pred pred, void *arg, long timeout_ms)
{
	return h_wait_every(pred, arg, timeout_ms, 20);
}

/* Whole file into a malloc'd NUL-terminated string; NULL when unreadable. */
char *
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

bool
h_memmem(const char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	return n > 0 && memmem(hay, len, needle, n) != NULL;
}

const char *
h_tmpdir(void)
{
	return hs_tmpdir;
}

char *
h_path(const char *name)
{
	return h_fmt("%s/%s", hs_tmpdir, name);
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

struct h_server {
	int fd;
	void *(*conn)(void *);
};

static void *
h_accept_loop(void *arg)
{
	struct h_server *sv = arg;
	pthread_t t;
	int c;

	while ((c = accept(sv->fd, NULL, NULL)) >= 0 || errno == EINTR ||
	    errno == ECONNABORTED) {
		if (c < 0)
			continue;
		if (pthread_create(&t, NULL, sv->conn, (void *)(intptr_t)c) != 0)
			close(c);
		else
			pthread_detach(t);
	}
	return NULL;
}

void
h_serve_loopback(void *(*conn)(void *), int *port)
{
	struct h_server *sv = h_xmalloc(sizeof(*sv));
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	pthread_t t;

	sv->conn = conn;
	sv->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sv->fd < 0 || bind(sv->fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(sv->fd, 128) < 0 ||
	    getsockname(sv->fd, (struct sockaddr *)&a, &alen) < 0)
		h_bail("listen on 127.0.0.1:0: %s", strerror(errno));
	*port = ntohs(a.sin_port);
	if (pthread_create(&t, NULL, h_accept_loop, sv) != 0)
		h_bail("pthread_create: %s", strerror(errno));
	pthread_detach(t);
}

/* ---- processes ------------------------------------------------------ */

/*
 * fork+exec argv in its own process group with envp (NULL: ours), stdin
 * from /dev/null, stdout and stderr to files (append when asked).  The
 * child gets SIGKILL when we die without cleaning up.
 */
pid_t
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

int
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
int
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
int
h_kill_wait_ms(pid_t pid, int sig, long wait_ms)
{
	int rc;

	if (pid <= 0)
		return -1;
	kill(-pid, sig);
	kill(pid, sig);
	rc = h_wait(pid, wait_ms);
	if (rc != -1)
		kill(-pid, SIGKILL); /* stragglers of the group */
	return rc;
}

int
h_kill_wait(pid_t pid, int sig)
{
	return h_kill_wait_ms(pid, sig, 5000);
}

/* True while pid exists (it need not be our child). */
bool
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

static void
h_cleanup(int from_signal)
{
	sigset_t block;
	int i;

	if (hs_owner_pid != getpid() || cleaned)
		return;
	cleaned = 1;
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, NULL);
	alarm(0);
	if (hs_run_pid > 0)
		h_kill_wait(hs_run_pid, SIGKILL);
	hs_run_pid = 0;
	for (i = 0; i < hs_nfinxd; i++) {
		if (hs_finxd[i].pid > 0)
			h_kill_wait(hs_finxd[i].pid, SIGTERM);
		hs_finxd[i].pid = 0;
	}
	if (hs_sbx.pid > 0)
		h_kill_wait(hs_sbx.pid, SIGTERM);
	hs_sbx.pid = 0;
	h_pg_stop(from_signal);
	if (hs_tmpdir[0] != '\0') {
		if (getenv("FINXD_TEST_KEEP") != NULL) {
			fprintf(stderr, "# %s: kept %s\n", hs_name, hs_tmpdir);
		} else {
			h_rm_rf(hs_tmpdir);
		}
	}
	if (!from_signal) {
		h_strv_free(hs_known_issued, hs_known_nissued);
		hs_known_issued = NULL;
		hs_known_nissued = 0;
		h_strv_free(hs_extra_secrets, hs_nextra_secrets);
		hs_extra_secrets = NULL;
		hs_nextra_secrets = 0;
		for (i = 0; i < hs_env_n; i++)
			free(hs_env_list[i]);
		free(hs_env_list);
		hs_env_list = NULL;
		hs_env_n = 0;
		free(hs_pg_conninfo);
		hs_pg_conninfo = NULL;
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
	printf("Bail out! %s: ", hs_name);
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

	snprintf(hs_name, sizeof(hs_name), "%s", name);
	hs_owner_pid = getpid();
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

	snprintf(hs_tmpdir, sizeof(hs_tmpdir), "/tmp/finxd-it-XXXXXX");
	if (mkdtemp(hs_tmpdir) == NULL) {
		hs_tmpdir[0] = '\0';
		h_bail("mkdtemp: %s", strerror(errno));
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		h_bail("curl_global_init failed");

	h_random_alnum(hs_client_secret, 40);
	h_random_alnum(hs_api_key, 48);
	h_random(key, sizeof(key));
	h_base64(key, sizeof(key), b64);
	snprintf(hs_token_key, sizeof(hs_token_key), "k1:%s", b64);
	printf("# %s: temp dir %s\n", hs_name, hs_tmpdir);
}

/*
 * Our environment without PG* variables (they would redirect libpq and
 * the server tools) and without FINXD_*; caller frees the array only.
 */
char **
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

long
h_cpu_ms(int pid)
{
	char path[64], line[2048], *p;
	unsigned long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	p = fgets(line, sizeof(line), f);
	fclose(f);
	/* after "pid (comm)": 11 fields, then utime and stime in ticks */
	if (p == NULL || (p = strrchr(line, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		&ut, &st) != 2)
		return -1;
	return (long)((ut + st) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}
