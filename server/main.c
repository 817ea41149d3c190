/*
 * finxd: command line, configuration, and the lifecycle of `serve`
 * (listen, wait for a servable database, start workers, wait for
 * SIGTERM/SIGINT, drain, stop) and of `migrate` (connect with retries,
 * apply).
 */
#include <curl/curl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "crypto.h"
#include "data.h"
#include "db.h"
#include "finx.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "migrate.h"
#include "notify.h"
#include "refresh.h"
#include "rekey.h"
#include "webhook.h"
#include "worker.h"
#include "secret.h"
#include "text.h"
#include "store.h"
#include "tokens.h"

#ifndef FINXD_VERSION
#define FINXD_VERSION "dev"
#endif

/* How long `finxd migrate` retries an unreachable database (--wait). */
#define MIGRATE_WAIT_S 60

static void
usage(FILE *out)
{
	fputs("usage: finxd [--config FILE] [serve|migrate|rekey|check-config|"
	      "version]\n"
	      "  serve         run the service (default); waits for the\n"
	      "                database and a schema it can serve\n"
	      "  migrate       apply pending database migrations (needs only\n"
	      "                the database settings); --wait SECONDS: how\n"
	      "                long to retry an unreachable database (60)\n"
	      "  rekey         re-encrypt stored tokens with the first key of\n"
	      "                FINXD_TOKEN_KEYS\n"
	      "  check-config  validate and print the configuration (secrets\n"
	      "                masked)\n"
	      "  version       print the version\n"
	      "Configuration: FINXD_* environment variables or --config FILE;\n"
	      "see config/finxd.conf.example.\n",
	    out);
}

/*
 * Load and validate the configuration; database_only for commands that
 * need nothing but the database (no finX client, no token keys).
 */
static bool
load(struct config *cfg, const char *file, bool database_only)
{
	struct config_errors errs = { 0 };
	size_t i;
	bool ok;

	ok = database_only ? config_load_database(cfg, file, NULL, &errs)
			   : config_load(cfg, file, NULL, &errs);
	if (ok) {
		log_set_level((enum log_level)cfg->log_level);
		return true;
	}
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "config: %s\n", errs.lines[i]);
	config_errors_free(&errs);
	return false;
}

/*
 * A connection string libpq cannot parse is a configuration error, not
 * an outage: no retrying.  libpq's message is not shown, since it may
 * quote the string, password included.
 */
static bool
conninfo_valid(const char *conninfo)
{
	char *msg = NULL;
	PQconninfoOption *o = PQconninfoParse(conninfo ? conninfo : "", &msg);

	PQfreemem(msg);
	PQconninfoFree(o);
	return o != NULL;
}

static uint32_t
random_u32(void)
{
	uint32_t v;

	rand_bytes(&v, sizeof(v));
	return v;
}

/*
 * Connect to database_direct_url (migrate's advisory lock is a session
 * lock, which PgBouncer in transaction mode cannot hold), retrying with
 * backoff for up to wait_s seconds and logging each failed try.  NULL
 * after one clear line on stderr.
 */
static PGconn *
migrate_connection(const struct config *cfg, long wait_s)
{
	int64_t until = mono_ms() + wait_s * 1000, left;
	char attempt_s[16], delay_s[24];
	char *err = NULL;
	PGconn *c;
	long delay;
	int attempt;

	if (!conninfo_valid(cfg->database_direct_url)) {
		fprintf(stderr, "migrate: FINXD_DATABASE_DIRECT_URL (or "
				"FINXD_DATABASE_URL) is not a valid libpq "
				"connection string\n");
		return NULL;
	}
	for (attempt = 0;; attempt++) {
		c = migrate_connect(cfg->database_direct_url, NULL, NULL, NULL,
		    &err);
		if (c != NULL)
			return c;
		if ((left = until - mono_ms()) <= 0)
			break;
		delay = migrate_backoff_ms(attempt, random_u32());
		if (delay > left)
			delay = (long)left;
		snprintf(attempt_s, sizeof(attempt_s), "%d", attempt + 1);
		snprintf(delay_s, sizeof(delay_s), "%ld", delay);
		log_kv(LOG_WARN, "migrate: database not reachable, retrying",
		    "attempt", attempt_s, "retry_in_ms", delay_s, "error", err,
		    NULL);
		free(err);
		err = NULL;
		migrate_sleep(delay, NULL);
	}
	fprintf(stderr, "migrate: the database did not answer within %ld s "
			"(%d tries): %s\n",
	    wait_s, attempt + 1, err);
	free(err);
	return NULL;
}

