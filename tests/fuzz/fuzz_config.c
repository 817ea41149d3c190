/*
 * libFuzzer target: the --config file parser and the validation behind
 * it.  The input is written to a memfd and loaded with config_load() and
 * a synthetic, empty environment, so the file alone decides every value.
 * Inputs that name a *_file key are skipped: those read another file by
 * path (a fuzzer could name /dev/zero or a FIFO and only test the kernel).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *const envp[] = { NULL };
	struct config cfg;
	struct config_errors errs = { 0 };
	FILE *out;

	if (memmem(data, size, "_file", 5) != NULL)
		return 0;
	if (fd < 0) {
		if ((fd = memfd_create("fuzz_config", 0)) < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		log_set_level(LOG_ERROR);
	}
	if (ftruncate(fd, 0) != 0 ||
	    (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	if (config_load(&cfg, path, envp, &errs)) {
		/* A valid configuration must print (secrets masked). */
		if ((out = fopen("/dev/null", "w")) == NULL)
			abort();
		config_print(&cfg, out);
		fclose(out);
		if (cfg.n_token_keys == 0 || cfg.client_id == NULL)
			abort();
	}
	config_free(&cfg);
	config_errors_free(&errs);
	return 0;
}
