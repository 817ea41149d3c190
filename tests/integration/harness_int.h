/*
 * Internal to the harness (h_*.c), not for tests: the state its files
 * share and the helpers they call across.  Tests include harness.h only.
 * Shared state is named hs_*; state one file owns stays static there.
 */
#ifndef FINXD_HARNESS_INT_H
#define FINXD_HARNESS_INT_H

#include "harness.h"

#include <sys/types.h>

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

struct h_proc {
	pid_t pid;
	int port;
	char url[64];
	char ops_url[80]; /* finxd: its FINXD_OPS_LISTEN, "" when none */
};

/* h_proc.c: the test, its temp dir and the processes we spawned */
extern char hs_name[128];
extern char hs_tmpdir[256];
extern pid_t hs_owner_pid;
extern struct h_proc hs_finxd[H_MAX_FINXD];
extern int hs_nfinxd;
extern struct h_proc hs_sbx;
extern pid_t hs_run_pid; /* an h_finxd_run (or PostgreSQL tool) in progress */

/* h_pg.c */
extern char *hs_pg_conninfo;

/* h_finxd.c: finxd environment, "NAME=value" strings */
extern char **hs_env_list;
extern int hs_env_n;

/* h_secrets.c: the test's secrets (never print them) */
extern char hs_client_secret[41];
extern char hs_api_key[49];
extern char hs_token_key[64];
extern char **hs_extra_secrets; /* more API keys, for scans and redaction */
extern int hs_nextra_secrets;
extern char **hs_known_issued; /* issued tokens last seen, for redaction */
extern int hs_known_nissued;

/* h_proc.c */
void *h_xmalloc(size_t n);
char *h_xstrdup(const char *s);
char *h_read_file(const char *path, size_t *ret_len);
bool h_memmem(const char *hay, size_t len, const char *needle);
pid_t h_spawn(char *const argv[], char *const envp[], const char *out,
    const char *err, bool append);
int h_status_code(int st);
int h_wait(pid_t pid, long timeout_ms);
int h_kill_wait_ms(pid_t pid, int sig, long wait_ms);
int h_kill_wait(pid_t pid, int sig);
bool h_alive(pid_t pid);
char **h_clean_environ(int extra);

/* h_pg.c */
void h_pg_stop(int from_signal);

/* h_http.c */
/* GET url quietly (refused connections are expected); the status or 0. */
long h_probe(const char *url);

/* h_secrets.c */
void h_random(void *p, size_t n);
void h_random_alnum(char *s, size_t n);
void h_base64(const unsigned char *in, size_t n, char *out);

#endif
