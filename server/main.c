/*
 * finxd: command line, configuration, and the lifecycle of `serve`
 * (start workers and HTTP, wait for SIGTERM/SIGINT, drain, stop).
 */
#include <curl/curl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cache.h"
#include "config.h"
#include "crypto.h"
#include "data.h"
#include "db.h"
#include "finx.h"
#include "http.h"
#include "log.h"
#include "migrate.h"
#include "refresh.h"
#include "rekey.h"
#include "tokens.h"

#ifndef FINXD_VERSION
#define FINXD_VERSION "dev"
#endif

static void
usage(FILE *out)
{
	fputs("usage: finxd [--config FILE] [serve|migrate|rekey|check-config|"
	      "version]\n"
	      "  serve         run the service (default)\n"
	      "  migrate       apply pending database migrations\n"
	      "  rekey         re-encrypt stored tokens with the first key of\n"
	      "                FINXD_TOKEN_KEYS\n"
	      "  check-config  validate and print the configuration (secrets\n"
	      "                masked)\n"
	      "  version       print the version\n"
	      "Configuration: FINXD_* environment variables or --config FILE;\n"
	      "see config/finxd.conf.example.\n",
	    out);
}

static bool
load(struct config *cfg, const char *file, bool quiet_ok)
{
	struct config_errors errs = { 0 };
	size_t i;

	if (config_load(cfg, file, NULL, &errs)) {
		log_set_level((enum log_level)cfg->log_level);
		return true;
	}
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "config: %s\n", errs.lines[i]);
	config_errors_free(&errs);
	(void)quiet_ok;
	return false;
}

static int
cmd_migrate(struct config *cfg)
{
	char *err = NULL;
	PGconn *c = db_connect(cfg->database_url, &err);
	bool ok;

	if (c == NULL) {
		fprintf(stderr, "migrate: cannot connect: %s\n", err);
		free(err);
		return 1;
	}
	ok = migrate_run(c, &err);
	PQfinish(c);
	if (!ok) {
		fprintf(stderr, "migrate: %s\n", err ? err : "failed");
		free(err);
		return 1;
	}
	return 0;
}

static bool
schema_ready(struct config *cfg)
{
	char *err = NULL;
	PGconn *c = db_connect(cfg->database_url, &err);
	bool ok;

	if (c == NULL) {
		log_kv(LOG_ERROR, "cannot connect to the database", "error", err,
		    NULL);
		free(err);
		return false;
	}
	ok = migrate_current(c, &err);
	PQfinish(c);
	if (!ok) {
		log_kv(LOG_ERROR, "refusing to serve", "reason", err, NULL);
		free(err);
	}
	return ok;
}

static int
cmd_serve(struct config *cfg)
{
	sigset_t set;
	int sig = 0;

	/* Threads inherit this mask, so only sigwait below sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!schema_ready(cfg))
		return 1;
	if (!refresh_init(cfg))
		return 1;
	db_init(cfg);
	db_warm();
	cache_start(cfg);
	if (!http_start(cfg)) {
		cache_stop();
		db_shutdown();
		return 1;
	}
	refresher_start(cfg);
	log_kv(LOG_INFO, "finxd serving", "version", FINXD_VERSION, "public_url",
	    cfg->public_url, "finx_url", cfg->finx_url, NULL);
	sigwait(&set, &sig);
	log_kv(LOG_INFO, "stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
	    NULL);
	http_stop(cfg->drain_timeout_s);
	refresher_stop();
	cache_stop();
	db_shutdown();
	log_info("stopped");
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct config cfg;
	const char *file = NULL, *cmd = "serve";
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		cmd = argv[optind++];
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "version") == 0) {
		printf("finxd %s\n", FINXD_VERSION);
		return 0;
	}
	if (strcmp(cmd, "serve") && strcmp(cmd, "migrate") &&
	    strcmp(cmd, "rekey") && strcmp(cmd, "check-config")) {
		fprintf(stderr, "finxd: unknown command %s\n", cmd);
		usage(stderr);
		return 2;
	}
	if (!load(&cfg, file, false)) {
		config_free(&cfg);
		return 1;
	}
	if (strcmp(cmd, "check-config") == 0) {
		config_print(&cfg, stdout);
		config_free(&cfg);
		return 0;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	finx_init(&cfg);
	crypto_init(&cfg);
	tokens_init(&cfg);
	data_init(&cfg);
	api_init(&cfg);
	if (strcmp(cmd, "migrate") == 0)
		rc = cmd_migrate(&cfg);
	else if (strcmp(cmd, "rekey") == 0)
		rc = rekey_run(&cfg) ? 0 : 1;
	else
		rc = cmd_serve(&cfg);
	finx_cleanup();
	curl_global_cleanup();
	config_free(&cfg);
	return rc;
}
