/*
 * JSON-lines logging to stderr.  Callers must not pass secrets; the level
 * check happens before any formatting.
 *
 * Lines below LOG_WARN (the access log: one line per request) collect in
 * one buffer and go out in one write(2) when it is full, every
 * LOG_FLUSH_MS from a flusher thread, before any LOG_WARN or LOG_ERROR
 * line (which is written at once, after them), and at exit; a normal stop
 * and a SIGTERM drain (main returns) lose nothing.  An abrupt end
 * (SIGKILL, a crash, abort()) loses what the buffer held: at most the last
 * LOG_FLUSH_MS of info lines, never more than LOG_BUF bytes.  The buffer
 * holds whole lines only and every write to stderr is made under its lock,
 * so lines never interleave, even on a pipe where writes over PIPE_BUF are
 * not atomic, and they stay in the order they were logged.  (A buffer per
 * thread would take no shared lock, but it wrote lines out of order across
 * threads, which it_start sees.  One write per line cost 2.3-5 us, the
 * buffer 0.6-1.2 us: tests/bench/README.md.)
 */
#include "log.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

#define LOG_BUF 16384 /* bytes of whole lines held back */

static enum log_level min_level = LOG_INFO;
static _Thread_local char req_id[64];
static _Thread_local struct buf line; /* reused: keeps its capacity */
static _Thread_local struct {
	time_t sec;
	char text[24]; /* "2026-12-01T10:00:00" */
} ts_cache;

static struct {
	pthread_mutex_t mu; /* also held for every write to stderr */
	size_t len;
	char data[LOG_BUF];
} held = { .mu = PTHREAD_MUTEX_INITIALIZER };
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t tkey;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_set_level(enum log_level level)
{
	min_level = level;
}

enum log_level
log_get_level(void)
{
	return min_level;
}

int
log_parse_level(const char *s, enum log_level *out)
{
	int i;

	for (i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 1;
		}
	}
	return 0;
}

void
log_set_request_id(const char *id)
{
	if (id == NULL)
		req_id[0] = '\0';
	else
		snprintf(req_id, sizeof(req_id), "%s", id);
}

/* Write p[0..n) to stderr whole; the caller holds held.mu. */
static void
write_all(const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(STDERR_FILENO, p, n);
		if (w <= 0)
			break;
		p += w;
		n -= (size_t)w;
	}
}

/* The held lines out; the caller holds held.mu. */
static void
drain(void)
{
	write_all(held.data, held.len);
	held.len = 0;
}

void
log_flush(void)
{
	pthread_mutex_lock(&held.mu);
	drain();
	pthread_mutex_unlock(&held.mu);
}

static void *
flusher(void *arg)
{
	struct timespec ts = { 0, LOG_FLUSH_MS * 1000000L };

	(void)arg;
	for (;;) {
		nanosleep(&ts, NULL);
		log_flush();
	}
	return NULL;
}

/* A thread's end: its line buffer freed. */
static void
thread_end(void *arg)
{
	(void)arg;
	buf_free(&line);
}

/* fork: the lock taken before, so the child never finds it held by a
 * thread it does not have.  (finxd never forks; the tests do.) */
static void
fork_prepare(void)
{
	pthread_mutex_lock(&held.mu);
}

static void
fork_done(void)
{
	pthread_mutex_unlock(&held.mu);
}

/*
 * The flusher thread, the exit flush and the fork handlers, once.  The
 * flusher blocks every signal: finxd takes SIGTERM with sigwait, which
 * needs every thread to block it, and the first line may be logged
 * before main blocks it.  A forked child has no flusher: its lines go out
 * when the buffer fills, on a warning and at exit.
 */
static void
start_flusher(void)
{
	sigset_t all, old;
	pthread_t th;

	pthread_key_create(&tkey, thread_end);
	atexit(log_flush);
	pthread_atfork(fork_prepare, fork_done, fork_done);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&th, NULL, flusher, NULL) == 0)
		pthread_detach(th);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* This thread's line buffer, set up on its first line. */
static void
line_init(void)
{
	if (line.max != 0)
		return;
	pthread_once(&once, start_flusher);
	buf_init(&line, 64 * 1024);
	pthread_setspecific(tkey, &line);
}

/*
 * The line p[0..n): held back below LOG_WARN (the buffer written out
 * first when full), else written at once after what is held.
 */
static void
emit(const char *p, size_t n, enum log_level level)
{
	pthread_mutex_lock(&held.mu);
	if (level >= LOG_WARN || held.len + n > sizeof(held.data))
		drain();
	if (level >= LOG_WARN || n > sizeof(held.data))
		write_all(p, n);
	else {
		memcpy(held.data + held.len, p, n);
		held.len += n;
	}
	pthread_mutex_unlock(&held.mu);
}

/* s as a JSON string: runs of plain bytes appended in one go. */
static void
json_str(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	buf_append(b, "\"", 1);
	while (*s) {
		size_t n = 0;
		unsigned char c;

		while ((c = (unsigned char)s[n]) != '\0' && c >= 0x20 &&
		    c != 0x7f && c != '"' && c != '\\')
			n++;
		buf_append(b, s, n);
		s += n;
		if ((c = (unsigned char)*s) == '\0')
			break;
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };

			buf_append(b, e, 2);
		} else {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4],
				hex[c & 15] };

			buf_append(b, e, 6);
		}
		s++;
	}
	buf_append(b, "\"", 1);
}

static void
line_start(struct buf *b, enum log_level level, const char *msg)
{
	struct timespec now;
	struct tm tm;
	char ms[24];

	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != ts_cache.sec || ts_cache.text[0] == '\0') {
		gmtime_r(&now.tv_sec, &tm);
		strftime(ts_cache.text, sizeof(ts_cache.text),
		    "%Y-%m-%dT%H:%M:%S", &tm);
		ts_cache.sec = now.tv_sec;
	}
	snprintf(ms, sizeof(ms), ".%03ldZ", (long)(now.tv_nsec / 1000000));
	buf_append_str(b, "{\"ts\":\"");
	buf_append_str(b, ts_cache.text);
	buf_append_str(b, ms);
	buf_append_str(b, "\",\"level\":\"");
	buf_append_str(b, level_names[level]);
	buf_append_str(b, "\",\"msg\":");
	json_str(b, msg);
	if (req_id[0]) {
		buf_append_str(b, ",\"request_id\":");
		json_str(b, req_id);
	}
}

static void
line_end(struct buf *b, enum log_level level)
{
	buf_append(b, "}\n", 2);
	if (!b->overflow)
		emit(b->data, b->len, level);
}

void
log_kv(enum log_level level, const char *msg, ...)
{
	va_list ap;
	const char *k, *v;

	if (level < min_level)
		return;
	line_init();
	buf_reset(&line);
	line_start(&line, level, msg);
	va_start(ap, msg);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		buf_append(&line, ",", 1);
		json_str(&line, k);
		buf_append(&line, ":", 1);
		if (v == NULL)
			buf_append_str(&line, "null");
		else
			json_str(&line, v);
	}
	va_end(ap);
	line_end(&line, level);
}