static int
cmd_migrate(const struct config *cfg, long wait_s)
{
	char *err = NULL;
	PGconn *c = migrate_connection(cfg, wait_s);
	bool ok;

	if (c == NULL)
		return 1;
	ok = migrate_run(c, &err);
	PQfinish(c);
	if (!ok) {
		fprintf(stderr, "migrate: %s\n", err ? err : "failed");
		free(err);
		return 1;
	}
	return 0;
}

/* The probe's own statements never hang on a stuck server. */
#define PROBE_OPTIONS "-c statement_timeout=10000"

/*
 * One readiness try: NULL when the database answers with a schema this
 * binary serves, else why not (malloc'd) and what /readyz says.
 */
static char *
try_servable(const struct config *cfg, const sigset_t *stop, int *sig,
    int *db_version)
{
	char *err = NULL;
	PGconn *c = migrate_connect(cfg->database_url, PROBE_OPTIONS, stop, sig,
	    &err);

	if (c == NULL) {
		api_set_starting("database_unavailable",
		    "waiting for the database: it is not reachable");
		return err;
	}
	if (!migrate_check(c, db_version, &err)) {
		PQfinish(c);
		api_set_starting("schema_not_current", err);
		return err;
	}
	/* Whether plain-text token rows are read: before any request. */
	if (!rekey_policy_apply(cfg, c)) {
		PQfinish(c);
		api_set_starting("database_unavailable",
		    "waiting for the database: rekey_state not readable");
		return xstrdup("rekey_state not readable");
	}
	PQfinish(c);
	return NULL;
}

/*
 * Wait, listening already, until the database answers with a schema this
 * binary can serve: try, log why not, back off (0.5 s doubling to 30 s,
 * jittered), try again, for as long as it takes (an operator may be
 * starting PostgreSQL or running `finxd migrate` meanwhile).  Returns 0
 * when servable, or the SIGTERM/SIGINT that came first.
 */
static int
wait_servable(const struct config *cfg, const sigset_t *stop)
{
	char attempt_s[16], delay_s[24], version_s[16], own_s[16];
	int attempt, sig = 0, v = -1;
	char *why;
	long delay;

	if (!conninfo_valid(cfg->database_url)) {
		log_kv(LOG_ERROR, "FINXD_DATABASE_URL is not a valid libpq "
				  "connection string", NULL);
		return -1;
	}
	for (attempt = 0; (why = try_servable(cfg, stop, &sig, &v)) != NULL;
	     attempt++) {
		if (sig != 0) {
			free(why);
			return sig;
		}
		delay = migrate_backoff_ms(attempt, random_u32());
		snprintf(attempt_s, sizeof(attempt_s), "%d", attempt + 1);
		snprintf(delay_s, sizeof(delay_s), "%ld", delay);
		log_kv(LOG_WARN, "not serving yet, retrying", "reason", why,
		    "attempt", attempt_s, "retry_in_ms", delay_s, NULL);
		free(why);
		if ((sig = migrate_sleep(delay, stop)) != 0)
			return sig;
	}
	if (v > migrations_count) {
		snprintf(version_s, sizeof(version_s), "%d", v);
		snprintf(own_s, sizeof(own_s), "%d", migrations_count);
		log_kv(LOG_INFO, "database schema is newer than this finxd and "
				 "declared compatible with it",
		    "schema", version_s, "finxd_schema", own_s, NULL);
	}
	return 0;
}

