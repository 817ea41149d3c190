/*
 * A growable byte buffer with a hard limit (curl's dynbuf idea): appending
 * past the limit fails and sets overflow; data stays NUL-terminated.
 * Growth copies and wipes, so a buffer that held a secret leaves no stale
 * copy behind.
 */
#ifndef FINXD_BUF_H
#define FINXD_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
	bool overflow;
};
void buf_init(struct buf *b, size_t max);
/* False (and overflow set) once the limit would be passed. */
bool buf_append(struct buf *b, const void *p, size_t n);
bool buf_appendf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool buf_append_str(struct buf *b, const char *s);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Wipe the contents before freeing: for buffers that held secrets. */
void buf_free_secret(struct buf *b);
/* Hand the data to the caller (who frees it) and reset b. */
char *buf_steal(struct buf *b);

#endif
