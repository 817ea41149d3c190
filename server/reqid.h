/*
 * Request ids finxd makes for requests that bring no usable X-Request-Id:
 * REQID_LEN lower-case hex digits, unique across threads and processes,
 * one getrandom per thread rather than per request.
 */
#ifndef FINXD_REQID_H
#define FINXD_REQID_H

#include <stddef.h>

#define REQID_LEN 24

/* A new id into out (size > REQID_LEN; aborts otherwise). */
void reqid_new(char *out, size_t size);

#endif
