/*
 * A request id is a 32-bit random prefix of the thread that makes it and
 * the mix of a random 64-bit key and a counter, both drawn with one
 * getrandom when the thread (or a forked child) makes its first id.
 * Drawing 12 bytes per request was a getrandom(2) each, 0.5-1.2 us on the
 * 2-core machine (tests/bench/README.md); this is 13-29 ns.
 *
 * One thread never repeats an id: the mix is a bijection of the counter.
 * Other threads and processes draw their own prefix and key, so two of
 * their ids meet with the odds of 96 random bits, and a forked child
 * draws anew (id_forks).  An id labels log lines and answers and is no
 * secret: nothing trusts it, and one who has seen an id might guess the
 * same thread's next ones.
 */
#include "reqid.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secret.h"

static atomic_uint id_forks; /* forks seen, so a child draws anew */
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static void
id_forked(void)
{
	atomic_fetch_add(&id_forks, 1);
}

static void
id_init(void)
{
	pthread_atfork(NULL, NULL, id_forked);
}

/* splitmix64's finalizer: a bijection of 64-bit words. */
static uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void
reqid_new(char *out, size_t size)
{
	static _Thread_local struct {
		unsigned forks;
		bool seeded;
		uint32_t prefix;
		uint64_t key, n;
	} t;
	static const char hex[] = "0123456789abcdef";
	uint64_t lo;
	int i;

	if (size < REQID_LEN + 1)
		abort();
	pthread_once(&id_once, id_init);
	if (!t.seeded || t.forks != atomic_load(&id_forks)) {
		unsigned char b[12];

		rand_bytes(b, sizeof(b));
		memcpy(&t.prefix, b, 4);
		memcpy(&t.key, b + 4, 8);
		t.forks = atomic_load(&id_forks);
		t.seeded = true;
	}
	lo = mix64(t.key ^ t.n++);
	for (i = 0; i < 8; i++)
		out[i] = hex[(t.prefix >> (28 - 4 * i)) & 15];
	for (i = 0; i < 16; i++)
		out[8 + i] = hex[(lo >> (60 - 4 * i)) & 15];
	out[REQID_LEN] = '\0';
}
