/*
 * JSON-lines logging to stderr.  One write(2) per line so lines from
 * concurrent threads never interleave.  Callers must not pass secrets; the
 * level check happens before any formatting.
 */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static enum log_level min_level = LOG_INFO;
static _Thread_local char req_id[64];

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

static void
json_str(struct buf *b, const char *s)
{
	buf_append(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			buf_append(b, "\\", 1);
			buf_append(b, s, 1);
		} else if (c < 0x20 || c == 0x7f)
			buf_appendf(b, "\\u%04x", c);
		else
			buf_append(b, s, 1);
	}
	buf_append(b, "\"", 1);
}

static void
line_start(struct buf *b, enum log_level level, const char *msg)
{
	struct timeval tv;
	struct tm tm;
	char ts[40];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	buf_appendf(b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":", ts,
	    (long)(tv.tv_usec / 1000), level_names[level]);
	json_str(b, msg);
	if (req_id[0]) {
		buf_append_str(b, ",\"request_id\":");
		json_str(b, req_id);
	}
}

static void
line_end(struct buf *b)
{
	ssize_t w;
	size_t off = 0;

	buf_append(b, "}\n", 2);
	if (b->overflow)
		return;
	while (off < b->len) {
		w = write(STDERR_FILENO, b->data + off, b->len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

void
log_kv(enum log_level level, const char *msg, ...)
{
	struct buf b;
	va_list ap;
	const char *k, *v;

	if (level < min_level)
		return;
	buf_init(&b, 64 * 1024);
	line_start(&b, level, msg);
	va_start(ap, msg);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		buf_append(&b, ",", 1);
		json_str(&b, k);
		buf_append(&b, ":", 1);
		if (v == NULL)
			buf_append_str(&b, "null");
		else
			json_str(&b, v);
	}
	va_end(ap);
	line_end(&b);
	buf_free(&b);
}