static const char *
signame(int sig)
{
	return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

/* Threads inherit this mask, so only sigwait in cmd_serve sees them. */
static void
serve_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/*
 * Stop what cmd_serve started before the database became servable: sig
 * is the signal that came first, or negative when the database settings
 * cannot work.  Returns the exit status.
 */
static int
serve_stop_unready(const struct config *cfg, int sig)
{
	http_stop(cfg->drain_timeout_s);
	refresh_shutdown();
	if (sig < 0)
		return 1;
	log_kv(LOG_INFO, "stopping before the database was ready", "signal",
	    signame(sig), NULL);
	log_kv(LOG_INFO, "stopped", NULL);
	return 0;
}

/* Serve with a servable database until SIGTERM/SIGINT, then drain. */
static void
serve_ready(struct config *cfg, sigset_t *set)
{
	int sig = 0;

	db_init(cfg);
	db_warm();
	cache_start(cfg);
	worker_start(cfg);
	if (!webhook_start(cfg))
		log_kv(LOG_ERROR, "webhook threads did not start", NULL);
	api_set_started();
	log_kv(LOG_INFO, "finxd serving", "version", FINXD_VERSION, "public_url",
	    cfg->public_url, "finx_url", cfg->finx_url, "db_prepared",
	    cfg->db_prepared ? "on" : "off", "webhooks",
	    cfg->webhook_url ? "on" : "off", NULL);
	sigwait(set, &sig);
	log_kv(LOG_INFO, "stopping", "signal", signame(sig), NULL);
	http_stop(cfg->drain_timeout_s);
	worker_stop();
	webhook_stop();
	refresh_shutdown();
	cache_stop();
	db_shutdown();
	log_kv(LOG_INFO, "stopped", NULL);
}

static int
cmd_serve(struct config *cfg)
{
	sigset_t set;
	int sig;

	serve_signals(&set);
	/*
	 * Listen first: /healthz answers 200 and /readyz 503 (with the
	 * reason) while the database is unreachable or its schema is not
	 * one to serve, so a supervisor sees a live process that is not
	 * ready, not one that exits at once and is given up on.  Before
	 * wait_servable says so there is no pool (requests needing it
	 * answer 503), no cache listener, no refresher and no rescue; only
	 * the heartbeat, which says this process is alive.
	 */
	/* Before any request: this process's lease identity, and rotations
	 * an earlier run left in the rescue journal (stored as soon as the
	 * database answers). */
	if (!refresh_init(cfg))
		return 1;
	refresh_set_kick(worker_kick);
	if (!http_start(cfg)) {
		refresh_shutdown();
		return 1;
	}
	if ((sig = wait_servable(cfg, &set)) != 0)
		return serve_stop_unready(cfg, sig);
	serve_ready(cfg, &set);
	return 0;
}

/* The command line: --config, --wait and the command. */
struct args {
	const char *file, *cmd;
	long wait_s;
	bool wait_given;
};

/* The options; -1 to go on, else the exit status. */
static int
parse_options(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "c:hw:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			a->file = optarg;
			break;
		case 'w':
			if (!parse_long(optarg, 0, 3600, &a->wait_s)) {
				fprintf(stderr, "finxd: --wait takes seconds, "
						"0 to 3600\n");
				return 2;
			}
			a->wait_given = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	return -1;
}

/* The options and the command; -1 to go on, else the exit status. */
static int
parse_args(int argc, char **argv, struct args *a)
{
	int rc;

	if ((rc = parse_options(argc, argv, a)) >= 0)
		return rc;
	if (optind < argc)
		a->cmd = argv[optind++];
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(a->cmd, "version") == 0) {
		printf("finxd %s\n", FINXD_VERSION);
		return 0;
	}
	if (strcmp(a->cmd, "serve") && strcmp(a->cmd, "migrate") &&
	    strcmp(a->cmd, "rekey") && strcmp(a->cmd, "check-config")) {
		fprintf(stderr, "finxd: unknown command %s\n", a->cmd);
		usage(stderr);
		return 2;
	}
	if (a->wait_given && strcmp(a->cmd, "migrate") != 0) {
		fprintf(stderr, "finxd: --wait applies to migrate only\n");
		return 2;
	}
	return -1;
}

/* serve or rekey: the modules they need, set up and torn down. */
static int
cmd_run(struct config *cfg, const char *cmd)
{
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	finx_init(cfg);
	crypto_init(cfg);
	tokens_init(cfg);
	store_init(cfg);
	data_init(cfg);
	notify_init(cfg);
	api_init(cfg);
	if (strcmp(cmd, "rekey") == 0)
		rc = rekey_run(cfg) ? 0 : 1;
	else
		rc = cmd_serve(cfg);
	finx_cleanup();
	curl_global_cleanup();
	return rc;
}

int
main(int argc, char **argv)
{
	struct args a = { NULL, "serve", MIGRATE_WAIT_S, false };
	struct config cfg;
	int rc;

	if ((rc = parse_args(argc, argv, &a)) >= 0)
		return rc;
	if (!load(&cfg, a.file, strcmp(a.cmd, "migrate") == 0)) {
		config_free(&cfg);
		return 1;
	}
	if (strcmp(a.cmd, "migrate") == 0) {
		rc = cmd_migrate(&cfg, a.wait_s);
	} else if (strcmp(a.cmd, "check-config") == 0) {
		config_print(&cfg, stdout);
		rc = 0;
	} else {
		rc = cmd_run(&cfg, a.cmd);
	}
	config_free(&cfg);
	return rc;
}
